"""Worker: read one queue from both namespaces, each order handled once.

Shows: DedupReceiver in the SDK's own loop (``for message in receiver``),
``complete_message`` (the held twin in the other region is completed too),
``namespace_of`` and the receiver's stats.

To have something to read, the sample first sends three orders in active mode,
so each order waits in both regions, as it would behind an active-mode producer.

    python samples/worker.py

Against Azure: set GEOBUS_PRIMARY_CONNECTION_STRING and GEOBUS_SECONDARY_CONNECTION_STRING
(see producer.py); the queue "orders" must exist in both namespaces. Orders that
producer.py left there are read too.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage

from geobus import GeoServiceBusClient, ReplicationConfig, ReplicationMode

from _local import namespaces

QUEUE = "orders"
IDLE_SECONDS = 1.5  # the loop ends after this long without a new message
SHIPPED: list[int] = []  # stands in for your database


def handle(message: ServiceBusReceivedMessage) -> None:
    """Your business logic. It sees each order once, whichever region delivered it."""
    order = json.loads(str(message))
    SHIPPED.append(order["order"])


def seed(config: ReplicationConfig) -> None:
    """Put three orders in both regions (what an active-mode producer leaves behind)."""
    both = dataclasses.replace(config, mode=ReplicationMode.ACTIVE)
    with GeoServiceBusClient(both) as client, client.get_queue_sender(QUEUE) as sender:
        sender.send_messages(
            [ServiceBusMessage(json.dumps({"order": n}), message_id=f"order-{n}") for n in (1, 2, 3)]
        )


def main() -> int:
    with namespaces() as ns:
        print(f"worker: {ns.describe()}")
        seed(ns.config)
        with GeoServiceBusClient(ns.config) as client:
            with client.get_queue_receiver(QUEUE, max_wait_time=IDLE_SECONDS) as receiver:
                for message in receiver:  # the SDK's own ServiceBusReceivedMessage
                    handle(message)
                    print(f"handled {message.message_id} (from {receiver.namespace_of(message)})")
                    receiver.complete_message(message)
                stats = receiver.stats
    twice = len(SHIPPED) - len(set(SHIPPED))
    print(
        f"handled {len(SHIPPED)} orders, {twice} twice; "
        f"received {stats.received}, duplicates absorbed {stats.duplicates_absorbed}"
    )
    return 1 if twice else 0


if __name__ == "__main__":
    sys.exit(main())
