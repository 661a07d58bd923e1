"""Settling a session's messages: ``DedupSessionReceiver``'s ``complete_message`` and the rest.

A mixin of ``DedupSessionReceiver`` (``receiver.py``). Each settlement goes to the
message's own namespace, then to the deduplicator (its twin is settled the same
way) and to the session's order (the marks; a message let go of is waited for again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.servicebus import ServiceBusReceivedMessage

from ..._config import Deadlines
from ..._decisions.actions import Deliver
from ..._decisions.dedup import Copy, Key
from ..._decisions.session_order import SessionOrder
from ..._decisions.session_stamps import Stamp
from ..dedup_runner import DedupRunner
from ..receiver_extras import DeferralsAndPeeks
from .channel import SessionChannel

_RENEW_MESSAGE = (
    "Renewing message lock is an invalid operation when working with sessions. Please renew the session lock instead."
)


@dataclass(eq=False)
class _Handed:
    key: Key | None
    copy: Copy
    stamp: Stamp | None


class SessionSettling:
    """``complete_message``, ``dead_letter_message``, ``defer_message``, ``abandon_message`` and
    ``renew_message_lock`` for a session receiver."""

    # Supplied by DedupSessionReceiver.
    channels: Mapping[str, SessionChannel]
    deadlines: Deadlines
    extras: DeferralsAndPeeks
    order: SessionOrder[Deliver] | None
    changed: asyncio.Event
    _runner: DedupRunner
    _deciding: asyncio.Lock
    _delivered: dict[int, _Handed]
    _settled: asyncio.Event

    if TYPE_CHECKING:

        def _record(self, message: ServiceBusReceivedMessage) -> _Handed: ...
        async def _settle(self, record: _Handed, settlement: Awaitable[None]) -> None: ...
        def _to_order(self) -> None: ...

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        """Complete ``message``; its twin is completed too."""
        record = self._record(message)
        channel = self.channels[record.copy.namespace]
        await self._settle(record, channel.complete(message, timeout=self.deadlines.attempt))
        self.extras.settled(record.key, record.copy)
        await self._decided(lambda: self._runner.dedup.completed(record.key), record)

    async def dead_letter_message(
        self, message: ServiceBusReceivedMessage, reason: str | None = None, error_description: str | None = None
    ) -> None:
        """Dead-letter ``message``; its twin is dead-lettered the same way."""
        record = self._record(message)
        channel = self.channels[record.copy.namespace]
        settle = channel.dead_letter(message, reason=reason, description=error_description, timeout=self.deadlines.attempt)
        await self._settle(record, settle)
        self.extras.settled(record.key, record.copy)
        dedup = self._runner.dedup
        await self._decided(lambda: dedup.dead_lettered(record.key, reason=reason, description=error_description), record)

    async def defer_message(self, message: ServiceBusReceivedMessage) -> None:
        """Defer ``message`` in its namespace; its twin is deferred too (now if held, else when it
        arrives). It counts as settled for the session's order (the next message is not held
        back for it). Receive it back with ``receive_deferred_messages``: its ``sequence_number``
        in this receiver, its ``deferral_handle`` in any receiver of the session."""
        record = self._record(message)
        channel = self.channels[record.copy.namespace]
        await self._settle(record, channel.defer(message, timeout=self.deadlines.attempt))
        self.extras.deferred(record.key, record.copy)
        await self._decided(lambda: self._runner.dedup.deferred(record.key), record)

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        """Abandon ``message``: its twin (or its redelivery) comes back to the application before
        the later messages of its producer, as the SDK's next receive gives it again."""
        record = self._record(message)
        try:
            await self.channels[record.copy.namespace].abandon(message, timeout=self.deadlines.attempt)
        finally:
            await self._release(record)

    async def renew_message_lock(self, message: ServiceBusReceivedMessage) -> Any:
        """Raises ``TypeError``, as the SDK does for a session's message: renew the session's lock
        (``session.renew_lock()``; geobus renews it in the background too)."""
        raise TypeError(_RENEW_MESSAGE)

    async def _decided(self, decide: Callable[[], Any], record: _Handed) -> None:
        async with self._deciding:
            await self._runner.run(decide())
        if self.order is not None:
            self.order.settled(record.stamp)

    async def _release(self, record: _Handed) -> None:
        self._delivered.pop(id(record.copy.payload), None)
        self._settled.set()
        if self.order is not None:
            self.order.released(record.stamp)  # before its copy comes back through _to_order
        async with self._deciding:
            await self._runner.run(self._runner.dedup.released(record.key, record.copy))
            if self.order is not None:
                self._to_order()
        self.changed.set()
