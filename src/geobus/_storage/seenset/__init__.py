"""Where a fleet of receivers keeps the duplicate state of each key: the ``SeenSet``.

Within one receiver, ``_dedup.DuplicateTracker`` decides what a copy is. Across
processes (a fleet of workers, or one worker restarted), the receiver asks a
``SeenSet`` before delivering a key it has not seen itself. Each key is in one of
three states:

- absent: nobody has it; ``claim`` takes it (state *in flight*, with an owner and
  a lease) and answers ``CLAIMED``;
- in flight: another owner has it; ``claim`` answers ``TAKEN`` and the copy is
  held (locked) and asked about again, until that owner completes it (then the
  copy is settled the same way) or its lease expires (a dead worker: then the next
  ``claim`` takes it);
- processed (``COMPLETED`` or ``DEAD_LETTERED``), for ``ttl`` seconds (the dedup
  window): later copies are settled the same way, silently;
- deferred (``DEFERRED``), for ``ttl`` seconds: the application deferred a copy and
  has not received it back; ``claim`` answers ``DEFERRED`` and a twin is deferred
  where it arrives. ``claim_deferred`` takes a deferred key back (in flight for its
  caller) when the application receives a deferred copy back. Not processed: never
  dropped for room, only when its ttl runs out.

An owner renews its lease while the application holds the message, ``complete``s
it after the namespace accepted the settlement, and ``release``s it when the
message was abandoned or its lock was lost (so a twin or the redelivery is
processed). ``release`` and ``renew`` act only for the current owner.

``claim_deferred`` is optional for a store of the application's own: a store
without it is not told of deferrals (a deferred key is released there, so a twin
that reaches another worker is delivered by it), and a deferred copy received
back is claimed with ``claim``. The three stores here have it.

So are ``claim_many`` and ``complete_many`` (``BatchSeenSet``): claims or
completions made at the same time, in one call — one Redis
round trip, one SQLite transaction — with the answers of the single calls made
in turn. A store without them is asked one key at a time.

Keys keep their type: the receiver spells each message's key once
(``geobus._decisions.dedup.key_of``: ``i:42``, ``s:42``...) and every store keeps that
spelling as it is, so ``42``, ``"42"``, ``b"42"`` and ``UUID(int=42)`` are four
keys in every store, as in the receiver's own ``DuplicateTracker``.

Stores: ``memory`` (one process; the default, and the contract's reference),
``sqlite:PATH`` (processes on one host; survives a restart), ``redis://...``
(a fleet; ``geobus[redis]``). ``open_seen_set`` builds one from its URL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ..._decisions.actions import Claim as Claim
from ..._decisions.actions import SeenSetError as SeenSetError
from ..._decisions.dedup import Key


@runtime_checkable
class SeenSet(Protocol):
    """The shared duplicate state. Keys are ``key_of``'s spellings, kept as they are; times are seconds.

    ``owner`` names one holder (a receiver instance): it must be unique across
    every process sharing the store, since the stores tell owners apart by it
    alone (a claim by the same owner is ``CLAIMED`` again).

    Every method may raise ``SeenSetError`` when the store is unreachable; none
    blocks the event loop (stores that do blocking I/O run it in a thread). Bad
    arguments (a lease or ttl not above 0, an outcome other than ``COMPLETED``,
    ``DEAD_LETTERED`` or ``DEFERRED``, an empty owner) raise ``ValueError``.
    """

    async def claim(self, key: Key, owner: str, lease: float) -> Claim:
        """Take ``key`` for ``owner`` for ``lease`` seconds if it is absent or its
        lease expired (``CLAIMED``, also when ``owner`` already holds it: the lease
        is extended); otherwise say what it is."""
        ...

    async def renew(self, key: Key, owner: str, lease: float) -> bool:
        """Extend ``owner``'s lease on ``key`` to ``lease`` seconds from now; False if
        ``owner`` no longer holds it (also once the lease ran out, even if nobody took it)."""
        ...

    async def complete(self, key: Key, owner: str, outcome: Claim, ttl: float) -> None:
        """Record ``key`` as processed (``outcome``: ``COMPLETED`` or ``DEAD_LETTERED``),
        or as deferred (``DEFERRED``; no owner holds it then), for ``ttl`` seconds,
        whoever holds it now."""
        ...

    async def release(self, key: Key, owner: str) -> None:
        """Forget ``key`` if ``owner`` holds it in flight (abandoned, lock lost)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class DeferringSeenSet(SeenSet, Protocol):
    """A ``SeenSet`` that also takes deferred keys back (memory, SQLite and Redis do)."""

    async def claim_deferred(self, key: Key, owner: str, lease: float) -> Claim:
        """Take ``key`` for ``owner`` for ``lease`` seconds if it is deferred, absent, its lease
        expired or ``owner`` holds it (``CLAIMED``); ``TAKEN`` if another owner holds it in
        flight; ``COMPLETED`` or ``DEAD_LETTERED`` if it is processed. Never ``DEFERRED``."""
        ...


@runtime_checkable
class BatchSeenSet(SeenSet, Protocol):
    """A ``SeenSet`` that also takes many keys in one call (memory, SQLite and Redis do).

    Each batch method does what the single calls would, made in turn in the order
    given (a key may come twice), in one round trip. Arguments are checked before
    anything is done; a ``SeenSetError`` may come after some of the keys were acted on,
    as when single calls fail half-way.
    """

    async def claim_many(self, keys: Sequence[Key], owner: str, lease: float) -> list[Claim]:
        """``claim`` of each of ``keys`` in turn: their answers, in order."""
        ...

    async def complete_many(self, outcomes: Sequence[tuple[Key, Claim]], owner: str, ttl: float) -> None:
        """``complete`` of each key with its outcome, in turn."""
        ...


def open_seen_set(url: str, *, max_entries: int, clock: Callable[[], float] | None = None) -> SeenSet:
    """The store a ``[dedup] store`` URL names: ``memory``, ``sqlite:PATH``, ``redis://...``.

    ``clock`` (seconds) is used by the stores that keep time themselves (memory,
    SQLite); Redis keeps time on the server.

    Raises:
        ValueError: an unknown scheme, or a malformed URL (the message hides any password).
        ImportError: ``redis://`` without the ``redis`` extra.
    """
    from .factory import open_store

    return open_store(url, max_entries=max_entries, clock=clock)


__all__ = ["BatchSeenSet", "Claim", "DeferringSeenSet", "SeenSet", "SeenSetError", "open_seen_set"]
