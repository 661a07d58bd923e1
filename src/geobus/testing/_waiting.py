"""Waiting in tests without sleeping for a guess: ``eventually`` polls, ``FakeClock`` is moved by hand."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

# How often a condition is asked again by default: often enough not to slow a test, rarely
# enough not to starve the code under test of a small, shared machine.
POLL_EVERY = 0.01


class FakeClock:
    """A clock that moves only when the test says so; call it for the time.

    Pass it to code under test that takes a clock (a ``time.time``- or
    ``time.monotonic``-shaped callable) and move it with ``advance``: a lease, a
    lock or a backoff then runs out at once, without the test sleeping. geobus's
    own suite drives its duplicate tracker, breakers and outbox this way.
    """

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward; returns the new time."""
        self.now += seconds
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"


def _timed_out(within: float, what: str | Callable[[], object]) -> AssertionError:
    said = what() if callable(what) else what
    return AssertionError(f"not within {within:g} s: {said}")


def eventually(
    condition: Callable[[], object],
    *,
    within: float = 10.0,
    what: str | Callable[[], object] = "the condition",
    every: float = POLL_EVERY,
) -> None:
    """Poll ``condition`` every ``every`` seconds until it is true; fail naming ``what``
    after ``within`` seconds. Pick ``within`` as a bound ("never"), not an expected time.

    ``what`` may be a callable, called only on failure (to show the state then).

    Raises:
        AssertionError: ``condition`` stayed false for ``within`` seconds.
    """
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise _timed_out(within, what)
        time.sleep(every)


async def eventually_async(
    condition: Callable[[], object | Awaitable[object]],
    *,
    within: float = 10.0,
    what: str | Callable[[], object] = "the condition",
    every: float = POLL_EVERY,
) -> None:
    """``eventually`` for a coroutine test: yields to the loop between polls.

    ``condition`` may be a plain function or a coroutine function.

    Raises:
        AssertionError: ``condition`` stayed false for ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise _timed_out(within, what)
        await asyncio.sleep(every)
