"""What a ``Deduplicator`` tells its receiver to do: the vocabulary between decisions and I/O.

Actions for the application's copies (``Deliver``, ``Hold``, ``Settle``, ``Drop``,
``GiveBack``) and questions for the shared seen-set (``ClaimKey``, ``RecheckKey``,
``ReclaimKey``, ``RenewLease``, ``RecordOutcome``, ``ReleaseKey``), whose answers (``StoreAnswer``)
go back to ``Deduplicator.store_answered`` (or, when the receiver stopped waiting for
one, the question to ``store_given_up``). Plain values: equal when their fields
are (a ``Copy`` only to itself).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .dedup import Copy, Key, Outcome


# The shared seen-set's answers, defined here so that decisions never import storage:
# every store (``geobus._storage.seenset``) speaks this vocabulary.
class Claim(enum.Enum):
    """What ``SeenSet.claim`` found."""

    CLAIMED = "claimed"  # absent (or its lease had expired): now in flight, owned by the caller
    TAKEN = "taken"  # in flight with another owner whose lease is current
    COMPLETED = "completed"  # processed: a twin was completed
    DEAD_LETTERED = "dead_lettered"  # processed: a twin was dead-lettered
    DEFERRED = "deferred"  # a twin was deferred and is not received back yet: defer this copy too


class SeenSetError(Exception):
    """The store could not answer (Redis down, SQLite file locked too long...)."""

# Subclasses that add no field need no decorator of their own: they keep their base's frozen
# __init__, its __eq__ (equal only to the same class) and a __repr__ with their own name.


@dataclass(frozen=True)
class _AboutCopy:
    copy: Copy


@dataclass(frozen=True)
class _AboutKey:
    key: Key


# -- what the receiver does ----------------------------------------------------------------


@dataclass(frozen=True)
class Deliver(_AboutCopy):
    """Hand ``copy`` to the application (``key``: its duplicate key, None for none)."""

    key: Key | None


class Hold(_AboutCopy):
    """Keep ``copy`` locked and unsettled: it waits for its twin's outcome (``held_copies``)."""


@dataclass(frozen=True)
class Settle(_AboutCopy):
    """Settle ``copy``, a duplicate, as its twin was settled; it never reaches the application."""

    outcome: Outcome
    reason: str | None = None  # a dead-letter's, as the application gave them for the twin
    description: str | None = None


class Drop(_AboutCopy):
    """``copy`` is a duplicate already gone from its namespace (receive-and-delete): nothing to settle."""


class GiveBack(_AboutCopy):
    """Abandon ``copy``, fetched and never handed out, so it is available again at once (on close)."""


# -- what the shared seen-set is asked (its answer goes to ``store_answered``) ----------------


@dataclass(frozen=True)
class ClaimKey(_AboutKey):
    """``SeenSet.claim(key)``: may this process deliver ``copy``, the first it has of ``key``?"""

    copy: Copy


class RecheckKey(_AboutKey):
    """``SeenSet.claim(key)`` again: is ``key``, whose copy waits here, still in flight elsewhere?"""


@dataclass(frozen=True)
class ReclaimKey(_AboutKey):
    """``SeenSet.claim_deferred(key)``: may this process hand out the deferred copy of ``key`` it
    received back? ``first``: asked the first time (later ones are asked again while another
    worker has ``key`` in flight)."""

    first: bool = False


class RenewLease(_AboutKey):
    """``SeenSet.renew(key)``: this process still holds ``key``."""


@dataclass(frozen=True)
class RecordOutcome(_AboutKey):
    """``SeenSet.complete(key, outcome)``: the application settled ``key`` (``COMPLETED`` or
    ``DEAD_LETTERED``), or deferred it (``DEFERRED``)."""

    outcome: Claim


class ReleaseKey(_AboutKey):
    """``SeenSet.release(key)``: this process no longer holds ``key`` (abandoned, lock lost, given back)."""


StoreQuestion = ClaimKey | RecheckKey | ReclaimKey | RenewLease | RecordOutcome | ReleaseKey
StoreAnswer = Claim | bool | None | SeenSetError  # a claim's, a renewal's, nothing, or the failure
Action = Deliver | Hold | Settle | Drop | StoreQuestion
