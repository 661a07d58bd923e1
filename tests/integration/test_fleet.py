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
from geobus._tools.drill import execute
from geobus._tools.drill.harness import Settings
from geobus._tools.drill.scenarios import Scenario, fleet
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
        handle_time=0.02,  # a worker holds a batch a while: the kill catches it holding several
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
    events = run.log.events  # type: ignore[attr-defined]
    completions = collections.Counter(e["id"] for e in events if e["e"] == "complete")
    assert set(completions.values()) == {1}  # never twice, fleet-wide
    (kill,) = [e for e in events if e["e"] == "killed"]
    held = set(kill["held"])
    assert len(held) >= 2, "the killed worker held too little: the lease-expiry path was not exercised"
    # kill -9 may land after a completion reached the bus and before its log line: that one
    # message has no "complete" event, was held by the dead worker, and reached no other handler.
    unlogged = {f"m-{i}" for i in range(3000)} - set(completions)
    assert len(unlogged) <= 1 and unlogged <= held
    deliveries = collections.Counter(e["id"] for e in events if e["e"] == "deliver")
    assert all(deliveries[i] == 1 for i in unlogged)
    assert {e["life"] for e in events if e["e"] == "complete"} == {0, 1, 2}  # all three competed
    # What the dead worker held unsettled went, after its lease and lock ran out, to the others.
    taken_over = held - unlogged
    assert taken_over
    completed_by = {e["id"]: e["life"] for e in events if e["e"] == "complete"}
    assert all(completed_by.get(i) in (1, 2) for i in taken_over), {i: completed_by.get(i) for i in taken_over}
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
