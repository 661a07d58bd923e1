"""What lock times decide, without I/O: renewals due, keys held for leases, a pump's wait."""

from __future__ import annotations

from geobus._decisions.dedup import Copy, key_of
from geobus._decisions.locks import due_for_renewal, held_keys, live, namespace_busy

NOW = 1_000.0


def copy(namespace: str = "weu", seq: int = 1, locked_until: float | None = NOW + 60) -> Copy:
    return Copy(namespace, seq, locked_until)


class TestLive:
    """A copy is live while its lock has not run out; one without a known end always is."""

    def test_live_until_its_lock_runs_out(self) -> None:
        assert live(copy(locked_until=NOW + 0.001), NOW)
        assert not live(copy(locked_until=NOW), NOW)
        assert not live(copy(locked_until=NOW - 1), NOW)

    def test_no_known_end_is_live(self) -> None:
        assert live(copy(locked_until=None), NOW)


class TestDueForRenewal:
    """Per namespace, the copies with ``renew_ahead`` or less left, soonest first."""

    def test_nothing_is_due_while_every_lock_has_more_left(self) -> None:
        assert due_for_renewal([copy(locked_until=NOW + 60), copy("neu", 2, NOW + 10.5)], NOW, 10.0) == {}

    def test_due_within_renew_ahead_soonest_first_per_namespace(self) -> None:
        late, soon, edge = copy("weu", 1, NOW + 9), copy("weu", 2, NOW + 1), copy("neu", 3, NOW + 10)
        far = copy("neu", 4, NOW + 30)
        assert due_for_renewal([late, far, edge, soon], NOW, 10.0) == {"weu": [soon, late], "neu": [edge]}

    def test_a_lock_already_run_out_is_due_and_one_without_an_end_never(self) -> None:
        gone, endless = copy(locked_until=NOW - 5), copy(seq=2, locked_until=None)
        assert due_for_renewal([endless, gone], NOW, 10.0) == {"weu": [gone]}


class TestHeldKeys:
    """A key is held while its copy is with the application under a live lock, or ready for it."""

    def test_with_the_application_under_a_live_lock(self) -> None:
        a, b = key_of("a"), key_of("b")
        handed_out = [(a, copy(locked_until=NOW + 1)), (b, copy(seq=2, locked_until=NOW - 1))]
        assert held_keys(handed_out, [], NOW) == {a}  # b's lock ran out unsettled: let go

    def test_ready_to_be_handed_out(self) -> None:
        assert held_keys([], [key_of("r"), None], NOW) == {key_of("r")}

    def test_no_key_is_never_held(self) -> None:
        assert not held_keys([(None, copy())], [None], NOW)


class TestNamespaceBusy:
    """A pump waits while this process holds any of its namespace's messages."""

    def test_free_when_nothing_is_held(self) -> None:
        assert not namespace_busy(queued=0, settling=0, handed_out=[], now=NOW)

    def test_busy_with_copies_fetched_and_not_looked_at(self) -> None:
        assert namespace_busy(queued=1, settling=0, handed_out=[], now=NOW)

    def test_busy_while_duplicates_are_settled(self) -> None:
        assert namespace_busy(queued=0, settling=2, handed_out=[], now=NOW)

    def test_busy_while_the_application_holds_a_live_copy(self) -> None:
        assert namespace_busy(queued=0, settling=0, handed_out=[copy(locked_until=NOW + 1)], now=NOW)

    def test_busy_while_a_twin_is_held_for_its_copys_outcome(self) -> None:
        assert namespace_busy(queued=0, settling=0, handed_out=[], twins=[copy(locked_until=NOW + 1)], now=NOW)
        assert not namespace_busy(queued=0, settling=0, handed_out=[], twins=[copy(locked_until=NOW)], now=NOW)

    def test_an_application_waiting_for_more_is_not_held_back_by_what_it_holds(self) -> None:
        held = [copy(locked_until=NOW + 1)]
        assert not namespace_busy(queued=0, settling=0, handed_out=held, twins=held, waited_for=True, now=NOW)
        assert namespace_busy(queued=1, settling=0, handed_out=[], waited_for=True, now=NOW)  # fetched, unread
        assert namespace_busy(queued=0, settling=1, handed_out=[], waited_for=True, now=NOW)  # a twin settling

    def test_free_once_every_copy_the_application_holds_has_lost_its_lock(self) -> None:
        lost = [copy(locked_until=NOW - 1), copy(seq=2, locked_until=NOW)]
        assert not namespace_busy(queued=0, settling=0, handed_out=lost, now=NOW)
