"""Sessions, sync: the real ``azure.servicebus`` client against a session-enabled local queue.

Each test is one session behaviour the SDK relies on against Service Bus: the
session filter on attach (named and next available), the exclusive session
lock with its expiry and renewal, session state, and the refusals of what a
session-enabled entity does not take. Lock expiry is crossed by moving the
namespace's clock (``ServerClock``), not by waiting; the next-available wait
is bounded by the receiver's ``max_wait_time`` or the namespace's
``Limits.session_wait``, a second each here. ``test_sessions_async.py`` makes the
same calls through ``azure.servicebus.aio``, except for the restart with a
store, which lives wholly in the server.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
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
    ids,
    numbered,
    past,
    properties,
    receive,
    session_message,
)

pytestmark = pytest.mark.timeout(60)

Factory = Callable[..., LocalNamespace]


def _client(ns: LocalNamespace, **options: Any) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(ns.connection_string, **options)


def _send(ns: LocalNamespace, *messages: ServiceBusMessage, topic: bool = False) -> None:
    with _client(ns) as client:
        sender = (
            client.get_topic_sender(TOPIC, **NO_KEEP_ALIVE)
            if topic
            else client.get_queue_sender(QUEUE, **NO_KEEP_ALIVE)
        )
        with sender:
            sender.send_messages(list(messages))


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

    def test_receiver_gets_only_its_sessions_messages_in_order(self, ns: LocalNamespace) -> None:
        interleaved = [session_message(s, i) for i in range(5) for s in ("a", "b")]
        _send(ns, *interleaved)
        with _client(ns) as client, client.get_queue_receiver(QUEUE, session_id="b") as receiver:
            got = receive(receiver, 5)
            for message in got:
                receiver.complete_message(message)
        assert receiver.session.session_id == "b"
        assert ids(got) == [f"b-{i:04d}" for i in range(5)]
        assert {m.session_id for m in got} == {"b"}
        assert [properties(m)["index"] for m in got] == list(range(5))
        assert ns.counts() == {QUEUE: 5}  # session a's, untouched

    def test_second_receiver_for_a_locked_session_is_refused(self, ns: LocalNamespace) -> None:
        with (
            _client(ns, **ONCE) as client,
            client.get_queue_receiver(QUEUE, session_id="a") as first,
        ):
            assert first.session.locked_until_utc is not None
            with (
                pytest.raises(SessionCannotBeLockedError),
                client.get_queue_receiver(QUEUE, session_id="a"),
            ):
                pass
            with client.get_queue_receiver(QUEUE, session_id="b") as other:
                assert other.session.session_id == "b"

    def test_closing_the_receiver_frees_the_session_at_once(self, ns: LocalNamespace) -> None:
        _send(ns, session_message("a", 1))
        with _client(ns) as client:
            with client.get_queue_receiver(QUEUE, session_id="a") as first:
                (held,) = receive(first)
            # Not settled: the message comes back, counted, to the next receiver at once.
            with client.get_queue_receiver(QUEUE, session_id="a") as second:
                (again,) = receive(second)
                second.complete_message(again)
        assert again.sequence_number == held.sequence_number
        assert (held.delivery_count, again.delivery_count) == (0, 1)
        assert ns.counts() == {}

    def test_a_lost_connection_frees_the_session_at_once(self, ns: LocalNamespace) -> None:
        _send(ns, session_message("a", 1))
        with _client(ns, **ONCE) as gone, gone.get_queue_receiver(QUEUE, session_id="a") as first:
            (held,) = receive(first)
            assert ns.drop_connections() >= 1
            with _client(ns) as client, client.get_queue_receiver(QUEUE, session_id="a") as second:
                (again,) = receive(second)
                second.complete_message(again)
        assert (again.sequence_number, again.delivery_count) == (held.sequence_number, 1)
        assert ns.counts() == {}


class TestNextAvailableSession:
    """NEXT_AVAILABLE_SESSION takes the free session with the oldest message, or waits."""

    def test_takes_the_session_with_the_oldest_message_not_held(self, ns: LocalNamespace) -> None:
        _send(ns, session_message("late", 1))
        _send(ns, session_message("early", 1), session_message("late", 2))
        with _client(ns) as client:
            with client.get_queue_receiver(
                QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WITHIN
            ) as first:
                assert first.session.session_id == "late"
                with client.get_queue_receiver(
                    QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WITHIN
                ) as second:
                    assert second.session.session_id == "early"
                    assert ids(receive(second)) == ["early-0001"]
                assert ids(receive(first, 2)) == ["late-0001", "late-0002"]

    def test_none_available_times_out_as_the_service_answers(self, ns: LocalNamespace) -> None:
        with _client(ns, **ONCE) as client:
            receiver = client.get_queue_receiver(
                QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=SHORT_WAIT
            )
            with pytest.raises(OperationTimeoutError) as caught, receiver:
                pass
        # The server's com.microsoft:timeout, not the client giving up on its own.
        assert "com.microsoft:timeout" in str(caught.value)

    def test_without_max_wait_time_the_namespace_wait_applies(self, ns: LocalNamespace) -> None:
        with _client(ns, **ONCE) as client:
            receiver = client.get_queue_receiver(QUEUE, session_id=NEXT_AVAILABLE_SESSION)
            with pytest.raises(OperationTimeoutError) as caught, receiver:
                pass
        assert "com.microsoft:timeout" in str(caught.value)

    def test_a_waiting_receiver_gets_a_session_that_arrives(self, ns: LocalNamespace) -> None:
        def first_session(client: ServiceBusClient) -> str:
            with client.get_queue_receiver(
                QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WITHIN
            ) as receiver:
                (message,) = receive(receiver)
                receiver.complete_message(message)
                return f"{receiver.session.session_id}:{message.message_id}"

        with _client(ns) as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(first_session, client)
            _send(ns, session_message("new", 1))
            assert waiting.result(timeout=WITHIN) == "new:new-0001"


class TestSessionLock:
    """The session lock: locked_until, renewal, and what its expiry takes away."""

    def test_renew_lock_moves_locked_until(self, ns: LocalNamespace, clock: ServerClock) -> None:
        with _client(ns) as client, client.get_queue_receiver(QUEUE, session_id="a") as receiver:
            first = receiver.session.locked_until_utc
            assert past(first, clock.utc(LOCK - 5))
            clock.advance(LOCK / 2)
            renewed = receiver.session.renew_lock()
            assert receiver.session.locked_until_utc == renewed
        assert first is not None and renewed > first
        assert past(renewed, clock.utc(LOCK - 5))

    def test_expired_lock_fails_settlement_and_frees_the_session(
        self, ns: LocalNamespace, clock: ServerClock
    ) -> None:
        _send(ns, session_message("a", 1))
        with _client(ns, **ONCE) as client:
            with client.get_queue_receiver(QUEUE, session_id="a") as first:
                (held,) = receive(first)
                clock.advance(LOCK + 1)
                with pytest.raises(SessionLockLostError):
                    first.complete_message(held)
                with client.get_queue_receiver(QUEUE, session_id="a") as second:
                    (again,) = receive(second)
                    second.complete_message(again)
        assert again.sequence_number == held.sequence_number
        assert again.delivery_count == 1
        assert ns.counts() == {}

    def test_expired_lock_fails_state_operations(
        self, ns: LocalNamespace, clock: ServerClock
    ) -> None:
        with _client(ns, **ONCE) as client, client.get_queue_receiver(QUEUE, session_id="a") as r:
            r.session.set_state(b"before")
            clock.advance(LOCK + 1)
            with pytest.raises(SessionLockLostError):
                r.session.set_state(b"after")
        with _client(ns) as client, client.get_queue_receiver(QUEUE, session_id="a") as receiver:
            assert receiver.session.get_state() == b"before"


class TestSessionState:
    """get_state/set_state through $management: bytes, str as UTF-8, None clears."""

    def test_state_round_trip(self, ns: LocalNamespace) -> None:
        with _client(ns) as client, client.get_queue_receiver(QUEUE, session_id="a") as receiver:
            assert receiver.session.get_state() is None
            receiver.session.set_state(b"\x00\xffbytes")
            assert receiver.session.get_state() == b"\x00\xffbytes"
            receiver.session.set_state("résumé")
            assert receiver.session.get_state() == "résumé".encode()
        with _client(ns) as client, client.get_queue_receiver(QUEUE, session_id="a") as receiver:
            assert receiver.session.get_state() == "résumé".encode()
            receiver.session.set_state(None)
            assert receiver.session.get_state() is None

    def test_list_sessions_names_those_with_messages_or_state(self, ns: LocalNamespace) -> None:
        _send(ns, session_message("queued", 1))
        with _client(ns) as client:
            with client.get_queue_receiver(QUEUE, session_id="stateful") as receiver:
                receiver.session.set_state(b"x")
            assert sorted(client.list_queue_sessions(QUEUE)) == ["queued", "stateful"]


class TestRefusals:
    """What a session-enabled entity refuses, as Service Bus refuses it."""

    def test_plain_receiver_on_a_session_queue_is_refused(self, ns: LocalNamespace) -> None:
        with (
            _client(ns, **ONCE) as client,
            pytest.raises(ServiceBusError) as caught,
            client.get_queue_receiver(QUEUE) as receiver,
        ):
            receiver.receive_messages(max_wait_time=SHORT_WAIT)
        assert "amqp:not-allowed" in str(caught.value)
        assert "requires sessions" in str(caught.value)

    def test_session_receiver_on_a_plain_queue_is_refused(self, ns: LocalNamespace) -> None:
        with (
            _client(ns, **ONCE) as client,
            pytest.raises(ServiceBusError) as caught,
            client.get_queue_receiver("plain", session_id="a"),
        ):
            pass
        assert "amqp:not-allowed" in str(caught.value)

    def test_message_without_session_id_is_refused(self, ns: LocalNamespace) -> None:
        with pytest.raises(ServiceBusError) as caught:
            _send(ns, session_message("a", 1), numbered(2))
        assert "amqp:not-allowed" in str(caught.value)
        assert ns.counts() == {}  # the batch is refused whole


class TestSubscriptionSessions:
    """A session-enabled subscription: session receivers, and messages without a session."""

    def test_subscription_session_receiver_and_a_message_without_session(
        self, ns: LocalNamespace
    ) -> None:
        ns.declare_topic(TOPIC, ["orders"], settings=SESSIONS)
        ns.declare_topic(TOPIC, ["audit"])
        _send(ns, session_message("s", 1), numbered(2), session_message("s", 3), topic=True)
        with _client(ns) as client:
            with client.get_subscription_receiver(
                TOPIC, "orders", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=WITHIN
            ) as receiver:
                got = receive(receiver, 2)
                for message in got:
                    receiver.complete_message(message)
                assert receiver.session.session_id == "s"
            with client.get_subscription_receiver(
                TOPIC, "orders", sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dead:
                (orphan,) = receive(dead)
                dead.complete_message(orphan)
        assert ids(got) == ["s-0001", "s-0003"]
        assert orphan.message_id == "m-0002"
        assert orphan.dead_letter_reason == "Session id is null."
        assert ns.counts() == {f"{TOPIC}/subscriptions/audit": 3}


class TestWithinASession:
    """Deferral and dead-lettering keep to the session."""

    def test_deferred_message_comes_back_by_sequence_number(self, ns: LocalNamespace) -> None:
        _send(ns, *(session_message("a", i) for i in range(3)), session_message("b", 9))
        with _client(ns) as client, client.get_queue_receiver(QUEUE, session_id="a") as receiver:
            first, *rest = receive(receiver, 3)
            receiver.defer_message(first)
            for message in rest:
                receiver.complete_message(message)
            peeked = receiver.peek_messages(max_message_count=10, sequence_number=1)
            (deferred,) = receiver.receive_deferred_messages([first.sequence_number])
            receiver.complete_message(deferred)
        assert ids(peeked) == ["a-0000"]  # session a's only; the others are settled
        assert deferred.message_id == "a-0000"
        assert ns.counts() == {QUEUE: 1}

    def test_max_delivery_count_dead_letters_and_the_session_goes_on(
        self, namespace_factory: Factory
    ) -> None:
        ns = namespace_factory()
        ns.declare_queue(QUEUE, settings=EntitySettings(requires_session=True, max_delivery_count=2))
        _send(ns, session_message("a", 1), session_message("a", 2))
        with _client(ns) as client:
            with client.get_queue_receiver(QUEUE, session_id="a") as receiver:
                for _ in range(2):
                    (poison,) = receive(receiver)
                    assert poison.message_id == "a-0001"
                    receiver.abandon_message(poison)
                (healthy,) = receive(receiver)
                receiver.complete_message(healthy)
            with client.get_queue_receiver(
                QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dead:
                (dead_lettered,) = receive(dead)
                dead.complete_message(dead_lettered)
        assert healthy.message_id == "a-0002"
        assert dead_lettered.message_id == "a-0001"
        assert dead_lettered.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert ns.counts() == {}

    def test_the_dead_letter_queue_has_no_sessions_a_plain_receiver_reads_it(self, ns: LocalNamespace) -> None:
        _send(ns, session_message("a", 1), session_message("b", 2))
        with _client(ns) as client:
            for session in ("a", "b"):
                with client.get_queue_receiver(QUEUE, session_id=session) as receiver:
                    (message,) = receive(receiver)
                    receiver.dead_letter_message(message, reason=f"bad {session}")
            with pytest.raises(ValueError, match="session_id and sub_queue"):  # the SDK's client refuses both
                client.get_queue_receiver(QUEUE, session_id="a", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead:
                peeked = dead.peek_messages(max_message_count=10)
                letters = receive(dead, 2)
                for letter in letters:
                    dead.complete_message(letter)
        assert ids(peeked) == ids(letters) == ["a-0001", "b-0002"]  # every session's, in one queue
        assert [(m.session_id, m.dead_letter_reason) for m in letters] == [("a", "bad a"), ("b", "bad b")]
        assert ns.counts() == {}

    def test_receive_and_delete_takes_the_sessions_messages(self, ns: LocalNamespace) -> None:
        _send(ns, session_message("a", 1), session_message("a", 2))
        with (
            _client(ns) as client,
            client.get_queue_receiver(
                QUEUE, session_id="a", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            ) as receiver,
        ):
            got = receive(receiver, 2)
        assert ids(got) == ["a-0001", "a-0002"]
        assert ns.counts() == {}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "namespace.sqlite"


class TestRestartWithStore:
    """A SqliteStore keeps sessions' messages, states and settings; never their locks."""

    def test_restart_keeps_session_messages_and_state(
        self, namespace_factory: Factory, store: Path
    ) -> None:
        before = namespace_factory(store=store)
        before.declare_queue(QUEUE, settings=SESSIONS)
        _send(before, *(session_message("a", i) for i in range(3)))
        with _client(before) as client:
            receiver = client.get_queue_receiver(QUEUE, session_id="a")
            with receiver:
                receiver.session.set_state(b"progress")
                (first,) = receive(receiver)
                receiver.complete_message(first)
                (held,) = receive(receiver)  # locked when the namespace stops
                before.stop()
        after = namespace_factory(store=store)  # not declared again: the store knows
        with _client(after, **ONCE) as client:
            with client.get_queue_receiver(QUEUE, session_id="a") as receiver:
                assert receiver.session.get_state() == b"progress"
                got = receive(receiver, 2)
                for message in got:
                    receiver.complete_message(message)
            with pytest.raises(ServiceBusError) as caught, client.get_queue_receiver(QUEUE):
                pass
        assert ids(got) == ["a-0001", "a-0002"]
        assert held.message_id == "a-0001"
        assert "amqp:not-allowed" in str(caught.value)
        assert after.counts() == {}
