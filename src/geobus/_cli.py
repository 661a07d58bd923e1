"""The ``geobus`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geobus",
        description="Azure Service Bus through a regional outage: local namespaces, demos and drills.",
    )
    parser.add_argument("--version", action="version", version=f"geobus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser(
        "local",
        help="serve local Service Bus namespaces (AMQP 1.0) for tests, drills and demos",
        description="Serve local namespaces until SIGTERM/SIGINT. Prints one connection "
        "string per namespace on stdout once listening; control endpoints go to stderr.",
    )
    try:
        from .local._main import add_arguments
    except ImportError:  # the local extra is not installed
        local.set_defaults(missing_extra=True)
    else:
        add_arguments(local)

    demo = commands.add_parser(
        "demo", help="a producer and a worker across two local namespaces through an outage"
    )
    demo.add_argument("--messages", type=int, default=300, help="messages to send (default 300)")
    demo.add_argument("--mode", choices=["passive", "active"], default="passive", help="replication mode")
    demo.add_argument("--rate", type=float, default=60.0, help="messages per second the producer sends")

    outbox = commands.add_parser(
        "outbox",
        help="show a producer's outbox (depth, oldest age, dead letters); retry or purge dead letters",
        description="Show an outbox file's lanes and dead letters. Safe beside a running producer.",
    )
    from ._outbox_cli import add_arguments as add_outbox_arguments

    add_outbox_arguments(outbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "missing_extra", False):
        print("geobus local needs the local extra: pip install 'geobus[local]'", file=sys.stderr)
        return 2
    if args.command == "local":
        from .local._main import run

        return run(args)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(messages=args.messages, mode=args.mode, rate=args.rate)
    if args.command == "outbox":
        from ._outbox_cli import run as run_outbox

        return run_outbox(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
