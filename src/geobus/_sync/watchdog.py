"""Cuts a blocking sync SDK call off at its deadline, from a thread of its own.

The sync azure-servicebus client can block forever on a black-holed namespace: in
SASL, on a fully blocking socket, where no SDK knob reaches (docs/sdk-behaviour.md).
The sync sender's fast lane (``fast_lane.py``) makes each call under a ``Watch``:
when the deadline passes before the call ends, the watchdog calls the watch's
``cut`` (which shuts the SDK's socket down, so the blocked read or write returns
with an error) and the caller learns that its call was cut off.

A watch that was cut is cut again every ``TICK`` until it is disarmed: whatever
the call opens next (a retry's new connection) is shut too.

One daemon thread per client, started on the first ``arm``. A finished call's
watch stays in the heap until the thread next wakes (at the earliest deadline,
but not more often than every ``TICK``), so arming and disarming cost a lock and
a heap push, and a busy sender wakes the thread at most ``1 / TICK`` times a
second. A ``cut`` that finds nothing to cut yet (the socket is still connecting,
which its own connect timeout bounds) is tried again every ``TICK``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

TICK = 0.05  # seconds: the watchdog's resolution, and how often an empty cut is tried again


class Watch:
    """One call under the watchdog. ``fired``: its ``cut`` ran (under the watchdog's lock)."""

    __slots__ = ("cut", "deadline", "done", "fired")

    def __init__(self, deadline: float, cut: Callable[[], bool]) -> None:
        self.deadline = deadline
        self.cut = cut
        self.done = False
        self.fired = False


class Watchdog:
    """Runs each armed watch's ``cut`` once its deadline passes, unless disarmed first. Thread-safe."""

    def __init__(self, name: str = "geobus-watchdog", clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def arm(self, seconds: float, cut: Callable[[], bool]) -> Watch:
        """Watch a call that must end within ``seconds``. ``cut`` stops it: True once it did
        (or there is nothing left to stop), False to be called again a ``TICK`` later.

        Raises:
            RuntimeError: the watchdog is closed.
        """
        watch = Watch(self._clock() + seconds, cut)
        with self._lock:
            if self._closed:
                raise RuntimeError("the watchdog is closed")
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._changed.notify()  # the earliest deadline now: wake the thread to it
        return watch

    def disarm(self, watch: Watch) -> bool:
        """The call ended. Returns True if it was cut off first (its result is not to be trusted,
        nor the connection it ran on)."""
        with self._lock:
            watch.done = True
            return watch.fired

    def close(self) -> None:
        """Stop the thread; watches still armed are not cut. Safe to call twice."""
        with self._lock:
            self._closed = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                now = self._clock()
                again: list[Watch] = []
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    _, _, watch = heapq.heappop(self._heap)
                    if watch.done:
                        continue
                    try:
                        watch.fired = watch.cut() or watch.fired
                    except Exception:  # a cut that failed is no reason to stop watching the others
                        watch.fired = True
                    again.append(watch)  # cut again a TICK later while it runs (a retry's new socket)
                for watch in again:
                    heapq.heappush(self._heap, (now + TICK, next(self._order), watch))
                wait = max(self._heap[0][0] - now, TICK) if self._heap else None
                self._changed.wait(wait)
