"""DedupReceivers sharing a seen-set: the duplicate rules across workers (fakes, fake store clock).

Two receivers with their own fake channels stand for two worker processes that
compete for the same queues: one copy of a message reaches each. They share one
``MemorySeenSet`` (the store contract's reference), whose clock the test moves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from azure.servicebus import ServiceBusReceiveMode

from geobus import Deadlines, DedupPolicy, StoreUnavailable
from geobus._decisions.dedup import Key, key_of
from geobus._storage.seenset import Claim, SeenSetError
from geobus._storage.seenset.memory import MemorySeenSet
from geobus.aio import DedupReceiver
from geobus.testing import FakeClock, eventually_async

from .fakes import FakeReceiveChannel
from .test_receiver_core import BOUND, QUICK, receive

LEASE = 30.0


@pytest.fixture
def store_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def worker_clock() -> FakeClock:
    """The workers' wall clock (lock times; when a lease is due for renewal)."""
    return FakeClock()


@pytest.fixture
def store(store_clock: FakeClock) -> MemorySeenSet:
    return MemorySeenSet(max_entries=1000, clock=store_clock)


Worker = tuple[DedupReceiver, FakeReceiveChannel, FakeReceiveChannel]


@pytest.fixture
async def worker(store: Any, worker_clock: FakeClock) -> AsyncIterator[Callable[..., Worker]]:
    """A worker: a DedupReceiver over its own two fake channels and the shared store."""
    made: list[DedupReceiver] = []

    def make(
        seen_set: Any = None,
        receive_mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
        prefetch: int = 0,
        **policy: Any,
    ) -> Worker:
        clock = worker_clock
        weu, neu = (FakeReceiveChannel(name, clock=clock, receive_mode=receive_mode) for name in ("weu", "neu"))
        receiver = DedupReceiver(
            [weu, neu],
            clock=clock,
            deadlines=Deadlines(receive_stall=0.1),
            dedup=DedupPolicy(lease=LEASE, **policy),
            seen_set=seen_set if seen_set is not None else store,
            receive_mode=receive_mode,
            timings=QUICK,
            prefetch=prefetch,
        )
        made.append(receiver)
        return receiver, weu, neu

    yield make
    for receiver in made:
        await receiver.close()


async def _nothing_within(receiver: DedupReceiver, seconds: float = 0.2) -> None:
    assert await receiver.receive_messages(1, max_wait_time=seconds) == []


class TestAcrossWorkers:
    async def test_a_twin_on_another_worker_waits_then_is_completed_with_it(self, worker: Any) -> None:
        first, weu1, _ = worker()
        second, _, neu2 = worker()
        weu1.publish("m")
        neu2.publish("m")
        [message] = await receive(first, 1)
        await _nothing_within(second)  # its copy waits: the key is in flight on the first worker
        assert second.stats.held == 1
        await first.complete_message(message)
        await eventually_async(lambda: [s.action for s in neu2.settlements] == ["complete"], within=BOUND)
        assert second.stats.duplicates_absorbed == 1 and second.stats.delivered == 0

    async def test_a_dead_workers_key_goes_to_the_next_once_its_lease_runs_out(
        self, worker: Any, store_clock: FakeClock
    ) -> None:
        first, weu1, _ = worker()
        second, _, neu2 = worker()
        weu1.publish("m")
        neu2.publish("m")
        await receive(first, 1)  # ... and the first worker never settles it (it died)
        await _nothing_within(second)
        store_clock.advance(LEASE + 1)
        [message] = await receive(second, 1)
        assert message.message_id == "m"

    async def test_a_lease_is_renewed_while_the_application_holds_the_message(
        self, worker: Any, store_clock: FakeClock, worker_clock: FakeClock, store: MemorySeenSet
    ) -> None:
        first, weu1, _ = worker()
        second, _, neu2 = worker()
        weu1.publish("m")
        neu2.publish("m")
        await receive(first, 1)
        for _ in range(4):  # well past the lease, a third of it at a time: renewed each time
            expires = store._in_flight[key_of("m")].expires_at
            store_clock.advance(LEASE / 3 + 0.1)
            worker_clock.advance(LEASE / 3 + 0.1)
            await eventually_async(
                lambda expires=expires: store._in_flight[key_of("m")].expires_at > expires,  # type: ignore[misc]
                within=BOUND,
            )
            await _nothing_within(second, 0.05)
        assert second.stats.delivered == 0

    async def test_a_restarted_worker_does_not_process_what_it_completed(self, worker: Any, store: Any) -> None:
        before, weu1, _ = worker()
        weu1.publish("m")
        [message] = await receive(before, 1)
        await before.complete_message(message)
        await before.close()
        after, _, neu = worker()
        neu.publish("m")  # the twin, still queued when the first process stopped
        await _nothing_within(after)
        await eventually_async(lambda: [s.action for s in neu.settlements] == ["complete"], within=BOUND)
        assert after.stats.duplicates_absorbed == 1

    async def test_an_abandoned_message_frees_its_key_for_the_other_worker(self, worker: Any) -> None:
        first, weu1, _ = worker()
        second, _, neu2 = worker()
        weu1.publish("m")
        neu2.publish("m")
        [message] = await receive(first, 1)
        await _nothing_within(second)
        await first.abandon_message(message)
        [twin] = await receive(second, 1)
        assert twin.message_id == "m"

    async def test_dead_lettered_on_one_worker_is_dead_lettered_on_the_other(self, worker: Any, store: Any) -> None:
        first, weu1, _ = worker()
        weu1.publish("poison")
        [message] = await receive(first, 1)
        await first.dead_letter_message(message, reason="bad")
        assert await store.claim(key_of("poison"), "someone", LEASE) is Claim.DEAD_LETTERED
        second, _, neu2 = worker()
        neu2.publish("poison")
        await _nothing_within(second)
        await eventually_async(lambda: [s.action for s in neu2.settlements] == ["dead_letter"], within=BOUND)


UUID_42 = uuid.UUID(int=42)
LOOK_ALIKE_IDS = pytest.mark.parametrize(("first_id", "second_id"), [(42, "42"), (UUID_42, str(UUID_42))], ids=repr)


class TestTypedKeys:
    """Ids that print alike are different messages, across workers as within one (fakes hand the
    receiver what the SDK's transport does: an int id for a ulong, a UUID for a uuid)."""

    @LOOK_ALIKE_IDS
    async def test_a_look_alike_after_the_first_was_completed_is_delivered(
        self, worker: Any, first_id: object, second_id: object
    ) -> None:
        receiver, weu, neu = worker()
        weu.publish(weu.message(first_id))
        [first] = await receive(receiver, 1)
        await receiver.complete_message(first)
        neu.publish(neu.message(second_id))
        [second] = await receive(receiver, 1)  # not taken for first's twin and completed unseen
        assert (first.message_id, second.message_id) == (first_id, second_id)
        assert receiver.stats.duplicates_absorbed == 0 and neu.settlements == []

    @LOOK_ALIKE_IDS
    async def test_a_look_alike_on_another_worker_does_not_wait(
        self, worker: Any, first_id: object, second_id: object
    ) -> None:
        first, weu1, _ = worker()
        second, _, neu2 = worker()
        weu1.publish(weu1.message(first_id))
        await receive(first, 1)  # in flight on the first worker
        neu2.publish(neu2.message(second_id))
        [message] = await receive(second, 1)
        assert message.message_id == second_id and second.stats.held == 0

    async def test_the_twins_of_each_are_absorbed(self, worker: Any, store: MemorySeenSet) -> None:
        receiver, weu, neu = worker()
        ids = [42, "42", UUID_42, str(UUID_42)]
        for message_id in ids:
            weu.publish(weu.message(message_id))
            neu.publish(neu.message(message_id))
        delivered = await receive(receiver, 4)
        for message in delivered:
            await receiver.complete_message(message)
        assert await receiver.receive_messages(10, max_wait_time=0.1) == []  # the twins come in, absorbed
        await eventually_async(lambda: receiver.stats.duplicates_absorbed == 4, within=BOUND)
        assert sorted(map(repr, (m.message_id for m in delivered))) == sorted(map(repr, ids))
        assert [await store.claim(key_of(message_id), "someone", LEASE) for message_id in ids] == [Claim.COMPLETED] * 4

    @pytest.mark.parametrize("values", [(1, True, 1.0), (b"\xff\x00", "\xff\x00")], ids=repr)
    async def test_property_keys_keep_their_type(self, worker: Any, values: tuple[object, ...]) -> None:
        """1, True and 1.0 are equal in Python and three keys here; binary that is not UTF-8 is a key."""
        receiver, weu, neu = worker(key="application_property", property_name="order")
        for n, value in enumerate(values):
            properties = {b"order": value}
            weu.publish(weu.message(f"w{n}", application_properties=properties))
            neu.publish(neu.message(f"n{n}", application_properties=properties))
        delivered = await receive(receiver, len(values))
        for message in delivered:
            await receiver.complete_message(message)
        assert await receiver.receive_messages(10, max_wait_time=0.1) == []  # the twins come in, absorbed
        await eventually_async(lambda: receiver.stats.duplicates_absorbed == len(values), within=BOUND)


class _Flaky:
    """The store behind a switch (unreachable until ``up``), counting the calls made to it by name;
    without the methods named in ``hidden``."""

    def __init__(self, inner: MemorySeenSet, *, up: bool = False, hidden: tuple[str, ...] = ()) -> None:
        self.inner = inner
        self.up = up
        self.hidden = hidden
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        if name in self.hidden:
            raise AttributeError(name)
        method = getattr(self.inner, name)

        async def call(*args: Any) -> Any:
            self.calls[name] += 1
            if not self.up and name != "close":
                raise SeenSetError("connection refused")
            return await method(*args)

        return call


class TestStoreUnavailable:
    async def test_deliver_policy_delivers_new_keys(self, worker: Any, store: MemorySeenSet) -> None:
        receiver, weu, _ = worker(seen_set=_Flaky(store), store_unavailable=StoreUnavailable.DELIVER)
        weu.publish("m")
        [message] = await receive(receiver, 1)
        assert message.message_id == "m"

    async def test_hold_policy_waits_for_the_store(
        self, worker: Any, store: MemorySeenSet, worker_clock: FakeClock
    ) -> None:
        down = _Flaky(store)
        receiver, weu, _ = worker(seen_set=down, store_unavailable="hold")
        weu.publish("m")
        await _nothing_within(receiver)
        assert (receiver.stats.held, receiver.stats.in_flight) == (1, 0)
        down.up = True
        worker_clock.advance(QUICK.store_backoff)  # the store is left alone that long
        [message] = await receive(receiver, 1)
        assert message.message_id == "m"

    async def test_a_completion_the_store_missed_is_retried_and_the_key_kept(
        self, worker: Any, store: MemorySeenSet, worker_clock: FakeClock
    ) -> None:
        down = _Flaky(store, up=True)
        receiver, weu, _ = worker(seen_set=down)
        weu.publish("m")
        [message] = await receive(receiver, 1)
        down.up = False
        await receiver.complete_message(message)  # settled on the bus; the store missed it
        assert [s.action for s in weu.settlements] == ["complete"]
        assert await store.claim(key_of("m"), "other", LEASE) is Claim.TAKEN  # still ours, not free
        down.up = True
        worker_clock.advance(QUICK.store_backoff)
        await eventually_async(lambda: key_of("m") in store._processed, within=BOUND)
        assert await store.claim(key_of("m"), "other", LEASE) is Claim.COMPLETED

    async def test_receive_and_delete_never_drops_a_copy_while_the_store_is_down(
        self, worker: Any, store: MemorySeenSet
    ) -> None:
        receiver, weu, _ = worker(
            seen_set=_Flaky(store), store_unavailable="hold", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
        )
        weu.publish("m")
        [message] = await receive(receiver, 1)  # the only copy left: delivered, not held or dropped
        assert message.message_id == "m"


class TestOwnership:
    async def test_an_unsettled_message_whose_lock_ran_out_frees_its_key(
        self, worker: Any, worker_clock: FakeClock, store_clock: FakeClock
    ) -> None:
        first, weu1, _ = worker()
        second, _, neu2 = worker()
        weu1.publish("m")
        neu2.publish("m")
        await receive(first, 1)  # the handler crashed: never settled, never abandoned
        await _nothing_within(second)
        worker_clock.advance(120)  # past the message's lock; leases would be renewed otherwise
        [twin] = await receive(second, 1, within=BOUND * 3)
        assert twin.message_id == "m"

    async def test_close_frees_claims_and_leaves_a_given_store_open(self, worker: Any, store: MemorySeenSet) -> None:
        first, weu1, _ = worker()
        weu1.publish("a")
        weu1.publish("b")
        await receive(first, 1)
        await first.close()
        assert store._in_flight == {}  # nothing left claimed by the closed receiver
        assert await store.claim(key_of("a"), "other", LEASE) is Claim.CLAIMED  # the store still answers

    @pytest.mark.parametrize("mode", list(ServiceBusReceiveMode), ids=lambda mode: mode.name.lower())
    @pytest.mark.parametrize("ids", ["m", "abc"], ids=["one", "a batch"])
    async def test_a_receive_cancelled_while_the_store_is_asked_loses_nothing(
        self, worker: Any, store: MemorySeenSet, mode: ServiceBusReceiveMode, ids: str
    ) -> None:
        """The copies go back in line and are delivered by the next receive: in receive-and-delete
        mode they are already gone from their namespace, so none may come back as its own duplicate."""
        hangs = _FirstClaimHangs(store)
        receiver, weu, _ = worker(seen_set=hangs, receive_mode=mode)
        weu.publish(*ids)
        waiting = asyncio.ensure_future(receiver.receive_messages(1, max_wait_time=None))
        await eventually_async(hangs.asked.is_set, within=BOUND, what="the store asked for a claim")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        messages = await receive(receiver, len(ids))
        assert sorted(m.message_id for m in messages) == list(ids) and receiver.stats.duplicates_absorbed == 0


class _FirstClaimHangs:
    """The store whose first claim (of one key or many) is never answered: it hangs until cancelled."""

    def __init__(self, inner: MemorySeenSet) -> None:
        self.inner = inner
        self.asked = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _first_hangs(self) -> None:
        if not self.asked.is_set():
            self.asked.set()
            await asyncio.Event().wait()

    async def claim(self, key: Key, owner: str, lease: float) -> Claim:
        await self._first_hangs()
        return await self.inner.claim(key, owner, lease)

    async def claim_many(self, keys: list[Key], owner: str, lease: float) -> list[Claim]:
        await self._first_hangs()
        return await self.inner.claim_many(keys, owner, lease)


class TestBatches:
    """Completions made together are recorded in one store call; a store without batch methods is
    asked one key at a time; each copy gets its own answer."""

    @pytest.mark.parametrize(("hidden", "completions"), [
        ((), {"complete_many": 1}),
        (("claim_many", "complete_many"), {"complete": 10}),
    ], ids=["batch methods", "without them"])
    async def test_completions_made_together_are_recorded_in_one_call(
        self, worker: Any, store: MemorySeenSet, hidden: tuple[str, ...], completions: dict[str, int]
    ) -> None:
        counting = _Flaky(store, up=True, hidden=hidden)
        receiver, weu, _ = worker(seen_set=counting)
        ids = [f"m{n}" for n in range(10)]
        weu.publish(*ids)
        delivered = await receive(receiver, 10)
        assert sorted(m.message_id for m in delivered) == ids
        counting.calls.clear()
        await asyncio.gather(*(receiver.complete_message(message) for message in delivered))
        assert counting.calls == completions
        assert [await store.claim(key_of(i), "other", LEASE) for i in ids] == [Claim.COMPLETED] * 10

    async def test_the_claims_of_a_fetched_batch_go_to_the_store_as_one_call(
        self, worker: Any, store: MemorySeenSet
    ) -> None:
        counting = _Flaky(store, up=True)
        receiver, weu, _ = worker(seen_set=counting)
        ids = [f"m{n}" for n in range(10)]
        weu.publish(*ids)
        delivered = await receive(receiver, 10)  # one fetch of 10, looked at together
        assert sorted(m.message_id for m in delivered) == ids
        assert {name: n for name, n in counting.calls.items() if name.startswith("claim")} == {"claim_many": 1}

    async def test_each_copy_of_a_batch_gets_its_own_answer(self, worker: Any, store: MemorySeenSet) -> None:
        """Taken, processed, new: each copy as if claimed alone; its twin in the batch held with it."""
        await store.claim(key_of("taken"), "other", LEASE)
        await store.complete(key_of("done"), "other", Claim.COMPLETED, LEASE)
        receiver, weu, neu = worker()
        weu.publish("taken", "done", "new")
        neu.publish("new")
        [message] = await receive(receiver, 1)
        assert message.message_id == "new"
        await _nothing_within(receiver)
        assert [m.message_id for m in weu.settled("complete")] == ["done"]
        assert receiver.stats.held == 2  # "taken" waits on the other worker; "new"'s twin on the handler
        await receiver.complete_message(message)
        await eventually_async(lambda: [m.message_id for m in neu.settled("complete")] == ["new"], within=BOUND)

    async def test_copies_ready_for_the_application_keep_their_pump_waiting(self, worker: Any) -> None:
        """A batch's copies claimed with the first one handed out count as fetched: their namespace
        is not asked for more until they are handed out and settled (the SDK would make those
        settlements wait for the receive call)."""
        receiver, weu, _ = worker(prefetch=3)
        weu.publish("a", "b", "c")
        [first] = await receive(receiver, 1)  # "b" and "c" fetched with it, ready
        assert weu.asks == [3]
        await receiver.complete_message(first)
        assert receiver._busy("weu")  # "b" and "c" are still this process's
        for message in await receive(receiver, 2):
            await receiver.complete_message(message)
        await eventually_async(lambda: not receiver._busy("weu"), within=BOUND, what="nothing of weu's held")
        await eventually_async(lambda: len(weu.asks) > 1, within=BOUND, what="asked for more")

    async def test_the_store_down_for_a_batch(self, worker: Any, store: MemorySeenSet) -> None:
        receiver, weu, _ = worker(seen_set=_Flaky(store), store_unavailable=StoreUnavailable.DELIVER)
        weu.publish("a", "b", "c")
        assert sorted(m.message_id for m in await receive(receiver, 3)) == ["a", "b", "c"]


class TestRecheck:
    async def test_close_during_a_recheck_gives_every_waiting_copy_back_and_frees_its_claims(
        self, worker: Any, store: MemorySeenSet, store_clock: FakeClock
    ) -> None:
        """close() may cancel a recheck mid-store-call: the copy it had resolved and the one
        it had not reached are given back alike, and the claim it took is released."""
        receiver, weu, _ = worker()
        for key in (key_of("a"), key_of("b")):
            assert await store.claim(key, "other", LEASE) is Claim.CLAIMED
        weu.publish("a", "b")
        await _nothing_within(receiver)
        assert receiver.stats.held == 2  # both wait on the other worker
        store_clock.advance(LEASE + 1)  # the other worker died: both keys are free again
        asked = asyncio.Event()
        claim = store.claim

        async def second_claim_hangs(key: Key, owner: str, lease: float) -> Claim:
            if key == key_of("b"):
                asked.set()
                await asyncio.Event().wait()
            return await claim(key, owner, lease)

        store.claim = second_claim_hangs  # type: ignore[method-assign]
        await asyncio.wait_for(asked.wait(), BOUND)
        await asyncio.wait_for(receiver.close(), BOUND)
        assert sorted(m.message_id for m in weu.settled("abandon")) == ["a", "b"]
        store.claim = claim  # type: ignore[method-assign]
        # a's claim released, b's never taken: both free for the next worker.
        assert [await store.claim(key_of(k), "next", LEASE) for k in "ab"] == [Claim.CLAIMED] * 2
