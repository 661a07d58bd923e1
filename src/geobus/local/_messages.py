"""The values a message log holds: stored messages, their states, entity settings.

Plain data; what happens to them is ``_entities``' (``MessageLog``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from ._sessions import SessionLock


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
    session_id: str | None = None
    lock_token: uuid.UUID | None = field(default=None, compare=False)
    # A session's messages have no lock of their own: their session's lock is it.
    locked_until: float | None = field(default=None, compare=False)
    session_lock: SessionLock | None = field(default=None, compare=False)
    # A subscription's extra copy (one per matching rule with an action): the sequence
    # number the topic gave the message sent, which cancelling a schedule names. Kept
    # in memory only: after a restart each copy is cancelled by its own number.
    origin: int | None = field(default=None, compare=False)

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
            session_id=self.session_id,
        )
