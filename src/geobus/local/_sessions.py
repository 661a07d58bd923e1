"""Message sessions of one session-enabled queue or subscription: locks, states, waiters.

On an entity that requires sessions, Service Bus groups messages by session id
(the AMQP ``group-id``) and hands a whole session to one receiver at a time:

- a receiver locks a session when it attaches, by name or as "the next
  available one" (the session with the oldest ready message that no one holds);
- the lock is exclusive: a second receiver asking for a locked session is
  refused (``session-cannot-be-locked``);
- it lasts the entity's lock duration from when it was taken or last renewed
  (``renew-session-lock``); when it runs out, or its link or connection goes,
  the session is free again and the messages its receiver held unsettled are
  unlocked, each counted as a delivery (so a worker that dies holding a
  session brings its poison message nearer the dead-letter queue);
- each session has a state (bytes, or none), kept until it is set to none.

``Sessions`` keeps the locks, the states and the receivers waiting for a
session; the messages stay in their ``MessageLog``, which asks here whose
they are. No I/O: times are passed in, owners are opaque (the server's links).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class SessionLockLost(Exception):
    """The session's lock expired, was released, or is held by another receiver."""


class SessionCannotBeLocked(Exception):
    """Another receiver holds the session's lock."""


class SessionRequired(ValueError):
    """A message without a session id was sent to an entity that requires sessions."""


SESSION_REQUIRED = (
    "The SessionId was not set on a message, and it cannot be sent to the entity. Entities "
    "that have session support enabled can only receive messages that have the SessionId "
    "set to a valid value."
)
# What a session-enabled subscription does with such a message from its topic.
NULL_SESSION_REASON = "Session id is null."
NULL_SESSION_DESCRIPTION = (
    "Session enabled entity doesn't allow a message whose session identifier is null."
)


@dataclass(eq=False)
class SessionLock:
    """One receiver's hold on one session. A new hold is a new object."""

    session_id: str
    owner: Any
    locked_until: float
    lost: bool = False
    tokens: set[Any] = field(default_factory=set)  # the messages it holds locked

    def live(self, now: float) -> bool:
        return not self.lost and self.locked_until > now


@dataclass(eq=False)
class Waiter:
    """A receiver waiting for the next available session, until ``deadline``."""

    owner: Any
    deadline: float


class Sessions:
    """The locks, states and waiting receivers of one log. Not thread-safe."""

    def __init__(self, lock_duration: float) -> None:
        self.lock_duration = lock_duration
        self.locks: dict[str, SessionLock] = {}
        self.states: dict[str, bytes] = {}
        self.state_times: dict[str, float] = {}
        self.waiters: list[Waiter] = []
        # Locks that ran out; their owners are told (their links detached) by the caller.
        self.lost: list[SessionLock] = []

    # -- locks --------------------------------------------------------------------

    def held(self, session_id: str, now: float) -> bool:
        lock = self.locks.get(session_id)
        return lock is not None and lock.live(now)

    def lock(self, session_id: str, owner: Any, now: float) -> SessionLock:
        """Lock ``session_id`` for ``owner``; an expired lock must be ended first.

        Raises:
            SessionCannotBeLocked: another owner holds it.
        """
        if self.held(session_id, now):
            raise SessionCannotBeLocked(session_id)
        lock = SessionLock(session_id, owner, now + self.lock_duration)
        self.locks[session_id] = lock
        return lock

    def current(self, session_id: str, now: float) -> SessionLock:
        """The live lock on ``session_id``.

        Raises:
            SessionLockLost: no one holds it, or its lock has run out.
        """
        lock = self.locks.get(session_id)
        if lock is None or not lock.live(now):
            raise SessionLockLost(session_id)
        return lock

    def renew(self, session_id: str, now: float) -> float:
        """Extend the live lock on ``session_id``; return its new expiry.

        Raises:
            SessionLockLost: see ``current``.
        """
        lock = self.current(session_id, now)
        lock.locked_until = now + self.lock_duration
        return lock.locked_until

    def release(self, lock: SessionLock) -> None:
        lock.lost = True
        if self.locks.get(lock.session_id) is lock:
            del self.locks[lock.session_id]

    def expired(self, now: float) -> list[SessionLock]:
        return [lock for lock in self.locks.values() if lock.locked_until <= now]

    def owned_by(self, owner: Any) -> list[SessionLock]:
        return [lock for lock in self.locks.values() if lock.owner is owner]

    # -- receivers waiting for a session ---------------------------------------------

    def wait(self, owner: Any, deadline: float) -> None:
        self.waiters.append(Waiter(owner, deadline))

    def stop_waiting(self, owner: Any) -> bool:
        before = len(self.waiters)
        self.waiters = [w for w in self.waiters if w.owner is not owner]
        return len(self.waiters) != before

    def next_deadline(self) -> float | None:
        times = [lock.locked_until for lock in self.locks.values()]
        times += [w.deadline for w in self.waiters]
        return min(times) if times else None

    def any_waiter_due(self, now: float) -> bool:
        return any(w.deadline <= now for w in self.waiters)

    # -- state ------------------------------------------------------------------------

    def set_state(self, session_id: str, state: bytes | None, now: float) -> None:
        if state is None:
            self.states.pop(session_id, None)
        else:
            self.states[session_id] = state
        self.state_times[session_id] = now

    def restore_state(self, session_id: str, state: bytes | None, updated_at: float) -> None:
        if state is not None:
            self.states[session_id] = state
        self.state_times[session_id] = updated_at

    def updated_after(self, when: float) -> list[str]:
        return sorted(s for s, at in self.state_times.items() if at > when)


def listing(with_messages: Iterable[str], sessions: Sessions) -> list[str]:
    """The sessions ``get-message-sessions`` lists by default: with messages or a state."""
    return sorted(set(with_messages) | set(sessions.states))
