"""The sync session receiver and its ``session``: the async core, run on the client's private loop."""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage

from .._engine.sessions import receiver as core
from .._engine.sessions.session import ReplicatedSession as CoreSession
from .._engine.sessions.session import SessionStats
from .._models import ReceiverStats
from .portal import Portal
from .shell import Shell


class ReplicatedSession:
    """``receiver.session`` of a sync session receiver: the SDK's ``ServiceBusSession`` surface
    over a session owned in both namespaces (``geobus.aio``'s has the details). Thread-safe."""

    def __init__(self, portal: Portal, core_session: CoreSession) -> None:
        self._portal = portal
        self._core = core_session

    @property
    def session_id(self) -> str | None:
        """The session's id: the one asked for, or (next-available) the one taken; None before that."""
        return self._core.session_id

    @property
    def locked_until_utc(self) -> datetime.datetime | None:
        """When the earliest of the namespaces' session locks runs out."""
        return self._core.locked_until_utc

    @property
    def auto_renew_error(self) -> BaseException | None:
        """Always None: geobus renews the session's locks itself."""
        return self._core.auto_renew_error

    def get_state(self, *, timeout: float | None = None, **kwargs: Any) -> bytes | None:
        """The newest state of the session in either namespace. Raises ``ReplicationError``
        when no namespace answered."""
        return self._portal.run(self._core.get_state(timeout=timeout, **kwargs))

    def set_state(self, state: str | bytes | bytearray | None, *, timeout: float | None = None, **kwargs: Any) -> None:
        """Set the session's state in both namespaces as a new version. Raises ``ReplicationError``
        when no namespace took it."""
        self._portal.run(self._core.set_state(state, timeout=timeout, **kwargs))

    def renew_lock(self, *, timeout: float | None = None, **kwargs: Any) -> datetime.datetime:
        """Renew the session's lock in both namespaces; the earlier expiry. Raises
        ``SessionLockLostError`` when none was renewed."""
        return self._portal.run(self._core.renew_lock(timeout=timeout, **kwargs))

    def __repr__(self) -> str:
        return repr(self._core)


class DedupSessionReceiver(Shell[core.DedupSessionReceiver]):
    """Receives one session from two namespaces, each message once, in its producer's order.

    The sync face of ``geobus.aio.DedupSessionReceiver`` (see there, and
    docs/sessions.md, for ownership, order and state). Get one from
    ``GeoServiceBusClient.get_queue_receiver(queue, session_id=...)`` or
    ``get_subscription_receiver(..., session_id=...)``; the session (next-available:
    a session) is taken on first use. Thread-safe: calls are serialised on the
    client's event loop.
    """

    def __init__(self, portal: Portal, core_receiver: core.DedupSessionReceiver) -> None:
        super().__init__(portal, core_receiver)
        self.session = ReplicatedSession(portal, core_receiver.session)

    @property
    def stats(self) -> ReceiverStats:
        """A snapshot of this receiver's counters (``ReceiverStats``)."""
        return self._on_loop(lambda: self._core.stats)

    @property
    def session_stats(self) -> SessionStats:
        """The session's order and ownership counters (``SessionStats``)."""
        return self._on_loop(lambda: self._core.session_stats)

    def namespace_of(self, message: ServiceBusReceivedMessage) -> str:
        """The namespace ``message`` was received (peeked, deferred) from. Raises ``ValueError``
        for one not handed out, peeked or deferred here."""
        return self._on_loop(self._core.namespace_of, message)

    def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Up to ``max_message_count`` messages of the session, in order; as the async receiver's."""
        return self._portal.run(self._core.receive_messages(max_message_count, max_wait_time))

    def __enter__(self) -> DedupSessionReceiver:
        """Take the session; if that fails, the receiver is closed and the error raised (as
        ``geobus.aio``'s ``async with``)."""
        self._portal.run(self._core.__aenter__())
        return self

    def __iter__(self) -> Iterator[ServiceBusReceivedMessage]:
        return self

    def __next__(self) -> ServiceBusReceivedMessage:
        try:
            return self._portal.run(self._core.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        """Complete ``message``; its twin is completed too."""
        self._portal.run(self._core.complete_message(message))

    def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        """Abandon ``message``: its twin (or redelivery) comes back before its producer's later messages."""
        self._portal.run(self._core.abandon_message(message))

    def dead_letter_message(
        self, message: ServiceBusReceivedMessage, reason: str | None = None, error_description: str | None = None
    ) -> None:
        """Dead-letter ``message``; its twin is dead-lettered the same way."""
        self._portal.run(self._core.dead_letter_message(message, reason, error_description))

    def defer_message(self, message: ServiceBusReceivedMessage) -> None:
        """Defer ``message``; its twin is deferred too. Receive it back by its ``sequence_number``
        here, or its ``deferral_handle`` in any receiver of the session."""
        self._portal.run(self._core.defer_message(message))

    def receive_deferred_messages(
        self, sequence_numbers: int | str | Sequence[int | str], *, timeout: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Receive deferred messages of the session back, each once, from whichever namespace
        answers; as ``geobus.aio.DedupSessionReceiver.receive_deferred_messages``."""
        return self._portal.run(self._core.receive_deferred_messages(sequence_numbers, timeout=timeout))

    def peek_messages(
        self, max_message_count: int = 1, *, sequence_number: int | str | None = None, timeout: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Browse the session in both namespaces without a lock, each message once; as
        ``geobus.aio.DedupSessionReceiver.peek_messages``."""
        peek = self._core.peek_messages(max_message_count, sequence_number=sequence_number, timeout=timeout)
        return self._portal.run(peek)

    def deferral_handle(self, message: ServiceBusReceivedMessage) -> str:
        """The handle naming ``message``'s deferred copies in both namespaces. Raises
        ``ValueError`` for a message this receiver has not deferred."""
        return self._on_loop(self._core.deferral_handle, message)

    def sequence_numbers_of(self, message: ServiceBusReceivedMessage) -> dict[str, int]:
        """Each namespace's sequence number of ``message``'s copies, as far as this receiver saw
        them. Raises ``ValueError`` for one it did not hand out, peek or defer."""
        return self._on_loop(self._core.sequence_numbers_of, message)

    def renew_message_lock(self, message: ServiceBusReceivedMessage) -> Any:
        """Raises ``TypeError``, as the SDK does for a session's message: renew the session's lock."""
        return self._portal.run(self._core.renew_message_lock(message))
