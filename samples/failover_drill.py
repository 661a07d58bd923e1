"""Failover drill: rehearse a regional outage against your own handler code.

Your handler (``handle_order`` below: call into your application from it) runs
in a worker while a producer sends orders and the drill takes the primary
namespace down: it refuses connections, then black-holes them (accepts TCP,
never answers), then comes back. At the end the drill counts what an outage
must not cost, orders acknowledged but never handled (lost), and what your
handler must tolerate: orders it handled twice (duplicates), for example when a
namespace died between the handler and ``complete_message``.

Local namespaces only: a drill needs a primary it can take down, and it cannot
take Azure down. GEOBUS_PRIMARY_* is ignored; GEOBUS_MODE=active works.

    python samples/failover_drill.py
    GEOBUS_MODE=active python samples/failover_drill.py
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections import Counter

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import ServiceBusError

from geobus import Deadlines, GeoServiceBusClient, ReplicationError, SdkRetryPolicy
from geobus.local import LocalNamespace

from _local import LOCAL_LOCK_DURATION, namespaces

QUEUE = "orders"
RATE = 20  # orders per second
SECONDS = 5.0  # of sending; the outage below happens meanwhile
OUTAGE = [  # (seconds into the drill, what the primary does)
    (1.0, LocalNamespace.refuse, "the primary refuses connections"),
    (2.5, LocalNamespace.black_hole, "the primary black-holes its traffic (accepts, never answers)"),
    (4.0, LocalNamespace.heal, "the primary is back"),
]

# -- your code -----------------------------------------------------------------------------

HANDLED: Counter[str] = Counter()  # what your handler did, for the drill to check


def handle_order(message: ServiceBusReceivedMessage) -> None:
    """Your handler. Replace the body with a call into your application."""
    order = json.loads(str(message))
    HANDLED[order["id"]] += 1


# -- the drill -------------------------------------------------------------------------------


def work(client: GeoServiceBusClient, stop: threading.Event) -> None:
    """The worker: your handler, then complete, until the drill says stop."""
    with client.get_queue_receiver(QUEUE) as receiver:
        while not stop.is_set():
            for message in receiver.receive_messages(max_message_count=10, max_wait_time=0.5):
                handle_order(message)
                try:
                    receiver.complete_message(message)
                except ServiceBusError as exc:
                    # Its namespace went down under it: the message comes back later (or its
                    # twin does), and your handler sees it again. That is at-least-once.
                    print(f"  completing {message.message_id} failed: {type(exc).__name__}")


def produce(client: GeoServiceBusClient, primary: LocalNamespace) -> list[str]:
    """Send orders at a steady rate while the outage plays out; return those acknowledged."""
    acknowledged: list[str] = []
    outage = list(OUTAGE)
    began = time.monotonic()
    with client.get_queue_sender(QUEUE) as sender:
        number = 0
        while time.monotonic() - began < SECONDS:
            while outage and time.monotonic() - began >= outage[0][0]:
                _, fault, text = outage.pop(0)
                fault(primary)
                print(f"  [{number:>3}] {text}")
            number += 1
            order_id = f"order-{number}"
            try:
                result = sender.send_messages(
                    ServiceBusMessage(json.dumps({"id": order_id}), message_id=order_id)
                )
            except ReplicationError as exc:
                print(f"  [{number:>3}] not acknowledged: {exc}")  # the caller knows: not lost
                continue
            acknowledged.append(order_id)
            if result.failed_over:
                print(f"  [{number:>3}] failed over to {sender.active_namespace}")
            time.sleep(1 / RATE)
        for _, fault, _text in outage:  # a run cut short still heals the primary
            fault(primary)
        print(f"  sent {number} orders: {sender.stats.messages_sent}, failovers {sender.stats.failovers}")
    return acknowledged


def main() -> int:
    with namespaces(local_only=True) as ns:
        assert ns.primary is not None and ns.secondary is not None  # local namespaces
        config = dataclasses.replace(
            ns.config,
            # Short deadlines keep the drill short; rehearse with your production values too.
            deadlines=Deadlines(attempt=1.5, send=3.0, receive_stall=2.0),
            retry=SdkRetryPolicy(total=0),
        )
        print(f"failover drill: {ns.describe()}")
        with GeoServiceBusClient(config) as client:
            stop = threading.Event()
            worker = threading.Thread(target=work, args=(client, stop), name="worker")
            worker.start()
            try:
                acknowledged = produce(client, ns.primary)
                # Wait until both queues are empty: every copy handled or absorbed. A message
                # whose namespace died before it was completed comes back when its lock expires.
                deadline = time.monotonic() + 3 * LOCAL_LOCK_DURATION
                while (ns.primary.counts() or ns.secondary.counts()) and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                stop.set()
                worker.join()
    lost = sorted(set(acknowledged) - set(HANDLED))
    duplicates = sum(count - 1 for count in HANDLED.values())
    print(f"acknowledged {len(acknowledged)}, handled {len(HANDLED)}, lost {len(lost)}, duplicates {duplicates}")
    if lost:
        print(f"FAILED: lost {', '.join(lost)}")
        return 1
    if duplicates:
        # At-least-once, as with azure-servicebus alone: your handler must be idempotent.
        print(f"duplicates handled twice: {', '.join(k for k, n in HANDLED.items() if n > 1)}")
    print("OK: nothing acknowledged was lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
