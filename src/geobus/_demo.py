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
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from ._client import GeoServiceBusClient
from ._config import Deadlines, ReplicationConfig, SdkRetryPolicy
from ._errors import GeobusError
from .local import LocalNamespace

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
class _Producer:
    acknowledged: set[str] = field(default_factory=set)
    failed: int = 0
    timeline: list[tuple[str, int]] = field(default_factory=list)  # (namespaces, messages)
    max_latency: float = 0.0
    failovers: int = 0


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
    # Messages locked to a connection the outage cut come back when their lock expires,
    # as in Service Bus; a short lock keeps the demo short.
    with LocalNamespace(lock_duration=LOCK_DURATION) as primary, LocalNamespace(lock_duration=LOCK_DURATION) as secondary:
        config = ReplicationConfig.from_connection_strings(
            primary.connection_string,
            secondary.connection_string,
            mode=mode,
            deadlines=Deadlines(attempt=1.0, send=3.0, receive_stall=2.0),
            retry=SdkRetryPolicy(total=0),
        )
        print(f"geobus demo: {mode} replication, {messages} messages")
        print(f"  primary   {primary.endpoint}\n  secondary {secondary.endpoint}")
        producer, worker = _Producer(), _Worker()
        with GeoServiceBusClient(config) as client:
            done = threading.Event()
            worker_thread = threading.Thread(target=_work, args=(client, worker, done), daemon=True)
            worker_thread.start()
            _produce(client, producer, primary, messages, rate)
            _wait_for(lambda: set(worker.delivered) >= producer.acknowledged, timeout=3 * LOCK_DURATION + 10)
            done.set()
            worker_thread.join(timeout=15)
        lost = producer.acknowledged - set(worker.delivered)
        duplicates = sum(count - 1 for count in worker.delivered.values())
        _summary(producer, worker, messages, lost, duplicates, time.monotonic() - started)
    return 0 if not lost and not duplicates else 1


def _produce(
    client: GeoServiceBusClient, producer: _Producer, primary: LocalNamespace, messages: int, rate: float
) -> None:
    # Faults are scheduled by time, a quarter of the planned run each: the outage
    # lasts as long whatever the sends cost while it lasts.
    planned = messages / rate
    faults = [
        (0.25 * planned, "the primary refuses connections", primary.refuse),
        (0.50 * planned, "the primary black-holes its traffic (accepts, never answers)", primary.black_hole),
        (0.75 * planned, "the primary is back", primary.heal),
    ]
    began_run = time.monotonic()
    with client.get_queue_sender(QUEUE) as sender:
        for index in range(messages):
            while faults and time.monotonic() - began_run >= faults[0][0]:
                _, text, action = faults.pop(0)
                action()
                print(f"  [{index:>4}] {text}")
            message_id = f"order-{index}"
            began = time.monotonic()
            try:
                result = sender.send_messages(ServiceBusMessage(f"order {index}", message_id=message_id))
            except GeobusError as exc:
                producer.failed += 1
                print(f"  [{index:>4}] not sent: {type(exc).__name__}")
                continue
            latency = time.monotonic() - began
            producer.max_latency = max(producer.max_latency, latency)
            producer.acknowledged.add(message_id)
            carriers = "+".join(result.landed)
            if result.failed_over:
                producer.failovers += 1
                print(f"  [{index:>4}] failed over to {sender.active_namespace} in {latency * 1000:.0f} ms")
            if producer.timeline and producer.timeline[-1][0] == carriers:
                producer.timeline[-1] = (carriers, producer.timeline[-1][1] + 1)
            else:
                producer.timeline.append((carriers, 1))
            time.sleep(max(0.0, 1.0 / rate - latency))  # a steady producer, not a flood
        for _, text, action in faults:  # a run that ended early still heals the primary
            action()
            print(f"  [{messages:>4}] {text}")


def _work(client: GeoServiceBusClient, worker: _Worker, done: threading.Event) -> None:
    with client.get_queue_receiver(QUEUE, max_wait_time=0.5) as receiver:
        while not done.is_set():
            for message in receiver.receive_messages(max_message_count=20, max_wait_time=0.5):
                worker.delivered[str(message.message_id)] += 1
                worker.per_namespace[receiver.namespace_of(message)] += 1
                try:
                    receiver.complete_message(message)
                except ServiceBusError as exc:
                    # Its namespace just went down: the twin (or the redelivery) comes instead.
                    worker.settle_failures += 1
                    print(f"  ! completing a message on a failed namespace: {type(exc).__name__}")
        worker.absorbed = receiver.stats.duplicates_absorbed


def _wait_for(condition: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


def _summary(producer: _Producer, worker: _Worker, messages: int, lost: set[str], duplicates: int, took: float) -> None:
    print()
    print(f"  sent                      {messages}")
    print(f"  acknowledged              {len(producer.acknowledged)}")
    print(f"  not acknowledged (errors) {producer.failed}")
    received = ", ".join(f"{name} {count}" for name, count in sorted(worker.per_namespace.items()))
    print(f"  delivered to the handler  {sum(worker.delivered.values())} ({received})")
    print(f"  duplicates absorbed       {worker.absorbed}")
    print(f"  duplicates delivered      {duplicates}")
    print(f"  lost                      {len(lost)}")
    print(f"  failovers                 {producer.failovers}")
    print(f"  slowest send              {producer.max_latency * 1000:.0f} ms")
    timeline = " -> ".join(f"{name} x{count}" for name, count in producer.timeline)
    print(f"  traffic                   {timeline}")
    verdict = "OK" if not lost and not duplicates else "FAILED"
    print(f"\n  {verdict}: lost {len(lost)}, duplicates delivered {duplicates}, in {took:.1f} s")
