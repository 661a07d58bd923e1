"""OpenTelemetry metrics, read back through the SDK's ``InMemoryMetricReader``.

Each test reports to a fresh ``MeterProvider`` of its own (``enable_metrics``), so
none depends on the process-wide global provider. The replication tests run the
real azure-servicebus client against two ``geobus.local`` namespaces and check
the values against the run; the others drive the aggregation with stand-in
senders and receivers whose ``stats`` the test sets.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import geobus
from geobus import _metrics
from geobus._storage.outbox import Outbox
from geobus.local import LocalNamespace
from geobus.testing import FakeClock, eventually

SYSTEM = ("messaging.system", "servicebus")
FAST: dict[str, Any] = {
    # Opening a link to a local namespace takes ~0.6 s (more on a busy machine): room for it.
    "deadlines": geobus.Deadlines(attempt=1.5, send=3.0),
    "retry": geobus.SdkRetryPolicy(total=0),
    "breaker": geobus.BreakerPolicy(failure_threshold=3, cooldown=0.5),
}
Points = dict[str, dict[frozenset[tuple[str, Any]], float]]


# -- reading the metrics ------------------------------------------------------------------------


@dataclass
class Metrics:
    """A provider of one test's own, with the SDK's in-memory reader on it."""

    reader: InMemoryMetricReader
    provider: MeterProvider

    def collect(self) -> Points:
        """Every geobus point: instrument name -> {attributes: value}."""
        points: Points = {}
        for metric in self._metrics():
            found = points.setdefault(metric.name, {})
            for point in metric.data.data_points:
                found[frozenset((point.attributes or {}).items())] = point.value  # type: ignore[union-attr]
        return points

    def units(self) -> dict[str, str]:
        return {metric.name: metric.unit or "" for metric in self._metrics()}

    def _metrics(self) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            metric
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            if scope.scope.name == "geobus"
            for metric in scope.metrics
        ]


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    """geobus's metrics on a fresh provider; on the global provider again after the test."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    assert _metrics.enable_metrics(meter_provider=provider) is True
    yield Metrics(reader, provider)
    _metrics.enable_metrics()
    provider.shutdown()


def key(destination: str | None = None, namespace: str | None = None, **more: str) -> frozenset[tuple[str, Any]]:
    """A point's attributes: ``messaging.system`` and the given destination, namespace and more."""
    items = [SYSTEM, *more.items()]
    if destination is not None:
        items.append(("messaging.destination.name", destination))
    if namespace is not None:
        items.append(("geobus.namespace", namespace))
    return frozenset(items)


def per_namespace(points: Points, name: str, destination: str) -> dict[str, float]:
    """``name``'s points for ``destination``, by namespace."""
    return {
        dict(attrs)["geobus.namespace"]: value
        for attrs, value in points.get(name, {}).items()
        if dict(attrs).get("messaging.destination.name") == destination and "geobus.namespace" in dict(attrs)
    }


def silent(points: Points) -> bool:
    return all(not found for found in points.values())


# -- stand-ins ----------------------------------------------------------------------------------


class Shared:
    """What a client's senders share (its health, its outbox): only its identity matters."""


@dataclass
class FakeSender:
    stats: Any = field(
        default_factory=lambda: geobus.SenderStats(
            active_namespace="primary",
            mode="passive",
            messages_sent={"primary": 0, "secondary": 0},
            send_failures={"primary": 0, "secondary": 0},
            failovers=0,
            partial_writes=0,
        )
    )

    def __hash__(self) -> int:
        return id(self)

    def set(self, **changes: Any) -> None:
        self.stats = replace(self.stats, **changes)


@dataclass
class FakeReceiverStats:
    """A ``ReceiverStats`` with the per-namespace lag."""

    received: dict[str, int] = field(default_factory=lambda: {"primary": 0, "secondary": 0})
    delivered: int = 0
    duplicates_absorbed: int = 0
    held: int = 0
    in_flight: int = 0
    evictions: int = 0
    receive_errors: dict[str, int] = field(default_factory=lambda: {"primary": 0, "secondary": 0})
    receive_lag: dict[str, float | None] = field(default_factory=dict)


@dataclass
class FakeReceiver:
    stats: Any = field(default_factory=FakeReceiverStats)

    def __hash__(self) -> int:
        return id(self)


@dataclass
class FakeSessionStats:
    """A ``SessionStats``'s counters that the metrics read."""

    gaps: int = 0
    gap_messages: int = 0
    out_of_order: int = 0


@dataclass
class FakeSessionReceiver(FakeReceiver):
    session_stats: Any = field(default_factory=FakeSessionStats)

    def __hash__(self) -> int:
        return id(self)


class BrokenStats:
    """A sender whose snapshot fails once ``broken`` is set."""

    broken = False

    @property
    def stats(self) -> geobus.SenderStats:
        if self.broken:
            raise RuntimeError("dictionary changed size during iteration")
        return replace(FakeSender().stats, messages_sent={"primary": 7, "secondary": 0})

    def __repr__(self) -> str:
        return "BrokenStats()"


# -- the instruments, with stand-ins ------------------------------------------------------------


class TestInstruments:
    """Each instrument reports what the live senders' and receivers' stats say."""

    def test_every_instrument_is_reported_with_its_unit_and_documented(self, metrics: Metrics) -> None:
        sender, receiver = FakeSender(), FakeSessionReceiver()
        sender.set(outbox_depth=2, outbox_oldest_age=1.5)
        receiver.stats.receive_lag = {"primary": 0.25, "secondary": 0.5}
        _metrics.watch_sender(sender, destination="m-units", health=Shared(), outbox=Shared())
        _metrics.watch_receiver(receiver, destination="m-units")
        try:
            found = metrics.units()
        finally:
            _metrics.forget(sender)
            _metrics.forget(receiver)
        assert sorted(found) == sorted(_metrics.INSTRUMENTS)
        assert found["geobus.outbox.oldest_age"] == "s"
        assert found["geobus.receiver.lag"] == "s"
        assert found["geobus.outbox.depth"] == "{message}"
        assert all(name.islower() and " " not in name for name in found)
        for name in _metrics.INSTRUMENTS:
            assert f"`{name}`" in (_metrics.__doc__ or ""), name
            assert f"`{found[name]}`" in (_metrics.__doc__ or ""), found[name]

    def test_sender_values_follow_its_stats(self, metrics: Metrics) -> None:
        sender = FakeSender()
        _metrics.watch_sender(sender, destination="m-follow", health=Shared())
        try:
            sender.set(messages_sent={"primary": 3, "secondary": 4}, send_failures={"primary": 1, "secondary": 0})
            sender.set(failovers=1, active_namespace="secondary")
            points = metrics.collect()
            assert per_namespace(points, "geobus.sender.messages", "m-follow") == {"primary": 3, "secondary": 4}
            assert per_namespace(points, "geobus.sender.failures", "m-follow") == {"primary": 1, "secondary": 0}
            assert per_namespace(points, "geobus.sender.active_namespace", "m-follow") == {"primary": 0, "secondary": 1}
            assert points["geobus.sender.failovers"][key("m-follow")] == 1
            assert key("m-follow") not in points.get("geobus.outbox.depth", {})  # no outbox: no outbox points
            sender.set(messages_sent={"primary": 3, "secondary": 9})
            assert per_namespace(metrics.collect(), "geobus.sender.messages", "m-follow") == {"primary": 3, "secondary": 9}
        finally:
            _metrics.forget(sender)

    def test_senders_of_one_destination_add_up_and_shared_counts_are_read_once(
        self, metrics: Metrics
    ) -> None:
        health, outbox = Shared(), Shared()
        first, second = FakeSender(), FakeSender()
        for sender, sent in ((first, 2), (second, 5)):
            # Two senders of one client: their own sends, one health, one outbox lane set.
            sender.set(messages_sent={"primary": sent, "secondary": 0}, failbacks=1, outbox_depth=3)
            sender.set(outbox_oldest_age=2.0, outbox_dead_lettered=1)
            _metrics.watch_sender(sender, destination="m-shared", health=health, outbox=outbox)
        try:
            points = metrics.collect()
        finally:
            _metrics.forget(first)
            _metrics.forget(second)
        assert per_namespace(points, "geobus.sender.messages", "m-shared")["primary"] == 7
        assert points["geobus.sender.failbacks"][key()] == 1
        assert points["geobus.outbox.depth"][key("m-shared")] == 3
        assert points["geobus.outbox.dead_lettered"][key("m-shared")] == 1
        assert points["geobus.outbox.oldest_age"][key("m-shared")] == 2.0

    def test_counts_outlive_a_closed_sender_levels_do_not(self, metrics: Metrics) -> None:
        outbox = Shared()
        sender = FakeSender()
        sender.set(messages_sent={"primary": 4, "secondary": 0}, outbox_depth=2, outbox_oldest_age=1.0)
        _metrics.watch_sender(sender, destination="m-close", outbox=outbox)
        metrics.collect()
        sender.set(messages_sent={"primary": 6, "secondary": 0}, outbox_depth=0, outbox_oldest_age=None)
        _metrics.forget(sender)  # read once more as it closes: 6, not the 4 collected before
        _metrics.forget(sender)
        points = metrics.collect()
        assert per_namespace(points, "geobus.sender.messages", "m-close") == {"primary": 6, "secondary": 0}
        assert per_namespace(points, "geobus.sender.active_namespace", "m-close") == {}
        assert key("m-close") not in points.get("geobus.outbox.depth", {})
        assert key("m-close") not in points.get("geobus.outbox.oldest_age", {})
        successor = FakeSender()
        successor.set(messages_sent={"primary": 1, "secondary": 0})
        _metrics.watch_sender(successor, destination="m-close", outbox=outbox)
        try:
            after = metrics.collect()
        finally:
            _metrics.forget(successor)
        assert per_namespace(after, "geobus.sender.messages", "m-close") == {"primary": 7, "secondary": 0}

    def test_a_sender_collected_without_close_keeps_its_last_counts(self, metrics: Metrics) -> None:
        sender = FakeSender()
        sender.set(messages_sent={"primary": 0, "secondary": 5})
        _metrics.watch_sender(sender, destination="m-gc")
        metrics.collect()
        del sender
        gc.collect()
        points = metrics.collect()
        assert per_namespace(points, "geobus.sender.messages", "m-gc") == {"primary": 0, "secondary": 5}
        assert per_namespace(points, "geobus.sender.active_namespace", "m-gc") == {}

    def test_a_snapshot_that_fails_keeps_the_last_count_and_spares_the_others(self, metrics: Metrics) -> None:
        broken, fine = BrokenStats(), FakeSender()
        fine.set(messages_sent={"primary": 1, "secondary": 0})
        _metrics.watch_sender(broken, destination="m-broken")
        _metrics.watch_sender(fine, destination="m-fine")
        try:
            before = metrics.collect()
            broken.broken = True
            after = metrics.collect()
        finally:
            _metrics.forget(broken)
            _metrics.forget(fine)
        for points in (before, after):
            assert per_namespace(points, "geobus.sender.messages", "m-broken") == {"primary": 7, "secondary": 0}
            assert per_namespace(points, "geobus.sender.messages", "m-fine") == {"primary": 1, "secondary": 0}
        assert per_namespace(after, "geobus.sender.active_namespace", "m-broken") == {}  # a level: unknown now

    def test_receiver_values_lag_per_namespace_and_subscription(self, metrics: Metrics) -> None:
        queue, subscription = FakeReceiver(), FakeReceiver()
        queue.stats = FakeReceiverStats(
            received={"primary": 5, "secondary": 4},
            delivered=5,
            duplicates_absorbed=4,
            held=1,
            in_flight=2,
            evictions=3,
            receive_errors={"primary": 0, "secondary": 2},
            receive_lag={"primary": 0.5, "secondary": None},  # nothing received yet from secondary
        )
        subscription.stats = FakeReceiverStats(delivered=1, receive_lag={"primary": 9.0})
        _metrics.watch_receiver(queue, destination="m-orders")
        _metrics.watch_receiver(subscription, destination="m-events", subscription="audit")
        try:
            points = metrics.collect()
        finally:
            _metrics.forget(queue)
            _metrics.forget(subscription)
        assert per_namespace(points, "geobus.receiver.received", "m-orders") == {"primary": 5, "secondary": 4}
        assert per_namespace(points, "geobus.receiver.receive_errors", "m-orders") == {"primary": 0, "secondary": 2}
        assert per_namespace(points, "geobus.receiver.lag", "m-orders") == {"primary": 0.5}
        for name, value in [("delivered", 5), ("duplicates_absorbed", 4), ("held", 1), ("in_flight", 2), ("evictions", 3)]:
            assert points[f"geobus.receiver.{name}"][key("m-orders")] == value, name
        audit = key("m-events", **{"messaging.destination.subscription.name": "audit"})
        assert points["geobus.receiver.delivered"][audit] == 1
        assert points["geobus.receiver.lag"][
            key("m-events", "primary", **{"messaging.destination.subscription.name": "audit"})
        ] == 9.0

    def test_session_gaps_and_out_of_order_add_up_and_outlive_the_receiver(self, metrics: Metrics) -> None:
        one, two, plain = FakeSessionReceiver(), FakeSessionReceiver(), FakeReceiver()
        one.session_stats = FakeSessionStats(gaps=2, gap_messages=5, out_of_order=1)
        two.session_stats = FakeSessionStats(gaps=1, gap_messages=1, out_of_order=0)
        for receiver in (one, two, plain):
            _metrics.watch_receiver(receiver, destination="m-sessions")
        try:
            points = metrics.collect()
            _metrics.forget(one)  # closed: what it counted stays in the totals
            two.session_stats = FakeSessionStats(gaps=3, gap_messages=4, out_of_order=2)
            after = metrics.collect()
        finally:
            _metrics.forget(two)
            _metrics.forget(plain)
        here = key("m-sessions")
        assert [points[f"geobus.receiver.session_{n}"][here] for n in ("gaps", "gap_messages", "out_of_order")] == [3, 6, 1]
        assert [after[f"geobus.receiver.session_{n}"][here] for n in ("gaps", "gap_messages", "out_of_order")] == [5, 9, 3]
        assert points["geobus.receiver.delivered"][here] == 0  # the plain receiver counts as before

    def test_disable_then_enable_on_the_same_provider(
        self, metrics: Metrics, caplog: pytest.LogCaptureFixture
    ) -> None:
        sender = FakeSender()
        sender.set(messages_sent={"primary": 2, "secondary": 0})
        _metrics.watch_sender(sender, destination="m-toggle")
        try:
            _metrics.disable_metrics()
            assert silent(metrics.collect())
            with caplog.at_level(logging.WARNING):
                # The same provider again: its instruments are reused, not registered twice
                # (a provider would keep the first registration's callbacks, and report nothing).
                assert _metrics.enable_metrics(meter_provider=metrics.provider) is True
                points = metrics.collect()
        finally:
            _metrics.forget(sender)
        assert not [r for r in caplog.records if r.name.startswith("opentelemetry")], caplog.records
        assert per_namespace(points, "geobus.sender.messages", "m-toggle") == {"primary": 2, "secondary": 0}

    def test_enable_names_a_wrong_provider(self, metrics: Metrics) -> None:
        with pytest.raises(TypeError, match="meter_provider must be an OpenTelemetry MeterProvider, not str"):
            _metrics.enable_metrics(meter_provider="otlp")

    def test_a_fresh_provider_reports_the_live_senders(self, metrics: Metrics) -> None:
        sender = FakeSender()
        sender.set(messages_sent={"primary": 1, "secondary": 0})
        _metrics.watch_sender(sender, destination="m-fresh")
        other = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[other])
        try:
            assert _metrics.enable_metrics(meter_provider=provider) is True
            assert silent(metrics.collect())  # the provider before: nothing
            assert per_namespace(Metrics(other, provider).collect(), "geobus.sender.messages", "m-fresh") == {"primary": 1, "secondary": 0}
        finally:
            _metrics.forget(sender)
            provider.shutdown()


# -- the outbox's oldest age ---------------------------------------------------------------------------


class TestOutboxAge:
    """The age of a lane's first message, kept in memory as the outbox changes (a fake clock)."""

    def test_age_follows_appends_drains_recounts_and_dead_letters(self, tmp_path: Path) -> None:
        clock = FakeClock()
        outbox = Outbox(geobus.OutboxPolicy(path=str(tmp_path / "age.db")), clock=clock, lock=False)
        entity, lanes = "queue:q", ["any", "primary", "secondary"]
        try:
            assert outbox.head_age(entity, lanes) is None
            outbox.append(entity, ["secondary"], [message(0, "o"), message(1, "o")])
            clock.advance(3)
            outbox.append(entity, ["secondary"], [message(2, "o")])
            outbox.append(entity, ["any"], [message(3, "o")])
            clock.advance(2)
            assert outbox.head_age(entity, lanes) == 5.0  # the first append, in any lane
            assert outbox.head_age(entity, ["any"]) == 2.0
            assert outbox.head_age("queue:other", lanes) is None
            first_two = outbox.head(entity, "secondary", 2)
            outbox.remove([entry.id for entry in first_two])
            assert outbox.head_age(entity, ["secondary"]) == 2.0  # the third message leads now
            outbox.recount()
            assert outbox.head_age(entity, ["secondary"]) == 2.0
            [third] = outbox.head(entity, "secondary", 1)
            outbox.dead_letter([third.id], "refused")
            assert outbox.head_age(entity, ["secondary"]) is None  # emptied
            clock.advance(10)
            outbox.retry_dead_letters()  # back in its lane, accepted 12 s ago
            assert outbox.head_age(entity, ["secondary"]) == 12.0
            [any_lane] = outbox.head(entity, "any", 1)
            outbox.remove([any_lane.id])
            assert outbox.head_age(entity, ["any"]) is None
        finally:
            outbox.close()


# -- a replication run against two local namespaces ------------------------------------------------


def client(primary: LocalNamespace, secondary: LocalNamespace, **options: Any) -> geobus.GeoServiceBusClient:
    return geobus.GeoServiceBusClient.from_connection_strings(
        primary.connection_string, secondary.connection_string, **{**FAST, **options}
    )


def message(index: int, prefix: str) -> ServiceBusMessage:
    return ServiceBusMessage(f"body {index}", message_id=f"{prefix}-{index:04d}")


class TestReplicationMetrics:
    """After a short run on two local namespaces, the metrics say what happened."""

    @pytest.mark.timeout(60)
    def test_passive_failover(self, metrics: Metrics, namespace_factory: Callable[..., LocalNamespace]) -> None:
        primary, secondary = namespace_factory(), namespace_factory()
        queue = "metrics-passive"
        with client(primary, secondary, mode="passive") as geo:
            with geo.get_queue_sender(queue) as sender:
                for i in range(2):
                    assert sender.send_messages(message(i, "p")).landed == ("primary",)
                primary.refuse()
                try:
                    results = [sender.send_messages(message(i, "p")) for i in range(2, 5)]
                finally:
                    primary.heal()
                stats = sender.stats
                points = metrics.collect()
        assert [r.landed for r in results] == [("secondary",)] * 3
        assert [r.failed_over for r in results] == [True, False, False]
        assert per_namespace(points, "geobus.sender.messages", queue) == {"primary": 2, "secondary": 3}
        assert per_namespace(points, "geobus.sender.failures", queue) == {"primary": 1, "secondary": 0}
        assert per_namespace(points, "geobus.sender.active_namespace", queue) == {"primary": 0, "secondary": 1}
        assert points["geobus.sender.failovers"][key(queue)] == 1
        assert points["geobus.sender.partial_writes"][key(queue)] == 0
        # The same numbers as the sender's own snapshot.
        assert stats.messages_sent == {"primary": 2, "secondary": 3} and stats.failovers == 1
        assert key(queue) not in points.get("geobus.outbox.depth", {})  # no outbox configured
        # Closed with its client: the counts stay, the level goes.
        after = metrics.collect()
        assert per_namespace(after, "geobus.sender.messages", queue) == {"primary": 2, "secondary": 3}
        assert per_namespace(after, "geobus.sender.active_namespace", queue) == {}

    @pytest.mark.timeout(90)
    def test_active_outbox_then_dedup_receiver(
        self, metrics: Metrics, namespace_factory: Callable[..., LocalNamespace], tmp_path: Path
    ) -> None:
        primary, secondary = namespace_factory(), namespace_factory()
        queue, count = "metrics-active", 5
        outbox = geobus.OutboxPolicy(path=str(tmp_path / "outbox.db"), backoff_initial=0.05, backoff_max=0.5)
        with client(primary, secondary, mode="active", outbox=outbox) as geo:
            with geo.get_queue_sender(queue) as sender:
                secondary.refuse()
                try:
                    results = [sender.send_messages(message(i, "a")) for i in range(count)]
                    during = metrics.collect()
                    stats_during = sender.stats
                finally:
                    secondary.heal()
                eventually(
                    lambda: sender.stats.outbox_depth == 0 and sender.stats.drained == count,
                    within=30,
                    what=lambda: sender.stats,
                )
                drained = metrics.collect()
                stats_drained = sender.stats

            with geo.get_queue_receiver(queue, max_wait_time=0.5) as receiver:
                processed: list[str] = []
                eventually(
                    lambda: receive_and_complete(receiver, processed) >= (count, count),
                    within=30,
                    what=lambda: receiver.stats,
                )
                received = metrics.collect()
            after_close = metrics.collect()

        assert all(r.landed == ("primary",) and r.buffered == ("secondary",) for r in results), results
        assert stats_during.outbox_depth == count and stats_during.outbox_oldest_age is not None
        # While the secondary refuses: each send a partial write, its copy waiting in the outbox.
        assert during["geobus.outbox.depth"][key(queue)] == count
        assert during["geobus.outbox.oldest_age"][key(queue)] > 0
        assert during["geobus.sender.partial_writes"][key(queue)] == count
        assert during["geobus.outbox.buffered"][key(queue)] == count
        assert during["geobus.outbox.drained"][key(queue)] == 0
        assert during["geobus.outbox.dead_lettered"][key(queue)] == 0
        assert per_namespace(during, "geobus.sender.messages", queue) == {"primary": count, "secondary": 0}
        assert per_namespace(during, "geobus.sender.failures", queue)["primary"] == 0
        assert per_namespace(during, "geobus.sender.failures", queue)["secondary"] >= 1
        # Drained: nothing waits, so no age; the secondary has every copy now.
        assert stats_drained.outbox_oldest_age is None
        assert drained["geobus.outbox.depth"][key(queue)] == 0
        assert key(queue) not in drained.get("geobus.outbox.oldest_age", {})
        assert drained["geobus.outbox.drained"][key(queue)] == count
        assert per_namespace(drained, "geobus.sender.messages", queue) == {"primary": count, "secondary": count}
        # Both copies of each message read, one processed, the other absorbed.
        assert sorted(processed) == [f"a-{i:04d}" for i in range(count)]
        assert per_namespace(received, "geobus.receiver.received", queue) == {"primary": count, "secondary": count}
        assert received["geobus.receiver.delivered"][key(queue)] == count
        assert received["geobus.receiver.duplicates_absorbed"][key(queue)] == count
        assert received["geobus.receiver.in_flight"][key(queue)] == 0
        assert received["geobus.receiver.held"][key(queue)] == 0
        assert per_namespace(received, "geobus.receiver.receive_errors", queue) == {"primary": 0, "secondary": 0}
        lag = per_namespace(received, "geobus.receiver.lag", queue)
        assert sorted(lag) == ["primary", "secondary"] and all(value >= 0 for value in lag.values()), lag
        # The receiver closed: its counts stay.
        assert after_close["geobus.receiver.duplicates_absorbed"][key(queue)] == count
        assert key(queue) not in after_close.get("geobus.receiver.in_flight", {})


def receive_and_complete(receiver: Any, processed: list[str]) -> tuple[int, int]:
    """One receive call, every message completed; (delivered, duplicates absorbed) so far."""
    for received in receiver.receive_messages(max_message_count=10, max_wait_time=0.5):
        processed.append(str(received.message_id))
        receiver.complete_message(received)
    stats = receiver.stats
    return stats.delivered, stats.duplicates_absorbed


# -- without opentelemetry ---------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False
    )


class TestWithoutOpenTelemetry:
    """Without opentelemetry-api, geobus works as before and metrics are a clear no-op."""

    @pytest.mark.timeout(60)
    def test_sends_and_receives_without_opentelemetry(
        self,
        metrics: Metrics,
        namespace_factory: Callable[..., LocalNamespace],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        primary, secondary = namespace_factory(), namespace_factory()
        queue = "metrics-none"
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` fails
            with pytest.raises(ImportError):
                import opentelemetry.metrics  # noqa: F401
            assert _metrics.enable_metrics() is False
            with client(primary, secondary, mode="active") as geo:
                with geo.get_queue_sender(queue) as sender:
                    result = sender.send_messages(message(0, "n"))
                with geo.get_queue_receiver(queue, max_wait_time=0.5) as receiver:
                    processed: list[str] = []
                    eventually(
                        lambda: receive_and_complete(receiver, processed) >= (1, 1),
                        within=20,
                        what=lambda: receiver.stats,
                    )
        assert result.landed == ("primary", "secondary")
        assert processed == ["n-0000"]
        # Nothing was registered while it was missing: opentelemetry back, still nothing of theirs.
        points = metrics.collect()
        assert all(dict(attrs).get("messaging.destination.name") != queue for found in points.values() for attrs in found)

    @pytest.mark.timeout(60)
    def test_importing_and_building_a_client_without_opentelemetry(self) -> None:
        code = f"""
import sys
sys.modules["opentelemetry"] = None
import geobus, geobus.aio
from geobus import _metrics
from geobus._storage.outbox import Outbox
config = geobus.ReplicationConfig.from_connection_strings({CONNECTION!r}, {OTHER!r})
with geobus.GeoServiceBusClient(config) as client:
    with client.get_queue_sender("orders") as sender:
        stats = sender.stats
    with client.get_queue_receiver("orders") as receiver:
        pass
print(stats.messages_sent, _metrics.enable_metrics(), _metrics.disable_metrics())
"""
        done = run_python(code)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "{'primary': 0, 'secondary': 0} False None"
        assert "SharedAccessKey=" not in done.stdout + done.stderr

    @pytest.mark.timeout(60)
    def test_importing_geobus_does_not_import_opentelemetry(self) -> None:
        code = "import sys, geobus, geobus.aio; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
        done = run_python(code)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "[]"


class TestGlobalProvider:
    """With opentelemetry-api installed, metrics go to the global provider without a call."""

    @pytest.mark.timeout(60)
    def test_a_sender_reports_to_a_global_provider_set_later(self) -> None:
        code = f"""
import json
import geobus
from geobus import _metrics
from geobus._storage.outbox import Outbox
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

config = geobus.ReplicationConfig.from_connection_strings({CONNECTION!r}, {OTHER!r})
with geobus.GeoServiceBusClient(config) as client:
    sender = client.get_queue_sender("orders")  # registers the instruments, on the global (proxy) provider
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)
    assert _metrics.enable_metrics(meter_provider=provider)  # the global one: nothing registered twice
    points = {{
        m.name: sorted((dict(p.attributes)["geobus.namespace"], p.value) for p in m.data.data_points)
        for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics if s.scope.name == "geobus"
        for m in s.metrics if m.name in ("geobus.sender.active_namespace", "geobus.sender.messages")
    }}
    sender.close()
print(json.dumps(points, sort_keys=True))
"""
        done = run_python(code)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout) == {
            "geobus.sender.active_namespace": [["primary", 1], ["secondary", 0]],
            "geobus.sender.messages": [["primary", 0], ["secondary", 0]],
        }
        assert "opentelemetry" not in done.stderr  # no duplicate-instrument warning, nothing else


# Endpoints nothing listens on (these tests never connect) and a key that is not one.
CONNECTION = "Endpoint=sb://127.0.0.1:9/;SharedAccessKeyName=test;SharedAccessKey=bm90LWEta2V5;UseDevelopmentEmulator=true"
OTHER = CONNECTION.replace("127.0.0.1:9/", "127.0.0.1:19/")
