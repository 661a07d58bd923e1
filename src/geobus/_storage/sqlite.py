"""Opening a SQLite file that must hold what geobus acknowledged: refuse it if damaged.

Shared by the local namespace's store and the producer's outbox. SQLite itself
takes a file shorter than its header for an empty database and would silently
start afresh over it; a store that acknowledged messages must say so instead.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Set
from pathlib import Path

_SQLITE_MAGIC = b"SQLite format 3\x00"


class NotOurDatabase(Exception):
    """The file exists but is not, or is no longer, a whole database of ours."""


def check_file(path: Path) -> None:
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


def check_tables(db: sqlite3.Connection, ours: Set[str]) -> None:
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


def create_owner_only(path: Path) -> None:
    """Create ``path`` readable and writable by its owner only (0600) if it is missing.

    SQLite gives the ``-wal`` and ``-shm`` files it creates beside a database the
    database file's mode, so they are owner-only too. An existing file keeps its mode.

    Raises:
        OSError: the file cannot be created (a missing or read-only directory).
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
