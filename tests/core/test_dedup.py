"""DuplicateTracker: which copy the application sees, and how its twins are settled."""

from __future__ import annotations

import uuid

import pytest

from geobus._decisions.dedup import Copy, DuplicateTracker, Verdict, key_of
from geobus.testing import FakeClock

LOCK = 60.0
UUID_42 = uuid.UUID(int=42)


@pytest.fixture
def tracker(clock: FakeClock) -> DuplicateTracker:
    return DuplicateTracker(max_entries=100, max_age=3600.0, clock=clock)


def copy(clock: FakeClock, namespace: str, sequence_number: int, *, lock: float | None = LOCK) -> Copy:
    return Copy(namespace, sequence_number, None if lock is None else clock() + lock)


class TestFirstCopy:
    """The first copy of a key goes to the application."""

    def test_first_copy_delivered(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        assert tracker.arrived("m1", copy(clock, "weu", 1)) is Verdict.DELIVER
        assert (tracker.in_flight, tracker.held, tracker.processed) == (1, 0, 0)

    def test_distinct_keys_are_all_delivered(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        verdicts = [tracker.arrived(f"m{i}", copy(clock, "weu", i)) for i in range(3)]
        assert verdicts == [Verdict.DELIVER] * 3
        assert tracker.in_flight == 3

    def test_no_key_is_always_delivered(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        assert tracker.arrived(None, copy(clock, "weu", 1)) is Verdict.DELIVER
        assert tracker.arrived(None, copy(clock, "neu", 1)) is Verdict.DELIVER
        assert tracker.in_flight == 0


class TestTypedKeys:
    """A key keeps its type: values equal in Python, or printed alike, are different messages."""

    @pytest.mark.parametrize("values", [(1, True, 1.0), (42, "42", b"42"), (UUID_42, str(UUID_42), UUID_42.bytes)],
                             ids=repr)
    def test_look_alikes_are_different_keys(
        self, tracker: DuplicateTracker, clock: FakeClock, values: tuple[object, ...]
    ) -> None:
        keys = [key_of(value) for value in values]
        assert [tracker.arrived(key, copy(clock, "weu", n)) for n, key in enumerate(keys)] == [Verdict.DELIVER] * 3
        assert tracker.completed(keys[0]) == []
        assert [tracker.arrived(key, copy(clock, "neu", n)) for n, key in enumerate(keys)] == [
            Verdict.COMPLETE, Verdict.HOLD, Verdict.HOLD]


class TestKeySpelling:
    """key_of: one spelling per value, with its type, as the tracker and every store keep it."""

    def test_spellings(self) -> None:
        assert [key_of(v) for v in ("42", 42, UUID_42, b"42", 4.2, True, ["a"], "")] == [
            "s:42", "i:42", "u:00000000-0000-0000-0000-00000000002a", "b:3432", "f:4.2", "t:True", "r:list:['a']",
            "s:"]

    def test_a_plain_str_key(self) -> None:
        key = key_of("x" * 128)
        assert type(key) is str and len(key) == 130  # a MessageId's 128 characters and the tag


class TestTwinHeld:
    """A twin of a message in flight is held until the owner's outcome."""

    def test_twin_held(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        tracker.arrived("m1", copy(clock, "weu", 1))
        twin = copy(clock, "neu", 7)
        assert tracker.arrived("m1", twin) is Verdict.HOLD
        assert tracker.held == 1
        assert tracker.held_copies() == [twin]

    def test_owner_completed_completes_twin(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 7)
        tracker.arrived("m1", owner)
        tracker.arrived("m1", twin)
        assert tracker.completed("m1") == [(twin, Verdict.COMPLETE)]
        assert (tracker.in_flight, tracker.held, tracker.processed) == (0, 0, 1)

    def test_owner_dead_lettered_dead_letters_twin(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 7)
        tracker.arrived("m1", owner)
        tracker.arrived("m1", twin)
        assert tracker.dead_lettered("m1") == [(twin, Verdict.DEAD_LETTER)]
        assert tracker.in_flight == 0

    def test_three_copies(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        # A passive send that timed out but landed, then went to the backup: two copies on weu.
        owner, twin, extra = copy(clock, "weu", 1), copy(clock, "neu", 7), copy(clock, "weu", 2)
        assert [tracker.arrived("m1", c) for c in (owner, twin, extra)] == [
            Verdict.DELIVER,
            Verdict.HOLD,
            Verdict.HOLD,
        ]
        assert tracker.completed("m1") == [(twin, Verdict.COMPLETE), (extra, Verdict.COMPLETE)]

    def test_redelivered_held_copy_replaces_the_stale_one(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner = copy(clock, "weu", 1)
        tracker.arrived("m1", owner)
        stale = copy(clock, "neu", 7)
        tracker.arrived("m1", stale)
        clock.advance(30)
        fresh = copy(clock, "neu", 7)  # same namespace and sequence number: the same stored message
        assert tracker.arrived("m1", fresh) is Verdict.HOLD
        assert tracker.held_copies() == [fresh]
        assert tracker.completed("m1") == [(fresh, Verdict.COMPLETE)]


class TestOwnerReleased:
    """Abandoning the owner, or losing its lock, hands the twin to the application."""

    def test_owner_abandoned_twin_delivered(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 7)
        tracker.arrived("m1", owner)
        tracker.arrived("m1", twin)
        assert tracker.released("m1", owner) is twin
        assert (tracker.in_flight, tracker.held) == (1, 0)
        assert tracker.completed("m1") == []
        assert tracker.processed == 1

    def test_abandoned_without_twin_forgets_the_key(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner = copy(clock, "weu", 1)
        tracker.arrived("m1", owner)
        assert tracker.released("m1", owner) is None
        assert tracker.in_flight == 0
        assert tracker.arrived("m1", copy(clock, "neu", 7)) is Verdict.DELIVER

    def test_release_by_a_copy_that_is_not_the_owner_is_ignored(
        self, tracker: DuplicateTracker, clock: FakeClock
    ) -> None:
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 7)
        tracker.arrived("m1", owner)
        tracker.arrived("m1", twin)
        assert tracker.released("m1", copy(clock, "eus", 3)) is None
        assert tracker.held == 1

    def test_owner_lock_expired_sweep_promotes_twin(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 7)
        tracker.arrived("m1", owner)
        tracker.arrived("m1", twin)
        clock.advance(LOCK - 1)
        assert tracker.sweep() == []
        clock.advance(1)
        assert tracker.sweep() == [("m1", twin)]
        assert tracker.held == 0
        assert tracker.sweep() == []  # promoted once

    def test_owner_without_lock_time_is_never_swept(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        tracker.arrived("m1", copy(clock, "weu", 1, lock=None))
        tracker.arrived("m1", copy(clock, "neu", 7))
        clock.advance(10 * LOCK)
        assert tracker.sweep() == []

    def test_copy_arriving_after_owner_lock_expired_is_delivered(
        self, tracker: DuplicateTracker, clock: FakeClock
    ) -> None:
        tracker.arrived("m1", copy(clock, "weu", 1))
        clock.advance(LOCK + 1)
        assert tracker.arrived("m1", copy(clock, "neu", 7)) is Verdict.DELIVER

    def test_owner_redelivered_by_its_namespace_is_delivered_again(
        self, tracker: DuplicateTracker, clock: FakeClock
    ) -> None:
        tracker.arrived("m1", copy(clock, "weu", 1))
        assert tracker.arrived("m1", copy(clock, "weu", 1)) is Verdict.DELIVER
        assert tracker.in_flight == 1


class TestProcessedKeys:
    """Copies of a key already settled are settled silently, the same way."""

    def test_copy_after_completion_is_completed(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner = copy(clock, "weu", 1)
        tracker.arrived("m1", owner)
        tracker.completed("m1")
        assert tracker.arrived("m1", copy(clock, "neu", 7)) is Verdict.COMPLETE
        assert tracker.in_flight == 0

    def test_copy_after_dead_letter_is_dead_lettered(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner = copy(clock, "weu", 1)
        tracker.arrived("m1", owner)
        tracker.dead_lettered("m1")
        assert tracker.arrived("m1", copy(clock, "neu", 7)) is Verdict.DEAD_LETTER

    def test_receive_and_delete_drops_duplicates(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        first = tracker.arrived("m1", copy(clock, "weu", 1, lock=None), already_settled=True)
        second = tracker.arrived("m1", copy(clock, "neu", 7, lock=None), already_settled=True)
        assert (first, second) == (Verdict.DELIVER, Verdict.DROP)
        assert (tracker.in_flight, tracker.processed) == (0, 1)


class TestBounds:
    """The processed set is bounded by count and age; in-flight keys are never evicted."""

    def test_bounded_by_count_with_evictions_counted(self, clock: FakeClock) -> None:
        tracker = DuplicateTracker(max_entries=3, max_age=3600.0, clock=clock)
        for i in range(5):
            owner = copy(clock, "weu", i)
            tracker.arrived(f"m{i}", owner)
            tracker.completed(f"m{i}")
        assert tracker.processed == 3
        assert tracker.evictions == 2
        # The oldest key is forgotten: its late copy is processed again (a duplicate, never a loss).
        assert tracker.arrived("m0", copy(clock, "neu", 100)) is Verdict.DELIVER
        assert tracker.arrived("m4", copy(clock, "neu", 104)) is Verdict.COMPLETE

    def test_bounded_by_age(self, clock: FakeClock) -> None:
        tracker = DuplicateTracker(max_entries=100, max_age=10.0, clock=clock)
        owner = copy(clock, "weu", 1)
        tracker.arrived("m1", owner)
        tracker.completed("m1")
        clock.advance(9.9)
        assert tracker.processed == 1
        clock.advance(0.2)
        assert tracker.processed == 0
        tracker.expire()  # what the receiver's keeper does on its loop; reading never writes
        assert tracker.evictions == 1
        assert tracker.arrived("m1", copy(clock, "neu", 7)) is Verdict.DELIVER

    def test_in_flight_keys_survive_overflow_and_age(self, clock: FakeClock) -> None:
        tracker = DuplicateTracker(max_entries=2, max_age=10.0, clock=clock)
        tracker.arrived("busy", copy(clock, "weu", 1, lock=None))
        for i in range(10):
            owner = copy(clock, "weu", 100 + i)
            tracker.arrived(f"m{i}", owner)
            tracker.completed(f"m{i}")
        clock.advance(3600)
        tracker.expire()
        assert tracker.evictions == 10
        assert tracker.in_flight == 1
        assert tracker.arrived("busy", copy(clock, "neu", 7)) is Verdict.HOLD


class TestDeferred:
    """A deferred key defers its twins until a deferred copy is received back."""

    def test_owner_deferred_defers_held_and_later_twins(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 7)
        tracker.arrived("m1", owner)
        tracker.arrived("m1", twin)
        assert tracker.deferred("m1") == [(twin, Verdict.DEFER)]
        assert (tracker.in_flight, tracker.held, tracker.processed) == (0, 0, 0)
        assert tracker.is_deferred("m1")
        late = copy(clock, "neu", 8)
        assert tracker.arrived("m1", late) is Verdict.DEFER

    def test_taken_back_puts_the_key_in_flight_with_its_twins_held(
        self, tracker: DuplicateTracker, clock: FakeClock
    ) -> None:
        tracker.arrived("m1", copy(clock, "weu", 1))
        tracker.deferred("m1")
        again, twin = copy(clock, "weu", 1), copy(clock, "neu", 7)
        tracker.taken_back("m1", again, [twin])
        assert not tracker.is_deferred("m1")
        assert (tracker.in_flight, tracker.held_copies()) == (1, [twin])
        assert tracker.completed("m1") == [(twin, Verdict.COMPLETE)]
        assert tracker.arrived("m1", copy(clock, "neu", 9)) is Verdict.COMPLETE

    def test_deferred_keys_are_apart_from_processed_ones_and_bounded_by_age(self, clock: FakeClock) -> None:
        small = DuplicateTracker(max_entries=1, max_age=10.0, clock=clock)
        small.arrived("m1", copy(clock, "weu", 1))
        small.deferred("m1")
        for n in range(3):
            small.arrived(f"x{n}", copy(clock, "weu", 10 + n))
            small.completed(f"x{n}")
        assert small.arrived("m1", copy(clock, "neu", 2)) is Verdict.DEFER
        clock.advance(10.1)
        assert small.arrived("m1", copy(clock, "neu", 3)) is Verdict.DELIVER  # forgotten after max_age

    def test_no_key_is_never_deferred(self, tracker: DuplicateTracker, clock: FakeClock) -> None:
        assert tracker.deferred(None) == []
        assert tracker.arrived(None, copy(clock, "weu", 1)) is Verdict.DELIVER
