"""What ``DedupReceiver`` and ``DedupSessionReceiver`` share: the messages handed out and not
yet settled, settling one of them, iteration, and the ``stats`` counters.

A mixin: the receiver supplies the attributes named below and ``receive_messages`` and
``_release`` (what letting go of a handed-out message means for it: a held twin, or the
session's order, goes on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sized
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode

from .._config import Deadlines, DedupPolicy
from .._decisions.dedup import Copy, Key
from .._models import ReceiverStats
from .._storage.seenset import SeenSet
from .channels import ReceiveChannel
from .dedup_runner import DedupRunner
from .pumps import PumpCounters, ReceiverTimings

if TYPE_CHECKING:
    from typing_extensions import Self


def check_options(kind: str, channels: Sized, *, max_wait_time: float | None, prefetch: int, least_prefetch: int) -> None:
    """Raises ``ValueError`` for a receiver over other than two namespaces, a ``max_wait_time``
    not above 0, or a ``prefetch`` below ``least_prefetch``."""
    if len(channels) != 2:
        raise ValueError(f"a {kind} needs exactly two namespaces")
    if max_wait_time is not None and max_wait_time <= 0:
        raise ValueError("max_wait_time must be positive")
    if prefetch < least_prefetch:
        raise ValueError(f"prefetch must be at least {least_prefetch}")


class Handed(Protocol):
    """A message handed to the application: its dedup key and the copy it is."""

    key: Key | None
    copy: Copy


R = TypeVar("R", bound=Handed)


class HandsOut(Generic[R]):
    """Settling, iteration and counters over the receiver's ``_delivered`` records."""

    # Set by _init_handing.
    _already_settled: bool
    _delivered: dict[int, R]  # id(message) -> its record, until it is settled
    _settled: asyncio.Event  # a settlement happened: a pump may ask its namespace again
    _runner: DedupRunner
    _counters: dict[str, PumpCounters]
    _delivered_count: int
    # Supplied by the receiver.
    max_wait_time: float | None

    if TYPE_CHECKING:

        async def receive_messages(
            self, max_message_count: int | None = 1, max_wait_time: float | None = None
        ) -> list[ServiceBusReceivedMessage]: ...
        async def _release(self, record: R) -> None: ...

    def _init_handing(
        self,
        policy: DedupPolicy,
        channels: Mapping[str, ReceiveChannel],
        *,
        receive_mode: ServiceBusReceiveMode,
        seen_set: SeenSet | None,
        clock: Callable[[], float],
        timings: ReceiverTimings,
        deadlines: Deadlines,
        on_deferred: Callable[[Copy], None],
        key_scope: str = "",
    ) -> None:
        """Set up the records, the counters and the ``DedupRunner`` over ``channels``."""
        self._already_settled = receive_mode == ServiceBusReceiveMode.RECEIVE_AND_DELETE
        self._settled = asyncio.Event()
        self._runner = DedupRunner(
            policy,
            channels,
            seen_set=seen_set,
            already_settled=self._already_settled,
            clock=clock,
            store_backoff=timings.store_backoff,
            deadlines=deadlines,
            settled=self._settled,
            on_deferred=on_deferred,
            key_scope=key_scope,
        )
        self._delivered = {}
        self._delivered_count = 0
        self._counters = {name: PumpCounters() for name in channels}

    def _record(self, message: ServiceBusReceivedMessage) -> R:
        record = self._delivered.get(id(message))
        if record is None or record.copy.payload is not message:
            raise ValueError(f"this message was not handed out by this {type(self).__name__}, or is already settled")
        return record

    async def _settle(self, record: R, settlement: Awaitable[None]) -> None:
        try:
            await settlement
        except Exception:
            # The lock is lost or the namespace is gone: this copy was not processed, so
            # its twin (or the redelivery) must be.
            await self._release(record)
            raise
        self._delivered.pop(id(record.copy.payload), None)
        self._settled.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ServiceBusReceivedMessage:
        while True:
            batch = await self.receive_messages(1)
            if batch:
                return batch[0]
            if self.max_wait_time is not None:
                raise StopAsyncIteration

    @property
    def stats(self) -> ReceiverStats:
        """Counters only: safe to read from another thread (a metrics exporter)."""
        dedup = self._runner.dedup
        store = self._runner.store
        return ReceiverStats(
            received={name: counters.received for name, counters in self._counters.items()},
            delivered=self._delivered_count,
            duplicates_absorbed=self._runner.absorbed,
            held=dedup.held,
            in_flight=dedup.in_flight,
            evictions=dedup.evictions + (store.evictions if store is not None else 0),
            receive_errors={name: counters.errors for name, counters in self._counters.items()},
            receive_lag={name: counters.lag for name, counters in self._counters.items()},
        )
