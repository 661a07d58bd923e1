"""``open_database`` rides out SQLite's "disk I/O error" while another process sets up a new file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from geobus._storage import sqlite as opener

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY);"


class _Flaky:
    """A connection whose first ``failures`` statements fail as SQLite does during another's WAL switch."""

    def __init__(self, real: sqlite3.Connection, failures: list[int]) -> None:
        self._real = real
        self._failures = failures

    def execute(self, *args: Any) -> Any:
        if self._failures[0] > 0:
            self._failures[0] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return self._real.execute(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _connect_failing(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    left = [failures]
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        return _Flaky(real_connect(*args, **kwargs), left)

    monkeypatch.setattr(opener.sqlite3, "connect", connect)
    monkeypatch.setattr(opener.time, "sleep", lambda _seconds: None)  # the backoff is not under test
    return left


def test_a_passing_disk_io_error_on_open_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    left = _connect_failing(monkeypatch, failures=2)
    db = opener.open_database(tmp_path / "s.db", tables={"t"}, schema=SCHEMA, synchronous="NORMAL")
    try:
        assert left == [0]
        db.execute("INSERT INTO t VALUES ('a')")
        assert db.execute("SELECT k FROM t").fetchall() == [("a",)]
    finally:
        db.close()


def test_one_that_lasts_is_a_damaged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _connect_failing(monkeypatch, failures=100)
    with pytest.raises(opener.NotOurDatabase, match="disk I/O error"):
        opener.open_database(tmp_path / "s.db", tables={"t"}, schema=SCHEMA, synchronous="NORMAL")
