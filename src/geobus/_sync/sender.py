"""The sync ``ReplicatedSender``: the async core, run on the client's private loop, and its fast lane."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from .._engine import sender as core
from .._models import ReplicatedMessageBatch, ScheduledMessage, SenderStats, SendResult
from .fast_lane import FastLane
from .portal import Portal
from .shell import Shell


class ReplicatedSender(Shell[core.ReplicatedSender]):
    """Sends every message to two Service Bus namespaces.

    The sync face of ``geobus.aio.ReplicatedSender`` — same modes, same
    guarantees, same errors (see there). Every call returns within the send
    deadline, even when a namespace black-holes its traffic. Thread-safe: in
    passive mode each thread's sends to a healthy namespace go out on a link of
    that thread's own (``fast_lane.py``); everything else runs on the client's
    event loop.

    Get one from ``GeoServiceBusClient.get_queue_sender`` or ``get_topic_sender``.
    """

    def __init__(self, portal: Portal, core: core.ReplicatedSender, lane: FastLane | None = None) -> None:
        super().__init__(portal, core)
        self._lane = lane

    def close(self) -> None:
        """Stop its background work and close its links on both namespaces, its callers'
        threads' too. Safe to call twice, and after its client closed."""
        if self._lane is not None:
            self._lane.close()
        super().close()

    @property
    def active_namespace(self) -> str:
        """The namespace passive mode sends to first (``"primary"`` or ``"secondary"``)."""
        return self._core.active_namespace

    @property
    def fully_qualified_namespace(self) -> str:
        """The host of the namespace sends go to first: passive mode's active namespace (it
        changes on a failover), the primary in active mode. ``fully_qualified_namespaces``
        has both."""
        return self._core.fully_qualified_namespace

    @property
    def fully_qualified_namespaces(self) -> dict[str, str]:
        """Each namespace's host, by name (``{"primary": ..., "secondary": ...}``)."""
        return self._core.fully_qualified_namespaces

    @property
    def entity_name(self) -> str:
        """The queue or topic this sender sends to: the same name in both namespaces."""
        return self._core.entity_name

    @property
    def client_identifier(self) -> str | None:
        """The identifier both namespaces' SDK senders were given (the same one)."""
        return self._core.client_identifier

    @property
    def stats(self) -> SenderStats:
        """A snapshot of this sender's counters and its outbox's depth (``SenderStats``)."""
        return self._core.stats

    def send_messages(self, message: Any, *, timeout: float | None = None) -> SendResult:
        """Send a message, a list of messages or a ``ReplicatedMessageBatch`` to both namespaces.

        Every field of every message is checked before anything is sent; within
        ``timeout`` seconds (default: ``deadlines.send``) whatever the network does.

        Returns a ``SendResult``: the namespaces that stored it (``landed``), the
        outbox lanes keeping it for later (``buffered``), and the namespaces that
        missed it with their errors (``missed``).

        Raises:
            TypeError, ValueError: a field Service Bus would refuse, naming it.
            ReplicationError: no namespace took it (or quorum ``all`` was not met)
                and no outbox could keep it; ``OutboxFullError`` if the outbox is full.
            The SDK's own errors for the message's fault or a namespace's setup
            (``MessageSizeExceededError``, ``ServiceBusAuthenticationError``...),
            unchanged and without failover. The async class lists every case.
        """
        if self._lane is not None:
            return self._lane.send(message, timeout)
        return self._portal.run(self._core.send_messages(message, timeout=timeout))

    def schedule_messages(
        self, messages: Any, schedule_time_utc: datetime.datetime, *, timeout: float | None = None
    ) -> list[ScheduledMessage]:
        """Schedule a message (or a list) for ``schedule_time_utc`` on the namespace(s) a
        send would reach. Never buffered: a schedule needs the namespace's answer.

        Returns one ``ScheduledMessage`` per message, for ``cancel_scheduled_messages``.

        Raises:
            As ``send_messages`` (without the outbox), and ``TypeError`` for a
            ``schedule_time_utc`` that is not a ``datetime``.
        """
        return self._portal.run(self._core.schedule_messages(messages, schedule_time_utc, timeout=timeout))

    def cancel_scheduled_messages(
        self, sequence_numbers: ScheduledMessage | Sequence[ScheduledMessage], *, timeout: float | None = None
    ) -> None:
        """Cancel scheduled messages on every namespace that holds them.

        ``sequence_numbers`` is what ``schedule_messages`` returned (named as the SDK
        names it): ``ScheduledMessage`` objects, each with both namespaces' numbers.
        A bare int is refused with ``TypeError``: it names a message in one namespace.

        Raises:
            ReplicationError: a namespace could not be reached; ``landed`` names
                those where the cancellation did happen. Calling again is safe.
        """
        self._portal.run(self._core.cancel_scheduled_messages(sequence_numbers, timeout=timeout))

    def create_message_batch(
        self, max_size_in_bytes: int | None = None, *, timeout: float | None = None
    ) -> ReplicatedMessageBatch:
        """An empty ``ReplicatedMessageBatch`` sized for the smaller of the two namespaces'
        limits, or ``max_size_in_bytes`` if smaller still. A namespace held back (breaker
        not closed, or paused) is not asked; the limit it told before still counts.

        Raises:
            ReplicationError: no namespace's limit is known and none could be asked.
            ValueError: ``max_size_in_bytes`` is over the namespaces' limit.
        """
        return self._portal.run(self._core.create_message_batch(max_size_in_bytes, timeout=timeout))
