"""The sync ``DedupReceiver``: the async core, run on the client's private loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage

from .._closing import Closing
from .._engine import receiver as core
from .._models import ReceiverStats
from .portal import Portal


async def _value(fn: Any, *args: Any) -> Any:
    return fn(*args)


class DedupReceiver(Closing):
    """Receives one queue or subscription from two namespaces as one stream.

    The sync face of ``geobus.aio.DedupReceiver`` (see there for the duplicate
    rules and errors): ``for message in receiver: ...; receiver.complete_message(message)``.
    Thread-safe: calls are serialised on the client's event loop.
    """

    def __init__(self, portal: Portal, receiver: core.DedupReceiver) -> None:
        self._portal = portal
        self._core = receiver

    @property
    def stats(self) -> ReceiverStats:
        result: ReceiverStats = self._portal.run(_value(lambda: self._core.stats))
        return result

    def namespace_of(self, message: ServiceBusReceivedMessage) -> str:
        result: str = self._portal.run(_value(self._core.namespace_of, message))
        return result

    def __repr__(self) -> str:
        return repr(self._core)

    def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        return self._portal.run(self._core.receive_messages(max_message_count, max_wait_time))

    def __iter__(self) -> Iterator[ServiceBusReceivedMessage]:
        return self

    def __next__(self) -> ServiceBusReceivedMessage:
        try:
            return self._portal.run(self._core.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        self._portal.run(self._core.complete_message(message))

    def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        self._portal.run(self._core.abandon_message(message))

    def dead_letter_message(
        self,
        message: ServiceBusReceivedMessage,
        reason: str | None = None,
        error_description: str | None = None,
    ) -> None:
        self._portal.run(self._core.dead_letter_message(message, reason, error_description))

    def renew_message_lock(self, message: ServiceBusReceivedMessage) -> Any:
        return self._portal.run(self._core.renew_message_lock(message))

    def close(self) -> None:
        """Close this receiver. Safe to call twice, and after its client closed (then a no-op:
        the client's close closed it)."""
        if self._portal.closed:
            return
        self._portal.run(self._core.close())
