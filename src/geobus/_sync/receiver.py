"""The sync ``DedupReceiver``: the async core, run on the client's private loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage

from .._engine import receiver as core
from .._models import ReceiverStats
from .shell import Shell


class DedupReceiver(Shell[core.DedupReceiver]):
    """Receives one queue or subscription from two namespaces as one stream.

    The sync face of ``geobus.aio.DedupReceiver`` (see there for the duplicate
    rules and errors): ``for message in receiver: ...; receiver.complete_message(message)``.
    Each message reaches the application once, whichever namespace's copy came
    first; settle it through this receiver, and its twin is settled the same way.
    Thread-safe: calls are serialised on the client's event loop.

    Get one from ``GeoServiceBusClient.get_queue_receiver`` or
    ``get_subscription_receiver``. Iteration ends after ``max_wait_time`` seconds
    without a message (never, if it is None).
    """

    @property
    def stats(self) -> ReceiverStats:
        """A snapshot of this receiver's counters (``ReceiverStats``)."""
        return self._on_loop(lambda: self._core.stats)

    def namespace_of(self, message: ServiceBusReceivedMessage) -> str:
        """The namespace (``"primary"`` or ``"secondary"``) ``message`` was received from.

        Raises:
            ValueError: this receiver did not hand out ``message`` (or it is settled).
        """
        return self._on_loop(self._core.namespace_of, message)

    def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Up to ``max_message_count`` messages, each once; waits at most ``max_wait_time``
        seconds (default: the receiver's ``max_wait_time``; None waits for one).

        Returns the SDK's own messages (an empty list if none came in time).

        Raises:
            ValueError: ``max_message_count`` is below 1.
            RuntimeError: the receiver or its client is closed.
        """
        return self._portal.run(self._core.receive_messages(max_message_count, max_wait_time))

    def __iter__(self) -> Iterator[ServiceBusReceivedMessage]:
        return self

    def __next__(self) -> ServiceBusReceivedMessage:
        try:
            return self._portal.run(self._core.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        """Complete ``message`` on its namespace; its held twin is completed too.

        Raises:
            ValueError: this receiver did not hand out ``message`` (or it is settled).
            The SDK's settlement errors, unchanged (``MessageLockLostError``...).
        """
        self._portal.run(self._core.complete_message(message))

    def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        """Abandon ``message``: its held twin (or its redelivery) goes to the application.

        Raises:
            As ``complete_message``.
        """
        self._portal.run(self._core.abandon_message(message))

    def dead_letter_message(
        self,
        message: ServiceBusReceivedMessage,
        reason: str | None = None,
        error_description: str | None = None,
    ) -> None:
        """Dead-letter ``message`` with ``reason`` and ``error_description``; its held twin
        is dead-lettered the same way.

        Raises:
            As ``complete_message``.
        """
        self._portal.run(self._core.dead_letter_message(message, reason, error_description))

    def renew_message_lock(self, message: ServiceBusReceivedMessage) -> Any:
        """Renew ``message``'s lock on its namespace; returns the new locked-until time.

        Raises:
            As ``complete_message``.
        """
        return self._portal.run(self._core.renew_message_lock(message))
