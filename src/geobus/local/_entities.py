"""Queues, subscriptions and their dead-letter queues: message state without I/O.

One ``MessageLog`` is a queue, a subscription or a dead-letter queue. It owns its
messages, the ready order, the locks and the scheduled set, and decides every
state change (lock, complete, abandon, defer, dead-letter, expiry) against a
clock passed in by the caller. It never touches a socket or a file; the broker
records what changed so the store can persist it before the client hears back.
On an entity that requires sessions, ready messages are kept per session and
handed only to the receiver holding that session's lock (``_sessions``).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable
from typing import Any

from ._messages import EntitySettings, LockLost, MessageState, StoredMessage
from ._sessions import SessionLock, SessionLockLost, Sessions

__all__ = ["EntitySettings", "LockLost", "MessageLog", "MessageState", "StoredMessage"]


Changed = Callable[["MessageLog", StoredMessage, bool], None]
"""Called with (log, message, deleted) after every persistent change."""


class MessageLog:
    """A queue, subscription or dead-letter queue. Not thread-safe: one loop owns it."""

    def __init__(
        self,
        path: str,
        settings: EntitySettings,
        on_change: Changed,
        *,
        is_dead_letter: bool = False,
    ) -> None:
        self.path = path
        self.settings = settings
        self.is_dead_letter = is_dead_letter
        self.deleted = False  # the administration API deleted it (``Broker.delete_entity``)
        self.messages: dict[int, StoredMessage] = {}
        # Ready sequence numbers per session (one heap under None without sessions).
        self._ready: dict[str | None, list[int]] = {}
        self._scheduled: list[tuple[float, int]] = []
        self._locks: dict[uuid.UUID, StoredMessage] = {}
        self._on_change = on_change
        self.sessions: Sessions | None = None
        if settings.requires_session and not is_dead_letter:
            self.sessions = Sessions(settings.lock_duration)
        self.dead_letter: MessageLog | None = None
        if not is_dead_letter:
            self.dead_letter = MessageLog(
                f"{path}/$deadletterqueue", settings, on_change, is_dead_letter=True
            )

    # -- adding ------------------------------------------------------------

    def add(self, message: StoredMessage, *, persist: bool = True) -> None:
        """Put ``message`` in the log (a send, a restore, a scheduled message)."""
        self.messages[message.seq] = message
        if message.state == MessageState.SCHEDULED and message.scheduled_at is not None:
            heapq.heappush(self._scheduled, (message.scheduled_at, message.seq))
        elif message.state == MessageState.ACTIVE:
            self._make_ready(message)
        if persist:
            self._on_change(self, message, False)

    # -- taking ------------------------------------------------------------

    @property
    def requires_session(self) -> bool:
        """Receivers must hold a session (never true of a dead-letter queue)."""
        return self.sessions is not None

    def take(
        self, now: float, *, peek_lock: bool, session: SessionLock | None = None
    ) -> StoredMessage | None:
        """The next ready message: locked (peek-lock) or removed (receive-and-delete).

        On a session-enabled log, only ``session``'s, while its lock is live.
        """
        if self.sessions is not None and (session is None or not session.live(now)):
            return None
        key = None if session is None else session.session_id
        seq = self._head(key, now)
        if seq is None:
            return None
        heapq.heappop(self._ready[key])
        message = self.messages[seq]
        if peek_lock:
            self._lock(message, now, session)
        else:
            self._remove(message)
        return message

    def _head(self, key: str | None, now: float) -> int | None:
        """The first ready message of session ``key``, dropping stale and expired entries."""
        heap = self._ready.get(key)
        while heap:
            message = self.messages.get(heap[0])
            if message is None or message.state != MessageState.ACTIVE or message.lock_token:
                heapq.heappop(heap)
            elif message.expires_at is not None and message.expires_at <= now:
                heapq.heappop(heap)
                self._expire(message)
            else:
                return message.seq
        self._ready.pop(key, None)  # sessions come and go: keep no empty heaps
        return None

    def _lock(self, message: StoredMessage, now: float, session: SessionLock | None) -> None:
        message.lock_token = uuid.uuid4()
        if session is None:
            message.locked_until = now + self.settings.lock_duration
        else:
            message.session_lock = session
            session.tokens.add(message.lock_token)
        self._locks[message.lock_token] = message

    def _unlock(self, message: StoredMessage) -> None:
        if message.lock_token is not None:
            self._locks.pop(message.lock_token, None)
            if message.session_lock is not None:
                message.session_lock.tokens.discard(message.lock_token)
        message.lock_token = None
        message.locked_until = None
        message.session_lock = None

    def _remove(self, message: StoredMessage) -> None:
        self._unlock(message)
        if self.messages.pop(message.seq, None) is not None:
            self._on_change(self, message, True)

    def _expire(self, message: StoredMessage) -> None:
        self._remove(message)
        if self.settings.dead_letter_on_expiration and self.dead_letter is not None:
            self._move_to_dead_letter(message, "TTLExpiredException", "The message expired")

    # -- settling ----------------------------------------------------------

    def locked(self, token: uuid.UUID, now: float) -> StoredMessage:
        """The message ``token`` locks.

        Raises:
            LockLost: no such lock, or it expired (the message is then released).
            SessionLockLost: the message's session lock ran out (the session is then
                released).
        """
        message = self._locks.get(token)
        if message is None:
            raise LockLost(str(token))
        if (session := message.session_lock) is not None:
            if not session.live(now):
                self.expire_session(session)
                raise SessionLockLost(session.session_id)
            return message
        if message.locked_until is not None and message.locked_until <= now:
            self._lock_expired(message)
            raise LockLost(str(token))
        return message

    def complete(self, token: uuid.UUID, now: float) -> None:
        self._remove(self.locked(token, now))

    def abandon(self, token: uuid.UUID, now: float, *, count: bool = True) -> None:
        """Unlock; ``count`` is False for ``released`` (never delivered to the app)."""
        message = self.locked(token, now)
        self._unlock(message)
        if count:
            message.delivery_count += 1
            if self._over_delivery_limit(message):
                return
            self._on_change(self, message, False)
        self._make_ready(message)

    def defer(self, token: uuid.UUID, now: float) -> None:
        message = self.locked(token, now)
        self._unlock(message)
        message.state = MessageState.DEFERRED
        self._on_change(self, message, False)

    def dead_letter_locked(
        self, token: uuid.UUID, now: float, reason: str | None, description: str | None
    ) -> None:
        message = self.locked(token, now)
        self._remove(message)
        self._move_to_dead_letter(message, reason, description)

    def renew(self, token: uuid.UUID, now: float) -> float:
        message = self.locked(token, now)
        message.locked_until = now + self.settings.lock_duration
        return message.locked_until

    def _make_ready(self, message: StoredMessage) -> None:
        if message.state == MessageState.ACTIVE:
            key = message.session_id if self.sessions is not None else None
            heapq.heappush(self._ready.setdefault(key, []), message.seq)

    def _lock_expired(self, message: StoredMessage) -> None:
        self._unlock(message)
        message.delivery_count += 1
        if not self._over_delivery_limit(message):
            self._on_change(self, message, False)
            self._make_ready(message)

    def _over_delivery_limit(self, message: StoredMessage) -> bool:
        if self.is_dead_letter or message.delivery_count < self.settings.max_delivery_count:
            return False
        self._remove(message)
        self._move_to_dead_letter(
            message,
            "MaxDeliveryCountExceeded",
            f"Message could not be consumed after {self.settings.max_delivery_count} "
            "delivery attempts.",
        )
        return True

    def _move_to_dead_letter(
        self, message: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        if self.dead_letter is None:
            return
        from ._codec import with_application_properties

        extra: dict[str, Any] = {}
        if reason is not None:
            extra["DeadLetterReason"] = reason
        if description is not None:
            extra["DeadLetterErrorDescription"] = description
        moved = message.copy_for()
        moved.state = MessageState.ACTIVE
        moved.expires_at = None
        if extra:
            moved.rest = with_application_properties(message.rest, extra)
        self.dead_letter.add(moved)

    # -- time --------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """Expire locks and activate due scheduled messages; True if any became ready."""
        became_ready = False
        expired = [m for m in self._locks.values() if m.locked_until and m.locked_until <= now]
        for message in expired:
            self._lock_expired(message)
            became_ready = True
        if self.sessions is not None:
            for lock in self.sessions.expired(now):
                self.expire_session(lock)
                became_ready = True
            became_ready = became_ready or self.sessions.any_waiter_due(now)
        while self._scheduled and self._scheduled[0][0] <= now:
            when, seq = heapq.heappop(self._scheduled)
            due = self.messages.get(seq)
            if due is None or due.state != MessageState.SCHEDULED:
                continue
            due.state = MessageState.ACTIVE
            due.scheduled_at = None
            due.enqueued_at = when  # Service Bus stamps a scheduled message when it appears
            self._on_change(self, due, False)
            self._make_ready(due)
            became_ready = True
        return became_ready

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work: the earliest lock expiry or scheduled time."""
        times = [m.locked_until for m in self._locks.values() if m.locked_until is not None]
        if self._scheduled:
            times.append(self._scheduled[0][0])
        if self.sessions is not None and (deadline := self.sessions.next_deadline()) is not None:
            times.append(deadline)
        return min(times) if times else None

    # -- management --------------------------------------------------------

    def peek(
        self, from_seq: int, count: int, now: float, session_id: str | None = None
    ) -> list[StoredMessage]:
        """Up to ``count`` live messages from ``from_seq`` on, in order, unlocked or not
        (of session ``session_id`` only, if given)."""
        seqs = sorted(s for s in self.messages if s >= from_seq)
        found = []
        for seq in seqs:
            message = self.messages[seq]
            if message.expires_at is not None and message.expires_at <= now:
                continue
            if session_id is not None and message.session_id != session_id:
                continue
            found.append(message)
            if len(found) >= count:
                break
        return found

    def take_deferred(
        self, seq: int, now: float, *, peek_lock: bool, session: SessionLock | None = None
    ) -> StoredMessage:
        """Receive a deferred message by sequence number (of ``session``'s, if given).

        Raises:
            KeyError: no deferred message has that sequence number.
        """
        message = self.messages.get(seq)
        if message is None or message.state != MessageState.DEFERRED or message.lock_token:
            raise KeyError(seq)
        if session is not None and message.session_id != session.session_id:
            raise KeyError(seq)
        if peek_lock:
            self._lock(message, now, session)
        else:
            self._remove(message)
        return message

    def cancel_scheduled(self, seq: int) -> None:
        message = self.messages.get(seq)
        if message is not None and message.state == MessageState.SCHEDULED:
            self._remove(message)

    def reconfigure(self, settings: EntitySettings) -> None:
        """Apply ``settings`` (the entity declared again). Turning sessions on or off
        ends every session lock and regroups the ready messages."""
        self.settings = settings
        if self.dead_letter is not None:
            self.dead_letter.settings = settings
        wants_sessions = settings.requires_session and not self.is_dead_letter
        if self.sessions is not None and wants_sessions:
            self.sessions.lock_duration = settings.lock_duration
            return
        if self.sessions is None and not wants_sessions:
            return
        if self.sessions is not None:
            for lock in list(self.sessions.locks.values()):
                self.expire_session(lock)
        self.sessions = Sessions(settings.lock_duration) if wants_sessions else None
        self._ready = {}
        for seq in sorted(self.messages):
            if not self.messages[seq].lock_token:
                self._make_ready(self.messages[seq])

    # -- sessions ------------------------------------------------------------------

    def accept_session(self, session_id: str | None, owner: Any, now: float) -> SessionLock | None:
        """Lock session ``session_id`` for ``owner``, or (None) the next available one:
        the session with the oldest ready message that no one holds. None if none is.

        Raises:
            SessionCannotBeLocked: another owner holds ``session_id``.
        """
        assert self.sessions is not None
        for lock in self.sessions.expired(now):
            self.expire_session(lock)
        if session_id is None:
            heads = [
                (seq, key)
                for key in list(self._ready)
                if key is not None
                and not self.sessions.held(key, now)
                and (seq := self._head(key, now)) is not None
            ]
            if not heads:
                return None
            session_id = min(heads)[1]
        return self.sessions.lock(session_id, owner, now)

    def end_session(self, lock: SessionLock) -> None:
        """Release ``lock``: the messages it held locked are ready again, each counted
        as a delivery (or dead-lettered past the max delivery count)."""
        if self.sessions is None or lock.lost:
            return
        self.sessions.release(lock)
        for token in list(lock.tokens):
            message = self._locks.get(token)
            if message is not None:
                self._lock_expired(message)
        lock.tokens.clear()

    def expire_session(self, lock: SessionLock) -> None:
        """End ``lock`` because it ran out; its owner is told through ``sessions.lost``."""
        if self.sessions is not None and not lock.lost:
            self.end_session(lock)
            self.sessions.lost.append(lock)

    def sessions_with_messages(self) -> list[str]:
        live = (MessageState.ACTIVE, MessageState.DEFERRED)
        return sorted(
            {m.session_id for m in self.messages.values() if m.session_id and m.state in live}
        )

    def reject_without_session(self, message: StoredMessage) -> None:
        """Dead-letter a message that came from a topic without a session id, as a
        session-enabled subscription does."""
        from ._sessions import NULL_SESSION_DESCRIPTION, NULL_SESSION_REASON

        self.dead_letter_copy(message, NULL_SESSION_REASON, NULL_SESSION_DESCRIPTION)

    def dead_letter_copy(self, message: StoredMessage, reason: str, description: str) -> None:
        """Put a topic's copy straight into the dead-letter queue (it never was active here)."""
        self._move_to_dead_letter(message, reason, description)
