"""What a receiver's lock times decide, without I/O: the caller passes ``now``.

A peek-lock copy is this process's while its lock lasts. From that follow three
decisions the ``DedupReceiver`` carries out: which held copies its lock keeper
renews (``due_for_renewal``), which keys it keeps the shared seen-set's leases
of (``held_keys``), and when a pump may ask its namespace for more
(``namespace_busy``). Lock times are wall-clock seconds (``Copy.locked_until``;
None: no known end, as in receive-and-delete mode).
"""

from __future__ import annotations

from collections.abc import Iterable

from .dedup import Copy, Key


def live(copy: Copy, now: float) -> bool:
    """``copy`` is held under a lock that has not run out (or has no known end)."""
    return copy.locked_until is None or copy.locked_until > now


def due_for_renewal(copies: Iterable[Copy], now: float, renew_ahead: float) -> dict[str, list[Copy]]:
    """Per namespace, the copies whose locks run out within ``renew_ahead`` seconds, soonest
    first; a copy without a known lock end is never due."""
    due: dict[str, list[Copy]] = {}
    for copy in sorted(copies, key=lambda c: c.locked_until or 0.0):
        if copy.locked_until is not None and copy.locked_until - now <= renew_ahead:
            due.setdefault(copy.namespace, []).append(copy)
    return due


def held_keys(
    handed_out: Iterable[tuple[Key | None, Copy]], ready: Iterable[Key | None], now: float
) -> set[Key]:
    """The keys whose shared leases this process keeps: a copy with the application under a
    live lock (``handed_out``), or one waiting to be handed out (``ready``). A copy whose
    lock ran out unsettled is lost to this process: its key is let go."""
    held = {key for key, copy in handed_out if key is not None and live(copy, now)}
    held.update(key for key in ready if key is not None)
    return held


def namespace_busy(
    *,
    queued: int,
    settling: int,
    handed_out: Iterable[Copy],
    twins: Iterable[Copy] = (),
    waited_for: bool = False,
    now: float,
) -> bool:
    """Must a pump wait before asking its namespace for more?

    Yes while this process holds any of that namespace's messages: fetched and not
    yet looked at (``queued``), duplicates being settled (``settling``), copies
    ready for or handed to the application under a live lock (``handed_out``), or twins held under a
    live lock for the outcome of their copy here (``twins``) — that namespace's
    only. The SDK makes a settlement wait for an in-flight receive call on the same
    receiver (up to 0.2 s, even once that call has its messages), so receive,
    process and settle go in turn: a twin settled while its namespace is asked for
    more would wait behind the receive call. A copy waiting on another worker's
    outcome does not count: that may take as long as the other worker's handler.

    While the application waits in a receive call with nothing ready (``waited_for``),
    what it and its twins hold does not hold the pump back: the SDK's receiver asks
    the service then too, and an application may take more before it settles.
    """
    if queued or settling:
        return True
    if waited_for:
        return False
    return any(live(copy, now) for copy in handed_out) or any(live(copy, now) for copy in twins)
