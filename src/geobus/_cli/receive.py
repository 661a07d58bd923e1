"""``geobus receive``: read messages through a DedupReceiver built from the configuration,
or (``--peek``) browse both namespaces without locking or settling anything."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.exceptions import ServiceBusError

from .._config import ReplicationConfig
from .._errors import GeobusError
from .._redact import describe
from .._sync.receiver import DedupReceiver
from .common import add_common, configured, number, session
from .output import FAILED, OK, USAGE, Out
from .peek import Peeked, peeked

BODY_CHARS = 200  # a received body is shown up to this many characters (80 in the text output)
# Messages each namespace fetches ahead of what a receive call asks for (each is asked for
# what the command still wants). What was fetched but not shown when the command stops is
# abandoned by the receiver's close (delivery count + 1): fetch no more than asked.
PREFETCH = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue", nargs="?", help="the queue to read (or give --subscription)")
    parser.add_argument("--topic", metavar="TOPIC", help="the topic of --subscription")
    parser.add_argument(
        "--subscription", metavar="TOPIC/SUB", help="read a subscription: TOPIC/SUB, or SUB with --topic TOPIC"
    )
    parser.add_argument(
        "--max",
        type=number(int, "a whole number"),
        default=10,
        help="stop after this many messages (default 10); with --peek, this many from each namespace",
    )
    parser.add_argument(
        "--wait",
        type=number(float, "a number"),
        default=5.0,
        help="stop after this many seconds (default 5); not used by --peek, which shows what is there now",
    )
    settle = parser.add_mutually_exclusive_group()
    settle.add_argument(
        "--peek",
        action="store_true",
        help="browse instead of receive (peek_messages on each namespace with a plain SDK receiver): "
        "nothing is locked or settled, delivery counts stay as they are; shows up to --max messages "
        "of each namespace in sequence-number order, a MessageId also seen on the other namespace "
        "marked as a twin. Each peek request is cut off after the configuration's deadlines.attempt, "
        "a namespace's whole browse after deadlines.send; a namespace that fails is named on stderr "
        "and the exit status is 1",
    )
    settle.add_argument(
        "--no-complete",
        dest="complete",
        action="store_false",
        help="abandon each message instead of completing it: it stays in the queue (delivery count + 1); "
        "stops when an abandoned message comes round again (an abandoned message is first in line "
        "again, so this shows the head of the queue), so none is shown twice",
    )
    add_common(parser)


def _receive_entity(args: argparse.Namespace) -> tuple[str, str | None] | str:
    """(queue, None) or (topic, subscription), or what is wrong with the command line."""
    usage = "give a QUEUE, or --subscription TOPIC/SUB, or --topic TOPIC --subscription SUB"
    if args.subscription is None:
        if args.topic is not None:
            return f"--topic needs --subscription ({usage})"
        return (args.queue, None) if args.queue else usage
    if args.queue:
        return f"a QUEUE and --subscription are exclusive ({usage})"
    topic, slash, subscription = args.subscription.rpartition("/")
    if slash and args.topic is not None:
        return f"--subscription {args.subscription!r} names its topic; drop --topic or the 'TOPIC/' part"
    topic = topic if slash else (args.topic or "")
    if not topic or not subscription:
        return f"--subscription {args.subscription!r}: {usage}"
    return (topic, subscription)


def _body(message: ServiceBusReceivedMessage) -> tuple[str, int]:
    """The body as text (bytes decoded as UTF-8, other AMQP bodies as repr) and its size in bytes."""
    body = message.body
    if isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
    else:
        try:
            parts = list(body)
        except TypeError:
            parts = [body]
        if not all(isinstance(part, (bytes, bytearray)) for part in parts):
            text = repr(parts[0] if len(parts) == 1 else parts)
            return text, len(text.encode())
        raw = b"".join(parts)
    return raw.decode("utf-8", "replace"), len(raw)


def _text(value: Any) -> Any:
    # The SDK's pure-Python transport hands some strings back as bytes.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _received(message: ServiceBusReceivedMessage, namespace: str) -> dict[str, Any]:
    text, size = _body(message)
    enqueued = message.enqueued_time_utc
    return {
        "message_id": _text(message.message_id),
        "namespace": namespace,
        "sequence_number": message.sequence_number,
        "enqueued_time_utc": enqueued.isoformat() if enqueued is not None else None,
        "delivery_count": message.delivery_count,
        "subject": _text(message.subject),
        "application_properties": {str(_text(k)): _text(v) for k, v in (message.application_properties or {}).items()},
        "body": text[:BODY_CHARS] + ("…" if len(text) > BODY_CHARS else ""),
        "body_bytes": size,
        "settled": None,
    }


def run(args: argparse.Namespace) -> int:
    """Receive up to ``--max`` messages within ``--wait`` seconds; settle and print each.
    With ``--peek``, browse each namespace instead (``_run_peek``).

    Exit 0 (also when nothing arrived), 1 if a settlement failed, no namespace could be
    read (or, peeking, a namespace could not be peeked), 2 on a bad configuration or
    command line."""
    out = Out("receive")
    entity = _receive_entity(args)
    if isinstance(entity, str):
        out.error(entity)
        return USAGE
    name, subscription = entity
    target = {"queue": name} if subscription is None else {"topic": name, "subscription": subscription}
    label = f"queue {name!r}" if subscription is None else f"subscription {name}/{subscription}"
    if args.peek:
        return _run_peek(args, out, target, label)
    with session(args, out) as (config, client):
        options: dict[str, Any] = {"max_wait_time": args.wait, "prefetch": PREFETCH}
        try:
            receiver = (
                client.get_queue_receiver(name, **options)
                if subscription is None
                else client.get_subscription_receiver(name, subscription, **options)
            )
        except (ValueError, ImportError) as exc:  # the seen-set named by dedup.store cannot be opened
            raise out.fail(f"configuration: dedup.store: {exc}", USAGE) from None
        with receiver:
            rows = _read(args, receiver)
        stats = receiver.stats  # read once closed, when its pumps fetch no more
    failures = sum(row["settled"].startswith("failed") for row in rows)
    report = {
        "entity": target,
        "mode": config.mode.value,
        "messages": rows,
        "stats": {
            "copies_received": stats.received,
            "delivered": stats.delivered,
            "duplicates_absorbed": stats.duplicates_absorbed,
            "receive_errors": stats.receive_errors,
            # Fetched after the last message shown: abandoned on close, available again at once.
            "fetched_not_shown": max(0, sum(stats.received.values()) - stats.delivered - stats.duplicates_absorbed),
        },
        "settle_failures": failures,
    }
    if args.json:
        out.json(report)
    else:
        _print_receive(out, label, report, args.complete)
    if failures:
        out.error(f"{failures} message(s) could not be settled; they will be delivered again")
    unread = _unread(stats.received, stats.receive_errors)
    if unread and len(unread) == len(stats.received):
        # An empty answer from two unreachable regions is not "the queue is empty".
        out.error(f"no namespace could be read ({', '.join(f'{ns}: {n} receive error(s)' for ns, n in unread.items())})")
        return FAILED
    return FAILED if failures else OK


def _read(args: argparse.Namespace, receiver: DedupReceiver) -> list[dict[str, Any]]:
    """Up to ``--max`` messages within ``--wait`` seconds, each settled as asked: one row each."""
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.wait
    shown: set[str] = set()
    while len(rows) < args.max and (remaining := deadline - time.monotonic()) > 0:
        batch = receiver.receive_messages(args.max - len(rows), remaining)
        if not args.complete and shown & {str(m.message_id) for m in batch}:
            # An abandoned message came round again: the queue has been seen. Give
            # this batch back and stop, rather than run its delivery count up.
            for message in batch:
                with contextlib.suppress(ServiceBusError, GeobusError, ValueError):
                    receiver.abandon_message(message)
            break
        for message in batch:
            shown.add(str(message.message_id))
            row = _received(message, receiver.namespace_of(message))
            try:
                if args.complete:
                    receiver.complete_message(message)
                else:
                    receiver.abandon_message(message)
                row["settled"] = "completed" if args.complete else "abandoned"
            except (ServiceBusError, GeobusError, ValueError) as exc:
                row["settled"] = f"failed: {describe(exc)}"
            rows.append(row)
    return rows


def _unread(received: dict[str, int], errors: dict[str, int]) -> dict[str, int]:
    """The namespaces that gave nothing but errors: each mapped to its error count."""
    return {ns: errors[ns] for ns in received if not received[ns] and errors.get(ns)}


def _print_body(out: Out, row: dict[str, Any]) -> None:
    body = row["body"] if len(row["body"]) <= 80 else row["body"][:79] + "…"
    out.line(f"    {row['body_bytes']} bytes: {body!r}")


def _print_receive(out: Out, label: str, report: dict[str, Any], complete: bool) -> None:
    for row in report["messages"]:
        out.line(
            f"{row['message_id']}  from {row['namespace']}  enqueued {row['enqueued_time_utc']}  "
            f"delivery count {row['delivery_count']}  {row['settled']}"
        )
        _print_body(out, row)
    stats = report["stats"]
    copies = ", ".join(f"{ns} {n}" for ns, n in stats["copies_received"].items())
    errors = ", ".join(f"{ns} {n}" for ns, n in stats["receive_errors"].items() if n)
    out.line(
        f"received {len(report['messages'])} message(s) from {label} ({'completed' if complete else 'abandoned'}); "
        f"copies read: {copies}; duplicates absorbed {stats['duplicates_absorbed']}"
        + (f"; receive errors: {errors}" if errors else "")
    )
    if stats["fetched_not_shown"]:
        out.line(
            f"{stats['fetched_not_shown']} more message(s) were fetched but not shown: abandoned, "
            "they are available again (delivery count + 1)"
        )


# -- geobus receive --peek ------------------------------------------------------------------------


def _peek_rows(results: list[Peeked]) -> list[dict[str, Any]]:
    """Every peeked message as a row (the receive fields, ``settled`` None, and ``twin``):
    namespace by namespace in configuration order, each in sequence-number order."""
    ids = {r.namespace: {str(_text(m.message_id)) for m in r.messages if m.message_id is not None} for r in results}
    rows = []
    for result in results:
        elsewhere: set[str] = set().union(*(seen for name, seen in ids.items() if name != result.namespace))
        for message in result.messages:  # in sequence-number order already
            row = _received(message, result.namespace)
            row["twin"] = message.message_id is not None and str(row["message_id"]) in elsewhere
            rows.append(row)
    return rows


def _run_peek(args: argparse.Namespace, out: Out, entity: dict[str, str], label: str) -> int:
    """Browse up to ``--max`` messages of each namespace; print them, and each namespace that
    could not be peeked on stderr. Exit 0, 1 if a namespace failed, 2 on a bad configuration."""

    async def browse(config: ReplicationConfig) -> int:
        async with peeked(config, entity, args.max) as results:
            _print_peek(out, args.json, label, results)
            return FAILED if any(result.error is not None for result in results) else OK

    with configured(args, out) as config:
        return asyncio.run(browse(config))


def _print_peek(out: Out, as_json: bool, label: str, results: list[Peeked]) -> None:
    rows = _peek_rows(results)
    for row in rows:
        if as_json:
            out.json_line(row)
            continue
        out.line(
            f"{row['message_id']}  from {row['namespace']}  sequence {row['sequence_number']}  "
            f"enqueued {row['enqueued_time_utc']}  delivery count {row['delivery_count']}"
            + ("  (twin)" if row["twin"] else "")
        )
        _print_body(out, row)
    for result in results:
        if result.error is not None:
            shown = f" after {len(result.messages)} message(s)" if result.messages else ""
            out.error(f"{result.namespace}: could not peek {label}{shown}: {describe(result.error)}")
    if not as_json:
        counts = ", ".join(
            f"{r.namespace} {len(r.messages)}" + ("" if r.error is None else " (failed)") for r in results
        )
        twins = len({row["message_id"] for row in rows if row["twin"]})
        out.line(
            f"peeked {len(rows)} message(s) from {label}: {counts}; {twins} on both namespaces (twins); "
            "nothing locked or settled"
        )
