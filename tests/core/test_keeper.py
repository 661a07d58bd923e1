"""The receiver's keeper: held copies' locks (and shared leases) renewed, a slow namespace
isolated (fakes, fake lock clock). Which copies are due is ``locks.due_for_renewal``'s
call, tested in ``test_locks.py``; here, the ``LockKeeper`` that carries it out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from geobus import Deadlines, DedupPolicy
from geobus._decisions.dedup import Copy, key_of
from geobus._engine.copies import copy_of
from geobus._engine.pumps import LockKeeper
from geobus._storage.seenset.memory import MemorySeenSet
from geobus.aio import DedupReceiver
from geobus.testing import FakeClock, eventually_async

from .fakes import FakeReceiveChannel, Script, hang
from .test_receiver_core import BOUND, QUICK, receive


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


def _held(channel: FakeReceiveChannel, *ids: str) -> list[Copy]:
    """Copies of ``ids`` as ``channel`` hands them out now, held here."""
    return [copy_of(channel, message) for message in channel.publish(*ids)]


@pytest.fixture
async def keepers() -> AsyncIterator[list[LockKeeper]]:
    made: list[LockKeeper] = []
    yield made
    for keeper in made:
        await keeper.close()


class TestLockKeeper:
    """One run per namespace at a time, each renewing the copies due; a keeper turn is a call
    of ``renew_due``, so no test waits for one."""

    async def test_only_the_copies_due_are_renewed(self, clock: FakeClock, keepers: list[LockKeeper]) -> None:
        weu, neu = _channels(clock)
        keeper = LockKeeper({"weu": weu, "neu": neu}, clock=clock, renew_ahead=10.0, deadlines=Deadlines())
        keepers.append(keeper)
        copies = _held(neu, "a", "b")
        assert keeper.renew_due(copies) == {}  # 60 s of lock left: nothing is due yet
        clock.advance(51)  # 9 s left: due
        runs = keeper.renew_due(copies)
        await asyncio.gather(*runs.values())
        assert list(runs) == ["neu"] and len(neu.renewals) == 2
        assert all(copy.locked_until is not None and copy.locked_until > clock() + 50 for copy in copies)
        assert keeper.renew_due(copies) == {}  # renewed: not due again

    async def test_a_black_holed_namespace_does_not_hold_up_the_others_renewals(
        self, clock: FakeClock, keepers: list[LockKeeper]
    ) -> None:
        weu, neu = _channels(clock)
        weu.renews = Script(hang())  # accepts the request, never answers
        # Every copy is always due (60 s locks, renewed 100 s ahead): each call is a full turn.
        keeper = LockKeeper(
            {"weu": weu, "neu": neu}, clock=clock, renew_ahead=100.0, deadlines=Deadlines(attempt=0.3, send=0.3)
        )
        keepers.append(keeper)
        copies = [*_held(weu, "k1", "k2", "k3"), *_held(neu, "k4", "k5", "k6")]
        first = keeper.renew_due(copies)
        await asyncio.wait_for(first["neu"], BOUND)
        # neu's copies were not kept waiting behind weu's unanswered renewal (0.3 s).
        assert len(neu.renewals) == 3 and not first["weu"].done()
        assert list(keeper.renew_due(copies)) == ["neu"]  # weu's run has not ended: none beside it
        await asyncio.wait_for(first["weu"], BOUND)
        # The run gave up at its first unanswered renewal: one deadline per turn, not one per copy.
        assert weu.renew_attempts == 1 and weu.renewals == []
        assert "weu" in keeper.renew_due(copies)  # tried again on the next turn


async def test_a_held_twin_is_renewed_by_the_receivers_keeper(
    clock: FakeClock, receivers: list[DedupReceiver]
) -> None:
    weu, neu = _channels(clock)
    receiver = DedupReceiver([weu, neu], clock=clock, deadlines=Deadlines(receive_stall=0.1), timings=QUICK)
    receivers.append(receiver)
    await _hold_twins(receiver, weu, neu, "a", "b")
    twins = neu.published
    before = [m.locked_until_utc for m in twins]
    clock.advance(51)  # 9 s left: due
    await eventually_async(lambda: len(neu.renewals) == 2, within=BOUND)
    assert all(m.locked_until_utc > b for m, b in zip(twins, before, strict=True))
    assert weu.renew_attempts == 0  # the application's own copies are its to renew


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
