"""Session worker: each customer's steps in order, one session at a time, from both regions.

Shows: the SDK's session receiver on geobus's client,
``get_queue_receiver(QUEUE, session_id=NEXT_AVAILABLE_SESSION)``: it takes the
next session with messages, the same session in both namespaces, so no other
worker handles that customer meanwhile; its messages in the order the producer
sent them, each once; ``receiver.session.get_state`` / ``set_state`` (a progress
record kept with the session, written to both regions); and
``OperationTimeoutError`` when no session has messages left, as with the SDK.

To have something to read, the sample first sends three steps for each of two
customers in active mode (each step waits in both regions), the customers'
steps interleaved, each customer's ``session_id`` set.

    python samples/session_worker.py

Against Azure: set GEOBUS_PRIMARY_CONNECTION_STRING and GEOBUS_SECONDARY_CONNECTION_STRING
(see producer.py); the queue "order-steps" must exist in both namespaces with
sessions enabled.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage
from azure.servicebus.exceptions import OperationTimeoutError

from geobus import GeoServiceBusClient, ReplicationConfig, ReplicationMode
from geobus.local import EntitySettings

from _local import Namespaces, namespaces

QUEUE = "order-steps"
IDLE_SECONDS = 1.5  # waiting this long for a session, or for its next message, ends the wait
CUSTOMERS = ("customer-a", "customer-b")
STEPS = ("placed", "paid", "shipped")
HANDLED: dict[str, list[str]] = {}  # stands in for your database: each customer's steps, as handled
STATES: dict[str, dict[str, list[str]]] = {}  # each session's state, read back after its last step


def declare_session_queue(ns: Namespaces) -> None:
    """Local namespaces create a queue on first use, without sessions: declare this one."""
    for local in (ns.primary, ns.secondary):
        if local is not None:
            local.declare_queue(QUEUE, settings=EntitySettings(requires_session=True))


def seed(config: ReplicationConfig) -> None:
    """Each customer's steps, in order, in both regions; the customers interleaved."""
    both = dataclasses.replace(config, mode=ReplicationMode.ACTIVE)
    with GeoServiceBusClient(both) as client, client.get_queue_sender(QUEUE) as sender:
        for step in STEPS:
            for customer in CUSTOMERS:
                body = json.dumps({"customer": customer, "step": step})
                sender.send_messages(
                    ServiceBusMessage(body, session_id=customer, message_id=f"{customer}-{step}")
                )


def work_one_session(client: GeoServiceBusClient) -> bool:
    """Handle the next session with messages; False when there is none."""
    try:
        with client.get_queue_receiver(
            QUEUE, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=IDLE_SECONDS
        ) as receiver:
            session = receiver.session
            progress = json.loads(session.get_state() or b"{}")  # where an earlier worker left off
            for message in receiver:
                step = json.loads(str(message))["step"]
                HANDLED.setdefault(session.session_id, []).append(step)
                progress["done"] = [*progress.get("done", []), step]
                session.set_state(json.dumps(progress))
                receiver.complete_message(message)
            STATES[session.session_id] = json.loads(session.get_state())  # the newest, from either region
            print(f"{session.session_id}: {', '.join(HANDLED.get(session.session_id, []))}; "
                  f"state {STATES[session.session_id]}")  # fmt: skip
    except OperationTimeoutError:
        return False  # no session had messages within IDLE_SECONDS
    return True


def main() -> int:
    with namespaces() as ns:
        print(f"session worker: {ns.describe()}")
        declare_session_queue(ns)
        seed(ns.config)
        with GeoServiceBusClient(ns.config) as client:
            for _ in range(len(CUSTOMERS) + 1):  # bounded: one turn per session, one to find none left
                if not work_one_session(client):
                    break
    in_order = all(HANDLED.get(customer) == list(STEPS) for customer in CUSTOMERS)
    states_kept = all(STATES.get(customer) == {"done": list(STEPS)} for customer in CUSTOMERS)
    steps = sum(len(handled) for handled in HANDLED.values())
    print(
        f"handled {len(HANDLED)} sessions, {steps} steps, {'in order' if in_order else 'OUT OF ORDER'}; "
        f"session states {'up to date' if states_kept else 'STALE'}"
    )
    return 0 if in_order and states_kept else 1


if __name__ == "__main__":
    sys.exit(main())
