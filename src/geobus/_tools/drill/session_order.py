"""The ``session-order`` scenario: interleaved sessions, the primary killed mid-stream.

The drill queue is session-enabled in both namespaces. The producer spreads its
messages over ``SESSIONS`` sessions, round-robin (``m-0`` in ``s0``, ``m-1`` in
``s1``, ...), so every session is mid-stream at any time; geobus's sender stamps
each with its producer stream and a per-session number. ``WORKERS`` workers, each
its own client, share a SQLite seen-set (and so the sessions' leases) and read
with next-available session receivers, letting each session go after a few
messages so that sessions change hands all through the run
(``session_worker``). A quarter into the stream the primary is killed (kill -9)
for ``OUTAGE`` seconds — longer than the passive gap wait, ``ORDER_GAP_WAIT`` —
and restarted with its store.

Judged from the workers' events (``verdict``), besides the drill's ledger (each
message delivered once):

- order, per session and producer stream, over the first delivery of each
  message: a message delivered after a later one of its stream is *late*.
  Active mode: none may be. Passive mode: each late message must be reported by
  the receiver that held the session then or before (``session_stats``:
  ``out_of_order``, or the numbers of a reported gap, ``gap_messages``) — never a
  silent reordering — and no gap may wait longer than ``ORDER_GAP_WAIT`` (plus
  ``WAIT_SLACK`` for the receiver's wake-up);
- ownership: no two workers hold one session at the same time (each holding runs
  from its ``owned`` event to its ``released`` one, both inside the locks' span).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .harness import Run

SESSIONS = 6
WORKERS = 2
ORDER_GAP_WAIT = 2.0  # seconds: passive mode's bound on a gap's wait, set short for the drill
WAIT_SLACK = 1.0  # seconds a receiver may take past the bound to wake and report the gap
OUTAGE = 2 * ORDER_GAP_WAIT  # the primary is down longer than a gap may wait
LOCK_DURATION = 5.0
RELEASE_TIMEOUT = 20.0  # after settling: the workers let their last sessions go
PRODUCER_ARGS = ("--sessions", str(SESSIONS))
WORKER_ARGS = ("--sessions", str(SESSIONS), "--prefetch", "10")
ENV = {
    "GEOBUS_DEDUP_STORE": "sqlite:{dir}/seen.db",  # the fleet's seen-set and session leases
    "GEOBUS_DEDUP_LEASE": "3",
    "GEOBUS_SESSIONS_ORDER_GAP_WAIT": str(ORDER_GAP_WAIT),
}


def session_order(run: Run) -> None:
    """Kill the primary a quarter in, restart it after ``OUTAGE`` s; once everything is
    delivered and every session let go, judge the order and the ownership."""
    run.wait_acked(run.settings.messages // 4)
    run.namespaces.primary.kill()
    run.mark(f"primary killed (kill -9) mid-session; its store kept (down {OUTAGE:.0f} s)")
    run.hold(max(OUTAGE, run.settings.fault_seconds))
    run.namespaces.primary.start()
    run.mark("primary restarted with its store")
    if not (run.producers_done() and run.settled()):
        return  # the run's own checks say what is missing
    if not run.wait_until(lambda: not open_holdings(run.log.events), RELEASE_TIMEOUT, "every session to be let go"):
        run.violations.append(f"sessions still held at the end: {sorted(open_holdings(run.log.events))}")
    judged = verdict(run.log.events, run.mode, ORDER_GAP_WAIT)
    run.mark(judged.summary())
    run.violations += judged.problems


def open_holdings(events: Iterable[Mapping[str, Any]]) -> set[tuple[str, int]]:
    """(session, worker life) of each holding owned and not yet released (a killed life's end them)."""
    held: set[tuple[str, int]] = set()
    for event in sorted(events, key=lambda e: e["t"]):
        if event["e"] == "owned":
            held.add((event["session"], event["life"]))
        elif event["e"] == "released":
            held.discard((event["session"], event["life"]))
        elif event["e"] == "killed":
            held = {h for h in held if h[1] != event["life"]}
    return held


@dataclass
class Verdict:
    """What ``verdict`` found: counts for the run's timeline, and each broken promise."""

    mode: str
    sessions: int = 0
    holdings: int = 0
    late: int = 0  # first deliveries after a later message of their producer stream
    reported: int = 0  # out_of_order + gap_messages, as the receivers reported them
    gaps: int = 0
    gap_wait_seconds: float = 0.0
    unstamped: int = 0
    overlaps: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        waited = f", {self.gap_wait_seconds:.1f} s waited in all" if self.gaps else ""
        return (
            f"session order ({self.mode}): {self.sessions} sessions in {self.holdings} holdings; "
            f"{self.late} late message(s), {self.reported} reported out of order or skipped; "
            f"{self.gaps} gap(s) reported{waited}; {self.overlaps} overlapping holding(s)"
        )


def verdict(events: Iterable[Mapping[str, Any]], mode: str, gap_wait: float) -> Verdict:
    """Judge a run's events (the module says how); ``gap_wait`` is the receivers' bound."""
    ordered = sorted(events, key=lambda e: e["t"])
    judged = Verdict(mode)
    late = _late(ordered, judged)
    holdings = _holdings(ordered)
    judged.holdings = sum(len(spans) for spans in holdings.values())
    judged.sessions = len(holdings.keys() | late.keys())
    reported: dict[str, int] = defaultdict(int)
    for event in ordered:
        if event["e"] != "released":
            continue
        reported[event["session"]] += event["out_of_order"] + event["gap_messages"]
        judged.gaps += event["gaps"]
        judged.gap_wait_seconds += event["gap_wait_seconds"]
        if event["gap_wait_seconds"] > event["gaps"] * (gap_wait + WAIT_SLACK):
            judged.problems.append(
                f"session {event['session']}: {event['gaps']} gap(s) waited {event['gap_wait_seconds']:.1f} s, "
                f"beyond the {gap_wait:g} s bound"
            )
    judged.late = sum(late.values())
    judged.reported = sum(reported.values())
    for session in sorted(s for s, count in late.items() if count):
        if mode == "active":
            judged.problems.append(f"session {session}: {late[session]} message(s) delivered after later ones "
                                   "of their producer (active mode keeps the order)")  # fmt: skip
        elif late[session] > reported[session]:
            judged.problems.append(f"session {session}: {late[session]} message(s) delivered after later ones, "
                                   f"{reported[session]} reported: a silent reordering")  # fmt: skip
    if judged.unstamped:
        judged.problems.append(f"{judged.unstamped} session message(s) delivered without an order stamp")
    for session, spans in sorted(holdings.items()):
        until, holder = float("-inf"), -1  # the latest end so far, and whose
        for start, end, life in spans:
            if start < until and life != holder:
                judged.overlaps += 1
                judged.problems.append(f"session {session}: held by workers {holder} and {life} at once")
            if end > until:
                until, holder = end, life
    return judged


def _late(ordered: list[Mapping[str, Any]], judged: Verdict) -> dict[str, int]:
    """Per session, the first deliveries that came after a later number of their producer stream."""
    first: set[str] = set()
    highest: dict[tuple[str, str], int] = {}
    late: dict[str, int] = defaultdict(int)
    for event in ordered:
        if event["e"] != "deliver" or event["id"] in first:
            continue
        first.add(event["id"])
        session = event.get("session")
        if session is None:
            continue
        late[session] += 0
        if event.get("producer") is None:
            judged.unstamped += 1
            continue
        stream = (session, event["producer"])
        if event["seq"] < highest.get(stream, 0):
            late[session] += 1
        highest[stream] = max(highest.get(stream, 0), event["seq"])
    return late


def _holdings(ordered: list[Mapping[str, Any]]) -> dict[str, list[tuple[float, float, int]]]:
    """Per session, its holdings (owned at, released at, worker life) sorted by start; one never
    released ends when its worker was killed, or never."""
    opened: dict[tuple[str, int], float] = {}
    spans: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for event in ordered:
        if event["e"] == "owned":
            opened[(event["session"], event["life"])] = event["t"]
        elif event["e"] == "released" and (event["session"], event["life"]) in opened:
            spans[event["session"]].append((opened.pop((event["session"], event["life"])), event["t"], event["life"]))
        elif event["e"] == "killed":
            for key in [k for k in opened if k[1] == event["life"]]:
                spans[key[0]].append((opened.pop(key), event["t"], key[1]))
    for (session, life), start in opened.items():
        spans[session].append((start, float("inf"), life))
    return {session: sorted(found) for session, found in spans.items()}
