"""A receiver's side of a shared seen-set: claims, leases, and copies waiting on another worker.

The ``DedupReceiver`` decides within its own process with ``DuplicateTracker``;
when its configuration names a shared store (``[dedup] store``), a key new to
this process is first claimed in the store. ``SharedKeys`` turns the store's
answer into the tracker's vocabulary (``Verdict``), keeps the leases of the keys
this process holds, and asks again about copies whose key another worker has in
flight — they wait, locked, until that worker completes the key (the copy is
settled the same way) or dies (its lease runs out and this worker claims the key
and delivers the copy). Keys are the receiver's ``key_of`` spellings (the value
and its type), handed to the store as they are: the store and the receiver's own
tracker agree on what a duplicate is.

When the store fails, it is left alone for ``_STORE_BACKOFF`` seconds (a breaker:
a black-holed Redis must not cost every message its timeout), and the policy
applies at once: ``deliver`` new keys, or ``hold`` their copies. A completion the
store could not record is retried, and its lease kept, until it is recorded.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable

from .._config import DedupPolicy, StoreUnavailable
from .._decisions.dedup import Copy, Key, Verdict
from .._storage.seenset import Claim, SeenSet, SeenSetError

_LOG = logging.getLogger("geobus")
_STORE_BACKOFF = 5.0  # seconds the store is left alone after it failed

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
        self._claimed: dict[Key, float] = {}  # key -> when its lease was last taken or renewed
        self._waiting: dict[Key, Copy] = {}  # key -> the copy waiting on another owner
        self._unrecorded: dict[Key, Claim] = {}  # settled on the bus, not yet in the store
        self._down_until: float | None = None

    # -- the store's health -------------------------------------------------------------------

    @property
    def down(self) -> bool:
        return self._down_until is not None and self._clock() < self._down_until

    def _failed(self, exc: SeenSetError) -> None:
        if self._down_until is None:
            _LOG.warning(
                "geobus: the shared seen-set is unavailable (%s); new keys are %s until it is back",
                exc,
                "delivered (a twin may reach another worker)" if self.when_down is StoreUnavailable.DELIVER else "held",
            )
        self._down_until = self._clock() + _STORE_BACKOFF

    def _answered(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            _LOG.info("geobus: the shared seen-set answers again")

    async def _claim(self, key: Key) -> Claim | None:
        """The store's answer, or None when it is (or just went) unavailable."""
        if self.down:
            return None
        try:
            claim = await self.store.claim(key, self.owner, self.lease)
        except SeenSetError as exc:
            self._failed(exc)
            return None
        self._answered()
        return claim

    # -- arrivals ---------------------------------------------------------------------------

    async def admit(self, key: Key, copy: Copy, *, already_settled: bool) -> Verdict:
        """What to do with the first local copy of ``key``; ``HOLD`` means it waits here."""
        claim = await self._claim(key)
        if already_settled:  # receive-and-delete: the copy is already gone from its namespace
            if claim is None or claim is Claim.CLAIMED:  # never drop the only copy on a guess
                await self.done(key, Claim.COMPLETED)
                return Verdict.DELIVER
            return Verdict.DROP
        if claim is None:
            claim = Claim.CLAIMED if self.when_down is StoreUnavailable.DELIVER else Claim.TAKEN
        if claim is Claim.CLAIMED:
            self._claimed[key] = self._clock()
        elif claim is Claim.TAKEN:
            self._waiting[key] = copy
        return _VERDICTS[claim]

    async def recheck(self) -> list[tuple[Key, Copy, Verdict]]:
        """Ask again about the waiting copies; returns those that are no longer waiting.
        Stops at the first failure: the rest wait for the store to be back."""
        resolved = []
        for key, copy in list(self._waiting.items()):
            claim = await self._claim(key)
            if claim is None:
                break  # still waiting: a held copy is never delivered on a guess
            if claim is Claim.TAKEN:
                continue
            if claim is Claim.CLAIMED:
                self._claimed[key] = self._clock()
            resolved.append((key, copy, _VERDICTS[claim]))
        # Only now, with no await left: a recheck cancelled half-way (close) leaves every
        # copy in _waiting, to be given back, and its claims in _claimed, to be released.
        for key, _, _ in resolved:
            del self._waiting[key]
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

    async def renew(self, held: set[Key]) -> None:
        """Keep what this process holds: renew the leases of ``held`` keys (their copies are
        with the application, or ready for it, with a live lock) a third of the way into the
        lease; retry completions the store missed; let go of claims no longer held."""
        for key in [k for k in self._claimed if k not in held and k not in self._unrecorded]:
            await self.release(key)  # its copy's lock ran out unsettled: the lock is lost
        for key, outcome in list(self._unrecorded.items()):
            if self.down:
                return
            await self.done(key, outcome)
        now = self._clock()
        for key in list(self._claimed):
            if self.down:
                return
            if now - self._claimed[key] < self.lease / 3:
                continue
            try:
                if await self.store.renew(key, self.owner, self.lease):
                    self._claimed[key] = now
            except SeenSetError as exc:
                self._failed(exc)  # the lease may lapse: a twin elsewhere is then delivered

    async def done(self, key: Key, outcome: Claim) -> None:
        """The application settled ``key`` (``COMPLETED`` or ``DEAD_LETTERED``). If the store
        cannot record it now, the lease is kept and the write retried (``renew``)."""
        try:
            if self.down:
                raise SeenSetError("left alone after a failure")
            await self.store.complete(key, self.owner, outcome, self.ttl)
        except SeenSetError as exc:
            if key not in self._unrecorded and not self.down:
                _LOG.warning("geobus: recording %r as processed in the shared seen-set failed (%s); retrying", key, exc)
            if not self.down:
                self._failed(exc)
            self._unrecorded[key] = outcome
            self._claimed.setdefault(key, self._clock())
            return
        self._unrecorded.pop(key, None)
        self._claimed.pop(key, None)

    async def release(self, key: Key) -> None:
        """This process no longer holds ``key`` (abandoned, lock lost, given back)."""
        self._claimed.pop(key, None)
        if self.down:
            return  # the lease runs out instead
        try:
            await self.store.release(key, self.owner)
        except SeenSetError as exc:
            self._failed(exc)

    @property
    def claimed(self) -> set[Key]:
        return set(self._claimed)

    async def close(self) -> None:
        await self.store.close()
