"""``geobus outbox``: look into a producer's outbox file; retry or purge its dead letters."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

from .._config import OutboxPolicy
from .._errors import OutboxError
from .._storage.outbox import Outbox
from .output import FAILED, OK, Out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="the outbox file (outbox.path in the configuration)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument(
        "--retry",
        nargs="*",
        type=int,
        metavar="ID",
        help="move dead letters (these ids, or all) back to the end of their lanes",
    )
    actions.add_argument(
        "--purge", nargs="*", type=int, metavar="ID", help="delete dead letters (these ids, or all) for good"
    )


def run(args: argparse.Namespace) -> int:
    """Print the outbox's state; retry or purge dead letters if asked. Exit 1 on a bad file.

    Every line is redacted (``Out``): a dead letter's reason is an error's text, which may
    hold anything."""
    out = Out("outbox")
    if not Path(args.path).is_file():
        out.error(f"{args.path} does not exist")
        return FAILED
    try:
        # Read and edit beside a running producer: SQLite serialises the writes, and
        # the producer re-reads its lanes (a retried message is sent within seconds).
        outbox = Outbox(OutboxPolicy(path=args.path), lock=False)
    except OutboxError as exc:
        out.error(str(exc))
        return FAILED
    try:
        changed = None
        if args.retry is not None:
            changed = {"retried": outbox.retry_dead_letters(args.retry or None)}
        elif args.purge is not None:
            changed = {"purged": outbox.purge_dead_letters(args.purge or None)}
        report = _report(outbox)
    finally:
        outbox.close()
    if changed is not None:
        report.update(changed)
    if args.json:
        out.json(report)
    else:
        _print(out, report)
    return OK


def _report(outbox: Outbox) -> dict[str, Any]:
    age = outbox.oldest_age()
    return {
        "path": str(outbox.path),
        "depth": outbox.depth(),
        "oldest_age_seconds": None if age is None else round(age, 3),
        "lanes": [
            {"entity": lane.entity, "lane": lane.lane, "depth": lane.depth, "oldest": _when(lane.oldest_buffered_at)}
            for lane in outbox.lanes()
        ],
        "dead_letters": [
            {
                "id": dead.id,
                "entity": dead.entity,
                "lane": dead.lane,
                "message_id": dead.message_id,
                "reason": dead.reason,
                "buffered": _when(dead.buffered_at),
                "dead_lettered": _when(dead.dead_lettered_at),
            }
            for dead in outbox.dead_letters()
        ],
    }


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")


def _print(out: Out, report: dict[str, Any]) -> None:
    for action in ("retried", "purged"):
        if action in report:
            out.line(f"{action} {report[action]} dead letter(s)")
    age = report["oldest_age_seconds"]
    out.line(f"outbox {report['path']}: {report['depth']} message(s) waiting" + (f", oldest {age:.1f} s" if age else ""))
    for lane in report["lanes"]:
        out.line(f"  {lane['entity']:<30} lane {lane['lane']:<12} {lane['depth']:>8}  since {lane['oldest']}")
    dead = report["dead_letters"]
    out.line(f"{len(dead)} dead letter(s)" + (":" if dead else ""))
    for row in dead:
        out.line(f"  #{row['id']:<6} {row['entity']} lane {row['lane']} message {row['message_id']}: {row['reason']}")
