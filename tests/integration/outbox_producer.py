"""A producer process for ``test_outbox.py``, configured from ``GEOBUS_*`` variables.

The tests kill it with SIGKILL, so every line it prints is flushed at once:

    python outbox_producer.py send QUEUE PREFIX    "acked <id>" after each send that returned,
                                                   until killed (or a minute has passed)
    python outbox_producer.py drain QUEUE SECONDS  open the sender, wait for the outbox to empty;
                                                   "drained <n> depth <d>", exit 1 if not empty
    python outbox_producer.py open                 "opened", or "OutboxError: ..." and exit 3

It never prints its configuration: the connection strings hold a key.
"""

from __future__ import annotations

import itertools
import sys
import time

from azure.servicebus import ServiceBusMessage

import geobus

PACE = 0.01  # between sends: a steady producer, so the kill lands mid-stream
LIFETIME = 60.0  # an orphan (its test died) stops by itself


def send(queue: str, prefix: str) -> int:
    ends = time.monotonic() + LIFETIME
    with geobus.GeoServiceBusClient.from_config(geobus.ReplicationConfig.from_env()) as client:
        with client.get_queue_sender(queue) as sender:
            for index in itertools.count():
                if time.monotonic() > ends:
                    return 2
                message_id = f"{prefix}-{index:06d}"
                sender.send_messages(ServiceBusMessage(f"body {index}", message_id=message_id))
                print("acked", message_id, flush=True)
                time.sleep(PACE)
    return 0  # pragma: no cover - the loop only ends by returning


def drain(queue: str, seconds: float) -> int:
    with geobus.GeoServiceBusClient.from_config(geobus.ReplicationConfig.from_env()) as client:
        with client.get_queue_sender(queue) as sender:  # the drainer starts here
            ends = time.monotonic() + seconds
            while sender.stats.outbox_depth and time.monotonic() < ends:
                time.sleep(0.05)
            stats = sender.stats
    print("drained", stats.drained, "depth", stats.outbox_depth, flush=True)
    return 0 if stats.outbox_depth == 0 else 1


def open_only() -> int:
    try:
        client = geobus.GeoServiceBusClient.from_config(geobus.ReplicationConfig.from_env())
    except geobus.OutboxError as exc:
        print(f"OutboxError: {exc}", flush=True)
        return 3
    client.close()
    print("opened", flush=True)
    return 0


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "send":
        return send(*args)
    if command == "drain":
        return drain(args[0], float(args[1]))
    if command == "open":
        return open_only()
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
