"""A drill worker on a session-enabled queue (``agent worker --sessions N``): session receivers.

The worker takes the next available session (``NEXT_AVAILABLE_SESSION``) through
geobus's session receiver, handles its messages, and lets it go once it has
handled ``PER_HOLDING`` of them or the session has had nothing for ``IDLE``
seconds, then takes the next one, as a worker serving many sessions does. It
never lets a session go while messages wait for a gap (``session_stats.waiting``):
the gap's wait is the receiver's to bound, not cut short by a new owner.

Its events, beside the agent's ``batch``, ``complete``, ``settle_failed`` and ``stats``:

    owned    {session, life}                 the receiver owns the session
    deliver  {id, ns, life, session, producer, seq}   with the message's order stamp
    released {session, life, gaps, gap_messages, out_of_order, gap_wait_seconds, error}
             before the receiver is closed: its session's order report (``SessionStats``)
    no_session {life, error}                 taking a session failed for another reason
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

import geobus
import geobus.aio
from geobus import GeobusError, ReplicationConfig

from ..._decisions.session_stamps import stamp_of

if TYPE_CHECKING:
    from .agent import _Worker

PER_HOLDING = 15  # messages handled before the session is let go for another
IDLE = 1.0  # seconds without a message before the session is let go
TAKE_WAIT = 1.0  # seconds next-available waits for a session
POLL = 0.5  # each receive call's wait
BATCH = 10
AFTER_ERROR = 0.2  # seconds before trying again after a failed take


class Holding:
    """One session held by the worker, from ``owned`` to ``released``: what to emit, when to let go."""

    def __init__(self, worker: _Worker, session_id: str | None) -> None:
        self.worker = worker
        self.session_id = session_id
        self.handled = 0
        self._last = time.monotonic()
        worker.events.emit("owned", session=session_id, life=worker.args.life)

    def going(self, stop: threading.Event, waiting: int) -> bool:
        """Keep the session for another receive call?"""
        if stop.is_set():
            return False
        if waiting:  # messages held back for a gap: let the receiver decide it
            return True
        return self.handled < PER_HOLDING and time.monotonic() - self._last < IDLE

    def delivered(self, message: ServiceBusReceivedMessage, namespace: str) -> None:
        stamp = stamp_of(message.application_properties)
        self.worker.events.emit(
            "deliver", id=str(message.message_id), ns=namespace, life=self.worker.args.life,
            session=message.session_id, producer=stamp.producer if stamp else None, seq=stamp.seq if stamp else None,
        )  # fmt: skip
        self.handled += 1
        self._last = time.monotonic()

    def released(self, stats: Any, error: BaseException | None) -> None:
        self.worker.events.emit(
            "released", session=self.session_id, life=self.worker.args.life, gaps=stats.gaps,
            gap_messages=stats.gap_messages, out_of_order=stats.out_of_order,
            gap_wait_seconds=stats.gap_wait_seconds, error=None if error is None else type(error).__name__,
        )  # fmt: skip


class _Absorbed:
    """Duplicates absorbed over every session the worker held: the ``stats`` event the drill counts."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.total = 0

    def add(self, stats: geobus.ReceiverStats) -> None:
        self.total += stats.duplicates_absorbed
        self.worker.events.emit("stats", role="worker", life=self.worker.args.life, duplicates_absorbed=self.total)


def work_sync(args: argparse.Namespace, worker: _Worker) -> None:
    absorbed = _Absorbed(worker)
    with geobus.GeoServiceBusClient(ReplicationConfig.from_env()) as client:
        while not worker.stop.is_set():
            receiver = client.get_queue_receiver(
                args.queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=TAKE_WAIT, prefetch_count=args.prefetch
            )
            try:
                with receiver:
                    _hold_sync(args, worker, receiver, absorbed)
            except OperationTimeoutError:
                continue  # no session free now
            except (ServiceBusError, GeobusError) as exc:
                worker.events.emit("no_session", life=args.life, error=type(exc).__name__)
                time.sleep(AFTER_ERROR)


def _hold_sync(args: argparse.Namespace, worker: _Worker, receiver: Any, absorbed: _Absorbed) -> None:
    holding = Holding(worker, receiver.session.session_id)
    error: BaseException | None = None
    try:
        while holding.going(worker.stop, receiver.session_stats.waiting):
            messages = receiver.receive_messages(max_message_count=BATCH, max_wait_time=POLL)
            worker.handle_sync(receiver, messages, holding.delivered)
    except (ServiceBusError, GeobusError) as exc:  # the session was lost: let it go, take another
        error = exc
    finally:
        holding.released(receiver.session_stats, error)
        absorbed.add(receiver.stats)


async def work_async(args: argparse.Namespace, worker: _Worker) -> None:
    absorbed = _Absorbed(worker)
    async with geobus.aio.GeoServiceBusClient(ReplicationConfig.from_env()) as client:
        while not worker.stop.is_set():
            receiver = client.get_queue_receiver(
                args.queue, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=TAKE_WAIT, prefetch_count=args.prefetch
            )
            try:
                async with receiver:
                    await _hold_async(args, worker, receiver, absorbed)
            except OperationTimeoutError:
                continue
            except (ServiceBusError, GeobusError) as exc:
                worker.events.emit("no_session", life=args.life, error=type(exc).__name__)
                await asyncio.sleep(AFTER_ERROR)


async def _hold_async(args: argparse.Namespace, worker: _Worker, receiver: Any, absorbed: _Absorbed) -> None:
    holding = Holding(worker, receiver.session.session_id)
    error: BaseException | None = None
    try:
        while holding.going(worker.stop, receiver.session_stats.waiting):
            messages = await receiver.receive_messages(max_message_count=BATCH, max_wait_time=POLL)
            await worker.handle_async(receiver, messages, holding.delivered)
    except (ServiceBusError, GeobusError) as exc:
        error = exc
    finally:
        holding.released(receiver.session_stats, error)
        absorbed.add(receiver.stats)
