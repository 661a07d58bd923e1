"""``Bounded`` and ``HandlerPool`` over fake SDK handlers: one call at a time per handler, calls made
at once spread over up to ``size`` handlers, a call past its deadline drops only its own handler."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from geobus._engine.bounded import OPENING_AT_ONCE, Bounded, HandlerPool
from geobus._errors import NamespaceTimeoutError

from .fakes import until_turns


class FakeHandler:
    """Counts the calls on it at once; a call lasts until ``gate`` is set."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.now = 0
        self.most = 0
        self.calls = 0
        self.closed = False

    async def work(self) -> FakeHandler:
        self.now += 1
        self.most = max(self.most, self.now)
        self.calls += 1
        try:
            await self.gate.wait()
        finally:
            self.now -= 1
        return self

    async def close(self) -> None:
        self.closed = True


class Opener:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.opened: list[FakeHandler] = []

    def __call__(self) -> FakeHandler:
        self.opened.append(FakeHandler(self.gate))
        return self.opened[-1]


async def work(handler: Any) -> FakeHandler:
    result: FakeHandler = await handler.work()
    return result


async def test_calls_in_sequence_reuse_one_handler() -> None:
    opener = Opener()
    opener.gate.set()
    pool = HandlerPool("weu", opener, size=4)
    for _ in range(5):
        await pool.call(work, 5.0)
    assert len(opener.opened) == 1 and opener.opened[0].calls == 5
    await pool.close()
    assert opener.opened[0].closed


async def test_a_burst_on_a_cold_pool_opens_a_few_links_and_queues_on_them() -> None:
    opener = Opener()
    pool = HandlerPool("weu", opener, size=16)
    calls = [asyncio.ensure_future(pool.call(work, 5.0)) for _ in range(10)]
    await until_turns(lambda: sum(h.now for h in opener.opened) == OPENING_AT_ONCE)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(opener.opened) == OPENING_AT_ONCE, "more links opened at once than the pool allows"
    opener.gate.set()
    await asyncio.gather(*calls)
    assert all(h.most == 1 for h in opener.opened), "an SDK handler took two calls at once"
    assert sum(h.calls for h in opener.opened) == 10
    await pool.close()


async def test_busy_open_links_grow_the_pool_up_to_its_size() -> None:
    opener = Opener()
    pool = HandlerPool("weu", opener, size=6)
    for _ in range(3):  # each round opens more links while the others are busy
        opener.gate.clear()
        calls = [asyncio.ensure_future(pool.call(work, 5.0)) for _ in range(12)]
        await until_turns(lambda: sum(h.now for h in opener.opened) == len(opener.opened) > 0)
        for _ in range(20):
            await asyncio.sleep(0)
        opener.gate.set()
        await asyncio.gather(*calls)
    assert len(opener.opened) == 6 and pool.opened == 6, "the pool did not grow to, or grew past, its size"
    assert all(h.most == 1 for h in opener.opened), "an SDK handler took two calls at once"
    await pool.close()
    assert all(h.closed for h in opener.opened)


async def test_a_call_past_its_deadline_drops_only_its_handler() -> None:
    opener = Opener()
    pool = HandlerPool("weu", opener, size=2)
    opener.gate.set()
    await pool.call(work, 5.0)  # the first link is open
    opener.gate.clear()
    slow = asyncio.ensure_future(pool.call(work, 0.05))
    await until_turns(lambda: opener.opened[0].now == 1)
    other = asyncio.ensure_future(pool.call(work, 5.0))
    await until_turns(lambda: len(opener.opened) == 2 and opener.opened[1].now == 1)
    with pytest.raises(NamespaceTimeoutError):
        await slow
    await until_turns(lambda: opener.opened[0].closed)
    assert not opener.opened[1].closed
    opener.gate.set()
    assert await other is opener.opened[1]
    assert await pool.call(work, 5.0) is opener.opened[1], "the open handler is reused"
    await pool.close()


async def test_one_bounded_handler_takes_one_call_at_a_time() -> None:
    opener = Opener()
    bounded = Bounded("weu", opener)
    calls = [asyncio.ensure_future(bounded.call(work, 5.0)) for _ in range(3)]
    await until_turns(lambda: bool(opener.opened) and opener.opened[0].now == 1)
    assert bounded.users == 3
    opener.gate.set()
    await asyncio.gather(*calls)
    assert len(opener.opened) == 1 and opener.opened[0].most == 1 and bounded.users == 0
    await bounded.close()


def test_a_pool_needs_a_handler() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HandlerPool("weu", Opener(), size=0)
