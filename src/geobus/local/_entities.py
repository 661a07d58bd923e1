"""Queues, subscriptions and their dead-letter queues: message state without I/O.

One ``MessageLog`` is a queue, a subscription or a dead-letter queue. It owns its
messages, the ready order, the locks and the scheduled set, and decides every
state change (lock, complete, abandon, defer, dead-letter, expiry) against a
clock passed in by the caller. It never touches a socket or a file; the broker
records what changed so the store can persist it before the client hears back.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class MessageState(IntEnum):
    """The values of ``x-opt-message-state`` (ServiceBusMessageState)."""

    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2


class LockLost(Exception):
    """The lock token is unknown or its lock has expired."""


@dataclass(frozen=True)
class EntitySettings:
    """Per-entity behaviour, as Service Bus configures a queue or subscription."""

    lock_duration: float = 60.0
    max_delivery_count: int = 10
    default_ttl: float | None = None
    duplicate_detection_window: float | None = None
    dead_letter_on_expiration: bool = False
    requires_session: bool = False

    def __post_init__(self) -> None:
        if self.lock_duration <= 0:
            raise ValueError("lock_duration must be positive")
        if self.max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")


@dataclass
class StoredMessage:
    """One message in one log, with the broker's bookkeeping."""

    seq: int
    header: list[Any] | None
    annotations: dict[Any, Any]
    rest: bytes
    message_id: Any
    enqueued_at: float
    expires_at: float | None = None
    state: MessageState = MessageState.ACTIVE
    scheduled_at: float | None = None
    delivery_count: int = 0
    lock_token: uuid.UUID | None = field(default=None, compare=False)
    locked_until: float | None = field(default=None, compare=False)

    def copy_for(self) -> StoredMessage:
        """An independent copy (a topic's message fanned out to a subscription)."""
        return StoredMessage(
            seq=self.seq,
            header=self.header,
            annotations=dict(self.annotations),
            rest=self.rest,
            message_id=self.message_id,
            enqueued_at=self.enqueued_at,
            expires_at=self.expires_at,
            state=self.state,
            scheduled_at=self.scheduled_at,
            delivery_count=self.delivery_count,
        )


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
        self.messages: dict[int, StoredMessage] = {}
        self._ready: list[int] = []
        self._scheduled: list[tuple[float, int]] = []
        self._locks: dict[uuid.UUID, StoredMessage] = {}
        self._on_change = on_change
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
            heapq.heappush(self._ready, message.seq)
        if persist:
            self._on_change(self, message, False)

    # -- taking ------------------------------------------------------------

    def take(self, now: float, *, peek_lock: bool) -> StoredMessage | None:
        """The next ready message: locked (peek-lock) or removed (receive-and-delete)."""
        while self._ready:
            seq = heapq.heappop(self._ready)
            message = self.messages.get(seq)
            if message is None or message.state != MessageState.ACTIVE or message.lock_token:
                continue
            if message.expires_at is not None and message.expires_at <= now:
                self._expire(message)
                continue
            if peek_lock:
                self._lock(message, now)
            else:
                self._remove(message)
            return message
        return None

    def _lock(self, message: StoredMessage, now: float) -> None:
        message.lock_token = uuid.uuid4()
        message.locked_until = now + self.settings.lock_duration
        self._locks[message.lock_token] = message

    def _unlock(self, message: StoredMessage) -> None:
        if message.lock_token is not None:
            self._locks.pop(message.lock_token, None)
        message.lock_token = None
        message.locked_until = None

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
        """
        message = self._locks.get(token)
        if message is None:
            raise LockLost(str(token))
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
            heapq.heappush(self._ready, message.seq)

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
        for message in [m for m in self._locks.values() if (m.locked_until or 0) <= now]:
            self._lock_expired(message)
            became_ready = True
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
        return min(times) if times else None

    # -- management --------------------------------------------------------

    def peek(self, from_seq: int, count: int, now: float) -> list[StoredMessage]:
        """Up to ``count`` live messages from ``from_seq`` on, in order, unlocked or not."""
        seqs = sorted(s for s in self.messages if s >= from_seq)
        found = []
        for seq in seqs:
            message = self.messages[seq]
            if message.expires_at is not None and message.expires_at <= now:
                continue
            found.append(message)
            if len(found) >= count:
                break
        return found

    def take_deferred(self, seq: int, now: float, *, peek_lock: bool) -> StoredMessage:
        """Receive a deferred message by sequence number.

        Raises:
            KeyError: no deferred message has that sequence number.
        """
        message = self.messages.get(seq)
        if message is None or message.state != MessageState.DEFERRED or message.lock_token:
            raise KeyError(seq)
        if peek_lock:
            self._lock(message, now)
        else:
            self._remove(message)
        return message

    def cancel_scheduled(self, seq: int) -> None:
        message = self.messages.get(seq)
        if message is not None and message.state == MessageState.SCHEDULED:
            self._remove(message)
