"""A private event loop on a daemon thread: how sync code runs async code, and waits.

The sync azure-servicebus client can hang forever on a black-holed namespace
(in SASL, on a blocking socket; no SDK knob bounds it). geobus's sync classes
therefore run the async core, whose every call is under ``asyncio.wait_for``,
on a loop of their own, and only wait for its results. ``geobus.testing``'s
fault proxy runs its sockets on one too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .._engine.tasks import cancel_and_wait

_T = TypeVar("_T")

CLOSE_TIMEOUT = 10.0  # seconds ``close`` waits for the loop's tasks to end, then for its thread


class Portal:
    """Runs coroutines on one private loop thread, named ``thread_name``. Thread-safe."""

    def __init__(self, thread_name: str = "geobus-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=thread_name, daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, coroutine: Coroutine[Any, Any, _T], *, timeout: float | None = None) -> _T:
        """Run ``coroutine`` on the loop and wait for its result (or exception).

        ``timeout``: seconds to wait, then cancel it; None waits as long as it runs.

        Raises:
            RuntimeError: called from the loop's own thread, or after ``close``.
            TimeoutError: it did not finish within ``timeout`` (it is cancelled).
        """
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a geobus sync call was made from inside its own event loop")
        if self._closed:
            coroutine.close()
            raise RuntimeError("this geobus client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()  # a timeout, KeyboardInterrupt and friends: do not leave the call running
            raise

    def close(self) -> None:
        """Cancel the loop's remaining tasks, stop it and join its thread. Safe to call twice.

        Raises:
            RuntimeError: the thread did not stop within ``CLOSE_TIMEOUT`` (a bug).
        """
        if self._closed:
            return
        self._closed = True

        async def _drain() -> None:
            await cancel_and_wait(t for t in asyncio.all_tasks() if t is not asyncio.current_task())

        try:
            asyncio.run_coroutine_threadsafe(_drain(), self._loop).result(timeout=CLOSE_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CLOSE_TIMEOUT)
        if self._thread.is_alive():  # pragma: no cover - a bug: a task that blocks the loop
            raise RuntimeError(f"the {self._thread.name} thread did not stop")

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
