"""Deferred messages over two namespaces, without I/O: what each region's sequence number is.

A deferred message is received back by its sequence number, and sequence numbers
are per namespace: the copy the application deferred has one in its namespace,
its twin another in the other. ``Deferrals`` remembers both for every key this
receiver deferred (the twin's once it is seen: held at the deferral, or arriving
later and deferred then). A deferral kept across processes is named by a
``DeferralHandle``, whose string form is::

    geobus:primary=12;secondary=9

(``geobus:``, then ``namespace=sequence number`` pairs joined by ``;``, in any order;
a namespace whose copy was never seen is left out). ``parse_handle`` reads it back.

A receiver remembers at most ``MAX_DEFERRALS`` deferrals: past that, the oldest is
forgotten (its handle still works; its int is then asked of each namespace under
its own numbering).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .dedup import Key

PREFIX = "geobus:"
MAX_DEFERRALS = 10_000  # deferrals one receiver remembers; the oldest go first
_ECHO = 12  # characters of a bad handle its error shows: a wrong string passed may be a secret


@dataclass(frozen=True)
class DeferralHandle:
    """Where a deferred message can be received back: each namespace's sequence number of it."""

    sequence_numbers: Mapping[str, int]

    def __str__(self) -> str:
        return PREFIX + ";".join(f"{name}={number}" for name, number in self.sequence_numbers.items())


def parse_handle(text: str, namespaces: Iterable[str]) -> DeferralHandle:
    """The handle ``text`` spells (``geobus:primary=12;secondary=9``).

    Raises:
        ValueError: ``text`` is not a handle, names a namespace not in ``namespaces`` (or one
        twice), or a sequence number that is not a non-negative integer.
    """
    known = set(namespaces)
    if not text.startswith(PREFIX) or len(text) == len(PREFIX):
        raise ValueError(f"not a geobus deferral handle: {_echo(text)} (expected 'geobus:primary=12;secondary=9')")
    numbers: dict[str, int] = {}
    for part in text[len(PREFIX) :].split(";"):
        name, sep, number = part.partition("=")
        if not sep or name not in known or name in numbers:
            raise ValueError(f"a deferral handle names each of {sorted(known)} at most once: {_echo(text)}")
        if not number.isdigit():
            raise ValueError(f"a deferral handle's sequence numbers are integers: {_echo(text)}")
        numbers[name] = int(number)
    return DeferralHandle(numbers)


def _echo(text: str) -> str:
    """The start of a bad handle, for its error: never more than ``_ECHO`` characters of it."""
    return repr(text[:_ECHO]) + ("..." if len(text) > _ECHO else "")


@dataclass
class Deferral:
    """One deferred key: the namespace and sequence number of the copy the application deferred
    (``first``), and every namespace's sequence number of it known so far."""

    key: Key | None
    first: tuple[str, int]
    sequence_numbers: dict[str, int] = field(default_factory=dict)
    order: int = 0  # when it was made, among this receiver's deferrals

    @property
    def handle(self) -> DeferralHandle:
        return DeferralHandle(dict(self.sequence_numbers))


class Deferrals:
    """The deferrals this receiver made and has not seen settled, at most ``max_deferrals`` (the
    oldest forgotten first). Not thread-safe (one loop)."""

    def __init__(self, max_deferrals: int = MAX_DEFERRALS) -> None:
        self._max = max_deferrals
        self._by_key: dict[Key, Deferral] = {}  # in the order deferred
        self._keyless: list[Deferral] = []  # deferred copies without a dedup key: no twin to find
        self._made = itertools.count()

    def deferred(self, key: Key | None, namespace: str, sequence_number: int) -> Deferral:
        """The application deferred the copy ``(namespace, sequence_number)`` of ``key``."""
        if key is None:
            for kept in self._keyless:
                if kept.first == (namespace, sequence_number):
                    return kept
            deferral = Deferral(None, (namespace, sequence_number), {namespace: sequence_number}, next(self._made))
            self._keyless.append(deferral)
            self._bound()
            return deferral
        found = self._by_key.get(key)
        if found is None:
            found = self._by_key[key] = Deferral(key, (namespace, sequence_number), order=next(self._made))
            self._bound()
        found.sequence_numbers[namespace] = sequence_number
        return found

    def _bound(self) -> None:
        while len(self) > self._max:  # each kind is kept in the order made: its first is its oldest
            oldest_keyed = next(iter(self._by_key.values()), None)
            if self._keyless and (oldest_keyed is None or self._keyless[0].order < oldest_keyed.order):
                self._keyless.pop(0)
            else:
                del self._by_key[next(iter(self._by_key))]

    def twin_deferred(self, key: Key | None, namespace: str, sequence_number: int) -> None:
        """A twin of ``key`` was deferred (held at the deferral, or arriving after it)."""
        if key is not None and key in self._by_key:
            self._by_key[key].sequence_numbers[namespace] = sequence_number

    def of_key(self, key: Key | None) -> Deferral | None:
        return self._by_key.get(key) if key is not None else None

    def named(self, sequence_number: int) -> Deferral | None:
        """The deferral whose deferred copy had ``sequence_number`` in its namespace (the number
        the application saw); None for a number this receiver did not defer.

        Raises:
            ValueError: two deferrals had that number, one in each namespace (two messages):
                the int alone cannot tell which, a handle can.
        """
        found = [d for d in self._by_key.values() if d.first[1] == sequence_number]
        found += [d for d in self._keyless if d.first[1] == sequence_number]
        if len({d.first for d in found}) > 1:
            raise ValueError(
                f"sequence number {sequence_number} names deferred messages in {sorted(d.first[0] for d in found)}: "
                "pass a deferral_handle to tell which")
        return found[0] if found else None

    def keyless(self, sequence_number: int) -> Deferral | None:
        """The deferral of a copy without a dedup key that had ``sequence_number``, if any."""
        return next((d for d in self._keyless if d.first[1] == sequence_number), None)

    def settled(self, key: Key | None, namespace: str, sequence_number: int | None) -> None:
        """The deferred message was received back and settled for good (completed, dead-lettered)."""
        if key is not None:
            self._by_key.pop(key, None)
        else:
            self._keyless = [d for d in self._keyless if d.sequence_numbers.get(namespace) != sequence_number]

    def __len__(self) -> int:
        return len(self._by_key) + len(self._keyless)
