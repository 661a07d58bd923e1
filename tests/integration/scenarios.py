"""Replication scenarios against two local namespaces, written once for the sync and async APIs.

Each ``*Contract`` class holds the tests of one behaviour; ``test_replication.py``
and ``test_replication_async.py`` subclass them with a ``driver`` fixture (see
``drivers.py``). Everything is the real azure-servicebus client talking to two
``geobus.local`` namespaces.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    ServiceBusAuthenticationError,
    ServiceBusError,
)

import geobus
from geobus.local import LocalNamespace

from .drivers import Driver

QUEUE = "orders"
TOPIC, SUBSCRIPTION = "events", "audit"
ATTEMPT, SEND = 1.0, 3.0
# Scheduling noise on two shared cores, a worker thread (sync) and the SDK's own polling.
MARGIN = 1.5
FAST = {
    "deadlines": geobus.Deadlines(attempt=ATTEMPT, send=SEND, receive_stall=2.0),
    "retry": geobus.SdkRetryPolicy(total=0),
}
IDLE = 0.5  # the worker's max_wait_time: how long an idle iteration lasts
# Messages locked under a connection a fault cut come back after their lock, as in Azure.
SHORT_LOCK = 2.0


# -- namespaces -----------------------------------------------------------------------------


@dataclass
class Pair:
    """The two namespaces of one test, as the client's ``primary`` and ``secondary``."""

    primary: LocalNamespace
    secondary: LocalNamespace

    def depth(self) -> dict[str, int]:
        """Messages each namespace still holds, in every entity and dead-letter queue."""
        return {
            "primary": sum(self.primary.counts().values()),
            "secondary": sum(self.secondary.counts().values()),
        }

    def empty(self) -> bool:
        return not any(self.depth().values())

    def client(self, driver: Driver, **options: Any) -> Any:
        """A geobus client over the two, through ``driver``; options as ``from_connection_strings``."""
        return driver.client(self.primary.connection_string, self.secondary.connection_string, **options)


def start_pair(factory: Callable[..., LocalNamespace], **options: Any) -> Pair:
    return Pair(factory(**options), factory(**options))


def wrong_key(namespace: LocalNamespace) -> str:
    """``namespace``'s connection string with a key it does not accept (never printed)."""
    key = base64.b64encode(b"not the key this namespace was started with").decode()
    good = namespace.connection_string
    start = good.index("SharedAccessKey=") + len("SharedAccessKey=")
    end = good.index(";", start)
    if good[start:end] == key:  # not an assert: its message would show the key
        raise RuntimeError("the namespace was started with the test's wrong key")
    return good[:start] + key + good[end:]


@asynccontextmanager
async def healed(namespace: LocalNamespace) -> AsyncIterator[None]:
    """Heal ``namespace`` on the way out, before the senders and clients around it close."""
    try:
        yield
    finally:
        namespace.heal()


async def eventually(condition: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        await asyncio.sleep(0.05)


# -- producer -------------------------------------------------------------------------------


def message(index: int, prefix: str = "m") -> ServiceBusMessage:
    return ServiceBusMessage(f"body {index}", message_id=f"{prefix}-{index:04d}")


@dataclass
class Sends:
    """What a producer was told: each send's result and how long it took."""

    results: dict[str, geobus.SendResult] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)

    async def send(self, sender: Any, msg: ServiceBusMessage) -> geobus.SendResult:
        began = time.monotonic()
        result: geobus.SendResult = await sender.send_messages(msg)
        self.durations[str(msg.message_id)] = time.monotonic() - began
        self.results[str(msg.message_id)] = result
        return result

    @property
    def acknowledged(self) -> set[str]:
        return set(self.results)

    def assert_within(self, seconds: float) -> None:
        slow = {mid: round(took, 2) for mid, took in self.durations.items() if took > seconds}
        assert not slow, f"sends over {seconds:g} s: {slow}"


# -- worker ---------------------------------------------------------------------------------

Decision = Literal["complete", "abandon"]


@dataclass
class Ledger:
    """What the worker's handler saw, per MessageId."""

    deliveries: Counter[str] = field(default_factory=Counter)
    completed: Counter[str] = field(default_factory=Counter)
    abandoned: Counter[str] = field(default_factory=Counter)
    settle_failures: Counter[str] = field(default_factory=Counter)
    namespaces: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"delivered {sum(self.deliveries.values())} ({len(self.deliveries)} ids), "
            f"completed {sum(self.completed.values())}, abandoned {sum(self.abandoned.values())}, "
            f"settle failures {sum(self.settle_failures.values())}, by namespace {dict(self.namespaces)}"
        )

    def assert_each_once(self, expected: set[str]) -> None:
        """Every expected message was handled and completed once; the only extra
        deliveries are those the handler asked for by abandoning."""
        unexpected = set(self.deliveries) - expected
        assert not unexpected, f"unexpected ids: {sorted(unexpected)[:5]}"
        lost = expected - set(self.deliveries)
        assert not lost, f"{len(lost)} acknowledged messages never reached the handler: {sorted(lost)[:5]}"
        assert not self.settle_failures, f"settlements failed: {dict(self.settle_failures)}"
        duplicated = {mid: n for mid, n in self.deliveries.items() if n != 1 + self.abandoned[mid]}
        assert not duplicated, f"handled more than once: {duplicated}"
        not_once = {mid: self.completed[mid] for mid in expected if self.completed[mid] != 1}
        assert not not_once, f"not completed exactly once: {not_once}"


async def handle(
    receiver: Any,
    msg: ServiceBusReceivedMessage,
    ledger: Ledger,
    decide: Callable[[ServiceBusReceivedMessage, Ledger], Decision] | None = None,
) -> None:
    """The worker's handler: record the message, then settle it as ``decide`` says."""
    key = str(msg.message_id)
    ledger.deliveries[key] += 1
    ledger.namespaces[receiver.namespace_of(msg)] += 1
    action = decide(msg, ledger) if decide is not None else "complete"
    try:
        if action == "abandon":
            await receiver.abandon_message(msg)
            ledger.abandoned[key] += 1
        else:
            await receiver.complete_message(msg)
            ledger.completed[key] += 1
    except ServiceBusError:
        # Its namespace failed under it: the copy comes back (or its twin does).
        ledger.settle_failures[key] += 1


async def work(
    receiver: Any,
    ledger: Ledger,
    *,
    done: Callable[[], bool],
    within: float,
    decide: Callable[[ServiceBusReceivedMessage, Ledger], Decision] | None = None,
) -> None:
    """``for message in receiver`` until ``done()``; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        async for msg in receiver:  # ends after IDLE seconds without a message
            await handle(receiver, msg, ledger, decide)
            if done() or loop.time() > deadline:
                break
        if loop.time() > deadline and not done():
            raise AssertionError(
                f"worker not done within {within:g} s: {ledger.summary()}; {receiver.stats}"
            )


# -- the contracts --------------------------------------------------------------------------


class ActiveReplicationContract:
    """Active mode: every message on both namespaces, each handled once."""

    @pytest.mark.timeout(60)
    async def test_thousand_messages_each_handled_once(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = start_pair(namespace_factory)
        ids = {f"m-{i:04d}" for i in range(1000)}
        ledger = Ledger()
        async with pair.client(driver, mode="active", **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                for start in range(0, 1000, 100):
                    result = await sender.send_messages([message(i) for i in range(start, start + 100)])
                    assert set(result.landed) == {"primary", "secondary"} and not result.missed
            assert pair.depth() == {"primary": 1000, "secondary": 1000}
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                await work(
                    receiver,
                    ledger,
                    done=lambda: len(ledger.completed) == 1000 and receiver.stats.duplicates_absorbed == 1000,
                    within=40,
                )
                await eventually(pair.empty, within=10, what="both queues empty")
                stats = receiver.stats
        ledger.assert_each_once(ids)
        assert stats.duplicates_absorbed == 1000
        assert stats.delivered == 1000
        assert stats.received == {"primary": 1000, "secondary": 1000}
        assert pair.depth() == {"primary": 0, "secondary": 0}

    @pytest.mark.timeout(45)
    async def test_concurrent_sends_from_one_sender_each_land_on_both(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        # azure-servicebus senders are not coroutine-safe; geobus's are (and its sync
        # ones thread-safe), from the very first send on an unopened link.
        pair = start_pair(namespace_factory)
        sends, ledger = Sends(), Ledger()
        async with pair.client(driver, mode="active", **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                results = await asyncio.gather(*(sends.send(sender, message(i, "c")) for i in range(20)))
            assert pair.depth() == {"primary": 20, "secondary": 20}
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                await work(
                    receiver, ledger, done=lambda: len(ledger.completed) == 20 and pair.empty(), within=30
                )
        assert all(set(r.landed) == {"primary", "secondary"} for r in results), [r.missed for r in results]
        sends.assert_within(SEND + MARGIN)
        ledger.assert_each_once(sends.acknowledged)

    @pytest.mark.timeout(45)
    async def test_topic_subscription_each_handled_once(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = start_pair(namespace_factory, topics={TOPIC: [SUBSCRIPTION]})
        ids = {f"e-{i:04d}" for i in range(100)}
        ledger = Ledger()
        async with pair.client(driver, mode="active", **FAST) as client:
            async with client.get_topic_sender(TOPIC) as sender:
                for i in range(100):
                    result = await sender.send_messages(message(i, "e"))
                    assert set(result.landed) == {"primary", "secondary"}
            assert pair.depth() == {"primary": 100, "secondary": 100}
            receiver = client.get_subscription_receiver(TOPIC, SUBSCRIPTION, max_wait_time=IDLE)
            async with receiver:
                await work(
                    receiver,
                    ledger,
                    done=lambda: len(ledger.completed) == 100 and receiver.stats.duplicates_absorbed == 100,
                    within=30,
                )
                await eventually(pair.empty, within=10, what="both subscriptions empty")
        ledger.assert_each_once(ids)

    @pytest.mark.timeout(45)
    async def test_abandoned_first_copy_is_processed_once(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = start_pair(namespace_factory)
        ids = {f"a-{i:04d}" for i in range(20)}
        ledger = Ledger()

        def abandon_first(msg: ServiceBusReceivedMessage, seen: Ledger) -> Decision:
            return "abandon" if seen.deliveries[str(msg.message_id)] == 1 else "complete"

        async with pair.client(driver, mode="active", **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                await sender.send_messages([message(i, "a") for i in range(20)])
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                await work(
                    receiver,
                    ledger,
                    done=lambda: len(ledger.completed) == 20 and receiver.stats.duplicates_absorbed == 20,
                    decide=abandon_first,
                    within=30,
                )
                await eventually(pair.empty, within=10, what="both queues empty")
        ledger.assert_each_once(ids)
        # The abandoned copy was not the end of it: exactly one more delivery, completed.
        assert all(ledger.deliveries[mid] == 2 for mid in ids), ledger.summary()
        assert ledger.abandoned == Counter(dict.fromkeys(ids, 1)), ledger.summary()


class PassiveFailoverContract:
    """Passive mode: bounded sends through refusal and black holes, nothing acknowledged lost."""

    @pytest.mark.timeout(90)
    async def test_refused_then_black_holed_primary_mid_stream(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        # A short lock: whatever the fault left locked on the primary comes back soon after.
        pair = start_pair(namespace_factory, lock_duration=SHORT_LOCK)
        sends, ledger = Sends(), Ledger()
        on_primary = {f"m-{i:04d}" for i in range(30)}
        healthy = asyncio.Event()

        def drained() -> bool:
            return healthy.is_set() and set(ledger.deliveries) >= sends.acknowledged and pair.empty()

        async with pair.client(driver, mode="passive", **FAST) as client:
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                worker: asyncio.Task[None] | None = None
                try:
                    async with client.get_queue_sender(QUEUE) as sender, healed(pair.primary):
                        for i in range(90):
                            if i == 30:
                                pair.primary.refuse()
                                # The worker starts with the primary's 30 out of its reach.
                                worker = asyncio.create_task(work(receiver, ledger, done=drained, within=60))
                            elif i == 60:
                                pair.primary.black_hole()
                            await sends.send(sender, message(i))
                            await asyncio.sleep(0.02)  # a steady producer, not a burst
                        stats = sender.stats
                        # A dead primary must not stall the secondary's stream.
                        await eventually(
                            lambda: set(ledger.deliveries) >= sends.acknowledged - on_primary,
                            within=20,
                            what="the secondary's messages handled during the outage",
                        )
                        assert not set(ledger.deliveries) & on_primary
                    healthy.set()
                    assert worker is not None
                    await worker  # the primary's messages arrive late, after the heal
                finally:
                    if worker is not None:
                        worker.cancel()
        sends.assert_within(SEND + MARGIN)
        landed = [sends.results[f"m-{i:04d}"].landed for i in range(90)]
        assert landed == [("primary",)] * 30 + [("secondary",)] * 60
        assert [i for i in range(90) if sends.results[f"m-{i:04d}"].failed_over] == [30]
        assert stats.failovers == 1 and stats.active_namespace == "secondary"
        ledger.assert_each_once(sends.acknowledged)
        assert ledger.namespaces == Counter(primary=30, secondary=60)
        assert pair.depth() == {"primary": 0, "secondary": 0}

    @pytest.mark.timeout(45)
    async def test_black_hole_under_an_open_sender_fails_over_within_deadline(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = start_pair(namespace_factory)
        sends, ledger = Sends(), Ledger()
        async with pair.client(driver, mode="passive", **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender, healed(pair.primary):
                await sends.send(sender, message(0))
                pair.primary.black_hole()
                # Concurrent sends each meet the hole; the roles swap once.
                results = await asyncio.gather(*(sends.send(sender, message(i)) for i in range(1, 6)))
                after = [await sends.send(sender, message(i)) for i in range(6, 10)]
                stats = sender.stats
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                # A copy the black hole swallowed may land when it heals: absorbed, not handled.
                await work(
                    receiver, ledger, done=lambda: len(ledger.completed) == 10 and pair.empty(), within=30
                )
        sends.assert_within(SEND + MARGIN)
        assert all(r.landed == ("secondary",) for r in results + after)
        assert stats.failovers == 1 and stats.active_namespace == "secondary"
        slowest_after_swap = max(sends.durations[f"m-{i:04d}"] for i in range(6, 10))
        assert slowest_after_swap < ATTEMPT, "sends after the swap still wait on the hole"
        ledger.assert_each_once(sends.acknowledged)

    @pytest.mark.timeout(45)
    async def test_black_holed_primary_does_not_stall_a_fresh_client(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        # The sync SDK hangs in SASL on a black-holed namespace; geobus must not.
        pair = start_pair(namespace_factory)
        sends = Sends()
        pair.primary.black_hole()
        async with pair.client(driver, mode="passive", **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender, healed(pair.primary):
                result = await sends.send(sender, message(0))
                await sends.send(sender, message(1))
        sends.assert_within(SEND + MARGIN)
        assert result.failed_over and result.landed == ("secondary",)
        assert isinstance(result.missed["primary"], geobus.NamespaceTimeoutError)
        assert pair.secondary.counts() == {QUEUE: 2}

    @pytest.mark.timeout(45)
    async def test_timed_out_send_that_landed_is_absorbed(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = start_pair(namespace_factory)
        sends, ledger = Sends(), Ledger()
        async with pair.client(driver, mode="passive", **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender, healed(pair.primary):
                await sends.send(sender, message(0))  # the link is open: m-0001 goes out at once
                pair.primary.set_latency(ATTEMPT + 1.0)
                result = await sends.send(sender, message(1))
                # The primary stores it after geobus gave up on it.
                await eventually(
                    lambda: pair.primary.counts().get(QUEUE) == 2, within=10, what="m-0001 on the primary"
                )
            assert pair.depth() == {"primary": 2, "secondary": 1}
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                await work(
                    receiver,
                    ledger,
                    done=lambda: len(ledger.completed) == 2 and receiver.stats.duplicates_absorbed == 1,
                    within=30,
                )
                await eventually(pair.empty, within=10, what="both queues empty")
        sends.assert_within(SEND + MARGIN)
        assert result.failed_over and result.landed == ("secondary",)
        assert isinstance(result.missed["primary"], geobus.NamespaceTimeoutError)
        ledger.assert_each_once({"m-0000", "m-0001"})


class RejectionContract:
    """The caller's mistakes are raised unchanged, with no failover and nothing sent."""

    @pytest.mark.timeout(30)
    @pytest.mark.parametrize("mode", ["passive", "active"])
    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param(lambda: _with_id(ServiceBusMessage("x"), ""), id="empty-id"),
            pytest.param(
                lambda: AmqpAnnotatedMessage(data_body=b"x", properties={"message_id": "x" * 129}),
                id="129-char-id",
            ),
        ],
    )
    async def test_bad_message_id_raises_before_sending(
        self,
        driver: Driver,
        namespace_factory: Callable[..., LocalNamespace],
        mode: str,
        bad: Callable[[], Any],
    ) -> None:
        pair = start_pair(namespace_factory)
        async with pair.client(driver, mode=mode, **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                with pytest.raises(ValueError, match="message_id"):
                    await sender.send_messages(bad())
                with pytest.raises(ValueError, match="message_id"):
                    await sender.send_messages([message(0), bad()])  # the good one is not sent either
                stats = sender.stats
        assert pair.depth() == {"primary": 0, "secondary": 0}
        assert stats.messages_sent == {"primary": 0, "secondary": 0} and stats.failovers == 0

    @pytest.mark.timeout(30)
    async def test_oversized_body_raises_unchanged_without_swap(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        # Only the primary is small: a failover would wrongly land it on the secondary.
        pair = Pair(namespace_factory(max_message_size=4096), namespace_factory())
        async with pair.client(driver, mode="passive", **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                await sender.send_messages(message(0))
                with pytest.raises(MessageSizeExceededError):
                    await sender.send_messages(ServiceBusMessage(b"x" * 16_384, message_id="big"))
                stats = sender.stats
        assert stats.failovers == 0 and stats.active_namespace == "primary"
        assert pair.depth() == {"primary": 1, "secondary": 0}

    @pytest.mark.timeout(30)
    async def test_wrong_key_on_primary_raises_unchanged_without_swap(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = start_pair(namespace_factory)
        # The SDK needs about a second to report a refused token; give it room to.
        options = {**FAST, "deadlines": geobus.Deadlines(attempt=2.5, send=5.0)}
        primary, secondary = wrong_key(pair.primary), pair.secondary.connection_string
        async with driver.client(primary, secondary, mode="passive", **options) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                for i in range(2):
                    with pytest.raises(ServiceBusAuthenticationError):
                        await sender.send_messages(message(i))
                stats = sender.stats
        assert stats.failovers == 0 and stats.active_namespace == "primary"
        assert stats.messages_sent == {"primary": 0, "secondary": 0}
        # Nothing went anywhere quietly: each message the caller was told about is absent.
        assert pair.depth() == {"primary": 0, "secondary": 0}

    @pytest.mark.timeout(45)
    async def test_wrong_key_on_secondary_only_keeps_sending_to_primary(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        pair = start_pair(namespace_factory)
        sends, ledger = Sends(), Ledger()
        primary, secondary = pair.primary.connection_string, wrong_key(pair.secondary)
        async with driver.client(primary, secondary, mode="passive", **FAST) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                for i in range(20):
                    await sends.send(sender, message(i))
                stats = sender.stats
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                # The secondary's stream fails on every reconnect; the primary's must not stall.
                await work(
                    receiver, ledger, done=lambda: len(ledger.completed) == 20 and pair.empty(), within=30
                )
        assert all(r.landed == ("primary",) and not r.failed_over for r in sends.results.values())
        assert stats.failovers == 0 and stats.messages_sent == {"primary": 20, "secondary": 0}
        ledger.assert_each_once(sends.acknowledged)
        assert ledger.namespaces == Counter(primary=20)


def _with_id(msg: ServiceBusMessage, message_id: str) -> ServiceBusMessage:
    msg.message_id = message_id  # the SDK's constructor would replace an empty id
    return msg
