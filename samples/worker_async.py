"""Worker, async: read one queue from both namespaces, each order handled once.

The same scenario as worker.py with ``geobus.aio``: ``async for message in receiver``,
``await receiver.complete_message(message)``, ``namespace_of`` and stats.
It first sends three orders in active mode, so each one waits in both regions.

    python samples/worker_async.py

Against Azure: set GEOBUS_PRIMARY_CONNECTION_STRING and GEOBUS_SECONDARY_CONNECTION_STRING
(see producer.py); the queue "orders" must exist in both namespaces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage

from geobus import ReplicationConfig, ReplicationMode
from geobus.aio import GeoServiceBusClient

from _local import namespaces

QUEUE = "orders"
IDLE_SECONDS = 1.5  # the loop ends after this long without a new message
SHIPPED: list[int] = []  # stands in for your database


async def handle(message: ServiceBusReceivedMessage) -> None:
    """Your business logic. It sees each order once, whichever region delivered it."""
    order = json.loads(str(message))
    SHIPPED.append(order["order"])  # ...await your payment service here


async def seed(config: ReplicationConfig) -> None:
    """Put three orders in both regions (what an active-mode producer leaves behind)."""
    both = dataclasses.replace(config, mode=ReplicationMode.ACTIVE)
    async with GeoServiceBusClient(both) as client, client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages(
            [ServiceBusMessage(json.dumps({"order": n}), message_id=f"order-{n}") for n in (1, 2, 3)]
        )


async def main() -> int:
    with namespaces() as ns:
        print(f"worker (async): {ns.describe()}")
        await seed(ns.config)
        async with GeoServiceBusClient(ns.config) as client:
            async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE_SECONDS) as receiver:
                async for message in receiver:  # the SDK's own ServiceBusReceivedMessage
                    await handle(message)
                    print(f"handled {message.message_id} (from {receiver.namespace_of(message)})")
                    await receiver.complete_message(message)
                stats = receiver.stats
    twice = len(SHIPPED) - len(set(SHIPPED))
    print(
        f"handled {len(SHIPPED)} orders, {twice} twice; "
        f"received {stats.received}, duplicates absorbed {stats.duplicates_absorbed}"
    )
    return 1 if twice else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
