"""``geobus demo``: a producer and a worker across two local namespaces through an outage.

The producer sends through a ``ReplicatedSender``, the worker reads through a
``DedupReceiver``; meanwhile the primary refuses connections, then black-holes
them, then heals. The summary counts what the guarantees are about: acknowledged,
delivered, lost (must be 0), duplicates delivered (must be 0). What a duplicate
is, the demo and the drill define once (``geobus._tools.ledger``): a message
that comes back after its completion failed is a redelivery, not a duplicate.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from .._cli.common import number
from .._cli.output import FAILED, OK, Out
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
from .._sync.sender import ReplicatedSender
from ..testing import NamespacePair, local_pair
from .ledger import Delivery, Ledger

QUEUE = "orders"
LOCK_DURATION = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--messages", type=number(int, "a whole number", at_least=10), default=300,
        help="messages to send (default 300, at least 10)",
    )
    parser.add_argument("--mode", choices=["passive", "active"], default="passive", help="replication mode")
    parser.add_argument(
        "--rate", type=number(float, "a number"), default=60.0, help="messages per second the producer sends"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary; 0 when nothing was lost or duplicated, else 1."""
    demo = _Demo(Out("demo"), args.messages, args.rate)
    # Messages locked to a connection the outage cut come back when their lock expires,
    # as in Service Bus; a short lock keeps the demo short.
    with (
        demo.out.logging(stream=demo.out.text, prefix="  ! "),  # geobus's warnings as demo lines
        tempfile.TemporaryDirectory(prefix="geobus-demo-") as scratch,
        local_pair(lock_duration=LOCK_DURATION) as pair,
    ):
        demo.out.line(f"geobus demo: {args.mode} replication, {args.messages} messages")
        demo.out.line(f"  primary   {pair.primary.endpoint}\n  secondary {pair.secondary.endpoint}")
        with GeoServiceBusClient(_config(pair, args.mode, Path(scratch))) as client:
            demo.stream(client, pair)
    return demo.summary()


def _config(pair: NamespacePair, mode: str, scratch: Path) -> ReplicationConfig:
    return pair.config(
        mode=mode,
        deadlines=Deadlines(attempt=1.0, send=3.0, receive_stall=2.0),
        retry=SdkRetryPolicy(total=0),
        # What no namespace takes waits here (active mode: the copy the primary missed).
        outbox=OutboxPolicy(path=str(scratch / "outbox.db"), backoff_max=0.5),
        # Passive: come home once the primary has answered 3 probes in a row (a real
        # deployment waits minutes, the default cool-down is 60 s).
        failback=FailbackPolicy(mode=FailbackMode.PREFER_PRIMARY, probe_interval=0.25, healthy_probes=3, cooldown=1.5),
        breaker=BreakerPolicy(cooldown=1.0),
    )


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
    ledger: Ledger = field(default_factory=Ledger)  # every delivery to the handler, classified
    per_namespace: Counter[str] = field(default_factory=Counter)
    absorbed: int = 0
    settle_failures: int = 0


class _Demo:
    """One run: the producer on this thread, the worker on another, the faults by the clock."""

    def __init__(self, out: Out, messages: int, rate: float) -> None:
        self.out, self.messages, self.rate = out, messages, rate
        self.started = time.monotonic()
        self.producer, self.worker = _Producer(), _Worker()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, index: int, text: str) -> None:
        self.out.line(f"  {self.elapsed():5.1f} s  [{index:>4}] {text}")

    def show_progress(self) -> None:
        def counts() -> dict[str, object]:
            timeline = self.producer.timeline
            return {
                "acknowledged": len(self.producer.acknowledged),
                "delivered": self.worker.ledger.deliveries,
                "absorbed": self.worker.absorbed,
                "traffic ->": timeline[-1].carriers if timeline else "-",
            }

        self.out.progress(f"{self.elapsed():5.1f} s", counts)

    def stream(self, client: GeoServiceBusClient, pair: NamespacePair) -> None:
        """Produce through the outage; wait until the worker has every acknowledged message."""
        done = threading.Event()
        worker_thread = threading.Thread(target=self._work, args=(client, done), daemon=True)
        worker_thread.start()
        with client.get_queue_sender(QUEUE) as sender:
            self._produce(sender, pair)
        self._wait_for(
            lambda: self.worker.ledger.delivered_ids >= self.producer.acknowledged, timeout=3 * LOCK_DURATION + 10
        )
        done.set()
        worker_thread.join(timeout=15)

    def _produce(self, sender: ReplicatedSender, pair: NamespacePair) -> None:
        # Faults are scheduled by time, a quarter of the planned run each: the outage
        # lasts as long whatever the sends cost while it lasts.
        planned = self.messages / self.rate
        faults: list[tuple[float, str, Callable[[], None]]] = [
            (0.25 * planned, "the primary refuses connections", lambda: pair.refuse("primary")),
            (0.50 * planned, "the primary black-holes its traffic (accepts, never answers)",
             lambda: pair.black_hole("primary")),
            (0.75 * planned, "the primary is back", lambda: pair.heal("primary")),
        ]  # fmt: skip
        began_run: float | None = None  # set once the first send has opened the connections
        for index in range(self.messages):
            while faults and began_run is not None and time.monotonic() - began_run >= faults[0][0]:
                _, text, action = faults.pop(0)
                action()
                self.say(index, text)
            latency = self._send(sender, index)
            if index == 0:  # the first send opened the connections: the stream's clock starts now
                began_run = time.monotonic()
            self.show_progress()
            time.sleep(max(0.0, 1.0 / self.rate - latency))  # a steady producer, not a flood
        for _, text, action in faults:  # a run that ended early still heals the primary
            action()
            self.say(self.messages, text)
        # Copies the outbox kept (active mode: those the primary missed) go out now that
        # it is back; a real producer keeps running, the demo waits for them.
        if sender.stats.outbox_depth:
            self.say(self.messages, f"draining {sender.stats.outbox_depth} buffered copies")
            self._wait_for(lambda: sender.stats.outbox_depth == 0, timeout=30)

    def _send(self, sender: ReplicatedSender, index: int) -> float:
        """One send, noted; its latency in seconds."""
        producer, message_id = self.producer, f"order-{index}"
        began = time.monotonic()
        try:
            result = sender.send_messages(ServiceBusMessage(f"order {index}", message_id=message_id))
        except GeobusError as exc:
            producer.failed += 1
            self.say(index, f"not sent: {type(exc).__name__}")
            return time.monotonic() - began
        latency = time.monotonic() - began
        producer.max_latency = max(producer.max_latency, latency)
        producer.acknowledged.add(message_id)
        producer.buffered += bool(result.buffered)
        carriers = "+".join(result.landed) or "outbox"
        if result.failed_over:
            producer.failovers += 1
            producer.failover_time = max(producer.failover_time, latency)
            self.say(index, f"failed over to {sender.active_namespace} in {latency * 1000:.0f} ms")
        elif producer.timeline and producer.timeline[-1].carriers != carriers and sender.stats.mode == "passive":
            self.say(index, f"back on {sender.active_namespace} (failback after healthy probes)")
        producer.carried(carriers, self.elapsed())
        return latency

    def _work(self, client: GeoServiceBusClient, done: threading.Event) -> None:
        worker = self.worker
        with client.get_queue_receiver(QUEUE, max_wait_time=0.5) as receiver:
            while not done.is_set():
                for message in receiver.receive_messages(max_message_count=20, max_wait_time=0.5):
                    message_id = str(message.message_id)
                    worker.ledger.delivered(message_id)
                    worker.per_namespace[receiver.namespace_of(message)] += 1
                    try:
                        receiver.complete_message(message)
                        worker.ledger.completed(message_id)
                    except (ServiceBusError, GeobusError):
                        # Its namespace just went down: the twin (or the redelivery) comes instead.
                        worker.ledger.settle_failed(message_id)
                        worker.settle_failures += 1
                worker.absorbed = receiver.stats.duplicates_absorbed

    def _wait_for(self, condition: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            self.show_progress()
            time.sleep(0.1)

    def summary(self) -> int:
        """Print the summary; the exit status (1 if anything was lost or duplicated)."""
        producer, worker, ledger = self.producer, self.worker, self.worker.ledger
        lost = producer.acknowledged - ledger.delivered_ids
        received = ", ".join(f"{name} {count}" for name, count in sorted(worker.per_namespace.items()))
        rows = [
            ("sent", self.messages),
            ("acknowledged", len(producer.acknowledged)),
            ("  of which buffered", producer.buffered),
            ("not acknowledged (errors)", producer.failed),
            ("received from", received or "-"),
            ("delivered to the handler", ledger.deliveries),
            ("duplicates absorbed", worker.absorbed),
            ("duplicates delivered", ledger.duplicates),
            ("completions that failed", worker.settle_failures),
            ("  redelivered after", ledger.counts[Delivery.REDELIVERED]),
            ("lost", len(lost)),
            ("failovers", producer.failovers),
            ("failover time", f"{producer.failover_time * 1000:.0f} ms" if producer.failovers else "-"),
            ("slowest send", f"{producer.max_latency * 1000:.0f} ms"),
        ]
        out = self.out
        out.line()
        for label, value in rows:
            out.line(f"  {label:<26}{value}")
        out.line("\n  traffic (who stored each acknowledged message, in order):")
        for segment in producer.timeline:
            out.line(f"    {segment.began:5.1f} - {segment.ended:5.1f} s  {segment.carriers:<20} x{segment.messages}")
        failed = lost or ledger.duplicates
        out.line(
            f"\n  {'FAILED' if failed else 'OK'}: lost {len(lost)}, duplicates delivered {ledger.duplicates}, "
            f"in {self.elapsed():.1f} s"
        )
        return FAILED if failed else OK
