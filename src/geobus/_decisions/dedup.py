"""Duplicate suppression for the receiver, without I/O: which copy the application sees.

Every message reaches the worker twice (once per namespace), sometimes more
(a send that timed out but landed). ``DuplicateTracker`` decides, per copy:

- key already processed → settle the copy silently, the way its twin was settled;
- key in flight (a twin is with the application) → hold the copy, locked, until
  the twin's outcome: twin completed → complete the copy; twin dead-lettered →
  dead-letter it; twin deferred → defer it; twin abandoned or its lock lost → the
  copy goes to the application;
- key deferred (a twin was deferred, and not received back yet) → defer the copy;
- otherwise → deliver it, and the key is in flight.

A deferred key is not processed: it waits for the application to receive a
deferred copy back (``taken_back``), which puts the key in flight again, with the
twins it fetched held, as for a copy received the ordinary way. If that copy is
abandoned or its lock runs out, it is deferred again on its namespace (as Service
Bus does with a deferred message), and so is the key here (``put_back``). Deferred
keys are bounded as processed ones are (``max_entries``, ``max_age``): a twin that
arrives after its key was forgotten is delivered.

A duplicate never costs a message: a copy is only settled after its twin was
settled by the application, and an in-flight key is never evicted. The set of
processed keys is bounded by count and age (``seen_keys.SeenKeys``, compact: ~120
bytes a uuid key), with an injected clock.

What a key *is* lives here too: ``key_of`` spells a message's key with its type,
once, and the tracker and every seen-set store keep that spelling as it is, so the
two always agree on what a duplicate is.

The tracker is one process's memory. The receiver does not ask it directly: its
``Deduplicator`` (``deduplicator.py``) asks it first and, for a key new to this
process, the fleet's shared seen-set next, and merges the two answers there.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NewType

from cachetools import TTLCache

from .seen_keys import SeenKeys

Key = NewType("Key", str)  # a message's duplicate key, spelt with its type by ``key_of``

# How each type a key can have is spelt: a one-letter tag, ":", the value. Exact types
# only (``type(value)``): bool is not int here, and True, 1 and 1.0 are three keys.
_SPELLINGS: dict[type, Callable[[Any], str]] = {
    str: lambda value: "s:" + value,
    int: lambda value: f"i:{value}",
    uuid.UUID: lambda value: f"u:{value}",
    bytes: lambda value: "b:" + value.hex(),
    float: lambda value: f"f:{value!r}",
    bool: lambda value: f"t:{value}",
}


def key_of(value: object) -> Key:
    """``value``'s duplicate key: the value spelt with its type, so that ``42``, ``"42"``,
    ``b"42"`` and ``UUID(int=42)`` are four different messages.

    The one spelling, read once per received copy and used as it is by the
    ``DuplicateTracker`` and by every seen-set store (memory, SQLite, Redis):
    ``s:42`` (str), ``i:42`` (int), ``u:00000000-0000-0000-0000-00000000002a``
    (UUID), ``b:3432`` (bytes, in hex), ``f:42.0`` (float), ``t:True`` (bool); any
    other value ``r:<type>:<repr>``. A plain ``str``, so it costs what the id does.

    What the SDK hands back decides the type: its pure-Python transport decodes an
    AMQP string and an AMQP binary alike (``message_id`` is "42" whether ``"42"`` or
    ``b"42"`` was sent), so those two cannot be told apart on receipt, while ``42``
    (ulong) and ``UUID`` ids come back with their type. Never raises: any value a
    message can carry has a key.
    """
    spell = _SPELLINGS.get(type(value))
    return Key(spell(value) if spell is not None else f"r:{type(value).__qualname__}:{value!r}")


class Verdict(enum.Enum):
    """What to do with one received copy."""

    DELIVER = "deliver"
    HOLD = "hold"
    COMPLETE = "complete"
    DEAD_LETTER = "dead_letter"
    DEFER = "defer"
    DROP = "drop"


class Outcome(enum.Enum):
    """How the application settled a key (and so, every other copy of it)."""

    COMPLETED = "completed"
    DEAD_LETTERED = "dead_lettered"
    DEFERRED = "deferred"  # not final: the key waits for its copy to be received back


@dataclass(eq=False)
class Copy:
    """One received copy. ``identity`` (namespace, sequence number) is the same when
    a namespace redelivers the same stored message; ``payload`` is the SDK message."""

    namespace: str
    sequence_number: int | None
    locked_until: float | None = None
    payload: Any = field(default=None, repr=False)

    @property
    def identity(self) -> tuple[str, int | None]:
        return (self.namespace, self.sequence_number)


@dataclass(eq=False)
class _InFlight:
    owner: Copy
    held: list[Copy] = field(default_factory=list)
    taken_back: bool = False  # the owner is a deferred copy received back


class DuplicateTracker:
    """The duplicate state machine of one receiver. Not thread-safe: one event loop owns it.

    Keys are ``key_of``'s spellings (the receiver reads each copy's once); None is no key.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self._processed = SeenKeys(max_entries, max_age, clock, common=Outcome.COMPLETED)
        self._in_flight: dict[Key, _InFlight] = {}
        self._deferred: TTLCache[Key, bool] = TTLCache(maxsize=max_entries, ttl=max_age, timer=clock)
        self._ever_deferred = False  # until a key is deferred, arrivals skip the lookup

    # -- arrivals --------------------------------------------------------------------

    def arrived(self, key: Key | None, copy: Copy, *, already_settled: bool = False) -> Verdict:
        """Decide what to do with ``copy``. ``already_settled`` is receive-and-delete mode,
        where a copy is gone from its namespace the moment it arrives."""
        if key is None:
            return Verdict.DELIVER  # nothing to compare: never risk a message
        if self._ever_deferred and key in self._deferred:  # a TTLCache lookup costs ~250 ns
            return Verdict.DEFER
        outcome = self._processed.get(key)
        if outcome is not None:
            if already_settled:
                return Verdict.DROP
            return Verdict.COMPLETE if outcome is Outcome.COMPLETED else Verdict.DEAD_LETTER
        if already_settled:
            self._processed.record(key, Outcome.COMPLETED)
            return Verdict.DELIVER
        flight = self._in_flight.get(key)
        if flight is None:
            self._in_flight[key] = _InFlight(copy)
            return Verdict.DELIVER
        if self._owner_lost(flight, copy):
            flight.owner = copy
            flight.taken_back = False
            return Verdict.DELIVER
        # A held copy that comes back was redelivered after its lock expired: keep the fresh one.
        flight.held = [h for h in flight.held if h.identity != copy.identity]
        flight.held.append(copy)
        return Verdict.HOLD

    def unmark(self, key: Key | None) -> None:
        """``key`` is not processed after all: the receive-and-delete copy ``arrived`` marked
        it for was not delivered (it goes back in line, to arrive again and be delivered then)."""
        if key is not None:
            self._processed.discard(key)

    def _owner_lost(self, flight: _InFlight, arriving: Copy) -> bool:
        owner = flight.owner
        if owner.identity == arriving.identity:
            return True  # the owner's own namespace redelivered it: its lock is gone
        if flight.taken_back:
            return False  # its lock running out defers it again (``lapsed``): the arriving twin waits
        return owner.locked_until is not None and owner.locked_until <= self.clock()

    # -- the application's outcomes ------------------------------------------------

    def settled(self, key: Key | None, outcome: Outcome) -> list[Copy]:
        """The application settled the copy of ``key`` it holds (or another worker did):
        ``key`` is processed; returns its held twins, to be settled the same way."""
        if key is None:
            return []
        flight = self._in_flight.pop(key, None)
        if outcome is Outcome.DEFERRED:
            self._deferred[key] = True
            self._ever_deferred = True
        else:
            if self._ever_deferred:
                self._deferred.pop(key, None)
            self._processed.record(key, outcome)
        return list(flight.held) if flight else []

    def taken_back(self, key: Key | None, owner: Copy, twins: list[Copy]) -> None:
        """The application received ``owner``, a deferred copy of ``key``, back (by sequence
        number), and ``twins``, its deferred twins fetched with it: ``key`` is in flight again,
        ``owner`` the application's (or waiting for the fleet's word), the twins held for its
        outcome. The caller checked that ``key`` is not processed (``outcome``)."""
        if key is None:
            return
        self._deferred.pop(key, None)
        flight = self._in_flight.get(key)
        held = [*twins, *(flight.held if flight else [])]
        self._in_flight[key] = _InFlight(owner, held, taken_back=True)

    def hold_too(self, key: Key, copies: list[Copy]) -> None:
        """``copies`` wait, held, for the outcome of ``key``'s copy in flight here."""
        self._in_flight[key].held.extend(copies)

    def put_back(self, key: Key | None, copy: Copy | None = None) -> list[Copy] | None:
        """``key``'s deferred copy received back went back to deferred on its namespace (abandoned,
        its lock lost; ``copy``, if given, must be that copy): ``key`` is deferred again. Returns
        its held twins, to be deferred as well; None when ``key`` has no such copy in flight here."""
        flight = self._in_flight.get(key) if key is not None else None
        if key is None or flight is None or not flight.taken_back:
            return None
        if copy is not None and flight.owner.identity != copy.identity:
            return None
        del self._in_flight[key]
        self._deferred[key] = True
        self._ever_deferred = True
        return list(flight.held)

    def lapsed(self) -> list[Key]:
        """Keys whose deferred copy received back lost its lock: deferred again on its namespace."""
        now = self.clock()
        return [
            key
            for key, flight in self._in_flight.items()
            if flight.taken_back and flight.owner.locked_until is not None and flight.owner.locked_until <= now
        ]

    def is_taken_back(self, key: Key | None) -> bool:
        flight = self._in_flight.get(key) if key is not None else None
        return flight is not None and flight.taken_back

    def outcome(self, key: Key | None) -> Outcome | None:
        """How ``key`` was settled for good here (completed, dead-lettered), if it was."""
        return self._processed.get(key) if key is not None else None

    def is_deferred(self, key: Key | None) -> bool:
        return key is not None and self._ever_deferred and key in self._deferred

    def completed(self, key: Key | None) -> list[tuple[Copy, Verdict]]:
        """``settled`` as completed: the held twins, each with its verdict (``COMPLETE``)."""
        return [(held, Verdict.COMPLETE) for held in self.settled(key, Outcome.COMPLETED)]

    def dead_lettered(self, key: Key | None) -> list[tuple[Copy, Verdict]]:
        """``settled`` as dead-lettered: the held twins, each with its verdict (``DEAD_LETTER``)."""
        return [(held, Verdict.DEAD_LETTER) for held in self.settled(key, Outcome.DEAD_LETTERED)]

    def deferred(self, key: Key | None) -> list[tuple[Copy, Verdict]]:
        """``settled`` as deferred: the held twins, each with its verdict (``DEFER``)."""
        return [(held, Verdict.DEFER) for held in self.settled(key, Outcome.DEFERRED)]

    def released(self, key: Key | None, copy: Copy) -> Copy | None:
        """The application abandoned ``copy`` or lost its lock.

        Returns the held twin that now goes to the application, if there is one;
        otherwise the key is forgotten, so a redelivery is processed.
        """
        if key is None:
            return None
        flight = self._in_flight.get(key)
        if flight is None or flight.owner.identity != copy.identity:
            return None
        if flight.held:
            flight.owner = flight.held.pop(0)
            return flight.owner
        del self._in_flight[key]
        return None

    def sweep(self) -> list[tuple[Key, Copy]]:
        """Promote held twins whose owner's lock has expired (not a deferred copy received back:
        ``lapsed``); returns the copies to deliver, with their keys."""
        now = self.clock()
        promoted = []
        for key, flight in self._in_flight.items():
            owner_until = flight.owner.locked_until
            if flight.taken_back:
                continue  # deferred again on its namespace, twins and all: ``lapsed``
            if flight.held and owner_until is not None and owner_until <= now:
                flight.owner = flight.held.pop(0)
                promoted.append((key, flight.owner))
        return promoted

    # -- inspection --------------------------------------------------------------------

    def held_copies(self) -> list[Copy]:
        return [copy for flight in self._in_flight.values() for copy in flight.held]

    @property
    def held(self) -> int:
        # list(): read from another thread (metrics), the dict may change meanwhile.
        return sum(len(flight.held) for flight in list(self._in_flight.values()))

    def is_in_flight(self, key: Key | None) -> bool:
        return key is not None and key in self._in_flight

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def processed(self) -> int:
        return len(self._processed)

    @property
    def evictions(self) -> int:
        """Processed keys dropped so far (read-only: ``expire`` brings aged ones in)."""
        return self._processed.evictions

    def expire(self) -> None:
        """Drop processed keys past ``max_age`` now (the tracker would on its next read or write)."""
        self._processed.expire()
