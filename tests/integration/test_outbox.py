"""The outbox, circuit breakers, failback and the operator's override, end to end.

The real azure-servicebus client against two ``geobus.local`` namespaces. The
sync API runs the async core, so most of the suite is written against the sync
client; ``TestOutageBuffering`` runs through both APIs (the ``driver`` fixture).
Messages are read back with a plain azure-servicebus receiver, so what geobus
delivered is checked by the SDK, not by geobus's own receiver.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus.exceptions import MessagingEntityNotFoundError

import geobus
import geobus.aio
from geobus._storage.outbox import Outbox
from geobus.local import DEV_KEY, LocalNamespace
from geobus.testing import NamespacePair, eventually, eventually_async

from .drivers import Driver
from .helpers import QUEUE, depth

ENTITY = f"queue:{QUEUE}"
FAST: dict[str, Any] = {
    # Opening a link to a local namespace takes ~0.6 s (more on a busy machine): room for it.
    "deadlines": geobus.Deadlines(attempt=1.5, send=3.0),
    "retry": geobus.SdkRetryPolicy(total=0),
    # Short, so a healed namespace is tried again within a poll or two.
    "breaker": geobus.BreakerPolicy(failure_threshold=3, cooldown=0.5),
}
PRODUCER = Path(__file__).with_name("outbox_producer.py")


# -- helpers --------------------------------------------------------------------------------


def outbox(path: Path, **options: Any) -> geobus.OutboxPolicy:
    return geobus.OutboxPolicy(path=str(path), backoff_initial=0.05, backoff_max=0.5, **options)


def client(pair: NamespacePair, **options: Any) -> geobus.GeoServiceBusClient:
    return geobus.GeoServiceBusClient(pair.config(**{**FAST, **options}))


def message(index: int, prefix: str = "m", **options: Any) -> ServiceBusMessage:
    return ServiceBusMessage(f"body {index}", message_id=f"{prefix}-{index:04d}", **options)


@contextmanager
def faulted(fault: Callable[[LocalNamespace], None], *namespaces: LocalNamespace) -> Iterator[None]:
    """Apply ``fault`` to ``namespaces``; heal them on the way out, before any client closes."""
    for namespace in namespaces:
        fault(namespace)
    try:
        yield
    finally:
        for namespace in namespaces:
            namespace.heal()


def refused(*namespaces: LocalNamespace) -> AbstractContextManager[None]:
    return faulted(LocalNamespace.refuse, *namespaces)


def outbox_empty(sender: Any, **counters: int) -> Callable[[], bool]:
    """The outbox is empty and each named ``SenderStats`` counter has its value.

    The depth is counted on the outbox's worker thread and ``drained`` on the event loop a
    moment later, so a ``SenderStats`` taken as the depth reaches 0 can still miss the last
    batch: wait for the counters too.
    """

    def done() -> bool:
        stats = sender.stats
        return stats.outbox_depth == 0 and all(getattr(stats, k) == v for k, v in counters.items())

    return done


def settled(sender: Any, *, within: float = 20, **counters: int) -> geobus.SenderStats:
    """Poll until ``outbox_empty``; the sender's stats then."""
    done, state = outbox_empty(sender, **counters), lambda: f"{counters}: {sender.stats}"
    eventually(done, within=within, what=state)
    stats: geobus.SenderStats = sender.stats
    return stats


async def settled_async(sender: Any, *, within: float = 20, **counters: int) -> geobus.SenderStats:
    """``settled`` for a coroutine test (either driver's sender)."""
    done, state = outbox_empty(sender, **counters), lambda: f"{counters}: {sender.stats}"
    await eventually_async(done, within=within, what=state)
    stats: geobus.SenderStats = sender.stats
    return stats


@dataclass(frozen=True)
class Received:
    message_id: str
    body: bytes


def read_queue(namespace: LocalNamespace, queue: str = QUEUE, *, within: float = 15.0) -> list[Received]:
    """Every message on ``queue``, by sequence number, read (and deleted) with a plain SDK receiver."""
    expected = namespace.counts().get(queue, 0)
    if not expected:
        return []
    got: list[Any] = []
    deadline = time.monotonic() + within
    with ServiceBusClient.from_connection_string(namespace.connection_string, retry_total=0) as sdk:
        receiver = sdk.get_queue_receiver(
            queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=100
        )
        with receiver:
            while len(got) < expected:
                if time.monotonic() > deadline:
                    raise AssertionError(f"read {len(got)} of {expected} messages within {within:g} s")
                # Ask for exactly what is left: the SDK returns as soon as that many arrived.
                wanted = min(100, expected - len(got))
                got += receiver.receive_messages(max_message_count=wanted, max_wait_time=0.5)
    got.sort(key=lambda m: m.sequence_number)
    return [Received(str(m.message_id), b"".join(m.body)) for m in got]


def read_both(pair: NamespacePair) -> tuple[list[Received], list[Received]]:
    """``read_queue`` of the primary and the secondary, at once (each SDK close takes its time)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        primary, secondary = pool.map(read_queue, (pair.primary, pair.secondary))
    return primary, secondary


def first_seen(received: list[Received]) -> list[str]:
    """Message ids in arrival order, each once (a duplicate is allowed: delivery is at least once)."""
    return list(dict.fromkeys(r.message_id for r in received))


def delivered_ids(pair: NamespacePair) -> list[str]:
    """Every message id either namespace holds, each once (its queue is emptied)."""
    primary, secondary = read_both(pair)
    return first_seen(primary + secondary)


def assert_in_order(received: list[Received]) -> None:
    ids = first_seen(received)
    assert ids == sorted(ids), f"out of order: {ids[:10]}..."


def redacted(text: str) -> str:
    """Process output fit for an assertion message: the SAS key never reaches the test log."""
    return text.replace(DEV_KEY, "***")[-2000:]


def open_outbox(path: Path) -> Outbox:
    """The outbox file, for inspection; its client must be closed (it takes the file's lock)."""
    return Outbox(geobus.OutboxPolicy(path=str(path)))


# -- the outbox through an outage -------------------------------------------------------------


class TestOutageBuffering:
    """Sends during an outage are kept on disk and delivered, in order, when it ends."""

    @pytest.mark.timeout(60)
    async def test_both_namespaces_down_500_buffered_then_delivered_in_order(
        self, driver: Driver, pair: NamespacePair, tmp_path: Path
    ) -> None:
        expected = [f"m-{i:04d}" for i in range(500)]
        config = pair.config(mode="passive", outbox=outbox(tmp_path / "outbox.db"), **FAST)
        async with driver.client(config) as geo, geo.get_queue_sender(QUEUE) as sender:
            with refused(pair.primary, pair.secondary):
                results = [await sender.send_messages(message(i)) for i in range(500)]
                during = sender.stats
            after = await settled_async(sender, drained=500)
        assert all(r.buffered == ("any",) and r.landed == () for r in results), results[0]
        assert during.buffered == 500 and during.outbox_depth == 500
        assert during.messages_sent == {"primary": 0, "secondary": 0}
        assert after.outbox_dead_lettered == 0
        primary, secondary = read_both(pair)
        assert_in_order(primary)
        assert_in_order(secondary)
        assert sorted(first_seen(primary + secondary)) == expected
        bodies = {r.message_id: r.body for r in primary + secondary}
        assert all(bodies[f"m-{i:04d}"] == f"body {i}".encode() for i in range(500))

    @pytest.mark.timeout(45)
    @pytest.mark.parametrize(("down", "up"), [("primary", "secondary"), ("secondary", "primary")])
    async def test_active_mode_namespace_down_gets_its_copies_after_heal(
        self,
        driver: Driver,
        pair: NamespacePair,
        tmp_path: Path,
        down: str,
        up: str,
    ) -> None:
        expected = [f"a-{i:04d}" for i in range(50)]
        config = pair.config(mode="active", outbox=outbox(tmp_path / "outbox.db"), **FAST)
        async with driver.client(config) as geo, geo.get_queue_sender(QUEUE) as sender:
            with refused(getattr(pair, down)):
                results = [await sender.send_messages(message(i, "a")) for i in range(50)]
                assert depth(pair) == {up: 50, down: 0}
            stats = await settled_async(sender, drained=50)
        assert all(r.landed == (up,) and r.buffered == (down,) for r in results), results[0]
        assert stats.buffered == 50
        primary, secondary = read_both(pair)
        assert first_seen(primary) == expected
        assert first_seen(secondary) == expected


class Producer:
    """``outbox_producer.py`` in a child process; records each ``acked`` line it prints."""

    _ACK = re.compile(r"^acked (\S+)\n$")

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(PRODUCER), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.acked: list[str] = []
        self._lines: list[str] = []
        self._errors: list[str] = []
        self._changed = threading.Condition()
        self._pumps = [
            threading.Thread(target=self._pump, args=(self._process.stdout, self._lines), daemon=True),
            threading.Thread(target=self._pump, args=(self._process.stderr, self._errors), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line)
                match = self._ACK.match(line) if into is self._lines else None
                if match:  # a line cut short by the kill is no acknowledgement
                    self.acked.append(match.group(1))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_acks(self, count: int, *, within: float) -> None:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: len(self.acked) >= count or self._process.poll() is not None, timeout=within
            )
        if not ok or len(self.acked) < count:
            raise AssertionError(f"{len(self.acked)} of {count} acks; stderr: {redacted(''.join(self._errors))}")

    def kill(self) -> None:
        """SIGKILL this producer (by its own pid) and collect everything it printed before."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(15)
        for pump in self._pumps:
            pump.join(15)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def output(self) -> str:
        return "".join(self._lines) + "".join(self._errors)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.kill()


def run_producer(args: list[str], env: dict[str, str], *, within: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PRODUCER), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=within,
        check=False,
    )


class TestProducerKilled:
    """``kill -9`` of a producer loses nothing it acknowledged; one process owns an outbox."""

    @pytest.mark.timeout(90)
    def test_kill_9_then_a_new_process_delivers_every_acknowledged_message(
        self, pair: NamespacePair, tmp_path: Path
    ) -> None:
        path = tmp_path / "outbox.db"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "GEOBUS_MODE": "passive",
            "GEOBUS_PRIMARY_CONNECTION_STRING": pair.primary.connection_string,
            "GEOBUS_SECONDARY_CONNECTION_STRING": pair.secondary.connection_string,
            "GEOBUS_OUTBOX_PATH": str(path),
            "GEOBUS_OUTBOX_BACKOFF_INITIAL": "0.05",
            "GEOBUS_OUTBOX_BACKOFF_MAX": "0.5",
            "GEOBUS_DEADLINE_ATTEMPT": "1.5",
            "GEOBUS_DEADLINE_SEND": "3",
            "GEOBUS_RETRY_TOTAL": "0",
            "GEOBUS_BREAKER_COOLDOWN": "0.5",
        }
        with refused(pair.primary, pair.secondary):
            with Producer(["send", QUEUE, "k"], env) as first:
                first.wait_for_acks(20, within=30)
                rival = run_producer(["open"], env, within=30)
                assert rival.returncode == 3, redacted(rival.stdout + rival.stderr)
                assert rival.stdout.startswith("OutboxError:") and "in use" in rival.stdout
                first.wait_for_acks(len(first.acked) + 20, within=30)
                first.kill()
            acked = first.acked
            assert first.returncode == -9
            # Every acknowledged message is on disk (and at most the one in flight besides);
            # the dead process's lock went with it.
            inspect = open_outbox(path)
            try:
                assert inspect.depth() - len(acked) in (0, 1), (inspect.depth(), len(acked))
            finally:
                inspect.close()
        drained = run_producer(["drain", QUEUE, "30"], env, within=60)
        assert drained.returncode == 0, redacted(drained.stdout + drained.stderr)
        for output in (first.output, rival.stdout + rival.stderr, drained.stdout + drained.stderr):
            if DEV_KEY in output:  # not an assert: its message would show the key
                raise AssertionError("a producer printed the SAS key")
        primary, secondary = read_both(pair)
        delivered = set(first_seen(primary + secondary))
        lost = [mid for mid in acked if mid not in delivered]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost: {lost[:5]}"
        # At most the one message being sent when the kill came was stored but not acknowledged.
        last = int(acked[-1].rsplit("-", 1)[1])
        assert delivered - set(acked) <= {f"k-{last + 1:06d}"}
        assert_in_order(primary)
        assert_in_order(secondary)
        inspect = open_outbox(path)
        try:
            assert inspect.depth() == 0 and inspect.dead_letters() == []
        finally:
            inspect.close()


# -- failback ----------------------------------------------------------------------------------


class TestFailback:
    """prefer_primary comes home after a flapping primary settles, at most once per cool-down."""

    @pytest.mark.timeout(60)
    def test_flapping_primary_bounded_failbacks_nothing_lost(
        self, pair: NamespacePair, tmp_path: Path
    ) -> None:
        cooldown = 2.0
        failback = geobus.FailbackPolicy(
            mode="prefer_primary", probe_interval=0.2, healthy_probes=2, cooldown=cooldown
        )
        acked: list[str] = []
        stop = threading.Event()

        def flap(cycles: int = 3, down: float = 0.3, up: float = 1.5) -> None:
            # Up long enough for two good probes each time: only the cool-down holds failback back.
            try:
                for _ in range(cycles):
                    pair.primary.refuse()
                    if stop.wait(down):
                        return
                    pair.primary.heal()
                    if stop.wait(up):
                        return
            finally:
                pair.primary.heal()

        def produce() -> geobus.SendResult:
            index = len(acked)
            result = sender.send_messages(message(index, "f"))  # never raises: the outbox is there
            acked.append(f"f-{index:04d}")
            time.sleep(0.02)  # a steady producer, not a flood
            return result

        geo = client(pair, mode="passive", failback=failback, outbox=outbox(tmp_path / "outbox.db"))
        with geo, geo.get_queue_sender(QUEUE) as sender:
            assert produce().landed == ("primary",)
            flapper = threading.Thread(target=flap, name="flapper", daemon=True)
            began = time.monotonic()
            flapper.start()
            try:
                while flapper.is_alive():
                    produce()
            finally:
                stop.set()
                flapper.join(10)
            # The primary is healthy for good now: the sender comes home.
            deadline = time.monotonic() + cooldown + 5
            while sender.active_namespace != "primary":
                assert time.monotonic() < deadline, f"no failback to the primary: {sender.stats}"
                produce()
            stats = sender.stats
            elapsed = time.monotonic() - began
            home = [produce() for _ in range(5)]
            eventually(lambda: sender.stats.outbox_depth == 0, within=20, what="outbox drained")
        assert stats.failovers >= 1, stats  # the flapping reached the producer
        assert 1 <= stats.failbacks <= int(elapsed // cooldown) + 1, (stats, round(elapsed, 1))
        assert all(r.landed == ("primary",) for r in home), home
        delivered = set(delivered_ids(pair))
        lost = [mid for mid in acked if mid not in delivered]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost: {lost[:5]}"

    @pytest.mark.timeout(45)
    def test_send_in_flight_across_a_failback_does_not_swap_back(
        self, pair: NamespacePair
    ) -> None:
        # A slow secondary keeps a send in flight when the probe fails back: landing where
        # it was sent, with nothing wrong, is no failover.
        failback = geobus.FailbackPolicy(
            mode="prefer_primary", probe_interval=0.1, healthy_probes=2, cooldown=0
        )
        deadlines = geobus.Deadlines(attempt=2.5, send=5.0)
        with client(pair, mode="passive", failback=failback, deadlines=deadlines) as geo:
            with geo.get_queue_sender(QUEUE) as sender:
                assert sender.send_messages(message(0, "g")).landed == ("primary",)
                with faulted(lambda ns: ns.set_latency(0.5), pair.secondary):
                    with refused(pair.primary):
                        assert sender.send_messages(message(1, "g")).failed_over
                    results: list[geobus.SendResult] = []
                    deadline = time.monotonic() + 10
                    while len(results) < 3 or results[-1].landed != ("primary",):
                        assert time.monotonic() < deadline, f"no failback: {sender.stats}"
                        results.append(sender.send_messages(message(2 + len(results), "g")))
                    stats = sender.stats
        assert stats.failbacks == 1, stats
        assert stats.failovers == 1, f"a send that went straight to its first choice swapped the roles: {stats}"
        assert not any(r.missed for r in results), results


# -- the outbox's own dead letters and limits ----------------------------------------------------


class TestOutboxDeadLetters:
    """What cannot be delivered moves to the outbox's dead_letters table, with a reason."""

    @pytest.mark.timeout(45)
    def test_ttl_expiring_while_buffered_is_dead_lettered_never_sent(
        self, pair: NamespacePair, tmp_path: Path
    ) -> None:
        path = tmp_path / "outbox.db"
        short = timedelta(seconds=1)  # the SDK keeps whole seconds: 0.3 s would mean no TTL at all
        with client(pair, mode="passive", outbox=outbox(path)) as geo:
            with geo.get_queue_sender(QUEUE) as sender:
                with refused(pair.primary, pair.secondary):
                    for i in range(5):
                        ttl = {"time_to_live": short} if i % 2 == 0 else {}
                        assert sender.send_messages(message(i, "t", **ttl)).buffered == ("any",)
                    # The drainer, retrying against the outage, finds them expired.
                    eventually(
                        lambda: (sender.stats.outbox_depth, sender.stats.outbox_dead_lettered) == (2, 3),
                        within=10,
                        what="3 messages expired and counted",
                    )
                eventually(lambda: sender.stats.outbox_depth == 0, within=20, what="outbox drained")
        assert sorted(delivered_ids(pair)) == ["t-0001", "t-0003"]
        inspect = open_outbox(path)  # the client is closed: its lock is free
        try:
            dead = inspect.dead_letters()
        finally:
            inspect.close()
        assert [d.message_id for d in dead] == ["t-0000", "t-0002", "t-0004"]
        assert all(d.entity == ENTITY and d.lane == "any" and "expired" in d.reason for d in dead), dead

    @pytest.mark.timeout(45)
    def test_copy_one_namespace_refuses_for_good_is_dead_lettered_with_the_reason(
        self, namespace_factory: Callable[..., LocalNamespace], tmp_path: Path
    ) -> None:
        # Only the primary is small: the secondary stores the big messages, the primary
        # never will, so their primary copies go from its lane to the dead letters.
        pair = NamespacePair(namespace_factory(max_message_size=4096), namespace_factory())
        path = tmp_path / "outbox.db"
        big = b"x" * 16_384
        with client(pair, mode="active", outbox=outbox(path)) as geo:
            with geo.get_queue_sender(QUEUE) as sender:
                first = sender.send_messages(ServiceBusMessage(big, message_id="b-0000"))
                sender.send_messages(message(1, "b"))
                sender.send_messages(ServiceBusMessage(big, message_id="b-0002"))
                sender.send_messages(message(3, "b"))
                settled(sender, outbox_dead_lettered=2)
        assert first.landed == ("secondary",) and first.buffered == ("primary",), first
        primary, secondary = read_both(pair)
        assert first_seen(primary) == ["b-0001", "b-0003"]
        assert first_seen(secondary) == ["b-0000", "b-0001", "b-0002", "b-0003"]
        inspect = open_outbox(path)
        try:
            dead = inspect.dead_letters()
        finally:
            inspect.close()
        assert [(d.message_id, d.lane) for d in dead] == [("b-0000", "primary"), ("b-0002", "primary")]
        assert all("MessageSizeExceededError" in d.reason for d in dead), dead

    @pytest.mark.timeout(45)
    def test_entity_missing_on_a_strict_namespace_is_dead_lettered_with_the_reason(
        self, namespace_factory: Callable[..., LocalNamespace], tmp_path: Path
    ) -> None:
        pair = NamespacePair(namespace_factory(), namespace_factory(auto_create=False))
        path = tmp_path / "outbox.db"
        # The SDK takes about a second to report a refused link: give it room to, or the
        # refusal reads as a timeout (an outage) and the copy waits for good.
        deadlines = geobus.Deadlines(attempt=2.5, send=5.0)
        with client(pair, mode="active", outbox=outbox(path), deadlines=deadlines) as geo:
            with geo.get_queue_sender(QUEUE) as sender:
                result = sender.send_messages(message(0, "s"))
                stats = settled(sender, outbox_dead_lettered=1)
        assert result.landed == ("primary",) and result.buffered == ("secondary",), result
        assert isinstance(result.missed["secondary"], MessagingEntityNotFoundError)
        assert stats.drained == 0, stats
        assert first_seen(read_queue(pair.primary)) == ["s-0000"]
        assert pair.secondary.counts() == {}
        inspect = open_outbox(path)
        try:
            dead = inspect.dead_letters()
        finally:
            inspect.close()
        assert [(d.message_id, d.lane) for d in dead] == [("s-0000", "secondary")]
        assert all("MessagingEntityNotFoundError" in d.reason for d in dead), dead


class TestOutboxLimits:
    """A full outbox refuses, all or nothing; a damaged file is refused and left alone."""

    @pytest.mark.timeout(45)
    def test_full_outbox_raises_and_holds_at_the_limit(
        self, pair: NamespacePair, tmp_path: Path
    ) -> None:
        with client(pair, mode="passive", outbox=outbox(tmp_path / "outbox.db", max_messages=10)) as geo:
            with geo.get_queue_sender(QUEUE) as sender:
                with refused(pair.primary, pair.secondary):
                    result = sender.send_messages([message(i, "o") for i in range(10)])
                    with pytest.raises(geobus.OutboxFullError) as single:
                        sender.send_messages(message(10, "o"))
                    with pytest.raises(geobus.OutboxFullError):
                        sender.send_messages([message(11, "o"), message(12, "o")])
                    full = sender.stats
                eventually(lambda: sender.stats.outbox_depth == 0, within=20, what="outbox drained")
                after = sender.send_messages(message(13, "o"))
        assert result.buffered == ("any",)
        assert isinstance(single.value, geobus.ReplicationError)
        assert full.outbox_depth == 10 and full.buffered == 10
        assert len(after.landed) == 1 and not after.buffered  # whichever breaker let it through first
        # What the caller was told was not taken is nowhere; the rest is there once.
        expected = [f"o-{i:04d}" for i in (*range(10), 13)]
        assert sorted(delivered_ids(pair)) == expected

    @pytest.mark.timeout(30)
    @pytest.mark.parametrize("damage", ["random-bytes", "truncated", "another-database"])
    def test_damaged_file_raises_outbox_error_and_is_left_unchanged(
        self, pair: NamespacePair, tmp_path: Path, damage: str
    ) -> None:
        path = tmp_path / "outbox.db"
        _damage(path, damage)
        before = path.read_bytes()
        loops = _loop_threads()
        with pytest.raises(geobus.OutboxError, match="not a geobus outbox"):
            client(pair, outbox=outbox(path))
        with pytest.raises(geobus.OutboxError, match="not a geobus outbox"):
            geobus.aio.GeoServiceBusClient(pair.config(outbox=outbox(path)))
        assert path.read_bytes() == before
        assert not Path(f"{path}-wal").exists()
        assert _loop_threads() == loops, "a failed construction left its event-loop thread running"


def _damage(path: Path, how: str) -> None:
    if how == "random-bytes":
        path.write_bytes(random.Random(4).randbytes(8192))
    elif how == "truncated":
        made = Outbox(geobus.OutboxPolicy(path=str(path)))
        made.append(ENTITY, ["any"], [message(i, "d") for i in range(50)])
        made.close()
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2 + 100])
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.commit()
        db.close()


def _loop_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "geobus-loop")


# -- the operator's override --------------------------------------------------------------------


class TestOperatorOverride:
    """The override file pauses or forces a namespace while it is there, and only then."""

    @pytest.mark.timeout(45)
    def test_pause_then_force_then_remove(
        self, pair: NamespacePair, tmp_path: Path
    ) -> None:
        path = tmp_path / "override.toml"
        override = geobus.OverridePolicy(path=str(path), interval=0.1)
        # No outbox and a patient breaker: each send shows where it could go.
        breaker = geobus.BreakerPolicy(failure_threshold=1000, cooldown=0.5)
        with client(pair, mode="passive", override=override, breaker=breaker) as geo:
            with geo.get_queue_sender(QUEUE) as sender:
                sends = Numbered()
                assert sender.send_messages(sends.next()).landed == ("primary",)

                _write(path, 'paused = ["primary"]\n')
                sends.until(sender, lambda r: r.landed == ("secondary",), what="the pause")
                held = pair.primary.counts(), sender.stats
                results = [sender.send_messages(sends.next()) for _ in range(10)]
                assert all(r.landed == ("secondary",) for r in results), results
                with refused(pair.secondary):
                    # Paused means paused: not even with the secondary down.
                    with pytest.raises(geobus.ReplicationError) as nowhere:
                        sender.send_messages(sends.next())
                    cause = nowhere.value.causes["primary"]
                    assert isinstance(cause, geobus.NamespaceUnavailableError) and cause.reason == "paused by operator"
                    untouched = pair.primary.counts(), sender.stats
                    assert untouched[0] == held[0]
                    assert untouched[1].messages_sent["primary"] == held[1].messages_sent["primary"]
                    assert untouched[1].send_failures["primary"] == held[1].send_failures["primary"]

                    _write(path, 'active = "secondary"\n')
                    # Forced but down: each send falls back to the primary, and the roles stay.
                    forced = sends.until(sender, lambda r: r.landed == ("primary",), what="the forced active")
                    assert forced.failed_over and sender.active_namespace == "secondary"
                    failovers = sender.stats.failovers
                    results = [sender.send_messages(sends.next()) for _ in range(3)]
                    assert all(r.landed == ("primary",) for r in results), results
                    assert sender.active_namespace == "secondary" and sender.stats.failovers == failovers
                sends.until(sender, lambda r: r.landed == ("secondary",), what="the secondary back")
                results = [sender.send_messages(sends.next()) for _ in range(3)]
                assert all(r.landed == ("secondary",) and not r.failed_over for r in results), results

                path.unlink()
                with refused(pair.secondary):
                    # Back to normal: a failure of the active namespace swaps the roles again.
                    sends.until(
                        sender, lambda r: sender.active_namespace == "primary", what="the override removed"
                    )
                assert sender.stats.failovers == failovers + 1
                assert sender.send_messages(sends.next()).landed == ("primary",)


class Numbered:
    """Numbers the override test's messages and polls by sending."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> ServiceBusMessage:
        self.count += 1
        return message(self.count, "v")

    def until(
        self, sender: Any, condition: Callable[[geobus.SendResult], bool], *, what: str, within: float = 10
    ) -> geobus.SendResult:
        """Send until a send's result satisfies ``condition`` (the file is re-read on a send)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                result = sender.send_messages(self.next())
            except geobus.ReplicationError:
                pass  # between two override files, nothing may be allowed
            else:
                if condition(result):
                    return result
            time.sleep(0.05)
        raise AssertionError(f"{what} not in effect within {within:g} s")


def _write(path: Path, text: str) -> None:
    """Replace the override file at once, as an operator's tooling should."""
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, path)


# -- the circuit breaker ------------------------------------------------------------------------


class TestCircuitBreaker:
    """A namespace that keeps failing is skipped without waiting, until its cool-down."""

    @pytest.mark.timeout(45)
    def test_black_holed_namespace_opens_its_breaker_and_is_skipped(
        self, pair: NamespacePair
    ) -> None:
        breaker = geobus.BreakerPolicy(failure_threshold=2, cooldown=60)
        with client(pair, mode="active", breaker=breaker) as geo:
            with geo.get_queue_sender(QUEUE) as sender:
                with faulted(LocalNamespace.black_hole, pair.secondary):
                    tripping = [sender.send_messages(message(i)) for i in range(2)]
                    opened = sender.stats
                    skipped = [sender.send_messages(message(i)) for i in range(2, 12)]
                    stats = sender.stats
        assert all(isinstance(r.missed["secondary"], geobus.NamespaceTimeoutError) for r in tripping)
        assert opened.breakers == {"primary": "closed", "secondary": "open"}
        assert opened.send_failures == {"primary": 0, "secondary": 2}
        for result in skipped:
            assert result.landed == ("primary",)
            cause = result.missed["secondary"]
            assert isinstance(cause, geobus.NamespaceUnavailableError) and cause.reason.startswith("circuit open")
        assert stats.breakers == opened.breakers
        assert stats.send_failures == {"primary": 0, "secondary": 2}, "an open breaker still let sends through"
        assert stats.messages_sent == {"primary": 12, "secondary": 0}
