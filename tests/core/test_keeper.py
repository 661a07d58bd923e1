"""The receiver's keeper: held copies' locks (and shared leases) renewed, a slow namespace
isolated (fakes, fake lock clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from geobus import Deadlines, DedupPolicy
from geobus._decisions.dedup import Copy, key_of
from geobus._engine.pumps import LockKeeper
from geobus._storage.seenset.memory import MemorySeenSet
from geobus.aio import DedupReceiver
from geobus.testing import FakeClock, eventually_async

from .fakes import FakeReceiveChannel, Script, hang
from .test_receiver_core import BOUND, QUICK, receive


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the keeper's ticks (so a test can wait for some to pass)."""
    done: list[int] = []
    renew_due = LockKeeper.renew_due

    def counted(self: LockKeeper, held: list[Copy]) -> None:
        done.append(len(held))
        renew_due(self, held)

    monkeypatch.setattr(LockKeeper, "renew_due", counted)
    return done


@pytest.fixture
def renewal_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The namespaces of the per-namespace renewal runs that have ended, in order."""
    ended: list[str] = []
    renew_on = LockKeeper._renew_on

    async def recorded(self: LockKeeper, namespace: str, copies: list[Copy]) -> None:
        await renew_on(self, namespace, copies)
        ended.append(namespace)

    monkeypatch.setattr(LockKeeper, "_renew_on", recorded)
    return ended


@pytest.fixture
async def receivers() -> AsyncIterator[list[DedupReceiver]]:
    made: list[DedupReceiver] = []
    yield made
    for receiver in made:
        await receiver.close()


def _channels(clock: FakeClock, lock_duration: float = 60.0) -> tuple[FakeReceiveChannel, FakeReceiveChannel]:
    return (
        FakeReceiveChannel("weu", clock=clock, lock_duration=lock_duration),
        FakeReceiveChannel("neu", clock=clock, lock_duration=lock_duration),
    )


async def _hold_twins(
    receiver: DedupReceiver, delivered_from: FakeReceiveChannel | None, held_on: FakeReceiveChannel, *ids: str
) -> None:
    """The application takes ``ids`` from one namespace (or another worker has them); their
    copies on ``held_on`` wait, locked."""
    held = receiver.stats.held
    if delivered_from is not None:
        delivered_from.publish(*ids)
        await receive(receiver, len(ids))
    held_on.publish(*ids)
    for _ in range(100):  # a twin is sorted out when the application next asks for messages
        assert await receiver.receive_messages(1, max_wait_time=0.02) == []
        if receiver.stats.held == held + len(ids):
            return
    raise AssertionError(f"the twins of {ids} were not held")


async def test_a_held_twin_is_renewed_when_its_lock_nears_its_end(
    clock: FakeClock, receivers: list[DedupReceiver], ticks: list[int]
) -> None:
    weu, neu = _channels(clock)
    receiver = DedupReceiver([weu, neu], clock=clock, deadlines=Deadlines(receive_stall=0.1), timings=QUICK)
    receivers.append(receiver)
    await _hold_twins(receiver, weu, neu, "a", "b")
    twins = neu.published
    before = [m.locked_until_utc for m in twins]
    passes = len(ticks)
    await eventually_async(lambda: len(ticks) >= passes + 3, within=BOUND)  # 60 s of lock left: nothing is due yet
    assert neu.renew_attempts == 0
    clock.advance(51)  # 9 s left: due
    await eventually_async(lambda: len(neu.renewals) == 2, within=BOUND)
    assert all(m.locked_until_utc > b for m, b in zip(twins, before, strict=True))
    assert weu.renew_attempts == 0  # the application's own copies are its to renew


async def test_a_black_holed_namespace_does_not_hold_up_the_others_renewals(
    clock: FakeClock, receivers: list[DedupReceiver], renewal_runs: list[str]
) -> None:
    # Copies waiting on another worker are held locked on both namespaces at once (a
    # worker's own twins cannot be: a namespace is not asked while the application holds
    # one of its messages). Worker "a" holds k1..k6; worker "b" has copies of all six.
    store = MemorySeenSet(max_entries=100, clock=FakeClock())  # leases do not run out here
    a_weu, a_neu = _channels(clock)
    a = DedupReceiver(
        [a_weu, a_neu], clock=clock, deadlines=Deadlines(receive_stall=0.1), seen_set=store, timings=QUICK
    )
    b_weu, b_neu = _channels(clock)
    b_weu.renews = Script(hang())  # accepts the request, never answers
    b = DedupReceiver(
        [b_weu, b_neu],
        clock=clock,
        deadlines=Deadlines(attempt=0.3, send=0.3, receive_stall=0.1),
        seen_set=store,
        timings=QUICK,
    )
    receivers.extend([a, b])
    keys = [f"k{i}" for i in range(1, 7)]
    a_weu.publish(*keys)
    await receive(a, 6)
    await _hold_twins(b, None, b_weu, *keys[:3])  # held first: the keeper meets them first
    await _hold_twins(b, None, b_neu, *keys[3:])
    clock.advance(55)
    await eventually_async(lambda: len(b_neu.renewals) == 3, within=BOUND)
    # One unanswered renewal leaves weu for this turn: neu's copies were not kept waiting
    # behind three of them (0.9 s), and weu is tried again on the next turn.
    assert b_weu.renew_attempts == 1
    # Each run on weu gives up at its first unanswered renewal (three would be 0.9 s of a
    # run), and the next starts on a later tick.
    await eventually_async(lambda: renewal_runs.count("weu") >= 3, within=3 * BOUND)
    assert b_weu.renew_attempts <= renewal_runs.count("weu") + 1
    assert b_weu.renewals == []
    assert b.stats.delivered == 0


async def test_leases_are_renewed_on_time_while_lock_renewals_hang(
    clock: FakeClock, receivers: list[DedupReceiver]
) -> None:
    lease = 30.0
    store = MemorySeenSet(max_entries=100, clock=clock)
    neu = FakeReceiveChannel("neu", clock=clock, lock_duration=600.0)  # the application's copy
    weu = FakeReceiveChannel("weu", clock=clock, lock_duration=12.0)  # its twin, soon due
    weu.renews = Script(hang())  # every renewal there takes the whole 5 s attempt deadline
    receiver = DedupReceiver(
        [weu, neu],
        clock=clock,
        deadlines=Deadlines(receive_stall=0.1),
        dedup=DedupPolicy(lease=lease),
        seen_set=store,
        timings=QUICK,
    )
    receivers.append(receiver)
    await _hold_twins(receiver, neu, weu, "m")
    for _ in range(4):  # well past the lease, a third of it at a time: renewed each time, promptly
        expires = store._in_flight[key_of("m")].expires_at
        clock.advance(lease / 3 + 0.1)
        await eventually_async(
            lambda expires=expires: store._in_flight[key_of("m")].expires_at > expires,  # type: ignore[misc]
            within=BOUND,
        )
    assert weu.renew_attempts >= 1 and weu.renewals == []  # the lock renewals hung all along
