"""``geobus demo``: two local namespaces, a producer and a worker, and an outage.

Until the replicated sender lands, the producer fails over by hand (the plain
azure-servicebus client, one namespace at a time) so the demo shows the two
regions and the outage that geobus exists for.
"""

from __future__ import annotations

import time
from collections import Counter

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from .local import LocalNamespace

QUEUE = "orders"


def run_demo(*, messages: int = 200) -> int:
    """Run the demo and print its summary; 0 when nothing was lost."""
    if messages < 3:
        raise SystemExit("geobus demo: --messages must be at least 3")
    started = time.monotonic()
    with LocalNamespace() as primary, LocalNamespace() as secondary:
        print(f"primary   {primary.endpoint}\nsecondary {secondary.endpoint}")
        acknowledged, carried_by, failover_at = _produce(primary, secondary, messages)
        received = _drain([primary, secondary])
    lost = acknowledged - set(received)
    per_namespace = Counter(received.values())
    print(f"sent {messages}, acknowledged {len(acknowledged)}, lost {len(lost)}")
    print(f"received: primary {per_namespace['primary']}, secondary {per_namespace['secondary']}")
    print("timeline: " + " -> ".join(f"{name} x{count}" for name, count in carried_by))
    if failover_at is not None:
        print(f"failover took {failover_at * 1000:.0f} ms")
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0 if not lost else 1


def _produce(
    primary: LocalNamespace, secondary: LocalNamespace, messages: int
) -> tuple[set[str], list[tuple[str, int]], float | None]:
    names = {id(primary): "primary", id(secondary): "secondary"}
    clients = {
        id(ns): ServiceBusClient.from_connection_string(ns.connection_string, retry_total=0)
        for ns in (primary, secondary)
    }
    senders = {key: client.get_queue_sender(QUEUE) for key, client in clients.items()}
    active, standby = primary, secondary
    acknowledged: set[str] = set()
    carried_by: list[tuple[str, int]] = []
    failover: float | None = None
    try:
        for index in range(messages):
            if index == messages // 3:
                print("outage: the primary refuses connections")
                primary.refuse()
            if index == 2 * messages // 3:
                print("the primary is back")
                primary.heal()
            message_id = f"order-{index}"
            attempt_started = time.monotonic()
            try:
                senders[id(active)].send_messages(ServiceBusMessage(f"order {index}", message_id=message_id))
            except ServiceBusError:
                active, standby = standby, active
                senders[id(active)].send_messages(ServiceBusMessage(f"order {index}", message_id=message_id))
                failover = time.monotonic() - attempt_started
                print(f"failed over to the {names[id(active)]}")
            acknowledged.add(message_id)
            name = names[id(active)]
            if carried_by and carried_by[-1][0] == name:
                carried_by[-1] = (name, carried_by[-1][1] + 1)
            else:
                carried_by.append((name, 1))
    finally:
        for sender in senders.values():
            sender.close()
        for client in clients.values():
            client.close()
    return acknowledged, carried_by, failover


def _drain(namespaces: list[LocalNamespace]) -> dict[str, str]:
    received: dict[str, str] = {}
    for ns, name in zip(namespaces, ("primary", "secondary"), strict=True):
        with ServiceBusClient.from_connection_string(ns.connection_string) as client:
            with client.get_queue_receiver(QUEUE, max_wait_time=1) as receiver:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    batch = receiver.receive_messages(max_message_count=100, max_wait_time=1)
                    if not batch:
                        break
                    for message in batch:
                        received[str(message.message_id)] = name
                        receiver.complete_message(message)
    return received
