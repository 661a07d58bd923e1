"""SDK handlers under geobus's deadlines: one handler (``Bounded``) or a pool of them (``HandlerPool``).

azure-servicebus handlers are not coroutine-safe: two sends at once on one
sender can put the same delivery on the wire twice, and the service closes the
connection, failing every send in flight. So each handler takes one call at a
time, and the wait for it counts against the caller's own deadline. A sender is
a ``HandlerPool``: calls made at once (threads sharing a sync sender, tasks
sharing an async one) each take an idle handler, another one is opened while
all are busy, up to ``POOL_SIZE``, so that they are on the wire together as
they would be on as many plain SDK senders. A receiver is one ``Bounded``: its
link is its place in the entity (and its session).

Every call is cut off when its time runs out; a handler that timed out may be
wedged mid-frame, so it is dropped (closed in the background, itself bounded)
and the next call opens a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._errors import NamespaceTimeoutError

_LOG = logging.getLogger("geobus")
_T = TypeVar("_T")
CLOSE_TIMEOUT = 5.0
POOL_SIZE = 16  # SDK handlers one sender opens at most, for calls made at once
OPENING_AT_ONCE = 4  # handlers of a pool not yet known to work (opening) at one time


async def within(seconds: float, awaitable: Awaitable[_T]) -> _T:
    """``awaitable``, cancelled after ``seconds`` with ``asyncio.TimeoutError``: ``asyncio.timeout``
    where there is one (3.11+; no task of its own per call, as ``wait_for`` makes)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10


async def close_quietly(handler: Any, name: str) -> None:
    try:
        await asyncio.wait_for(handler.close(), CLOSE_TIMEOUT)
    except Exception as exc:  # a wedged handler: nothing more to do with it
        _LOG.debug("closing a dropped handler of %s failed: %r", name, exc)


class Bounded:
    """Calls on one lazily opened SDK handler, one at a time, each under a deadline."""

    def __init__(self, name: str, open_handler: Callable[[], Any]) -> None:
        self.name = name
        self._open_handler = open_handler
        self._handler: Any = None
        self._one_at_a_time = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self.users = 0  # calls holding or waiting for it now
        self.warm = False  # a call on its handler succeeded: its link is open

    @property
    def handler(self) -> Any:
        """The handler open now; None before the first call, or after a fault dropped it."""
        return self._handler

    async def call(self, fn: Callable[[Any], Awaitable[_T]], timeout: float) -> _T:
        using: list[Any] = [None]  # the handler this call holds when its time runs out
        self.users += 1
        try:
            return await within(timeout, self._run(fn, using))
        except asyncio.TimeoutError as exc:
            self._drop(using[0])  # None while still queued: the holder drops its own
            raise NamespaceTimeoutError(self.name, timeout) from exc
        finally:
            self.users -= 1

    async def _run(self, fn: Callable[[Any], Awaitable[_T]], using: list[Any]) -> _T:
        async with self._one_at_a_time:
            if self._handler is None:
                self._handler = self._open_handler()
            handler = using[0] = self._handler
            result = await fn(handler)
            self.warm = True
            return result

    def _drop(self, handler: Any) -> None:
        if handler is None or handler is not self._handler:
            return
        self._handler = None
        self.warm = False
        task = asyncio.get_running_loop().create_task(close_quietly(handler, self.name))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def reset(self) -> None:
        self._drop(self._handler)

    async def close(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            await close_quietly(handler, self.name)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class HandlerPool:
    """Up to ``size`` ``Bounded`` handlers of one kind (see the module): a call takes an idle
    one; while every one is busy, it opens another, at most ``OPENING_AT_ONCE`` of them not
    yet known to work (a burst of calls on a cold sender, or on a namespace that is down,
    does not open ``size`` links at once); or else it waits on the least busy."""

    def __init__(self, name: str, open_handler: Callable[[], Any], *, size: int = POOL_SIZE) -> None:
        if size < 1:
            raise ValueError("a handler pool needs a size of at least 1")
        self.name = name
        self._open_handler = open_handler
        self._size = size
        self._members = [Bounded(name, open_handler)]

    @property
    def opened(self) -> int:
        """Handlers this pool holds open now."""
        return sum(member.handler is not None for member in self._members)

    async def call(self, fn: Callable[[Any], Awaitable[_T]], timeout: float) -> _T:
        return await self._pick().call(fn, timeout)

    def _pick(self) -> Bounded:
        idle = [member for member in self._members if not member.users]
        if idle:  # one with a handler open already, if there is one
            return next((member for member in idle if member.handler is not None), idle[0])
        opening = sum(not member.warm for member in self._members)
        if len(self._members) < self._size and opening < OPENING_AT_ONCE:
            self._members.append(Bounded(self.name, self._open_handler))
            return self._members[-1]
        return min(self._members, key=lambda member: member.users)

    async def close(self) -> None:
        await asyncio.gather(*(member.close() for member in self._members))
