"""The SDK contract, async: the real ``azure.servicebus.aio`` client against ``geobus.local``.

The behaviours of ``test_contract.py`` through the async client, which has its
own transport and its own sender, receiver, settlement, management and
AutoLockRenewer code. Three live wholly in the server and are checked once,
there: two namespaces' isolation, a scheduled message's enqueued time, and the
SQLite store across kill -9. (Every sender or receiver costs about a second to
open and close, so a repeat is not free.)

The namespace's clock (``ServerClock``) is moved past locks, TTLs, schedules and
duplicate windows; only AutoLockRenewer holds a short lock in real time.
Absences are proven by order: a message that should not come would have a lower
sequence number than a later one that does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
)

from geobus.local import LocalNamespace
from geobus.testing import eventually_async

from .contract_helpers import (
    DEAD_LETTERS,
    LATER,
    LOCK,
    NO_KEEP_ALIVE,
    QUEUE,
    QUICKLY,
    RENEWED_LOCK_ASYNC,
    ROUND_TRIP,
    SUBSCRIPTIONS,
    TOPIC,
    WITHIN,
    ServerClock,
    areceive,
    assert_round_trip,
    batches,
    ids,
    in_seconds,
    millis,
    numbered,
    properties,
    wrong_key,
)

pytestmark = pytest.mark.timeout(60)

Factory = Callable[..., LocalNamespace]


def _client(ns: LocalNamespace, **options: Any) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(ns.connection_string, **options)


def _elapsed_since(began: float) -> float:
    return asyncio.get_running_loop().time() - began


class TestRoundTrip:
    """Messages come back whole, once, in order."""

    async def test_a_thousand_messages_keep_body_id_properties_and_order(
        self, namespace: LocalNamespace
    ) -> None:
        sent = [numbered(i) for i in range(ROUND_TRIP)]
        async with _client(namespace) as client:
            async with client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender:
                for batch in batches(sent):
                    await sender.send_messages(batch)
            assert namespace.counts() == {QUEUE: ROUND_TRIP}
            async with client.get_queue_receiver(QUEUE) as receiver:
                received = await areceive(receiver, ROUND_TRIP)
                for message in received:
                    await receiver.complete_message(message)
        assert_round_trip(sent, received)
        assert namespace.counts() == {}

    async def test_receive_and_delete_takes_messages_without_settling(
        self, namespace: LocalNamespace
    ) -> None:
        sent = [numbered(i) for i in range(10)]
        async with _client(namespace) as client:
            async with client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender:
                await sender.send_messages(sent)
            async with client.get_queue_receiver(
                QUEUE, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            ) as receiver:
                received = await areceive(receiver, len(sent))
                assert namespace.counts() == {}, "gone as soon as delivered"
        assert_round_trip(sent, received)
        assert all(m.lock_token is None for m in received)


class TestSettlement:
    """Abandon, dead-letter and defer as Service Bus does them."""

    async def test_abandon_counts_deliveries_and_dead_letters_keep_their_reason(
        self, namespace_factory: Factory
    ) -> None:
        ns = namespace_factory(max_delivery_count=3)
        deliveries, locks = [], []
        async with _client(ns) as client:
            async with client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender:
                await sender.send_messages([numbered(1), numbered(2)])
            async with client.get_queue_receiver(QUEUE) as receiver:
                (rejected,) = await areceive(receiver)
                await receiver.dead_letter_message(
                    rejected, reason="ValidationFailed", error_description="total is negative"
                )
                for _ in range(3):
                    (message,) = await areceive(receiver)
                    deliveries.append(message)
                    locks.append(message.lock_token)
                    await receiver.abandon_message(message)
            assert ns.counts() == {DEAD_LETTERS: 2}
            async with client.get_queue_receiver(
                QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dlq:
                dead = await areceive(dlq, 2)
                for message in dead:
                    await dlq.complete_message(message)
        assert [m.delivery_count for m in deliveries] == [0, 1, 2]
        assert {(m.message_id, m.sequence_number) for m in deliveries} == {("m-0002", 2)}
        assert len(set(locks)) == 3, "a new lock for each delivery"
        explicit, exhausted = dead
        assert (explicit.message_id, str(explicit)) == ("m-0001", "body 1")
        assert explicit.dead_letter_reason == "ValidationFailed"
        assert explicit.dead_letter_error_description == "total is negative"
        assert properties(explicit)["index"] == 1, "the sender's properties survive dead-lettering"
        assert (exhausted.message_id, str(exhausted)) == ("m-0002", "body 2")
        assert exhausted.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert ns.counts() == {}

    async def test_deferred_message_is_received_only_by_its_sequence_number(
        self, namespace: LocalNamespace
    ) -> None:
        async with (
            _client(namespace) as client,
            client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            await sender.send_messages(numbered(1))
            (message,) = await areceive(receiver)
            await receiver.defer_message(message)
            await sender.send_messages(numbered(2))
            later = await areceive(receiver, until_id="m-0002")
            for other in later:
                await receiver.complete_message(other)
            (deferred,) = await receiver.receive_deferred_messages([message.sequence_number])
            await receiver.complete_message(deferred)
        assert ids(later) == ["m-0002"], "the deferred message would have come first"
        assert (deferred.message_id, deferred.sequence_number) == (
            "m-0001",
            message.sequence_number,
        )
        assert namespace.counts() == {}


class TestPeek:
    """Peeking shows messages without locking them or counting a delivery."""

    async def test_peek_neither_locks_nor_counts_a_delivery(
        self, namespace: LocalNamespace
    ) -> None:
        sent = [numbered(i) for i in range(3)]
        async with (
            _client(namespace) as client,
            client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            await sender.send_messages(sent)
            peeked = await receiver.peek_messages(max_message_count=10)
            first = peeked[0].sequence_number
            received = await areceive(receiver, len(sent))
            # Locked messages can still be peeked; sequence_number= restarts the peek cursor.
            while_locked = await receiver.peek_messages(max_message_count=10, sequence_number=first)
            for message in received:
                await receiver.complete_message(message)
            after = await receiver.peek_messages(max_message_count=10, sequence_number=first)
        assert ids(peeked) == ids(sent) == ids(received) == ids(while_locked)
        assert [m.sequence_number for m in peeked] == [m.sequence_number for m in received]
        assert [m.delivery_count for m in received] == [0, 0, 0]
        assert [m.delivery_count for m in while_locked] == [0, 0, 0]
        assert after == []


class TestScheduling:
    """Scheduled messages wait for their time on the namespace's clock; cancelled ones never come."""

    async def test_scheduled_message_waits_for_its_time_and_a_cancelled_one_never_comes(
        self, namespace_factory: Factory
    ) -> None:
        clock = ServerClock()
        ns = namespace_factory(clock=clock)
        async with (
            _client(ns) as client,
            client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            at = clock.utc(after=LATER)
            cancelled, kept = await sender.schedule_messages([numbered(1), numbered(2)], at)
            await sender.cancel_scheduled_messages(cancelled)
            await sender.send_messages(numbered(3))
            early = await areceive(receiver, until_id="m-0003")
            for message in early:
                await receiver.complete_message(message)
            # Peeking starts after the last sequence number received unless told where.
            waiting = await receiver.peek_messages(max_message_count=10, sequence_number=cancelled)
            clock.advance(LATER + 1)
            due = await areceive(receiver, until_id="m-0002")
            for message in due:
                await receiver.complete_message(message)
        assert cancelled < kept
        assert ids(early) == ["m-0003"], "only their time held the scheduled messages back"
        assert ids(due) == ["m-0002"], "the cancelled message would have come first"
        assert [(m.sequence_number, m.state) for m in waiting] == [
            (kept, ServiceBusMessageState.SCHEDULED)
        ]
        assert (due[0].sequence_number, due[0].state) == (kept, ServiceBusMessageState.ACTIVE)
        assert due[0].scheduled_enqueue_time_utc == millis(at)
        assert ns.counts() == {}


class TestLocks:
    """A lock that runs out is lost and the message redelivered; AutoLockRenewer keeps one."""

    async def test_expired_lock_is_lost_and_the_message_comes_back(
        self, namespace_factory: Factory
    ) -> None:
        clock = ServerClock()
        ns = namespace_factory(clock=clock, lock_duration=LOCK)
        async with (
            _client(ns) as client,
            client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            await sender.send_messages(numbered(1))
            (message,) = await areceive(receiver)
            clock.advance(LOCK + 1)
            # The client still believes in the lock, so the refusal below is the server's.
            assert message.locked_until_utc > datetime.now(timezone.utc)
            with pytest.raises(MessageLockLostError):
                await receiver.complete_message(message)
            (again,) = await areceive(receiver)
            await receiver.complete_message(again)
        assert (again.message_id, again.sequence_number) == (
            message.message_id,
            message.sequence_number,
        )
        assert (message.delivery_count, again.delivery_count) == (0, 1)
        assert ns.counts() == {}

    async def test_auto_lock_renewer_holds_a_short_lock_past_its_duration(
        self, namespace_factory: Factory
    ) -> None:
        ns = namespace_factory(lock_duration=RENEWED_LOCK_ASYNC)
        async with (
            _client(ns) as client,
            client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            await sender.send_messages([numbered(1), numbered(2)])
            held, unrenewed = await areceive(receiver, 2)
            first_expiry = max(held.locked_until_utc, unrenewed.locked_until_utc)
            async with AutoLockRenewer() as renewer:
                renewer.register(receiver, held, max_lock_renewal_duration=WITHIN)
                await eventually_async(
                    lambda: datetime.now(timezone.utc) > first_expiry + in_seconds(0.2),
                    within=WITHIN,
                    what="the first lock's expiry passes",
                )
                assert held.locked_until_utc > first_expiry, "the renewer renewed"
                await receiver.complete_message(held)
            # The other message's lock ran out on the server, which counted a delivery.
            (again,) = await areceive(receiver)
            await receiver.complete_message(again)
        assert held.auto_renew_error is None
        assert (again.message_id, again.delivery_count) == (unrenewed.message_id, 1)
        assert ns.counts() == {}


class TestTopics:
    """A topic's subscriptions each get every message."""

    async def test_every_subscription_gets_every_message(self, namespace_factory: Factory) -> None:
        ns = namespace_factory(topics={TOPIC: SUBSCRIPTIONS})
        sent = [numbered(i) for i in range(20)]
        received = {}
        async with _client(ns) as client:
            async with client.get_topic_sender(TOPIC, **NO_KEEP_ALIVE) as sender:
                await sender.send_messages(sent)
            for name in SUBSCRIPTIONS:
                async with client.get_subscription_receiver(TOPIC, name) as receiver:
                    received[name] = await areceive(receiver, len(sent))
                    for message in received[name]:
                        await receiver.complete_message(message)
        for name in SUBSCRIPTIONS:
            assert_round_trip(sent, received[name])
        first, second = ([m.sequence_number for m in received[n]] for n in SUBSCRIPTIONS)
        assert first == second, "one sequence number per message, whatever the subscription"
        assert ns.counts() == {}


class TestEntityOptions:
    """Time to live and duplicate detection, on the namespace's clock."""

    async def test_expired_messages_are_never_received(self, namespace_factory: Factory) -> None:
        clock = ServerClock()
        ns = namespace_factory(clock=clock, default_ttl=LATER)
        own = ServiceBusMessage("own", message_id="own-ttl", time_to_live=in_seconds(LATER / 2))
        default = ServiceBusMessage("default", message_id="default-ttl")
        async with (
            _client(ns) as client,
            client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            await sender.send_messages([own, default])
            clock.advance(LATER + 1)
            await sender.send_messages(numbered(1))
            received = await areceive(receiver, until_id="m-0001")
            for message in received:
                await receiver.complete_message(message)
        assert ids(received) == ["m-0001"], "the expired messages would have come first"
        assert ns.counts() == {}

    async def test_duplicate_message_id_within_the_window_is_stored_once(
        self, namespace_factory: Factory
    ) -> None:
        clock = ServerClock()
        ns = namespace_factory(clock=clock, duplicate_detection_window=LATER)
        async with (
            _client(ns) as client,
            client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            await sender.send_messages(numbered(1))
            await sender.send_messages(numbered(1))  # accepted, and dropped
            await sender.send_messages(numbered(2))
            assert ns.counts() == {QUEUE: 2}
            clock.advance(LATER + 1)
            await sender.send_messages(numbered(1))  # the window has passed: a new message
            received = await areceive(receiver, 3)
            for message in received:
                await receiver.complete_message(message)
        assert ids(received) == ["m-0001", "m-0002", "m-0001"]
        assert len({m.sequence_number for m in received}) == 3
        assert ns.counts() == {}


class TestAccess:
    """Wrong keys and unknown entities fail fast with the SDK's own errors."""

    async def test_wrong_key_is_an_authentication_error(self, namespace: LocalNamespace) -> None:
        began = asyncio.get_running_loop().time()
        connection_string = wrong_key(namespace.connection_string)
        async with ServiceBusClient.from_connection_string(
            connection_string, retry_total=0
        ) as client:
            with pytest.raises(ServiceBusAuthenticationError):
                async with client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE) as sender:
                    await sender.send_messages(numbered(1))
        assert _elapsed_since(began) < QUICKLY, "it did not hang"
        assert namespace.counts() == {}

    # retry_total=0 only bounds a wrong answer: MessagingEntityNotFoundError is not retried.
    async def test_strict_namespace_refuses_a_sender_to_an_unknown_queue(
        self, namespace_factory: Factory
    ) -> None:
        ns = namespace_factory(auto_create=False, queues=[QUEUE])
        async with _client(ns, retry_total=0) as client:
            with pytest.raises(MessagingEntityNotFoundError):
                async with client.get_queue_sender("nowhere", **NO_KEEP_ALIVE) as sender:
                    await sender.send_messages(numbered(1))
        assert ns.counts() == {}

    async def test_strict_namespace_refuses_a_receiver_from_an_unknown_queue(
        self, namespace_factory: Factory
    ) -> None:
        ns = namespace_factory(auto_create=False, queues=[QUEUE])
        began = asyncio.get_running_loop().time()
        async with _client(ns, retry_total=0) as client:
            with pytest.raises(MessagingEntityNotFoundError):
                async with client.get_queue_receiver("nowhere") as receiver:
                    await receiver.receive_messages(max_wait_time=1)
        assert _elapsed_since(began) < QUICKLY, "it did not hang"
