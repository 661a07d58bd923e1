"""Topic and subscription, async: publish events, read a subscription from both namespaces.

The same scenario as topic_subscription.py with ``geobus.aio``.

    python samples/topic_subscription_async.py
    GEOBUS_MODE=active python samples/topic_subscription_async.py

Against Azure: set GEOBUS_PRIMARY_CONNECTION_STRING and GEOBUS_SECONDARY_CONNECTION_STRING
(see producer.py); the topic "order-events" with subscriptions "billing" and
"shipping" must exist in both namespaces.
"""

from __future__ import annotations

import asyncio
import json
import sys

from azure.servicebus import ServiceBusMessage

from geobus.aio import GeoServiceBusClient

from _local import namespaces

TOPIC = "order-events"
SUBSCRIPTIONS = ("billing", "shipping")
EVENTS = ("placed", "paid", "shipped")
IDLE_SECONDS = 1.5  # the receiving loop ends after this long without a new event


async def main() -> int:
    with namespaces(topics={TOPIC: SUBSCRIPTIONS}) as ns:
        print(f"topic {TOPIC!r} (async): {ns.describe()}")
        async with GeoServiceBusClient(ns.config) as client:
            async with client.get_topic_sender(TOPIC) as sender:
                for event in EVENTS:
                    result = await sender.send_messages(
                        ServiceBusMessage(
                            json.dumps({"order": 42, "event": event}),
                            message_id=f"order-42-{event}",
                            subject=event,
                        )
                    )
                    print(f"published {event}: landed on {' + '.join(result.landed)}")

            billed: list[str] = []
            async with client.get_subscription_receiver(
                TOPIC, "billing", max_wait_time=IDLE_SECONDS
            ) as receiver:
                async for message in receiver:
                    billed.append(str(message.subject))
                    print(f"billing got {message.subject} (from {receiver.namespace_of(message)})")
                    await receiver.complete_message(message)
                stats = receiver.stats
    twice = len(billed) - len(set(billed))
    print(
        f"billing handled {len(billed)} events, {twice} twice; "
        f"received {stats.received}, duplicates absorbed {stats.duplicates_absorbed}"
    )
    return 1 if twice else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
