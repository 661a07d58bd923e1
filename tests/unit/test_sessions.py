"""Sessions in a message log, without I/O: grouping, locks, expiry, waiters, the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage

from geobus.local._broker import Broker
from geobus.local._codec import ParsedMessage, parse_message
from geobus.local._entities import EntitySettings, MessageLog
from geobus.local._sessions import SessionCannotBeLocked, SessionLockLost, SessionRequired
from geobus.local._store import SqliteStore
from geobus.testing import FakeClock

from .helpers import sdk_encode

LOCK = 30.0
SESSIONS = EntitySettings(requires_session=True, lock_duration=LOCK, max_delivery_count=2)
MakeBroker = Callable[..., Broker]


def in_session(session: str | None, body: str) -> ParsedMessage:
    return parse_message(sdk_encode(ServiceBusMessage(body, session_id=session)))


@pytest.fixture
def broker(make_broker: MakeBroker) -> Broker:
    return make_broker()


@pytest.fixture
def log(broker: Broker) -> MessageLog:
    return broker.declare_queue("q", SESSIONS)


def send(broker: Broker, log: MessageLog, *sessions: str) -> None:
    for index, session in enumerate(sessions):
        broker.enqueue(log, in_session(session, f"{session}{index}"))


class TestGrouping:
    """Messages go to the receiver holding their session, in order; to no one else."""

    def test_a_session_lock_takes_only_its_messages(
        self, broker: Broker, log: MessageLog, clock: FakeClock
    ) -> None:
        send(broker, log, "a", "b", "a")
        lock = log.accept_session("a", "owner", clock())
        assert lock is not None
        taken = [log.take(clock(), peek_lock=False, session=lock) for _ in range(3)]
        assert [m.session_id if m else None for m in taken] == ["a", "a", None]
        assert log.take(clock(), peek_lock=False) is None  # no session: nothing

    def test_next_available_is_the_oldest_free_session(
        self, broker: Broker, log: MessageLog, clock: FakeClock
    ) -> None:
        send(broker, log, "b", "a", "b")
        first = log.accept_session(None, "one", clock())
        second = log.accept_session(None, "two", clock())
        assert (first and first.session_id, second and second.session_id) == ("b", "a")
        assert log.accept_session(None, "three", clock()) is None

    def test_a_held_session_cannot_be_locked_again(
        self, log: MessageLog, clock: FakeClock
    ) -> None:
        log.accept_session("a", "one", clock())
        with pytest.raises(SessionCannotBeLocked):
            log.accept_session("a", "two", clock())


class TestLockEnds:
    """Expiry or release frees the session; held messages come back, counted."""

    def test_expiry_frees_the_session_and_counts_the_delivery(
        self, broker: Broker, log: MessageLog, clock: FakeClock
    ) -> None:
        send(broker, log, "a")
        lock = log.accept_session("a", "one", clock())
        message = log.take(clock(), peek_lock=True, session=lock)
        assert message is not None and message.lock_token is not None
        clock.advance(LOCK)
        with pytest.raises(SessionLockLost):
            log.complete(message.lock_token, clock())
        again = log.accept_session("a", "two", clock())
        retaken = log.take(clock(), peek_lock=True, session=again)
        assert retaken is not None and (retaken.seq, retaken.delivery_count) == (message.seq, 1)

    def test_tick_reports_the_lost_lock_and_a_due_waiter(
        self, log: MessageLog, clock: FakeClock
    ) -> None:
        lock = log.accept_session("a", "one", clock())
        assert log.sessions is not None and lock is not None
        log.sessions.wait("waiter", clock() + 1)
        assert log.next_deadline() == clock() + 1
        clock.advance(LOCK)
        assert log.tick(clock())
        assert log.sessions.lost == [lock] and lock.lost

    def test_release_past_the_delivery_limit_dead_letters(
        self, broker: Broker, log: MessageLog, clock: FakeClock
    ) -> None:
        send(broker, log, "a")
        for owner in ("one", "two"):
            lock = log.accept_session("a", owner, clock())
            assert lock is not None and log.take(clock(), peek_lock=True, session=lock)
            log.end_session(lock)
        assert log.dead_letter is not None and len(log.dead_letter.messages) == 1
        assert not log.messages


class TestSending:
    """A message without a session: refused by a queue, dead-lettered by a subscription."""

    def test_queue_refuses_and_subscription_dead_letters(
        self, broker: Broker, log: MessageLog
    ) -> None:
        with pytest.raises(SessionRequired):
            broker.enqueue(log, in_session(None, "x"))
        topic = broker.declare_topic("t")
        sub = broker.declare_subscription("t", "s", SESSIONS)
        broker.enqueue(topic, in_session(None, "x"))
        assert not log.messages and not sub.messages
        assert sub.dead_letter is not None and len(sub.dead_letter.messages) == 1


class TestStore:
    """A SqliteStore keeps session ids, states and settings; not locks."""

    def test_restart_keeps_sessions_and_states(
        self, make_broker: MakeBroker, clock: FakeClock, tmp_path: Path
    ) -> None:
        store = SqliteStore(tmp_path / "s.sqlite")
        before = make_broker()
        log = before.declare_queue("q", SESSIONS)
        send(before, log, "a", "b")
        assert log.accept_session("a", "one", clock()) is not None
        before.set_session_state(log, "a", b"state")
        store.save(before, *before.take_changes())
        store.close()
        after = make_broker()
        reopened = SqliteStore(tmp_path / "s.sqlite")
        reopened.load(after)
        reopened.close()
        restored = after.queues["q"]
        assert restored.settings == SESSIONS
        assert restored.sessions is not None and restored.sessions.states == {"a": b"state"}
        assert restored.sessions_with_messages() == ["a", "b"]
        assert restored.accept_session("a", "two", clock()) is not None  # no lock survived
