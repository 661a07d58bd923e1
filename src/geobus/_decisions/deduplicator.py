"""The receiver's duplicate decisions in one place, without I/O: told what happened, it says what to do.

A ``DedupReceiver`` tells its ``Deduplicator`` every event that bears on a
duplicate — a copy arrived, the application settled or let go of one, time
passed, the shared seen-set answered, the receiver is closing — and carries out
the actions it gets back (``actions.py``), in order:

- for the application: ``Deliver`` a copy, ``Hold`` it (locked, until its twin's
  outcome), ``Settle`` a duplicate as its twin was settled, ``Drop`` one already
  gone (receive-and-delete), ``GiveBack`` one on close;
- for the shared seen-set (``[dedup] store``): the questions of ``actions.py``,
  whose answers (or ``SeenSetError``) go to ``store_answered``; one it stopped
  waiting for (cancelled) goes to ``store_given_up``.

Two memories meet here: the process's own ``DuplicateTracker`` (``dedup.py``)
decides first; a key new to this process is then claimed in the shared store.
This object keeps the fleet's side: keys claimed here and when their leases were
last taken, copies waiting on another worker (asked about again until that
worker settles the key, or its lease runs out), completions the store has not
recorded yet, and the store's breaker (``breaker.py``). Deferred keys and
deferred copies received back: ``deferred_keys.py``.

Methods that may ask the store several questions in a row (``sweep``, ``recheck``,
``keep_leases``, ``let_go``) return them lazily, as an iterator: each is decided
when the receiver comes to it, after the answer to the one before, so a store
that fails half-way is not asked the rest. The receiver must run them to the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator

from cachetools import TTLCache

from .._config import DedupPolicy, StoreUnavailable
from .actions import (
    Action,
    Claim,
    ClaimKey,
    Deliver,
    Drop,
    GiveBack,
    Hold,
    RecheckKey,
    ReclaimKey,
    RecordOutcome,
    ReleaseKey,
    RenewLease,
    SeenSetError,
    Settle,
    StoreAnswer,
    StoreQuestion,
)
from .breaker import StoreBreaker
from .dedup import Copy, DuplicateTracker, Key, Outcome, Verdict
from .deferred_keys import DeferredKeys

_LOG = logging.getLogger("geobus")

_OUTCOME_OF = {
    Claim.COMPLETED: Outcome.COMPLETED,
    Claim.DEAD_LETTERED: Outcome.DEAD_LETTERED,
    Claim.DEFERRED: Outcome.DEFERRED,
}
_CLAIM_OF = {outcome: claim for claim, outcome in _OUTCOME_OF.items()}
_SETTLED_AS = {
    Verdict.COMPLETE: Outcome.COMPLETED,
    Verdict.DEAD_LETTER: Outcome.DEAD_LETTERED,
    Verdict.DEFER: Outcome.DEFERRED,
}


class Deduplicator(DeferredKeys):
    """Which copy the application sees, within this process and across a fleet. No I/O.

    ``shared``: a shared seen-set is asked about keys new to this process;
    ``defers_shared``: it records deferred keys too (``claim_deferred``).
    ``already_settled``: receive-and-delete, where a copy is gone from its namespace
    the moment it arrives. ``clock``: the receiver's (``time.time``-shaped: lock
    times are wall-clock). Keys are ``key_of``'s spellings; None is no key (such a
    copy is always delivered).

    Not thread-safe: one event loop owns it; ``held``, ``in_flight``, ``evictions`` may be read from another thread.
    """

    def __init__(
        self,
        policy: DedupPolicy,
        *,
        shared: bool = False,
        defers_shared: bool = True,
        already_settled: bool = False,
        clock: Callable[[], float] = time.time,
        store_backoff: float = 5.0,
    ) -> None:
        self._clock = clock
        self._local = DuplicateTracker(max_entries=policy.max_entries, max_age=policy.max_age, clock=clock)
        self._shared = shared
        self._defers_shared = defers_shared
        self._already_settled = already_settled
        self._lease = policy.lease
        self._when_down = policy.store_unavailable
        self._breaker = StoreBreaker(clock, store_backoff, policy.store_unavailable)
        self._claimed: dict[Key, float] = {}  # key -> when its lease was last taken or renewed
        self._waiting: dict[Key, Copy] = {}  # key -> the copy waiting on another worker
        self._reclaiming: set[Key] = set()  # waiting keys whose copy is a deferred one received back
        self._unrecorded: dict[Key, Claim] = {}  # settled on the bus, not yet in the store
        # A dead-letter's reason and description, for twins that arrive after it was settled.
        self._dead_letter_info: TTLCache[Key, tuple[str | None, str | None]] = TTLCache(
            maxsize=policy.max_entries, ttl=policy.max_age, timer=clock
        )

    # -- arrivals ------------------------------------------------------------------------------

    def arrived(self, key: Key | None, copy: Copy) -> list[Action]:
        """A copy arrived from its namespace."""
        verdict = self._local.arrived(key, copy, already_settled=self._already_settled)
        if verdict is Verdict.DELIVER and key is not None and self._shared:
            return self._admit(key, copy)  # new to this process: the fleet may have it in flight, or processed
        if verdict is Verdict.DELIVER:
            return [Deliver(copy, key)]
        if verdict is Verdict.HOLD:
            return [Hold(copy)]
        if verdict is Verdict.DROP:
            return [Drop(copy)]
        if verdict is Verdict.DEAD_LETTER and key is not None:
            reason, description = self._dead_letter_info.get(key, (None, None))
            return [Settle(copy, Outcome.DEAD_LETTERED, reason, description)]
        return [Settle(copy, _SETTLED_AS[verdict])]

    def _admit(self, key: Key, copy: Copy) -> list[Action]:
        if self.store_down:
            return self._claim_answered(key, copy, None)
        return [ClaimKey(key, copy)]

    def _claim_answered(self, key: Key, copy: Copy, claim: Claim | None) -> list[Action]:
        """What the store's answer about a copy new to this process means (None: it gave none)."""
        if self._already_settled:
            if claim is None or claim is Claim.CLAIMED:  # never drop the only copy on a guess
                return [Deliver(copy, key), *self._record(key, Claim.COMPLETED)]
            return [Drop(copy)]
        if claim is None:
            claim = Claim.CLAIMED if self._when_down is StoreUnavailable.DELIVER else Claim.TAKEN
        if claim is Claim.TAKEN:
            self._waiting[key] = copy
            return [Hold(copy)]
        # A copy that waited here before this one was promoted has lost its lock: no longer waited on.
        self._waiting.pop(key, None)
        if claim is Claim.CLAIMED:
            self._claimed[key] = self._clock()
            return [Deliver(copy, key)]
        return self._processed_elsewhere(key, copy, _OUTCOME_OF[claim])

    def _processed_elsewhere(self, key: Key, copy: Copy, outcome: Outcome) -> list[Action]:
        """Another worker settled ``key``: this copy, and any twin held here, the same way."""
        twins = self._local.settled(key, outcome)
        return [*(Settle(twin, outcome) for twin in twins), Settle(copy, outcome)]

    # -- the application's settlements -----------------------------------------------------------

    def completed(self, key: Key | None) -> list[Action]:
        """The application completed the copy of ``key`` it was handed: so are its held twins."""
        return self._settled(key, Outcome.COMPLETED)

    def dead_lettered(
        self, key: Key | None, *, reason: str | None = None, description: str | None = None
    ) -> list[Action]:
        """The application dead-lettered the copy of ``key`` it was handed: so are its held twins."""
        return self._settled(key, Outcome.DEAD_LETTERED, reason, description)

    def _settled(
        self, key: Key | None, outcome: Outcome, reason: str | None = None, description: str | None = None
    ) -> list[Action]:
        if outcome is Outcome.DEAD_LETTERED and key is not None and (reason or description):
            self._dead_letter_info[key] = (reason, description)
        actions: list[Action] = [
            Settle(twin, outcome, reason, description) for twin in self._local.settled(key, outcome)
        ]
        if self._shared and key is not None:
            actions += self._record(key, _CLAIM_OF[outcome])
        return actions

    def released(self, key: Key | None, copy: Copy) -> list[Action]:
        """The application abandoned ``copy``, or settling it failed (lock lost, namespace gone):
        it was not processed, so its twin, or the redelivery, must be. A deferred copy received
        back goes back to deferred instead, and its key with it (``deferred_keys.py``)."""
        back = self._put_back(key, copy) if key is not None else None
        if back is not None:
            return back
        twin = self._local.released(key, copy)
        if twin is not None:
            return [Deliver(twin, key)]  # this process keeps the key: the twin goes to the application
        if self._shared and key is not None and not self._local.is_in_flight(key):
            return self._release(key)  # the key left this process: free it for the fleet
        return []

    # -- as time passes ---------------------------------------------------------------------------

    def sweep(self) -> Iterator[Action]:
        """Held twins whose owner's lock ran out go to the application — with a shared store, once
        it is asked again (the owner may have been waiting on another worker). A deferred copy
        received back whose lock ran out is deferred again, with its twins. Lazy."""
        for key in self._local.lapsed():
            yield from self._put_back(key) or []
        for key, copy in self._local.sweep():
            if self._shared:
                yield from self._admit(key, copy)
            else:
                yield Deliver(copy, key)

    def recheck(self) -> Iterator[Action]:
        """Ask again about the copies waiting on another worker, while the store answers: a
        waiting copy is never delivered on a guess. Lazy."""
        for key in list(self._waiting):
            if self.store_down:
                return
            if key in self._waiting:
                yield ReclaimKey(key) if key in self._reclaiming else RecheckKey(key)

    def _rechecked(self, key: Key, claim: Claim) -> list[Action]:
        if claim is Claim.TAKEN:
            return []
        if claim is Claim.CLAIMED:
            self._claimed[key] = self._clock()  # the other worker died: its lease ran out
        copy = self._waiting.pop(key, None)
        self._reclaiming.discard(key)
        if copy is None:
            return []  # it stopped waiting meanwhile (a twin promoted here was answered first)
        if claim is Claim.CLAIMED:
            return [Deliver(copy, key)]
        return self._processed_elsewhere(key, copy, _OUTCOME_OF[claim])

    def keep_leases(self, held: Collection[Key]) -> Iterator[Action]:
        """Keep what this process holds: ``held`` keys' copies are with the application, or ready
        for it, under a live lock. Claims no longer held are released, completions the store
        missed are retried, leases renewed a third of the way in. Lazy."""
        for key in [k for k in self._claimed if k not in held and k not in self._unrecorded]:
            # Its copy's lock ran out unsettled: the lock is lost (a deferred one is deferred again).
            yield from self._put_back(key) or self._release(key)
        for key, outcome in list(self._unrecorded.items()):
            if self.store_down:
                return
            yield RecordOutcome(key, outcome)
        for key in list(self._claimed):
            if self.store_down:
                return
            since = self._claimed.get(key)
            if since is not None and self._clock() - since >= self._lease / 3:
                yield RenewLease(key)

    def expire(self) -> None:
        """Forget processed keys past ``max_age`` now (otherwise on the next write)."""
        self._local.expire()

    # -- the store ---------------------------------------------------------------------------------

    def store_answered(self, question: StoreQuestion, answer: StoreAnswer) -> list[Action]:
        """The store's answer to ``question``: the claim, the renewal's result, None (done), or the
        ``SeenSetError`` it raised."""
        if isinstance(answer, SeenSetError):
            return self._unanswered(question, answer)
        self._breaker.answered()
        if isinstance(question, ClaimKey):
            assert isinstance(answer, Claim)
            return self._claim_answered(question.key, question.copy, answer)
        if isinstance(question, RecheckKey):
            assert isinstance(answer, Claim)
            return self._rechecked(question.key, answer)
        if isinstance(question, ReclaimKey):
            assert isinstance(answer, Claim)
            return self._reclaim_answered(question.key, answer, first=question.first)
        if isinstance(question, RenewLease):
            if answer is True and question.key in self._claimed:
                self._claimed[question.key] = self._clock()
        elif isinstance(question, RecordOutcome):
            self._unrecorded.pop(question.key, None)
            self._claimed.pop(question.key, None)
        return []

    def store_given_up(self, question: StoreQuestion) -> None:
        """The receiver stopped waiting for ``question``'s answer (cancelled); the store may have acted.

        A ``ClaimKey``'s copy goes back in line and arrives again: in receive-and-delete mode
        its processed mark is undone (or it would come back as its own duplicate and be lost);
        in peek-lock mode it is its own redelivery, still the key's owner here, asked about
        again. A ``RecordOutcome`` is retried. Anything else is asked again, or left to the lease.
        """
        if isinstance(question, ClaimKey) and self._already_settled:
            self._local.unmark(question.key)
        elif isinstance(question, RecordOutcome):
            self._keep_unrecorded(question.key, question.outcome)

    def _unanswered(self, question: StoreQuestion, error: SeenSetError) -> list[Action]:
        if isinstance(question, RecordOutcome):
            if not self.store_down:
                if question.key not in self._unrecorded:
                    _LOG.warning(
                        "geobus: recording %r as processed in the shared seen-set failed (%s); retrying",
                        question.key,
                        error,
                    )
                self._breaker.failed(error)
            self._keep_unrecorded(question.key, question.outcome)
            return []
        self._breaker.failed(error)
        if isinstance(question, ClaimKey):
            return self._claim_answered(question.key, question.copy, None)
        if isinstance(question, ReclaimKey):
            return self._reclaim_answered(question.key, None, first=question.first)
        # A recheck waits for the store; a lease may lapse (a twin elsewhere is then
        # delivered); a release is left to the lease.
        return []

    def _record(self, key: Key, outcome: Claim) -> list[Action]:
        if self.store_down:
            self._keep_unrecorded(key, outcome)
            return []
        return [RecordOutcome(key, outcome)]

    def _keep_unrecorded(self, key: Key, outcome: Claim) -> None:
        """Retried by ``keep_leases`` until recorded; the lease is kept meanwhile, so the key is not free."""
        self._unrecorded[key] = outcome
        self._claimed.setdefault(key, self._clock())

    def _release(self, key: Key) -> list[Action]:
        self._claimed.pop(key, None)
        if self.store_down:
            return []  # the lease runs out instead
        return [ReleaseKey(key)]

    @property
    def store_down(self) -> bool:
        """The store failed less than ``store_backoff`` seconds ago, and is left alone."""
        return self._breaker.down

    # -- closing -------------------------------------------------------------------------------------

    def closing(
        self, ready: Iterable[Copy], unread: Iterable[tuple[Key | None, Copy]]
    ) -> list[GiveBack | Settle]:
        """The receiver is closing: what becomes of copies fetched and never handed out — ``ready``
        ones, those waiting on another worker, ``unread`` ones never looked at.

        A late twin of a completed key is completed (it spares the next receiver a
        duplicate); a copy nobody here has seen, or ready or waiting, is given back; one
        whose twin the application still holds is left locked (another worker could
        process it while the handler runs), as is a twin of a dead-lettered key. Nothing
        in receive-and-delete mode.
        """
        if self._already_settled:
            return []
        actions: list[GiveBack | Settle] = [GiveBack(copy) for copy in ready]
        actions += [GiveBack(copy) for copy in self._waiting.values()]
        self._waiting.clear()
        self._reclaiming.clear()
        for key, copy in unread:
            verdict = self._local.arrived(key, copy)
            if verdict is Verdict.COMPLETE:
                actions.append(Settle(copy, Outcome.COMPLETED))
            elif verdict is Verdict.DEFER:
                actions.append(Settle(copy, Outcome.DEFERRED))  # a late twin of a deferred key
            elif verdict is Verdict.DELIVER:
                actions.append(GiveBack(copy))
        return actions

    def let_go(self) -> Iterator[Action]:
        """Release every key still claimed here (given back, never settled): free for the fleet; one
        received back from deferral is recorded deferred again (so its copy will be). Lazy."""
        for key in list(self._claimed):
            yield from self._deferred_in_store(key) if self._local.is_taken_back(key) else self._release(key)

    # -- inspection ----------------------------------------------------------------------------------

    def twins_held(self) -> list[Copy]:
        """Twins held here for the outcome of their copy in this process (not copies waiting on another worker)."""
        return self._local.held_copies()

    def held_copies(self) -> list[Copy]:
        """Copies kept locked here: twins held for their owner's outcome, copies waiting on another worker."""
        return [*self._local.held_copies(), *self._waiting.values()]

    @property
    def held(self) -> int:
        return self._local.held + len(self._waiting)

    @property
    def in_flight(self) -> int:
        return self._local.in_flight - len(self._waiting)  # a waiting copy is the tracker's owner

    @property
    def evictions(self) -> int:
        """Processed keys this process forgot (by count or age); the store counts its own."""
        return self._local.evictions

    def is_processed(self, key: Key | None) -> bool:
        """``key`` was completed or dead-lettered (here, or by the fleet as far as this process heard)."""
        return self._local.outcome(key) is not None

    @property
    def claimed(self) -> set[Key]:
        return set(self._claimed)

    @property
    def waiting(self) -> int:
        return len(self._waiting)
