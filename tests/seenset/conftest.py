"""The seen-set stores under test, each behind one ``Harness`` that hides how it keeps time.

Memory and SQLite run on a fake clock the test moves; Redis keeps time on its
server, so its leases are short and real, and a test polls for their end.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from core.fakes import FakeClock
from geobus._storage.seenset import SeenSet
from geobus._storage.seenset.memory import MemorySeenSet
from geobus._storage.seenset.redis import RedisSeenSet
from geobus._storage.seenset.sqlite import SqliteSeenSet
from geobus.testing import eventually_async
from redis_server import RedisServer, require_redis_server

STORES = ("memory", "sqlite", "redis")
MAX_ENTRIES = 8
__all__ = ["FakeClock"]  # the one fake clock of the suite (tests/core/fakes.py)

LONG = 60.0  # a lease or ttl no test outlives
REAL_SHORT = 0.2  # Redis: a real lease a test waits out
FAKE_SHORT = 10.0  # fake clock: a lease the test jumps past
WITHIN = 10.0  # bound on a poll: a failure means "never", not "slow"


class Harness:
    """One store kind: its first instance, more instances on the same state, and its time."""

    def __init__(self, kind: str, open_store: Callable[[], SeenSet], clock: FakeClock | None,
                 url: str | None = None) -> None:
        self.kind = kind
        # What other processes open to share one state, in real time (SQLite: a file of its
        # own, since this harness's file runs on the fake clock).
        self.url = url
        self.clock = clock
        self.short = REAL_SHORT if clock is None else FAKE_SHORT
        self._open = open_store
        self._opened: list[SeenSet] = []
        self.store = self.another()

    def another(self) -> SeenSet:
        """Another instance over the same state (another process, as far as the store can tell).

        For memory, the same instance: it is one process's state."""
        if self.kind == "memory" and self._opened:
            return self._opened[0]
        store = self._open()
        self._opened.append(store)
        return store

    async def pass_time(self, seconds: float) -> None:
        """Fake clock: jump past ``seconds``. Real time: nothing; ``eventually`` waits."""
        if self.clock is not None:
            self.clock.advance(seconds + 0.001)

    async def eventually(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        """Fake clock: ``condition`` holds now. Real time: it holds within ``WITHIN`` s (polled)."""
        if self.clock is not None:
            assert await condition(), what
            return
        await eventually_async(condition, within=WITHIN, what=what)

    async def close(self) -> None:
        for store in self._opened:
            await store.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by key prefix."""
    require_redis_server()
    with RedisServer() as server:
        yield server


def redis_url(server: RedisServer, **query: str) -> str:
    """``server``'s URL with a prefix no other test uses (and any other query options)."""
    options = {"prefix": f"test:{uuid.uuid4().hex[:12]}:", **query}
    return server.url + "?" + "&".join(f"{k}={v}" for k, v in options.items())


@pytest.fixture(params=STORES)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """Each store in turn, ``max_entries=MAX_ENTRIES``; SQLite prunes on every write here."""
    kind: str = request.param
    clock = None if kind == "redis" else FakeClock()
    if kind == "memory":
        h = Harness(kind, lambda: MemorySeenSet(max_entries=MAX_ENTRIES, clock=clock), clock)
    elif kind == "sqlite":
        path = tmp_path / "seen.sqlite"
        h = Harness(kind, lambda: SqliteSeenSet(path, max_entries=MAX_ENTRIES, clock=clock, prune_every=1), clock,
                    f"sqlite:{tmp_path / 'processes.sqlite'}")
    else:
        url = redis_url(request.getfixturevalue("redis_server"))
        h = Harness(kind, lambda: RedisSeenSet(url), None, url)
    try:
        yield h
    finally:
        await h.close()
