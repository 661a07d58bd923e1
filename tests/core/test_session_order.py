"""The I/O-free order merge of a session read from two regions (``SessionOrder``), on a fake clock."""

from __future__ import annotations

import random

import pytest

from geobus._decisions.session_order import MAX_PRODUCERS, Gap, SessionOrder
from geobus._decisions.session_stamps import Stamp
from geobus.testing import FakeClock

A, B = "primary", "secondary"
P = "p.1"


def order(*, passive: bool, wait: float = 30.0, clock: FakeClock | None = None, marks: dict[str, int] | None = None) -> SessionOrder[str]:
    merge: SessionOrder[str] = SessionOrder([A, B], wait_for_down=passive, gap_wait=wait, clock=clock or FakeClock(), marks=marks)
    merge.region_live(A, True)
    merge.region_live(B, True)
    return merge


def arrive(merge: SessionOrder[str], region: str, *seqs: int, producer: str = P, twin: bool = False) -> None:
    """Copies of ``seqs`` from ``region``; ``twin``: the duplicate rules held them (not offered)."""
    for seq in seqs:
        stamp = Stamp(producer, seq)
        merge.observed(region, stamp)
        if not twin:
            merge.offer(f"{producer}#{seq}", stamp)


def taken(merge: SessionOrder[str]) -> list[str]:
    return [release.item for release in merge.take()]


def taken_one(merge: SessionOrder[str]) -> str:
    (release,) = merge.take(1)
    return release.item


class TestInOrder:
    """Copies of one session from two regions come out in the producer's order, each once."""

    def test_the_next_number_goes_out_at_once(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 1)
        assert taken(merge) == [f"{P}#1"]

    def test_a_later_number_waits_for_an_earlier_one_the_other_region_is_about_to_give(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 2)  # the copy of 1 in A was lost to a partial write; B has it
        assert taken(merge) == []
        arrive(merge, B, 1)
        assert taken(merge) == [f"{P}#1", f"{P}#2"]

    def test_twins_only_move_the_regions_progress(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 1, 2, 3)
        arrive(merge, B, 1, 2, 3, twin=True)
        assert taken(merge) == [f"{P}#1", f"{P}#2", f"{P}#3"]
        assert merge.counters.gaps == 0

    def test_interleaved_producers_keep_their_own_order(self) -> None:
        merge = order(passive=False, marks={"x": 0, "y": 0})
        arrive(merge, A, 2, producer="x")
        arrive(merge, A, 1, producer="y")
        arrive(merge, B, 1, producer="x")
        out = taken(merge)
        assert out.index("x#1") < out.index("x#2") and "y#1" in out

    def test_unstamped_messages_go_out_as_they_come(self) -> None:
        merge = order(passive=True, marks={P: 0})
        arrive(merge, A, 2)
        merge.offer("plain", None)
        assert taken(merge) == ["plain"]

    def test_a_random_interleaving_of_both_regions_comes_out_in_order(self) -> None:
        rng = random.Random(7)
        merge = order(passive=False, marks={P: 0})
        streams = {A: list(range(1, 51)), B: list(range(1, 51))}
        seen: set[int] = set()
        out: list[str] = []
        for _ in range(400):  # bounded: both streams are 50 long
            live = [r for r, s in streams.items() if s]
            if not live:
                break
            region = rng.choice(live)
            seq = streams[region].pop(0)
            arrive(merge, region, seq, twin=seq in seen)
            seen.add(seq)
            out += taken(merge)
        assert out == [f"{P}#{n}" for n in range(1, 51)]


class TestStart:
    """Where a producer without a mark starts."""

    def test_the_lowest_number_once_every_live_region_answered(self) -> None:
        merge = order(passive=True)
        arrive(merge, A, 4, 5)
        assert taken(merge) == []  # B has not answered: it may hold 3
        arrive(merge, B, 3)
        assert taken(merge) == [f"{P}#3", f"{P}#4", f"{P}#5"]

    def test_an_empty_answer_counts(self) -> None:
        merge = order(passive=True)
        arrive(merge, A, 4)
        merge.drained(B)
        assert taken(merge) == [f"{P}#4"]

    def test_a_region_that_is_down_is_not_waited_for_at_the_start_in_active_mode(self) -> None:
        merge = order(passive=False)
        merge.region_live(B, False)
        arrive(merge, A, 7)
        assert taken(merge) == [f"{P}#7"]

    def test_passive_a_region_down_at_the_start_is_waited_for_then_reported(self) -> None:
        clock = FakeClock()
        merge = order(passive=True, wait=5, clock=clock)
        merge.region_live(B, False)
        arrive(merge, A, 7)
        assert taken(merge) == []  # B may hold lower numbers, stranded
        clock.advance(5)
        assert taken(merge) == [f"{P}#7"]
        assert list(merge.gaps) == [Gap(P, None, 6, 5.0)] and merge.counters.gap_messages == 0

    def test_number_one_starts_a_stream_at_once(self) -> None:
        merge = order(passive=True)
        merge.region_live(B, False)
        arrive(merge, A, 1, 2)
        assert taken(merge) == [f"{P}#1", f"{P}#2"]

    def test_a_region_that_never_answers_is_given_up_after_the_wait(self) -> None:
        clock = FakeClock()
        merge = order(passive=True, wait=5, clock=clock)
        arrive(merge, A, 4)
        assert taken(merge) == []
        clock.advance(5)
        assert taken(merge) == [f"{P}#4"]

    def test_a_mark_from_the_session_state_sets_the_start(self) -> None:
        clock = FakeClock()
        merge = order(passive=True, wait=5, clock=clock, marks={P: 3})
        arrive(merge, B, 6)
        merge.region_live(A, False)
        assert taken(merge) == []  # 4 and 5 may be stranded in A
        clock.advance(5)
        assert taken(merge) == [f"{P}#6"]
        assert list(merge.gaps) == [Gap(P, 4, 5, 5.0)]


class TestActiveOutage:
    """Active mode: the surviving region holds every copy, so a region going down costs no wait."""

    def test_a_down_region_is_not_waited_for(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 1, 2)
        assert taken(merge) == [f"{P}#1", f"{P}#2"]
        merge.region_live(A, False)
        arrive(merge, B, 1, 2, twin=True)
        arrive(merge, B, 3, 4)
        assert taken(merge) == [f"{P}#3", f"{P}#4"]
        assert merge.counters.gaps == 0

    def test_a_number_no_region_holds_is_passed_at_once_and_reported(self) -> None:
        merge = order(passive=False, marks={P: 0})
        merge.region_live(B, False)
        arrive(merge, A, 1, 3)  # 2 was never stored (the send failed everywhere)
        assert taken(merge) == [f"{P}#1", f"{P}#3"]
        assert list(merge.gaps) == [Gap(P, 2, 2, 0.0)]


class TestPassiveGap:
    """Passive mode: messages stranded in a region that went down are waited for, within the bound."""

    def test_a_gap_waits_for_the_region_that_is_down_then_is_reported(self) -> None:
        clock = FakeClock()
        merge = order(passive=True, wait=10, clock=clock, marks={P: 0})
        arrive(merge, A, 1, 2)
        assert taken(merge) == [f"{P}#1", f"{P}#2"]
        merge.region_live(A, False)  # 3 and 4 are stranded in A
        arrive(merge, B, 5, 6)
        clock.advance(9.9)
        assert taken(merge) == []
        assert merge.wake_at() == pytest.approx(clock() + 0.1)
        clock.advance(0.1)
        assert taken(merge) == [f"{P}#5", f"{P}#6"]
        assert list(merge.gaps) == [Gap(P, 3, 4, pytest.approx(10.0))]  # type: ignore[arg-type]
        assert (merge.counters.gaps, merge.counters.gap_messages) == (1, 2)

    def test_the_region_back_within_the_wait_fills_the_gap_in_order(self) -> None:
        clock = FakeClock()
        merge = order(passive=True, wait=10, clock=clock, marks={P: 2})
        merge.region_live(A, False)
        arrive(merge, B, 5)
        clock.advance(3)
        assert taken(merge) == []
        merge.region_live(A, True)
        arrive(merge, A, 3, 4)
        assert taken(merge) == [f"{P}#3", f"{P}#4", f"{P}#5"]
        assert merge.counters.gaps == 0

    def test_a_live_region_that_drained_closes_the_gap_at_once(self) -> None:
        merge = order(passive=True, marks={P: 2})
        arrive(merge, B, 5)
        assert taken(merge) == []  # A is live and may still give 3
        merge.drained(A)
        assert taken(merge) == [f"{P}#5"]
        assert merge.counters.gaps == 1

    def test_a_message_after_its_gap_was_given_up_is_delivered_and_counted_late(self) -> None:
        clock = FakeClock()
        merge = order(passive=True, wait=1, clock=clock, marks={P: 2})
        merge.region_live(A, False)
        arrive(merge, B, 5)
        clock.advance(1)
        assert taken(merge) == [f"{P}#5"]
        merge.region_live(A, True)
        arrive(merge, A, 3)
        releases = merge.take()
        assert [(r.item, r.late) for r in releases] == [(f"{P}#3", True)]
        assert merge.counters.out_of_order == 1

    def test_nothing_is_lost_whatever_the_arrival(self) -> None:
        rng = random.Random(11)
        for _ in range(50):
            clock = FakeClock()
            merge = order(passive=True, wait=2, clock=clock, marks={P: 0})
            numbers = list(range(1, 21))
            split = rng.randint(0, 20)
            regions = {A: numbers[:split], B: numbers[split:]}
            out: list[str] = []
            for _step in range(200):
                live = [r for r, s in regions.items() if s]
                if not live:
                    break
                region = rng.choice(live)
                arrive(merge, region, regions[region].pop(0))
                if rng.random() < 0.2:
                    clock.advance(1)
                out += taken(merge)
            clock.advance(2)
            out += taken(merge)
            assert sorted(out) == sorted(f"{P}#{n}" for n in numbers)
            late = merge.counters.out_of_order
            in_order = [int(item.split("#")[1]) for item in out]
            assert late or in_order == sorted(in_order)


class TestSettling:
    """What the application does with a message, for the marks and redeliveries."""

    def test_marks_stop_below_the_first_unsettled_number(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 1, 2, 3)
        taken(merge)
        merge.settled(Stamp(P, 1))
        merge.settled(Stamp(P, 3))
        assert merge.marks() == {P: 1}
        merge.settled(Stamp(P, 2))
        assert merge.marks() == {P: 3}

    def test_an_abandoned_message_comes_back_before_the_later_ones(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 1, 2, 3)
        assert taken_one(merge) == f"{P}#1"  # receive_messages(1): 2 and 3 stay here
        merge.released(Stamp(P, 1))
        assert taken(merge) == []  # 2 waits for 1's copy to come back, as the SDK gives 1 again
        arrive(merge, B, 1)  # its twin, promoted
        releases = merge.take()
        assert [(r.item, r.late) for r in releases] == [(f"{P}#1", False), (f"{P}#2", False), (f"{P}#3", False)]
        assert (merge.counters.out_of_order, merge.counters.gaps) == (0, 0)
        assert merge.marks() == {P: 0}

    def test_one_let_go_of_after_later_ones_were_handed_out_comes_back_without_a_gap(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 1, 2, 3)
        assert taken(merge) == [f"{P}#1", f"{P}#2", f"{P}#3"]  # receive_messages(3)
        merge.settled(Stamp(P, 2))
        merge.released(Stamp(P, 1))
        arrive(merge, A, 4)
        assert taken(merge) == []  # 4 waits for 1
        arrive(merge, A, 1)  # the redelivery
        assert taken(merge) == [f"{P}#1", f"{P}#4"]  # 2 and 3 were handed out already
        assert (merge.counters.gaps, merge.counters.out_of_order) == (0, 0)

    def test_one_let_go_of_that_never_comes_back_is_a_gap_reported_after_the_wait(self) -> None:
        clock = FakeClock()
        merge = order(passive=True, wait=5, clock=clock, marks={P: 0})
        arrive(merge, A, 1, 2, 3)
        assert taken_one(merge) == f"{P}#1"
        merge.released(Stamp(P, 1))  # dead-lettered on its last delivery: it never comes back
        assert taken(merge) == []
        clock.advance(5)
        assert taken(merge) == [f"{P}#2", f"{P}#3"]
        assert list(merge.gaps) == [Gap(P, 1, 1, 5.0)]
        merge.settled(Stamp(P, 2))
        merge.settled(Stamp(P, 3))
        assert merge.marks() == {P: 3}  # the number given up does not hold the marks back

    def test_take_hands_out_no_more_than_asked_and_keeps_the_rest(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 1, 2, 3)
        assert [r.item for r in merge.take(2)] == [f"{P}#1", f"{P}#2"]
        assert merge.held_items() == [f"{P}#3"] and merge.ready() == 1

    def test_marks_keep_the_most_recent_producers(self) -> None:
        merge = order(passive=False)
        merge.drained(A)
        merge.drained(B)
        for n in range(MAX_PRODUCERS + 5):
            arrive(merge, A, 1, producer=f"p{n}")
        for release in merge.take():
            merge.settled(release.stamp)
        marks = merge.marks()
        assert len(marks) == MAX_PRODUCERS and f"p{MAX_PRODUCERS + 4}" in marks and "p0" not in marks

    def test_a_negative_wait_is_refused(self) -> None:
        with pytest.raises(ValueError, match="gap_wait"):
            SessionOrder([A, B], wait_for_down=True, gap_wait=-1)


class TestDuplicateStamps:
    """Two messages with one stamp (a copied properties dict): neither vanishes."""

    def test_a_second_one_while_the_first_is_held_goes_out_unstamped_and_is_counted(self) -> None:
        merge = order(passive=False, marks={P: 0})
        merge.offer("first", Stamp(P, 2))
        merge.offer("second", Stamp(P, 2))
        releases = merge.take()
        assert [(r.item, r.stamp) for r in releases] == [("second", None)]  # 2 still waits for 1
        assert merge.held_items() == ["first"] and merge.counters.duplicate_stamps == 1

    def test_one_after_its_number_was_released_goes_out_unstamped_not_late(self) -> None:
        merge = order(passive=False, marks={P: 0})
        arrive(merge, A, 1, 2)
        assert taken(merge) == [f"{P}#1", f"{P}#2"]
        merge.offer("copy of 1", Stamp(P, 1))
        merge.offer("copy of 2", Stamp(P, 2))
        assert [(r.item, r.stamp, r.late) for r in merge.take()] == [("copy of 1", None, False), ("copy of 2", None, False)]
        assert (merge.counters.duplicate_stamps, merge.counters.out_of_order) == (2, 0)

    def test_a_late_number_is_late_once_then_a_duplicate(self) -> None:
        merge = order(passive=False, marks={P: 0})
        merge.region_live(B, False)
        arrive(merge, A, 1, 3)  # 2 was never stored: passed at once (active)
        assert taken(merge) == [f"{P}#1", f"{P}#3"]
        merge.offer("2", Stamp(P, 2))
        merge.offer("2 again", Stamp(P, 2))
        assert [(r.item, r.late) for r in merge.take()] == [("2", True), ("2 again", False)]
        assert (merge.counters.out_of_order, merge.counters.duplicate_stamps) == (1, 1)


class TestNeeds:
    """Which namespace a receiver fetches from to close a gap."""

    def test_only_a_region_that_may_still_hold_the_missing_number(self) -> None:
        merge = order(passive=True, marks={P: 0})
        arrive(merge, A, 2)  # 1 is missing; A has passed it
        assert taken(merge) == []
        assert (merge.needs(A), merge.needs(B)) == (False, True)
        merge.drained(B)
        assert not merge.needs(B)

