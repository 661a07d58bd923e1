"""The async ``ReplicatedSender``: one send, two namespaces, a deadline that holds.

The sender checks what it is given, picks the mode's strategy, judges the result
(``SendJudge``) and buffers what no namespace took. It reaches the namespaces
only through its ``Replicator`` (``replicator.py``), which its outbox's
``Drainer`` shares.
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    NamespaceUnavailableError,
    OutboxFullError,
    ReplicationError,
)
from .._models import ReplicatedMessageBatch, ScheduledMessage, SenderStats, SendResult
from .._storage.outbox import ANY_LANE
from .channels import SendChannel
from .drainer import AsyncOutbox, Drainer
from .replicator import Call, Replicator

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


async def start(sender: ReplicatedSender) -> None:
    """Start ``sender``'s drainer (and the client's failback probe) now, as its first use would.

    For the sync client, which starts each sender as it hands it out: a producer
    restarted with a full outbox drains it before (and without) sending anything
    new. The async client leaves it to first use or ``async with``.

    Raises:
        RuntimeError: ``sender`` is closed.
    """
    await sender._start()


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
        on_start: Callable[[Replicator], None] | None = None,
        on_close: Callable[[ReplicatedSender], Awaitable[None]] | None = None,
    ) -> None:
        # Health is shared by every sender of one client: a namespace's health is not per entity.
        self._replicator = Replicator(channels, health=health, deadlines=deadlines, entity=entity)
        self.mode = ReplicationMode(mode)
        self.write_quorum = WriteQuorum(write_quorum)
        self._judge = SendJudge(quorum=self.write_quorum)
        self.deadlines = self._replicator.deadlines
        self.entity = entity
        self._outbox = outbox
        self._drainer = (
            Drainer(self._replicator, outbox, outbox_policy or OutboxPolicy(), lambda: self.mode)
            if outbox is not None
            else None
        )
        self._on_start = on_start
        self._on_close = on_close
        self._buffered = 0
        self._started = False
        self._closed = False

    # -- inspection ---------------------------------------------------------------

    @property
    def active_namespace(self) -> str:
        """The namespace passive mode sends to first."""
        return self._replicator.active_namespace

    @property
    def stats(self) -> SenderStats:
        """A snapshot of this sender's counters and its outbox's depth (``SenderStats``)."""
        replicator, drainer = self._replicator, self._drainer
        depth = drainer.depth() if drainer else 0
        return SenderStats(
            active_namespace=self.active_namespace,
            mode=self.mode.value,
            messages_sent=replicator.messages_sent,
            send_failures=replicator.send_failures,
            failovers=replicator.failovers,
            partial_writes=replicator.partial_writes,
            failbacks=replicator.health.failbacks,
            breakers=replicator.health.breaker_states(),
            buffered=self._buffered,
            drained=drainer.drained if drainer else 0,
            outbox_dead_lettered=drainer.dead_lettered if drainer else 0,
            outbox_depth=depth,
            # Depth first: a lane is emptied before its head is forgotten, so no age for an empty outbox.
            outbox_oldest_age=drainer.oldest_age() if drainer and depth else None,
        )

    def __repr__(self) -> str:
        return (
            f"ReplicatedSender(mode={self.mode.value!r}, namespaces={list(self._replicator.names)!r}, "
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
        deadline = self._replicator.begin(timeout)

        async def send(channel: SendChannel, seconds: float) -> None:
            await channel.send(payload, timeout=seconds)

        if self.mode == ReplicationMode.PASSIVE:
            self._replicator.warm_standby()
            return await self._send_passive(send, deadline, messages)
        return await self._send_active(send, deadline, messages)

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
        deadline = self._replicator.begin(timeout)
        numbers: dict[str, list[int]] = {}

        async def schedule(channel: SendChannel, seconds: float) -> None:
            numbers[channel.name] = await channel.schedule(batch, schedule_time_utc, timeout=seconds)

        replicator = self._replicator
        if self.mode == ReplicationMode.PASSIVE:
            await replicator.passive(schedule, deadline, messages=len(batch), judge=self._judge)
        else:
            results = await replicator.concurrently(schedule, deadline, messages=len(batch))
            replicator.noted(self._judge.active(results), "are missing")
        return [
            ScheduledMessage(message_id, {name: seqs[i] for name, seqs in numbers.items()})
            for i, message_id in enumerate(ids)
        ]

    async def cancel_scheduled_messages(
        self, scheduled: ScheduledMessage | Sequence[ScheduledMessage], *, timeout: float | None = None
    ) -> None:
        """Cancel scheduled messages on every namespace that holds them.

        A namespace whose breaker is open, or that the operator paused, is not
        called: it is named among the causes, as one that could not be reached.

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
        deadline = self._replicator.begin(timeout)

        async def cancel(channel: SendChannel, seconds: float) -> None:
            await channel.cancel_scheduled(per_namespace[channel.name], timeout=seconds)

        names = [name for name in per_namespace if name in self._replicator.names]
        results = await self._replicator.concurrently(cancel, deadline, names)
        failed = {name: error for name, error in results.items() if isinstance(error, Exception)}
        if failed:
            landed = [name for name in names if name not in failed]
            raise ReplicationError("cancellation did not reach every namespace", causes=failed, landed=landed)

    async def create_message_batch(
        self, max_size_in_bytes: int | None = None, *, timeout: float | None = None
    ) -> ReplicatedMessageBatch:
        """A batch sized for the smaller of the two namespaces' limits.

        A namespace whose breaker is not closed, or that the operator paused, is
        not asked: the limit it told before still counts (a batch it could not take
        would be refused when it is back), and one never told is sized by the other.

        Raises:
            ReplicationError: no namespace's limit is known and none could be asked
                (``causes`` names why, a skipped namespace's as ``NamespaceUnavailableError``).
            ValueError: ``max_size_in_bytes`` is over that limit.
        """
        await self._start()
        limit = await self._replicator.batch_limit(self._replicator.begin(timeout))
        if max_size_in_bytes is not None:
            if max_size_in_bytes > limit:
                raise ValueError(
                    f"max_size_in_bytes {max_size_in_bytes} is over the namespaces' limit of {limit} bytes"
                )
            limit = max_size_in_bytes
        return ReplicatedMessageBatch(ServiceBusMessageBatch(max_size_in_bytes=limit))

    # -- the two modes, with the outbox ---------------------------------------------------

    async def _send_passive(self, send: Call[None], deadline: float, messages: list[Message]) -> SendResult:
        if self._outbox is not None and self._outbox.pending(self.entity, ANY_LANE):
            # Earlier messages wait in the outbox: this one queues behind them, in order.
            await self._buffer([ANY_LANE], messages, causes={}, landed=())
            return SendResult(landed=(), missed={}, buffered=(ANY_LANE,))
        try:
            return await self._replicator.passive(send, deadline, messages=len(messages), judge=self._judge)
        except ReplicationError as exc:
            if self._outbox is None:
                raise
            await self._buffer([ANY_LANE], messages, causes=exc.causes, landed=())
            return SendResult(landed=(), missed=exc.causes, buffered=(ANY_LANE,))

    async def _send_active(self, send: Call[None], deadline: float, messages: list[Message]) -> SendResult:
        names = self._replicator.names
        results: dict[str, BaseException | None] = {}
        if self._outbox is not None:
            for name in names:
                if self._outbox.pending(self.entity, name):
                    results[name] = NamespaceUnavailableError(name, "earlier copies wait in the outbox")
        tried = [name for name in names if name not in results]
        results.update(await self._replicator.concurrently(send, deadline, tried, messages=len(messages)))
        results = {name: results[name] for name in names}
        result = self._judge.active(results, buffering=self._outbox is not None)
        if result.buffered:
            missed = dict(result.missed)
            await self._buffer(list(result.buffered), messages, causes=missed, landed=result.landed)
        return self._replicator.noted(result, "wait in the outbox" if result.buffered else "are missing")

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
            self._on_start(self._replicator)

    async def close(self) -> None:
        """Stop the drainer and close both namespaces' senders. Safe to call twice.

        Messages still in the outbox stay there, for the next sender on the file.
        """
        if self._closed:
            return
        self._closed = True
        if self._drainer is not None:
            await self._drainer.stop()
        await self._replicator.close()
        if self._on_close is not None:
            await self._on_close(self)

    async def __aenter__(self) -> Self:
        await self._start()
        return self
