"""``claim_many`` and ``complete_many`` in every store (memory, SQLite, a real Redis): the answers
and the state of the single calls made in turn, in one call. And ``SharedKeys``, which puts the
questions a receiver asks within one turn of its loop to the store as one of those calls."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from geobus import DedupPolicy
from geobus._decisions.actions import ClaimKey, RecheckKey, RecordOutcome
from geobus._decisions.dedup import Copy, Key, key_of
from geobus._engine.shared_keys import SharedKeys
from geobus._storage.seenset import BatchSeenSet, Claim, SeenSetError
from geobus._storage.seenset.memory import MemorySeenSet
from geobus.testing import eventually_async

from .conftest import LONG, MAX_ENTRIES, WITHIN, FakeClock, Harness
from .test_contract import free_again

CLAIMED, TAKEN, COMPLETED, DEAD_LETTERED, DEFERRED = (
    Claim.CLAIMED, Claim.TAKEN, Claim.COMPLETED, Claim.DEAD_LETTERED, Claim.DEFERRED)
OUTCOMES = (COMPLETED, DEAD_LETTERED, DEFERRED)


def batching(h: Harness) -> BatchSeenSet:
    assert isinstance(h.store, BatchSeenSet)  # each store of geobus's own
    return h.store


class TestClaimMany:
    async def test_each_key_is_answered_as_claim_would(self, harness: Harness) -> None:
        store = batching(harness)
        await store.claim("taken", "b", LONG)
        await store.claim("mine", "a", LONG)
        for key, outcome in zip(("done", "dead", "deferred"), OUTCOMES, strict=True):
            await store.complete(key, "b", outcome, LONG)
        keys = ["new", "taken", "mine", "done", "dead", "deferred"]
        assert await store.claim_many(keys, "a", LONG) == [CLAIMED, TAKEN, CLAIMED, COMPLETED, DEAD_LETTERED, DEFERRED]
        other = harness.another()
        assert [await other.claim(key, "c", LONG) for key in keys] == [
            TAKEN, TAKEN, TAKEN, COMPLETED, DEAD_LETTERED, DEFERRED]

    async def test_a_key_twice_is_its_owners_both_times(self, harness: Harness) -> None:
        store = batching(harness)
        assert await store.claim_many(["k", "k"], "a", LONG) == [CLAIMED, CLAIMED]
        assert await store.claim_many(["k", "j"], "b", LONG) == [TAKEN, CLAIMED]

    async def test_no_keys(self, harness: Harness) -> None:
        assert await batching(harness).claim_many([], "a", LONG) == []

    async def test_the_leases_run_out(self, harness: Harness) -> None:
        h = harness
        assert await batching(h).claim_many(["k1", "k2"], "a", h.short) == [CLAIMED, CLAIMED]
        await h.pass_time(h.short)
        await free_again(h, "k1")
        assert await h.store.claim("k2", "b", LONG) is CLAIMED


class TestCompleteMany:
    async def test_each_outcome_is_recorded_whoever_holds_the_key(self, harness: Harness) -> None:
        store = batching(harness)
        await store.claim("a-has-it", "a", LONG)
        await store.claim("b-has-it", "b", LONG)
        await store.complete_many(
            [("a-has-it", COMPLETED), ("b-has-it", DEAD_LETTERED), ("absent", DEFERRED)], "a", LONG)
        other = harness.another()
        assert [await other.claim(key, "c", LONG) for key in ("a-has-it", "b-has-it", "absent")] == list(OUTCOMES)

    async def test_the_last_outcome_of_a_key_wins(self, harness: Harness) -> None:
        await batching(harness).complete_many([("k", COMPLETED), ("k", DEAD_LETTERED)], "a", LONG)
        assert await harness.store.claim("k", "b", LONG) is DEAD_LETTERED

    async def test_no_keys(self, harness: Harness) -> None:
        await batching(harness).complete_many([], "a", LONG)
        assert await harness.store.claim("k", "a", LONG) is CLAIMED

    async def test_absent_again_after_the_ttl(self, harness: Harness) -> None:
        h = harness
        await batching(h).complete_many([("k1", COMPLETED), ("k2", DEFERRED)], "a", h.short)
        await h.pass_time(h.short)
        await free_again(h, "k1")
        assert await h.store.claim("k2", "b", LONG) is CLAIMED


class TestLikeSingleCalls:
    @pytest.mark.parametrize("seed", range(4))
    async def test_random_batches_answer_as_single_calls_in_turn(self, harness: Harness, seed: int) -> None:
        """Batches of a few keys (repeats too) by three owners, against the reference store asked
        one key at a time; then every key's state, as a newcomer's claims see it."""
        rng = random.Random(seed)
        keys, owners = [f"k{i}" for i in range(MAX_ENTRIES - 2)], "abc"  # never more processed than kept
        reference = MemorySeenSet(max_entries=MAX_ENTRIES, clock=FakeClock())
        store = batching(harness)
        for _ in range(30):
            owner, some = rng.choice(owners), rng.choices(keys, k=rng.randint(1, 5))
            if rng.random() < 0.6:
                expected = [await reference.claim(key, owner, LONG) for key in some]
                assert await store.claim_many(some, owner, LONG) == expected, (owner, some)
            else:
                outcomes = [(key, rng.choice(OUTCOMES)) for key in some]
                for key, outcome in outcomes:
                    await reference.complete(key, owner, outcome, LONG)
                await store.complete_many(outcomes, owner, LONG)
        assert await store.claim_many(keys, "newcomer", LONG) == [
            await reference.claim(key, "newcomer", LONG) for key in keys]


class TestConcurrency:
    async def test_overlapping_batches_of_many_owners(self, harness: Harness) -> None:
        """Four owners claim the same keys in shuffled batches at once: each key is won once."""
        keys = [f"k{i}" for i in range(40)]

        async def owner(n: int) -> list[str]:
            store = harness.another()
            assert isinstance(store, BatchSeenSet)
            order = random.Random(n).sample(keys, len(keys))
            won = []
            for start in range(0, len(order), 8):
                chunk = order[start:start + 8]
                answers = await store.claim_many(chunk, f"owner-{n}", LONG)
                assert set(answers) <= {CLAIMED, TAKEN}
                won += [key for key, answer in zip(chunk, answers, strict=True) if answer is CLAIMED]
            return won

        won = await asyncio.gather(*(owner(n) for n in range(4)))
        assert sorted(key for keys_won in won for key in keys_won) == sorted(keys)


class TestArguments:
    """A bad argument anywhere in a batch is a ValueError, and nothing of the batch is done."""

    async def test_claim_many(self, harness: Harness) -> None:
        store = batching(harness)
        with pytest.raises(ValueError, match="key"):
            await store.claim_many(["k", 42], "a", LONG)  # type: ignore[list-item]
        with pytest.raises(ValueError, match="owner"):
            await store.claim_many(["k"], "", LONG)
        with pytest.raises(ValueError, match="lease"):
            await store.claim_many(["k"], "a", 0)
        assert await store.claim("k", "b", LONG) is CLAIMED

    async def test_complete_many(self, harness: Harness) -> None:
        store = batching(harness)
        with pytest.raises(ValueError, match="outcome"):
            await store.complete_many([("k", COMPLETED), ("j", CLAIMED)], "a", LONG)
        with pytest.raises(ValueError, match="key"):
            await store.complete_many([("k", COMPLETED), (42, COMPLETED)], "a", LONG)  # type: ignore[list-item]
        with pytest.raises(ValueError, match="ttl"):
            await store.complete_many([("k", COMPLETED)], "a", float("nan"))
        assert await store.claim("k", "b", LONG) is CLAIMED


class _Recording:
    """A memory store that records the calls made to it; ``claim_many`` waits for ``go`` when given one."""

    def __init__(self) -> None:
        self.inner = MemorySeenSet(max_entries=MAX_ENTRIES)
        self.calls: list[tuple[str, object]] = []
        self.go: asyncio.Event | None = None
        self.cancelled = False
        self.fails = False

    async def claim(self, key: Key, owner: str, lease: float) -> Claim:
        self.calls.append(("claim", key))
        return await self.inner.claim(key, owner, lease)

    async def claim_many(self, keys: list[Key], owner: str, lease: float) -> list[Claim]:
        self.calls.append(("claim_many", list(keys)))
        if self.fails:
            raise SeenSetError("connection refused")
        if self.go is not None:
            try:
                await self.go.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return await self.inner.claim_many(keys, owner, lease)

    async def complete(self, key: Key, owner: str, outcome: Claim, ttl: float) -> None:
        self.calls.append(("complete", key))
        await self.inner.complete(key, owner, outcome, ttl)

    async def complete_many(self, outcomes: list[tuple[Key, Claim]], owner: str, ttl: float) -> None:
        self.calls.append(("complete_many", [key for key, _ in outcomes]))
        await self.inner.complete_many(outcomes, owner, ttl)

    async def renew(self, key: Key, owner: str, lease: float) -> bool:
        return await self.inner.renew(key, owner, lease)

    async def release(self, key: Key, owner: str) -> None:
        await self.inner.release(key, owner)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def recording() -> AsyncIterator[tuple[_Recording, SharedKeys]]:
    store = _Recording()
    keys = SharedKeys(store, DedupPolicy(lease=LONG), owned=False)
    yield store, keys
    await keys.close()


def _claim(name: str) -> ClaimKey:
    return ClaimKey(key_of(name), Copy("weu", 1))


class TestSharedKeysCoalesce:
    """A receiver's questions asked within one turn of the loop go to the store as one call."""

    async def test_claims_asked_together_are_one_call(self, recording: tuple[_Recording, SharedKeys]) -> None:
        store, keys = recording
        await store.inner.claim(key_of("b"), "other", LONG)
        answers = await asyncio.gather(*(keys.ask(_claim(name)) for name in "abc"))
        assert answers == [CLAIMED, TAKEN, CLAIMED]
        assert store.calls == [("claim_many", [key_of(name) for name in "abc"])]

    async def test_a_lone_question_is_the_single_call(self, recording: tuple[_Recording, SharedKeys]) -> None:
        store, keys = recording
        assert await keys.ask(_claim("a")) is CLAIMED
        assert await keys.ask(RecheckKey(key_of("b"))) is CLAIMED  # another turn: another call
        assert store.calls == [("claim", key_of("a")), ("claim", key_of("b"))]

    async def test_completions_made_together_are_one_call(self, recording: tuple[_Recording, SharedKeys]) -> None:
        store, keys = recording
        outcomes = [RecordOutcome(key_of("a"), COMPLETED), RecordOutcome(key_of("b"), DEAD_LETTERED)]
        assert await asyncio.gather(*(keys.ask(outcome) for outcome in outcomes)) == [None, None]
        assert store.calls == [("complete_many", [key_of("a"), key_of("b")])]
        assert [await store.inner.claim(key_of(n), "other", LONG) for n in "ab"] == [COMPLETED, DEAD_LETTERED]

    async def test_a_failure_is_every_askers_answer(self, recording: tuple[_Recording, SharedKeys]) -> None:
        store, keys = recording
        store.fails = True
        answers = await asyncio.gather(*(keys.ask(_claim(name)) for name in "ab"))
        assert all(isinstance(answer, SeenSetError) for answer in answers)

    async def test_an_asker_who_stops_waiting_leaves_the_others_their_answers(
        self, recording: tuple[_Recording, SharedKeys]
    ) -> None:
        store, keys = recording
        store.go = asyncio.Event()
        asking = [asyncio.ensure_future(keys.ask(_claim(name))) for name in "ab"]
        await eventually_async(lambda: bool(store.calls), within=WITHIN, what="the store asked")
        asking[0].cancel()
        store.go.set()
        assert await asking[1] is CLAIMED
        assert asking[0].cancelled() and not store.cancelled

    async def test_askers_gone_before_the_call_ask_nothing(self, recording: tuple[_Recording, SharedKeys]) -> None:
        store, keys = recording
        asking = [asyncio.ensure_future(keys.ask(_claim(name))) for name in "ab"]
        await asyncio.sleep(0)  # both have asked; the call is made at the next turn
        for ask in asking:
            ask.cancel()
        await asyncio.gather(*asking, return_exceptions=True)
        assert all(ask.cancelled() for ask in asking) and store.calls == []
        assert await keys.ask(_claim("a")) is CLAIMED  # the next question is asked as ever

    async def test_the_call_is_cancelled_once_nobody_waits(self, recording: tuple[_Recording, SharedKeys]) -> None:
        store, keys = recording
        store.go = asyncio.Event()
        asking = [asyncio.ensure_future(keys.ask(_claim(name))) for name in "ab"]
        await eventually_async(lambda: bool(store.calls), within=WITHIN, what="the store asked")
        for ask in asking:
            ask.cancel()
        await eventually_async(lambda: store.cancelled, within=WITHIN, what="the store call cancelled")

    async def test_close_ends_a_call_under_way(self, recording: tuple[_Recording, SharedKeys]) -> None:
        store, keys = recording
        store.go = asyncio.Event()
        asking = asyncio.gather(*(keys.ask(_claim(name)) for name in "ab"))
        await eventually_async(lambda: bool(store.calls), within=WITHIN, what="the store asked")
        await asyncio.wait_for(keys.close(), WITHIN)
        assert store.cancelled
        with pytest.raises(asyncio.CancelledError):
            await asking
