"""Deduplicator: the receiver's duplicate decisions, told events and answering actions (no I/O, fake clock)."""

from __future__ import annotations

import pytest

from geobus import DedupPolicy, StoreUnavailable
from geobus._decisions.actions import (
    ClaimKey,
    Deliver,
    Drop,
    GiveBack,
    Hold,
    RecheckKey,
    RecordOutcome,
    ReleaseKey,
    RenewLease,
    Settle,
    StoreQuestion,
)
from geobus._decisions.dedup import Copy, Outcome, key_of
from geobus._decisions.deduplicator import Deduplicator
from geobus._storage.seenset import Claim, SeenSetError
from geobus.testing import FakeClock

LOCK = 60.0
LEASE = 30.0
BACKOFF = 5.0
KEY = key_of("m")
DOWN = SeenSetError("connection refused")


def make(clock: FakeClock, *, shared: bool = False, already_settled: bool = False, **policy: object) -> Deduplicator:
    return Deduplicator(
        DedupPolicy(lease=LEASE, **policy),  # type: ignore[arg-type]
        shared=shared,
        already_settled=already_settled,
        clock=clock,
        store_backoff=BACKOFF,
    )


def copy(clock: FakeClock, namespace: str, sequence_number: int, *, lock: float | None = LOCK) -> Copy:
    return Copy(namespace, sequence_number, None if lock is None else clock() + lock)


class TestOneProcess:
    """Without a shared store, the process's own memory decides."""

    def test_first_copy_delivered_its_twin_held_then_settled_with_it(self, clock: FakeClock) -> None:
        dedup = make(clock)
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        assert dedup.arrived(KEY, owner) == [Deliver(owner, KEY)]
        assert dedup.arrived(KEY, twin) == [Hold(twin)]
        assert (dedup.held, dedup.in_flight, dedup.held_copies()) == (1, 1, [twin])
        assert dedup.completed(KEY) == [Settle(twin, Outcome.COMPLETED)]
        late = copy(clock, "neu", 2)
        assert dedup.arrived(KEY, late) == [Settle(late, Outcome.COMPLETED)]
        assert (dedup.held, dedup.in_flight) == (0, 0)

    def test_a_dead_letter_reaches_the_twin_with_its_reason(self, clock: FakeClock) -> None:
        dedup = make(clock)
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        dedup.arrived(KEY, owner)
        dedup.arrived(KEY, twin)
        assert dedup.dead_lettered(KEY, reason="poison", description="bad json") == [
            Settle(twin, Outcome.DEAD_LETTERED, "poison", "bad json")
        ]

    def test_a_twin_arriving_after_the_dead_letter_gets_its_reason_too(self, clock: FakeClock) -> None:
        dedup = make(clock)
        owner = copy(clock, "weu", 1)
        dedup.arrived(KEY, owner)
        assert dedup.dead_lettered(KEY, reason="poison", description="bad json") == []
        late = copy(clock, "neu", 7)
        assert dedup.arrived(KEY, late) == [Settle(late, Outcome.DEAD_LETTERED, "poison", "bad json")]

    def test_released_hands_over_the_twin_or_forgets_the_key(self, clock: FakeClock) -> None:
        dedup = make(clock)
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        dedup.arrived(KEY, owner)
        dedup.arrived(KEY, twin)
        assert dedup.released(KEY, owner) == [Deliver(twin, KEY)]
        assert dedup.released(KEY, twin) == []
        again = copy(clock, "weu", 1)
        assert dedup.arrived(KEY, again) == [Deliver(again, KEY)]

    def test_sweep_promotes_a_twin_whose_owner_lost_its_lock(self, clock: FakeClock) -> None:
        dedup = make(clock)
        owner, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        dedup.arrived(KEY, owner)
        dedup.arrived(KEY, twin)
        assert list(dedup.sweep()) == []
        clock.advance(LOCK)
        assert list(dedup.sweep()) == [Deliver(twin, KEY)]

    def test_no_key_is_always_delivered(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)  # not even asked about: there is nothing to ask
        first, second = copy(clock, "weu", 1), copy(clock, "neu", 1)
        assert dedup.arrived(None, first) == [Deliver(first, None)]
        assert dedup.arrived(None, second) == [Deliver(second, None)]
        assert dedup.completed(None) == []

    def test_receive_and_delete_drops_the_twin(self, clock: FakeClock) -> None:
        dedup = make(clock, already_settled=True)
        first, second = copy(clock, "weu", 1, lock=None), copy(clock, "neu", 1, lock=None)
        assert dedup.arrived(KEY, first) == [Deliver(first, KEY)]
        assert dedup.arrived(KEY, second) == [Drop(second)]


def claimed(dedup: Deduplicator, clock: FakeClock) -> Copy:
    """A copy of ``KEY`` this process claimed in the store and delivered."""
    owner = copy(clock, "weu", 1)
    assert dedup.arrived(KEY, owner) == [ClaimKey(KEY, owner)]
    assert dedup.store_answered(ClaimKey(KEY, owner), Claim.CLAIMED) == [Deliver(owner, KEY)]
    return owner


def waiting(dedup: Deduplicator, clock: FakeClock, key: str = "m", sequence_number: int = 1) -> Copy:
    """A copy of ``key`` that waits here: another worker has it in flight."""
    arrival = copy(clock, "weu", sequence_number)
    [question] = dedup.arrived(key_of(key), arrival)
    assert dedup.store_answered(question, Claim.TAKEN) == [Hold(arrival)]  # type: ignore[arg-type]
    return arrival


class TestSharedStore:
    """A key new to this process is claimed in the store first; its answer decides."""

    def test_claimed_is_delivered_and_its_lease_kept(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        claimed(dedup, clock)
        assert dedup.claimed == {KEY}

    def test_taken_elsewhere_waits_here_as_held(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        arrival = waiting(dedup, clock)
        assert (dedup.waiting, dedup.held, dedup.in_flight, dedup.held_copies()) == (1, 1, 0, [arrival])

    def test_a_twin_of_a_key_in_flight_here_is_not_asked_about(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        claimed(dedup, clock)
        twin = copy(clock, "neu", 1)
        assert dedup.arrived(KEY, twin) == [Hold(twin)]
        assert dedup.completed(KEY) == [Settle(twin, Outcome.COMPLETED), RecordOutcome(KEY, Claim.COMPLETED)]
        assert dedup.store_answered(RecordOutcome(KEY, Claim.COMPLETED), None) == []
        assert dedup.claimed == set()

    def test_processed_elsewhere_settles_the_copy_and_its_local_twin_alike(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        first, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        [question] = dedup.arrived(KEY, first)
        assert dedup.arrived(KEY, twin) == [Hold(twin)]  # came in while the store was asked
        assert dedup.store_answered(question, Claim.DEAD_LETTERED) == [  # type: ignore[arg-type]
            Settle(twin, Outcome.DEAD_LETTERED),
            Settle(first, Outcome.DEAD_LETTERED),
        ]
        late = copy(clock, "neu", 2)
        assert dedup.arrived(KEY, late) == [Settle(late, Outcome.DEAD_LETTERED)]  # remembered here now

    def test_released_frees_the_key_unless_a_twin_here_takes_over(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        owner = claimed(dedup, clock)
        twin = copy(clock, "neu", 1)
        dedup.arrived(KEY, twin)
        assert dedup.released(KEY, owner) == [Deliver(twin, KEY)]  # the key stays here, claimed
        assert dedup.released(KEY, twin) == [ReleaseKey(KEY)]
        assert dedup.claimed == set()

    def test_a_promoted_twin_is_asked_about_again(self, clock: FakeClock) -> None:
        """Its owner waited on another worker until its lock ran out; that worker may be done."""
        dedup = make(clock, shared=True)
        stale = waiting(dedup, clock)
        twin = copy(clock, "neu", 1, lock=2 * LOCK)
        assert dedup.arrived(KEY, twin) == [Hold(twin)]
        clock.advance(LOCK)
        assert list(dedup.sweep()) == [ClaimKey(KEY, twin)]
        assert dedup.store_answered(ClaimKey(KEY, twin), Claim.CLAIMED) == [Deliver(twin, KEY)]
        assert dedup.waiting == 0 and stale not in dedup.held_copies()  # its lock is gone: not waited on

    def test_receive_and_delete_records_the_key_at_once(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True, already_settled=True)
        first = copy(clock, "weu", 1, lock=None)
        assert dedup.store_answered(ClaimKey(KEY, first), Claim.CLAIMED) == [
            Deliver(first, KEY),
            RecordOutcome(KEY, Claim.COMPLETED),
        ]
        other = copy(clock, "neu", 1, lock=None)
        assert dedup.store_answered(ClaimKey(KEY, other), Claim.TAKEN) == [Drop(other)]


class TestRecheck:
    """Copies waiting on another worker are asked about again, each tick."""

    @pytest.mark.parametrize(
        ("answer", "expected"),
        [
            (Claim.TAKEN, lambda c: []),
            (Claim.CLAIMED, lambda c: [Deliver(c, KEY)]),
            (Claim.COMPLETED, lambda c: [Settle(c, Outcome.COMPLETED)]),
        ],
        ids=["still-taken", "lease-ran-out", "completed-there"],
    )
    def test_answers(self, clock: FakeClock, answer: Claim, expected: object) -> None:
        dedup = make(clock, shared=True)
        arrival = waiting(dedup, clock)
        assert list(dedup.recheck()) == [RecheckKey(KEY)]
        assert dedup.store_answered(RecheckKey(KEY), answer) == expected(arrival)  # type: ignore[operator]
        assert dedup.waiting == (1 if answer is Claim.TAKEN else 0)

    def test_a_recheck_stopped_half_way_leaves_the_rest_waiting(self, clock: FakeClock) -> None:
        """The receiver may be closed mid-recheck: what was answered is settled, the rest still waits."""
        dedup = make(clock, shared=True)
        first, second = waiting(dedup, clock, "a", 1), waiting(dedup, clock, "b", 2)
        questions = dedup.recheck()
        question = next(questions)
        assert dedup.store_answered(question, Claim.CLAIMED) == [Deliver(first, key_of("a"))]  # type: ignore[arg-type]
        assert next(questions) == RecheckKey(key_of("b"))  # ... and never answered
        assert dedup.held_copies() == [second] and dedup.claimed == {key_of("a")}
        assert dedup.closing([], []) == [GiveBack(second)]
        assert list(dedup.let_go()) == [ReleaseKey(key_of("a"))]

    def test_an_answer_for_a_copy_no_longer_waiting_delivers_nothing(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        waiting(dedup, clock)
        dedup.closing([], [])
        assert dedup.store_answered(RecheckKey(KEY), Claim.CLAIMED) == []


class TestStoreDown:
    """A store that fails is left alone for the backoff; the policy answers for it meanwhile."""

    def test_deliver_policy_delivers_and_asks_nobody_until_the_backoff_is_over(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        first = copy(clock, "weu", 1)
        [question] = dedup.arrived(KEY, first)
        assert dedup.store_answered(question, DOWN) == [Deliver(first, KEY)]  # type: ignore[arg-type]
        assert dedup.store_down
        other = copy(clock, "weu", 2)
        assert dedup.arrived(key_of("n"), other) == [Deliver(other, key_of("n"))]  # not asked
        clock.advance(BACKOFF)
        third = copy(clock, "weu", 3)
        assert dedup.arrived(key_of("o"), third) == [ClaimKey(key_of("o"), third)]
        dedup.store_answered(ClaimKey(key_of("o"), third), Claim.CLAIMED)
        assert not dedup.store_down

    def test_hold_policy_holds_until_the_store_answers(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True, store_unavailable=StoreUnavailable.HOLD)
        first = copy(clock, "weu", 1)
        assert dedup.store_answered(ClaimKey(KEY, first), DOWN) == [Hold(first)]
        assert list(dedup.recheck()) == []  # never delivered on a guess
        clock.advance(BACKOFF)
        assert list(dedup.recheck()) == [RecheckKey(KEY)]
        assert dedup.store_answered(RecheckKey(KEY), Claim.CLAIMED) == [Deliver(first, KEY)]

    def test_a_recheck_stops_at_the_first_failure(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        waiting(dedup, clock, "a", 1)
        waiting(dedup, clock, "b", 2)
        asked = []
        for question in dedup.recheck():
            asked.append(question)
            assert dedup.store_answered(question, DOWN) == []  # type: ignore[arg-type]
        assert asked == [RecheckKey(key_of("a"))] and dedup.waiting == 2

    def test_a_completion_the_store_missed_is_retried_and_its_lease_kept(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        claimed(dedup, clock)
        [record] = dedup.completed(KEY)
        assert dedup.store_answered(record, DOWN) == []  # type: ignore[arg-type]
        assert list(dedup.keep_leases(set())) == []  # left alone; the key is not released meanwhile
        assert dedup.claimed == {KEY}
        clock.advance(BACKOFF)
        assert list(dedup.keep_leases(set()))[:1] == [RecordOutcome(KEY, Claim.COMPLETED)]
        assert dedup.store_answered(RecordOutcome(KEY, Claim.COMPLETED), None) == []
        assert dedup.claimed == set()

    def test_settled_or_released_while_down_asks_nothing(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        owner = claimed(dedup, clock)
        other = copy(clock, "weu", 2)
        dedup.arrived(key_of("n"), other)
        dedup.store_answered(ClaimKey(key_of("n"), other), Claim.CLAIMED)
        dedup.store_answered(RenewLease(KEY), DOWN)
        assert dedup.released(KEY, owner) == []  # the lease runs out instead
        assert dedup.completed(key_of("n")) == []  # kept, and recorded once the store is back
        assert dedup.claimed == {key_of("n")}
        clock.advance(BACKOFF)
        assert list(dedup.keep_leases(set())) == [RecordOutcome(key_of("n"), Claim.COMPLETED)]

    def test_receive_and_delete_never_drops_the_only_copy_on_a_guess(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True, already_settled=True, store_unavailable=StoreUnavailable.HOLD)
        first = copy(clock, "weu", 1, lock=None)
        assert dedup.store_answered(ClaimKey(KEY, first), DOWN) == [Deliver(first, KEY)]
        assert dedup.claimed == {KEY}  # its completion, unrecorded, is retried


class TestGivenUp:
    """The receiver stopped waiting for an answer (it was cancelled): nothing is lost for it."""

    def test_receive_and_delete_delivers_a_copy_whose_claim_was_given_up_when_it_arrives_again(
        self, clock: FakeClock
    ) -> None:
        """Gone from its namespace on arrival, it goes back in line: it is not its own duplicate."""
        dedup = make(clock, shared=True, already_settled=True)
        first, twin = copy(clock, "weu", 1, lock=None), copy(clock, "neu", 1, lock=None)
        [question] = dedup.arrived(KEY, first)
        assert dedup.arrived(KEY, twin) == [Drop(twin)]  # came in while the store was asked
        dedup.store_given_up(question)  # type: ignore[arg-type]
        assert dedup.arrived(KEY, first) == [ClaimKey(KEY, first)]
        assert dedup.store_answered(ClaimKey(KEY, first), Claim.CLAIMED) == [
            Deliver(first, KEY),
            RecordOutcome(KEY, Claim.COMPLETED),
        ]
        late = copy(clock, "neu", 2, lock=None)
        assert dedup.arrived(KEY, late) == [Drop(late)]  # processed again, once delivered

    def test_peek_lock_asks_again_for_a_copy_whose_claim_was_given_up(self, clock: FakeClock) -> None:
        """Back in line, it arrives as its own redelivery: still the key's owner here."""
        dedup = make(clock, shared=True)
        first, twin = copy(clock, "weu", 1), copy(clock, "neu", 1)
        [question] = dedup.arrived(KEY, first)
        assert dedup.arrived(KEY, twin) == [Hold(twin)]
        dedup.store_given_up(question)  # type: ignore[arg-type]
        assert dedup.arrived(KEY, first) == [ClaimKey(KEY, first)]
        assert dedup.store_answered(ClaimKey(KEY, first), Claim.CLAIMED) == [Deliver(first, KEY)]
        assert dedup.completed(KEY) == [Settle(twin, Outcome.COMPLETED), RecordOutcome(KEY, Claim.COMPLETED)]

    def test_a_completion_given_up_is_retried_and_its_lease_kept(self, clock: FakeClock) -> None:
        """The store may not have recorded it: the key is not released for another worker meanwhile."""
        dedup = make(clock, shared=True)
        claimed(dedup, clock)
        [record] = dedup.completed(KEY)
        dedup.store_given_up(record)  # type: ignore[arg-type]
        assert list(dedup.keep_leases(set())) == [RecordOutcome(KEY, Claim.COMPLETED)]
        assert dedup.store_answered(RecordOutcome(KEY, Claim.COMPLETED), None) == []
        assert dedup.claimed == set()

    @pytest.mark.parametrize("question", [RecheckKey(KEY), RenewLease(KEY), ReleaseKey(KEY)], ids=repr)
    def test_other_questions_given_up_change_nothing(self, clock: FakeClock, question: StoreQuestion) -> None:
        """A waiting copy is asked about again, a lease renewed next turn, a release left to the lease."""
        dedup = make(clock, shared=True)
        arrival = waiting(dedup, clock)
        dedup.store_given_up(question)
        assert dedup.held_copies() == [arrival] and list(dedup.recheck()) == [RecheckKey(KEY)]


class TestLeases:
    """Keys held here keep their leases; keys no longer held are let go."""

    def test_a_lease_is_renewed_a_third_of_the_way_in(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        claimed(dedup, clock)
        assert list(dedup.keep_leases({KEY})) == []
        clock.advance(LEASE / 3)
        assert list(dedup.keep_leases({KEY})) == [RenewLease(KEY)]
        dedup.store_answered(RenewLease(KEY), True)
        assert list(dedup.keep_leases({KEY})) == []

    def test_a_lease_lost_to_another_owner_is_asked_for_again(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        claimed(dedup, clock)
        clock.advance(LEASE / 3)
        dedup.store_answered(RenewLease(KEY), False)
        assert list(dedup.keep_leases({KEY})) == [RenewLease(KEY)]

    def test_a_key_no_longer_held_is_released(self, clock: FakeClock) -> None:
        dedup = make(clock, shared=True)
        claimed(dedup, clock)
        assert list(dedup.keep_leases(set())) == [ReleaseKey(KEY)]
        assert dedup.claimed == set()


class TestClosing:
    """What was fetched and never handed out is given back, or settled when it is a late twin."""

    def test_closing(self, clock: FakeClock) -> None:
        dedup = make(clock)
        done, busy = copy(clock, "weu", 1), copy(clock, "weu", 2)
        dedup.arrived(key_of("done"), done)
        dedup.completed(key_of("done"))
        dedup.arrived(key_of("busy"), busy)  # the application still holds it
        ready, late, twin, unseen = (copy(clock, "neu", n) for n in range(1, 5))
        unread = [(key_of("done"), late), (key_of("busy"), twin), (key_of("new"), unseen)]
        assert dedup.closing([ready], unread) == [
            GiveBack(ready),
            Settle(late, Outcome.COMPLETED),
            GiveBack(unseen),
        ]

    def test_receive_and_delete_gives_nothing_back(self, clock: FakeClock) -> None:
        dedup = make(clock, already_settled=True)
        assert dedup.closing([copy(clock, "weu", 1, lock=None)], [(KEY, copy(clock, "neu", 1, lock=None))]) == []
