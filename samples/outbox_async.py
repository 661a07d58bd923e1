"""Outbox, async: both regions down, the send still returns; the messages follow later.

The same scenario as outbox.py with ``geobus.aio``. It takes both namespaces
down, which only local namespaces allow: it always runs against two local ones
(GEOBUS_PRIMARY_* is ignored).

    python samples/outbox_async.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
from pathlib import Path

from azure.servicebus import ServiceBusMessage

from geobus import BreakerPolicy, OutboxPolicy
from geobus.aio import GeoServiceBusClient, ReplicatedSender

from _local import namespaces

QUEUE = "orders"
DRAIN_WITHIN = 15.0  # seconds the sample waits for the outbox to empty after the heal


async def send(sender: ReplicatedSender, number: int) -> None:
    result = await sender.send_messages(ServiceBusMessage(f"order {number}", message_id=f"order-{number}"))
    if result.buffered:
        # Acknowledged: fsynced to the outbox file, sent when a namespace is back.
        print(f"order-{number}: buffered in the outbox (lanes: {', '.join(result.buffered)})")
    else:
        print(f"order-{number}: landed on {' + '.join(result.landed)}")


async def main() -> int:
    with namespaces(local_only=True) as ns, tempfile.TemporaryDirectory() as tmp:
        assert ns.primary is not None and ns.secondary is not None  # local namespaces
        config = dataclasses.replace(
            ns.config,
            # In production: GEOBUS_OUTBOX_PATH or [outbox] path, on a disk that survives restarts.
            outbox=OutboxPolicy(path=str(Path(tmp) / "outbox.db"), backoff_max=1.0),
            # A short cool-down, so the sample sees the healed namespaces within a second.
            breaker=BreakerPolicy(cooldown=1.0),
        )
        print(f"outbox (async): {ns.describe()}")
        async with GeoServiceBusClient(config) as client, client.get_queue_sender(QUEUE) as sender:
            await send(sender, 1)

            print("both namespaces go down (connections refused)")
            ns.primary.refuse()
            ns.secondary.refuse()
            for number in (2, 3, 4):
                await send(sender, number)
            print(f"outbox depth {sender.stats.outbox_depth}")

            print("both namespaces are back")
            ns.primary.heal()
            ns.secondary.heal()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DRAIN_WITHIN
            while sender.stats.outbox_depth and loop.time() < deadline:
                await asyncio.sleep(0.1)

            stats = sender.stats
            print(
                f"buffered {stats.buffered}, drained {stats.drained}, outbox depth {stats.outbox_depth}, "
                f"dead-lettered {stats.outbox_dead_lettered}; sent {stats.messages_sent}; "
                f"breakers {stats.breakers}"
            )
    # Active mode buffers one copy per namespace that missed it: drained counts copies.
    return 0 if stats.outbox_depth == 0 and stats.outbox_dead_lettered == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
