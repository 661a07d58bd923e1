"""``geobus send`` and ``geobus receive``: check a setup by hand, with the library's own configuration.

Both read ``--config FILE.toml`` (``ReplicationConfig.from_file``) or else the
``GEOBUS_*`` environment (``ReplicationConfig.from_env``), and go through the
same ``ReplicatedSender`` and ``DedupReceiver`` an application would use.

Exit status: 0 done; 1 the send (or a settlement) failed, with each namespace's
cause; 2 the configuration or the command line is wrong. Nothing printed, on
either stream, contains a key or a SAS signature: every line goes through
``_Scrubber``, which masks the configured keys and anything shaped like
``SharedAccessKey=...`` or ``sig=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.exceptions import ServiceBusError

from ._client import GeoServiceBusClient
from ._config import ReplicationConfig
from ._errors import ConfigurationError, GeobusError, ReplicationError, _describe
from ._policy import SendResult
from ._sas import ConnectionString, SasTokenError

BODY_CHARS = 200  # a received body is shown up to this many characters (80 in the text output)
# Messages one namespace hands over per receive call. What was fetched but not shown when
# the command stops is abandoned by the receiver's close (delivery count + 1): fetch few.
PREFETCH = 1

_SECRET_SHAPES = re.compile(r"(?i)\b(?:SharedAccessKey|SharedAccessSignature|sig)=[^;&\s\"']*")


# -- shared: output, configuration, the client -----------------------------------------------


class _Scrubber:
    """Masks the configured keys and anything shaped like a key or a signature."""

    def __init__(self, config: ReplicationConfig | None = None) -> None:
        self._secrets: list[str] = []
        for namespace in config.namespaces if config is not None else ():
            if namespace.connection_string is not None:
                with contextlib.suppress(SasTokenError):
                    parsed = ConnectionString.parse(namespace.connection_string)
                    self._secrets += [s for s in (parsed.shared_access_key, parsed.shared_access_signature) if s]

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _SECRET_SHAPES.sub("<redacted>", text)  # not "SharedAccessKey=***": no key name either


class _Exit(Exception):
    """Stop the command with ``status``; the reason is already printed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Out:
    """Prints through a scrubber: results on stdout, problems on stderr as ``geobus <command>: ...``."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.scrub = _Scrubber()

    def line(self, text: str = "") -> None:
        print(self.scrub(text), flush=True)

    def json(self, data: dict[str, Any]) -> None:
        self.line(json.dumps(data, indent=2, default=str))

    def error(self, text: str) -> None:
        print(self.scrub(f"geobus {self.command}: {text}"), file=sys.stderr, flush=True)

    def fail(self, text: str, status: int) -> _Exit:
        self.error(text)
        return _Exit(status)


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, scrub: _Scrubber) -> None:
        super().__init__("%(message)s")  # geobus's own lines start with "geobus: "
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


@contextlib.contextmanager
def _session(args: argparse.Namespace, out: _Out) -> Iterator[tuple[ReplicationConfig, GeoServiceBusClient]]:
    """The configuration and an open client; geobus's warnings (a failover, a namespace
    reconnecting) on stderr, scrubbed, and the SDK's own reconnect tracebacks hidden while
    it is open (geobus names each namespace's cause).

    Raises:
        _Exit: 2 on a bad configuration, 1 if the client cannot be built (a damaged outbox).
    """
    try:
        config = ReplicationConfig.from_file(args.config) if args.config else ReplicationConfig.from_env()
    except (ConfigurationError, OSError) as exc:  # OSError: --config is a directory, unreadable...
        where = args.config if args.config else "the GEOBUS_* environment"
        problem = exc if isinstance(exc, ConfigurationError) else f"cannot read it: {exc.strerror or exc}"
        raise out.fail(f"configuration ({where}): {problem}", 2) from None
    out.scrub = _Scrubber(config)
    geobus_log, azure_log = logging.getLogger("geobus"), logging.getLogger("azure")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubbingFormatter(out.scrub))
    propagate, azure_level = geobus_log.propagate, azure_log.level
    geobus_log.addHandler(handler)
    geobus_log.propagate = False
    azure_log.setLevel(logging.CRITICAL)
    try:
        try:
            client = GeoServiceBusClient(config)
        except ConfigurationError as exc:
            raise out.fail(f"configuration: {exc}", 2) from None
        except (GeobusError, ServiceBusError, ValueError, OSError) as exc:  # OutboxError, a credential
            raise out.fail(_describe(exc), 1) from None
        with client:
            yield config, client
    finally:
        geobus_log.removeHandler(handler)
        geobus_log.propagate = propagate
        azure_log.setLevel(azure_level)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE.toml", help="a geobus TOML configuration file (default: the GEOBUS_* variables)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _positive(kind: type[int] | type[float], what: str) -> Any:
    def parse(text: str) -> int | float:
        try:
            number = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not 0 < number < float("inf"):
            raise argparse.ArgumentTypeError(f"must be {what} > 0, got {text}")
        return number

    return parse


# -- geobus send ---------------------------------------------------------------------------


def _property(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name.strip(), value


def add_send_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Send messages through a ReplicatedSender built from the library's configuration "
        "(--config FILE.toml, else GEOBUS_* variables) and say where each one landed. "
        "Exit 1 if a send failed (each namespace's cause is printed), 2 on a bad configuration."
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("queue", nargs="?", help="the queue to send to")
    target.add_argument("--topic", metavar="TOPIC", help="send to this topic instead of a queue")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="TEXT", help="the message body (default: a short text with the time)")
    body.add_argument("--file", metavar="PATH", help="read the body from a file ('-' reads standard input)")
    parser.add_argument(
        "--count", type=_positive(int, "a whole number"), default=1, help="messages to send, one per call (default 1)"
    )
    parser.add_argument(
        "--message-id", metavar="ID", help="the MessageId (with --count N: ID-1 ... ID-N); default: geobus assigns one"
    )
    parser.add_argument("--subject", metavar="S", help="the message's subject (label)")
    parser.add_argument(
        "--property",
        dest="properties",
        metavar="NAME=VALUE",
        type=_property,
        action="append",
        default=[],
        help="an application property (a string); repeat for more",
    )
    _add_common(parser)


def _read_body(args: argparse.Namespace, out: _Out) -> str | bytes:
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
        raise out.fail(f"cannot read --file {args.file}: {exc.strerror or exc}", 2) from None


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
        "missed": {name: _describe(error) for name, error in result.missed.items()},
        "failed_over": result.failed_over,
        "buffered": list(result.buffered),
    }


def _send_error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ReplicationError):
        return {
            "error": type(exc).__name__,
            "message": str(exc).split(" (", 1)[0],  # the causes follow, one per namespace
            "causes": {name: _describe(cause) for name, cause in exc.causes.items()},
            "landed": list(exc.landed),
        }
    # Refused for a reason no namespace would accept (bad input, a missing entity): the caller's to fix.
    text = str(exc).splitlines()[0][:200] if str(exc) else "refused"
    return {"error": type(exc).__name__, "message": text, "causes": {}, "landed": []}


def run_send(args: argparse.Namespace) -> int:
    """Send ``--count`` messages, one call each; print where each landed. Exit 0, 1 or 2."""
    out = _Out("send")
    kind, name = ("topic", args.topic) if args.topic else ("queue", args.queue)
    properties: dict[str | bytes, Any] = dict(args.properties)
    sent: list[dict[str, Any]] = []
    error: dict[str, Any] | None = None
    try:
        body = _read_body(args, out)
        with _session(args, out) as (config, client):
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
    except _Exit as stop:
        return stop.status
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
    return 0 if error is None else 1


def _print_send(out: _Out, args: argparse.Namespace, report: dict[str, Any]) -> None:
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


# -- geobus receive ---------------------------------------------------------------------------


def add_receive_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Receive messages through a DedupReceiver built from the library's configuration "
        "(--config FILE.toml, else GEOBUS_* variables): each message once, whichever namespace "
        "holds it, with where it came from. Completes what it shows unless --no-complete."
    )
    parser.add_argument("queue", nargs="?", help="the queue to read (or give --subscription)")
    parser.add_argument("--topic", metavar="TOPIC", help="the topic of --subscription")
    parser.add_argument(
        "--subscription", metavar="TOPIC/SUB", help="read a subscription: TOPIC/SUB, or SUB with --topic TOPIC"
    )
    parser.add_argument(
        "--max", type=_positive(int, "a whole number"), default=10, help="stop after this many messages (default 10)"
    )
    parser.add_argument(
        "--wait", type=_positive(float, "a number"), default=5.0, help="stop after this many seconds (default 5)"
    )
    parser.add_argument(
        "--no-complete",
        dest="complete",
        action="store_false",
        help="abandon each message instead of completing it: it stays in the queue (delivery count + 1)",
    )
    _add_common(parser)


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


def run_receive(args: argparse.Namespace) -> int:
    """Receive up to ``--max`` messages within ``--wait`` seconds; settle and print each.

    Exit 0 (also when nothing arrived), 1 if a settlement failed, 2 on a bad
    configuration or command line."""
    out = _Out("receive")
    entity = _receive_entity(args)
    if isinstance(entity, str):
        out.error(entity)
        return 2
    name, subscription = entity
    rows: list[dict[str, Any]] = []
    try:
        with _session(args, out) as (config, client):
            options: dict[str, Any] = {"max_wait_time": args.wait, "prefetch": PREFETCH}
            receiver = (
                client.get_queue_receiver(name, **options)
                if subscription is None
                else client.get_subscription_receiver(name, subscription, **options)
            )
            with receiver:
                deadline = time.monotonic() + args.wait
                while len(rows) < args.max and (remaining := deadline - time.monotonic()) > 0:
                    for message in receiver.receive_messages(args.max - len(rows), remaining):
                        row = _received(message, receiver.namespace_of(message))
                        try:
                            if args.complete:
                                receiver.complete_message(message)
                            else:
                                receiver.abandon_message(message)
                            row["settled"] = "completed" if args.complete else "abandoned"
                        except (ServiceBusError, GeobusError, ValueError) as exc:
                            row["settled"] = f"failed: {_describe(exc)}"
                        rows.append(row)
            stats = receiver.stats  # read once closed, when its pumps fetch no more
    except _Exit as stop:
        return stop.status
    failures = sum(row["settled"].startswith("failed") for row in rows)
    report = {
        "entity": {"queue": name} if subscription is None else {"topic": name, "subscription": subscription},
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
        label = f"queue {name!r}" if subscription is None else f"subscription {name}/{subscription}"
        _print_receive(out, label, report, args.complete)
    if failures:
        out.error(f"{failures} message(s) could not be settled; they will be delivered again")
    return 1 if failures else 0


def _print_receive(out: _Out, label: str, report: dict[str, Any], complete: bool) -> None:
    for row in report["messages"]:
        out.line(
            f"{row['message_id']}  from {row['namespace']}  enqueued {row['enqueued_time_utc']}  "
            f"delivery count {row['delivery_count']}  {row['settled']}"
        )
        body = row["body"] if len(row["body"]) <= 80 else row["body"][:79] + "…"
        out.line(f"    {row['body_bytes']} bytes: {body!r}")
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
