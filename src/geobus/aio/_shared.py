"""A receiver's side of a shared seen-set: claims, leases, and copies waiting on another worker.

The ``DedupReceiver`` decides within its own process with ``DuplicateTracker``;
when its configuration names a shared store (``[dedup] store``), a key new to
this process is first claimed in the store. ``SharedKeys`` turns the store's
answer into the tracker's vocabulary (``Verdict``), keeps the leases of the keys
whose messages the application holds, and asks again about copies whose key
another worker has in flight — they wait, locked, until that worker completes
the key (the copy is settled the same way) or dies (its lease runs out and this
worker claims the key and delivers the copy).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable

from .._config import DedupPolicy, StoreUnavailable
from .._dedup import Copy, Verdict
from .._seenset import Claim, SeenSet, SeenSetError

_LOG = logging.getLogger("geobus")

_VERDICTS = {
    Claim.CLAIMED: Verdict.DELIVER,
    Claim.TAKEN: Verdict.HOLD,
    Claim.COMPLETED: Verdict.COMPLETE,
    Claim.DEAD_LETTERED: Verdict.DEAD_LETTER,
}


def owner_id() -> str:
    """This receiver's name in the store: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SharedKeys:
    """Claims and leases of one receiver in a shared ``SeenSet``."""

    def __init__(self, store: SeenSet, policy: DedupPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.owner = owner_id()
        self.lease = policy.lease
        self.ttl = policy.max_age
        self.when_down = policy.store_unavailable
        self._clock = clock
        self._claimed: dict[str, float] = {}  # key -> when its lease was last taken or renewed
        self._waiting: dict[str, Copy] = {}  # key -> the copy waiting on another owner
        self._down = False

    # -- arrivals ---------------------------------------------------------------------------

    async def admit(self, key: str, copy: Copy, *, already_settled: bool) -> Verdict:
        """What to do with the first local copy of ``key``; ``HOLD`` means it waits here."""
        try:
            claim = await self.store.claim(key, self.owner, self.lease)
        except SeenSetError as exc:
            claim = self._unavailable(exc)
        else:
            self._available()
        if already_settled:  # receive-and-delete: the copy is already gone from its namespace
            if claim is Claim.CLAIMED:
                await self.done(key, Claim.COMPLETED)
                return Verdict.DELIVER
            return Verdict.DROP
        if claim is Claim.CLAIMED:
            self._claimed[key] = self._clock()
        elif claim is Claim.TAKEN:
            self._waiting[key] = copy
        return _VERDICTS[claim]

    def _unavailable(self, exc: SeenSetError) -> Claim:
        if not self._down:
            self._down = True
            _LOG.warning(
                "geobus: the shared seen-set is unavailable (%s); new keys are %s until it is back",
                exc,
                "delivered (a twin may reach another worker)" if self.when_down is StoreUnavailable.DELIVER else "held",
            )
        return Claim.CLAIMED if self.when_down is StoreUnavailable.DELIVER else Claim.TAKEN

    def _available(self) -> None:
        if self._down:
            self._down = False
            _LOG.info("geobus: the shared seen-set answers again")

    async def recheck(self) -> list[tuple[str, Copy, Verdict]]:
        """Ask again about the waiting copies; returns those that are no longer waiting."""
        resolved = []
        for key, copy in list(self._waiting.items()):
            try:
                claim = await self.store.claim(key, self.owner, self.lease)
            except SeenSetError:
                continue  # still waiting: a held copy is never delivered on a guess
            if claim is Claim.TAKEN:
                continue
            del self._waiting[key]
            if claim is Claim.CLAIMED:
                self._claimed[key] = self._clock()
            resolved.append((key, copy, _VERDICTS[claim]))
        return resolved

    def waiting_copies(self) -> Iterable[Copy]:
        return list(self._waiting.values())

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def forget_waiting(self) -> list[Copy]:
        """The waiting copies, no longer waited on (the receiver is closing)."""
        copies = list(self._waiting.values())
        self._waiting.clear()
        return copies

    # -- leases and outcomes ---------------------------------------------------------------------

    async def renew(self, held: set[str]) -> None:
        """Renew the leases of ``held`` keys (the application has their messages) when a
        third of the lease has passed; drop claims whose messages are gone."""
        now = self._clock()
        for key in list(self._claimed):
            if key not in held:
                continue
            if now - self._claimed[key] < self.lease / 3:
                continue
            try:
                if await self.store.renew(key, self.owner, self.lease):
                    self._claimed[key] = now
            except SeenSetError:
                continue  # the lease may lapse: a twin elsewhere is then delivered (at-least-once)

    async def done(self, key: str, outcome: Claim) -> None:
        """The application settled ``key`` (``COMPLETED`` or ``DEAD_LETTERED``)."""
        self._claimed.pop(key, None)
        try:
            await self.store.complete(key, self.owner, outcome, self.ttl)
        except SeenSetError as exc:
            _LOG.warning("geobus: recording %r as processed in the shared seen-set failed (%s)", key, exc)

    async def release(self, key: str) -> None:
        """The application abandoned ``key``'s message, or lost its lock."""
        self._claimed.pop(key, None)
        with contextlib.suppress(SeenSetError):  # if it fails, the lease runs out instead
            await self.store.release(key, self.owner)

    async def close(self) -> None:
        await self.store.close()
