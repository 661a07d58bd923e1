"""The durable client-side outbox: messages no namespace could take, kept until one can.

A SQLite file in WAL mode with ``synchronous=FULL``: a message is on disk
(fsynced) before ``send_messages`` returns, so a ``kill -9`` or a power cut at
any point loses nothing the caller was told was accepted. Each row belongs to a
*lane*: an entity (``queue:orders``) and a target — a namespace name (active
mode: the copy that namespace missed) or ``any`` (passive mode: whichever
namespace is up). Lanes drain in insertion order. A message whose time to live
passes while buffered, or that a namespace refuses for good, moves to the
``dead_letters`` table with the reason; nothing is dropped silently.

One process at a time owns a file (an advisory lock beside it): two producers
draining one outbox would send everything twice. ``geobus outbox`` inspects a
file, and retries or purges its dead letters, from outside.

This class does blocking I/O and is not thread-safe; the async sender drives it
from one worker thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage

from .._config import OutboxPolicy
from .._errors import OutboxError, OutboxFullError
from .lockfile import Held, lock_beside, unlock
from .messages import decode_message, encode_message, id_of, ttl_of
from .sqlite import NotOurDatabase, open_database, transaction

ANY_LANE = "any"
_FORMAT = "1"
_ROW = "entity, lane, message_id, body, size, buffered_at, expires_at, attempts"
# What a row keeps of a message; both tables hold the same, dead letters also why.
_MESSAGE_COLUMNS = """
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    lane TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    buffered_at REAL NOT NULL,
    expires_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox ({_MESSAGE_COLUMNS},
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox (entity, lane, id);
CREATE TABLE IF NOT EXISTS dead_letters ({_MESSAGE_COLUMNS},
    reason TEXT NOT NULL,
    dead_lettered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('format', '{_FORMAT}');
"""
_TABLES = frozenset({"outbox", "dead_letters", "meta"})


@dataclass(frozen=True)
class Entry:
    """One buffered message, ready to send (its time to live already shortened by the wait)."""

    id: int
    entity: str
    lane: str
    message_id: str
    message: AmqpAnnotatedMessage
    buffered_at: float
    attempts: int


@dataclass(frozen=True)
class LaneInfo:
    """One lane's depth and when its oldest message was buffered (``time.time()`` seconds)."""

    entity: str
    lane: str
    depth: int
    oldest_buffered_at: float


@dataclass(frozen=True)
class DeadLetter:
    """A row of the ``dead_letters`` table: a message with why it was given up on."""

    id: int
    entity: str
    lane: str
    message_id: str
    reason: str
    buffered_at: float
    dead_lettered_at: float
    attempts: int


# -- the file ------------------------------------------------------------------------------


class Outbox:
    """A SQLite outbox at ``policy.path``.

    Raises (on construction):
        OutboxError: the file is damaged, truncated, not an outbox, or another
            process holds it. The file is left as it was.
    """

    def __init__(
        self, policy: OutboxPolicy, *, clock: Callable[[], float] = time.time, lock: bool = True
    ) -> None:
        if policy.path is None:
            raise ValueError("the outbox policy has no path")
        self.policy = policy
        self.path = Path(policy.path)
        self._clock = clock
        self._lock: IO[bytes] | None = _lock(self.path) if lock else None
        self._depth: Counter[tuple[str, str]] = Counter()
        self._total = 0  # kept apart from _depth: other threads read it while this one writes
        self._bytes = 0
        # When each lane's first message was buffered, for its age: read from other threads
        # like _depth, so stats and metrics never wait for (or touch) the file.
        self._heads: dict[tuple[str, str], float] = {}
        # Messages this process moved to the dead-letter table, per entity (refused or expired).
        self.dead_lettered: Counter[str] = Counter()
        try:
            self._db = _open(self.path)
            self.recount()
        except sqlite3.Error as exc:
            self.close()
            raise OutboxError(f"{self.path} cannot be read as a geobus outbox: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, depth={self.depth()})"

    # -- state -----------------------------------------------------------------------------

    def recount(self) -> None:
        """Re-read lane depths from the file (another process may have retried dead letters)."""
        depth: Counter[tuple[str, str]] = Counter()
        heads: dict[tuple[str, str], float] = {}
        total = 0
        # With a single min() aggregate, SQLite takes the bare column (buffered_at) from the
        # row holding the minimum: the lane's first message.
        for entity, lane, count, size, _, buffered_at in self._db.execute(
            "SELECT entity, lane, COUNT(*), COALESCE(SUM(size), 0), MIN(id), buffered_at"
            " FROM outbox GROUP BY entity, lane"
        ):
            depth[(entity, lane)] = count
            heads[(entity, lane)] = buffered_at
            total += size
        self._depth, self._bytes, self._total = depth, total, sum(depth.values())
        self._heads = heads

    def pending(self, entity: str, lane: str) -> int:
        """Messages waiting in one lane."""
        return self._depth[(entity, lane)]

    def depth(self) -> int:
        """Messages waiting in every lane."""
        return self._total

    def lanes(self) -> list[LaneInfo]:
        """Every lane that holds a message, read from the file."""
        return [
            LaneInfo(entity, lane, count, oldest)
            for entity, lane, count, oldest in self._db.execute(
                "SELECT entity, lane, COUNT(*), MIN(buffered_at) FROM outbox GROUP BY entity, lane ORDER BY entity, lane"
            )
        ]

    def oldest_age(self) -> float | None:
        """Seconds since the oldest waiting message was buffered, read from the file; None when empty."""
        (oldest,) = self._db.execute("SELECT MIN(buffered_at) FROM outbox").fetchone()
        return None if oldest is None else max(0.0, self._clock() - oldest)

    def head_age(self, entity: str, lanes: Sequence[str]) -> float | None:
        """Seconds since the first message waiting in any of ``lanes`` was buffered; None when
        they are empty.

        Reads what this object keeps in memory, never the file: safe to call from another
        thread while the outbox's own thread writes. A dead letter retried to the tail of
        its lane counts once it reaches the head.
        """
        heads = [buffered_at for lane in lanes if (buffered_at := self._heads.get((entity, lane))) is not None]
        return max(0.0, self._clock() - min(heads)) if heads else None

    # -- buffering and draining ---------------------------------------------------------------

    def append(
        self, entity: str, lanes: Sequence[str], messages: Sequence[ServiceBusMessage | AmqpAnnotatedMessage]
    ) -> None:
        """Store ``messages`` at the tail of each of ``lanes``, all or nothing, fsynced.

        Raises:
            OutboxFullError: storing them would pass ``max_messages`` or ``max_bytes``
                (nothing is stored; ``causes`` is empty — the sender fills it in).
            TypeError: a message holds a value the outbox cannot keep.
        """
        now = self._clock()
        rows = []
        for message in messages:
            body = encode_message(message)
            ttl = ttl_of(message)
            for lane in lanes:
                rows.append((entity, lane, id_of(message), body, len(body), now, now + ttl if ttl else None))
        added_bytes = sum(row[4] for row in rows)
        count = self.depth()
        if count + len(rows) > self.policy.max_messages or self._bytes + added_bytes > self.policy.max_bytes:
            raise OutboxFullError(
                f"the outbox is full ({count} messages, {self._bytes} bytes; limits "
                f"{self.policy.max_messages} messages, {self.policy.max_bytes} bytes)",
                causes={},
            )
        with transaction(self._db):
            self._db.executemany(f"INSERT INTO outbox ({_ROW}) VALUES (?, ?, ?, ?, ?, ?, ?, 0)", rows)
        for row in rows:
            self._depth[(row[0], row[1])] += 1
        self._total += len(rows)
        self._bytes += added_bytes
        for lane in lanes:
            self._heads.setdefault((entity, lane), now)  # the lane's head, unless it had one

    def head(self, entity: str, lane: str, limit: int) -> list[Entry]:
        """The first ``limit`` live messages of a lane, oldest first (expired ones are
        dead-lettered on the way)."""
        self.expire(entity, lane)
        now = self._clock()
        entries = []
        for row_id, message_id, body, buffered_at, expires_at, attempts in self._db.execute(
            "SELECT id, message_id, body, buffered_at, expires_at, attempts FROM outbox"
            " WHERE entity = ? AND lane = ? ORDER BY id LIMIT ?",
            (entity, lane, limit),
        ):
            try:
                message = decode_message(body)
            except ValueError as exc:
                self.dead_letter([row_id], f"unreadable in the outbox: {exc}")
                continue
            if expires_at is not None and message.header is not None:
                # The service starts a fresh time to live when it enqueues: give it what is left.
                message.header.time_to_live = max(1, int((expires_at - now) * 1000))
            entries.append(Entry(row_id, entity, lane, message_id, message, buffered_at, attempts))
        return entries

    def remove(self, ids: Sequence[int]) -> None:
        """Forget messages that a namespace has stored."""
        self._move(ids, None)

    def dead_letter(self, ids: Sequence[int], reason: str) -> None:
        """Move messages to the dead-letter table with ``reason``."""
        self._move(ids, reason)

    def record_failure(self, ids: Sequence[int], error: str) -> None:
        """Count a failed attempt to send messages, and keep its error."""
        with transaction(self._db):
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", [(error, i) for i in ids]
            )

    def expire(self, entity: str, lane: str) -> int:
        """Dead-letter a lane's messages whose time to live passed while buffered."""
        expired = [
            row_id
            for (row_id,) in self._db.execute(
                "SELECT id FROM outbox WHERE entity = ? AND lane = ? AND expires_at IS NOT NULL AND expires_at <= ?",
                (entity, lane, self._clock()),
            )
        ]
        if expired:
            self.dead_letter(expired, "expired in the outbox: its time_to_live passed before a namespace took it")
        return len(expired)

    # -- dead letters ---------------------------------------------------------------------------

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """The dead letters, oldest first (the first ``limit`` of them, if given)."""
        query = (
            "SELECT id, entity, lane, message_id, reason, buffered_at, dead_lettered_at, attempts"
            " FROM dead_letters ORDER BY id"
        )
        rows = self._db.execute(query + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [DeadLetter(*row) for row in rows]

    def retry_dead_letters(self, ids: Sequence[int] | None = None) -> int:
        """Move dead letters (all, or ``ids``) back to the tail of their lanes. Returns how many."""
        where, args = _selection(ids)
        with transaction(self._db):
            moved = self._db.execute(
                f"INSERT INTO outbox ({_ROW}) SELECT entity, lane, message_id, body, size, buffered_at,"
                f" expires_at, 0 FROM dead_letters {where} ORDER BY id",
                args,
            ).rowcount
            self._db.execute(f"DELETE FROM dead_letters {where}", args)
        self.recount()
        return moved

    def purge_dead_letters(self, ids: Sequence[int] | None = None) -> int:
        """Delete dead letters (all, or ``ids``) for good. Returns how many."""
        where, args = _selection(ids)
        with transaction(self._db):
            return self._db.execute(f"DELETE FROM dead_letters {where}", args).rowcount

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file and release it. Safe to call twice."""
        if getattr(self, "_db", None) is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]
        unlock(self._lock)
        self._lock = None

    # -- internals -----------------------------------------------------------------------------

    def _move(self, ids: Sequence[int], reason: str | None) -> None:
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        gone = list(self._db.execute(f"SELECT entity, lane, size FROM outbox WHERE id IN ({marks})", list(ids)))
        with transaction(self._db):
            if reason is not None:
                self._db.execute(
                    f"INSERT INTO dead_letters ({_ROW}, reason, dead_lettered_at) SELECT {_ROW}, ?, ?"
                    f" FROM outbox WHERE id IN ({marks}) ORDER BY id",
                    [reason, self._clock(), *ids],
                )
            self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", list(ids))
        heads = {
            (entity, lane): self._db.execute(
                "SELECT buffered_at FROM outbox WHERE entity = ? AND lane = ? ORDER BY id LIMIT 1", (entity, lane)
            ).fetchone()
            for entity, lane in {(entity, lane) for entity, lane, _ in gone}
        }
        for entity, lane, size in gone:
            if reason is not None:
                self.dead_lettered[entity] += 1
            self._depth[(entity, lane)] -= 1
            if self._depth[(entity, lane)] <= 0:
                del self._depth[(entity, lane)]
            # Rows another process added (a retry from `geobus outbox`) were never counted here.
            self._total = max(0, self._total - 1)
            self._bytes = max(0, self._bytes - size)
        # After the depths: a reader that checks the depth first never ages an emptied lane.
        for key, head in heads.items():
            if head is None:
                self._heads.pop(key, None)
            else:
                self._heads[key] = head[0]


def _selection(ids: Sequence[int] | None) -> tuple[str, list[int]]:
    if ids is None:
        return "", []
    return f"WHERE id IN ({','.join('?' * len(ids))})", list(ids)


def _open(path: Path) -> sqlite3.Connection:
    # Message bodies are the application's data: open_database makes the file owner-only.
    try:
        db = open_database(path, tables=_TABLES, schema=_SCHEMA, synchronous="FULL")
    except OSError as exc:
        raise _unusable(path, exc) from exc
    except NotOurDatabase as exc:
        raise OutboxError(f"{path} is not a geobus outbox: {exc}") from exc
    try:
        (version,) = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if version != _FORMAT:
            raise NotOurDatabase(f"it is outbox format {version}; this geobus reads format {_FORMAT}")
    except (sqlite3.Error, NotOurDatabase) as exc:
        db.close()
        raise OutboxError(f"{path} is not a geobus outbox: {exc}") from exc
    return db


def _unusable(path: Path, exc: OSError) -> OutboxError:
    """The outbox file (or its lock file beside it) cannot be created or opened."""
    reason = exc.strerror or type(exc).__name__
    return OutboxError(f"outbox path {str(path)!r} cannot be used: {reason} (check outbox.path and its directory)")


def _lock(path: Path) -> IO[bytes] | None:
    try:
        return lock_beside(path)
    except OSError as exc:
        raise _unusable(path, exc) from exc
    except Held as held:
        raise OutboxError(f"{path} is in use by {held}; one producer process per outbox file") from None
