"""Replication through the sync and async APIs: the real SDK against two local namespaces.

Each test takes the ``driver`` fixture, so it runs once through ``geobus`` (each
call from a worker thread) and once through ``geobus.aio``; see ``drivers.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusAuthenticationError

import geobus
from geobus.local import LocalNamespace
from geobus.testing import NamespacePair, eventually_async

from .drivers import Driver
from .helpers import (
    ATTEMPT,
    FAST,
    IDLE,
    MARGIN,
    QUEUE,
    SEND,
    SHORT_LOCK,
    SUBSCRIPTION,
    TOPIC,
    Decision,
    Ledger,
    Sends,
    depth,
    empty,
    healed,
    message,
    start_pair,
    work,
    work_until_empty,
    wrong_key,
)


class TestActiveReplication:
    """Active mode: every message on both namespaces, each handled once."""

    @pytest.mark.timeout(60)
    async def test_thousand_messages_each_handled_once(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        ids = {f"m-{i:04d}" for i in range(1000)}
        ledger = Ledger()
        async with driver.client(pair.config(mode="active", **FAST)) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                for start in range(0, 1000, 100):
                    result = await sender.send_messages([message(i) for i in range(start, start + 100)])
                    assert set(result.landed) == {"primary", "secondary"} and not result.missed
            assert depth(pair) == {"primary": 1000, "secondary": 1000}
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                await work_until_empty(
                    receiver, ledger, pair, completed=1000, absorbed=1000, within=40
                )
                stats = receiver.stats
        ledger.assert_each_once(ids)
        assert stats.duplicates_absorbed == 1000
        assert stats.delivered == 1000
        assert stats.received == {"primary": 1000, "secondary": 1000}
        assert depth(pair) == {"primary": 0, "secondary": 0}

    @pytest.mark.timeout(45)
    async def test_concurrent_sends_from_one_sender_each_land_on_both(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        # azure-servicebus senders are not coroutine-safe; geobus's are (and its sync
        # ones thread-safe), from the very first send on an unopened link.
        sends, ledger = Sends(), Ledger()
        async with driver.client(pair.config(mode="active", **FAST)) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                results = await asyncio.gather(*(sends.send(sender, message(i, "c")) for i in range(20)))
            assert depth(pair) == {"primary": 20, "secondary": 20}
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                await work_until_empty(receiver, ledger, pair, completed=20, within=30)
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
        async with driver.client(pair.config(mode="active", **FAST)) as client:
            async with client.get_topic_sender(TOPIC) as sender:
                for i in range(100):
                    result = await sender.send_messages(message(i, "e"))
                    assert set(result.landed) == {"primary", "secondary"}
            assert depth(pair) == {"primary": 100, "secondary": 100}
            receiver = client.get_subscription_receiver(TOPIC, SUBSCRIPTION, max_wait_time=IDLE)
            async with receiver:
                await work_until_empty(
                    receiver, ledger, pair, completed=100, absorbed=100, within=30
                )
        ledger.assert_each_once(ids)

    @pytest.mark.timeout(45)
    async def test_abandoned_first_copy_is_processed_once(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        ids = {f"a-{i:04d}" for i in range(20)}
        ledger = Ledger()

        def abandon_first(msg: ServiceBusReceivedMessage, seen: Ledger) -> Decision:
            return "abandon" if seen.deliveries[str(msg.message_id)] == 1 else "complete"

        async with driver.client(pair.config(mode="active", **FAST)) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                await sender.send_messages([message(i, "a") for i in range(20)])
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                await work_until_empty(
                    receiver, ledger, pair, completed=20, absorbed=20, decide=abandon_first, within=30
                )
        ledger.assert_each_once(ids)
        # The abandoned copy was not the end of it: exactly one more delivery, completed.
        assert all(ledger.deliveries[mid] == 2 for mid in ids), ledger.summary()
        assert ledger.abandoned == Counter(dict.fromkeys(ids, 1)), ledger.summary()


class TestPassiveFailover:
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
            return healthy.is_set() and set(ledger.deliveries) >= sends.acknowledged and empty(pair)

        async with driver.client(pair.config(mode="passive", **FAST)) as client:
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
                        await eventually_async(
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
        assert depth(pair) == {"primary": 0, "secondary": 0}

    @pytest.mark.timeout(45)
    async def test_black_hole_under_an_open_sender_fails_over_within_deadline(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        sends, ledger = Sends(), Ledger()
        async with driver.client(pair.config(mode="passive", **FAST)) as client:
            async with client.get_queue_sender(QUEUE) as sender, healed(pair.primary):
                await sends.send(sender, message(0))
                pair.primary.black_hole()
                # Concurrent sends each meet the hole; the roles swap once.
                results = await asyncio.gather(*(sends.send(sender, message(i)) for i in range(1, 6)))
                after = [await sends.send(sender, message(i)) for i in range(6, 10)]
                stats = sender.stats
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                # A copy the black hole swallowed may land when it heals: absorbed, not handled.
                await work_until_empty(receiver, ledger, pair, completed=10, within=30)
        sends.assert_within(SEND + MARGIN)
        assert all(r.landed == ("secondary",) for r in results + after)
        assert stats.failovers == 1 and stats.active_namespace == "secondary"
        slowest_after_swap = max(sends.durations[f"m-{i:04d}"] for i in range(6, 10))
        assert slowest_after_swap < ATTEMPT, "sends after the swap still wait on the hole"
        ledger.assert_each_once(sends.acknowledged)

    @pytest.mark.timeout(45)
    async def test_black_holed_primary_does_not_stall_a_fresh_client(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        # The sync SDK hangs in SASL on a black-holed namespace; geobus must not.
        sends = Sends()
        pair.primary.black_hole()
        async with driver.client(pair.config(mode="passive", **FAST)) as client:
            async with client.get_queue_sender(QUEUE) as sender, healed(pair.primary):
                result = await sends.send(sender, message(0))
                await sends.send(sender, message(1))
        sends.assert_within(SEND + MARGIN)
        assert result.failed_over and result.landed == ("secondary",)
        assert isinstance(result.missed["primary"], geobus.NamespaceTimeoutError)
        assert pair.secondary.counts() == {QUEUE: 2}

    @pytest.mark.timeout(45)
    async def test_timed_out_send_that_landed_is_absorbed(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        sends, ledger = Sends(), Ledger()
        async with driver.client(pair.config(mode="passive", **FAST)) as client:
            async with client.get_queue_sender(QUEUE) as sender, healed(pair.primary):
                await sends.send(sender, message(0))  # the link is open: m-0001 goes out at once
                pair.primary.set_latency(ATTEMPT + 1.0)
                result = await sends.send(sender, message(1))
                # The primary stores it after geobus gave up on it.
                await eventually_async(
                    lambda: pair.primary.counts().get(QUEUE) == 2, within=10, what="m-0001 on the primary"
                )
            assert depth(pair) == {"primary": 2, "secondary": 1}
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                await work_until_empty(receiver, ledger, pair, completed=2, absorbed=1, within=30)
        sends.assert_within(SEND + MARGIN)
        assert result.failed_over and result.landed == ("secondary",)
        assert isinstance(result.missed["primary"], geobus.NamespaceTimeoutError)
        ledger.assert_each_once({"m-0000", "m-0001"})


class TestRejections:
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
        pair: NamespacePair,
        mode: str,
        bad: Callable[[], Any],
    ) -> None:
        async with driver.client(pair.config(mode=mode, **FAST)) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                with pytest.raises(ValueError, match="message_id"):
                    await sender.send_messages(bad())
                with pytest.raises(ValueError, match="message_id"):
                    await sender.send_messages([message(0), bad()])  # the good one is not sent either
                stats = sender.stats
        assert depth(pair) == {"primary": 0, "secondary": 0}
        assert stats.messages_sent == {"primary": 0, "secondary": 0} and stats.failovers == 0

    @pytest.mark.timeout(30)
    async def test_oversized_body_raises_unchanged_without_swap(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        # Only the primary is small: a failover would wrongly land it on the secondary.
        pair = NamespacePair(namespace_factory(max_message_size=4096), namespace_factory())
        async with driver.client(pair.config(mode="passive", **FAST)) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                await sender.send_messages(message(0))
                with pytest.raises(MessageSizeExceededError):
                    await sender.send_messages(ServiceBusMessage(b"x" * 16_384, message_id="big"))
                stats = sender.stats
        assert stats.failovers == 0 and stats.active_namespace == "primary"
        assert depth(pair) == {"primary": 1, "secondary": 0}

    @pytest.mark.timeout(30)
    async def test_wrong_key_on_primary_raises_unchanged_without_swap(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        # The SDK needs about a second to report a refused token; give it room to.
        options = {**FAST, "deadlines": geobus.Deadlines(attempt=2.5, send=5.0)}
        primary, secondary = wrong_key(pair.primary), pair.secondary.connection_string
        config = geobus.ReplicationConfig.from_connection_strings(primary, secondary, mode="passive", **options)
        async with driver.client(config) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                for i in range(2):
                    with pytest.raises(ServiceBusAuthenticationError):
                        await sender.send_messages(message(i))
                stats = sender.stats
        assert stats.failovers == 0 and stats.active_namespace == "primary"
        assert stats.messages_sent == {"primary": 0, "secondary": 0}
        # Nothing went anywhere quietly: each message the caller was told about is absent.
        assert depth(pair) == {"primary": 0, "secondary": 0}

    @pytest.mark.timeout(45)
    async def test_wrong_key_on_secondary_only_keeps_sending_to_primary(
        self, driver: Driver, pair: NamespacePair
    ) -> None:
        sends, ledger = Sends(), Ledger()
        primary, secondary = pair.primary.connection_string, wrong_key(pair.secondary)
        config = geobus.ReplicationConfig.from_connection_strings(primary, secondary, mode="passive", **FAST)
        async with driver.client(config) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                for i in range(20):
                    await sends.send(sender, message(i))
                stats = sender.stats
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE) as receiver:
                # The secondary's stream fails on every reconnect; the primary's must not stall.
                await work_until_empty(receiver, ledger, pair, completed=20, within=30)
        assert all(r.landed == ("primary",) and not r.failed_over for r in sends.results.values())
        assert stats.failovers == 0 and stats.messages_sent == {"primary": 20, "secondary": 0}
        ledger.assert_each_once(sends.acknowledged)
        assert ledger.namespaces == Counter(primary=20)


class TestClosingAReceiver:
    """What a receiver fetched but never handed out is not left locked when it closes."""

    @pytest.mark.timeout(45)
    async def test_fetched_messages_are_given_back(
        self, driver: Driver, namespace_factory: Callable[..., LocalNamespace]
    ) -> None:
        """Abandoned on close, so the next receiver gets them now, not when their 60 s locks
        expire (the SDK's own receiver leaves them locked)."""
        pair = start_pair(namespace_factory, lock_duration=60)
        rest: list[str] = []
        async with driver.client(pair.config()) as client:
            async with client.get_queue_sender(QUEUE) as sender:
                await sender.send_messages([message(i) for i in range(5)])
            async with client.get_queue_receiver(QUEUE, prefetch=10) as receiver:
                [first] = await receiver.receive_messages(1, max_wait_time=5)
                await receiver.complete_message(first)
                # The other four are fetched, not handed out.
                await eventually_async(
                    lambda: receiver.stats.received["primary"] == 5, what=lambda: receiver.stats
                )
            async with client.get_queue_receiver(QUEUE, max_wait_time=3) as receiver:
                async for msg in receiver:
                    rest.append(str(msg.message_id))
                    await receiver.complete_message(msg)
                    if len(rest) == 4:
                        break
        assert sorted(rest) == sorted({f"m-{i:04d}" for i in range(5)} - {str(first.message_id)})


def _with_id(msg: ServiceBusMessage, message_id: str) -> ServiceBusMessage:
    msg.message_id = message_id  # the SDK's constructor would replace an empty id
    return msg
