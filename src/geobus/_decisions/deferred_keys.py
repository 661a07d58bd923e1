"""The ``Deduplicator``'s decisions about deferred messages, without I/O (a mixin of ``Deduplicator``).

A deferred message has a copy in each namespace, and, in a fleet, its twin may
reach any worker. The rules, for one receiver and across a shared seen-set:

- deferring a copy defers its held twins, and every twin that arrives before a
  deferred copy is received back; the shared seen-set records the key
  ``DEFERRED`` (for the dedup window, ``max_age``), so a twin that reaches
  another worker is deferred there too, never delivered;
- receiving a deferred copy back (``taken_back``) asks first: a key already
  completed or dead-lettered (here, or in the fleet's store) has the copies
  fetched settled the same way, and none is handed out; a key another worker has
  in flight has them wait, held, as an arriving copy would (asked about again
  until that worker settles the key or its lease runs out); otherwise the key is
  claimed here again (``claim_deferred``) and one copy goes to the application,
  its twins held and settled as it is;
- a copy received back that is abandoned, or whose lock runs out, is deferred
  again by its namespace (Service Bus does so): its held twins are deferred too,
  and the key is ``DEFERRED`` again, here and in the store.

A store without ``claim_deferred`` (one of the application's own) is not told of
deferrals: the key is released there (a twin that reaches another worker is
delivered by it), and a copy received back is claimed with ``claim``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._config import StoreUnavailable
from .actions import Action, Claim, Deliver, Drop, Hold, ReclaimKey, Settle
from .dedup import Copy, DuplicateTracker, Key, Outcome, Verdict

if TYPE_CHECKING:
    from cachetools import TTLCache


class DeferredKeys:
    """``Deduplicator.deferred``, ``taken_back`` and what follows from them (see the module)."""

    # Supplied by Deduplicator.
    _local: DuplicateTracker
    _shared: bool
    _defers_shared: bool
    _already_settled: bool
    _when_down: StoreUnavailable
    _clock: Callable[[], float]
    _claimed: dict[Key, float]
    _waiting: dict[Key, Copy]
    _reclaiming: set[Key]
    _unrecorded: dict[Key, Claim]
    _dead_letter_info: TTLCache[Key, tuple[str | None, str | None]]

    if TYPE_CHECKING:

        def _record(self, key: Key, outcome: Claim) -> list[Action]: ...
        def _release(self, key: Key) -> list[Action]: ...
        def _rechecked(self, key: Key, claim: Claim) -> list[Action]: ...
        @property
        def store_down(self) -> bool: ...

    def deferred(self, key: Key | None) -> list[Action]:
        """The application deferred the copy of ``key`` it was handed: so are its held twins, and so
        is every twin that arrives before a deferred copy is received back (``taken_back``); with a
        shared seen-set, at every worker of the fleet (the key is recorded ``DEFERRED`` there)."""
        twins = self._local.settled(key, Outcome.DEFERRED)
        return [*(Settle(twin, Outcome.DEFERRED) for twin in twins), *self._deferred_in_store(key)]

    def _deferred_in_store(self, key: Key | None) -> list[Action]:
        if not self._shared or key is None:
            return []
        self._reclaiming.discard(key)
        if self._defers_shared:
            return self._record(key, Claim.DEFERRED)
        return self._release(key)

    def taken_back(self, key: Key | None, owner: Copy, twins: list[Copy]) -> list[Action]:
        """The application received ``owner``, a deferred copy, back by its sequence number, with
        ``twins`` (its deferred twins, fetched alongside). A ``Deliver`` of ``owner``, now or once
        the store answered, hands it to the application; the twins are held and settled as it is.

        A key processed here already has ``owner`` and the twins settled as it was, none handed
        out; so does one the store answers processed. One another worker has in flight waits
        (``owner`` held, asked about again). In receive-and-delete mode the copies are gone from
        their namespaces already: the twins are dropped, and ``owner`` too if its key was processed.
        """
        if key is None:
            return [Deliver(owner, None)]  # nothing to compare: never risk a message
        if self._already_settled:
            return self._taken_back_deleted(key, owner, twins)
        done = self._local.outcome(key)
        if done is not None:
            reason, description = self._dead_letter_info.get(key, (None, None))
            if done is not Outcome.DEAD_LETTERED:
                reason = description = None
            return [Settle(copy, done, reason, description) for copy in (owner, *twins)]
        actions: list[Action] = []
        if key in self._local.lapsed():
            actions += self._deferred_again(key, self._local.put_back(key) or [])
        if self._local.is_in_flight(key):
            self._local.hold_too(key, [owner, *twins])  # another copy of it is here: they wait for its outcome
            return [*actions, Hold(owner), *(Hold(twin) for twin in twins)]
        self._local.taken_back(key, owner, twins)
        if self._unrecorded.get(key) is Claim.DEFERRED:
            del self._unrecorded[key]  # not to be recorded after this claim: the key is taken back
        actions += [Hold(twin) for twin in twins]
        if not self._shared:
            return [*actions, Deliver(owner, key)]
        self._waiting[key] = owner
        self._reclaiming.add(key)
        if self.store_down:
            return [*actions, *self._reclaim_answered(key, None, first=True)]
        return [*actions, ReclaimKey(key, first=True)]

    def _taken_back_deleted(self, key: Key, owner: Copy, twins: list[Copy]) -> list[Action]:
        drops: list[Action] = [Drop(twin) for twin in twins]
        if self._local.arrived(key, owner, already_settled=True) is not Verdict.DELIVER:
            return [*drops, Drop(owner)]  # processed already: gone, as a late twin is
        if not self._shared:
            return [*drops, Deliver(owner, key)]
        self._waiting[key] = owner
        self._reclaiming.add(key)
        if self.store_down:
            return [*drops, *self._reclaim_answered(key, None, first=True)]
        return [*drops, ReclaimKey(key, first=True)]

    def _reclaim_answered(self, key: Key, claim: Claim | None, *, first: bool) -> list[Action]:
        """The store's answer about a deferred copy received back (None: it gave none)."""
        if self._already_settled:
            self._reclaiming.discard(key)
            copy = self._waiting.pop(key, None)
            if copy is None:
                return []
            if claim is None or claim is Claim.CLAIMED:  # never drop the only copy on a guess
                return [Deliver(copy, key), *self._record(key, Claim.COMPLETED)]
            return [Drop(copy)]
        if claim is None:
            if not first or self._when_down is not StoreUnavailable.DELIVER:
                return []  # it waits, held, and is asked about again once the store answers
            claim = Claim.CLAIMED
        return self._rechecked(key, claim)

    def _deferred_again(self, key: Key, twins: list[Copy]) -> list[Action]:
        """``key``'s copy received back was deferred again by its namespace: so are ``twins``, and so
        is the key in the store — unless that copy was still waiting on another worker, whose
        claim the store keeps."""
        waited = self._waiting.pop(key, None) is not None
        self._reclaiming.discard(key)
        deferred: list[Action] = [Settle(twin, Outcome.DEFERRED) for twin in twins]
        return deferred if waited else [*deferred, *self._deferred_in_store(key)]

    def _put_back(self, key: Key, copy: Copy | None = None) -> list[Action] | None:
        """``_deferred_again`` if ``key``'s copy in flight here (``copy``, if given) was received
        back; None otherwise."""
        twins = self._local.put_back(key, copy)
        return None if twins is None else self._deferred_again(key, twins)
