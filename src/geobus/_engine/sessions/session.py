"""``receiver.session``: the SDK's ``ServiceBusSession`` surface over a session owned in two namespaces."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.servicebus.exceptions import SessionLockLostError

from ..._decisions.session_state import SessionState

if TYPE_CHECKING:
    from .receiver import DedupSessionReceiver


@dataclass(frozen=True)
class SessionStats:
    """A session receiver's order and ownership counters.

    ``session_id``: the session owned (None before it is taken); ``attached``: the
    namespaces holding it now; ``gaps``: producers' gaps delivered past after their
    wait (or at once, when no namespace could still hold them); ``gap_messages``: the
    numbers those gaps skipped; ``out_of_order``: messages delivered after later ones
    of their producer (they came after their gap was given up); ``gap_wait_seconds``:
    time spent waiting on gaps; ``waiting``: messages held back for their turn now;
    ``duplicate_stamps``: messages whose order stamp another message had (delivered as
    unstamped: docs/sessions.md, "Stamps").
    """

    session_id: str | None
    attached: tuple[str, ...]
    gaps: int
    gap_messages: int
    out_of_order: int
    gap_wait_seconds: float
    waiting: int
    duplicate_stamps: int = 0

    @classmethod
    def of(cls, receiver: DedupSessionReceiver) -> SessionStats:
        """A snapshot of ``receiver``'s counters."""
        order = receiver.order
        counters = order.counters if order is not None else None
        return cls(
            session_id=receiver.ownership.session_id,
            attached=tuple(sorted(receiver.ownership.attached)),
            gaps=counters.gaps if counters else 0,
            gap_messages=counters.gap_messages if counters else 0,
            out_of_order=counters.out_of_order if counters else 0,
            gap_wait_seconds=counters.gap_wait_seconds if counters else 0.0,
            waiting=order.waiting if order is not None else 0,
            duplicate_stamps=counters.duplicate_stamps if counters else 0,
        )


class ReplicatedSession:
    """The session a ``DedupSessionReceiver`` owns, in both namespaces (``receiver.session``).

    As the SDK's ``ServiceBusSession``: ``session_id``, ``get_state``, ``set_state``,
    ``renew_lock``, ``locked_until_utc``, ``auto_renew_error``. Differs where two
    namespaces make it: the state is written to both (passive mode: the active one
    first, then the other as a best effort) with a version, and read from both, the
    newest winning (docs/sessions.md, "Session state"); ``renew_lock`` renews both
    locks; ``locked_until_utc`` is the earlier of the two. Each call takes the session
    first if the receiver has not yet. Task-safe within one event loop.
    """

    def __init__(self, receiver: DedupSessionReceiver) -> None:
        self._receiver = receiver
        self.auto_renew_error: BaseException | None = None  # geobus renews the locks itself

    @property
    def session_id(self) -> str | None:
        """The session's id: the one asked for, or (next-available) the one taken; None before that."""
        return self._receiver.ownership.session_id

    @property
    def locked_until_utc(self) -> datetime.datetime | None:
        """When the earliest of the namespaces' session locks runs out; None while none is held."""
        channels = self._receiver.channels
        times = [channels[n].locked_until for n in sorted(self._receiver.ownership.attached)]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    async def get_state(self, *, timeout: float | None = None, **kwargs: Any) -> bytes | None:
        """The session's state: the newest version in either namespace (None if never set).

        Raises:
            ReplicationError: no namespace answered.
        """
        await self._receiver._own()
        state: SessionState = await _bounded(self._receiver.state.read(), timeout)
        return state.user

    async def set_state(self, state: str | bytes | bytearray | None, *, timeout: float | None = None, **kwargs: Any) -> None:
        """Set the session's state (None clears it) in both namespaces, as a new version.

        Raises:
            ReplicationError: no namespace took it.
        """
        await self._receiver._own()
        raw = state.encode("utf-8") if isinstance(state, str) else (bytes(state) if state is not None else None)
        await _bounded(self._receiver.state.write(raw), timeout)

    async def renew_lock(self, *, timeout: float | None = None, **kwargs: Any) -> datetime.datetime:
        """Renew the session's lock in every namespace holding it; returns the earlier expiry.

        Raises:
            SessionLockLostError: no namespace renewed it.
        """
        receiver = self._receiver
        await receiver._own()
        names = sorted(receiver.ownership.attached)
        seconds = receiver.deadlines.attempt + receiver.timings.poll_wait if timeout is None else timeout
        results = await asyncio.gather(
            *(receiver.channels[n].renew_session(timeout=seconds) for n in names), return_exceptions=True
        )
        renewed = [r for r in results if isinstance(r, datetime.datetime)]
        if not renewed:
            errors = [r for r in results if isinstance(r, BaseException)]
            raise SessionLockLostError(error=errors[0] if errors else None)
        return min(renewed)

    def __repr__(self) -> str:
        return f"ReplicatedSession(session_id={self.session_id!r})"


async def _bounded(call: Any, timeout: float | None) -> Any:
    if timeout is not None and timeout <= 0:
        call.close()
        raise ValueError("The timeout must be greater than 0.")
    return await asyncio.wait_for(call, timeout)
