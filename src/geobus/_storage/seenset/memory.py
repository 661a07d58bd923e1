"""The ``memory`` seen-set: one process, and the contract's reference.

In-flight keys and processed keys live in two dicts. Processed keys are kept in
the order they were recorded, so the oldest go first once there are more than
``max_entries``; in-flight keys are never evicted, only forgotten when their
lease has run out. A deferred key is in flight with no owner (``DEFERRED_OWNER``),
for its ttl. Expired entries are dropped when a call meets them, and by a
sweep every so many writes (proportional to the size, so O(1) per write).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ..._decisions.dedup import Key
from . import Claim
from .factory import DEFERRED_OWNER, check_key, check_max_entries, check_outcome, check_seconds

_SWEEP_EVERY = 1024  # writes between sweeps, at least; as many as the entries left by the last one


class _Lease(NamedTuple):
    owner: str
    expires_at: float


class _Processed(NamedTuple):
    outcome: Claim
    expires_at: float


class MemorySeenSet:
    """A ``SeenSet`` in this process's memory, with an injected clock (default ``time.monotonic``).

    Several receivers on one event loop may share it (a fleet simulated in one
    process). Not thread-safe: one event loop owns it. No method raises
    ``SeenSetError``; bad arguments raise ``ValueError``.
    """

    def __init__(self, *, max_entries: int, clock: Callable[[], float] | None = None) -> None:
        self.max_entries = check_max_entries(max_entries)
        self.clock = clock or time.monotonic
        self.evictions = 0  # processed keys dropped for room before their ttl ran out
        self._in_flight: dict[str, _Lease] = {}
        self._processed: OrderedDict[str, _Processed] = OrderedDict()
        self._writes = 0
        self._sweep_after = _SWEEP_EVERY

    def __repr__(self) -> str:
        return (f"MemorySeenSet(max_entries={self.max_entries}, in_flight={len(self._in_flight)}, "
                f"processed={len(self._processed)})")

    async def claim(self, key: Key, owner: str, lease: float) -> Claim:
        """See ``SeenSet.claim``."""
        check_key(key, owner)
        return self._claim(key, owner, check_seconds("lease", lease), self.clock())

    async def claim_many(self, keys: Sequence[Key], owner: str, lease: float) -> list[Claim]:
        """See ``BatchSeenSet.claim_many``."""
        for key in keys:
            check_key(key, owner)
        lease = check_seconds("lease", lease)
        now = self.clock()
        return [self._claim(key, owner, lease, now) for key in keys]

    async def claim_deferred(self, key: Key, owner: str, lease: float) -> Claim:
        """See ``DeferringSeenSet.claim_deferred``."""
        check_key(key, owner)
        lease = check_seconds("lease", lease)
        held = self._in_flight.get(key)
        if held is not None and held.owner == DEFERRED_OWNER:
            del self._in_flight[key]
        return await self.claim(key, owner, lease)

    async def renew(self, key: Key, owner: str, lease: float) -> bool:
        """See ``SeenSet.renew``; False too once the lease has run out, even if nobody took the key."""
        check_key(key, owner)
        lease = check_seconds("lease", lease)
        now = self.clock()
        held = self._in_flight.get(key)
        if held is None or held.owner != owner or held.expires_at <= now:
            return False
        self._in_flight[key] = _Lease(owner, now + lease)
        return True

    async def complete(self, key: Key, owner: str, outcome: Claim, ttl: float) -> None:
        """See ``SeenSet.complete``."""
        check_key(key, owner)
        self._complete(key, check_outcome(outcome), check_seconds("ttl", ttl), self.clock())

    async def complete_many(self, outcomes: Sequence[tuple[Key, Claim]], owner: str, ttl: float) -> None:
        """See ``BatchSeenSet.complete_many``."""
        for key, outcome in outcomes:
            check_key(key, owner)
            check_outcome(outcome)
        ttl = check_seconds("ttl", ttl)
        now = self.clock()
        for key, outcome in outcomes:
            self._complete(key, outcome, ttl, now)

    async def release(self, key: Key, owner: str) -> None:
        """See ``SeenSet.release``."""
        check_key(key, owner)
        held = self._in_flight.get(key)
        if held is not None and held.owner == owner:
            del self._in_flight[key]

    async def close(self) -> None:
        """Nothing to close; the state stays readable (a shared instance outlives one receiver)."""

    def _claim(self, key: str, owner: str, lease: float, now: float) -> Claim:
        done = self._processed.get(key)
        if done is not None:
            if done.expires_at > now:
                return done.outcome
            del self._processed[key]
        held = self._in_flight.get(key)
        if held is not None and held.owner != owner and held.expires_at > now:
            return Claim.DEFERRED if held.owner == DEFERRED_OWNER else Claim.TAKEN
        self._in_flight[key] = _Lease(owner, now + lease)
        self._wrote(now)
        return Claim.CLAIMED

    def _complete(self, key: str, outcome: Claim, ttl: float, now: float) -> None:
        self._in_flight.pop(key, None)
        self._processed.pop(key, None)  # recorded again: the newest now
        if outcome is Claim.DEFERRED:
            self._in_flight[key] = _Lease(DEFERRED_OWNER, now + ttl)
            self._wrote(now)
            return
        self._processed[key] = _Processed(outcome, now + ttl)
        while len(self._processed) > self.max_entries:
            _, dropped = self._processed.popitem(last=False)
            if dropped.expires_at > now:
                self.evictions += 1
        self._wrote(now)

    def _wrote(self, now: float) -> None:
        self._writes += 1
        if self._writes < self._sweep_after:
            return
        for key in [k for k, v in self._in_flight.items() if v.expires_at <= now]:
            del self._in_flight[key]
        for key in [k for k, v in self._processed.items() if v.expires_at <= now]:
            del self._processed[key]
        # As many writes to the next sweep as entries it would look at: O(1) per write.
        self._writes = 0
        self._sweep_after = max(_SWEEP_EVERY, len(self._in_flight) + len(self._processed))
