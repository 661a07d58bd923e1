"""Producer: send orders to two namespaces through a ReplicatedSender.

Shows: GeoServiceBusClient in place of ServiceBusClient, passive or active
replication chosen by configuration alone (GEOBUS_MODE), and what each
SendResult says (where the message landed, a failover, a missed copy).

    python samples/producer.py                      # two local namespaces
    GEOBUS_MODE=active python samples/producer.py   # both copies, every time

Against Azure, name your namespaces (the queue "orders" must exist in both):

    export GEOBUS_PRIMARY_CONNECTION_STRING="Endpoint=sb://contoso-weu.servicebus.windows.net/;..."
    export GEOBUS_SECONDARY_CONNECTION_STRING="Endpoint=sb://contoso-neu.servicebus.windows.net/;..."
    python samples/producer.py
"""

from __future__ import annotations

import json
import sys

from azure.servicebus import ServiceBusMessage

from geobus import GeoServiceBusClient, ReplicationError, SendResult

from _local import namespaces

QUEUE = "orders"
ORDERS = 5


def describe(result: SendResult) -> str:
    """One line per send: the fields a producer may want to log or alert on."""
    text = f"landed on {' + '.join(result.landed) or 'no namespace'}"
    if result.failed_over:
        text += " (failed over: the other namespace is now active)"
    if result.missed:  # active mode, write quorum "any": one copy landed, one did not
        text += f"; missed {', '.join(result.missed)}"
    if result.buffered:  # only with an outbox (GEOBUS_OUTBOX_PATH): kept on disk for later
        text += f"; buffered for {', '.join(result.buffered)}"
    return text


def main() -> int:
    with namespaces() as ns:
        print(f"producer: {ns.describe()}")
        with GeoServiceBusClient(ns.config) as client, client.get_queue_sender(QUEUE) as sender:
            for number in range(1, ORDERS + 1):
                # A MessageId of your own makes a retry of the same order a duplicate
                # the receiver absorbs; without one, geobus assigns a uuid4.
                message = ServiceBusMessage(
                    json.dumps({"order": number, "sku": "tea", "quantity": number}),
                    message_id=f"order-{number}",
                    content_type="application/json",
                )
                try:
                    result = sender.send_messages(message)
                except ReplicationError as exc:
                    # No namespace took it (and there is no outbox): nothing was acknowledged.
                    print(f"order-{number}: not sent: {exc}")
                    return 1
                print(f"order-{number}: {describe(result)}")
            stats = sender.stats
            print(
                f"sent {ORDERS} orders in {stats.mode} mode; per namespace {stats.messages_sent}, "
                f"failovers {stats.failovers}, active namespace {sender.active_namespace}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
