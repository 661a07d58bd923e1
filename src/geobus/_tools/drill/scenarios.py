"""The outages a drill rehearses, each a function of the run it acts on.

A scenario waits for a quarter of the stream to be acknowledged, breaks
something for ``fault_seconds`` (the primary, both namespaces, the producer or
the worker), and mends it; the run then lets the producer finish and the worker
catch up, and counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import poison, session_order
from .harness import LOCK_DURATION, Run

FLAPS = 4
# A seen-set shared by the run's workers (and their successors), with a short lease.
SQLITE_SEEN_SET = {"GEOBUS_DEDUP_STORE": "sqlite:{dir}/seen.db", "GEOBUS_DEDUP_LEASE": "3"}


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    act: Callable[[Run], None]
    env: dict[str, str] = field(default_factory=dict)  # "{dir}" is the run's directory
    handle_time: float = 0.0  # seconds the worker's handler takes per message
    workers: int = 1
    lock_duration: float = LOCK_DURATION  # the namespaces' queue settings
    max_delivery_count: int = 100
    worker_args: tuple[str, ...] = ()  # the worker agents' extra options
    producer_args: tuple[str, ...] = ()  # the producer agents' extra options
    requires_session: bool = False  # the drill queue is session-enabled


def _quarter(run: Run) -> None:
    run.wait_acked(run.settings.messages // 4)


def _outage(
    breaks: Callable[[Run], object], mends: Callable[[Run], object], broken: str, mended: str
) -> Callable[[Run], None]:
    """The scenario that, a quarter into the stream, breaks something for ``fault_seconds``, then mends it."""

    def act(run: Run) -> None:
        _quarter(run)
        breaks(run)
        run.mark(broken)
        run.hold(run.settings.fault_seconds)
        mends(run)
        run.mark(mended)

    return act


def _primary(action: str, *args: float) -> Callable[[Run], object]:
    """``action`` on the primary: one of the pair's faults (``refuse``, ``black_hole``,
    ``set_latency``, ``heal``) or, on its process, ``pause``, ``resume``, ``kill``, ``start``."""

    def act(run: Run) -> object:
        if action in ("refuse", "black_hole", "set_latency", "heal"):
            return getattr(run.namespaces, action)(*args, "primary")
        return getattr(run.namespaces.primary, action)()

    return act


def _both(action: str) -> Callable[[Run], object]:
    return lambda run: getattr(run.namespaces, action)()


def primary_disaster(run: Run) -> None:
    _quarter(run)
    run.namespaces.primary.kill()
    held = run.stored_ids(run.namespaces.primary)
    if run.mode == "passive":  # what the region held when it died: the most passive may lose
        run.allowed_losses = held
    run.wipe(run.namespaces.primary)
    run.mark(f"primary killed (kill -9) and its store wiped, with {len(held)} message(s) in it")
    run.hold(run.settings.fault_seconds)
    run.namespaces.primary.start()
    run.mark("primary restarted empty")


def flapping_primary(run: Run) -> None:
    _quarter(run)
    half = run.settings.fault_seconds / 2
    for flap in range(FLAPS):
        run.namespaces.refuse("primary")
        run.mark(f"primary down ({flap + 1}/{FLAPS})")
        run.hold(half)
        run.namespaces.heal("primary")
        run.mark("primary up")
        run.hold(half)


def producer_killed(run: Run) -> None:
    _quarter(run)
    run.namespaces.refuse()
    run.mark("both namespaces refuse connections")
    buffered_before = run.count("ack") - _unbuffered(run)
    run.wait_until(
        lambda: run.count("ack") - _unbuffered(run) >= buffered_before + 20,
        30.0,
        "20 buffered sends",
    )
    run.producers[-1].kill()
    held = run.count("ack") - _unbuffered(run)
    run.mark(f"producer killed (kill -9) with {held} buffered send(s) acknowledged")
    run.namespaces.heal()
    run.mark("both healed")
    resume_at = max((int(i.rsplit("-", 1)[1]) for i in run.ids("attempt")), default=-1) + 1
    run.start_producer(start=resume_at)
    run.mark(f"a new producer on the same outbox file, sending from #{resume_at}")


def _unbuffered(run: Run) -> int:
    return sum(1 for event in run.log.events if event["e"] == "ack" and not event["buf"])


def worker_killed(run: Run) -> None:
    run.wait_until(
        lambda: run.count("deliver") >= run.settings.messages // 3, 30.0, "a third delivered"
    )
    run.kill_worker(len(run.workers) - 1)
    # Twins of messages the dead worker completed, still queued: an in-memory seen-set died
    # with it, so a new worker may deliver them again; a persistent one must not.
    twins = run.queued_ids() & run.ids("complete")
    if "GEOBUS_DEDUP_STORE" not in run.env_overrides:
        run.restart_bound = twins
    run.mark(
        f"worker killed (kill -9) holding {len(run.ids('deliver') - run.ids('complete'))} "
        f"uncompleted message(s); {len(twins)} completed twin(s) still queued"
    )
    run.start_worker()
    run.mark(f"a new worker (the dead one's locks expire after {LOCK_DURATION:.0f} s)")


def fleet(run: Run) -> None:
    """Competing workers sharing one seen-set; one is killed with keys in flight.

    Worker 0 is stopped (SIGSTOP) before the kill, so its event file says exactly what
    it held: it is killed holding at least two unsettled messages (one may be completed
    on the bus with its log line not yet written), else continued and caught again. If
    anything fails meanwhile, the run's teardown continues it (``Agent.terminate``)."""
    deadline = time.monotonic() + 60.0
    worker, held = run.workers[0], set[str]()
    while time.monotonic() < deadline:
        if not run.wait_until(
            lambda: run.count("deliver") >= run.settings.messages // 3 and len(run.held_by(0)) >= 2,
            deadline - time.monotonic(),
            "a third delivered, with two messages held by worker 0",
        ):
            break
        if worker.pause():
            run.log.poll()
            held = run.held_by(0)
            if len(held) >= 2:
                break
        worker.resume()
    run.kill_worker(0, held)
    if len(held) < 2:
        run.violations.append(f"worker 0 was killed holding {len(held)} message(s), not the 2 the scenario needs")
    run.mark(
        f"worker 0 of {len(run.workers)} killed (kill -9) holding {len(held)} message(s); its keys' "
        f"leases run out after {run.env_overrides.get('GEOBUS_DEDUP_LEASE', '30')} s, its locks "
        f"after {LOCK_DURATION:.0f} s"
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("refused", "the primary refuses connections, then heals", _outage(
            _primary("refuse"), _primary("heal"), "primary refuses connections", "primary healed")),
        Scenario("black-hole", "the primary accepts TCP and never answers, then heals", _outage(
            _primary("black_hole"), _primary("heal"), "primary black-holed (accepts TCP, never answers)",
            "primary healed")),
        Scenario("frozen", "the primary's process is stopped (SIGSTOP), then continued", _outage(
            _primary("pause"), _primary("resume"), "primary process stopped (SIGSTOP)",
            "primary process continued (SIGCONT)")),
        Scenario("outage", "the primary is killed (kill -9) and restarted with its store", _outage(
            _primary("kill"), _primary("start"), "primary killed (kill -9); its store kept",
            "primary restarted with its store")),
        Scenario("disaster", "the primary is killed and its store wiped (passive may lose what it held)",
                 primary_disaster),
        Scenario("flapping", "the primary goes down and up four times (failback prefer_primary)",
                 flapping_primary, env={
                     "GEOBUS_FAILBACK_MODE": "prefer_primary", "GEOBUS_FAILBACK_PROBE_INTERVAL": "0.2",
                     "GEOBUS_FAILBACK_HEALTHY_PROBES": "2", "GEOBUS_FAILBACK_COOLDOWN": "1.0"}),
        Scenario("both-down", "both namespaces refuse; the outbox keeps the stream", _outage(
            _both("refuse"), _both("heal"), "both namespaces refuse connections (the outbox keeps what is sent)",
            "both healed")),
        Scenario("producer-killed", "both down, the producer is killed with messages in its outbox; a new one "
                 "drains it", producer_killed),
        Scenario("worker-killed", "the worker is killed before completing; its messages come back when their "
                 "locks expire", worker_killed, handle_time=0.01),
        Scenario("worker-restart", "as worker-killed, with a SQLite seen-set: the new worker remembers what the "
                 "dead one completed", worker_killed, env=SQLITE_SEEN_SET, handle_time=0.01),
        Scenario("fleet", "three workers share a SQLite seen-set; one is killed mid-stream", fleet,
                 env=SQLITE_SEEN_SET, handle_time=0.005, workers=3),
        Scenario("latency", "the primary answers 200 ms late", _outage(
            _primary("set_latency", 0.2), _primary("heal"), "primary answers 200 ms late", "primary healed")),
        Scenario("poison", f"a handler kills its worker on one message every time; the message is "
                 f"dead-lettered after {poison.MAX_DELIVERY_COUNT} deliveries, the fleet goes on", poison.poison,
                 env=SQLITE_SEEN_SET, handle_time=0.05, workers=2, lock_duration=poison.LOCK_DURATION,
                 max_delivery_count=poison.MAX_DELIVERY_COUNT, worker_args=poison.WORKER_ARGS),
        Scenario("session-order", f"{session_order.SESSIONS} sessions interleaved, the primary killed "
                 f"mid-session: each session in its producer's order (passive: gaps reported, at most "
                 f"{session_order.ORDER_GAP_WAIT:g} s waited), no session held twice", session_order.session_order,
                 env=session_order.ENV, handle_time=0.005, workers=session_order.WORKERS,
                 lock_duration=session_order.LOCK_DURATION, worker_args=session_order.WORKER_ARGS,
                 producer_args=session_order.PRODUCER_ARGS, requires_session=True),
    )
}  # fmt: skip
