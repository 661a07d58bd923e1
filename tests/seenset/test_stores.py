"""What each local store adds to the contract, and reading a store URL.

Memory: its bounds and lazy expiry. SQLite: the file (0600, survives a restart,
refused when damaged or foreign), the worker thread, busy and closed files, the
prune batch.
"""

from __future__ import annotations

import sqlite3
import stat
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from geobus._decisions.dedup import key_of
from geobus._storage.seenset import Claim, SeenSet, SeenSetError, open_seen_set
from geobus._storage.seenset.factory import redact
from geobus._storage.seenset.memory import MemorySeenSet
from geobus._storage.seenset.redis import RedisSeenSet
from geobus._storage.seenset.sqlite import TABLE, SqliteSeenSet, sqlite_path

from .conftest import LONG, FakeClock

COMPLETED, CLAIMED, TAKEN = Claim.COMPLETED, Claim.CLAIMED, Claim.TAKEN
UUID_42 = uuid.UUID(int=42)
# The seen-set table as geobus 0.1.0.dev0 created it: keys without their type.
_SCHEMA_0_1_0_DEV0 = """
CREATE TABLE geobus_seen (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('f', 'c', 'd')),
    owner TEXT,
    expires_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX geobus_seen_expiry ON geobus_seen (expires_at);
CREATE INDEX geobus_seen_processed ON geobus_seen (updated_at) WHERE state <> 'f';
"""


class TestMemory:
    """The memory store: bounded, expired entries dropped without being asked about."""

    async def test_is_a_seen_set(self) -> None:
        store = MemorySeenSet(max_entries=10)
        assert isinstance(store, SeenSet)
        assert store.clock is time.monotonic

    async def test_evictions_are_counted(self) -> None:
        clock = FakeClock()
        store = MemorySeenSet(max_entries=3, clock=clock)
        for i in range(10):
            await store.complete(f"p{i}", "a", COMPLETED, LONG)
        assert store.evictions == 7
        assert "processed=3" in repr(store)

    async def test_an_expired_key_pushed_out_is_not_an_eviction(self) -> None:
        clock = FakeClock()
        store = MemorySeenSet(max_entries=2, clock=clock)
        await store.complete("old", "a", COMPLETED, 1.0)
        clock.advance(5.0)
        await store.complete("p1", "a", COMPLETED, LONG)
        await store.complete("p2", "a", COMPLETED, LONG)
        assert store.evictions == 0

    async def test_expired_entries_are_swept(self) -> None:
        """Leases of dead owners and old outcomes nobody asks about again do not pile up."""
        clock = FakeClock()
        store = MemorySeenSet(max_entries=100_000, clock=clock)
        for i in range(3000):
            await store.claim(f"dead{i}", "crashed-worker", 1.0)
            await store.complete(f"done{i}", "a", COMPLETED, 1.0)
        clock.advance(2.0)
        for i in range(8000):  # a sweep comes within max(1024, entries the last one left) writes
            await store.claim(f"live{i}", "a", LONG)
        assert "in_flight=8000, processed=0" in repr(store)  # every expired entry gone

    async def test_shared_by_receivers_outlives_close(self) -> None:
        store = MemorySeenSet(max_entries=10)
        await store.claim("k", "a", LONG)
        await store.close()
        assert await store.claim("k", "b", LONG) is TAKEN

    def test_bad_max_entries(self) -> None:
        for bad in (0, -1, 1.5, True, None):
            with pytest.raises(ValueError, match="max_entries"):
                MemorySeenSet(max_entries=bad)  # type: ignore[arg-type]


class TestSqliteFile:
    """The SQLite file: owner-only, kept across a restart, refused when it is not ours."""

    async def test_created_owner_only(self, tmp_path: Path) -> None:
        store = SqliteSeenSet(tmp_path / "seen.sqlite", max_entries=10)
        try:
            await store.claim("k", "a", LONG)
            for name in ("seen.sqlite", "seen.sqlite-wal", "seen.sqlite-shm"):
                mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
                assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
        finally:
            await store.close()
        assert store.clock is time.time

    async def test_survives_a_restart(self, tmp_path: Path) -> None:
        path = tmp_path / "seen.sqlite"
        store = SqliteSeenSet(path, max_entries=10)
        await store.claim("done", "worker-1", LONG)
        await store.complete("done", "worker-1", Claim.DEAD_LETTERED, LONG)
        await store.claim("held", "worker-1", LONG)
        await store.close()
        again = SqliteSeenSet(path, max_entries=10)
        try:
            assert await again.claim("done", "worker-1", LONG) is Claim.DEAD_LETTERED
            assert await again.claim("held", "worker-2", LONG) is TAKEN
            assert await again.claim("held", "worker-1", LONG) is CLAIMED  # the same owner, restarted
        finally:
            await again.close()

    async def test_typed_keys_survive_a_restart(self, tmp_path: Path) -> None:
        """Each key is kept with its type (its row says which), and read back so after a restart."""
        path = tmp_path / "seen.sqlite"
        keys = [key_of(value) for value in (42, UUID_42, b"42", "x")]
        store = SqliteSeenSet(path, max_entries=10)
        for key in keys:
            await store.complete(key, "worker-1", COMPLETED, LONG)
        await store.close()
        assert _keys(path) == {"i:42", "u:00000000-0000-0000-0000-00000000002a", "b:3432", "s:x"}
        again = SqliteSeenSet(path, max_entries=10)
        try:
            assert [await again.claim(key, "worker-2", LONG) for key in keys] == [COMPLETED] * 4
            for look_alike in ("42", str(UUID_42), "42", b"x"):  # of 42, the UUID, b"42" and "x"
                assert await again.claim(key_of(look_alike), "worker-2", LONG) is CLAIMED, look_alike
        finally:
            await again.close()

    def test_a_file_of_0_1_0_dev0_is_refused_and_left_as_it_was(self, tmp_path: Path) -> None:
        """Its keys lost their type ("42" may have been 42): refused, never read as typed keys."""
        path = tmp_path / "seen.sqlite"
        db = sqlite3.connect(path)
        db.executescript(_SCHEMA_0_1_0_DEV0)
        db.execute("INSERT INTO geobus_seen VALUES ('42', 'c', NULL, 1e12, 0)")
        db.commit()
        db.close()
        with pytest.raises(ValueError, match=r"0\.1\.0\.dev0.*lost their type.*delete it") as caught:
            SqliteSeenSet(path, max_entries=10)
        assert str(path) in str(caught.value)
        db = sqlite3.connect(path)
        try:
            assert db.execute("SELECT key, state FROM geobus_seen").fetchall() == [("42", "c")]
            assert {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {
                "geobus_seen"}
        finally:
            db.close()

    def test_not_sqlite(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.txt"
        path.write_text("hello, not a database\n" * 20)
        with pytest.raises(ValueError, match="not an SQLite database") as caught:
            SqliteSeenSet(path, max_entries=10)
        assert str(path) in str(caught.value)
        assert path.read_text().startswith("hello")  # left as it was

    def test_truncated(self, tmp_path: Path) -> None:
        path = tmp_path / "seen.sqlite"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE filler (x)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 1000,)] * 50)
        db.commit()
        db.close()
        path.write_bytes(path.read_bytes()[:-100])
        with pytest.raises(ValueError, match="truncated") as caught:
            SqliteSeenSet(path, max_entries=10)
        assert str(path) in str(caught.value)

    def test_another_programs_database(self, tmp_path: Path) -> None:
        path = tmp_path / "app.sqlite"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.commit()
        db.close()
        with pytest.raises(ValueError, match=rf"{path}.*lacks the tables \['{TABLE}'\]"):
            SqliteSeenSet(path, max_entries=10)

    def test_a_table_of_the_same_name_but_not_ours(self, tmp_path: Path) -> None:
        path = tmp_path / "app.sqlite"
        db = sqlite3.connect(path)
        db.execute(f"CREATE TABLE {TABLE} (key TEXT, value TEXT)")
        db.commit()
        db.close()
        with pytest.raises(ValueError, match=rf"{path}.*columns"):
            SqliteSeenSet(path, max_entries=10)

    def test_missing_directory(self, tmp_path: Path) -> None:
        path = tmp_path / "no" / "such" / "seen.sqlite"
        with pytest.raises(ValueError, match="cannot open") as caught:
            SqliteSeenSet(path, max_entries=10)
        assert str(path) in str(caught.value)

    def test_an_empty_file_is_a_new_store(self, tmp_path: Path) -> None:
        path = tmp_path / "seen.sqlite"
        path.touch()
        store = SqliteSeenSet(path, max_entries=10)
        assert repr(store) == f"SqliteSeenSet({str(path)!r}, max_entries=10)"


class TestSqliteCalls:
    """SQLite calls run on the store's own thread and fail as SeenSetError."""

    async def test_blocking_work_runs_off_the_event_loop(self, tmp_path: Path) -> None:
        threads: set[str] = set()

        def clock() -> float:
            threads.add(threading.current_thread().name)
            return time.time()

        store = SqliteSeenSet(tmp_path / "seen.sqlite", max_entries=10, clock=clock)
        try:
            await store.claim("k", "a", LONG)
            await store.renew("k", "a", LONG)
            await store.complete("k", "a", COMPLETED, LONG)
        finally:
            await store.close()
        assert threads and all(name.startswith("geobus-seenset-sqlite") for name in threads), threads
        assert threading.current_thread().name not in threads

    async def test_a_file_locked_too_long(self, tmp_path: Path) -> None:
        path = tmp_path / "seen.sqlite"
        store = SqliteSeenSet(path, max_entries=10, busy_timeout=0.1)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process, stuck inside a write
            with pytest.raises(SeenSetError, match=rf"{path}.*locked"):
                await store.claim("k", "a", LONG)
            with pytest.raises(SeenSetError, match="locked"):
                await store.complete("k", "a", COMPLETED, LONG)
            other.execute("ROLLBACK")
            assert await store.claim("k", "a", LONG) is CLAIMED  # the failed claim left nothing open
        finally:
            other.close()
            await store.close()

    async def test_closed(self, tmp_path: Path) -> None:
        store = SqliteSeenSet(tmp_path / "seen.sqlite", max_entries=10)
        await store.close()
        await store.close()
        with pytest.raises(SeenSetError, match="closed"):
            await store.claim("k", "a", LONG)

    async def test_processed_rows_are_counted_from_an_index(self, tmp_path: Path) -> None:
        """A prune counts processed rows without reading them; the index of earlier versions,
        which could not serve that, is dropped when a file is opened."""
        path = tmp_path / "seen.sqlite"
        await SqliteSeenSet(path, max_entries=10).close()
        db = sqlite3.connect(path)
        db.execute(f"CREATE INDEX {TABLE}_processed ON {TABLE} (updated_at) WHERE state <> 'f'")
        db.commit()
        db.close()
        store = SqliteSeenSet(path, max_entries=10)
        try:
            indexes = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            assert f"{TABLE}_processed" not in indexes
            plan = store._db.execute(f"EXPLAIN QUERY PLAN SELECT count(*) FROM {TABLE} WHERE state <> 'f'")
            assert "COVERING INDEX" in str(plan.fetchall())
        finally:
            await store.close()

    async def test_prunes_in_batches(self, tmp_path: Path) -> None:
        """Between prunes the table grows by at most prune_every rows past max_entries."""
        clock = FakeClock()
        path = tmp_path / "seen.sqlite"
        store = SqliteSeenSet(path, max_entries=10, clock=clock, prune_every=16)
        peak = 0
        try:
            for i in range(200):
                await store.complete(f"p{i}", "a", COMPLETED, LONG)
                clock.advance(0.001)
                peak = max(peak, _rows(path, "state <> 'f'"))
            assert 10 < peak <= 10 + 16
            assert store.evictions == 200 - _rows(path, "state <> 'f'")
            for i in range(20):
                await store.claim(f"dead{i}", "crashed-worker", 1.0)
            clock.advance(LONG + 1)  # every lease and ttl over
            for i in range(16):
                await store.claim(f"live{i}", "a", LONG)
            assert _rows(path, "key NOT LIKE 'live%'") == 0  # a prune since took every expired row
            assert _rows(path, "key LIKE 'live%'") == 16
        finally:
            await store.close()


def _keys(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {row[0] for row in db.execute(f"SELECT key FROM {TABLE}")}
    finally:
        db.close()


def _rows(path: Path, where: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {TABLE} WHERE {where}").fetchone()[0])
    finally:
        db.close()


class TestOpen:
    """open_seen_set reads the store URL; errors never show a password."""

    async def test_memory(self) -> None:
        for url in ("memory", "memory:"):
            store = open_seen_set(url, max_entries=5)
            assert isinstance(store, MemorySeenSet) and store.max_entries == 5

    async def test_sqlite(self, tmp_path: Path) -> None:
        clock = FakeClock()
        store = open_seen_set(f"sqlite:{tmp_path / 'a.sqlite'}", max_entries=5, clock=clock)
        assert isinstance(store, SqliteSeenSet) and store.clock is clock
        await store.close()

    def test_sqlite_paths(self, tmp_path: Path) -> None:
        assert sqlite_path("sqlite:seen.sqlite") == Path("seen.sqlite")
        assert sqlite_path("sqlite:/var/lib/app/seen.sqlite") == Path("/var/lib/app/seen.sqlite")
        assert sqlite_path("sqlite:///var/lib/app/seen.sqlite") == Path("/var/lib/app/seen.sqlite")
        assert sqlite_path("sqlite:~/seen.sqlite") == Path.home() / "seen.sqlite"
        for bad, words in (("sqlite:", "no file path"), ("sqlite://host/x", "names a host"),
                           ("sqlite::memory:", "memory store")):
            with pytest.raises(ValueError, match=words):
                sqlite_path(bad)

    async def test_redis(self) -> None:
        store = open_seen_set("redis://:pa55word@127.0.0.1:6390/2?prefix=app:", max_entries=5)
        assert isinstance(store, RedisSeenSet) and store.prefix == "app:"
        assert "pa55word" not in repr(store)
        await store.close()
        tls = open_seen_set("rediss://cache.example:6380/0", max_entries=5)
        assert isinstance(tls, RedisSeenSet)
        await tls.close()

    @pytest.mark.parametrize("url", ["postgres://user:hunter2@db/x", "mem", "Memory", "", "file:hunter2"])
    def test_unknown_scheme(self, url: str) -> None:
        with pytest.raises(ValueError, match="unknown seen-set store") as caught:
            open_seen_set(url, max_entries=5)
        assert "hunter2" not in str(caught.value)

    @pytest.mark.parametrize("url", ["redis:/hunter2@x", "redis://:hunter2@/0", "redis://:hunter2@h:port/0",
                                     "redis://:hunter2@h/x", "redis://:hunter2@h/0?timeout=0",
                                     "redis://:hunter2@h/0?pasword=x"])
    def test_malformed_redis_url(self, url: str) -> None:
        with pytest.raises(ValueError) as caught:
            open_seen_set(url, max_entries=5)
        assert "hunter2" not in str(caught.value)

    def test_not_a_string(self) -> None:
        with pytest.raises(ValueError, match="URL string"):
            open_seen_set(None, max_entries=5)  # type: ignore[arg-type]

    def test_bad_max_entries(self) -> None:
        with pytest.raises(ValueError, match="max_entries"):
            open_seen_set("memory", max_entries=0)

    def test_redis_without_redis_py(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in [n for n in sys.modules if n == "redis" or n.startswith("redis.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, "redis", None)
        with pytest.raises(ImportError, match=r"pip install 'geobus\[redis\]'") as caught:
            open_seen_set("redis://:hunter2@127.0.0.1:6379/0", max_entries=5)
        assert "hunter2" not in str(caught.value)

    def test_redact(self) -> None:
        assert redact("redis://:s3cret@host:1/0") == "redis://***@host:1/0"
        assert redact("redis://user:s3cret@host/0?prefix=x") == "redis://***@host/0?prefix=x"
        assert redact("redis://user:p@ss@host") == "redis://***@host"
        assert redact("redis://user:pa/ss@host:1/0") == "redis://***@host:1/0"  # a / in the password
        assert redact("redis://user:pa?ss@host:1/0") == "redis://***@host:1/0"
        assert redact("redis://host:6379/0") == "redis://host:6379/0"
        assert redact("redis:hunter2@host") == "redis:***@host"
        assert redact("memory") == "memory"
