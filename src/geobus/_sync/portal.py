"""A private event loop on a daemon thread: how the sync API runs the async core.

The sync azure-servicebus client can hang forever on a black-holed namespace
(in SASL, on a blocking socket; no SDK knob bounds it). geobus's sync classes
therefore run the async core, whose every call is under ``asyncio.wait_for``,
on a loop of their own, and only wait for its results.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


class Portal:
    """Runs coroutines on one private loop thread. Thread-safe."""

    def __init__(self, name: str = "geobus") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{name}-loop", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the loop and wait for its result (or exception).

        Raises:
            RuntimeError: called from the loop's own thread, or after ``close``.
        """
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a geobus sync call was made from inside its own event loop")
        if self._closed:
            coroutine.close()
            raise RuntimeError("this geobus client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # KeyboardInterrupt and friends: do not leave the call running
            raise

    def close(self) -> None:
        """Stop the loop once its remaining tasks are cancelled. Safe to call twice."""
        if self._closed:
            return
        self._closed = True

        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_drain(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
