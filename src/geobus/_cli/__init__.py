"""The ``geobus`` command: one module per subcommand, each with ``add_arguments`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from .._redact import redact
from .._version import __version__

# name -> (module, one-line help, description). Each module exposes
# ``add_arguments(parser)`` and ``run(args) -> int``; only the chosen one is imported.
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "demo": (
        "geobus._tools.demo",
        "a producer and a worker across two local namespaces through an outage",
        "Start two local namespaces, a ReplicatedSender and a DedupReceiver, and take the "
        "primary down mid-stream (refused, black-holed, healed). Exit 1 if anything was "
        "lost or a duplicate reached the handler.",
    ),
    "drill": (
        "geobus._tools.drill",
        "outage scenarios against local namespaces in separate processes; counts lost and duplicated",
        None,
    ),
    "send": ("geobus._cli.send", "send messages through geobus with the library's configuration (env / TOML)", None),
    "receive": ("geobus._cli.receive", "receive (and complete) messages through geobus's DedupReceiver", None),
    "bench": ("geobus._tools.bench", "run the benchmarks and print one table of ratios against plain azure-servicebus", None),
    "outbox": (
        "geobus._cli.outbox",
        "show a producer's outbox (depth, oldest age, dead letters); retry or purge dead letters",
        "Show an outbox file's lanes and dead letters. Safe beside a running producer.",
    ),
    "local": (
        "geobus.local._main",
        "serve local Service Bus namespaces (AMQP 1.0) for tests, drills and demos",
        "Serve local namespaces until SIGTERM/SIGINT. Prints one connection string per "
        "namespace on stdout once listening; control endpoints go to stderr.",
    ),
}


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    """The parser; only ``chosen``'s module is imported (all of them for ``--help``),
    so one command's missing extra or import error never breaks another."""
    parser = argparse.ArgumentParser(
        prog="geobus",
        description="Azure Service Bus through a regional outage: local namespaces, demos and drills.",
    )
    parser.add_argument("--version", action="version", version=f"geobus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text, description) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=description or help_text)
        if chosen is not None and name != chosen:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name not in ("proton", "cproton", "_cproton"):
                raise  # a real import error, not a missing extra
            sub.set_defaults(missing=str(exc))  # the local extra (python-qpid-proton)
            continue
        module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    args = _parser(chosen if chosen in COMMANDS else None).parse_args(argv)
    missing = getattr(args, "missing", None)
    if missing is not None:
        print(
            f"geobus {args.command} needs the local extra: pip install 'geobus[local]' ({missing})",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args))
    except Exception:
        # What no command caught still goes through the redactor: a traceback's lines
        # quote the values in play, configuration included.
        print(redact(traceback.format_exc()).rstrip(), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
