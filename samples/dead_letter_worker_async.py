"""Dead-letter worker, async: read both regions' dead-letter queues, each message once.

The same scenario as dead_letter_worker.py with ``geobus.aio``:
``get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER)``,
``async for message in receiver``, the dead-letter reason and description, and
``await receiver.complete_message(message)`` (gone from both regions' dead-letter
queues). It first sends four orders in active mode and dead-letters the two
without a shipping address, so each of those waits in both dead-letter queues.

    python samples/dead_letter_worker_async.py

Against Azure: set GEOBUS_PRIMARY_CONNECTION_STRING and GEOBUS_SECONDARY_CONNECTION_STRING
(see producer.py); the queue "orders" must exist in both namespaces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue

from geobus import ReplicationConfig, ReplicationMode
from geobus.aio import GeoServiceBusClient

from _local import namespaces

QUEUE = "orders"
IDLE_SECONDS = 1.5  # each loop ends after this long without a new message
ORDERS = {1: "Main St 1", 2: None, 3: "Quay 7", 4: None}  # order -> shipping address


async def seed(config: ReplicationConfig) -> None:
    """Four orders in both regions; an order worker dead-letters the ones without an address."""
    both = dataclasses.replace(config, mode=ReplicationMode.ACTIVE)
    async with GeoServiceBusClient(both) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages(
                [
                    ServiceBusMessage(json.dumps({"order": n, "address": address}), message_id=f"order-{n}")
                    for n, address in ORDERS.items()
                ]
            )
        async with client.get_queue_receiver(QUEUE, max_wait_time=IDLE_SECONDS) as receiver:
            async for message in receiver:
                if json.loads(str(message))["address"] is None:
                    await receiver.dead_letter_message(
                        message, reason="NoAddress", error_description="the order has no shipping address"
                    )
                else:
                    await receiver.complete_message(message)


async def main() -> int:
    seen: list[str] = []
    with namespaces() as ns:
        print(f"dead-letter worker (async): {ns.describe()}")
        await seed(ns.config)
        async with GeoServiceBusClient(ns.config) as client:
            dead_letters = client.get_queue_receiver(
                QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=IDLE_SECONDS
            )
            async with dead_letters as receiver:
                async for message in receiver:  # the SDK's own ServiceBusReceivedMessage
                    seen.append(str(message.message_id))
                    print(
                        f"{message.message_id}: {message.dead_letter_reason} "
                        f"({message.dead_letter_error_description})"
                    )
                    await receiver.complete_message(message)  # gone from both dead-letter queues
    twice = len(seen) - len(set(seen))
    print(f"read {len(set(seen))} dead-lettered orders, {twice} twice")
    return 1 if twice else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
