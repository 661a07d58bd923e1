"""Counting a drill run, Jepsen-style: what was acknowledged, lost, duplicated.

Definitions (per run, from the agents' events):

- attempted: message ids the producer tried to send; acknowledged: those
  ``send_messages`` returned for (buffered ones included); buffered: acknowledged
  into the outbox.
- lost: acknowledged, never delivered to a handler. A passive disaster may lose
  what the wiped primary held (its bound); nothing else may be lost.
- unexpected: delivered, never attempted.
- duplicates delivered, restart duplicates (against the twins still queued when
  a worker with an in-memory seen-set was killed), redelivered: each delivery as
  ``geobus._tools.ledger`` classifies it, the one definition the demo uses too.
- duplicates absorbed: copies the DedupReceivers settled without a handler.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..ledger import Delivery, Ledger
from .harness import Run


@dataclass
class Row:
    scenario: str
    api: str
    mode: str
    attempted: int = 0
    acknowledged: int = 0
    buffered: int = 0
    lost: int = 0
    loss_bound: int | None = None
    unexpected: int = 0
    duplicates_delivered: int = 0
    restart_duplicates: int = 0
    restart_bound: int = 0
    duplicates_absorbed: int = 0
    redelivered: int = 0
    max_send_latency: float = 0.0
    failover_time: float | None = None
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def tally(run: Run, seconds: float) -> Row:
    """The row for a finished run; ``violations`` says what broke a promise."""
    row = Row(run.scenario, run.api, run.mode, seconds=round(seconds, 2))
    events = run.log.events
    acks = [e for e in events if e["e"] == "ack"]
    attempted, acked = run.ids("attempt"), run.ids("ack")
    delivered = run.ids("deliver")
    row.attempted, row.acknowledged = len(attempted), len(acked)
    row.buffered = sum(1 for e in acks if e["buf"])
    row.max_send_latency = round(max((e["lat"] for e in acks), default=0.0), 3)
    failovers = [e["lat"] for e in acks if e["fo"]]
    row.failover_time = round(max(failovers), 3) if failovers else None
    _count_deliveries(run, row)
    row.duplicates_absorbed = sum(_last_worker_stats(run).values())

    lost = acked - delivered
    row.lost = len(lost)
    allowed = run.allowed_losses or set()
    if run.allowed_losses is not None:
        row.loss_bound = len(allowed)
    if lost - allowed:
        row.violations.append(
            f"{len(lost - allowed)} acknowledged message(s) lost, e.g. {sorted(lost - allowed)[:3]}"
        )
    row.unexpected = len(delivered - attempted)
    if row.unexpected:
        row.violations.append(f"{row.unexpected} message(s) delivered that were never sent")
    if row.duplicates_delivered:
        row.violations.append(f"{row.duplicates_delivered} duplicate(s) reached a handler")
    if row.restart_duplicates > row.restart_bound:
        row.violations.append(
            f"{row.restart_duplicates} restart duplicate(s), more than the {row.restart_bound} queued twins"
        )
    if not acked:
        row.violations.append("nothing was acknowledged")
    row.violations += run.violations
    for agent in [*run.producers, *run.workers]:
        code = agent.process.returncode
        if agent.overdue:
            row.violations.append("an agent did not exit within 20 s of SIGTERM (killed)")
        elif code not in (0, None) and not agent.killed:  # a scenario's own kill -9 is no failure
            row.violations.append(f"an agent exited with status {code}")
    started = run.marks[0][0] if run.marks else 0.0
    row.timeline = [f"{at - started:5.1f} s  {text}" for at, text in run.marks]
    return row


def _count_deliveries(run: Run, row: Row) -> None:
    """The agents' events, in the order they happened, through the one ``Ledger``."""
    ledger = Ledger(restart_allowed=run.restart_bound)
    feed = {"deliver": ledger.delivered, "complete": ledger.completed, "settle_failed": ledger.settle_failed}
    for event in sorted(run.log.events, key=lambda e: e["t"]):
        if event["e"] == "killed":
            ledger.died(event["life"])
        elif event["e"] in feed:
            feed[event["e"]](event["id"], event["life"])
    row.duplicates_delivered = ledger.duplicates
    row.restart_duplicates = ledger.counts[Delivery.RESTART_DUPLICATE]
    row.redelivered = ledger.counts[Delivery.REDELIVERED]
    row.restart_bound = len(run.restart_bound)


def _last_worker_stats(run: Run) -> dict[int, int]:
    absorbed: dict[int, int] = {}
    for event in run.log.events:
        if event["e"] == "stats" and event.get("role") == "worker":
            absorbed[event["life"]] = event["duplicates_absorbed"]
    return absorbed


COLUMNS = (
    ("scenario", 15), ("api", 5), ("mode", 7), ("attempted", 9), ("acked", 6), ("buffered", 8),
    ("lost", 9), ("unexp", 5), ("dup→handler", 11), ("dup absorbed", 12), ("redeliv", 7),
    ("max send", 8), ("failover", 8), ("", 4),
)  # fmt: skip


def header() -> str:
    return "  ".join(f"{name:<{width}}" for name, width in COLUMNS).rstrip()


def line(row: Row) -> str:
    lost = f"{row.lost}" if row.loss_bound is None else f"{row.lost}≤{row.loss_bound}"
    dups = f"{row.duplicates_delivered}"
    if row.restart_bound or row.restart_duplicates:
        dups += f" +{row.restart_duplicates}≤{row.restart_bound}r"
    failover = "-" if row.failover_time is None else f"{row.failover_time:.2f} s"
    cells = (
        row.scenario, row.api, row.mode, row.attempted, row.acknowledged, row.buffered, lost,
        row.unexpected, dups, row.duplicates_absorbed, row.redelivered,
        f"{row.max_send_latency:.2f} s", failover, "ok" if row.ok else "FAIL",
    )  # fmt: skip
    return "  ".join(f"{cell!s:<{width}}" for cell, (_, width) in zip(cells, COLUMNS, strict=True)).rstrip()
