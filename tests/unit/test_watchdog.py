"""The sync fast lane's ``Watchdog``: a watch past its deadline is cut, a disarmed one never."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from geobus._sync.watchdog import Watchdog


@pytest.fixture
def watchdog() -> Iterator[Watchdog]:
    dog = Watchdog("test-watchdog")
    yield dog
    dog.close()


def test_a_call_past_its_deadline_is_cut_and_told_so(watchdog: Watchdog) -> None:
    cut = threading.Event()

    def cutting() -> bool:
        cut.set()
        return True

    watch = watchdog.arm(0.05, cutting)
    assert cut.wait(5.0), "the watchdog never cut the call"
    assert watchdog.disarm(watch) is True


def test_a_call_that_ends_in_time_is_never_cut(watchdog: Watchdog) -> None:
    cuts: list[int] = []
    watch = watchdog.arm(0.05, lambda: bool(cuts.append(1)) or True)
    assert watchdog.disarm(watch) is False
    later = threading.Event()
    watchdog.arm(0.1, lambda: bool(later.set()) or True)  # a later watch: the first one's deadline has passed
    assert later.wait(5.0)
    assert cuts == []


def test_a_cut_with_nothing_to_cut_yet_is_tried_again(watchdog: Watchdog) -> None:
    tries: list[int] = []
    done = threading.Event()

    def not_yet() -> bool:
        tries.append(1)
        if len(tries) < 3:
            return False
        done.set()
        return True

    watch = watchdog.arm(0.01, not_yet)
    assert done.wait(5.0) and len(tries) == 3
    assert watchdog.disarm(watch) is True


def test_a_call_cut_off_is_cut_again_until_it_ends(watchdog: Watchdog) -> None:
    cuts: list[int] = []
    twice = threading.Event()

    def cutting() -> bool:  # a retry's new socket, say, would be shut the second time
        cuts.append(1)
        if len(cuts) == 2:
            twice.set()
        return True

    watch = watchdog.arm(0.01, cutting)
    assert twice.wait(5.0)
    assert watchdog.disarm(watch) is True
    settled = len(cuts)
    later = threading.Event()
    watchdog.arm(0.1, lambda: bool(later.set()) or True)
    assert later.wait(5.0) and len(cuts) == settled, "a disarmed watch was cut again"


def test_an_earlier_deadline_wakes_the_watchdog(watchdog: Watchdog) -> None:
    watchdog.arm(3600, lambda: True)  # the thread now sleeps for an hour
    cut = threading.Event()
    watchdog.arm(0.05, lambda: bool(cut.set()) or True)
    assert cut.wait(5.0)


def test_a_closed_watchdog_refuses_to_arm() -> None:
    dog = Watchdog("test-watchdog")
    dog.arm(3600, lambda: True)
    dog.close()
    dog.close()
    with pytest.raises(RuntimeError, match="closed"):
        dog.arm(1.0, lambda: True)
