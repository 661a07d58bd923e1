"""``geobus local``: serve local namespaces from the command line until SIGTERM/SIGINT.

The one command whose stdout is not scrubbed: it prints the connection strings of
the namespaces it serves, keys included, because handing them out is its job (they
are local development keys unless ``--key`` says otherwise). Everything on stderr
goes through ``Out`` as in every other command.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from ..local import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEV_KEY_NAME,
    ControlServer,
    EntityDefinitions,
    Limits,
    LocalNamespace,
    development_key,
    load_entities,
)
from .output import USAGE, Out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5673, help="AMQP port of the first namespace (0: any free port)")
    parser.add_argument("--namespaces", type=int, default=1, help="how many namespaces, on consecutive ports")
    parser.add_argument("--key-name", default=DEV_KEY_NAME, help="shared access key name")
    parser.add_argument(
        "--key",
        default=None,
        help="shared access key of every namespace (default: $GEOBUS_LOCAL_KEY, or each "
        "namespace its own published development key)",
    )
    parser.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="another host name clients use for the namespaces, accepted in SAS token "
        "audiences (repeatable; loopback names are accepted on a loopback --host)",
    )
    parser.add_argument("--lock-duration", type=float, default=60.0, help="peek-lock duration, seconds")
    parser.add_argument("--max-delivery-count", type=int, default=10, help="deliveries before dead-lettering")
    parser.add_argument("--default-ttl", type=float, default=None, help="message time to live, seconds")
    parser.add_argument("--duplicate-detection-window", type=float, default=None, help="seconds; off by default")
    parser.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE, help="bytes")
    parser.add_argument("--store", type=Path, default=None, help="SQLite file (with several namespaces: one file each, suffixed -2, -3...)")
    parser.add_argument("--queue", action="append", default=[], help="declare a queue (repeatable)")
    parser.add_argument("--topic", action="append", default=[], metavar="TOPIC:SUB1,SUB2", help="declare a topic and its subscriptions (repeatable)")
    parser.add_argument(
        "--entities",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file of queues, topics and subscriptions with their settings, created at "
        "start (the administration API's names: requires_session, lock_duration...)",
    )
    parser.add_argument("--strict", action="store_true", help="unknown entities are an error instead of being created")
    parser.add_argument("--control-port", type=int, default=0, help="HTTP control port of the first namespace (0: any free port)")
    limits = parser.add_argument_group("limits (what one client may hold of a namespace)")
    for spec in fields(Limits):
        limits.add_argument(
            "--" + spec.name.replace("_", "-"),
            type=_limit(spec.name),
            default=spec.default,
            help=f"{_LIMITS_HELP[spec.name]} (default {spec.default:g})",
        )


_LIMITS_HELP = {
    "handshake_timeout": "seconds a connection has to put a token on $cbs before it is closed",
    "idle_timeout": "seconds of silence after which a connection is closed (half is advertised)",
    "max_connections": "open connections; a new one replaces the oldest not yet authorised",
    "max_links_per_connection": "links attached at once on one connection; more are refused",
    "max_cbs_request": "bytes in one $cbs request; a larger one detaches its link",
    "session_wait": "seconds a next-available session receiver waits for a free session "
    "(or the com.microsoft:timeout its attach names)",
}


def _limit(name: str) -> Callable[[str], float]:
    """Parse a limit flag's value, checked by ``Limits`` itself."""
    number: Callable[[str], Any] = (
        float if next(f for f in fields(Limits) if f.name == name).type == "float" else int
    )

    def parse(text: str) -> float:
        try:
            value: float = number(text)
            check: dict[str, Any] = {name: value}
            Limits(**check)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return parse


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(**{spec.name: getattr(args, spec.name) for spec in fields(Limits)})


def _store_path(store: Path | None, index: int) -> Path | None:
    if store is None or index == 0:
        return store
    return store.with_name(f"{store.stem}-{index + 1}{store.suffix}")


def _topics(specs: list[str]) -> dict[str, list[str]]:
    topics: dict[str, list[str]] = {}
    for spec in specs:
        name, _, subs = spec.partition(":")
        if not name:
            raise Out("local").fail(f"--topic {spec!r} needs a topic name", USAGE)
        topics[name] = [s for s in subs.split(",") if s]
    return topics


def _keys(args: argparse.Namespace) -> list[str]:
    """One key per namespace: the one given to all, or each its own development key."""
    key = args.key if args.key is not None else os.environ.get("GEOBUS_LOCAL_KEY")
    if key is not None and not key.strip():
        raise Out("local").fail("--key (or GEOBUS_LOCAL_KEY) is set but empty", USAGE)
    return [key or development_key(index + 1) for index in range(args.namespaces)]


def _entities(path: Path | None) -> EntityDefinitions | None:
    """The file read once for every namespace; a bad one is a usage error naming the key."""
    if path is None:
        return None
    try:
        return load_entities(path)
    except ConfigurationError as exc:
        raise Out("local").fail(str(exc), USAGE) from None


def run(args: argparse.Namespace) -> int:
    out = Out("local")
    if args.namespaces < 1:
        raise out.fail("--namespaces must be at least 1", USAGE)
    keys = _keys(args)
    entities = _entities(args.entities)
    # Set by SIGTERM/SIGINT, or by a namespace that stopped by itself (its store failed).
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    started: list[tuple[LocalNamespace, ControlServer]] = []
    try:
        for index in range(args.namespaces):
            options: dict[str, Any] = dict(
                host=args.host,
                port=args.port + index if args.port else 0,
                key_name=args.key_name,
                key=keys[index],
                hostnames=args.hostname,
                on_failure=lambda _error: stop.set(),
                lock_duration=args.lock_duration,
                max_delivery_count=args.max_delivery_count,
                default_ttl=args.default_ttl,
                duplicate_detection_window=args.duplicate_detection_window,
                max_message_size=args.max_message_size,
                auto_create=not args.strict,
                entities=entities,
                queues=args.queue,
                topics=_topics(args.topic),
                store=_store_path(args.store, index),
                limits=_limits(args),
            )
            namespace = LocalNamespace(**options).start()
            control_port = args.control_port + index if args.control_port else 0
            control = ControlServer(namespace, port=control_port).start()
            started.append((namespace, control))
        for namespace, control in started:
            print(namespace.connection_string, flush=True)  # unscrubbed: see the docstring
            out.note(
                f"geobus local: {namespace.endpoint} control {control.url} store {_describe_store(namespace)}"
                f" admin certificate {namespace.certificate_path}"
            )
        stop.wait()
    finally:
        for namespace, control in started:
            control.stop()
            namespace.stop()
    failed = [namespace for namespace, _ in started if namespace.failure is not None]
    for namespace in failed:
        out.error(
            f"{namespace.endpoint} stopped: {namespace.failure}; every namespace "
            "was stopped, and nothing that was not saved had been acknowledged"
        )
    return 1 if failed else 0


def _describe_store(namespace: LocalNamespace) -> str:
    return str(namespace.store_path) if namespace.store_path else "memory"
