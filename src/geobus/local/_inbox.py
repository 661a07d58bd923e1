"""Calls that other threads hand to the local namespace's loop thread.

The loop sleeps in its selector; ``Inbox`` puts a call in a queue and writes a
byte to a socket pair the selector watches, so the loop wakes, runs the call
(``run_all``) and hands its result back through a ``Future``.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

_T = TypeVar("_T")
WAKE = "wake"  # the selector key's data


class Inbox:
    """The loop's queue of calls from other threads. ``call`` and ``wake`` are thread-safe."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._lock = threading.Lock()
        self._closed: tuple[str, BaseException | None] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        selector.register(self._wake_r, selectors.EVENT_READ, WAKE)

    def call(self, fn: Callable[[], _T], timeout: float) -> _T:
        """Queue ``fn`` for the loop thread and wait for its result.

        Raises:
            RuntimeError: the inbox is closed (at once: no loop would ever answer).
            TimeoutError: the loop did not run it within ``timeout`` seconds.
        """
        future: Future[_T] = Future()
        with self._lock:
            if self._closed is not None:
                reason, cause = self._closed
                raise RuntimeError(reason) from cause
            self._calls.append((fn, future))
        self.wake()
        return future.result(timeout)

    def wake(self) -> None:
        """Make the loop's selector return now."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    # -- on the loop thread ----------------------------------------------------

    def woken(self) -> None:
        """Take the wake-up bytes (the selector reported ``WAKE``)."""
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)

    def run_all(self) -> None:
        """Run the queued calls, each result or exception to its caller."""
        while self._calls:
            fn, future = self._calls.popleft()
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def close(self, reason: str, cause: BaseException | None) -> None:
        """Fail the calls still queued, and every later one, with ``RuntimeError(reason)``."""
        with self._lock:
            self._closed = (reason, cause)
            orphans = list(self._calls)
            self._calls.clear()
        for _, future in orphans:
            future.set_exception(RuntimeError(reason))
        self._wake_r.close()
        self._wake_w.close()
