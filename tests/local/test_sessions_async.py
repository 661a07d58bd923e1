"""Sessions, async: ``test_sessions.py``'s calls through ``azure.servicebus.aio``.

The same behaviours against the same namespace settings, except for the
restart with a store, which lives wholly in the server (the sync suite has it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

from geobus.local import EntitySettings, Limits, LocalNamespace

from .contract_helpers import (
    LOCK,
    NO_KEEP_ALIVE,
    ONCE,
    QUEUE,
    SESSIONS,
    SHORT_WAIT,
    TOPIC,
    WITHIN,
    ServerClock,
    areceive,
    ids,
    numbered,
    past,
    session_message,
)

pytestmark = pytest.mark.timeout(60)

Factory = Callable[..., LocalNamespace]


def _client(ns: LocalNamespace, **options: Any) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(ns.connection_string, **options)


async def _send(ns: LocalNamespace, *messages: ServiceBusMessage, topic: bool = False) -> None:
    async with _client(ns) as client:
        sender = (
            client.get_topic_sender(TOPIC, **NO_KEEP_ALIVE)
            if topic
            else client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE)
        )
        async with sender:
            await sender.send_messages(list(messages))


@pytest.fixture
def clock() -> ServerClock:
    return ServerClock()


@pytest.fixture
def ns(namespace_factory: Factory, clock: ServerClock) -> LocalNamespace:
    """A namespace whose queue requires sessions (a 30 s lock, on a clock the test moves)."""
    namespace = namespace_factory(clock=clock, limits=Limits(session_wait=SHORT_WAIT))
    namespace.declare_queue(QUEUE, settings=SESSIONS)
    return namespace


class TestNamedSession:
    """A receiver for a named session gets that session's messages, in order, alone."""

    async def test_receiver_gets_only_its_sessions_messages_in_order(
        self, ns: LocalNamespace
    ) -> None:
        await _send(ns, *(session_message(s, i) for i in range(5) for s in ("a", "b")))
        async with _client(ns) as client, client.get_queue_receiver(
            QUEUE, session_id="b"
        ) as receiver:
            got = await areceive(receiver, 5)
            for message in got:
                await receiver.complete_message(message)
        assert receiver.session.session_id == "b"
        assert ids(got) == [f"b-{i:04d}" for i in range(5)]
        assert ns.counts() == {QUEUE: 5}

    async def test_second_receiver_for_a_locked_session_is_refused(
        self, ns: LocalNamespace
    ) -> None:
        async with _client(ns, **ONCE) as client, client.get_queue_receiver(
            QUEUE, session_id="a"
        ):
            with pytest.raises(SessionCannotBeLockedError):
                async with client.get_queue_receiver(QUEUE, session_id="a"):
                    pass

    async def test_closing_the_receiver_frees_the_session_at_once(
        self, ns: LocalNamespace
    ) -> None:
        await _send(ns, session_message("a", 1))
        async with _client(ns) as client:
            async with client.get_queue_receiver(QUEUE, session_id="a") as first:
                (held,) = await areceive(first)
            async with client.get_queue_receiver(QUEUE, session_id="a") as second:
                (again,) = await areceive(second)
                await second.complete_message(again)
        assert again.sequence_number == held.sequence_number
        assert (held.delivery_count, again.delivery_count) == (0, 1)


class TestNextAvailableSession:
    """NEXT_AVAILABLE_SESSION takes the free session with the oldest message, or waits."""

    async def test_takes_the_session_with_the_oldest_message(self, ns: LocalNamespace) -> None:
        await _send(ns, session_message("late", 1))
        await _send(ns, session_message("early", 1))
        async with _client(ns) as client, client.get_queue_receiver(
            QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WITHIN
        ) as receiver:
            assert receiver.session.session_id == "late"
            assert ids(await areceive(receiver)) == ["late-0001"]

    async def test_none_available_times_out_as_the_service_answers(
        self, ns: LocalNamespace
    ) -> None:
        async with _client(ns, **ONCE) as client:
            receiver = client.get_queue_receiver(
                QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=SHORT_WAIT
            )
            with pytest.raises(OperationTimeoutError) as caught:
                async with receiver:
                    pass
        assert "com.microsoft:timeout" in str(caught.value)

    async def test_a_waiting_receiver_gets_a_session_that_arrives(
        self, ns: LocalNamespace
    ) -> None:
        async def first_session(client: ServiceBusClient) -> str:
            async with client.get_queue_receiver(
                QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WITHIN
            ) as receiver:
                (message,) = await areceive(receiver)
                await receiver.complete_message(message)
                return f"{receiver.session.session_id}:{message.message_id}"

        async with _client(ns) as client:
            waiting = asyncio.create_task(first_session(client))
            await _send(ns, session_message("new", 1))
            assert await asyncio.wait_for(waiting, WITHIN) == "new:new-0001"


class TestSessionLock:
    """The session lock: locked_until, renewal, and what its expiry takes away."""

    async def test_renew_lock_moves_locked_until(
        self, ns: LocalNamespace, clock: ServerClock
    ) -> None:
        async with _client(ns) as client, client.get_queue_receiver(
            QUEUE, session_id="a"
        ) as receiver:
            first = receiver.session.locked_until_utc
            clock.advance(LOCK / 2)
            renewed = await receiver.session.renew_lock()
        assert first is not None and renewed > first
        assert past(renewed, clock.utc(LOCK - 5))

    async def test_expired_lock_fails_settlement_and_frees_the_session(
        self, ns: LocalNamespace, clock: ServerClock
    ) -> None:
        await _send(ns, session_message("a", 1))
        async with _client(ns, **ONCE) as client:
            async with client.get_queue_receiver(QUEUE, session_id="a") as first:
                (held,) = await areceive(first)
                clock.advance(LOCK + 1)
                with pytest.raises(SessionLockLostError):
                    await first.complete_message(held)
                async with client.get_queue_receiver(QUEUE, session_id="a") as second:
                    (again,) = await areceive(second)
                    await second.complete_message(again)
        assert (again.sequence_number, again.delivery_count) == (held.sequence_number, 1)
        assert ns.counts() == {}


class TestSessionState:
    """get_state/set_state through $management: bytes, str as UTF-8, None clears."""

    async def test_state_round_trip(self, ns: LocalNamespace, clock: ServerClock) -> None:
        async with _client(ns, **ONCE) as client, client.get_queue_receiver(
            QUEUE, session_id="a"
        ) as receiver:
            assert await receiver.session.get_state() is None
            await receiver.session.set_state("résumé")
            assert await receiver.session.get_state() == "résumé".encode()
            await receiver.session.set_state(None)
            assert await receiver.session.get_state() is None
            await receiver.session.set_state(b"kept")
            clock.advance(LOCK + 1)
            with pytest.raises(SessionLockLostError):
                await receiver.session.get_state()
        async with _client(ns) as client:
            async with client.get_queue_receiver(QUEUE, session_id="a") as receiver:
                assert await receiver.session.get_state() == b"kept"
            assert [s async for s in client.list_queue_sessions(QUEUE)] == ["a"]


class TestRefusals:
    """What a session-enabled entity refuses, as Service Bus refuses it."""

    async def test_plain_receiver_on_a_session_queue_is_refused(self, ns: LocalNamespace) -> None:
        async with _client(ns, **ONCE) as client:
            with pytest.raises(ServiceBusError) as caught:
                async with client.get_queue_receiver(QUEUE) as receiver:
                    await receiver.receive_messages(max_wait_time=SHORT_WAIT)
        assert "amqp:not-allowed" in str(caught.value)

    async def test_message_without_session_id_is_refused(self, ns: LocalNamespace) -> None:
        with pytest.raises(ServiceBusError) as caught:
            await _send(ns, numbered(1))
        assert "amqp:not-allowed" in str(caught.value)
        assert ns.counts() == {}


class TestWithinASession:
    """Subscriptions, deferral and dead-lettering keep to the session."""

    async def test_subscription_session_receiver(self, ns: LocalNamespace) -> None:
        ns.declare_topic(TOPIC, ["orders"], settings=SESSIONS)
        await _send(ns, session_message("s", 1), session_message("t", 2), topic=True)
        async with _client(ns) as client, client.get_subscription_receiver(
            TOPIC, "orders", session_id="t"
        ) as receiver:
            (message,) = await areceive(receiver)
            await receiver.complete_message(message)
        assert message.message_id == "t-0002"
        assert ns.counts() == {f"{TOPIC}/subscriptions/orders": 1}

    async def test_deferred_message_comes_back_by_sequence_number(
        self, ns: LocalNamespace
    ) -> None:
        await _send(ns, session_message("a", 1), session_message("a", 2))
        async with _client(ns) as client, client.get_queue_receiver(
            QUEUE, session_id="a"
        ) as receiver:
            first, second = await areceive(receiver, 2)
            await receiver.defer_message(first)
            await receiver.complete_message(second)
            (deferred,) = await receiver.receive_deferred_messages([first.sequence_number])
            await receiver.complete_message(deferred)
        assert deferred.message_id == "a-0001"
        assert ns.counts() == {}

    async def test_max_delivery_count_dead_letters(self, namespace_factory: Factory) -> None:
        ns = namespace_factory()
        ns.declare_queue(QUEUE, settings=EntitySettings(requires_session=True, max_delivery_count=1))
        await _send(ns, session_message("a", 1))
        async with _client(ns) as client:
            async with client.get_queue_receiver(QUEUE, session_id="a") as receiver:
                (poison,) = await areceive(receiver)
                await receiver.abandon_message(poison)
            async with client.get_queue_receiver(
                QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dead:
                (dead_lettered,) = await areceive(dead)
                await dead.complete_message(dead_lettered)
        assert dead_lettered.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert ns.counts() == {}
