"""``geobus send``: send messages through a ReplicatedSender built from the configuration."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from .._errors import GeobusError, ReplicationError
from .._models import SendResult
from .._redact import describe
from .common import add_common, number, parse_property, session
from .output import FAILED, OK, USAGE, Out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("queue", nargs="?", help="the queue to send to")
    target.add_argument("--topic", metavar="TOPIC", help="send to this topic instead of a queue")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="TEXT", help="the message body (default: a short text with the time)")
    body.add_argument("--file", metavar="PATH", help="read the body from a file ('-' reads standard input)")
    parser.add_argument(
        "--count", type=number(int, "a whole number"), default=1, help="messages to send, one per call (default 1)"
    )
    parser.add_argument(
        "--message-id", metavar="ID", help="the MessageId (with --count N: ID-1 ... ID-N); default: geobus assigns one"
    )
    parser.add_argument("--subject", metavar="S", help="the message's subject (label)")
    parser.add_argument(
        "--property",
        dest="properties",
        metavar="NAME=VALUE",
        type=parse_property,
        action="append",
        default=[],
        help="an application property (a string); repeat for more",
    )
    add_common(parser)


def _read_body(args: argparse.Namespace, out: Out) -> str | bytes:
    if args.body is not None:
        return str(args.body)
    if args.file is None:
        return f"geobus send check at {datetime.now(timezone.utc).isoformat(timespec='seconds')}"
    try:
        if args.file == "-":
            return sys.stdin.buffer.read()
        with open(args.file, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise out.fail(f"cannot read --file {args.file}: {exc.strerror or exc}", USAGE) from None


def _message_ids(args: argparse.Namespace) -> list[str | None]:
    if args.message_id is None:
        return [None] * args.count
    if args.count == 1:
        return [args.message_id]
    return [f"{args.message_id}-{n}" for n in range(1, args.count + 1)]


def _sent(message_id: str, result: SendResult) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "landed": list(result.landed),
        "missed": {name: describe(error) for name, error in result.missed.items()},
        "failed_over": result.failed_over,
        "buffered": list(result.buffered),
    }


def _send_error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ReplicationError):
        return {
            "error": type(exc).__name__,
            "message": str(exc).split(" (", 1)[0],  # the causes follow, one per namespace
            "causes": {name: describe(cause) for name, cause in exc.causes.items()},
            "landed": list(exc.landed),
        }
    # Refused for a reason no namespace would accept (bad input, a missing entity): the caller's to fix.
    text = str(exc).splitlines()[0][:200] if str(exc) else "refused"
    return {"error": type(exc).__name__, "message": text, "causes": {}, "landed": []}


def run(args: argparse.Namespace) -> int:
    """Send ``--count`` messages, one call each; print where each landed. Exit 0, 1 or 2 (the
    convention of ``geobus._cli``)."""
    out = Out("send")
    kind, name = ("topic", args.topic) if args.topic else ("queue", args.queue)
    properties: dict[str | bytes, Any] = dict(args.properties)
    sent: list[dict[str, Any]] = []
    error: dict[str, Any] | None = None
    body = _read_body(args, out)
    with session(args, out) as (config, client):
        try:
            sender = client.get_topic_sender(name) if kind == "topic" else client.get_queue_sender(name)
            with sender:
                for message_id in _message_ids(args):
                    message = ServiceBusMessage(
                        body, message_id=message_id, subject=args.subject,
                        application_properties=properties or None,
                    )
                    sent.append(_sent(str(message.message_id), sender.send_messages(message)))
        except (GeobusError, ServiceBusError, ValueError, TypeError) as exc:
            error = _send_error(exc)
    landed: Counter[str] = Counter(ns for row in sent for ns in row["landed"])
    report = {
        "entity": {kind: name},
        "mode": config.mode.value,
        "write_quorum": config.write_quorum.value,
        "messages": sent,
        "summary": {
            "requested": args.count,
            "sent": len(sent),
            "landed": dict(sorted(landed.items())),
            "failed_over": sum(row["failed_over"] for row in sent),
            "buffered": sum(bool(row["buffered"]) for row in sent),
            "partial": sum(bool(row["landed"] and row["missed"]) for row in sent),
        },
        "error": error,
    }
    _print_send(out, args, report)
    return OK if error is None else FAILED


def _print_send(out: Out, args: argparse.Namespace, report: dict[str, Any]) -> None:
    kind, name = next(iter(report["entity"].items()))
    if args.json:
        out.json(report)
    elif args.count == 1:
        for row in report["messages"]:
            parts = [f"landed on {', '.join(row['landed'])}" if row["landed"] else "landed nowhere yet"]
            parts += ["failed over"] if row["failed_over"] else []
            parts += [f"buffered in the outbox (lane {', '.join(row['buffered'])})"] if row["buffered"] else []
            parts += [f"missed {ns} ({cause})" for ns, cause in row["missed"].items()]
            out.line(f"sent message {row['message_id']} to {kind} {name!r}: {'; '.join(parts)}")
    else:
        summary = report["summary"]
        landed = ", ".join(f"{ns} {n}" for ns, n in summary["landed"].items()) or "none"
        out.line(
            f"sent {summary['sent']} of {summary['requested']} message(s) to {kind} {name!r} "
            f"({report['mode']} mode): landed on {landed}; failed over {summary['failed_over']}; "
            f"buffered {summary['buffered']}; partial {summary['partial']}"
        )
    error = report["error"]
    if error is not None:
        out.error(f"message {len(report['messages']) + 1} of {args.count} not sent: {error['error']}: {error['message']}")
        for namespace, cause in error["causes"].items():
            out.error(f"  {namespace}: {cause}")
        if error["landed"]:
            out.error(f"  (it did land on {', '.join(error['landed'])})")

