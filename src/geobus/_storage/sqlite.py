"""The one way geobus opens an SQLite file and writes to it.

The local namespace's store, the producer's outbox and the ``sqlite:`` seen-set
all open their file with ``open_database`` and write with ``transaction``:

- a new file is created owner-only (0600): it holds the application's data;
- a damaged file is refused, never started afresh. SQLite itself takes a file
  shorter than its header for an empty database and would silently start over
  it; a store that acknowledged messages must say so instead;
- WAL mode, at the durability each caller chooses (``synchronous``);
- a write of several statements is one ``BEGIN IMMEDIATE`` ... ``COMMIT``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Set
from pathlib import Path
from typing import Literal

_SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT = 5.0  # seconds a statement waits for another connection's transaction


class NotOurDatabase(Exception):
    """The file exists but is not, or is no longer, a whole database of ours."""


def open_database(
    path: Path,
    *,
    tables: Set[str],
    schema: str,
    synchronous: Literal["FULL", "NORMAL"],
    busy_timeout: float = BUSY_TIMEOUT,
    vet: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Open ``path`` (created owner-only if missing) in WAL mode, with ``schema`` applied.

    The file must hold a sound database with ``tables``, or no tables at all (a
    new one). ``vet``, if given, sees the connection first, to refuse a file by
    the caller's own rules: what it raises is passed on, the connection closed.

    The connection is in autocommit mode (write several statements with
    ``transaction``) and may be used from any thread, one at a time.

    Raises:
        OSError: the file cannot be created or opened (a missing directory, a
            directory at ``path``, no permission).
        NotOurDatabase: the file is not SQLite, is truncated or damaged, holds
            another program's tables, or SQLite failed to read it. The file is
            left as it was.
    """
    _check_file(path)
    _create_owner_only(path)
    for attempt in range(1, _OPEN_ATTEMPTS + 1):
        try:
            return _prepare(path, tables, schema, synchronous, busy_timeout, vet)
        except _RaceOnCreate:
            # Another process is turning the same new file to WAL this very moment: SQLite
            # can answer "disk I/O error" then. The file is fine; try again shortly.
            if attempt == _OPEN_ATTEMPTS:
                raise NotOurDatabase("disk I/O error") from None
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


_OPEN_ATTEMPTS = 5


class _RaceOnCreate(Exception):
    """SQLite said "disk I/O error" while setting up a connection (see ``open_database``)."""


def _prepare(
    path: Path,
    tables: Set[str],
    schema: str,
    synchronous: Literal["FULL", "NORMAL"],
    busy_timeout: float,
    vet: Callable[[sqlite3.Connection], None] | None,
) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise NotOurDatabase(str(exc)) from exc
    try:
        if vet is not None:
            vet(db)
        _check_tables(db, tables)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(schema)
    except sqlite3.OperationalError as exc:
        db.close()
        if "disk I/O error" in str(exc):
            raise _RaceOnCreate from exc
        raise NotOurDatabase(str(exc)) from exc
    except sqlite3.Error as exc:
        db.close()
        raise NotOurDatabase(str(exc)) from exc
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the block or the commit fails.

    IMMEDIATE takes the write lock before the first read, so a read-then-write (a
    seen-set claim) cannot lose to another process in between. The error raised
    is the block's: SQLite may already have rolled back (a full disk), so a
    failing ``ROLLBACK`` is not reported over it.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def _check_file(path: Path) -> None:
    """Refuse, before SQLite writes to it, a file that is not a whole SQLite database.

    Raises:
        NotOurDatabase: the file is not SQLite, or is truncated.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(100)
    except OSError:
        return  # missing (a new database), or unreadable: sqlite3 reports that
    if size == 0:
        return  # created but never written: nothing was ever acknowledged from it
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise NotOurDatabase("it is not an SQLite database")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or size % page_size:
        raise NotOurDatabase(f"it is truncated ({size} bytes is not a whole number of {page_size}-byte pages)")


def _check_tables(db: sqlite3.Connection, ours: Set[str]) -> None:
    """Refuse a database that is damaged or that another program wrote.

    It must read back cleanly and hold either no tables (a new database) or ours.

    Raises:
        NotOurDatabase: tables are missing, or ``PRAGMA quick_check`` finds damage.
    """
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.discard("sqlite_sequence")
    if tables and ours - tables:
        raise NotOurDatabase(f"it lacks the tables {sorted(ours - tables)}")
    problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise NotOurDatabase(f"it is damaged ({'; '.join(problems[:3])})")


def _create_owner_only(path: Path) -> None:
    """Create ``path`` readable and writable by its owner only (0600) if it is missing.

    SQLite gives the ``-wal`` and ``-shm`` files it creates beside a database the
    database file's mode, so they are owner-only too. An existing file keeps its mode.

    Raises:
        OSError: the file cannot be created (a missing or read-only directory).
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
