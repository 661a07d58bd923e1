"""Ending background tasks for good: the one home of a cancellation workaround.

Before Python 3.12, ``asyncio.wait_for`` swallows a cancellation that lands just
as the awaitable it waits for completes (an ``Event`` set by a settlement, a
batch arriving, a channel's send): the task runs on as if nothing happened, and
a ``close()`` that cancelled it once and then awaited it would wait forever.
Every loop geobus runs in the background (the engine's, a private loop's
tasks when it closes, the fault proxy's relays) is therefore stopped here, by
cancelling until it has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# How long one cancellation is given to land before it is sent again.
_RECANCEL_AFTER = 0.05


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` until every one has ended; their results and errors are dropped."""
    every = list(tasks)
    pending = {task for task in every if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL_AFTER)
    await asyncio.gather(*every, return_exceptions=True)
