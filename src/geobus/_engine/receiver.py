"""The async ``DedupReceiver``: both namespaces, one stream, each message once.

The receiver does I/O only. Which copy the application sees, which are held,
settled as their twins were, or put to the shared seen-set is decided by its
``Deduplicator`` (``_decisions/deduplicator.py``): the receiver tells it what
happened, and its ``DedupRunner`` (``dedup_runner.py``) carries out the actions
that come back — SDK calls, store calls whose answers go back to it. What lock
times decide (when a pump may fetch, which keys are held) is in
``_decisions/locks.py``. Its background loops, a pump per namespace and the lock
keeper, are in ``pumps.py``; what it reads off a received message, in ``copies.py``;
peeking both namespaces, in ``peek.py``; receiving deferred messages back, in
``deferral.py`` (the deferral handles: ``_decisions/deferrals.py``).
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode, ServiceBusSubQueue

from .._closing import AsyncClosing
from .._config import Deadlines, DedupPolicy
from .._decisions.actions import Deliver
from .._decisions.dedup import Copy, Key
from .._decisions.locks import held_keys, namespace_busy
from .._storage.seenset import SeenSet
from .channels import ReceiveChannel
from .copies import copy_of, key_function, lock_time
from .handing import HandsOut, check_options
from .pumps import LockKeeper, ReceiverTimings, every, pump
from .receiver_extras import ReceiverExtras
from .shared_keys import key_scope
from .tasks import cancel_and_wait

_Fetched = tuple[ReceiveChannel, ServiceBusReceivedMessage]


@dataclass(eq=False)
class _Delivered:
    key: Key | None
    copy: Copy
    channel: ReceiveChannel


class DedupReceiver(ReceiverExtras, HandsOut[_Delivered], AsyncClosing):
    """Receives one queue or subscription from two namespaces as one stream (``geobus.aio``).

    Each message is handed to the application once, whichever namespace's copy
    arrives first; the other copy is held until the application settles the first,
    then settled the same way. Abandoning a message, or losing its lock, hands the
    twin to the application instead — a duplicate never costs a message.

    Messages are the SDK's own ``ServiceBusReceivedMessage``; settle them through
    this receiver. ``namespace_of(message)`` tells where one came from. A namespace
    that fails or stalls is reconnected in the background without stopping the other.
    Task-safe within one event loop; not thread-safe.

    ``sub_queue`` (``ServiceBusSubQueue.DEAD_LETTER`` or ``TRANSFER_DEAD_LETTER``) reads
    both namespaces' dead-letter queues, each message once; its keys in a shared
    seen-set are apart from the main queue's. ``auto_lock_renewer`` (an
    ``azure.servicebus.aio.AutoLockRenewer``) is registered with each message handed
    out, as the SDK's receiver does, and renews it through this receiver (so on the
    message's own namespace); held twins are renewed by the receiver itself.
    Deferral, deferral handles, peek and dead-letter rules: docs/receiving.md.

    Raises (from settlement): the SDK's errors, unchanged (``MessageLockLostError``,
    ``ServiceBusConnectionError``...); ``ValueError`` for a message this receiver
    did not hand out.
    """

    def __init__(
        self,
        channels: Sequence[ReceiveChannel],
        *,
        dedup: DedupPolicy | None = None,
        deadlines: Deadlines | None = None,
        receive_mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time: float | None = None,
        prefetch: int = 0,
        clock: Callable[[], float] = time.time,
        on_close: Any = None,
        seen_set: SeenSet | None = None,
        timings: ReceiverTimings | None = None,
        sub_queue: ServiceBusSubQueue | str | None = None,
        auto_lock_renewer: Any = None,
    ) -> None:
        check_options("DedupReceiver", channels, max_wait_time=max_wait_time, prefetch=prefetch, least_prefetch=0)
        if auto_lock_renewer is not None and receive_mode == ServiceBusReceiveMode.RECEIVE_AND_DELETE:
            raise ValueError("an auto_lock_renewer needs PEEK_LOCK: receive-and-delete messages have no lock")
        scope = key_scope(sub_queue)
        policy = dedup or DedupPolicy()
        self._timings = timings or ReceiverTimings()
        self._channels = list(channels)
        self._channel_of: dict[str, ReceiveChannel] = {c.name: c for c in channels}
        self._key = key_function(policy)
        self.deadlines = deadlines or Deadlines()
        self.receive_mode = receive_mode
        self.max_wait_time = max_wait_time
        self._prefetch = prefetch
        self._asked = 0  # max_message_count of the application's latest receive call
        self._waiters = 0  # receive calls waiting with nothing ready
        self._sub_queue = sub_queue
        self.auto_lock_renewer = auto_lock_renewer
        self._clock = clock
        self._init_handing(
            policy, self._channel_of, receive_mode=receive_mode, seen_set=seen_set, clock=clock,
            timings=self._timings, deadlines=self.deadlines, on_deferred=self._twin_deferred, key_scope=scope,
        )  # fmt: skip
        self._dedup = self._runner.dedup
        # None in the inbox only wakes a waiting receive_messages (a copy became ready).
        self._inbox: asyncio.Queue[_Fetched | None] | None = None
        # Receive-and-delete messages are settled on arrival and never come back to us:
        # keeping them in _delivered would grow without bound. Only their origin is kept,
        # for as long as the application holds the message.
        self._origins: weakref.WeakKeyDictionary[ServiceBusReceivedMessage, str] = weakref.WeakKeyDictionary()
        self._keeper = LockKeeper(
            self._channel_of, clock=clock, renew_ahead=self._timings.renew_ahead, deadlines=self.deadlines
        )
        self._loops: list[asyncio.Task[None]] = []
        self._on_close = on_close
        self._closed = False
        self._queued = {c.name: 0 for c in channels}  # fetched, not yet looked at
        self._init_extras()

    # -- inspection (``stats``: ``HandsOut``) ----------------------------------------------

    def namespace_of(self, message: ServiceBusReceivedMessage) -> str:
        """The namespace ``message`` was received (or peeked, or deferred) from.

        Raises:
            ValueError: this receiver did not hand out ``message`` (or it is settled).
        """
        if self._already_settled and message in self._origins:
            return self._origins[message]
        if id(message) in self._delivered:
            return self._record(message).copy.namespace
        seen = self._seen_in(message)
        if seen is None:
            raise ValueError("this message was not handed out by this DedupReceiver, or is already settled")
        return seen

    def __repr__(self) -> str:
        return f"DedupReceiver(namespaces={[c.name for c in self._channels]!r}, mode={self.receive_mode.name})"

    # -- receiving ------------------------------------------------------------------------

    def _start(self) -> asyncio.Queue[_Fetched | None]:
        if self._closed:
            raise RuntimeError("this DedupReceiver is closed")
        if self._inbox is None:
            self._inbox = asyncio.Queue()
            loop = asyncio.get_running_loop()
            self._loops = [loop.create_task(self._pump(channel)) for channel in self._channels]
            interval = self._timings.keeper_interval
            if not self._already_settled:
                self._loops.append(loop.create_task(every(interval, self._keep_locks, "renewing held locks")))
                if self._runner.store is not None:
                    keep = every(interval, self._keep_shared, "renewing shared seen-set leases")
                    self._loops.append(loop.create_task(keep))
        return self._inbox

    def _pump(self, channel: ReceiveChannel) -> Coroutine[Any, Any, None]:
        return pump(
            channel,
            self._counters[channel.name],
            fetch_size=self._fetch_size,
            timings=self._timings,
            receive_stall=self.deadlines.receive_stall,
            busy=functools.partial(self._busy, channel.name),
            settled=self._settled,
            fetched=self._fetched,
        )

    def _fetch_size(self) -> int:
        # What the application asks for in one call (as the SDK's receiver with no prefetch asks the
        # service), or more if told to fetch ahead: asked for more than its namespace holds, the SDK
        # waits 0.2 s after the first message for the rest (see handler_options.fetch_size).
        return max(self._prefetch, self._asked, 1)

    def _fetched(self, channel: ReceiveChannel, batch: list[ServiceBusReceivedMessage]) -> None:
        self._queued[channel.name] += len(batch)
        for message in batch:
            self._inbox_put((channel, message))

    def _busy(self, name: str) -> bool:
        return namespace_busy(
            queued=self._queued[name],
            settling=self._runner.settling_on(name),
            handed_out=[*(r.copy for r in self._delivered.values() if r.copy.namespace == name), *self._runner.ready_on(name)],
            twins=[copy for copy in self._dedup.twins_held() if copy.namespace == name],
            waited_for=self._waiters > 0,
            now=self._clock(),
        )

    async def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Up to ``max_message_count`` messages, waiting at most ``max_wait_time`` seconds
        (default: the receiver's ``max_wait_time``; None waits until one arrives)."""
        count = 1 if max_message_count is None else max_message_count
        if count < 1:
            raise ValueError("max_message_count must be at least 1")
        self._asked = count
        inbox = self._start()
        wait = self.max_wait_time if max_wait_time is None else max_wait_time
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        out: list[ServiceBusReceivedMessage] = []
        while len(out) < count:
            await self._promote_expired()
            ready = self._runner.take_ready()
            if ready is not None:
                out.append(self._hand_out(ready))
                continue
            if out and inbox.empty():
                break
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            self._waiters += 1
            self._settled.set()  # a pump held back by what the application holds may fetch now
            try:
                item = await asyncio.wait_for(inbox.get(), remaining)
            except asyncio.TimeoutError:
                break
            finally:
                self._waiters -= 1
            if item is None:
                continue  # woken: a copy became ready
            arrived = [item]
            while not inbox.empty():  # everything fetched: its claims go to a shared store as one call
                more = inbox.get_nowait()
                if more is not None:
                    arrived.append(more)
            if len(arrived) == 1:
                await self._looked_at(*arrived[0])  # a copy to deliver is ready now
            else:
                await asyncio.gather(*(self._looked_at(channel, message) for channel, message in arrived))
        return out

    async def _looked_at(self, channel: ReceiveChannel, message: ServiceBusReceivedMessage) -> None:
        """``_arrived``; the copy counts as fetched (its pump waits) until the deduplicator has decided."""
        try:
            await self._arrived(channel, message)
        finally:
            self._queued[channel.name] -= 1
            if not self._queued[channel.name]:
                # Wake its pump now: a batch of duplicates is never settled by the
                # application, so nothing else would until the pump's poll times out.
                self._settled.set()

    async def _arrived(self, channel: ReceiveChannel, message: ServiceBusReceivedMessage) -> None:
        copy = copy_of(channel, message)
        try:
            await self._runner.run(self._dedup.arrived(self._key(message), copy))
        except asyncio.CancelledError:
            # The caller gave up waiting while the store was asked: the copy goes back in line, not
            # astray, and its deduplicator, told the claim was given up, delivers it when it comes out.
            if not self._runner.is_ready(copy):
                self._queued[channel.name] += 1
                self._inbox_put((channel, message))
            raise

    def _hand_out(self, deliver: Deliver) -> ServiceBusReceivedMessage:
        copy = deliver.copy
        message: ServiceBusReceivedMessage = copy.payload
        if self._already_settled:
            self._origins[message] = copy.namespace
        else:
            self._delivered[id(message)] = _Delivered(deliver.key, copy, self._channel_of[copy.namespace])
            if self._renews_on_loop(self.auto_lock_renewer):
                self.auto_lock_renewer.register(self, message)  # it calls back renew_message_lock
        self._delivered_count += 1
        return message

    def _inbox_put(self, item: _Fetched | None) -> None:
        if self._inbox is not None:
            self._inbox.put_nowait(item)

    async def _promote_expired(self) -> None:
        for record in self._delivered.values():
            record.copy.locked_until = lock_time(record.copy.payload)
        await self._runner.run(self._dedup.sweep())  # held twins whose owner's lock ran out

    # -- the keeper's turns ------------------------------------------------------------------

    async def _keep_locks(self) -> None:
        self._dedup.expire()  # on the loop, so that reading stats never writes
        self._keeper.renew_due(self._dedup.held_copies())

    async def _keep_shared(self) -> None:
        """Ask again about copies waiting on another worker; keep the leases of keys held here."""
        await self._runner.run(self._dedup.recheck())
        if self._runner.has_ready:
            self._inbox_put(None)  # wake a waiting receive_messages: the other worker died
        handed_out = [(record.key, record.copy) for record in self._delivered.values()]
        held = held_keys(handed_out, self._runner.ready_keys(), self._clock())
        await self._runner.run(self._dedup.keep_leases(held))

    # -- settling (``_record``, ``_settle``: ``HandsOut``) --------------------------------

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        """Complete ``message``; its held copies are completed too."""
        record = self._record(message)
        await self._settle(record, record.channel.complete(message, timeout=self.deadlines.attempt))
        self._extras.settled(record.key, record.copy)
        await self._runner.run(self._dedup.completed(record.key))

    async def dead_letter_message(
        self,
        message: ServiceBusReceivedMessage,
        reason: str | None = None,
        error_description: str | None = None,
    ) -> None:
        """Dead-letter ``message``; its held copies are dead-lettered the same way."""
        record = self._record(message)
        dead_letter = record.channel.dead_letter(
            message, reason=reason, description=error_description, timeout=self.deadlines.attempt
        )
        await self._settle(record, dead_letter)
        self._extras.settled(record.key, record.copy)
        await self._runner.run(self._dedup.dead_lettered(record.key, reason=reason, description=error_description))

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        """Abandon ``message``: a held copy (or the redelivery) goes to the application."""
        record = self._record(message)
        try:
            await record.channel.abandon(message, timeout=self.deadlines.attempt)
        finally:
            await self._release(record)

    async def renew_message_lock(self, message: ServiceBusReceivedMessage, *, timeout: float | None = None) -> Any:
        """Renew ``message``'s lock on its namespace; returns the new locked-until time.

        ``timeout``: seconds for the call (default: ``deadlines.attempt``), as the SDK's.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        record = self._record(message)
        until = await record.channel.renew_lock(message, timeout=timeout or self.deadlines.attempt)
        record.copy.locked_until = until.timestamp() if until is not None else None
        return until

    async def _release(self, record: _Delivered) -> None:
        self._delivered.pop(id(record.copy.payload), None)
        self._settled.set()
        await self._runner.run(self._dedup.released(record.key, record.copy))

    # -- lifecycle --------------------------------------------------------------------------

    def _unread(self) -> list[tuple[Key | None, Copy]]:
        """Copies fetched and never looked at, emptying the inbox."""
        unread = []
        while self._inbox is not None and not self._inbox.empty():
            item = self._inbox.get_nowait()
            if item is not None:
                channel, message = item
                unread.append((self._key(message), copy_of(channel, message)))
        return unread

    async def close(self) -> None:
        """Stop receiving and close both namespaces' receivers. Safe to call twice.

        Copies fetched but never handed to the application are given back (abandoned,
        or completed when they are late twins of processed messages), so they do not
        wait for their locks to expire; this takes at most ``deadlines.attempt``.
        Messages the application holds unsettled, and their held twins, stay locked
        until their locks expire, as with the SDK's own receiver.
        """
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(self._loops)
        await self._keeper.close()
        await self._runner.give_back(self._unread())
        await self._runner.close()  # keys given back, or never settled here: free for others
        await asyncio.gather(*(channel.close() for channel in self._channels), return_exceptions=True)
        if self._on_close is not None:
            await self._on_close()
