"""Settlements on one SDK receiver, one at a time, the application's first.

Concurrent settlements on one SDK receiver are ~40x slower than the same ones in
sequence (20 completes: 0.20 s gathered, 5 ms in turn), so a receive channel
settles one message at a time. Most of its settlements are geobus's own: the
twins of the messages the application settled, which arrive in bursts (a
received batch's worth at once, 5 ms each at a 4 ms round trip). Waiting in
line behind such a burst, the application's own ``complete_message`` took
0.48 s. So the application's settlements go before geobus's background ones:
the application waits at most for the one settlement on the wire. A twin that
waits longer is still held under its lock, which geobus renews.

``in_background`` marks the current task's settlements as geobus's own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator

_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("geobus_background_settlement", default=False)


@contextlib.contextmanager
def in_background() -> Iterator[None]:
    """Settlements made in this block (in this task) are geobus's own: they let the
    application's go first."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


class Turns:
    """One holder at a time; waiting application settlements before background ones,
    each kind in arrival order. Task-safe within one event loop."""

    def __init__(self) -> None:
        self._held = False
        self._first: collections.deque[asyncio.Future[None]] = collections.deque()
        self._later: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._first) + len(self._later)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the turn for the block: an application's settlement, or a background one
        inside ``in_background``."""
        await self._acquire(_BACKGROUND.get())
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, background: bool) -> None:
        if not self._held and not self._first and not self._later:
            self._held = True
            return
        line = self._later if background else self._first
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # handed the turn, then cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    line.remove(granted)
            raise

    def _release(self) -> None:
        for line in (self._first, self._later):
            while line:
                granted = line.popleft()
                if not granted.done():
                    granted.set_result(None)  # the turn goes straight to it: still held
                    return
        self._held = False
