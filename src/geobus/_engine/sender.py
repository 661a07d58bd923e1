"""The async ``ReplicatedSender``: one send, two namespaces, a deadline that holds."""

from __future__ import annotations

import asyncio
import datetime
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.amqp import AmqpAnnotatedMessage
from typing_extensions import Self

from .._closing import AsyncClosing
from .._config import Deadlines, OutboxPolicy, ReplicationMode, WriteQuorum
from .._decisions.health import Health
from .._decisions.judge import SendJudge
from .._decisions.validate import prepare_message, validate_schedule_time
from .._errors import (
    NamespaceTimeoutError,
    NamespaceUnavailableError,
    OutboxFullError,
    ReplicationError,
)
from .._models import ReplicatedMessageBatch, ScheduledMessage, SenderStats, SendResult
from .._storage.outbox import ANY_LANE
from .channels import SendChannel
from .drainer import AsyncOutbox, Drainer

_LOG = logging.getLogger("geobus")

Message = ServiceBusMessage | AmqpAnnotatedMessage


def _payload(message: Any) -> tuple[Any, list[Message]]:
    """Validate what ``send_messages`` was given; return what to send and the messages in it."""
    if isinstance(message, ReplicatedMessageBatch):
        return list(message.messages), list(message.messages)
    if isinstance(message, ServiceBusMessageBatch):
        raise TypeError("use ReplicatedSender.create_message_batch(): an SDK batch is bound to one namespace")
    if isinstance(message, (ServiceBusMessage, AmqpAnnotatedMessage)):
        prepare_message(message)
        return message, [message]
    if isinstance(message, Iterable) and not isinstance(message, (str, bytes, dict)):
        messages = list(message)
        for index, item in enumerate(messages):
            prepare_message(item, field=f"messages[{index}].")
        return messages, messages
    raise TypeError(f"cannot send {type(message).__name__}; expected a message, a list of them, or a batch")


class ReplicatedSender(AsyncClosing):
    """Sends every message to two Service Bus namespaces (``geobus.aio``).

    Passive mode sends to the active namespace and, when it is unavailable, to
    the other, which then becomes active. Active mode sends both copies
    concurrently; ``write_quorum`` says whether one (``any``) or both (``all``)
    must land. Both copies carry the same MessageId, so a ``DedupReceiver``
    processes the message once.

    A namespace whose circuit breaker is open, or that the operator paused, is
    skipped without waiting. With an outbox, what no namespace could take is
    kept on disk and ``send_messages`` returns normally: ``SendResult.buffered``
    names the lanes it waits in (``"any"`` in passive mode, the namespaces that
    missed their copy in active mode), and the sender's drainer sends it, in
    order, when a namespace is back.

    Every call finishes within ``deadlines.send`` (or its ``timeout``), whatever
    the network does. Task-safe within one event loop; not thread-safe.

    Only an outage (a namespace that cannot be reached or does not answer)
    fails over, counts toward a circuit breaker or is buffered; see
    ``geobus._errors`` for how every error is read.

    Raises (from ``send_messages``):
        TypeError, ValueError: a field the SDK cannot encode or Service Bus would
            refuse, naming it (``message_id: float is not a valid message id
            type``), before anything is sent or buffered.
        ReplicationError: no namespace took the message, or quorum ``all`` was not
            met, and there is no outbox; or quorum ``all`` was not met for a reason
            no outbox can wait out (the message's fault or an unknown error on one
            namespace while the other took it).
        OutboxFullError: ...and the outbox is full (nothing was buffered).
        azure.servicebus.exceptions.MessageSizeExceededError, or the SDK's error
            for a message it could not encode: raised unchanged, without failover.
        ServiceBusAuthenticationError, ServiceBusAuthorizationError,
        MessagingEntityNotFoundError, MessagingEntityDisabledError: raised
            unchanged, without failover (the namespace's setup is wrong).
        NamespaceError: a namespace answered with an error geobus cannot
            classify (a ServiceBusError); no failover, nothing buffered.
    """

    def __init__(
        self,
        channels: Sequence[SendChannel],
        *,
        mode: ReplicationMode = ReplicationMode.PASSIVE,
        write_quorum: WriteQuorum = WriteQuorum.ANY,
        deadlines: Deadlines | None = None,
        health: Health | None = None,
        outbox: AsyncOutbox | None = None,
        outbox_policy: OutboxPolicy | None = None,
        entity: str = "",
        on_start: Any = None,
        on_close: Any = None,
    ) -> None:
        if len(channels) != 2:
            raise ValueError("a ReplicatedSender needs exactly two namespaces")
        self._channels = {channel.name: channel for channel in channels}
        # Shared by every sender of one client: a namespace's health is not per entity.
        self._health = health or Health([channel.name for channel in channels])
        self.mode = ReplicationMode(mode)
        self.write_quorum = WriteQuorum(write_quorum)
        self._judge = SendJudge(quorum=self.write_quorum)
        self.deadlines = deadlines or Deadlines()
        self.entity = entity
        self._outbox = outbox
        self._drainer = (
            Drainer(self, outbox, outbox_policy or OutboxPolicy(), entity) if outbox is not None else None
        )
        self._on_start = on_start
        self._on_close = on_close
        self._sent = dict.fromkeys(self._channels, 0)
        self._failures = dict.fromkeys(self._channels, 0)
        self._failovers = 0
        self._partial_writes = 0
        self._missing: set[str] = set()  # namespaces missing copies since their last success
        self._buffered = 0
        self._started = False
        self._closed = False
        self._warming: asyncio.Task[None] | None = None

    # -- inspection ---------------------------------------------------------------

    @property
    def active_namespace(self) -> str:
        """The namespace passive mode sends to first."""
        return self._health.passive_order()[0]

    @property
    def stats(self) -> SenderStats:
        drainer = self._drainer
        depth = drainer.depth() if drainer else 0
        return SenderStats(
            active_namespace=self.active_namespace,
            mode=self.mode.value,
            messages_sent=dict(self._sent),
            send_failures=dict(self._failures),
            failovers=self._failovers,
            partial_writes=self._partial_writes,
            failbacks=self._health.failbacks,
            breakers=self._health.breaker_states(),
            buffered=self._buffered,
            drained=drainer.drained if drainer else 0,
            outbox_dead_lettered=drainer.dead_lettered if drainer else 0,
            outbox_depth=depth,
            # Depth first: a lane is emptied before its head is forgotten, so no age for an empty outbox.
            outbox_oldest_age=drainer.oldest_age() if drainer and depth else None,
        )

    def __repr__(self) -> str:
        return (
            f"ReplicatedSender(mode={self.mode.value!r}, namespaces={list(self._channels)!r}, "
            f"active={self.active_namespace!r})"
        )

    # -- sending ---------------------------------------------------------------------

    async def send_messages(self, message: Any, *, timeout: float | None = None) -> SendResult:
        """Send a message, a list of messages or a ``ReplicatedMessageBatch`` to both namespaces.

        Every field of every message is checked first (see the class's Raises):
        a list with one bad message sends none of them.

        Returns a ``SendResult``: ``landed`` names the namespaces that stored the
        message(s), ``buffered`` the outbox lanes that keep them for later;
        ``missed`` the namespaces that did not, with their errors.
        """
        await self._start()
        payload, messages = _payload(message)
        if not messages:
            return SendResult(landed=(), missed={})
        deadline = self._deadline(timeout)
        self._health.refresh()
        self._warm_standby()

        async def attempt(channel: SendChannel, seconds: float) -> None:
            await channel.send(payload, timeout=seconds)

        if self.mode == ReplicationMode.PASSIVE:
            return await self._send_passive(attempt, deadline, messages)
        return await self._send_active(attempt, deadline, messages)

    async def schedule_messages(
        self,
        messages: Message | Sequence[Message],
        schedule_time_utc: datetime.datetime,
        *,
        timeout: float | None = None,
    ) -> list[ScheduledMessage]:
        """Schedule messages on the namespace(s) a send would reach.

        Returns one ``ScheduledMessage`` per message, holding each namespace's
        sequence number, for ``cancel_scheduled_messages``. Never buffered: a
        schedule needs the namespace's answer. Fails over and raises as
        ``send_messages`` does.
        """
        await self._start()
        if isinstance(messages, (ServiceBusMessage, AmqpAnnotatedMessage)):
            batch, ids = [messages], [prepare_message(messages)]
        else:
            batch = list(messages)
            ids = [prepare_message(m, field=f"messages[{i}].") for i, m in enumerate(batch)]
        validate_schedule_time(schedule_time_utc)
        deadline = self._deadline(timeout)
        self._health.refresh()
        numbers: dict[str, list[int]] = {}

        async def attempt(channel: SendChannel, seconds: float) -> None:
            numbers[channel.name] = await channel.schedule(batch, schedule_time_utc, timeout=seconds)

        if self.mode == ReplicationMode.PASSIVE:
            await self._passive(attempt, deadline, len(batch))
        else:
            results = await self._concurrently(attempt, deadline, list(self._channels), len(batch))
            self._noted(self._judge.active(results), "are missing")
        return [
            ScheduledMessage(message_id, {name: seqs[i] for name, seqs in numbers.items()})
            for i, message_id in enumerate(ids)
        ]

    async def cancel_scheduled_messages(
        self, scheduled: ScheduledMessage | Sequence[ScheduledMessage], *, timeout: float | None = None
    ) -> None:
        """Cancel scheduled messages on every namespace that holds them.

        Raises:
            ReplicationError: a namespace could not be reached; ``landed`` names
                those where the cancellation did happen. Calling again is safe.
        """
        await self._start()
        items = [scheduled] if isinstance(scheduled, ScheduledMessage) else list(scheduled)
        per_namespace: dict[str, list[int]] = {}
        for item in items:
            for name, seq in item.sequence_numbers.items():
                per_namespace.setdefault(name, []).append(seq)
        deadline = self._deadline(timeout)
        names = [name for name in per_namespace if name in self._channels]
        results = await asyncio.gather(
            *(
                self._bounded(self._channels[name], deadline, lambda ch, s, n=name: ch.cancel_scheduled(per_namespace[n], timeout=s))
                for name in names
            ),
            return_exceptions=True,
        )
        failed = {name: error for name, error in zip(names, results, strict=True) if isinstance(error, BaseException)}
        if failed:
            landed = [name for name in names if name not in failed]
            raise ReplicationError("cancellation did not reach every namespace", causes=failed, landed=landed)

    async def create_message_batch(
        self, max_size_in_bytes: int | None = None, *, timeout: float | None = None
    ) -> ReplicatedMessageBatch:
        """A batch sized for the smaller of the two namespaces (those reachable now).

        Raises:
            ReplicationError: neither namespace could be reached to learn its limit.
        """
        await self._start()
        deadline = self._deadline(timeout)
        names = list(self._channels)
        results = await asyncio.gather(
            *(self._bounded(self._channels[n], deadline, lambda ch, s: ch.max_batch_size(timeout=s)) for n in names),
            return_exceptions=True,
        )
        sizes = [r for r in results if isinstance(r, int)]
        if not sizes:
            causes = {n: r for n, r in zip(names, results, strict=True) if isinstance(r, BaseException)}
            raise ReplicationError("no namespace could be reached to size a batch", causes=causes)
        limit = min(sizes)
        if max_size_in_bytes is not None:
            if max_size_in_bytes > limit:
                raise ValueError(
                    f"max_size_in_bytes {max_size_in_bytes} is over the namespaces' limit of {limit} bytes"
                )
            limit = max_size_in_bytes
        return ReplicatedMessageBatch(ServiceBusMessageBatch(max_size_in_bytes=limit))

    # -- passive ------------------------------------------------------------------------

    async def _send_passive(self, attempt: Any, deadline: float, messages: list[Message]) -> SendResult:
        if self._outbox is not None and self._outbox.pending(self.entity, ANY_LANE):
            # Earlier messages wait in the outbox: this one queues behind them, in order.
            await self._buffer([ANY_LANE], messages, causes={}, landed=())
            return SendResult(landed=(), missed={}, buffered=(ANY_LANE,))
        try:
            return await self._passive(attempt, deadline, len(messages))
        except ReplicationError as exc:
            if self._outbox is None:
                raise
            await self._buffer([ANY_LANE], messages, causes=exc.causes, landed=())
            return SendResult(landed=(), missed=exc.causes, buffered=(ANY_LANE,))

    async def _passive(
        self, attempt: Any, deadline: float, count: int, *, judge: SendJudge | None = None
    ) -> SendResult:
        """The seed's algorithm: the active namespace, then the other on an availability error.

        ``judge``: the drainer's, under which a namespace's refusal (a rotated key,
        a missing entity) sends the message to the other namespace too.

        Raises:
            ReplicationError: no namespace took it (every error an availability error).
            Exception: what stopped the failover, as ``SendJudge.passive`` says.
        """
        judge = judge or self._judge
        errors: dict[str, BaseException] = {}
        for name in self._health.passive_order():
            skipped = self._health.unavailable(name)
            if skipped is not None:
                errors[name] = skipped
                continue
            try:
                await self._attempt(name, deadline, attempt)
            except Exception as exc:
                self._failures[name] += 1
                errors[name] = exc
                if judge.tries_next(exc):
                    continue
                break
            self._sent[name] += count
            # Only a send that had to pass a namespace by may swap the roles: one that went
            # straight to its first choice, decided before a concurrent failover or failback
            # moved the roles, would otherwise swap them back with nothing wrong.
            if errors and self._health.succeeded_on(name):
                self._failovers += 1
                _LOG.warning(
                    "geobus: %s; sent to %r, which is now active",
                    ", ".join(f"namespace {n!r} unavailable ({type(e).__name__})" for n, e in errors.items()),
                    name,
                )
            return judge.passive(errors, landed=name)
        return judge.passive(errors, landed=None)

    # -- active ---------------------------------------------------------------------------

    async def _send_active(self, attempt: Any, deadline: float, messages: list[Message]) -> SendResult:
        names = list(self._channels)
        results: dict[str, BaseException | None] = {}
        if self._outbox is not None:
            for name in names:
                if self._outbox.pending(self.entity, name):
                    results[name] = NamespaceUnavailableError(name, "earlier copies wait in the outbox")
        results.update(
            await self._concurrently(attempt, deadline, [n for n in names if n not in results], len(messages))
        )
        results = {name: results[name] for name in names}
        result = self._judge.active(results, buffering=self._outbox is not None)
        if result.buffered:
            missed = dict(result.missed)
            await self._buffer(list(result.buffered), messages, causes=missed, landed=result.landed)
        return self._noted(result, "wait in the outbox" if result.buffered else "are missing")

    async def _concurrently(
        self, attempt: Any, deadline: float, names: list[str], count: int
    ) -> dict[str, BaseException | None]:
        """Try ``names`` at once (skipping those the breaker or the operator hold back)."""

        async def one(name: str) -> BaseException | None:
            # The breaker's half-open slot is taken here, in the task that then records
            # the outcome: a send cancelled before its tasks ran takes no slot.
            skipped = self._health.unavailable(name)
            if skipped is not None:
                return skipped
            try:
                await self._attempt(name, deadline, attempt)
            except Exception as exc:
                self._failures[name] += 1
                return exc
            self._sent[name] += count
            return None

        outcomes = await asyncio.gather(*(one(name) for name in names))
        return dict(zip(names, outcomes, strict=True))

    def _stores_again(self, name: str) -> None:
        """``name`` took a copy again (a send, or its outbox lane drained to the last one)."""
        if name in self._missing:
            self._missing.discard(name)
            _LOG.info("geobus: %s stores its copies again (%s)", name, self.entity)

    def _noted(self, result: SendResult, fate: str) -> SendResult:
        """Counts a partial write; logs when a namespace starts (or stops) missing copies,
        not once per message: an outage at 1,000 messages/s is one warning."""
        for name in result.landed:
            self._stores_again(name)
        if not result.partial:
            return result
        self._partial_writes += 1
        starting = [name for name in result.missed if name not in self._missing]
        self._missing.update(result.missed)
        if starting:
            _LOG.warning(
                "geobus: partial writes to %s: stored on %s; copies for %s %s (counted in stats.partial_writes)",
                self.entity,
                ", ".join(result.landed),
                ", ".join(f"{name} ({type(result.missed[name]).__name__})" for name in starting),
                fate,
            )
        return result

    # -- the outbox --------------------------------------------------------------------------

    async def _buffer(
        self,
        lanes: list[str],
        messages: list[Message],
        *,
        causes: dict[str, BaseException],
        landed: tuple[str, ...],
    ) -> None:
        assert self._outbox is not None
        opened = [lane for lane in lanes if not self._outbox.pending(self.entity, lane)]
        try:
            await self._outbox.append(self.entity, lanes, messages)
        except OutboxFullError as full:
            raise OutboxFullError(str(full), causes=causes, landed=landed) from None
        except sqlite3.Error as exc:  # locked by `geobus outbox` too long, disk full...
            raise ReplicationError(
                f"no namespace took the message and the outbox could not keep it ({exc})",
                causes=causes,
                landed=landed,
            ) from exc
        self._buffered += len(messages)
        if opened:  # once per outage, not once per message
            _LOG.warning(
                "geobus: buffering messages for %s in the outbox (lanes %s): %s",
                self.entity,
                ", ".join(opened),
                "; ".join(f"{name}: {type(error).__name__}" for name, error in causes.items()) or "queued behind",
            )
        self._outbox.wake(self.entity, lanes)

    # -- one namespace -------------------------------------------------------------------------

    async def _attempt(self, name: str, deadline: float, attempt: Any) -> Any:
        """One namespace's try, bounded, with its outcome told to the namespace's breaker."""
        try:
            result = await self._bounded(self._channels[name], deadline, attempt)
        except Exception as exc:
            self._health.record(name, exc, availability=SendJudge.counts_against(exc))
            raise
        except BaseException as exc:  # cancelled: says nothing about the namespace
            self._health.record(name, exc, availability=False)
            raise
        self._health.record(name, None)
        return result

    async def _bounded(self, channel: SendChannel, deadline: float, attempt: Any) -> Any:
        remaining = deadline - asyncio.get_running_loop().time()
        seconds = min(self.deadlines.attempt, remaining)
        if seconds <= 0:
            raise NamespaceTimeoutError(channel.name, 0.0)
        return await attempt(channel, seconds)

    def _deadline(self, timeout: float | None) -> float:
        seconds = self.deadlines.send if timeout is None else timeout
        if seconds <= 0:
            raise ValueError("timeout must be positive")
        return asyncio.get_running_loop().time() + seconds

    def _warm_standby(self) -> None:
        """Open the standby's link in the background once, so a failover costs one send."""
        if self._warming is not None or self.mode != ReplicationMode.PASSIVE:
            return
        standby = self._channels[self._health.passive_order()[1]]
        self._warming = asyncio.get_running_loop().create_task(self._warm(standby))

    async def _warm(self, channel: SendChannel) -> None:
        try:
            await channel.warm(timeout=self.deadlines.attempt)
        except Exception as exc:  # the standby may be down: the failover will open it, or fail
            _LOG.debug("geobus: could not pre-open %r: %s", channel.name, type(exc).__name__)

    # -- lifecycle -----------------------------------------------------------------

    async def _start(self) -> None:
        """Start the drainer (and the client's failback probe) on first use. Idempotent."""
        if self._closed:
            raise RuntimeError("this ReplicatedSender is closed")
        if self._started:
            return
        self._started = True
        if self._drainer is not None:
            self._drainer.start()
        if self._on_start is not None:
            self._on_start(self)

    async def close(self) -> None:
        """Stop the drainer and close both namespaces' senders. Safe to call twice.

        Messages still in the outbox stay there, for the next sender on the file.
        """
        if self._closed:
            return
        self._closed = True
        if self._drainer is not None:
            await self._drainer.stop()
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        await asyncio.gather(*(channel.close() for channel in self._channels.values()), return_exceptions=True)
        if self._on_close is not None:
            await self._on_close()

    async def __aenter__(self) -> Self:
        await self._start()
        return self
