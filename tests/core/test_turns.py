"""Turns: one settlement at a time on an SDK receiver, the application's before geobus's own."""

from __future__ import annotations

import asyncio

import pytest

from geobus._engine.turns import Turns, in_background

from .fakes import until_turns


async def _take(turns: Turns, name: str, order: list[str], release: asyncio.Event, *, background: bool) -> None:
    async def hold() -> None:
        async with turns.turn():
            order.append(name)
            await release.wait()

    if background:
        with in_background():
            await hold()
    else:
        await hold()


class TestTurns:
    async def test_a_free_turn_is_taken_at_once(self) -> None:
        turns, order, free = Turns(), [], asyncio.Event()
        free.set()
        await asyncio.wait_for(_take(turns, "a", order, free, background=True), 1.0)
        assert order == ["a"] and turns.waiting == 0

    async def test_the_applications_settlements_go_before_background_ones(self) -> None:
        turns, order = Turns(), []
        releases = {name: asyncio.Event() for name in "abcd"}
        tasks = [asyncio.ensure_future(_take(turns, "a", order, releases["a"], background=True))]
        await until_turns(lambda: order == ["a"])
        for name, background in (("b", True), ("c", False), ("d", True)):
            tasks.append(asyncio.ensure_future(_take(turns, name, order, releases[name], background=background)))
        await until_turns(lambda: turns.waiting == 3)
        for name in "acbd":
            releases[name].set()
        await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
        assert order == ["a", "c", "b", "d"]  # the application's "c" passed the background "b"

    async def test_a_waiter_cancelled_leaves_the_line(self) -> None:
        turns, order = Turns(), []
        first, second, third = asyncio.Event(), asyncio.Event(), asyncio.Event()
        holder = asyncio.ensure_future(_take(turns, "a", order, first, background=False))
        await until_turns(lambda: order == ["a"])
        gone = asyncio.ensure_future(_take(turns, "b", order, second, background=False))
        later = asyncio.ensure_future(_take(turns, "c", order, third, background=True))
        await until_turns(lambda: turns.waiting == 2)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert turns.waiting == 1
        first.set()
        third.set()
        await asyncio.wait_for(asyncio.gather(holder, later), 1.0)
        assert order == ["a", "c"]

    async def test_a_turn_handed_to_a_waiter_cancelled_before_it_ran_passes_on(self) -> None:
        turns, order = Turns(), []
        first, second, third = asyncio.Event(), asyncio.Event(), asyncio.Event()
        tasks: dict[str, asyncio.Future[None]] = {}

        async def hold_then_cancel_the_next() -> None:
            async with turns.turn():
                order.append("a")
                await first.wait()
            tasks["b"].cancel()  # in the same step as the release that handed "b" the turn

        holder = asyncio.ensure_future(hold_then_cancel_the_next())
        await until_turns(lambda: order == ["a"])
        tasks["b"] = asyncio.ensure_future(_take(turns, "b", order, second, background=False))
        tasks["c"] = asyncio.ensure_future(_take(turns, "c", order, third, background=True))
        await until_turns(lambda: turns.waiting == 2)
        first.set()
        third.set()
        with pytest.raises(asyncio.CancelledError):
            await tasks["b"]
        await asyncio.wait_for(asyncio.gather(holder, tasks["c"]), 1.0)
        assert order == ["a", "c"]
