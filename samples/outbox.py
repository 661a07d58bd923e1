"""Outbox: both regions down, the send still returns; the messages follow when one is back.

Shows: OutboxPolicy (a SQLite file), ``SendResult.buffered``, the drainer
sending buffered messages in order once a namespace heals, and SenderStats
(buffered, drained, outbox depth, breakers).

This sample takes both namespaces down, which only local namespaces allow: it
always runs against two local ones (GEOBUS_PRIMARY_* is ignored). Against
Azure, turn the outbox on with GEOBUS_OUTBOX_PATH=/var/lib/orders/outbox.db
and producer.py prints what was buffered.

    python samples/outbox.py
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from azure.servicebus import ServiceBusMessage

from geobus import BreakerPolicy, GeoServiceBusClient, OutboxPolicy, ReplicatedSender

from _local import namespaces

QUEUE = "orders"
DRAIN_WITHIN = 15.0  # seconds the sample waits for the outbox to empty after the heal


def send(sender: ReplicatedSender, number: int) -> None:
    result = sender.send_messages(ServiceBusMessage(f"order {number}", message_id=f"order-{number}"))
    if result.buffered:
        # Acknowledged: fsynced to the outbox file, sent when a namespace is back.
        print(f"order-{number}: buffered in the outbox (lanes: {', '.join(result.buffered)})")
    else:
        print(f"order-{number}: landed on {' + '.join(result.landed)}")


def main() -> int:
    with namespaces(local_only=True) as ns, tempfile.TemporaryDirectory() as tmp:
        assert ns.primary is not None and ns.secondary is not None  # local namespaces
        config = dataclasses.replace(
            ns.config,
            # In production: GEOBUS_OUTBOX_PATH or [outbox] path, on a disk that survives restarts.
            outbox=OutboxPolicy(path=str(Path(tmp) / "outbox.db"), backoff_max=1.0),
            # A short cool-down, so the sample sees the healed namespaces within a second.
            breaker=BreakerPolicy(cooldown=1.0),
        )
        print(f"outbox: {ns.describe()}")
        with GeoServiceBusClient(config) as client, client.get_queue_sender(QUEUE) as sender:
            send(sender, 1)

            print("both namespaces go down (connections refused)")
            ns.primary.refuse()
            ns.secondary.refuse()
            for number in (2, 3, 4):
                send(sender, number)
            print(f"outbox depth {sender.stats.outbox_depth}")

            print("both namespaces are back")
            ns.primary.heal()
            ns.secondary.heal()
            deadline = time.monotonic() + DRAIN_WITHIN
            while sender.stats.outbox_depth and time.monotonic() < deadline:
                time.sleep(0.1)

            stats = sender.stats
            print(
                f"buffered {stats.buffered}, drained {stats.drained}, outbox depth {stats.outbox_depth}, "
                f"dead-lettered {stats.outbox_dead_lettered}; sent {stats.messages_sent}; "
                f"breakers {stats.breakers}"
            )
    # Active mode buffers one copy per namespace that missed it: drained counts copies.
    return 0 if stats.outbox_depth == 0 and stats.outbox_dead_lettered == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
