"""Deduplicator and deferral: twins deferred, deferred copies received back, in one process and in a fleet."""

from __future__ import annotations

import pytest

from geobus import DedupPolicy, StoreUnavailable
from geobus._decisions.actions import (
    ClaimKey,
    Deliver,
    Drop,
    Hold,
    RecheckKey,
    ReclaimKey,
    RecordOutcome,
    ReleaseKey,
    Settle,
)
from geobus._decisions.dedup import Copy, Outcome, key_of
from geobus._decisions.deduplicator import Deduplicator
from geobus._storage.seenset import Claim, SeenSetError
from geobus.testing import FakeClock

LOCK = 60.0
LEASE = 30.0
KEY = key_of("m")
DOWN = SeenSetError("connection refused")
DEFERRED, COMPLETED = Outcome.DEFERRED, Outcome.COMPLETED


def make(clock: FakeClock, *, shared: bool = False, defers_shared: bool = True, already_settled: bool = False,
         **policy: object) -> Deduplicator:
    return Deduplicator(
        DedupPolicy(lease=LEASE, **policy),  # type: ignore[arg-type]
        shared=shared,
        defers_shared=defers_shared,
        already_settled=already_settled,
        clock=clock,
        store_backoff=5.0,
    )


def copy(clock: FakeClock, namespace: str, sequence_number: int, *, lock: float | None = LOCK) -> Copy:
    return Copy(namespace, sequence_number, None if lock is None else clock() + lock)


def deferred_here(clock: FakeClock, dedup: Deduplicator) -> None:
    """KEY's copy was handed out (claimed, with a shared store) and deferred."""
    owner = copy(clock, "weu", 1)
    if dedup.arrived(KEY, owner) == [ClaimKey(KEY, owner)]:
        dedup.store_answered(ClaimKey(KEY, owner), Claim.CLAIMED)
    for action in dedup.deferred(KEY):
        if isinstance(action, RecordOutcome | ReleaseKey):
            dedup.store_answered(action, None)


class TestOneProcess:
    """Without a shared store, the process's own memory decides."""

    def test_held_and_late_twins_are_deferred(self, clock: FakeClock) -> None:
        dedup = make(clock)
        owner, twin, late = copy(clock, "weu", 1), copy(clock, "neu", 1), copy(clock, "neu", 2)
        dedup.arrived(KEY, owner)
        dedup.arrived(KEY, twin)
        assert dedup.deferred(KEY) == [Settle(twin, DEFERRED)]
        assert dedup.arrived(KEY, late) == [Settle(late, DEFERRED)]
        assert (dedup.held, dedup.in_flight) == (0, 0)

    def test_taken_back_is_delivered_its_twins_held_and_settled_with_it(self, clock: FakeClock) -> None:
        dedup = make(clock)
        deferred_here(clock, dedup)
        again, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        assert dedup.taken_back(KEY, again, [twin]) == [Hold(twin), Deliver(again, KEY)]
        assert dedup.held_copies() == [twin]
        late = copy(clock, "neu", 2)
        assert dedup.arrived(KEY, late) == [Hold(late)]  # in flight again: a late twin waits for it
        assert dedup.dead_lettered(KEY, reason="r") == [
            Settle(twin, Outcome.DEAD_LETTERED, "r"), Settle(late, Outcome.DEAD_LETTERED, "r")]

    @pytest.mark.parametrize("outcome", [COMPLETED, Outcome.DEAD_LETTERED])
    def test_taken_back_after_its_key_was_settled_here_is_settled_so_and_not_handed_out(
        self, clock: FakeClock, outcome: Outcome
    ) -> None:
        dedup = make(clock)
        deferred_here(clock, dedup)
        again = copy(clock, "weu", 1)
        dedup.taken_back(KEY, again, [])
        if outcome is COMPLETED:
            dedup.completed(KEY)
        else:
            dedup.dead_lettered(KEY, reason="poison")
        refetched, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)  # a handle used again elsewhere...
        reason = "poison" if outcome is Outcome.DEAD_LETTERED else None
        assert dedup.taken_back(KEY, refetched, [twin]) == [
            Settle(refetched, outcome, reason), Settle(twin, outcome, reason)]
        assert dedup.is_processed(KEY)
        assert (dedup.held, dedup.in_flight) == (0, 0)

    def test_abandoned_after_taken_back_defers_its_twins_and_its_key_again(self, clock: FakeClock) -> None:
        dedup = make(clock)
        deferred_here(clock, dedup)
        again, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        dedup.taken_back(KEY, again, [twin])
        assert dedup.released(KEY, again) == [Settle(twin, DEFERRED)]
        late = copy(clock, "neu", 2)
        assert dedup.arrived(KEY, late) == [Settle(late, DEFERRED)]
        back = copy(clock, "weu", 1)
        assert dedup.taken_back(KEY, back, []) == [Deliver(back, KEY)]  # and it can be received back again

    def test_a_lock_lost_after_taken_back_defers_its_key_again(self, clock: FakeClock) -> None:
        dedup = make(clock)
        deferred_here(clock, dedup)
        again, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        dedup.taken_back(KEY, again, [twin])
        late = copy(clock, "neu", 2)
        clock.advance(LOCK + 1)
        assert dedup.arrived(KEY, late) == [Hold(late)]  # not handed over: the owner went back to deferred
        assert list(dedup.sweep()) == [Settle(twin, DEFERRED), Settle(late, DEFERRED)]
        later = copy(clock, "neu", 3)
        assert dedup.arrived(KEY, later) == [Settle(later, DEFERRED)]
        assert (dedup.held, dedup.in_flight) == (0, 0)

    def test_taken_back_while_another_copy_is_in_flight_here_waits_for_it(self, clock: FakeClock) -> None:
        dedup = make(clock)
        owner, fetched = copy(clock, "weu", 1), copy(clock, "neu", 5)
        dedup.arrived(KEY, owner)
        assert dedup.taken_back(KEY, fetched, []) == [Hold(fetched)]
        assert dedup.completed(KEY) == [Settle(fetched, COMPLETED)]

    def test_no_key_is_handed_out(self, clock: FakeClock) -> None:
        dedup = make(clock)
        again = copy(clock, "weu", 1)
        assert dedup.taken_back(None, again, []) == [Deliver(again, None)]

    def test_receive_and_delete_drops_twins_and_a_processed_key(self, clock: FakeClock) -> None:
        dedup = make(clock, already_settled=True)
        again, twin = copy(clock, "weu", 1, lock=None), copy(clock, "neu", 1, lock=None)
        assert dedup.taken_back(KEY, again, [twin]) == [Drop(twin), Deliver(again, KEY)]
        refetched = copy(clock, "weu", 1, lock=None)
        assert dedup.taken_back(KEY, refetched, []) == [Drop(refetched)]


class TestFleet:
    """With a shared store, a deferred key is DEFERRED for the whole fleet until received back."""

    def test_deferring_records_the_key_deferred(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        owner = copy(clock, "weu", 1)
        dedup.store_answered(ClaimKey(KEY, owner), Claim.CLAIMED)
        assert dedup.deferred(KEY) == [RecordOutcome(KEY, Claim.DEFERRED)]
        assert dedup.store_answered(RecordOutcome(KEY, Claim.DEFERRED), None) == []
        assert dedup.claimed == set()

    def test_a_twin_at_another_worker_is_deferred_not_delivered(self, clock: FakeClock) -> None:
        other = make(clock, shared=True)
        twin, late = copy(clock, "neu", 1), copy(clock, "neu", 2)
        assert other.arrived(KEY, twin) == [ClaimKey(KEY, twin)]
        assert other.store_answered(ClaimKey(KEY, twin), Claim.DEFERRED) == [Settle(twin, DEFERRED)]
        assert other.arrived(KEY, late) == [Settle(late, DEFERRED)]  # known deferred here now: not asked again
        assert (other.held, other.in_flight, other.claimed) == (0, 0, set())

    def test_a_waiting_twin_is_deferred_when_its_owner_elsewhere_defers(self, clock: FakeClock) -> None:
        other = make(clock, shared=True)
        twin = copy(clock, "neu", 1)
        other.arrived(KEY, twin)
        assert other.store_answered(ClaimKey(KEY, twin), Claim.TAKEN) == [Hold(twin)]
        assert list(other.recheck()) == [RecheckKey(KEY)]
        assert other.store_answered(RecheckKey(KEY), Claim.DEFERRED) == [Settle(twin, DEFERRED)]
        assert other.waiting == 0

    def test_taken_back_asks_the_store_then_hands_out(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        deferred_here(clock, dedup)
        again, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        assert dedup.taken_back(KEY, again, [twin]) == [Hold(twin), ReclaimKey(KEY, first=True)]
        assert dedup.store_answered(ReclaimKey(KEY, first=True), Claim.CLAIMED) == [Deliver(again, KEY)]
        assert dedup.claimed == {KEY}
        assert dedup.completed(KEY) == [Settle(twin, COMPLETED), RecordOutcome(KEY, Claim.COMPLETED)]

    @pytest.mark.parametrize("answer", [Claim.COMPLETED, Claim.DEAD_LETTERED])
    def test_taken_back_after_another_worker_settled_it_is_settled_so(self, clock: FakeClock, answer: Claim) -> None:
        dedup = make(clock, shared=True)
        deferred_here(clock, dedup)
        again, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        dedup.taken_back(KEY, again, [twin])
        outcome = Outcome(answer.value)
        assert dedup.store_answered(ReclaimKey(KEY, first=True), answer) == [
            Settle(twin, outcome), Settle(again, outcome)]
        assert dedup.is_processed(KEY)
        assert (dedup.held, dedup.in_flight, dedup.claimed) == (0, 0, set())

    def test_taken_back_while_another_worker_has_it_waits(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        deferred_here(clock, dedup)
        again, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        dedup.taken_back(KEY, again, [twin])
        assert dedup.store_answered(ReclaimKey(KEY, first=True), Claim.TAKEN) == []
        assert set(dedup.held_copies()) == {again, twin}
        assert list(dedup.recheck()) == [ReclaimKey(KEY)]
        assert dedup.store_answered(ReclaimKey(KEY), Claim.TAKEN) == []
        assert dedup.store_answered(ReclaimKey(KEY), Claim.CLAIMED) == [Deliver(again, KEY)]
        assert dedup.held_copies() == [twin]

    def test_a_waiting_copy_whose_lock_ran_out_leaves_the_other_workers_claim_alone(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        deferred_here(clock, dedup)
        again = copy(clock, "weu", 1)
        dedup.taken_back(KEY, again, [])
        dedup.store_answered(ReclaimKey(KEY, first=True), Claim.TAKEN)
        clock.advance(LOCK + 1)
        assert list(dedup.sweep()) == []  # deferred again on its namespace; nothing written over the claim
        assert (dedup.waiting, dedup.held, list(dedup.recheck())) == (0, 0, [])
        late = copy(clock, "neu", 2)
        assert dedup.arrived(KEY, late) == [Settle(late, DEFERRED)]

    @pytest.mark.parametrize(("policy", "expected"), [("hold", False), ("deliver", True)])
    def test_taken_back_with_the_store_down_follows_the_policy(
        self, clock: FakeClock, policy: str, expected: bool
    ) -> None:
        dedup = make(clock, shared=True, store_unavailable=StoreUnavailable(policy))
        deferred_here(clock, dedup)
        again = copy(clock, "weu", 1)
        dedup.taken_back(KEY, again, [])
        assert (dedup.store_answered(ReclaimKey(KEY, first=True), DOWN) == [Deliver(again, KEY)]) is expected
        if not expected:
            assert dedup.held_copies() == [again]  # asked again once the store answers
            clock.advance(10)
            assert list(dedup.recheck()) == [ReclaimKey(KEY)]

    def test_abandoned_after_taken_back_records_the_key_deferred_again(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        deferred_here(clock, dedup)
        again, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        dedup.taken_back(KEY, again, [twin])
        dedup.store_answered(ReclaimKey(KEY, first=True), Claim.CLAIMED)
        assert dedup.released(KEY, again) == [Settle(twin, DEFERRED), RecordOutcome(KEY, Claim.DEFERRED)]

    def test_a_lapsed_take_back_is_recorded_deferred_not_released(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        deferred_here(clock, dedup)
        again = copy(clock, "weu", 1)
        dedup.taken_back(KEY, again, [])
        dedup.store_answered(ReclaimKey(KEY, first=True), Claim.CLAIMED)
        clock.advance(LOCK + 1)
        asked = dedup.keep_leases(held=set())
        assert next(asked) == RecordOutcome(KEY, Claim.DEFERRED)
        dedup.store_answered(RecordOutcome(KEY, Claim.DEFERRED), None)
        assert list(asked) == []  # nothing released, no lease renewed: the key is the fleet's DEFERRED again

    def test_closing_records_an_unsettled_take_back_deferred(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        deferred_here(clock, dedup)
        again = copy(clock, "weu", 1)
        dedup.taken_back(KEY, again, [])
        dedup.store_answered(ReclaimKey(KEY, first=True), Claim.CLAIMED)
        assert list(dedup.let_go()) == [RecordOutcome(KEY, Claim.DEFERRED)]

    def test_a_deferral_the_store_missed_is_not_recorded_after_a_take_back(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        owner = copy(clock, "weu", 1)
        dedup.store_answered(ClaimKey(KEY, owner), Claim.CLAIMED)
        dedup.deferred(KEY)
        dedup.store_answered(RecordOutcome(KEY, Claim.DEFERRED), DOWN)  # kept, to be retried
        clock.advance(10)
        again = copy(clock, "weu", 1)
        dedup.taken_back(KEY, again, [])
        dedup.store_answered(ReclaimKey(KEY, first=True), Claim.CLAIMED)
        assert RecordOutcome(KEY, Claim.DEFERRED) not in list(dedup.keep_leases(held={KEY}))

    def test_a_store_that_cannot_defer_is_released_and_claimed(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True, defers_shared=False)
        owner = copy(clock, "weu", 1)
        dedup.store_answered(ClaimKey(KEY, owner), Claim.CLAIMED)
        assert dedup.deferred(KEY) == [ReleaseKey(KEY)]
        again = copy(clock, "weu", 1)
        assert dedup.taken_back(KEY, again, []) == [ReclaimKey(KEY, first=True)]

    def test_receive_and_delete_takes_back_once_for_the_fleet(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True, already_settled=True)
        again, twin = copy(clock, "weu", 1, lock=None), copy(clock, "neu", 1, lock=None)
        assert dedup.taken_back(KEY, again, [twin]) == [Drop(twin), ReclaimKey(KEY, first=True)]
        assert dedup.store_answered(ReclaimKey(KEY, first=True), Claim.CLAIMED) == [
            Deliver(again, KEY), RecordOutcome(KEY, Claim.COMPLETED)]
        other = make(clock, shared=True, already_settled=True)
        late = copy(clock, "neu", 1, lock=None)
        other.taken_back(KEY, late, [])
        assert other.store_answered(ReclaimKey(KEY, first=True), Claim.COMPLETED) == [Drop(late)]


def test_closing_defers_an_unread_twin_of_a_deferred_key(clock: FakeClock) -> None:
    dedup = make(clock)
    deferred_here(clock, dedup)
    unread = copy(clock, "neu", 1)
    assert dedup.closing([], [(KEY, unread)]) == [Settle(unread, DEFERRED)]
