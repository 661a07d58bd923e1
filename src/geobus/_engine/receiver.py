"""The async ``DedupReceiver``: both namespaces, one stream, each message once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import operator
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode

from .._closing import AsyncClosing
from .._config import Deadlines, DedupKey, DedupPolicy
from .._decisions.dedup import Copy, DuplicateTracker, Key, Verdict, key_of
from .._decisions.faults import Fault, classify
from .._models import ReceiverStats
from .._storage.seenset import Claim, SeenSet, open_seen_set
from .channels import ReceiveChannel
from .shared_keys import SharedKeys

_LOG = logging.getLogger("geobus")
_POLL_WAIT = 1.0  # seconds one SDK receive call waits; pumps loop on it
_KEEPER_INTERVAL = 1.0  # seconds between lock renewals and shared seen-set rechecks
_RENEW_AHEAD = 10.0  # a held copy's lock is renewed when it has this long left
_RECONNECT_BACKOFF = (0.2, 5.0)  # first and largest wait before reconnecting a failed namespace


@dataclass(eq=False)
class _Delivered:
    key: Key | None
    copy: Copy
    channel: ReceiveChannel


def _timestamp(message: ServiceBusReceivedMessage) -> float | None:
    try:
        locked_until = message.locked_until_utc
    except Exception:  # receive-and-delete messages have no lock
        return None
    return locked_until.timestamp() if locked_until is not None else None


def key_function(policy: DedupPolicy) -> Callable[[ServiceBusReceivedMessage], Key | None]:
    """How a received message's dedup key is read, per the policy: its value spelt with its
    type (``key_of``), None when the message has none. Never raises, whatever it holds."""
    read: Callable[[ServiceBusReceivedMessage], object]
    if policy.key == DedupKey.APPLICATION_PROPERTY:
        read = _property_reader(policy.property_name or "")
    else:
        read = operator.attrgetter("message_id" if policy.key == DedupKey.MESSAGE_ID else "subject")

    def key(message: ServiceBusReceivedMessage) -> Key | None:
        value = read(message)
        return None if value is None else key_of(value)

    return key


def _property_reader(name: str) -> Callable[[ServiceBusReceivedMessage], object]:
    encoded = name.encode()

    def read(message: ServiceBusReceivedMessage) -> object:
        properties = message.application_properties or {}
        # The SDK's pure-Python transport hands names and string values back as bytes (binary
        # values too: it cannot tell them apart). Read a value as the SDK reads a message_id:
        # text when it is UTF-8, bytes otherwise.
        value = properties.get(encoded, properties.get(name))
        if isinstance(value, bytes):
            with contextlib.suppress(UnicodeDecodeError):
                return value.decode()
        return value

    return read


class DedupReceiver(AsyncClosing):
    """Receives one queue or subscription from two namespaces as one stream (``geobus.aio``).

    Each message is handed to the application once, whichever namespace's copy
    arrives first; the other copy is held until the application settles the first,
    then settled the same way. Abandoning a message, or losing its lock, hands the
    twin to the application instead — a duplicate never costs a message.

    Messages are the SDK's own ``ServiceBusReceivedMessage``; settle them through
    this receiver. ``namespace_of(message)`` tells where one came from. A namespace
    that fails or stalls is reconnected in the background without stopping the other.
    Task-safe within one event loop; not thread-safe.

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
        prefetch: int = 20,
        clock: Callable[[], float] = time.time,
        on_close: Any = None,
        seen_set: SeenSet | None = None,
    ) -> None:
        if len(channels) != 2:
            raise ValueError("a DedupReceiver needs exactly two namespaces")
        if max_wait_time is not None and max_wait_time <= 0:
            raise ValueError("max_wait_time must be positive")
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        policy = dedup or DedupPolicy()
        self._channels = list(channels)
        self._key = key_function(policy)
        self.deadlines = deadlines or Deadlines()
        self.receive_mode = receive_mode
        self.max_wait_time = max_wait_time
        self._prefetch = prefetch
        self._clock = clock
        self._tracker = DuplicateTracker(max_entries=policy.max_entries, max_age=policy.max_age, clock=clock)
        # A shared seen-set (``[dedup] store``): the fleet's memory of keys, asked about new ones.
        self._owns_store = seen_set is None  # a store given to it is the caller's to close
        if seen_set is None and policy.store != "memory":
            seen_set = open_seen_set(policy.store, max_entries=policy.max_entries)
        self._shared = SharedKeys(seen_set, policy, clock=clock) if seen_set is not None else None
        self._already_settled = receive_mode == ServiceBusReceiveMode.RECEIVE_AND_DELETE
        # None in the inbox only wakes a waiting receive_messages (a copy became ready).
        self._inbox: asyncio.Queue[tuple[ReceiveChannel, ServiceBusReceivedMessage] | None] | None = None
        self._ready: collections.deque[Copy] = collections.deque()
        self._delivered: dict[int, _Delivered] = {}
        # Receive-and-delete messages are settled on arrival and never come back to us:
        # keeping them in _delivered would grow without bound. Only their origin is kept,
        # for as long as the application holds the message.
        self._origins: weakref.WeakKeyDictionary[ServiceBusReceivedMessage, str] = weakref.WeakKeyDictionary()
        self._channel_of: dict[str, ReceiveChannel] = {c.name: c for c in channels}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pumps: list[asyncio.Task[None]] = []
        self._on_close = on_close
        self._closed = False
        self._received = {c.name: 0 for c in channels}
        self._queued = {c.name: 0 for c in channels}
        self._settling = {c.name: 0 for c in channels}  # duplicates being settled in the background
        self._settled = asyncio.Event()
        self._receive_errors = {c.name: 0 for c in channels}
        self._lag: dict[str, float | None] = {c.name: None for c in channels}
        self._delivered_count = 0
        self._absorbed = 0

    # -- inspection ----------------------------------------------------------------------

    @property
    def stats(self) -> ReceiverStats:
        """Counters only: safe to read from another thread (a metrics exporter)."""
        waiting = self._shared.waiting if self._shared is not None else 0
        return ReceiverStats(
            received=dict(self._received),
            delivered=self._delivered_count,
            duplicates_absorbed=self._absorbed,
            held=self._tracker.held + waiting,
            in_flight=self._tracker.in_flight - waiting,  # a waiting copy is the tracker's owner
            evictions=self._tracker.evictions + self._store_evictions(),
            receive_errors=dict(self._receive_errors),
            receive_lag=dict(self._lag),
        )

    def _store_evictions(self) -> int:
        """Keys the shared store dropped for room (SQLite, memory keep count; Redis does not)."""
        count = getattr(self._shared.store, "evictions", 0) if self._shared is not None else 0
        return count if isinstance(count, int) else 0

    def namespace_of(self, message: ServiceBusReceivedMessage) -> str:
        """The namespace ``message`` was received from.

        Raises:
            ValueError: this receiver did not hand out ``message`` (or it is settled).
        """
        if self._already_settled and message in self._origins:
            return self._origins[message]
        return self._record(message).copy.namespace

    def __repr__(self) -> str:
        return f"DedupReceiver(namespaces={[c.name for c in self._channels]!r}, mode={self.receive_mode.name})"

    # -- receiving ------------------------------------------------------------------------

    def _start(self) -> asyncio.Queue[tuple[ReceiveChannel, ServiceBusReceivedMessage] | None]:
        if self._closed:
            raise RuntimeError("this DedupReceiver is closed")
        if self._inbox is None:
            self._inbox = asyncio.Queue()
            loop = asyncio.get_running_loop()
            self._pumps = [loop.create_task(self._pump(channel)) for channel in self._channels]
            if not self._already_settled:
                self._pumps.append(loop.create_task(self._keep_held_locks()))
                if self._shared is not None:
                    shared = self._shared
                    leases = self._each_tick(lambda: self._recheck_shared(shared), "renewing shared seen-set leases")
                    self._pumps.append(loop.create_task(leases))
        return self._inbox

    async def _pump(self, channel: ReceiveChannel) -> None:
        """Feed one namespace's messages into the inbox; reconnect it when it fails or stalls.

        A namespace is asked for more only when the application holds none of its
        messages: the SDK makes a settlement wait for an in-flight receive call on
        the same receiver (up to its socket timeout), so receive-process-settle in
        turn, as the SDK's own loop does, is what keeps settlements fast.
        """
        inbox = self._inbox
        assert inbox is not None
        backoff = _RECONNECT_BACKOFF[0]
        # Not ``while True``: before Python 3.12, asyncio.wait_for swallows a cancellation
        # that lands as its awaitable completes (an Event set by a settlement, a batch
        # arriving), and close() would then wait for this loop forever.
        while not self._closed:
            await self._until_idle(channel.name)
            if self._closed:
                return
            try:
                batch = await channel.receive(
                    self._prefetch, _POLL_WAIT, timeout=_POLL_WAIT + self.deadlines.receive_stall
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._receive_errors[channel.name] += 1
                _LOG.warning(
                    "geobus: receiving from %r failed (%s); reconnecting in %.1f s",
                    channel.name,
                    type(exc).__name__,
                    backoff,
                )
                await channel.reset()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RECONNECT_BACKOFF[1])
                continue
            backoff = _RECONNECT_BACKOFF[0]
            self._queued[channel.name] += len(batch)
            self._received[channel.name] += len(batch)
            enqueued = batch[-1].enqueued_time_utc if batch else None
            if enqueued is not None:
                self._lag[channel.name] = max(0.0, time.time() - enqueued.timestamp())
            for message in batch:
                inbox.put_nowait((channel, message))

    def _busy(self, name: str) -> bool:
        # Duplicates being settled count as held: a receive call would make them wait.
        if self._queued[name] or self._settling[name]:
            return True
        if self._already_settled:
            return False
        now = self._clock()
        return any(
            record.copy.namespace == name and (record.copy.locked_until is None or record.copy.locked_until > now)
            for record in self._delivered.values()
        )

    async def _until_idle(self, name: str) -> None:
        while not self._closed and self._busy(name):
            self._settled.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._settled.wait(), _POLL_WAIT)

    async def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Up to ``max_message_count`` messages, waiting at most ``max_wait_time`` seconds
        (default: the receiver's ``max_wait_time``; None waits until one arrives)."""
        count = 1 if max_message_count is None else max_message_count
        if count < 1:
            raise ValueError("max_message_count must be at least 1")
        inbox = self._start()
        wait = self.max_wait_time if max_wait_time is None else max_wait_time
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        out: list[ServiceBusReceivedMessage] = []
        while len(out) < count:
            await self._promote_expired()
            if self._ready:
                out.append(self._deliver(self._ready.popleft()))
                continue
            if out and inbox.empty():
                break
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(inbox.get(), remaining)
            except asyncio.TimeoutError:
                break
            if item is None:
                continue  # woken: a copy became ready
            channel, message = item
            self._queued[channel.name] -= 1
            if not self._queued[channel.name]:
                # Wake its pump now: a batch of duplicates is never settled by the
                # application, so nothing else would until the pump's poll times out.
                self._settled.set()
            delivered = await self._arrived(channel, message)
            if delivered is not None:
                out.append(delivered)
        return out

    async def _arrived(
        self, channel: ReceiveChannel, message: ServiceBusReceivedMessage
    ) -> ServiceBusReceivedMessage | None:
        key = self._key(message)
        copy = Copy(channel.name, message.sequence_number, _timestamp(message), message)
        verdict = self._tracker.arrived(key, copy, already_settled=self._already_settled)
        if verdict is Verdict.DELIVER and self._shared is not None and key is not None:
            # New to this process: the fleet may have it in flight, or processed.
            try:
                verdict = await self._shared.admit(key, copy, already_settled=self._already_settled)
            except asyncio.CancelledError:
                # The caller gave up waiting: the copy goes back in line, not astray.
                self._queued[channel.name] += 1
                self._inbox_put((channel, message))
                raise
            if verdict is Verdict.HOLD:
                return None  # waits, as this process's owner copy, for the other worker
            if verdict in (Verdict.COMPLETE, Verdict.DEAD_LETTER):
                self._processed_elsewhere(key, copy, verdict)
                return None
        if verdict is Verdict.DELIVER:
            return self._deliver(copy, key)
        if verdict is Verdict.HOLD:
            return None
        if verdict is Verdict.DROP:
            self._absorbed += 1
        else:
            self._settle_in_background(copy, verdict)
        return None

    def _deliver(self, copy: Copy, key: Key | None = None) -> ServiceBusReceivedMessage:
        message: ServiceBusReceivedMessage = copy.payload
        if key is None:
            key = self._key(message)
        if self._already_settled:
            self._origins[message] = copy.namespace
        else:
            self._delivered[id(message)] = _Delivered(key, copy, self._channel_of[copy.namespace])
        self._delivered_count += 1
        return message

    def _inbox_put(self, item: tuple[ReceiveChannel, ServiceBusReceivedMessage] | None) -> None:
        if self._inbox is not None:
            self._inbox.put_nowait(item)

    def _processed_elsewhere(self, key: Key, copy: Copy, verdict: Verdict) -> None:
        """Another worker settled ``key``: this copy, and any twin held here, the same way."""
        settled = self._tracker.completed if verdict is Verdict.COMPLETE else self._tracker.dead_lettered
        for twin, twin_verdict in settled(key, copy):
            self._settle_in_background(twin, twin_verdict)
        self._settle_in_background(copy, verdict)

    async def _promote_expired(self) -> None:
        for record in self._delivered.values():
            record.copy.locked_until = _timestamp(record.copy.payload)
        for copy in self._tracker.sweep():  # held twins whose owner's lock ran out
            key = self._key(copy.payload)
            if self._shared is None or key is None:
                self._ready.append(copy)
                continue
            # The owner may have been waiting on another worker: ask the fleet again.
            verdict = await self._shared.admit(key, copy, already_settled=False)
            if verdict is Verdict.DELIVER:
                self._ready.append(copy)
            elif verdict in (Verdict.COMPLETE, Verdict.DEAD_LETTER):
                self._processed_elsewhere(key, copy, verdict)

    def __aiter__(self) -> DedupReceiver:
        return self

    async def __anext__(self) -> ServiceBusReceivedMessage:
        while True:
            batch = await self.receive_messages(1)
            if batch:
                return batch[0]
            if self.max_wait_time is not None:
                raise StopAsyncIteration

    # -- settling ------------------------------------------------------------------------

    def _record(self, message: ServiceBusReceivedMessage) -> _Delivered:
        record = self._delivered.get(id(message))
        if record is None or record.copy.payload is not message:
            raise ValueError("this message was not handed out by this DedupReceiver, or is already settled")
        return record

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        """Complete ``message``; its held copies are completed too."""
        record = self._record(message)
        await self._settle(record, lambda: record.channel.complete(message, timeout=self.deadlines.attempt))
        for copy, verdict in self._tracker.completed(record.key, record.copy):
            self._settle_in_background(copy, verdict)
        if self._shared is not None and record.key is not None:
            await self._shared.done(record.key, Claim.COMPLETED)

    async def dead_letter_message(
        self,
        message: ServiceBusReceivedMessage,
        reason: str | None = None,
        error_description: str | None = None,
    ) -> None:
        """Dead-letter ``message``; its held copies are dead-lettered the same way."""
        record = self._record(message)
        await self._settle(
            record,
            lambda: record.channel.dead_letter(
                message, reason=reason, description=error_description, timeout=self.deadlines.attempt
            ),
        )
        for copy, verdict in self._tracker.dead_lettered(record.key, record.copy):
            self._settle_in_background(copy, verdict, reason=reason, description=error_description)
        if self._shared is not None and record.key is not None:
            await self._shared.done(record.key, Claim.DEAD_LETTERED)

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        """Abandon ``message``: a held copy (or the redelivery) goes to the application."""
        record = self._record(message)
        try:
            await record.channel.abandon(message, timeout=self.deadlines.attempt)
        finally:
            await self._release(record)

    async def renew_message_lock(self, message: ServiceBusReceivedMessage) -> Any:
        """Renew ``message``'s lock on its namespace; returns the new locked-until time."""
        record = self._record(message)
        until = await record.channel.renew_lock(message, timeout=self.deadlines.attempt)
        record.copy.locked_until = until.timestamp() if until is not None else None
        return until

    async def _settle(self, record: _Delivered, action: Callable[[], Any]) -> None:
        try:
            await action()
        except Exception:
            # The lock is lost or the namespace is gone: this copy was not processed, so
            # its twin (or the redelivery) must be.
            await self._release(record)
            raise
        self._delivered.pop(id(record.copy.payload), None)
        self._settled.set()

    async def _release(self, record: _Delivered) -> None:
        self._delivered.pop(id(record.copy.payload), None)
        self._settled.set()
        twin = self._tracker.released(record.key, record.copy)
        if twin is not None:
            self._ready.append(twin)  # this process keeps the key: the twin goes to the application
        elif self._shared is not None and record.key is not None and not self._tracker.is_in_flight(record.key):
            await self._shared.release(record.key)  # the key left this process: free it

    def _in_background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settle_in_background(
        self,
        copy: Copy,
        verdict: Verdict,
        *,
        reason: str | None = None,
        description: str | None = None,
    ) -> None:
        self._absorbed += 1
        channel = self._channel_of[copy.namespace]
        message = copy.payload
        if verdict is Verdict.COMPLETE:
            action = channel.complete(message, timeout=self.deadlines.attempt)
        else:
            action = channel.dead_letter(
                message, reason=reason, description=description, timeout=self.deadlines.attempt
            )
        self._settling[copy.namespace] += 1
        self._in_background(self._quietly(action, copy))

    async def _quietly(self, action: Any, copy: Copy) -> None:
        try:
            await action
        except Exception as exc:
            # Not lost: an unsettled copy comes back after its lock expires, and is settled then.
            _LOG.info("geobus: settling a duplicate on %r failed (%s)", copy.namespace, type(exc).__name__)
        finally:
            self._settling[copy.namespace] -= 1
            self._settled.set()

    async def _each_tick(self, turn: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``turn`` every ``_KEEPER_INTERVAL`` until closed; a failed turn is logged, not fatal."""
        while not self._closed:  # a renewal's wait_for may swallow close()'s cancel (see _pump)
            await asyncio.sleep(_KEEPER_INTERVAL)
            try:
                await turn()
            except Exception:  # one bad turn must not end every renewal for good
                _LOG.exception("geobus: %s failed; trying again", what)

    async def _keep_held_locks(self) -> None:
        """Renew the locks of held copies, so a slow twin does not run them to the DLQ.

        Each namespace renews in a task of its own, started again on a tick only once its
        last one has ended: a namespace that does not answer delays its own renewals only,
        never the other's, nor the shared seen-set's leases (``_recheck_shared``, on a
        loop of its own)."""
        renewing: dict[str, asyncio.Task[None]] = {}

        async def turn() -> None:
            self._tracker.expire()  # on the loop, so that reading stats never writes
            held = list(self._tracker.held_copies())
            if self._shared is not None:
                held += self._shared.waiting_copies()
            for namespace, due in self._due_for_renewal(held).items():
                task = renewing.get(namespace)
                if task is None or task.done():
                    renewing[namespace] = asyncio.get_running_loop().create_task(self._renew_on(namespace, due))

        try:
            await self._each_tick(turn, "renewing held locks")
        finally:
            for task in renewing.values():
                task.cancel()
            await asyncio.gather(*renewing.values(), return_exceptions=True)

    def _due_for_renewal(self, copies: list[Copy]) -> dict[str, list[Copy]]:
        """Per namespace, the copies whose locks run out within ``_RENEW_AHEAD``, soonest first."""
        now = self._clock()
        due: dict[str, list[Copy]] = {}
        for copy in sorted(copies, key=lambda c: c.locked_until or 0.0):
            if copy.locked_until is not None and copy.locked_until - now <= _RENEW_AHEAD:
                due.setdefault(copy.namespace, []).append(copy)
        return due

    async def _renew_on(self, namespace: str, copies: list[Copy]) -> None:
        """Renew in turn (settlements on one SDK receiver go one at a time anyway). A
        namespace that does not answer is left until the next turn: a black-holed region
        costs one attempt deadline per turn, not one per message it holds."""
        channel = self._channel_of[namespace]
        for copy in copies:
            try:
                until = await channel.renew_lock(copy.payload, timeout=self.deadlines.attempt)
            except Exception as exc:
                if classify(exc) is Fault.AVAILABILITY:  # a lost lock is not an outage
                    return
                continue  # this lock is gone (its copy comes back, or its twin is delivered)
            copy.locked_until = until.timestamp() if until is not None else None

    async def _recheck_shared(self, shared: SharedKeys) -> None:
        """Ask again about copies waiting on another worker; renew the leases of keys held here."""
        for key, copy, verdict in await shared.recheck():
            if verdict is Verdict.DELIVER:
                self._ready.append(copy)  # the other worker died: its lease ran out
                self._inbox_put(None)
            else:
                self._processed_elsewhere(key, copy, verdict)
        # Held here: with the application under a live lock, or ready to be handed out.
        now = self._clock()
        held = {
            record.key
            for record in self._delivered.values()
            if record.key is not None and (record.copy.locked_until is None or record.copy.locked_until > now)
        }
        held |= {key for key in map(self._key, (copy.payload for copy in self._ready)) if key is not None}
        await shared.renew(held)

    # -- lifecycle --------------------------------------------------------------------------

    async def _give_back(self) -> None:
        """Settle what was fetched and never handed out, so it does not sit locked.

        A copy whose key was already processed is completed (a late twin: settling it
        now spares the next receiver a duplicate); one nobody has seen is abandoned, so
        it is available again at once; one whose twin the application still holds is
        left alone (locked, as the SDK leaves it), since giving it back would let
        another worker process it while the application's handler still runs.
        """
        if self._already_settled:
            return  # receive-and-delete: gone from the namespace the moment it arrived
        pending: list[tuple[ReceiveChannel, ServiceBusReceivedMessage, Verdict]] = [
            (self._channel_of[copy.namespace], copy.payload, Verdict.DELIVER) for copy in self._ready
        ]
        self._ready.clear()
        if self._shared is not None:  # their key is in flight elsewhere: give them back too
            pending += [(self._channel_of[c.namespace], c.payload, Verdict.DELIVER) for c in self._shared.forget_waiting()]
        while self._inbox is not None and not self._inbox.empty():
            item = self._inbox.get_nowait()
            if item is None:
                continue
            channel, message = item
            copy = Copy(channel.name, message.sequence_number, _timestamp(message), message)
            pending.append((channel, message, self._tracker.arrived(self._key(message), copy)))

        async def settle(channel: ReceiveChannel, message: ServiceBusReceivedMessage, verdict: Verdict) -> None:
            with contextlib.suppress(Exception):  # it comes back when its lock expires instead
                if verdict is Verdict.COMPLETE:
                    await channel.complete(message, timeout=self.deadlines.attempt)
                elif verdict is Verdict.DELIVER:
                    await channel.abandon(message, timeout=self.deadlines.attempt)

        settling = [settle(*item) for item in pending if item[2] in (Verdict.COMPLETE, Verdict.DELIVER)]
        if settling:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*settling), self.deadlines.attempt)

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
        for task in self._pumps:
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._give_back()
        if self._shared is not None:
            for key in self._shared.claimed:  # given back or never settled here: free for others
                await self._shared.release(key)
            if self._owns_store:
                await self._shared.close()
        await asyncio.gather(*(channel.close() for channel in self._channels), return_exceptions=True)
        if self._on_close is not None:
            await self._on_close()
