"""The ``replication`` benchmark's failover: seconds from a fault on the primary to a send on the secondary.

A passive ``ReplicatedSender`` in steady state (its standby link open) loses its
primary, refused and then black-holed; the time runs until a send is stored on
the secondary. The plain side is an application doing the same by hand with
the SDK's default retry settings: send to the primary, and on an error to the
secondary. In full mode it is measured (a black hole has no bound, so it is cut
off after ``BLACK_HOLE_CUTOFF``); with ``--quick`` the figures of docs/sdk-behaviour.md stand in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from . import common as bench
from .replication_shared import (
    Metric,
    Sizes,
    close_later,
    geobus_client,
    join_closing,
    wait_standby_open,
)

FAILOVER_LIMIT = 60.0  # a failover that has not happened by then is a bug
BLACK_HOLE_CUTOFF = 20.0  # the plain SDK hung this long on a black hole: called unbounded
DOCUMENTED_REFUSED_S = 11.2  # docs/sdk-behaviour.md: fresh sender, defaults, connection refused


def _inject(ns: bench.Namespaces, fault: str) -> float:
    getattr(ns.primary_control, fault)()  # returns once the server applied it
    return time.perf_counter()


def geobus_failover(
    ns: bench.Namespaces, fault: str, closing: list[threading.Thread]
) -> dict[str, Any]:
    """A passive sender in steady state; the primary fails; until a send lands on the secondary."""
    client = geobus_client(ns, mode="passive")
    sender = client.get_queue_sender(bench.queue_name(f"failover-{fault}"))
    try:
        sender.send_messages(ServiceBusMessage(bench.BODY))
        wait_standby_open(sender)
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
        ns.primary_control.heal()
        close_later(closing, sender, client)
    return {
        "seconds": round(seconds, 4),
        "sends_after_fault": sends,
        "failovers": stats.failovers,
        "attempt_deadline_s": client.config.deadlines.attempt,
    }


def plain_failover(
    ns: bench.Namespaces, fault: str, cutoff: float, closing: list[threading.Thread]
) -> dict[str, Any]:
    """The same by hand with the SDK's defaults: send to the primary; on an error, to the secondary.

    Runs on a daemon thread so that a hang can be cut off; after the cut-off the
    primary is healed, which lets a hung call finish, and the clients are closed."""
    queue = bench.queue_name(f"plain-failover-{fault}")
    clients = [ServiceBusClient.from_connection_string(cs) for cs in (ns.primary, ns.secondary)]
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
            sender.send_messages(
                ServiceBusMessage(bench.BODY)
            )  # both links open, as in steady state
        faulted = _inject(ns, fault)
        thread = threading.Thread(
            target=failover, args=(faulted,), name="plain-failover", daemon=True
        )
        thread.start()
        thread.join(cutoff)
        if thread.is_alive():
            outcome["cut_off_s"] = cutoff
    finally:
        ns.primary_control.heal()
        if thread is not None:
            thread.join(30)
        if thread is not None and thread.is_alive():
            outcome["hung_after_heal"] = True  # left to the daemon thread; its server stops at exit
        else:
            for sender, client in zip(senders, clients, strict=True):
                close_later(closing, sender, client)
    if "seconds" not in outcome and "cut_off_s" not in outcome:
        raise RuntimeError(f"plain failover on {fault} failed: see the traceback above")
    return outcome


def run_failover(ns: bench.Namespaces, sizes: Sizes, log: Callable[[str], None]) -> list[Metric]:
    """One row per fault (refused, black-holed), geobus against plain (or docs/sdk-behaviour.md's figure)."""
    metrics = []
    closing: list[threading.Thread] = []
    for fault, label in (("refuse", "refused"), ("black_hole", "black-holed")):
        ours = geobus_failover(ns, fault, closing)
        name = f"failover, {label} primary -> on secondary"
        log(f"  failover, primary {label}: geobus {ours}")
        if not sizes.measure_plain_faults:
            documented: dict[str, Any] = (
                {"plain": DOCUMENTED_REFUSED_S}
                if fault == "refuse"
                else {"plain": None, "plain_note": "unbounded"}
            )
            metrics.append(
                Metric(
                    name,
                    "s",
                    ours["seconds"],
                    better="lower",
                    plain_source="documented",
                    extra={"geobus": ours},
                    **documented,
                )
            )
            continue
        theirs = plain_failover(
            ns, fault, BLACK_HOLE_CUTOFF if fault == "black_hole" else FAILOVER_LIMIT, closing
        )
        log(f"  failover, primary {label}: plain {theirs}")
        if "cut_off_s" in theirs:
            metrics.append(
                Metric(
                    name,
                    "s",
                    ours["seconds"],
                    None,
                    "lower",
                    "cut-off",
                    f"unbounded (> {theirs['cut_off_s']:g} s)",
                    {
                        "geobus": ours,
                        "plain": theirs,
                        "ratio_below": float(f"{ours['seconds'] / theirs['cut_off_s']:.4g}"),
                    },
                )
            )
        else:
            metrics.append(
                Metric(
                    name,
                    "s",
                    ours["seconds"],
                    theirs["seconds"],
                    "lower",
                    extra={"geobus": ours, "plain": theirs},
                )
            )
    join_closing(closing)
    return metrics
