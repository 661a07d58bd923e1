"""Draining a queue, for every benchmark that receives: what a drain expects, decided once.

``Drain`` holds the decisions and no I/O (how many to ask for, when the warm-up
and the timed part are over, what counts as a broken run); ``pump`` and
``apump`` are the sync and async loops that only receive, complete and report.
"""

from __future__ import annotations

import time
from typing import Any

from .common import Stall

RECEIVE_BATCH = 100
WARM_UP_WAIT = 5.0
TAIL_WAIT = 0.02  # receive wait once every message is in: only duplicates are left to absorb


class Drain:
    """One receiver's drain, decided without I/O: one message untimed (``warming``), then,
    once ``start``ed, timed until ``count`` messages are received (and completed, unless
    not ``settle``: receive-and-delete). A DedupReceiver's drain (``dedup``) counts the
    warm-up message too, never sees an id twice, and is done once every twin (``count``)
    has been absorbed as well. A plain drain ``shared`` with others on one queue asks
    for no more than its share. ``pump`` and ``apump`` carry it out."""

    def __init__(self, what: str, count: int, *, dedup: bool = False, settle: bool = True, shared: bool = True) -> None:
        self.what, self.count, self.dedup, self.settle, self.shared = what, count, dedup, settle, shared
        self.warming = True
        self.got = self.absorbed = 0
        self.started = self.ended = 0.0
        self._ids: set[str] = set()
        self._stall = Stall(what)

    def ask(self) -> tuple[int, float] | None:
        """``(max_message_count, max_wait_time)`` of the next receive call; None: this phase is done."""
        if self.warming:
            return None if self.got else (1, WARM_UP_WAIT)
        if self.dedup:
            if len(self._ids) >= self.count and self.absorbed >= self.count:
                return None
            return RECEIVE_BATCH, 1.0 if len(self._ids) < self.count else TAIL_WAIT
        if self.got >= self.count:
            return None
        # Sharing its queue, a drain asks for its own share only; alone on it, as an application asks,
        # not knowing how many are left (asked for more than there are, the SDK waits 0.2 s after the
        # first message for the rest: a DedupReceiver's drain pays that too).
        return (min(RECEIVE_BATCH, self.count - self.got) if self.shared else RECEIVE_BATCH), WARM_UP_WAIT

    @property
    def seconds(self) -> float:
        """From ``start`` to the last message; RuntimeError if the drain did not finish."""
        if not self.ended:
            raise RuntimeError(f"{self.what}: did not finish (its traceback is above)")
        return self.ended - self.started

    def start(self) -> None:
        self.warming = False
        self.got = len(self._ids) if self.dedup else 0
        self.started = time.perf_counter()

    def took(self, batch: list[Any], absorbed: int) -> None:
        """Raises:
        RuntimeError: a message came twice through a DedupReceiver, more came than were
            sent, or nothing moved for ``common.STALL`` seconds."""
        for message in batch:
            if self.dedup and message.message_id in self._ids:
                raise RuntimeError(f"{self.what}: message {message.message_id} was delivered twice")
            self._ids.add(message.message_id)
        self.got += len(batch)
        self.absorbed = absorbed
        if self.dedup and (self.got > self.count or absorbed > self.count):
            raise RuntimeError(f"{self.what}: {self.got} delivered, {absorbed} absorbed of {self.count}")
        self._stall.check((self.got, absorbed))
        if not self.warming and self.ask() is None:
            self.ended = time.perf_counter()


def pump(receiver: Any, drain: Drain) -> None:
    """Receive (and complete) what ``drain`` asks for, until its phase is done."""
    while (ask := drain.ask()) is not None:
        batch = receiver.receive_messages(max_message_count=ask[0], max_wait_time=ask[1])
        for message in batch if drain.settle else ():
            receiver.complete_message(message)
        drain.took(batch, receiver.stats.duplicates_absorbed if drain.dedup else 0)


async def apump(receiver: Any, drain: Drain) -> None:
    """As ``pump``, for an async receiver."""
    while (ask := drain.ask()) is not None:
        batch = await receiver.receive_messages(max_message_count=ask[0], max_wait_time=ask[1])
        for message in batch if drain.settle else ():
            await receiver.complete_message(message)
        drain.took(batch, receiver.stats.duplicates_absorbed if drain.dedup else 0)
