"""A drill's producer or worker: a child process, so the drill can kill -9 it.

``python -m geobus._tools.drill.agent producer|worker --api sync|async --events FILE ...``

Configuration comes from the environment (``ReplicationConfig.from_env``), exactly
as an application's would. Every step is one JSON line appended to the events file
with a single ``write`` (a kill -9 loses at most the line being written):

    attempt  {id}                       before send_messages
    ack      {id, lat, landed, fo, buf} after it returned
    error    {id, error}                it raised
    deliver  {id, ns, life}             the worker's handler got a message
    poisoned {id, life}                 ... the ``--poison`` one: the handler kills its process
    owned / released, and deliver's session fields: ``--sessions`` (see ``session_worker``)
    complete {id, life} / settle_failed {id, life, error}
    stats    {...}                      SenderStats / ReceiverStats
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import ServiceBusError

import geobus
import geobus.aio
from geobus import GeobusError, ReplicationConfig, SendResult

from ..._cli.output import Out

STATS_INTERVAL = 0.5


class Events:
    """Appends one JSON line per event, each with one ``write`` (``O_APPEND``)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def emit(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"e": kind, "t": time.monotonic(), **fields}, default=str) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        os.close(self._fd)


# -- producer ---------------------------------------------------------------------------


def _message(args: argparse.Namespace, index: int, rng: random.Random) -> ServiceBusMessage:
    padding = "x" * rng.randint(0, args.max_padding)
    return ServiceBusMessage(
        json.dumps({"index": index, "padding": padding}),
        message_id=f"{args.prefix}-{index}",
        application_properties={"index": index},
        session_id=f"s{index % args.sessions}" if args.sessions else None,  # interleaved sessions
    )


def _acked(events: Events, message_id: str, result: SendResult, began: float) -> None:
    events.emit(
        "ack",
        id=message_id,
        lat=time.monotonic() - began,
        landed=list(result.landed),
        fo=result.failed_over,
        buf=list(result.buffered),
    )


def _pause(args: argparse.Namespace, began: float) -> float:
    """Seconds to wait before the next send: a steady producer, not a flood."""
    return max(0.0, 1.0 / float(args.rate) - (time.monotonic() - began))


def _drained(stats: geobus.SenderStats) -> bool:
    return stats.outbox_depth == 0


def produce_sync(args: argparse.Namespace, events: Events) -> None:
    rng = random.Random(f"{args.seed}-{args.start}")
    with geobus.GeoServiceBusClient(ReplicationConfig.from_env()) as client:
        with client.get_queue_sender(args.queue) as sender:
            for index in range(args.start, args.count):
                message = _message(args, index, rng)
                events.emit("attempt", id=message.message_id)
                began = time.monotonic()
                try:
                    _acked(events, str(message.message_id), sender.send_messages(message), began)
                except GeobusError as exc:
                    events.emit("error", id=message.message_id, error=type(exc).__name__)
                time.sleep(_pause(args, began))
            # What the outbox holds goes out once a namespace is back: a producer
            # that exits earlier leaves it for the next process on the same file.
            deadline = time.monotonic() + args.linger
            while not _drained(sender.stats) and time.monotonic() < deadline:
                time.sleep(0.05)
            events.emit("stats", role="producer", **dataclasses.asdict(sender.stats))


async def produce_async(args: argparse.Namespace, events: Events) -> None:
    rng = random.Random(f"{args.seed}-{args.start}")
    async with geobus.aio.GeoServiceBusClient(ReplicationConfig.from_env()) as client:
        async with client.get_queue_sender(args.queue) as sender:
            for index in range(args.start, args.count):
                message = _message(args, index, rng)
                events.emit("attempt", id=message.message_id)
                began = time.monotonic()
                try:
                    _acked(
                        events, str(message.message_id), await sender.send_messages(message), began
                    )
                except GeobusError as exc:
                    events.emit("error", id=message.message_id, error=type(exc).__name__)
                await asyncio.sleep(_pause(args, began))
            deadline = time.monotonic() + args.linger
            while not _drained(sender.stats) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            events.emit("stats", role="producer", **dataclasses.asdict(sender.stats))


# -- worker -----------------------------------------------------------------------------


Delivered = Callable[[ServiceBusReceivedMessage, str], None]  # (message, its namespace)


class _Worker:
    """The handler's bookkeeping, shared by the sync and async loops."""

    def __init__(self, args: argparse.Namespace, events: Events) -> None:
        self.args = args
        self.events = events
        self.stop = threading.Event()
        self._stats_at = 0.0

    def fetched(self, messages: list[ServiceBusReceivedMessage]) -> None:
        if messages:  # what a receive call handed this process: held until each is settled
            self.events.emit("batch", ids=[str(m.message_id) for m in messages], life=self.args.life)

    def delivered(self, message: ServiceBusReceivedMessage, namespace: str) -> None:
        self.events.emit("deliver", id=str(message.message_id), ns=namespace, life=self.args.life)
        if str(message.message_id) == self.args.poison:
            # A handler that crashes its process: nothing is settled, the lock runs out.
            self.events.emit("poisoned", id=self.args.poison, life=self.args.life)
            os.kill(os.getpid(), signal.SIGKILL)

    def settled(self, message: ServiceBusReceivedMessage, error: BaseException | None) -> None:
        if error is None:
            self.events.emit("complete", id=str(message.message_id), life=self.args.life)
        else:  # its namespace just went down: the twin, or the redelivery, comes instead
            self.events.emit(
                "settle_failed",
                id=str(message.message_id),
                life=self.args.life,
                error=type(error).__name__,
            )

    def handle_sync(self, receiver: Any, messages: list[ServiceBusReceivedMessage], delivered: Delivered) -> None:
        """Fetched ``messages`` through the application: delivered, its work, completed."""
        self.fetched(messages)
        for message in messages:
            delivered(message, receiver.namespace_of(message))
            time.sleep(self.args.handle_time)  # the application's work
            try:
                receiver.complete_message(message)
                self.settled(message, None)
            except (ServiceBusError, GeobusError) as exc:
                self.settled(message, exc)

    async def handle_async(
        self, receiver: Any, messages: list[ServiceBusReceivedMessage], delivered: Delivered
    ) -> None:
        """``handle_sync`` for ``geobus.aio``."""
        self.fetched(messages)
        for message in messages:
            delivered(message, receiver.namespace_of(message))
            await asyncio.sleep(self.args.handle_time)
            try:
                await receiver.complete_message(message)
                self.settled(message, None)
            except (ServiceBusError, GeobusError) as exc:
                self.settled(message, exc)

    def stats(self, stats: geobus.ReceiverStats, *, force: bool = False) -> None:
        if force or time.monotonic() - self._stats_at >= STATS_INTERVAL:
            self._stats_at = time.monotonic()
            self.events.emit(
                "stats", role="worker", life=self.args.life, **dataclasses.asdict(stats)
            )


def work_sync(args: argparse.Namespace, worker: _Worker) -> None:
    with geobus.GeoServiceBusClient(ReplicationConfig.from_env()) as client:
        with client.get_queue_receiver(args.queue, prefetch_count=args.prefetch) as receiver:
            while not worker.stop.is_set():
                messages = receiver.receive_messages(max_message_count=args.batch, max_wait_time=0.5)
                worker.handle_sync(receiver, messages, worker.delivered)
                worker.stats(receiver.stats)
            worker.stats(receiver.stats, force=True)


async def work_async(args: argparse.Namespace, worker: _Worker) -> None:
    async with geobus.aio.GeoServiceBusClient(ReplicationConfig.from_env()) as client:
        async with client.get_queue_receiver(args.queue, prefetch_count=args.prefetch) as receiver:
            while not worker.stop.is_set():
                messages = await receiver.receive_messages(max_message_count=args.batch, max_wait_time=0.5)
                await worker.handle_async(receiver, messages, worker.delivered)
                worker.stats(receiver.stats)
            worker.stats(receiver.stats, force=True)


# -- main -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m geobus._tools.drill.agent")
    parser.add_argument("role", choices=["producer", "worker"])
    parser.add_argument("--api", choices=["sync", "async"], required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--seed", default="0")
    parser.add_argument("--prefix", default="m")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--max-padding", type=int, default=512)
    parser.add_argument("--linger", type=float, default=20.0)
    parser.add_argument("--handle-time", type=float, default=0.0)
    parser.add_argument("--life", type=int, default=0)
    parser.add_argument("--prefetch", type=int, default=20, help="messages each namespace's link fetches ahead")
    parser.add_argument("--batch", type=int, default=20, help="the most messages one receive call returns")
    parser.add_argument("--poison", help="the message id whose handler kills the worker (kill -9 of itself)")
    parser.add_argument(
        "--sessions", type=int, default=0,
        help="producer: spread the messages over this many sessions; worker: use session receivers",
    )  # fmt: skip
    return parser


def main() -> int:
    args = _parser().parse_args()
    events = Events(args.events)
    # geobus's warnings on stderr (the run's log file, whose tail a failed row shows) as the
    # demo and the CLI print them: scrubbed, the SDK's reconnect tracebacks hidden.
    try:
        with Out(f"drill {args.role}").logging():
            events.emit("started", role=args.role, pid=os.getpid(), life=args.life)
            _act(args, events)
            events.emit("exited", role=args.role, life=args.life)
    finally:
        events.close()
    return 0


def _act(args: argparse.Namespace, events: Events) -> None:
    if args.role == "producer":
        if args.api == "sync":
            produce_sync(args, events)
        else:
            asyncio.run(produce_async(args, events))
        return
    worker = _Worker(args, events)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    if args.sessions:
        from . import session_worker  # it builds on this module's _Worker

        if args.api == "sync":
            session_worker.work_sync(args, worker)
        else:
            asyncio.run(session_worker.work_async(args, worker))
    elif args.api == "sync":
        work_sync(args, worker)
    else:
        asyncio.run(work_async(args, worker))


if __name__ == "__main__":
    raise SystemExit(main())
