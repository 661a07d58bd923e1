"""Failover drill, async: rehearse a regional outage against your own handler code.

The same drill as failover_drill.py with ``geobus.aio``: your handler
(``handle_order``) runs in a worker task while a producer task sends orders and
the drill makes the primary refuse, then black-hole, then heal. It counts lost
orders (must be 0) and orders your handler saw twice (at-least-once).

Local namespaces only: a drill needs a primary it can take down, and it cannot
take Azure down. GEOBUS_PRIMARY_* is ignored; GEOBUS_MODE=active works.

    python samples/failover_drill_async.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections import Counter

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import ServiceBusError

from geobus import Deadlines, ReplicationError, SdkRetryPolicy
from geobus.aio import GeoServiceBusClient
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


async def handle_order(message: ServiceBusReceivedMessage) -> None:
    """Your handler. Replace the body with a call into your application."""
    order = json.loads(str(message))
    HANDLED[order["id"]] += 1


# -- the drill -------------------------------------------------------------------------------


async def work(client: GeoServiceBusClient) -> None:
    """The worker: your handler, then complete, until the drill cancels it."""
    async with client.get_queue_receiver(QUEUE) as receiver:
        async for message in receiver:
            await handle_order(message)
            try:
                await receiver.complete_message(message)
            except ServiceBusError as exc:
                # Its namespace went down under it: the message comes back later (or its
                # twin does), and your handler sees it again. That is at-least-once.
                print(f"  completing {message.message_id} failed: {type(exc).__name__}")


async def produce(client: GeoServiceBusClient, primary: LocalNamespace) -> list[str]:
    """Send orders at a steady rate while the outage plays out; return those acknowledged."""
    loop = asyncio.get_running_loop()
    acknowledged: list[str] = []
    outage = list(OUTAGE)
    began = loop.time()
    async with client.get_queue_sender(QUEUE) as sender:
        number = 0
        while loop.time() - began < SECONDS:
            while outage and loop.time() - began >= outage[0][0]:
                _, fault, text = outage.pop(0)
                fault(primary)
                print(f"  [{number:>3}] {text}")
            number += 1
            order_id = f"order-{number}"
            try:
                result = await sender.send_messages(
                    ServiceBusMessage(json.dumps({"id": order_id}), message_id=order_id)
                )
            except ReplicationError as exc:
                print(f"  [{number:>3}] not acknowledged: {exc}")  # the caller knows: not lost
                continue
            acknowledged.append(order_id)
            if result.failed_over:
                print(f"  [{number:>3}] failed over to {sender.active_namespace}")
            await asyncio.sleep(1 / RATE)
        for _, fault, _text in outage:  # a run cut short still heals the primary
            fault(primary)
        print(f"  sent {number} orders: {sender.stats.messages_sent}, failovers {sender.stats.failovers}")
    return acknowledged


async def main() -> int:
    with namespaces(local_only=True) as ns:
        assert ns.primary is not None and ns.secondary is not None  # local namespaces
        config = dataclasses.replace(
            ns.config,
            # Short deadlines keep the drill short; rehearse with your production values too.
            deadlines=Deadlines(attempt=1.5, send=3.0, receive_stall=2.0),
            retry=SdkRetryPolicy(total=0),
        )
        print(f"failover drill (async): {ns.describe()}")
        async with GeoServiceBusClient(config) as client:
            worker = asyncio.create_task(work(client))
            try:
                acknowledged = await produce(client, ns.primary)
                # Wait until both queues are empty: every copy handled or absorbed. A message
                # whose namespace died before it was completed comes back when its lock expires.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 3 * LOCAL_LOCK_DURATION
                while (ns.primary.counts() or ns.secondary.counts()) and loop.time() < deadline:
                    await asyncio.sleep(0.1)
            finally:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
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
    sys.exit(asyncio.run(main()))
