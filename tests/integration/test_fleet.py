"""Worker fleets: a shared seen-set across processes, real azure-servicebus, local namespaces.

- Redis: three worker processes (``geobus drill``'s agents) read both namespaces in
  active mode through one real ``redis-server``; one is killed with ``kill -9``
  mid-stream. Every message is completed exactly once across the fleet.
- SQLite: a worker that completed messages and stopped is replaced; the new one
  does not process the twins of what the first completed.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage

import geobus
from geobus._drill import execute
from geobus._drill._harness import Settings
from geobus._drill._scenarios import Scenario, fleet
from geobus.local import LocalNamespace
from redis_server import RedisServer, require_redis_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer() as server:
        yield server


def test_a_redis_fleet_completes_each_message_once_through_a_kill(redis: RedisServer, tmp_path: Path) -> None:
    scenario = Scenario(
        "fleet",
        "three workers share a Redis seen-set; one is killed mid-stream",
        fleet,
        env={"GEOBUS_DEDUP_STORE": redis.url, "GEOBUS_DEDUP_LEASE": "3"},
        handle_time=0.02,  # the killed worker is caught with a message in its handler
        workers=3,
    )
    captured: list[object] = []
    row = execute(
        scenario, "async", "active", Settings(messages=3000, rate=400, seed="6", workdir=tmp_path),
        progress=captured.append,
    )  # fmt: skip
    assert row.ok, (row.violations, row.timeline)
    assert row.acknowledged == 3000 and row.lost == 0 and row.duplicates_delivered == 0
    run = captured[-1]
    completions = collections.Counter(e["id"] for e in run.log.events if e["e"] == "complete")  # type: ignore[attr-defined]
    assert len(completions) == 3000 and set(completions.values()) == {1}  # once each, fleet-wide
    events = run.log.events  # type: ignore[attr-defined]
    workers_that_completed = {e["life"] for e in events if e["e"] == "complete"}
    assert workers_that_completed == {0, 1, 2}  # all three competed, the dead one included
    # What the dead worker held unsettled went, after its lease and lock ran out, to the others.
    held_at_kill = {e["id"] for e in events if e["e"] == "deliver" and e["life"] == 0} - {
        e["id"] for e in events if e["e"] == "complete" and e["life"] == 0
    }
    assert held_at_kill, "the killed worker held nothing: the lease-expiry path was not exercised"
    assert all(any(e["e"] == "complete" and e["id"] == i and e["life"] in (1, 2) for e in events) for i in held_at_kill)
    assert any("killed" in entry for entry in row.timeline)


def test_a_restarted_worker_does_not_process_what_it_completed(
    namespace_factory: Callable[..., LocalNamespace], tmp_path: Path
) -> None:
    primary, secondary = namespace_factory(), namespace_factory()
    config = geobus.ReplicationConfig.from_connection_strings(
        primary.connection_string,
        secondary.connection_string,
        mode="active",
        dedup=geobus.DedupPolicy(store=f"sqlite:{tmp_path / 'seen.db'}"),
        deadlines=geobus.Deadlines(attempt=1.0, send=3.0, receive_stall=1.0),
    )
    ids = [f"order-{i}" for i in range(20)]
    with geobus.GeoServiceBusClient(config) as client:
        with client.get_queue_sender("orders") as sender:
            sender.send_messages([ServiceBusMessage(i, message_id=i) for i in ids])
    assert primary.counts() == secondary.counts() == {"orders": 20}

    secondary.refuse()  # the first worker sees only the primary's copies ...
    with geobus.GeoServiceBusClient(config) as client:
        with client.get_queue_receiver("orders", max_wait_time=3) as receiver:
            for message in receiver:
                receiver.complete_message(message)
            assert receiver.stats.delivered == 20
    secondary.heal()  # ... and stops; the twins are still on the secondary

    with geobus.GeoServiceBusClient(config) as client:  # the restarted worker, same store file
        with client.get_queue_receiver("orders", max_wait_time=3) as receiver:
            delivered = [str(message.message_id) for message in receiver]
            absorbed = receiver.stats.duplicates_absorbed
    assert delivered == [] and absorbed == 20
    assert secondary.counts().get("orders", 0) == 0  # the twins were completed, not left behind
