"""The async ``DedupSessionReceiver``: one session, owned in both namespaces, in its producers' order.

What it composes: ``Ownership`` (the session's locks in both namespaces and its
lease in a shared store), a ``DedupRunner`` (twins: one copy to the application,
the other settled as it was), a ``SessionOrder`` (each producer's order restored
across namespaces, gaps waited for or reported) and a ``ReplicatedState`` (the
session state in both namespaces). Its background loops (and how much a pump
fetches) are in ``loops.py``; peek and receiving deferred messages back, in
``extras.py``; settling, iteration and ``stats``, shared with ``DedupReceiver``, in
``handing.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.exceptions import SessionLockLostError

from ..._closing import AsyncClosing
from ..._config import Deadlines, DedupPolicy, ReplicationMode, SessionPolicy
from ..._decisions.actions import Deliver
from ..._decisions.session_order import Release, SessionOrder
from ..._decisions.session_stamps import stamp_of
from ..._storage.seenset import SeenSet
from ..copies import copy_of, key_function
from ..handing import HandsOut, check_options
from ..pumps import ReceiverTimings
from ..receiver_extras import DeferralsAndPeeks
from .channel import SessionChannel, SessionTarget
from .extras import SessionExtras
from .loops import Loops
from .ownership import Ownership, SessionLease
from .session import ReplicatedSession, SessionStats
from .settling import SessionSettling, _Handed
from .state import ReplicatedState

_LOG = logging.getLogger("geobus")


class DedupSessionReceiver(SessionExtras, SessionSettling, HandsOut[_Handed], AsyncClosing):
    """Receives one session of a queue or subscription from two namespaces (``geobus.aio``).

    The session is owned in both namespaces at once (see docs/sessions.md for the
    rule and the guarantees): named, it is locked in both; next-available, it is
    taken from whichever namespace offers one and locked by name in the other. It
    is taken on first use (``receive_messages``, iteration, ``session`` calls,
    ``async with``). Each message is handed out once, in the order its producer
    sent it; the other copy is settled as the first was. ``session`` has the SDK's
    session surface; its state is kept in both namespaces. ``peek_messages``,
    ``defer_message`` and ``receive_deferred_messages`` (by sequence number or deferral
    handle) work within the session as ``DedupReceiver``'s do.

    ``prefetch``: 0 (the SDK's ``prefetch_count=0``) fetches only what ``receive_messages``
    asks for (and what a producer's gap needs): a message fetched is locked under the
    session and its delivery count goes up if the session is lost, as the SDK's would
    with that prefetch. N > 0 keeps up to N messages of each namespace fetched ahead.
    In receive-and-delete mode only what is asked is fetched, whatever ``prefetch``, and
    nothing is held for a gap (delivered as it comes, the gap reported).

    Differs from azure-servicebus: both namespaces' session locks are renewed in
    the background while the receiver is open (an ``auto_lock_renewer`` given is not
    needed and not used); ``renew_message_lock`` raises ``TypeError`` as the SDK does
    for session messages; next-available skips a session another receiver holds in
    one namespace, and raises ``OperationTimeoutError`` when no other is offered.
    Task-safe within one event loop; not thread-safe.

    Raises: ``SessionCannotBeLockedError`` (a named session another receiver holds),
    ``OperationTimeoutError`` (next-available: no session free) on first use;
    ``SessionLockLostError`` once ownership is lost (its lease in the shared store
    went to another receiver); settlement errors as ``DedupReceiver``.
    """

    def __init__(
        self,
        channels: Sequence[SessionChannel],
        *,
        session_id: SessionTarget,
        mode: ReplicationMode = ReplicationMode.PASSIVE,
        sessions: SessionPolicy | None = None,
        dedup: DedupPolicy | None = None,
        deadlines: Deadlines | None = None,
        receive_mode: ServiceBusReceiveMode = ServiceBusReceiveMode.PEEK_LOCK,
        max_wait_time: float | None = None,
        prefetch: int = 0,
        entity: str = "",
        active: Callable[[], str] | None = None,
        seen_set: SeenSet | None = None,
        lease_owner: str | None = None,
        timings: ReceiverTimings | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        check_options("DedupSessionReceiver", channels, max_wait_time=max_wait_time, prefetch=prefetch, least_prefetch=0)
        self.mode = ReplicationMode(mode)
        self.policy = sessions or SessionPolicy()
        self.deadlines = deadlines or Deadlines()
        self.receive_mode = receive_mode
        self.max_wait_time = max_wait_time
        self.prefetch = prefetch
        self.wanted = 0  # messages receive_messages calls wait for now
        self.timings = timings or ReceiverTimings()
        self.channels = {c.name: c for c in channels}
        policy = dedup or DedupPolicy()
        self._key = key_function(policy)
        self._monotonic = monotonic
        self.changed = asyncio.Event()  # something for receive_messages to look at
        self._init_handing(
            policy, self.channels, receive_mode=receive_mode, seen_set=seen_set, clock=clock,
            timings=self.timings, deadlines=self.deadlines, on_deferred=lambda copy: self.extras.twin_deferred(copy),
        )  # fmt: skip
        for channel in channels:  # a pump held off for a session operation goes on when it ends
            channel.when_idle(self._settled.set)
        self.extras = DeferralsAndPeeks(
            channels,
            self._key,
            self._runner,
            already_settled=self._already_settled,
            deadlines=self.deadlines,
            poll_wait=self.timings.poll_wait,
            peek_from_start=True,  # the pumps receive from the start once the session is owned
        )
        lease = None
        if self._runner.store is not None:
            owner = lease_owner or self._runner.store.owner
            lease = SessionLease(self._runner.store.store, owner, entity, lease=policy.lease)
        attach = (max_wait_time or 0.0) + self.deadlines.attempt
        self.ownership = Ownership(
            self.channels, target=session_id, attempts=self.policy.lock_attempts, attach_timeout=attach, lease=lease
        )
        first = channels[0].name
        self.state = ReplicatedState(
            self.channels,
            mode=self.mode,
            attached=lambda: set(self.ownership.attached),
            active=active or (lambda: first),
            marks=lambda: self.order.marks() if self.order is not None else {},
            # A receive call in flight on the namespace may hold the operation up by its poll.
            timeout=self.deadlines.attempt + self.timings.poll_wait,
            clock=clock,
        )
        self.order: SessionOrder[Deliver] | None = None
        self.session = ReplicatedSession(self)
        self.lost: BaseException | None = None
        self._owning = asyncio.Lock()
        self._deciding = asyncio.Lock()  # one arrival or settlement at a time through the deduplicator
        self._loops: Loops | None = None
        self._on_close = on_close
        self._closed = False

    # -- owning the session ---------------------------------------------------------------------

    async def _own(self) -> None:
        """Take the session now, if not yet (first use does it). Raises as the class says."""
        if self._closed:
            raise RuntimeError("this DedupSessionReceiver is closed")
        if self.lost is not None:
            raise SessionLockLostError(error=self.lost)
        if self._loops is not None:
            return
        async with self._owning:
            if self._loops is not None:
                return
            await self.ownership.acquire()
            try:
                known = await self.state.read()
            except Exception as exc:  # no marks: producers start at their lowest number held
                _LOG.info("geobus: the session state could not be read (%s)", type(exc).__name__)
                known = self.state.known
            order: SessionOrder[Deliver] = SessionOrder(
                self.channels,
                wait_for_down=self.mode == ReplicationMode.PASSIVE,
                # Receive-and-delete: a message held for a gap is deleted already, and lost if the
                # receiver stops; deliver as it comes (the gap reported) instead of holding it.
                gap_wait=0.0 if self._already_settled else self.policy.order_gap_wait,
                clock=self._monotonic,
                marks=known.marks,
            )
            for name in self.channels:
                order.region_live(name, name in self.ownership.attached)
            self.order = order
            self._loops = Loops(self)
            self._loops.start()

    def _lose(self, error: BaseException) -> None:
        """Ownership is gone (another receiver holds the session): stop delivering."""
        if self.lost is None:
            _LOG.warning("geobus: session %r lost: %s", self.ownership.session_id, error)
            self.lost = error
            self.changed.set()

    # -- arrivals (called by the pumps) -------------------------------------------------------------

    async def _arrived(self, channel: SessionChannel, batch: list[ServiceBusReceivedMessage]) -> None:
        assert self.order is not None
        if not batch:
            self.order.drained(channel.name)
        for message in batch:
            self.order.observed(channel.name, stamp_of(message.application_properties))
            async with self._deciding:
                await self._runner.run(self._runner.dedup.arrived(self._key(message), copy_of(channel, message)))
                self._to_order()
        self.changed.set()

    def _to_order(self) -> None:
        assert self.order is not None
        while (deliver := self._runner.take_ready()) is not None:
            self.order.offer(deliver, stamp_of(deliver.copy.payload.application_properties))

    # -- receiving --------------------------------------------------------------------------------

    async def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Up to ``max_message_count`` messages of the session, in order, waiting at most
        ``max_wait_time`` seconds (default: the receiver's; None waits for one) — or, while
        messages wait for a producer's gap, until the gap's wait (``order_gap_wait``) is over."""
        count = 1 if max_message_count is None else max_message_count
        if count < 1:
            raise ValueError("max_message_count must be at least 1")
        await self._own()
        assert self.order is not None
        wait = self.max_wait_time if max_wait_time is None else max_wait_time
        deadline = None if wait is None else self._monotonic() + wait
        out: list[ServiceBusReceivedMessage] = []
        while len(out) < count:
            if self.lost is not None:
                if out:
                    break
                raise SessionLockLostError(error=self.lost)
            self.changed.clear()
            out += [self._hand_out(release) for release in self.order.take(count - len(out))]
            self._report_gaps()
            if out:
                break
            now = self._monotonic()
            wake = self.order.wake_at()
            if deadline is not None and deadline <= now:
                if wake is None:
                    break
                # Messages wait for a gap: the session is not idle; wait for the gap's bound.
                deadline = None
            timeouts = [t - now for t in (deadline, wake) if t is not None]
            self.wanted += count
            self._settled.set()  # wake the pumps: the application asks
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.0, min(timeouts)) if timeouts else None)
            except asyncio.TimeoutError:
                continue
            finally:
                self.wanted -= count
        return out

    def _report_gaps(self) -> None:
        """Log each gap given up, and write the order marks soon: a next owner without them
        could not tell the skipped numbers, should they come, from a stream's start."""
        assert self.order is not None
        if self.order.gaps and self._loops is not None:
            self._loops.mark_soon()
        while self.order.gaps:
            gap = self.order.gaps.popleft()
            first = "?" if gap.first is None else str(gap.first)
            _LOG.warning(
                "geobus: session %r: producer %s's messages %s..%d did not come within %.1f s; "
                "delivering the later ones (a late one is delivered out of order)",
                self.ownership.session_id, gap.producer, first, gap.last, gap.waited,
            )  # fmt: skip

    def _hand_out(self, release: Release[Deliver]) -> ServiceBusReceivedMessage:
        copy = release.item.copy
        message: ServiceBusReceivedMessage = copy.payload
        if release.late:
            _LOG.warning("geobus: session %r: a message came after its gap was given up: delivered out of order",
                         self.ownership.session_id)  # fmt: skip
        if not self._already_settled:
            self._delivered[id(message)] = _Handed(release.item.key, copy, release.stamp)
        elif self.order is not None:
            self.order.settled(release.stamp)
        self._delivered_count += 1
        return message

    async def __aenter__(self) -> DedupSessionReceiver:
        """Take the session. If that fails (no session came, another receiver holds it), the
        receiver is closed before the error is raised: the ``async with`` body never runs, so
        nothing else would close it (its links and its shared seen-set connection)."""
        try:
            await self._own()
        except BaseException:
            await self.close()
            raise
        return self

    # -- settling (``settling.py``; ``_record``, ``_settle``: ``HandsOut``) ------------------------

    def namespace_of(self, message: ServiceBusReceivedMessage) -> str:
        """The namespace ``message`` was received (or peeked, or deferred) from. Raises
        ``ValueError`` for one not handed out, peeked or deferred here (or settled)."""
        record = self._delivered.get(id(message))
        if record is not None and record.copy.payload is message:
            return record.copy.namespace
        seen = self.extras.seen_in(message)
        if seen is None:
            raise ValueError("this message was not handed out by this receiver, or is already settled")
        return seen

    # -- inspection (``stats``, the ``DedupReceiver``'s counters: ``HandsOut``) ----------------------

    @property
    def session_stats(self) -> SessionStats:
        """The session's order and ownership counters (``SessionStats``); safe from any thread."""
        return SessionStats.of(self)

    def __repr__(self) -> str:
        return (f"DedupSessionReceiver(session={self.ownership.session_id!r}, "
                f"namespaces={list(self.channels)!r}, mode={self.mode.value})")  # fmt: skip

    # -- lifecycle --------------------------------------------------------------------------------

    async def _write_marks_now(self) -> None:
        """The order marks, if they moved since written, within a bound; a failure is logged."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.state.write_marks(), 2 * self.deadlines.attempt + self.timings.poll_wait)

    async def close(self) -> None:
        """Stop receiving, write the order marks (bounded), give back what was fetched and not
        handed out, and let go of the session in both namespaces and the store. Safe twice."""
        if self._closed:
            return
        self._closed = True
        if self._loops is not None:
            marking = self.lost is None and bool(self.ownership.attached)
            if marking:
                # Before the pumps stop: a receive call cancelled mid-way can leave its SDK receiver unusable.
                # The bound allows a read timing out on a namespace going down, then the write elsewhere.
                await self._write_marks_now()
            await self._loops.stop()
            if marking:
                # Once more with the pumps stopped: settlements that ended during the first write moved the
                # marks, and a next owner without the last ones could not tell a late message.
                await self._write_marks_now()
        fetched = [] if self.order is None else self.order.held_items()
        await self._runner.give_back([(deliver.key, deliver.copy) for deliver in fetched])
        await self._runner.close()
        await self.ownership.release()
        await asyncio.gather(*(c.close() for c in self.channels.values()), return_exceptions=True)
        if self._on_close is not None:
            await self._on_close()
