"""MessageLog: locks, settlement, deferral, dead-lettering, expiry and scheduling on a fake clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from geobus.local._entities import (
    EntitySettings,
    LockLost,
    MessageLog,
    MessageState,
)

from .helpers import START, ChangeRecorder, app_properties_of, body_of, drain, lock, stored

MakeLog = Callable[..., MessageLog]


def filled(make_log: MakeLog, count: int, **settings: object) -> MessageLog:
    """A log holding messages 1..count, ready, with nothing recorded yet."""
    log = make_log(**settings)
    for seq in range(1, count + 1):
        log.add(stored(seq), persist=False)
    return log






class TestSettings:
    """EntitySettings refuses values Service Bus would refuse."""

    @pytest.mark.parametrize(
        "field", [{"lock_duration": 0}, {"lock_duration": -1}, {"max_delivery_count": 0}]
    )
    def test_invalid_values_raise(self, field: dict[str, float]) -> None:
        with pytest.raises(ValueError, match=next(iter(field))):
            EntitySettings(**field)


class TestTake:
    """take hands out ready messages in sequence order, locked (peek-lock) or removed."""

    def test_empty_log_gives_nothing(self, make_log: MakeLog) -> None:
        assert make_log().take(START, peek_lock=True) is None

    def test_messages_come_out_in_sequence_order_whatever_the_add_order(
        self, make_log: MakeLog
    ) -> None:
        log = make_log()
        for seq in (3, 1, 2):
            log.add(stored(seq))
        assert drain(log, START) == [1, 2, 3]

    def test_peek_lock_locks_for_the_lock_duration_and_keeps_the_message(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1, lock_duration=30)
        message = lock(log)
        assert message is not None
        assert message.lock_token is not None
        assert message.locked_until == START + 30
        assert log.locked(message.lock_token, START) is message
        assert 1 in log.messages
        assert changes.seen == []  # a lock is not persisted: a restart releases it

    def test_a_locked_message_is_not_handed_out_twice(self, make_log: MakeLog) -> None:
        log = filled(make_log, 2)
        assert (lock(log).seq, lock(log).seq) == (1, 2)
        assert log.take(START, peek_lock=True) is None

    def test_receive_and_delete_removes_and_reports_the_deletion(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1)
        message = log.take(START, peek_lock=False)
        assert message is not None and message.lock_token is None
        assert log.messages == {}
        assert changes.seen == [("q", 1, True)]
        assert log.take(START, peek_lock=False) is None

    def test_add_reports_the_message_unless_restoring(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = make_log()
        log.add(stored(1))
        log.add(stored(2), persist=False)
        assert changes.seen == [("q", 1, False)]
        assert drain(log) == [1, 2]


class TestSettlement:
    """complete, abandon, release and renew act only under a live lock."""

    def test_complete_removes_and_reports_the_deletion(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1)
        message = lock(log)
        log.complete(message.lock_token, START + 1)
        assert log.messages == {}
        assert changes.seen == [("q", 1, True)]

    def test_a_token_settles_once(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1)
        token = lock(log).lock_token
        log.complete(token, START)
        with pytest.raises(LockLost):
            log.complete(token, START)

    def test_an_unknown_token_is_lock_lost(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1)
        log.take(START, peek_lock=True)
        with pytest.raises(LockLost):
            log.complete(uuid.uuid4(), START)

    def test_abandon_counts_a_delivery_and_makes_the_message_ready(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1)
        message = lock(log)
        log.abandon(message.lock_token, START)
        assert message.delivery_count == 1
        assert message.lock_token is None
        assert changes.seen == [("q", 1, False)]
        again = log.take(START, peek_lock=True)
        assert again is message
        assert again.lock_token is not None

    def test_abandoned_message_goes_back_in_sequence_order(self, make_log: MakeLog) -> None:
        log = filled(make_log, 2)
        first = lock(log)
        log.abandon(first.lock_token, START)
        assert drain(log, START) == [1, 2]

    def test_release_makes_ready_without_counting_or_persisting(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1)
        message = lock(log)
        log.abandon(message.lock_token, START, count=False)
        assert message.delivery_count == 0
        assert changes.seen == []
        assert log.take(START, peek_lock=True) is message

    def test_renew_extends_the_lock_from_now(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1, lock_duration=30)
        message = lock(log)
        token = message.lock_token
        assert log.renew(token, START + 20) == START + 50
        assert log.tick(START + 45) is False
        log.complete(token, START + 45)
        assert log.messages == {}

    def test_settling_after_the_lock_expired_is_lock_lost_and_redelivers(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1, lock_duration=30)
        message = lock(log)
        with pytest.raises(LockLost):
            log.complete(message.lock_token, START + 30)
        assert message.delivery_count == 1
        assert changes.seen == [("q", 1, False)]
        assert log.take(START + 30, peek_lock=True) is message


class TestDefer:
    """Deferred messages leave the ready order and come back only by sequence number."""

    def defer_first(self, log: MessageLog) -> int:
        message = lock(log)
        log.defer(message.lock_token, START)
        return message.seq

    def test_defer_hides_the_message_from_take_and_persists_the_state(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1)
        seq = self.defer_first(log)
        assert log.messages[seq].state == MessageState.DEFERRED
        assert changes.seen == [("q", seq, False)]
        assert log.take(START, peek_lock=True) is None

    def test_take_deferred_locks_and_complete_removes(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1)
        seq = self.defer_first(log)
        message = log.take_deferred(seq, START, peek_lock=True)
        assert message.lock_token is not None
        log.complete(message.lock_token, START)
        assert log.messages == {}

    def test_take_deferred_in_receive_and_delete_removes(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1)
        seq = self.defer_first(log)
        log.take_deferred(seq, START, peek_lock=False)
        assert log.messages == {}
        assert changes.seen[-1] == ("q", seq, True)

    def test_an_abandoned_deferred_message_stays_deferred(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1)
        seq = self.defer_first(log)
        message = log.take_deferred(seq, START, peek_lock=True)
        log.abandon(message.lock_token, START)
        assert log.take(START, peek_lock=True) is None
        assert log.take_deferred(seq, START, peek_lock=True) is message

    def test_a_deferred_message_whose_lock_expires_stays_deferred(
        self, make_log: MakeLog
    ) -> None:
        log = filled(make_log, 1, lock_duration=10)
        seq = self.defer_first(log)
        log.take_deferred(seq, START, peek_lock=True)
        log.tick(START + 10)
        assert log.take(START + 10, peek_lock=True) is None
        assert log.take_deferred(seq, START + 10, peek_lock=True).seq == seq

    def test_take_deferred_refuses_what_is_not_deferred_and_free(
        self, make_log: MakeLog
    ) -> None:
        log = filled(make_log, 2)
        seq = self.defer_first(log)  # 1 is deferred, 2 is active
        log.take_deferred(seq, START, peek_lock=True)
        for wrong in (seq, 2, 99):  # locked already, active, unknown
            with pytest.raises(KeyError):
                log.take_deferred(wrong, START, peek_lock=True)


class TestDeadLetter:
    """Dead-lettering moves a copy to the log's DLQ, reason and description in its bytes."""

    def test_dead_letter_moves_the_message_with_reason_and_description(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = make_log()
        log.add(stored(1, properties={"tenant": "a"}), persist=False)
        message = lock(log)
        log.dead_letter_locked(message.lock_token, START, "Poison", "bad json")
        assert log.messages == {}
        assert log.dead_letter is not None
        moved = log.dead_letter.messages[1]
        assert app_properties_of(moved) == {
            "tenant": "a",
            "DeadLetterReason": "Poison",
            "DeadLetterErrorDescription": "bad json",
        }
        assert body_of(moved) == "m1"
        assert changes.seen == [("q", 1, True), ("q/$deadletterqueue", 1, False)]

    def test_properties_are_added_when_the_message_had_none(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1)
        message = lock(log)
        log.dead_letter_locked(message.lock_token, START, "R", None)
        moved = log.dead_letter.messages[1]
        assert app_properties_of(moved) == {"DeadLetterReason": "R"}
        assert body_of(moved) == "m1"

    def test_without_reason_or_description_the_bytes_are_unchanged(
        self, make_log: MakeLog
    ) -> None:
        log = filled(make_log, 1)
        message = lock(log)
        log.dead_letter_locked(message.lock_token, START, None, None)
        assert log.dead_letter.messages[1].rest == message.rest

    def test_the_dead_lettered_copy_is_ready_and_never_expires(self, make_log: MakeLog) -> None:
        log = make_log()
        log.add(stored(1, expires_at=START + 5), persist=False)
        message = lock(log)
        log.dead_letter_locked(message.lock_token, START, "R", "D")
        dlq = log.dead_letter
        assert dlq is not None and dlq.is_dead_letter and dlq.dead_letter is None
        assert dlq.take(START + 3600, peek_lock=False).seq == 1

    def test_the_dead_letter_queue_never_dead_letters_by_delivery_count(
        self, make_log: MakeLog
    ) -> None:
        log = filled(make_log, 1, max_delivery_count=1)
        log.dead_letter_locked(lock(log).lock_token, START, "R", None)
        dlq = log.dead_letter
        for _ in range(3):
            dlq.abandon(lock(dlq).lock_token, START)
        assert dlq.messages[1].delivery_count == 3


class TestLockExpiry:
    """tick releases expired locks, counting a delivery, and reports when it has work."""

    def test_an_expired_lock_redelivers_with_the_count_raised(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1, lock_duration=30)
        first = lock(log)
        old_token = first.lock_token
        assert log.tick(START + 30) is True
        assert first.delivery_count == 1
        assert changes.seen == [("q", 1, False)]
        again = log.take(START + 30, peek_lock=True)
        assert again is first and again.lock_token != old_token
        with pytest.raises(LockLost):
            log.complete(old_token, START + 30)

    def test_nothing_happens_before_the_lock_expires(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1, lock_duration=30)
        message = lock(log)
        assert log.tick(START + 29.9) is False
        assert message.lock_token is not None
        assert changes.seen == []

    def test_next_deadline_is_the_earliest_lock_expiry(self, make_log: MakeLog) -> None:
        log = filled(make_log, 2, lock_duration=30)
        assert log.next_deadline() is None
        lock(log)
        lock(log, START + 5)
        assert log.next_deadline() == START + 30


class TestMaxDeliveryCount:
    """The delivery that reaches max_delivery_count moves the message to the DLQ."""

    def test_abandons_up_to_the_limit_dead_letter_the_message(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1, max_delivery_count=3)
        for _ in range(3):
            log.abandon(lock(log).lock_token, START)
        assert log.messages == {}
        moved = log.dead_letter.messages[1]
        assert moved.delivery_count == 3
        props = app_properties_of(moved)
        assert props["DeadLetterReason"] == "MaxDeliveryCountExceeded"
        assert "3 delivery attempts" in props["DeadLetterErrorDescription"]

    def test_lock_expiries_count_towards_the_limit(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = filled(make_log, 1, max_delivery_count=2, lock_duration=10)
        now = START
        for _ in range(2):
            lock(log, now)
            now += 10
            log.tick(now)
        assert log.messages == {}
        assert app_properties_of(log.dead_letter.messages[1])["DeadLetterReason"] == (
            "MaxDeliveryCountExceeded"
        )
        assert changes.seen[-2:] == [("q", 1, True), ("q/$deadletterqueue", 1, False)]

    def test_a_limit_of_one_dead_letters_on_the_first_abandon(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1, max_delivery_count=1)
        log.abandon(lock(log).lock_token, START)
        assert log.messages == {}
        assert 1 in log.dead_letter.messages

    def test_releases_never_reach_the_limit(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1, max_delivery_count=2)
        for _ in range(5):
            log.abandon(lock(log).lock_token, START, count=False)
        assert 1 in log.messages
        assert log.dead_letter.messages == {}


class TestScheduled:
    """Scheduled messages stay hidden until tick reaches their time, then become ready."""

    def test_hidden_until_due_then_ready(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = make_log()
        log.add(stored(1, scheduled_at=START + 10), persist=False)
        assert log.take(START, peek_lock=True) is None
        assert log.next_deadline() == START + 10
        assert log.tick(START + 9.9) is False
        assert log.take(START + 9.9, peek_lock=True) is None
        assert log.tick(START + 10) is True
        message = log.messages[1]
        assert (message.state, message.scheduled_at) == (MessageState.ACTIVE, None)
        assert changes.seen == [("q", 1, False)]
        assert log.take(START + 10, peek_lock=True) is message
        assert log.next_deadline() == message.locked_until

    def test_messages_activate_in_order_of_their_scheduled_time(self, make_log: MakeLog) -> None:
        log = make_log()
        for seq, delay in ((1, 30), (2, 10), (3, 20)):
            log.add(stored(seq, scheduled_at=START + delay), persist=False)
        order = []
        for delay in (10, 20, 30):
            assert log.tick(START + delay) is True
            order += drain(log, START + delay)
        assert order == [2, 3, 1]

    def test_a_late_tick_activates_everything_due(self, make_log: MakeLog) -> None:
        log = make_log()
        for seq in (1, 2):
            log.add(stored(seq, scheduled_at=START + seq), persist=False)
        log.add(stored(3, scheduled_at=START + 100), persist=False)
        assert log.tick(START + 50) is True
        assert drain(log, START + 50) == [1, 2]
        assert log.next_deadline() == START + 100

    def test_cancel_removes_a_scheduled_message_for_good(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = make_log()
        log.add(stored(1, scheduled_at=START + 10), persist=False)
        log.cancel_scheduled(1)
        assert log.messages == {}
        assert changes.seen == [("q", 1, True)]
        assert log.tick(START + 10) is False
        assert log.take(START + 10, peek_lock=True) is None

    def test_cancel_leaves_an_active_message_alone(self, make_log: MakeLog) -> None:
        log = filled(make_log, 1)
        log.cancel_scheduled(1)
        log.cancel_scheduled(42)
        assert drain(log, START) == [1]


class TestTimeToLive:
    """A message past its expiry is never handed out; it is dropped or dead-lettered."""

    def test_take_skips_and_drops_an_expired_message(
        self, make_log: MakeLog, changes: ChangeRecorder
    ) -> None:
        log = make_log()
        log.add(stored(1, expires_at=START + 5), persist=False)
        log.add(stored(2), persist=False)
        assert log.take(START + 5, peek_lock=True).seq == 2
        assert 1 not in log.messages
        assert changes.seen == [("q", 1, True)]
        assert log.dead_letter.messages == {}

    def test_a_message_before_its_expiry_is_delivered(self, make_log: MakeLog) -> None:
        log = make_log()
        log.add(stored(1, expires_at=START + 5), persist=False)
        assert log.take(START + 4.9, peek_lock=True).seq == 1

    def test_expired_messages_are_dead_lettered_when_the_entity_says_so(
        self, make_log: MakeLog
    ) -> None:
        log = make_log(dead_letter_on_expiration=True)
        log.add(stored(1, expires_at=START + 5), persist=False)
        assert log.take(START + 6, peek_lock=True) is None
        moved = log.dead_letter.messages[1]
        assert app_properties_of(moved)["DeadLetterReason"] == "TTLExpiredException"
        assert moved.expires_at is None

    def test_an_abandoned_message_past_its_expiry_is_not_redelivered(
        self, make_log: MakeLog
    ) -> None:
        log = make_log()
        log.add(stored(1, expires_at=START + 5), persist=False)
        message = lock(log)
        log.abandon(message.lock_token, START + 6)
        assert log.take(START + 6, peek_lock=True) is None


class TestPeek:
    """peek reads live messages in sequence order from a start, without locking them."""

    def test_all_states_in_sequence_order_without_taking(self, make_log: MakeLog) -> None:
        log = make_log()
        log.add(stored(3, scheduled_at=START + 60), persist=False)
        for seq in (2, 1, 4):
            log.add(stored(seq), persist=False)
        locked = log.take(START, peek_lock=True)
        assert [m.seq for m in log.peek(0, 10, START)] == [1, 2, 3, 4]
        assert locked.seq == 1
        assert drain(log, START) == [2, 4]  # peek locked nothing

    def test_from_sequence_and_count_bound_the_result(self, make_log: MakeLog) -> None:
        log = filled(make_log, 5)
        assert [m.seq for m in log.peek(2, 2, START)] == [2, 3]
        assert [m.seq for m in log.peek(4, 10, START)] == [4, 5]
        assert log.peek(6, 10, START) == []

    def test_expired_messages_are_skipped_and_do_not_use_up_the_count(
        self, make_log: MakeLog
    ) -> None:
        log = make_log()
        log.add(stored(1, expires_at=START + 1), persist=False)
        log.add(stored(2), persist=False)
        log.add(stored(3), persist=False)
        assert [m.seq for m in log.peek(0, 2, START + 1)] == [2, 3]


class TestStoredMessage:
    """copy_for gives a subscription a copy whose bookkeeping is its own."""

    def test_copies_share_content_not_bookkeeping(self) -> None:
        original = stored(7, annotations={"x-opt-partition-key": "p"})
        original.lock_token = uuid.uuid4()
        copy = original.copy_for()
        assert (copy.seq, copy.rest, copy.annotations) == (7, original.rest, original.annotations)
        assert copy.lock_token is None
        copy.delivery_count = 4
        copy.annotations.clear()
        assert original.delivery_count == 0
        assert original.annotations != {}
