"""The async ``ReplicatedSender``: one send, two namespaces, a deadline that holds.

The sender checks what it is given, picks the mode's strategy, judges the result
(``SendJudge``) and buffers what no namespace took. It reaches the namespaces
only through its ``Replicator`` (``replicator.py``), which its outbox's
``Drainer`` shares. What a send carries is checked and stamped in ``payload.py``;
scheduling and cancelling, never buffered, are in ``scheduling.py``.
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from azure.servicebus import ServiceBusMessageBatch
from typing_extensions import Self

from .._closing import AsyncClosing
from .._config import Deadlines, OutboxPolicy, ReplicationMode, WriteQuorum
from .._decisions.health import Health
from .._decisions.judge import SendJudge
from .._decisions.session_stamps import shared_stamper
from .._errors import (
    NamespaceUnavailableError,
    OutboxFullError,
    ReplicationError,
)
from .._models import ReplicatedMessageBatch, ScheduledMessage, SenderStats, SendResult
from .._storage.outbox import ANY_LANE
from . import scheduling
from .channels import SendChannel
from .drainer import AsyncOutbox, Drainer
from .payload import Message, StampingBatch, payload
from .replicator import Call, Replicator

_LOG = logging.getLogger("geobus")


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
        client_identifier: str | None = None,
    ) -> None:
        # Health is shared by every sender of one client: a namespace's health is not per entity.
        self._replicator = Replicator(channels, health=health, deadlines=deadlines, entity=entity)
        self._hosts = {c.name: getattr(c, "fully_qualified_namespace", None) or c.name for c in channels}
        self._client_identifier = client_identifier
        self.mode = ReplicationMode(mode)
        self.write_quorum = WriteQuorum(write_quorum)
        self._judge = SendJudge(quorum=self.write_quorum)
        # The order within each session, shared by the client's senders to this entity.
        self._stamper = shared_stamper(self._replicator.health, entity)
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
    def fully_qualified_namespace(self) -> str:
        """The host of the namespace sends go to first: passive mode's active namespace (it
        changes on a failover), the primary in active mode, which sends to both.
        ``fully_qualified_namespaces`` has both."""
        name = self.active_namespace if self.mode == ReplicationMode.PASSIVE else self._replicator.names[0]
        return self._hosts[name]

    @property
    def fully_qualified_namespaces(self) -> dict[str, str]:
        """Each namespace's host, by name (``{"primary": ..., "secondary": ...}``)."""
        return dict(self._hosts)

    @property
    def entity_name(self) -> str:
        """The queue or topic this sender sends to: the same name in both namespaces."""
        return self.entity.partition(":")[2] or self.entity

    @property
    def client_identifier(self) -> str | None:
        """The identifier both namespaces' SDK senders were given (the same one, so the
        service's logs of either region name this sender alike); None if none was."""
        return self._client_identifier

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

    # -- the sync sender's fast lane (``geobus._sync.fast_lane``), from its callers' threads ----

    def _direct_target(self) -> str | None:
        """The namespace a passive send may go to straight from a caller's thread now, or None
        when the send needs the loop: active mode, a closed sender, messages waiting in the
        outbox (a new one queues behind them), an override file due a look, an active
        namespace that is not clear (its breaker's probe, a pause). Read-only."""
        if self._closed or self.mode != ReplicationMode.PASSIVE:
            return None
        if self._outbox is not None and self._outbox.pending(self.entity, ANY_LANE):
            return None
        health = self._replicator.health
        if health.refresh_due:
            return None
        active = health.passive_order()[0]
        return active if health.is_clear(active) else None

    def _landed_directly(self, name: str, messages: int) -> tuple[SendResult, bool]:
        """A direct send stored ``messages`` on ``name``: counted. Returns its result, and
        whether the loop must still hear of it (``_after_direct``): the breaker has failures
        to forget, or the standby's link is not warm yet."""
        self._replicator.landed(name, messages)
        tell = bool(self._replicator.health.breakers[name].failures) or not self._replicator.warming
        return self._judge.passive({}, landed=name), tell

    def _after_direct(self, name: str) -> None:
        """On the loop, after a direct send landed on ``name``: what ``attempt`` would have done."""
        self._replicator.health.record(name, None)
        self._replicator.warm_standby()

    # -- sending ---------------------------------------------------------------------

    async def send_messages(self, message: Any, *, timeout: float | None = None) -> SendResult:
        """Send a message, a list of messages or a ``ReplicatedMessageBatch`` to both namespaces.

        Every field of every message is checked first (see the class's Raises):
        a list with one bad message sends none of them.

        Returns a ``SendResult``: ``landed`` names the namespaces that stored the
        message(s), ``buffered`` the outbox lanes that keep them for later;
        ``missed`` the namespaces that did not, with their errors.
        """
        return await self._send(message, timeout)

    async def _send_after(self, message: Any, failed: Mapping[str, Exception], *, timeout: float) -> SendResult:
        """``send_messages`` for a message the sync sender's fast lane sent to a namespace
        itself, where it failed (``failed``): that failure is recorded and counted here as
        if this sender had met it, and the send goes on from there (the other namespace,
        the outbox), within ``timeout``, the time the fast lane left."""
        for name, error in failed.items():  # first: whatever path this send takes now
            self._replicator.failed_outside(name, error)
        return await self._send(message, timeout, failed)

    async def _send(self, message: Any, timeout: float | None, failed: Mapping[str, Exception] | None = None) -> SendResult:
        await self._start()
        sent, messages = payload(message, self._stamper)
        if not messages:
            return SendResult(landed=(), missed={})
        deadline = self._replicator.begin(timeout)

        async def send(channel: SendChannel, seconds: float) -> None:
            await channel.send(sent, timeout=seconds)

        if self.mode == ReplicationMode.PASSIVE:
            self._replicator.warm_standby()
            return await self._send_passive(send, deadline, messages, failed)
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
        ``send_messages`` does. A message's ``session_id`` goes with every copy; a
        scheduled message gets no order stamp (it joins its session when its time
        comes, so a session receiver delivers it as it arrives: docs/sessions.md).
        """
        await self._start()
        return await scheduling.schedule(self._replicator, self._judge, self.mode, messages, schedule_time_utc, timeout)

    async def cancel_scheduled_messages(
        self, sequence_numbers: ScheduledMessage | Sequence[ScheduledMessage], *, timeout: float | None = None
    ) -> None:
        """Cancel scheduled messages on every namespace that holds them.

        ``sequence_numbers`` is what ``schedule_messages`` returned (named as the SDK
        names it): ``ScheduledMessage`` objects, each with both namespaces' numbers.
        A bare int is refused with ``TypeError``: it names a message in one namespace.

        A namespace whose breaker is open, or that the operator paused, is not
        called: it is named among the causes, as one that could not be reached.

        Raises:
            ReplicationError: a namespace could not be reached; ``landed`` names
                those where the cancellation did happen. Calling again is safe.
        """
        await self._start()
        await scheduling.cancel(self._replicator, sequence_numbers, timeout)

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
        return StampingBatch(ServiceBusMessageBatch(max_size_in_bytes=limit), self._stamper)

    # -- the two modes, with the outbox ---------------------------------------------------

    async def _send_passive(
        self, send: Call[None], deadline: float, messages: list[Message], failed: Mapping[str, Exception] | None
    ) -> SendResult:
        if self._outbox is not None and self._outbox.pending(self.entity, ANY_LANE):
            # Earlier messages wait in the outbox: this one queues behind them, in order.
            await self._buffer([ANY_LANE], messages, causes={}, landed=())
            return SendResult(landed=(), missed={}, buffered=(ANY_LANE,))
        try:
            return await self._replicator.passive(
                send, deadline, messages=len(messages), judge=self._judge, failed=failed
            )
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
