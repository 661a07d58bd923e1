"""Producer, async: send orders to two namespaces through geobus.aio.

The same scenario as producer.py with ``geobus.aio`` (the Azure SDK convention:
same names, async). Passive or active replication by configuration (GEOBUS_MODE).

    python samples/producer_async.py
    GEOBUS_MODE=active python samples/producer_async.py

Against Azure: set GEOBUS_PRIMARY_CONNECTION_STRING and GEOBUS_SECONDARY_CONNECTION_STRING
(see producer.py); the queue "orders" must exist in both namespaces.
"""

from __future__ import annotations

import asyncio
import json
import sys

from azure.servicebus import ServiceBusMessage

from geobus import ReplicationError, SendResult
from geobus.aio import GeoServiceBusClient

from _local import namespaces

QUEUE = "orders"
ORDERS = 5


def describe(result: SendResult) -> str:
    text = f"landed on {' + '.join(result.landed) or 'no namespace'}"
    if result.failed_over:
        text += " (failed over: the other namespace is now active)"
    if result.missed:
        text += f"; missed {', '.join(result.missed)}"
    if result.buffered:
        text += f"; buffered for {', '.join(result.buffered)}"
    return text


async def main() -> int:
    with namespaces() as ns:
        print(f"producer (async): {ns.describe()}")
        async with GeoServiceBusClient(ns.config) as client, client.get_queue_sender(QUEUE) as sender:
            messages = [
                ServiceBusMessage(
                    json.dumps({"order": number, "sku": "tea", "quantity": number}),
                    message_id=f"order-{number}",
                    content_type="application/json",
                )
                for number in range(1, ORDERS + 1)
            ]
            for message in messages:
                try:
                    result = await sender.send_messages(message)
                except ReplicationError as exc:
                    print(f"{message.message_id}: not sent: {exc}")
                    return 1
                print(f"{message.message_id}: {describe(result)}")
            # A list goes as one batch per namespace, all or nothing, with the same guarantees.
            extra = [ServiceBusMessage(json.dumps({"order": n}), message_id=f"order-{n}") for n in (6, 7)]
            result = await sender.send_messages(extra)
            print(f"order-6, order-7 (one batch): {describe(result)}")
            stats = sender.stats
            print(
                f"sent {ORDERS + len(extra)} orders in {stats.mode} mode; per namespace {stats.messages_sent}, "
                f"failovers {stats.failovers}, active namespace {sender.active_namespace}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
