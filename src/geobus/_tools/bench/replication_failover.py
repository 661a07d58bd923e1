"""The ``replication`` benchmark's failover: seconds from a fault on the primary to a send on the secondary.

A passive ``ReplicatedSender`` in steady state (its standby link open) loses its
primary, refused and then black-holed; the time runs until a send is stored on
the secondary. The plain side, measured in the same run, is an application
doing the same by hand with the SDK's default retry settings: send to the
primary, and on an error to the secondary. A black hole has no bound in the
SDK, so the plain side is cut off after ``Sizes.black_hole_cutoff`` seconds
and shown as "unbounded (> N s)", with the ratio as an upper bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from . import common as bench
from .replication_shared import Sizes, client, plain_client, steady

FAILOVER_LIMIT = 60.0  # a failover that has not happened by then is a bug
FAULTS = (("refuse", "refused"), ("black_hole", "black-holed"))


def _inject(ns: bench.Pair, fault: str) -> float:
    getattr(ns, fault)("primary")  # returns once the server applied it
    return time.perf_counter()


def geobus_failover(ns: bench.Pair, fault: str, closing: list[threading.Thread]) -> dict[str, Any]:
    """A passive sender in steady state; the primary fails; until a send lands on the secondary."""
    geo = client(ns, "sync", "passive")
    sender = geo.get_queue_sender(bench.queue_name(f"failover-{fault}"))
    try:
        steady(sender)
        faulted = _inject(ns, fault)
        sends = 0
        while True:
            result = sender.send_messages(ServiceBusMessage(bench.BODY))
            sends += 1
            if "secondary" in result.landed:
                seconds = time.perf_counter() - faulted
                break
            if time.perf_counter() - faulted > FAILOVER_LIMIT:
                raise RuntimeError(f"geobus: no failover {FAILOVER_LIMIT:.0f} s after {fault}")
        stats = sender.stats
    finally:
        ns.heal("primary")
        bench.close_later(closing, sender, geo)
    return {
        "seconds": round(seconds, 4),
        "sends_after_fault": sends,
        "failovers": stats.failovers,
        "attempt_deadline_s": geo.config.deadlines.attempt,
    }


def plain_failover(ns: bench.Pair, fault: str, cutoff: float, closing: list[threading.Thread]) -> dict[str, Any]:
    """The same by hand with the SDK's defaults: send to the primary; on an error, to the secondary.

    Runs on a daemon thread so that a hang can be cut off; after the cut-off the
    primary is healed, which lets a hung call finish, and the clients are closed."""
    queue = bench.queue_name(f"plain-failover-{fault}")
    clients = [plain_client("sync", connection_string) for connection_string in ns.connection_strings]
    senders = [c.get_queue_sender(queue) for c in clients]
    outcome: dict[str, Any] = {}

    def failover(faulted: float) -> None:
        try:
            senders[0].send_messages(ServiceBusMessage(bench.BODY))
            outcome["primary_took_it"] = True
        except ServiceBusError as exc:
            outcome["error"] = type(exc).__name__
            outcome["error_after_s"] = round(time.perf_counter() - faulted, 4)
            senders[1].send_messages(ServiceBusMessage(bench.BODY))
        outcome["seconds"] = round(time.perf_counter() - faulted, 4)

    thread = None
    try:
        for sender in senders:
            steady(sender)  # both links open, as in steady state
        thread = threading.Thread(target=failover, args=(_inject(ns, fault),), name="plain-failover", daemon=True)
        thread.start()
        thread.join(cutoff)
        if thread.is_alive():
            outcome["cut_off_s"] = cutoff
    finally:
        ns.heal("primary")
        if thread is not None:
            thread.join(30)
        if thread is not None and thread.is_alive():
            outcome["hung_after_heal"] = True  # left to the daemon thread; its server stops at exit
        else:
            bench.close_later(closing, *senders, *clients)
    if "seconds" not in outcome and "cut_off_s" not in outcome:
        raise RuntimeError(f"plain failover on {fault} failed: see the traceback above")
    return outcome


def run_failover(ns: bench.Pair, sizes: Sizes, log: Callable[[str], None]) -> list[bench.Metric]:
    """One row per fault (refused, black-holed): geobus against the plain SDK, both measured here."""
    metrics = []
    closing: list[threading.Thread] = []
    for fault, label in FAULTS:
        ours = geobus_failover(ns, fault, closing)
        theirs = plain_failover(ns, fault, sizes.black_hole_cutoff if fault == "black_hole" else FAILOVER_LIMIT, closing)
        log(f"  failover, primary {label}: geobus {ours}; plain {theirs}")
        extra: dict[str, Any] = {"geobus": ours, "plain": theirs}
        name = f"failover, {label} primary -> on secondary"
        if "cut_off_s" in theirs:
            extra["ratio_below"] = float(f"{ours['seconds'] / theirs['cut_off_s']:.4g}")
            metrics.append(bench.Metric(name, "s", ours["seconds"], None, "lower", f"plain: unbounded (> {theirs['cut_off_s']:g} s)",
                                        extra, plain_source="cut-off"))  # fmt: skip
        else:
            metrics.append(bench.Metric(name, "s", ours["seconds"], theirs["seconds"], "lower", extra=extra))
    bench.join_closing(closing)
    return metrics
