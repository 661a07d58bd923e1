"""The ``geobus`` command: one module per subcommand, one convention for all of them.

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int``,
listed in ``COMMANDS`` with its one-line help and its description (which states
its exit statuses). Only the chosen module is imported, so one command's missing
extra or import error never breaks another.

How every command speaks (``output.Out`` is the one helper they print through):

- **stdout** carries the results: text, or JSON with ``--json`` (the drill then
  prints its table on stderr). **stderr** carries problems, one per line as
  ``geobus <command>: ...``, and lines about the run (a benchmark's progress,
  geobus's own warnings). A live progress line (demo, drill) is drawn only on a
  terminal.
- **Nothing printed holds a key, a SAS signature or a password.** Every line
  goes through ``output.Scrubber``: the configured secrets wherever they stand,
  and whatever ``geobus._redact`` knows the shape of; an error no command caught
  is printed here as a redacted traceback. The one exception is by design:
  ``geobus local`` prints the connection strings of the namespaces it serves
  (their keys are local development keys), because that is what it is for.
- **Exit status:**

  - 0: done. (``receive``: also when nothing arrived.)
  - 1: what the command was asked to do failed: a send was not stored, a
    settlement failed, a namespace could not be read or peeked, the two
    namespaces' entity definitions differ (``entities``), the outbox file
    is missing or not an outbox, the demo or a drill run lost or duplicated a
    message, a benchmark failed, a local namespace's store failed; or an error
    no command caught.
  - 2: the command line or the configuration is wrong: argparse's own errors, a
    bad ``GEOBUS_*`` variable or TOML file, an option out of range, the
    ``local`` extra not installed (``geobus._extras``).
  - 130: interrupted (Ctrl-C or SIGTERM), once every process and server the
    command started is stopped.

A command stops early by raising ``output.Exit`` (made by ``Out.fail``, which
prints the reason); ``main`` turns it into the status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import NamedTuple

from .._extras import MissingExtraError, require_local_extra
from .._version import __version__
from .output import FAILED, INTERRUPTED, USAGE, Exit, Out


class Command(NamedTuple):
    module: str
    help: str
    description: str
    # Built on geobus.local: asked for the extra before the module is imported, so a
    # missing python-qpid-proton is a usage error, not a traceback.
    needs_local: bool = False


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "geobus._tools.demo",
        "a producer and a worker across two local namespaces through an outage",
        "Start two local namespaces, a ReplicatedSender and a DedupReceiver, and take the "
        "primary down mid-stream (refused, black-holed, healed). Exit 1 if anything was "
        "lost or a duplicate reached the handler.",
        needs_local=True,
    ),
    "drill": Command(
        "geobus._tools.drill",
        "outage scenarios against local namespaces in separate processes; counts lost and duplicated",
        "Run outage scenarios against two local namespaces in separate processes (kill -9 "
        "and SIGSTOP are real), with a producer and a worker process. Prints one row per "
        "scenario, API and mode; exit status 1 if anything was lost that the mode keeps, "
        "or a duplicate reached the handler.",
        needs_local=True,
    ),
    "send": Command(
        "geobus._cli.send",
        "send messages through geobus with the library's configuration (env / TOML)",
        "Send messages through a ReplicatedSender built from the library's configuration "
        "(--config FILE.toml, else GEOBUS_* variables) and say where each one landed. "
        "Exit 1 if a send failed (each namespace's cause is printed), 2 on a bad configuration.",
    ),
    "receive": Command(
        "geobus._cli.receive",
        "receive (and complete) messages through geobus's DedupReceiver",
        "Receive messages through a DedupReceiver built from the library's configuration "
        "(--config FILE.toml, else GEOBUS_* variables): each message once, whichever namespace "
        "holds it, with where it came from. Completes what it shows unless --no-complete. "
        "With --peek, browses both namespaces instead: nothing is locked or settled. "
        "Exit 0 done (also when nothing arrived); 1 a settlement failed, or with --peek a "
        "namespace could not be peeked (its cause on stderr, the other namespace still shown); "
        "2 a bad configuration or command line.",
    ),
    "bench": Command(
        "geobus._tools.bench",
        "run the benchmarks and print one table of ratios against plain azure-servicebus",
        "Run geobus's benchmarks (each in its own process) and print one table: benchmark, "
        "scenario, the geobus figure, the plain azure-servicebus figure from the same run, and "
        "their ratio; with the machine it ran on. Exit 1 if a benchmark fails.",
    ),
    "outbox": Command(
        "geobus._cli.outbox",
        "show a producer's outbox (depth, oldest age, dead letters); retry or purge dead letters",
        "Show an outbox file's lanes and dead letters. Safe beside a running producer. "
        "Exit 1 if the file does not exist or is not a geobus outbox.",
    ),
    "entities": Command(
        "geobus._cli.entities",
        "compare the namespaces' queues, topics, subscriptions and rules (check), or copy them (sync)",
        "check: read both namespaces' entity definitions through the administration API (the "
        "configuration's connection strings or credential) and print how they differ (docs/entities.md "
        "lists what is compared). sync --from primary|secondary: print the plan, then create what the "
        "other namespace lacks and update what differs (--dry-run: the plan only; --delete: also delete "
        "what the source lacks; nothing is deleted otherwise). Exit 0 alike (after a sync); 1 they "
        "differ (a dry run with differences too; an entity to recreate by hand; a step that failed) or "
        "a namespace could not be read; 2 a bad configuration or command line.",
    ),
    "local": Command(
        "geobus._cli.local",
        "serve local Service Bus namespaces (AMQP 1.0) for tests, drills and demos",
        "Serve local namespaces until SIGTERM/SIGINT. Prints one connection string per "
        "namespace on stdout once listening; control endpoints, and the certificate the "
        "administration API presents over HTTPS on the same port, go to stderr.",
        needs_local=True,
    ),
}


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    """The parser; only ``chosen``'s module is imported (all of them for ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="geobus",
        description="Azure Service Bus through a regional outage: local namespaces, demos and drills.",
    )
    parser.add_argument("--version", action="version", version=f"geobus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.description)
        if chosen is not None and name != chosen:
            continue
        if command.needs_local:
            try:
                require_local_extra("this command")
            except MissingExtraError as missing:
                sub.set_defaults(missing=str(missing))
                continue
        importlib.import_module(command.module).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    args = _parser(chosen if chosen in COMMANDS else None).parse_args(argv)
    out = Out(args.command)
    missing = getattr(args, "missing", None)
    if missing is not None:
        out.error(missing)
        return USAGE
    module = importlib.import_module(COMMANDS[args.command].module)
    try:
        return int(module.run(args))
    except Exit as stop:
        return stop.status
    except MissingExtraError as exc:
        out.error(str(exc))
        return USAGE
    except KeyboardInterrupt:
        out.error("interrupted")
        return INTERRUPTED
    except Exception:
        # What no command caught still goes through the redactor: a traceback's lines
        # quote the values in play, configuration included.
        out.error(traceback.format_exc().rstrip())
        return FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
