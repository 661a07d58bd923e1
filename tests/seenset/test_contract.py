"""The SeenSet contract, one suite run against every store: memory, SQLite, a real Redis.

Owners ``a``, ``b``, ``c`` stand for three workers. A lease that must still hold
is ``LONG``; one that must run out is ``h.short``, which the fake clock jumps
past (memory, SQLite) or which a poll waits out in real time (Redis). Where real
time must have passed a short lease, a control key claimed with the same lease
proves it: once the control is free again, so is anything older.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from geobus._decisions.dedup import key_of
from geobus._storage.seenset import Claim

from .conftest import LONG, MAX_ENTRIES, Harness

CLAIMER = Path(__file__).with_name("claimer.py")
CLAIMED, TAKEN, COMPLETED, DEAD_LETTERED = Claim.CLAIMED, Claim.TAKEN, Claim.COMPLETED, Claim.DEAD_LETTERED
# The stores whose clock a test can stop at a boundary (Redis keeps time on its server).
FAKE_CLOCK_STORES = pytest.mark.parametrize("harness", ["memory", "sqlite"], indirect=True)
UUID_42 = uuid.UUID(int=42)
# Values that print alike and are different messages.
LOOK_ALIKES = pytest.mark.parametrize(
    ("value", "look_alike"),
    [(42, "42"), (UUID_42, str(UUID_42)), (b"42", "42"), (42, b"42"), (42, 42.0), (True, 1)],
    ids=repr,
)
TYPED_VALUES = pytest.mark.parametrize(
    "value", ["42", 42, 2**64 - 1, UUID_42, b"42", b"\xff\x00", 4.2, True, "ünï/🚀 " + "x" * 120], ids=repr)


async def free_again(h: Harness, key: str, by: str = "control-checker") -> None:
    """Waits (polling, or jumping the fake clock) until ``key``'s short lease or ttl has run out."""

    async def claimable() -> bool:
        return await h.store.claim(key, by, LONG) is CLAIMED

    await h.eventually(claimable, f"{key} free again after its short lease or ttl")


class TestClaim:
    """claim takes an absent key, answers TAKEN to others, and CLAIMED again to its owner."""

    async def test_absent_key_is_claimed(self, harness: Harness) -> None:
        assert await harness.store.claim("k", "a", LONG) is CLAIMED

    async def test_claimed_key_is_taken_for_others(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        assert await store.claim("k", "b", LONG) is TAKEN
        assert await store.claim("k", "c", LONG) is TAKEN

    async def test_owner_claims_again(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        assert await store.claim("k", "a", LONG) is CLAIMED
        assert await store.claim("k", "b", LONG) is TAKEN

    async def test_claim_again_by_owner_extends_the_lease(self, harness: Harness) -> None:
        h = harness
        await h.store.claim("k", "a", h.short)
        assert await h.store.claim("k", "a", LONG) is CLAIMED
        await h.store.claim("control", "a", h.short)
        await h.pass_time(h.short)
        await free_again(h, "control")
        assert await h.store.claim("k", "b", LONG) is TAKEN

    async def test_keys_are_independent(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k1", "a", LONG)
        assert await store.claim("k2", "b", LONG) is CLAIMED
        assert await store.claim("k1", "b", LONG) is TAKEN

    async def test_another_instance_sees_the_same_state(self, harness: Harness) -> None:
        other = harness.another()
        await harness.store.claim("k", "a", LONG)
        assert await other.claim("k", "b", LONG) is TAKEN
        await other.complete("k", "b", DEAD_LETTERED, LONG)
        assert await harness.store.claim("k", "a", LONG) is DEAD_LETTERED

    async def test_any_string_is_a_key(self, harness: Harness) -> None:
        store = harness.store
        for key in ("", "with space", "ünïcödé/🚀", "a:b:c", "x" * 500, "'; DROP TABLE x; --"):
            assert await store.claim(key, "a", LONG) is CLAIMED, key
            assert await store.claim(key, "b", LONG) is TAKEN, key


class TestTypedKeys:
    """A key keeps its type: 42, "42", b"42" and UUID(int=42) are four keys in every store."""

    @LOOK_ALIKES
    async def test_a_look_alike_is_another_key(self, harness: Harness, value: object, look_alike: object) -> None:
        store, key, other_key = harness.store, key_of(value), key_of(look_alike)
        assert await store.claim(key, "a", LONG) is CLAIMED
        assert await store.claim(other_key, "b", LONG) is CLAIMED  # new, not TAKEN by a
        await store.complete(key, "a", COMPLETED, LONG)
        assert await store.claim(other_key, "c", LONG) is TAKEN  # still b's
        await store.complete(other_key, "b", DEAD_LETTERED, LONG)
        assert await store.claim(key, "c", LONG) is COMPLETED
        assert await store.claim(other_key, "c", LONG) is DEAD_LETTERED

    @TYPED_VALUES
    async def test_a_typed_key_round_trips(self, harness: Harness, value: object) -> None:
        """Claimed, renewed, completed, and seen so by another instance (another process)."""
        store, other, key = harness.store, harness.another(), key_of(value)
        assert await store.claim(key, "a", LONG) is CLAIMED
        assert await other.claim(key, "b", LONG) is TAKEN
        assert await store.renew(key, "a", LONG) is True
        await other.release(key, "b")  # not b's: changes nothing
        assert await other.claim(key, "b", LONG) is TAKEN
        await store.complete(key, "a", COMPLETED, LONG)
        assert await other.claim(key, "b", LONG) is COMPLETED


class TestRenew:
    """renew extends the owner's lease; anyone else's renew changes nothing."""

    async def test_owner_renews(self, harness: Harness) -> None:
        h = harness
        await h.store.claim("k", "a", h.short)
        assert await h.store.renew("k", "a", LONG) is True
        await h.store.claim("control", "a", h.short)
        await h.pass_time(h.short)
        await free_again(h, "control")
        assert await h.store.claim("k", "b", LONG) is TAKEN

    async def test_other_owner_cannot_renew(self, harness: Harness) -> None:
        h = harness
        await h.store.claim("k", "a", h.short)
        assert await h.store.renew("k", "b", LONG) is False
        await h.pass_time(h.short)
        await free_again(h, "k", by="c")
        assert await h.store.claim("k", "b", LONG) is TAKEN  # c holds it now

    async def test_renew_of_an_absent_key_is_false(self, harness: Harness) -> None:
        assert await harness.store.renew("nobody-has-it", "a", LONG) is False
        assert await harness.store.claim("nobody-has-it", "b", LONG) is CLAIMED

    async def test_renew_after_the_lease_ran_out_is_false(self, harness: Harness) -> None:
        h = harness
        await h.store.claim("k", "a", h.short)
        await h.store.claim("control", "a", h.short)  # claimed after k: runs out after it
        await h.pass_time(h.short)
        await free_again(h, "control")
        assert await h.store.renew("k", "a", LONG) is False
        assert await h.store.claim("k", "b", LONG) is CLAIMED

    async def test_renew_of_a_processed_key_is_false(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        await store.complete("k", "a", COMPLETED, LONG)
        assert await store.renew("k", "a", LONG) is False
        assert await store.claim("k", "b", LONG) is COMPLETED


class TestComplete:
    """complete records the outcome for ttl seconds, whoever holds the key."""

    @pytest.mark.parametrize("outcome", [COMPLETED, DEAD_LETTERED])
    async def test_others_see_the_outcome(self, harness: Harness, outcome: Claim) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        await store.complete("k", "a", outcome, LONG)
        assert await store.claim("k", "b", LONG) is outcome
        assert await store.claim("k", "c", LONG) is outcome

    async def test_the_owner_sees_the_outcome_too(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        await store.complete("k", "a", COMPLETED, LONG)
        assert await store.claim("k", "a", LONG) is COMPLETED

    async def test_whoever_holds_it(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        await store.complete("k", "b", DEAD_LETTERED, LONG)
        assert await store.claim("k", "a", LONG) is DEAD_LETTERED

    async def test_an_absent_key_is_recorded(self, harness: Harness) -> None:
        await harness.store.complete("k", "a", COMPLETED, LONG)
        assert await harness.store.claim("k", "b", LONG) is COMPLETED

    async def test_the_latest_outcome_wins(self, harness: Harness) -> None:
        store = harness.store
        await store.complete("k", "a", COMPLETED, LONG)
        await store.complete("k", "b", DEAD_LETTERED, LONG)
        assert await store.claim("k", "c", LONG) is DEAD_LETTERED

    async def test_absent_again_after_ttl(self, harness: Harness) -> None:
        h = harness
        await h.store.claim("k", "a", LONG)
        await h.store.complete("k", "a", COMPLETED, h.short)
        if h.clock is not None:  # in real time the short ttl may already be over
            assert await h.store.claim("k", "b", LONG) is COMPLETED
        await h.pass_time(h.short)
        await free_again(h, "k", by="b")
        assert await h.store.claim("k", "c", LONG) is TAKEN  # b's now

    @FAKE_CLOCK_STORES
    async def test_ttl_boundary(self, harness: Harness) -> None:
        h = harness
        assert h.clock is not None
        await h.store.complete("k", "a", COMPLETED, 100.0)
        h.clock.advance(99.9)
        assert await h.store.claim("k", "b", LONG) is COMPLETED
        h.clock.advance(0.2)
        assert await h.store.claim("k", "b", LONG) is CLAIMED


class TestRelease:
    """release forgets an in-flight key for its owner only."""

    async def test_owner_releases(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        await store.release("k", "a")
        assert await store.claim("k", "b", LONG) is CLAIMED

    async def test_other_owners_release_is_a_no_op(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        await store.release("k", "b")
        assert await store.claim("k", "c", LONG) is TAKEN
        assert await store.renew("k", "a", LONG) is True

    async def test_release_of_a_processed_key_is_a_no_op(self, harness: Harness) -> None:
        store = harness.store
        await store.claim("k", "a", LONG)
        await store.complete("k", "a", COMPLETED, LONG)
        await store.release("k", "a")
        assert await store.claim("k", "b", LONG) is COMPLETED

    async def test_release_of_an_absent_key_is_a_no_op(self, harness: Harness) -> None:
        await harness.store.release("k", "a")
        assert await harness.store.claim("k", "a", LONG) is CLAIMED

    async def test_a_late_release_does_not_free_the_new_owners_key(self, harness: Harness) -> None:
        h = harness
        await h.store.claim("k", "a", h.short)
        await h.pass_time(h.short)
        await free_again(h, "k", by="b")
        await h.store.release("k", "a")  # a wakes up after its lease ran out
        assert await h.store.claim("k", "c", LONG) is TAKEN


class TestLeaseExpiry:
    """A dead owner's key is free once its lease runs out; not before."""

    async def test_another_owner_claims_after_the_lease(self, harness: Harness) -> None:
        h = harness
        assert await h.store.claim("k", "a", h.short) is CLAIMED
        await h.pass_time(h.short)
        await free_again(h, "k", by="b")
        assert await h.store.claim("k", "a", LONG) is TAKEN  # b holds it now
        assert await h.store.renew("k", "a", LONG) is False

    @FAKE_CLOCK_STORES
    async def test_lease_boundary(self, harness: Harness) -> None:
        h = harness
        assert h.clock is not None
        await h.store.claim("k", "a", 30.0)
        h.clock.advance(29.9)
        assert await h.store.claim("k", "b", LONG) is TAKEN
        h.clock.advance(0.2)
        assert await h.store.claim("k", "b", LONG) is CLAIMED

    @FAKE_CLOCK_STORES
    async def test_renewed_lease_expires_from_the_renewal(self, harness: Harness) -> None:
        h = harness
        assert h.clock is not None
        await h.store.claim("k", "a", 30.0)
        h.clock.advance(20.0)
        assert await h.store.renew("k", "a", 30.0)
        h.clock.advance(29.9)
        assert await h.store.claim("k", "b", LONG) is TAKEN
        h.clock.advance(0.2)
        assert await h.store.claim("k", "b", LONG) is CLAIMED


@FAKE_CLOCK_STORES  # Redis bounds its keys by their ttl (maxmemory-policy volatile-ttl), not by count
class TestEvictionBounds:
    """Memory and SQLite keep at most max_entries processed keys, oldest out first, never an in-flight one."""

    async def test_oldest_processed_keys_go_first(self, harness: Harness) -> None:
        h = harness
        assert h.clock is not None
        for i in range(3 * MAX_ENTRIES):
            await h.store.complete(f"p{i}", "a", COMPLETED, LONG)
            h.clock.advance(0.001)
        kept = [await h.store.claim(f"p{i}", "b", LONG) for i in range(2 * MAX_ENTRIES, 3 * MAX_ENTRIES)]
        assert kept == [COMPLETED] * MAX_ENTRIES
        evicted = [await h.store.claim(f"p{i}", "b", LONG) for i in range(2 * MAX_ENTRIES)]
        assert evicted == [CLAIMED] * (2 * MAX_ENTRIES)

    async def test_in_flight_keys_are_never_evicted(self, harness: Harness) -> None:
        h = harness
        assert h.clock is not None
        for i in range(2 * MAX_ENTRIES):
            await h.store.claim(f"f{i}", "a", LONG)
        for i in range(5 * MAX_ENTRIES):
            await h.store.complete(f"p{i}", "a", COMPLETED, LONG)
            h.clock.advance(0.001)
        held = [await h.store.claim(f"f{i}", "b", LONG) for i in range(2 * MAX_ENTRIES)]
        assert held == [TAKEN] * (2 * MAX_ENTRIES)

    async def test_a_key_completed_again_is_the_newest(self, harness: Harness) -> None:
        h = harness
        assert h.clock is not None
        for i in range(MAX_ENTRIES):
            await h.store.complete(f"p{i}", "a", COMPLETED, LONG)
            h.clock.advance(0.001)
        await h.store.complete("p0", "a", DEAD_LETTERED, LONG)
        h.clock.advance(0.001)
        await h.store.complete("new", "a", COMPLETED, LONG)
        assert await h.store.claim("p0", "b", LONG) is DEAD_LETTERED
        assert await h.store.claim("p1", "b", LONG) is CLAIMED


class TestConcurrency:
    """Many owners racing for one key: exactly one gets it."""

    async def test_one_key_many_owners(self, harness: Harness) -> None:
        stores = [harness.another() for _ in range(4)]
        answers = await asyncio.gather(
            *(stores[i % len(stores)].claim("k", f"owner-{i}", LONG) for i in range(40)))
        assert answers.count(CLAIMED) == 1
        assert answers.count(TAKEN) == 39

    async def test_many_keys_many_owners(self, harness: Harness) -> None:
        stores = [harness.another() for _ in range(4)]
        keys = [f"k{i}" for i in range(25)]
        calls = [(key, owner) for owner in range(4) for key in keys]
        answers = await asyncio.gather(*(stores[owner].claim(key, f"owner-{owner}", LONG) for key, owner in calls))
        winners: dict[str, list[int]] = {key: [] for key in keys}
        for (key, owner), answer in zip(calls, answers, strict=True):
            if answer is CLAIMED:
                winners[key].append(owner)
            else:
                assert answer is TAKEN
        assert all(len(won) == 1 for won in winners.values()), winners

    async def test_complete_races_claims(self, harness: Harness) -> None:
        store, other = harness.store, harness.another()
        await store.claim("k", "a", LONG)
        answers = await asyncio.gather(other.claim("k", "b", LONG), store.complete("k", "a", COMPLETED, LONG),
                                       other.claim("k", "c", LONG))
        assert {answers[0], answers[2]} <= {TAKEN, COMPLETED}
        assert await other.claim("k", "d", LONG) is COMPLETED

    @pytest.mark.slow
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("harness", ["sqlite", "redis"], indirect=True)  # memory is one process's
    @pytest.mark.parametrize("batch", [0, 25], ids=["claim", "claim_many"])
    async def test_across_processes(self, harness: Harness, batch: int) -> None:
        """Four worker processes claim the same 200 keys at once, one by one or 25 per call: each
        key is won exactly once."""
        url = harness.url
        assert url is not None
        keys, workers = 200, 4
        children = [subprocess.Popen([sys.executable, str(CLAIMER), url, f"w{n}", str(keys), str(n), str(batch)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for n in range(workers)]
        try:
            for child in children:
                assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            results = [child.communicate(timeout=45) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        won = []
        for child, (out, err) in zip(children, results, strict=True):
            assert child.returncode == 0, err[-2000:]
            won.append(json.loads(out))
        every = [key for keys_won in won for key in keys_won]
        assert sorted(every) == sorted(f"k{i}" for i in range(keys))  # each once, none missing



class TestArguments:
    """Bad arguments are a ValueError naming what is wrong, before the store is asked."""

    @pytest.mark.parametrize("lease", [0, -1.0, float("nan"), float("inf"), True, "10"])
    async def test_bad_lease(self, harness: Harness, lease: object) -> None:
        with pytest.raises(ValueError, match="lease"):
            await harness.store.claim("k", "a", lease)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="lease"):
            await harness.store.renew("k", "a", lease)  # type: ignore[arg-type]
        assert await harness.store.claim("k", "b", LONG) is CLAIMED  # nothing was taken

    @pytest.mark.parametrize("ttl", [0, -5, float("nan")])
    async def test_bad_ttl(self, harness: Harness, ttl: float) -> None:
        with pytest.raises(ValueError, match="ttl"):
            await harness.store.complete("k", "a", COMPLETED, ttl)

    @pytest.mark.parametrize("outcome", [CLAIMED, TAKEN, "completed", None])
    async def test_bad_outcome(self, harness: Harness, outcome: object) -> None:
        with pytest.raises(ValueError, match="outcome"):
            await harness.store.complete("k", "a", outcome, LONG)  # type: ignore[arg-type]
        assert await harness.store.claim("k", "b", LONG) is CLAIMED

    async def test_bad_key_or_owner(self, harness: Harness) -> None:
        with pytest.raises(ValueError, match="key"):
            await harness.store.claim(42, "a", LONG)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="owner"):
            await harness.store.claim("k", "", LONG)
        with pytest.raises(ValueError, match="owner"):
            await harness.store.release("k", None)  # type: ignore[arg-type]
