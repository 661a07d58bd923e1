"""The ``sqlite:PATH`` seen-set: processes on one host, surviving a restart.

One table, one row per key (spelt with its type: ``s:order-1``, ``i:42``; see
``geobus._decisions.dedup.key_of``): its state (``f`` in flight, ``c`` completed, ``d``
dead-lettered), the owner of an in-flight key, when the lease or the ttl runs
out, and when the row was written. A deferred key is in flight with the empty
owner (``DEFERRED_OWNER``, which no receiver can be) until its ttl runs out: the
file stays readable by geobus versions that predate deferral, whose workers see
such a key as another worker's, and hold its twins (never deliver them) until it
is settled or its ttl runs out. Every call is one short transaction on one
worker thread, so the event loop never waits on the file; ``claim`` is a
``BEGIN IMMEDIATE`` read-then-write, so two processes cannot both take a key.
``claim_many`` and ``complete_many`` are one transaction for the whole batch.

Times come from the injected clock, by default ``time.time``: the processes
sharing the file compare each other's expiry times, so the clock must be the
same wall clock everywhere (a clock step shortens or stretches current leases).

Every ``prune_every`` writes a process drops the expired rows and the oldest
processed rows beyond ``max_entries`` (never in-flight ones), so the table holds
at most ``max_entries`` processed keys plus the writes since the last prune. The
processed rows are counted from their index alone (``updated_at, state``; the
``updated_at`` index of earlier versions, which made each count read every row,
is dropped when a file is opened).

The table is ``geobus_seen_v2``. geobus 0.1.0.dev0 kept untyped keys (``42``
and ``"42"`` one row) in ``geobus_seen``: a file holding that table is refused,
since its rows cannot be read as typed keys and its workers may still be
writing it; each version refuses the other's file.

The WAL runs with ``synchronous=NORMAL``: a process that crashes loses nothing;
a power cut may lose the last few keys recorded, which can only let a duplicate
through, never lose a message.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..._decisions.dedup import Key
from ..._redact import redact
from ..sqlite import BUSY_TIMEOUT, NotOurDatabase, open_database, transaction
from . import Claim, SeenSetError
from .factory import DEFERRED_OWNER, check_key, check_max_entries, check_outcome, check_seconds

_T = TypeVar("_T")

TABLE = "geobus_seen_v2"
UNTYPED_TABLE = "geobus_seen"  # geobus 0.1.0.dev0's: keys without their type
_COLUMNS = ("key", "state", "owner", "expires_at", "updated_at")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('f', 'c', 'd')),
    owner TEXT,
    expires_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {TABLE}_expiry ON {TABLE} (expires_at);
CREATE INDEX IF NOT EXISTS {TABLE}_processed_by_age ON {TABLE} (updated_at, state) WHERE state <> 'f';
DROP INDEX IF EXISTS {TABLE}_processed;
"""
_STATE = {"c": Claim.COMPLETED, "d": Claim.DEAD_LETTERED}
# An outcome's row: its state and owner (a deferred key is in flight with no owner).
_ROW: dict[Claim, tuple[str, str | None]] = {
    Claim.COMPLETED: ("c", None), Claim.DEAD_LETTERED: ("d", None), Claim.DEFERRED: ("f", DEFERRED_OWNER)}
PRUNE_EVERY = 256


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:PATH`` or ``sqlite:///ABSOLUTE/PATH``.

    Raises:
        ValueError: no path, a host (``sqlite://host/...``), or ``:memory:``.
    """
    rest = url.partition(":")[2]
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ValueError(f"{redact(url)!r} names a host; use sqlite:PATH or sqlite:///ABSOLUTE/PATH")
    if not rest:
        raise ValueError(f"{url!r} has no file path: use sqlite:PATH")
    if rest == ":memory:":
        raise ValueError("sqlite::memory: is private to one connection: use the memory store")
    return Path(rest).expanduser()


class SqliteSeenSet:
    """A ``SeenSet`` in an SQLite file that processes on one host may share.

    The file is created owner-only (0600). Task-safe: calls from any tasks of
    any event loops queue on the store's one worker thread. Each method raises
    ``SeenSetError`` when the file cannot be written in ``BUSY_TIMEOUT`` seconds
    or fails (disk full...), and after ``close``; bad arguments raise ``ValueError``.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_entries: int, clock: Callable[[], float] | None = None,
                 prune_every: int = PRUNE_EVERY, busy_timeout: float = BUSY_TIMEOUT) -> None:
        """Opens (or creates) the file; blocks for as long as that takes.

        Raises:
            ValueError: the file is not a seen-set database (damaged, truncated,
                another program's), or it cannot be opened; the message names it.
        """
        self.path = Path(path)
        self.max_entries = check_max_entries(max_entries)
        self.clock = clock or time.time
        self.prune_every = check_max_entries(prune_every)
        self.evictions = 0  # processed rows this process dropped for room before their ttl ran out
        self._db = _open(self.path, check_seconds("busy_timeout", busy_timeout))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geobus-seenset-sqlite")
        self._writes = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteSeenSet({str(self.path)!r}, max_entries={self.max_entries})"

    async def claim(self, key: Key, owner: str, lease: float) -> Claim:
        """See ``SeenSet.claim``."""
        return (await self.claim_many([key], owner, lease))[0]

    async def claim_many(self, keys: Sequence[Key], owner: str, lease: float) -> list[Claim]:
        """See ``BatchSeenSet.claim_many``."""
        for key in keys:
            check_key(key, owner)
        lease = check_seconds("lease", lease)
        return await self._run(self._claim, list(keys), owner, lease) if keys else []

    async def claim_deferred(self, key: Key, owner: str, lease: float) -> Claim:
        """See ``DeferringSeenSet.claim_deferred``."""
        check_key(key, owner)
        lease = check_seconds("lease", lease)
        return (await self._run(self._claim, [key], owner, lease, True))[0]

    async def renew(self, key: Key, owner: str, lease: float) -> bool:
        """See ``SeenSet.renew``; False too once the lease has run out, even if nobody took the key."""
        check_key(key, owner)
        lease = check_seconds("lease", lease)
        return await self._run(self._renew, key, owner, lease)

    async def complete(self, key: Key, owner: str, outcome: Claim, ttl: float) -> None:
        """See ``SeenSet.complete``."""
        await self.complete_many([(key, outcome)], owner, ttl)

    async def complete_many(self, outcomes: Sequence[tuple[Key, Claim]], owner: str, ttl: float) -> None:
        """See ``BatchSeenSet.complete_many``."""
        for key, outcome in outcomes:
            check_key(key, owner)
            check_outcome(outcome)
        ttl = check_seconds("ttl", ttl)
        if outcomes:
            await self._run(self._complete, [(key, *_ROW[outcome]) for key, outcome in outcomes], ttl)

    async def release(self, key: Key, owner: str) -> None:
        """See ``SeenSet.release``."""
        check_key(key, owner)
        await self._run(self._release, key, owner)

    async def close(self) -> None:
        """Closes the file once the calls already queued are done; later calls raise ``SeenSetError``."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._db.close)
        finally:
            self._pool.shutdown(wait=False)

    # -- on the worker thread ------------------------------------------------------------

    async def _run(self, call: Callable[..., _T], *args: object) -> _T:
        if self._closed:
            raise SeenSetError(f"the seen-set {self.path} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)
        except sqlite3.Error as exc:
            raise SeenSetError(f"the seen-set {self.path} failed: {exc}") from exc

    def _claim(self, keys: list[str], owner: str, lease: float, deferred_too: bool = False) -> list[Claim]:
        """``claim`` of each key, in one transaction; with ``deferred_too``, ``claim_deferred``
        (a deferred key is taken too)."""
        with transaction(self._db) as db:
            now = self.clock()
            answers = [self._claim_one(db, key, owner, lease, now, deferred_too) for key in keys]
        self._wrote(answers.count(Claim.CLAIMED))
        return answers

    @staticmethod
    def _claim_one(db: sqlite3.Connection, key: str, owner: str, lease: float, now: float,
                   deferred_too: bool) -> Claim:
        row = db.execute(f"SELECT state, owner, expires_at FROM {TABLE} WHERE key = ?", (key,)).fetchone()
        if row is not None and row[2] > now:
            state, holder, _ = row
            if state in _STATE:
                return _STATE[state]
            if holder == DEFERRED_OWNER and not deferred_too:
                return Claim.DEFERRED
            if holder not in (owner, DEFERRED_OWNER):
                return Claim.TAKEN
        db.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, 'f', ?, ?, ?)", (key, owner, now + lease, now))
        return Claim.CLAIMED

    def _renew(self, key: str, owner: str, lease: float) -> bool:
        now = self.clock()
        cursor = self._db.execute(
            f"UPDATE {TABLE} SET expires_at = ?, updated_at = ? "
            "WHERE key = ? AND state = 'f' AND owner = ? AND expires_at > ?",
            (now + lease, now, key, owner, now))
        return cursor.rowcount == 1

    def _complete(self, rows: list[tuple[str, str, str | None]], ttl: float) -> None:
        """Each (key, state, owner) recorded for ``ttl``, in one transaction."""
        with transaction(self._db) as db:
            now = self.clock()
            db.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?)",
                           [(key, state, owner, now + ttl, now) for key, state, owner in rows])
        self._wrote(len(rows))

    def _release(self, key: str, owner: str) -> None:
        self._db.execute(f"DELETE FROM {TABLE} WHERE key = ? AND state = 'f' AND owner = ?", (key, owner))

    def _wrote(self, count: int) -> None:
        self._writes += count
        if self._writes >= self.prune_every:
            self._writes = 0
            self._prune()

    def _prune(self) -> None:
        with transaction(self._db) as db:
            db.execute(f"DELETE FROM {TABLE} WHERE expires_at <= ?", (self.clock(),))
            (processed,) = db.execute(f"SELECT count(*) FROM {TABLE} WHERE state <> 'f'").fetchone()
            if processed > self.max_entries:
                cursor = db.execute(
                    f"DELETE FROM {TABLE} WHERE key IN "
                    f"(SELECT key FROM {TABLE} WHERE state <> 'f' ORDER BY updated_at LIMIT ?)",
                    (processed - self.max_entries,))
                self.evictions += cursor.rowcount


class _Untyped(Exception):
    """The file is geobus 0.1.0.dev0's seen-set (see the module docstring)."""


def _vet(db: sqlite3.Connection) -> None:
    """Refuse an untyped seen-set, and a table of our name with other columns.

    Raises:
        _Untyped: the file holds ``UNTYPED_TABLE``.
        NotOurDatabase: its ``TABLE`` has other columns.
    """
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (UNTYPED_TABLE,)).fetchone():
        raise _Untyped
    columns = tuple(row[1] for row in db.execute(f"PRAGMA table_info({TABLE})"))
    if columns and columns != _COLUMNS:
        raise NotOurDatabase(f"its {TABLE} table has the columns {list(columns)}, not {list(_COLUMNS)}")


def _open(path: Path, busy_timeout: float) -> sqlite3.Connection:
    # Message ids can be the application's data: open_database makes the file owner-only.
    try:
        return open_database(
            path, tables={TABLE}, schema=_SCHEMA, synchronous="NORMAL", busy_timeout=busy_timeout, vet=_vet)
    except OSError as exc:
        raise ValueError(f"cannot open the seen-set {path}: {exc.strerror or exc}") from exc
    except NotOurDatabase as exc:
        raise ValueError(f"{path} is not a geobus seen-set: {exc}") from exc
    except _Untyped:
        raise ValueError(
            f"{path} is a seen-set of geobus 0.1.0.dev0, whose keys lost their type (42 and '42' were one "
            "key): its rows cannot be read safely. Stop the workers using it, then delete it (it only "
            "remembers the dedup window's keys) or name a new file") from None
