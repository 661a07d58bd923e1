"""The sync ``DedupReceiver``: the async core, run on the client's private loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusSubQueue

from .._engine import receiver as core
from .._models import ReceiverStats
from .portal import Portal
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

    ``sub_queue`` reads both namespaces' dead-letter queues, each message once. An
    ``auto_lock_renewer`` (a sync ``azure.servicebus.AutoLockRenewer``) is registered
    with each message handed out and renews it through this receiver, on the
    message's own namespace. Deferral, peek and their sequence numbers over two
    namespaces: docs/receiving.md.
    """

    def __init__(self, portal: Portal, core_receiver: core.DedupReceiver) -> None:
        super().__init__(portal, core_receiver)
        renewer = core_receiver.auto_lock_renewer
        # A sync renewer renews from its own threads: through this shell, never on the loop.
        self._renewer = None if renewer is None or core_receiver._renews_on_loop(renewer) else renewer

    def _registered(self, messages: list[ServiceBusReceivedMessage]) -> list[ServiceBusReceivedMessage]:
        if self._renewer is not None:
            for message in messages:
                self._renewer.register(self, message)  # it calls back renew_message_lock
        return messages

    # -- the SDK receiver's properties -------------------------------------------------------------

    @property
    def client_identifier(self) -> str:
        """As ``geobus.aio.DedupReceiver.client_identifier``."""
        return self._core.client_identifier

    @property
    def fully_qualified_namespace(self) -> str | None:
        """The primary namespace's host name (``fully_qualified_namespaces``: both)."""
        return self._core.fully_qualified_namespace

    @property
    def fully_qualified_namespaces(self) -> dict[str, str | None]:
        """Each namespace's host name, by geobus's name for it."""
        return self._core.fully_qualified_namespaces

    @property
    def entity_path(self) -> str | None:
        """The queue, or ``topic/Subscriptions/subscription``; a sub-queue's adds it (``q/$DeadLetterQueue``)."""
        return self._core.entity_path

    @property
    def sub_queue(self) -> ServiceBusSubQueue | str | None:
        """The sub-queue read in both namespaces (``DEAD_LETTER``...), None for the entity itself."""
        return self._core.sub_queue

    @property
    def session(self) -> None:
        """None: not a session receiver."""
        return None

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
        return self._registered(self._portal.run(self._core.receive_messages(max_message_count, max_wait_time)))

    def __iter__(self) -> Iterator[ServiceBusReceivedMessage]:
        return self

    def __next__(self) -> ServiceBusReceivedMessage:
        try:
            message = self._portal.run(self._core.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return self._registered([message])[0]

    def next(self) -> ServiceBusReceivedMessage:
        """The next message, as ``next(receiver)`` (the SDK's sync receiver has this method)."""
        return self.__next__()

    def peek_messages(
        self, max_message_count: int = 1, *, sequence_number: int | str | None = None, timeout: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Browse both namespaces without a lock, each message once; see
        ``geobus.aio.DedupReceiver.peek_messages`` for ``sequence_number`` over two namespaces.

        Raises:
            As ``geobus.aio.DedupReceiver.peek_messages``.
        """
        peek = self._core.peek_messages(max_message_count, sequence_number=sequence_number, timeout=timeout)
        return self._portal.run(peek)

    def sequence_numbers_of(self, message: ServiceBusReceivedMessage) -> dict[str, int]:
        """Each namespace's sequence number of ``message``'s copies, as far as this receiver saw
        them (peeked, deferred, or handed out).

        Raises:
            ValueError: this receiver did not hand out, peek or defer ``message``.
        """
        return self._on_loop(self._core.sequence_numbers_of, message)

    def defer_message(self, message: ServiceBusReceivedMessage) -> None:
        """Defer ``message`` on its namespace; its twin is deferred too (now if held, else when it
        arrives). Receive it back by its ``sequence_number`` here, or ``deferral_handle`` anywhere.

        Raises:
            As ``complete_message``.
        """
        self._portal.run(self._core.defer_message(message))

    def deferral_handle(self, message: ServiceBusReceivedMessage) -> str:
        """The handle naming ``message``'s deferred copies in both namespaces
        (``geobus:primary=12;secondary=9``), for ``receive_deferred_messages`` in any process.

        Raises:
            ValueError: this receiver has not deferred ``message``.
        """
        return self._on_loop(self._core.deferral_handle, message)

    def receive_deferred_messages(
        self, sequence_numbers: int | str | Sequence[int | str], *, timeout: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Receive deferred messages back, each once, from whichever namespace answers: sequence
        numbers as the SDK takes them, and deferral handles; see
        ``geobus.aio.DedupReceiver.receive_deferred_messages``.

        Raises:
            As ``geobus.aio.DedupReceiver.receive_deferred_messages``.
        """
        fetch = self._core.receive_deferred_messages(sequence_numbers, timeout=timeout)
        return self._registered(self._portal.run(fetch))

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

    def renew_message_lock(self, message: ServiceBusReceivedMessage, *, timeout: float | None = None) -> Any:
        """Renew ``message``'s lock on its namespace; returns the new locked-until time.
        ``timeout``: seconds for the call (default: ``deadlines.attempt``).

        Raises:
            As ``complete_message``; ``ValueError`` for a ``timeout`` that is not positive.
        """
        return self._portal.run(self._core.renew_message_lock(message, timeout=timeout))
