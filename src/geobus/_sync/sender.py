"""The sync ``ReplicatedSender``: the async core, run on the client's private loop."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from .._closing import Closing
from .._engine import sender as core
from .._models import ReplicatedMessageBatch, ScheduledMessage, SenderStats, SendResult
from .portal import Portal


class ReplicatedSender(Closing):
    """Sends every message to two Service Bus namespaces.

    The sync face of ``geobus.aio.ReplicatedSender`` — same modes, same
    guarantees, same errors (see there). Every call returns within the send
    deadline, even when a namespace black-holes its traffic. Thread-safe: calls
    from several threads are serialised on the client's event loop.
    """

    def __init__(self, portal: Portal, sender: core.ReplicatedSender) -> None:
        self._portal = portal
        self._core = sender

    @property
    def active_namespace(self) -> str:
        return self._core.active_namespace

    @property
    def stats(self) -> SenderStats:
        return self._core.stats

    def __repr__(self) -> str:
        return repr(self._core)

    def send_messages(self, message: Any, *, timeout: float | None = None) -> SendResult:
        """Send a message, a list of messages or a ``ReplicatedMessageBatch``; see the async class."""
        return self._portal.run(self._core.send_messages(message, timeout=timeout))

    def schedule_messages(
        self, messages: Any, schedule_time_utc: datetime.datetime, *, timeout: float | None = None
    ) -> list[ScheduledMessage]:
        return self._portal.run(self._core.schedule_messages(messages, schedule_time_utc, timeout=timeout))

    def cancel_scheduled_messages(
        self, scheduled: ScheduledMessage | Sequence[ScheduledMessage], *, timeout: float | None = None
    ) -> None:
        self._portal.run(self._core.cancel_scheduled_messages(scheduled, timeout=timeout))

    def create_message_batch(
        self, max_size_in_bytes: int | None = None, *, timeout: float | None = None
    ) -> ReplicatedMessageBatch:
        return self._portal.run(self._core.create_message_batch(max_size_in_bytes, timeout=timeout))

    def close(self) -> None:
        """Close this sender. Safe to call twice, and after its client closed (then a no-op:
        the client's close closed it)."""
        if self._portal.closed:
            return
        self._portal.run(self._core.close())
