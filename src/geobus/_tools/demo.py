"""``geobus demo``: a producer and a worker across two local namespaces through an outage.

The producer sends through a ``ReplicatedSender``, the worker reads through a
``DedupReceiver``; meanwhile the primary refuses connections, then black-holes
them, then heals. The summary counts what the guarantees are about: acknowledged,
delivered, lost (must be 0), duplicates delivered (must be 0).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from .._config import (
    BreakerPolicy,
    Deadlines,
    FailbackMode,
    FailbackPolicy,
    OutboxPolicy,
    ReplicationConfig,
    SdkRetryPolicy,
)
from .._errors import GeobusError
from .._sync.client import GeoServiceBusClient
from ..local import LocalNamespace, development_key

QUEUE = "orders"
LOCK_DURATION = 5.0


def _quiet_logging() -> None:
    """geobus's warnings as demo lines; the SDK's own reconnect tracebacks hidden."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  ! %(message)s"))
    geobus_log = logging.getLogger("geobus")
    geobus_log.addHandler(handler)
    geobus_log.propagate = False
    logging.getLogger("azure").setLevel(logging.CRITICAL)


@dataclass
class _Segment:
    """A stretch of the stream carried by the same namespace(s)."""

    carriers: str
    began: float
    ended: float
    messages: int = 1


@dataclass
class _Producer:
    acknowledged: set[str] = field(default_factory=set)
    buffered: int = 0
    failed: int = 0
    timeline: list[_Segment] = field(default_factory=list)
    max_latency: float = 0.0
    failovers: int = 0
    failover_time: float = 0.0  # the slowest send that had to fail over

    def carried(self, carriers: str, at: float) -> None:
        if self.timeline and self.timeline[-1].carriers == carriers:
            self.timeline[-1].messages += 1
            self.timeline[-1].ended = at
        else:
            self.timeline.append(_Segment(carriers, at, at))


@dataclass
class _Worker:
    delivered: Counter[str] = field(default_factory=Counter)
    per_namespace: Counter[str] = field(default_factory=Counter)
    absorbed: int = 0
    settle_failures: int = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=300, help="messages to send (default 300)")
    parser.add_argument("--mode", choices=["passive", "active"], default="passive", help="replication mode")
    parser.add_argument("--rate", type=float, default=60.0, help="messages per second the producer sends")


def run(args: argparse.Namespace) -> int:
    return run_demo(messages=args.messages, mode=args.mode, rate=args.rate)


def run_demo(*, messages: int = 300, mode: str = "passive", rate: float = 60.0) -> int:
    """Run the demo and print its summary; 0 when nothing was lost or duplicated."""
    if messages < 10:
        raise SystemExit("geobus demo: --messages must be at least 10")
    if rate <= 0:
        raise SystemExit("geobus demo: --rate must be positive")
    started = time.monotonic()
    _quiet_logging()
    scratch = tempfile.TemporaryDirectory(prefix="geobus-demo-")
    # Messages locked to a connection the outage cut come back when their lock expires,
    # as in Service Bus; a short lock keeps the demo short.
    with (
        LocalNamespace(lock_duration=LOCK_DURATION, key=development_key(1)) as primary,
        LocalNamespace(lock_duration=LOCK_DURATION, key=development_key(2)) as secondary,
    ):
        config = ReplicationConfig.from_connection_strings(
            primary.connection_string,
            secondary.connection_string,
            mode=mode,
            deadlines=Deadlines(attempt=1.0, send=3.0, receive_stall=2.0),
            retry=SdkRetryPolicy(total=0),
            # What no namespace takes waits here (active mode: the copy the primary missed).
            outbox=OutboxPolicy(path=str(Path(scratch.name) / "outbox.db"), backoff_max=0.5),
            # Passive: come home once the primary has answered 3 probes in a row (a real
            # deployment waits minutes, the default cool-down is 60 s).
            failback=FailbackPolicy(
                mode=FailbackMode.PREFER_PRIMARY, probe_interval=0.25, healthy_probes=3, cooldown=1.5
            ),
            breaker=BreakerPolicy(cooldown=1.0),
        )
        print(f"geobus demo: {mode} replication, {messages} messages")
        print(f"  primary   {primary.endpoint}\n  secondary {secondary.endpoint}")
        producer, worker = _Producer(), _Worker()
        progress = _Progress(producer, worker, started)
        with scratch, GeoServiceBusClient(config) as client:
            done = threading.Event()
            worker_thread = threading.Thread(target=_work, args=(client, worker, done), daemon=True)
            worker_thread.start()
            _produce(client, producer, primary, messages, rate, progress)
            _wait_for(
                lambda: set(worker.delivered) >= producer.acknowledged,
                timeout=3 * LOCK_DURATION + 10,
                tick=progress.show,
            )
            progress.clear()
            done.set()
            worker_thread.join(timeout=15)
        lost = producer.acknowledged - set(worker.delivered)
        duplicates = sum(count - 1 for count in worker.delivered.values())
        _summary(producer, worker, messages, lost, duplicates, started)
    return 0 if not lost and not duplicates else 1


class _Progress:
    """One live line on a terminal: sent, acknowledged, delivered, where traffic goes."""

    def __init__(self, producer: _Producer, worker: _Worker, started: float) -> None:
        self.producer, self.worker, self.started = producer, worker, started
        self.live = sys.stdout.isatty()
        self._shown = 0.0

    def show(self) -> None:
        if not self.live or time.monotonic() - self._shown < 0.1:
            return
        self._shown = time.monotonic()
        carriers = self.producer.timeline[-1].carriers if self.producer.timeline else "-"
        sys.stdout.write(
            f"\r  {time.monotonic() - self.started:5.1f} s  acknowledged {len(self.producer.acknowledged):>4}"
            f"  delivered {sum(self.worker.delivered.values()):>4}  absorbed {self.worker.absorbed:>3}"
            f"  traffic -> {carriers:<18}"
        )
        sys.stdout.flush()

    def clear(self) -> None:
        if self.live:
            sys.stdout.write("\r" + " " * 100 + "\r")

    def say(self, text: str) -> None:
        self.clear()
        print(text)


def _produce(
    client: GeoServiceBusClient,
    producer: _Producer,
    primary: LocalNamespace,
    messages: int,
    rate: float,
    progress: _Progress,
) -> None:
    # Faults are scheduled by time, a quarter of the planned run each: the outage
    # lasts as long whatever the sends cost while it lasts.
    planned = messages / rate
    faults = [
        (0.25 * planned, "the primary refuses connections", primary.refuse),
        (0.50 * planned, "the primary black-holes its traffic (accepts, never answers)", primary.black_hole),
        (0.75 * planned, "the primary is back", primary.heal),
    ]
    began_run: float | None = None  # set once the first send has opened the connections
    with client.get_queue_sender(QUEUE) as sender:
        mode_passive = sender.stats.mode == "passive"
        for index in range(messages):
            while faults and began_run is not None and time.monotonic() - began_run >= faults[0][0]:
                _, text, action = faults.pop(0)
                action()
                progress.say(f"  {time.monotonic() - progress.started:5.1f} s  [{index:>4}] {text}")
            message_id = f"order-{index}"
            began = time.monotonic()
            try:
                result = sender.send_messages(ServiceBusMessage(f"order {index}", message_id=message_id))
            except GeobusError as exc:
                producer.failed += 1
                progress.say(f"  [{index:>4}] not sent: {type(exc).__name__}")
                continue
            latency = time.monotonic() - began
            producer.max_latency = max(producer.max_latency, latency)
            producer.acknowledged.add(message_id)
            producer.buffered += bool(result.buffered)
            if result.failed_over:
                producer.failovers += 1
                producer.failover_time = max(producer.failover_time, latency)
                progress.say(
                    f"  {time.monotonic() - progress.started:5.1f} s  [{index:>4}] failed over to "
                    f"{sender.active_namespace} in {latency * 1000:.0f} ms"
                )
            elif producer.timeline and producer.timeline[-1].carriers != "+".join(result.landed) and mode_passive:
                progress.say(
                    f"  {time.monotonic() - progress.started:5.1f} s  [{index:>4}] back on "
                    f"{sender.active_namespace} (failback after healthy probes)"
                )
            producer.carried("+".join(result.landed) or "outbox", time.monotonic() - progress.started)
            if index == 0:  # the first send opened the connections: the stream's clock starts now
                began_run = time.monotonic()
            progress.show()
            time.sleep(max(0.0, 1.0 / rate - latency))  # a steady producer, not a flood
        for _, text, action in faults:  # a run that ended early still heals the primary
            action()
            progress.say(f"  [{messages:>4}] {text}")
        # Copies the outbox kept (active mode: those the primary missed) go out now that
        # it is back; a real producer keeps running, the demo waits for them.
        if sender.stats.outbox_depth:
            progress.say(f"  {time.monotonic() - progress.started:5.1f} s  draining {sender.stats.outbox_depth} buffered copies")
            _wait_for(lambda: sender.stats.outbox_depth == 0, timeout=30, tick=progress.show)


def _work(client: GeoServiceBusClient, worker: _Worker, done: threading.Event) -> None:
    with client.get_queue_receiver(QUEUE, max_wait_time=0.5) as receiver:
        while not done.is_set():
            for message in receiver.receive_messages(max_message_count=20, max_wait_time=0.5):
                worker.delivered[str(message.message_id)] += 1
                worker.per_namespace[receiver.namespace_of(message)] += 1
                try:
                    receiver.complete_message(message)
                except ServiceBusError:
                    # Its namespace just went down: the twin (or the redelivery) comes instead.
                    worker.settle_failures += 1
            worker.absorbed = receiver.stats.duplicates_absorbed


def _wait_for(condition: Callable[[], bool], *, timeout: float, tick: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        tick()
        time.sleep(0.1)


def _summary(
    producer: _Producer, worker: _Worker, messages: int, lost: set[str], duplicates: int, started: float
) -> None:
    received = ", ".join(f"{name} {count}" for name, count in sorted(worker.per_namespace.items()))
    rows = [
        ("sent", messages),
        ("acknowledged", len(producer.acknowledged)),
        ("  of which buffered", producer.buffered),
        ("not acknowledged (errors)", producer.failed),
        ("received from", received or "-"),
        ("delivered to the handler", sum(worker.delivered.values())),
        ("duplicates absorbed", worker.absorbed),
        ("duplicates delivered", duplicates),
        ("completions that failed", worker.settle_failures),
        ("lost", len(lost)),
        ("failovers", producer.failovers),
        ("failover time", f"{producer.failover_time * 1000:.0f} ms" if producer.failovers else "-"),
        ("slowest send", f"{producer.max_latency * 1000:.0f} ms"),
    ]
    print()
    for label, value in rows:
        print(f"  {label:<26}{value}")
    print("\n  traffic (who stored each acknowledged message, in order):")
    for segment in producer.timeline:
        print(f"    {segment.began:5.1f} - {segment.ended:5.1f} s  {segment.carriers:<20} x{segment.messages}")
    verdict = "OK" if not lost and not duplicates else "FAILED"
    took = time.monotonic() - started
    print(f"\n  {verdict}: lost {len(lost)}, duplicates delivered {duplicates}, in {took:.1f} s")
