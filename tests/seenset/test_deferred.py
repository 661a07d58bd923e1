"""Deferred keys in every store (memory, SQLite, a real Redis): ``complete(DEFERRED)``, ``claim``'s
``DEFERRED`` answer, ``claim_deferred``; and how a deferred key looks to a worker that predates them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import redis.asyncio

from geobus import DedupPolicy
from geobus._decisions.actions import ReclaimKey
from geobus._decisions.dedup import Key, key_of
from geobus._engine.shared_keys import SharedKeys
from geobus._storage.seenset import Claim, DeferringSeenSet, SeenSet
from geobus._storage.seenset.memory import MemorySeenSet
from geobus._storage.seenset.redis import RedisSeenSet
from geobus._storage.seenset.sqlite import TABLE, SqliteSeenSet
from redis_server import RedisServer

from .conftest import LONG, MAX_ENTRIES, Harness, redis_url

CLAIMED, TAKEN, COMPLETED, DEAD_LETTERED, DEFERRED = (
    Claim.CLAIMED, Claim.TAKEN, Claim.COMPLETED, Claim.DEAD_LETTERED, Claim.DEFERRED)

# geobus before deferral (the commit this change starts from) claimed with this script: a deferred
# key must read as another worker's key in flight there (its copy held), never as free.
_CLAIM_BEFORE_DEFERRAL = """
local value = redis.call('GET', KEYS[1])
if value == 'c2' then return 'completed' end
if value == 'd2' then return 'dead_lettered' end
if value and value ~= ARGV[1] then
    if string.sub(value, 1, 3) == 'f2:' then return 'taken' end
    if value ~= 'c' and value ~= 'd' and string.sub(value, 1, 2) ~= 'f:' then
        return redis.error_reply('not a geobus seen-set value')
    end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'claimed'
"""


def deferring(h: Harness) -> DeferringSeenSet:
    assert isinstance(h.store, DeferringSeenSet)  # each store of geobus's own
    return h.store


class TestDeferred:
    """A key recorded DEFERRED is deferred for every owner until taken back or its ttl runs out."""

    async def test_every_worker_is_told_deferred(self, harness: Harness) -> None:
        store = deferring(harness)
        await store.claim("k", "a", LONG)
        await store.complete("k", "a", DEFERRED, LONG)
        assert [await store.claim("k", owner, LONG) for owner in "abc"] == [DEFERRED] * 3
        assert await harness.another().claim("k", "d", LONG) is DEFERRED

    async def test_taken_back_it_is_in_flight_for_the_taker(self, harness: Harness) -> None:
        store = deferring(harness)
        await store.complete("k", "a", DEFERRED, LONG)
        assert await store.claim_deferred("k", "b", LONG) is CLAIMED
        assert await store.claim("k", "c", LONG) is TAKEN
        assert await store.claim_deferred("k", "c", LONG) is TAKEN  # one taker at a time
        assert await store.claim_deferred("k", "b", LONG) is CLAIMED  # the taker again
        assert await store.renew("k", "b", LONG) is True
        await store.complete("k", "b", COMPLETED, LONG)
        assert await store.claim("k", "c", LONG) is COMPLETED

    async def test_deferred_again_after_a_take_back(self, harness: Harness) -> None:
        store = deferring(harness)
        await store.complete("k", "a", DEFERRED, LONG)
        await store.claim_deferred("k", "a", LONG)
        await store.complete("k", "a", DEFERRED, LONG)
        assert await store.claim("k", "b", LONG) is DEFERRED

    @pytest.mark.parametrize("outcome", [COMPLETED, DEAD_LETTERED])
    async def test_taking_back_a_processed_key_says_so(self, harness: Harness, outcome: Claim) -> None:
        store = deferring(harness)
        await store.complete("k", "a", outcome, LONG)
        assert await store.claim_deferred("k", "b", LONG) is outcome

    async def test_taking_back_an_absent_or_foreign_key(self, harness: Harness) -> None:
        store = deferring(harness)
        assert await store.claim_deferred("absent", "a", LONG) is CLAIMED  # forgotten (ttl): free
        await store.claim("busy", "a", LONG)
        assert await store.claim_deferred("busy", "b", LONG) is TAKEN

    async def test_renew_and_release_leave_a_deferred_key_alone(self, harness: Harness) -> None:
        store = deferring(harness)
        await store.claim("k", "a", LONG)
        await store.complete("k", "a", DEFERRED, LONG)
        assert await store.renew("k", "a", LONG) is False
        await store.release("k", "a")
        assert await store.claim("k", "b", LONG) is DEFERRED

    async def test_free_again_after_its_ttl(self, harness: Harness) -> None:
        h = harness
        await h.store.complete("k", "a", DEFERRED, h.short)
        await h.pass_time(h.short)

        async def claimable() -> bool:
            return await h.store.claim("k", "b", LONG) is CLAIMED

        await h.eventually(claimable, "a deferred key free again after its ttl")

    async def test_not_dropped_for_room(self, harness: Harness) -> None:
        store = deferring(harness)
        await store.complete("deferred", "a", DEFERRED, LONG)
        for n in range(3 * MAX_ENTRIES):
            await store.complete(key_of(n), "a", COMPLETED, LONG)
        assert await store.claim("deferred", "b", LONG) is DEFERRED

    async def test_bad_arguments(self, harness: Harness) -> None:
        store = deferring(harness)
        with pytest.raises(ValueError, match="owner"):
            await store.claim_deferred("k", "", LONG)
        with pytest.raises(ValueError, match="lease"):
            await store.claim_deferred("k", "a", 0)
        with pytest.raises(ValueError, match="ttl"):
            await store.complete("k", "a", DEFERRED, 0)


class TestBeforeDeferral:
    """A deferred key in a store shared with workers of a geobus that predates deferral: they read
    it as another worker's key in flight (their copy held), never as free or as processed."""

    async def test_sqlite_keeps_it_as_a_row_in_flight_with_no_owner(self, tmp_path: Path) -> None:
        path = tmp_path / "seen.sqlite"
        store = SqliteSeenSet(path, max_entries=10)
        try:
            await store.complete("k", "a", DEFERRED, LONG)
        finally:
            await store.close()
        db = sqlite3.connect(path)
        try:
            # Within the table's CHECK (state in 'f', 'c', 'd'): an older worker's claim of a live
            # 'f' row with another owner is TAKEN, and its release or renew matches no owner of its own.
            assert db.execute(f"SELECT state, owner FROM {TABLE} WHERE key = 'k'").fetchall() == [("f", "")]
        finally:
            db.close()

    async def test_redis_keeps_it_as_in_flight_with_no_owner(self, redis_server: RedisServer) -> None:
        url = redis_url(redis_server)
        store = RedisSeenSet(url)
        raw = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
        try:
            await store.complete("k", "a", DEFERRED, LONG)
            name = store.prefix + "k"
            assert await raw.get(name) == "f2:"
            assert await raw.eval(_CLAIM_BEFORE_DEFERRAL, 1, name, "f2:old-worker", 30_000) == "taken"
            assert await raw.get(name) == "f2:"
        finally:
            await raw.aclose()
            await store.close()


class _WithoutDeferral:
    """A store of the application's own, written before deferral: no ``claim_deferred``."""

    def __init__(self) -> None:
        self._memory = MemorySeenSet(max_entries=MAX_ENTRIES)
        self.claims: list[str] = []

    async def claim(self, key: Key, owner: str, lease: float) -> Claim:
        self.claims.append(key)
        return await self._memory.claim(key, owner, lease)

    async def renew(self, key: Key, owner: str, lease: float) -> bool:
        return await self._memory.renew(key, owner, lease)

    async def complete(self, key: Key, owner: str, outcome: Claim, ttl: float) -> None:
        await self._memory.complete(key, owner, outcome, ttl)

    async def release(self, key: Key, owner: str) -> None:
        await self._memory.release(key, owner)

    async def close(self) -> None:
        await self._memory.close()


async def test_a_store_without_claim_deferred_is_not_told_of_deferrals_and_asked_with_claim() -> None:
    store = _WithoutDeferral()
    assert isinstance(store, SeenSet) and not isinstance(store, DeferringSeenSet)
    keys = SharedKeys(store, DedupPolicy(), owned=False)
    assert not keys.defers
    assert await keys.ask(ReclaimKey(key_of("m"), first=True)) is CLAIMED
    assert store.claims == [key_of("m")]
