"""Dead-letter worker: read both regions' dead-letter queues, each message once.

Shows: the SDK's own call for a dead-letter queue,
``get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER)``, on
geobus's client: one receiver over the dead-letter queues of both namespaces,
a message dead-lettered in both regions handed out once; its
``dead_letter_reason`` and ``dead_letter_error_description``; and
``complete_message``, which removes it from both regions' dead-letter queues.

To have something to read, the sample first sends four orders in active mode
(each waits in both regions) and an order worker dead-letters the two it cannot
ship: ``dead_letter_message`` dead-letters the twin in the other region the
same way, so each rejected order sits in both dead-letter queues.

    python samples/dead_letter_worker.py

Against Azure: set GEOBUS_PRIMARY_CONNECTION_STRING and GEOBUS_SECONDARY_CONNECTION_STRING
(see producer.py); the queue "orders" must exist in both namespaces. Messages
already in its dead-letter queues are read (and completed) too.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue

from geobus import GeoServiceBusClient, ReplicationConfig, ReplicationMode

from _local import namespaces

QUEUE = "orders"
IDLE_SECONDS = 1.5  # each loop ends after this long without a new message
ORDERS = {1: "Main St 1", 2: None, 3: "Quay 7", 4: None}  # order -> shipping address


def seed(config: ReplicationConfig) -> None:
    """Four orders in both regions; an order worker dead-letters the ones without an address."""
    both = dataclasses.replace(config, mode=ReplicationMode.ACTIVE)
    with GeoServiceBusClient(both) as client:
        with client.get_queue_sender(QUEUE) as sender:
            sender.send_messages(
                [
                    ServiceBusMessage(json.dumps({"order": n, "address": address}), message_id=f"order-{n}")
                    for n, address in ORDERS.items()
                ]
            )
        with client.get_queue_receiver(QUEUE, max_wait_time=IDLE_SECONDS) as receiver:
            for message in receiver:
                if json.loads(str(message))["address"] is None:
                    receiver.dead_letter_message(
                        message, reason="NoAddress", error_description="the order has no shipping address"
                    )
                else:
                    receiver.complete_message(message)


def main() -> int:
    seen: list[str] = []
    with namespaces() as ns:
        print(f"dead-letter worker: {ns.describe()}")
        seed(ns.config)
        with GeoServiceBusClient(ns.config) as client:
            dead_letters = client.get_queue_receiver(
                QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=IDLE_SECONDS
            )
            with dead_letters as receiver:
                for message in receiver:  # the SDK's own ServiceBusReceivedMessage
                    seen.append(str(message.message_id))
                    print(
                        f"{message.message_id}: {message.dead_letter_reason} "
                        f"({message.dead_letter_error_description})"
                    )
                    receiver.complete_message(message)  # gone from both dead-letter queues
    twice = len(seen) - len(set(seen))
    print(f"read {len(set(seen))} dead-lettered orders, {twice} twice")
    return 1 if twice else 0


if __name__ == "__main__":
    sys.exit(main())
