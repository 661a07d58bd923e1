"""Deferral and peek on a ``DedupSessionReceiver``: ``DedupReceiver``'s, within the owned session.

A mixin of ``DedupSessionReceiver`` (``receiver.py``), over the same
``DeferralsAndPeeks`` as ``DedupReceiver`` (``receiver_extras.py``): each
namespace's SDK session receiver asks its namespace for this session's messages
only, as the SDK's session receiver does. A message received back is handed out
beside the session's order (it was settled, for the order, when it was deferred).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from azure.servicebus import ServiceBusReceivedMessage

from ..._decisions.actions import Deliver
from ..._decisions.session_order import Release
from ..deferral import Request
from ..receiver_extras import DeferralsAndPeeks

if TYPE_CHECKING:
    from .settling import _Handed


class SessionExtras:
    """``peek_messages``, ``receive_deferred_messages``, ``deferral_handle`` and
    ``sequence_numbers_of`` for a session receiver."""

    # Supplied by DedupSessionReceiver.
    extras: DeferralsAndPeeks
    _deciding: asyncio.Lock
    _delivered: dict[int, _Handed]

    if TYPE_CHECKING:

        async def _own(self) -> None: ...
        def _hand_out(self, release: Release[Deliver]) -> ServiceBusReceivedMessage: ...

    async def peek_messages(
        self, max_message_count: int = 1, *, sequence_number: int | str | None = None, timeout: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Browse the session in both namespaces without taking a message lock: up to
        ``max_message_count`` of its messages, each once (twins by dedup key), in the order they
        were enqueued; as ``DedupReceiver.peek_messages`` (``sequence_number`` in each
        namespace's numbering, a handle, or where the last peek left off; the first peek starts
        at the session's first message, not after what the receiver fetched). Takes the session
        first if the receiver has not yet. They are in enqueue order, not the producer's order
        the receiver restores (the two namespaces enqueue independently).

        Raises:
            ValueError: ``max_message_count`` below 1, a malformed handle, or ``timeout`` not above 0.
            RuntimeError: the receiver is closed. As ``receive_messages`` when the session cannot be taken.
            The first namespace's error, when neither answered.
        """
        deadline = self.extras.timeout(timeout)
        await self._own()
        return await self.extras.peek(max_message_count, sequence_number, timeout=deadline)

    async def receive_deferred_messages(
        self, sequence_numbers: Request | Sequence[Request], *, timeout: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Receive deferred messages of the session back, each once, from whichever namespace
        answers; as ``DedupReceiver.receive_deferred_messages`` (sequence numbers, deferral
        handles). A twin that comes back is held and settled as the message returned is. The
        messages are handed out as they come back, outside the producers' order (a deferred
        message counted as settled for it).

        Raises:
            As ``DedupReceiver.receive_deferred_messages``; as ``receive_messages`` when the
            session cannot be taken.
        """
        deadline = self.extras.timeout(timeout)
        await self._own()
        returned = await self.extras.take_back(sequence_numbers, timeout=deadline, deciding=self._deciding)
        return [self._hand_out(Release(deliver, None)) for deliver in returned]

    def deferral_handle(self, message: ServiceBusReceivedMessage) -> str:
        """The handle naming ``message``'s deferred copies in both namespaces
        (``geobus:primary=12;secondary=9``), for ``receive_deferred_messages`` in any receiver of
        the same session, in any process.

        Raises:
            ValueError: this receiver has not deferred ``message``.
        """
        return self.extras.handle(message)

    def sequence_numbers_of(self, message: ServiceBusReceivedMessage) -> dict[str, int]:
        """Each namespace's sequence number of ``message`` as far as this receiver saw its copies
        (peeked, deferred, or handed out); as ``DedupReceiver.sequence_numbers_of``.

        Raises:
            ValueError: this receiver did not hand out, peek or defer ``message``.
        """
        seen = self.extras.sequence_numbers(message)
        if seen is not None:
            return seen
        record = self._delivered.get(id(message))
        if record is None or record.copy.payload is not message:
            raise ValueError("this receiver did not hand out, peek or defer this message")
        return {record.copy.namespace: message.sequence_number or 0}
