"""What the commands share besides their output: the configuration, the client, argument types.

``geobus send`` and ``geobus receive`` read ``--config FILE.toml``
(``ReplicationConfig.from_file``) or else the ``GEOBUS_*`` environment
(``ReplicationConfig.from_env``), and go through the same ``ReplicatedSender``
and ``DedupReceiver`` an application would use.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator

from azure.servicebus.exceptions import ServiceBusError

from .._config import ReplicationConfig
from .._errors import ConfigurationError, GeobusError
from .._redact import describe
from .._sync.client import GeoServiceBusClient
from .output import FAILED, USAGE, Out, Scrubber


@contextlib.contextmanager
def configured(args: argparse.Namespace, out: Out) -> Iterator[ReplicationConfig]:
    """The configuration, with ``out`` scrubbing its secrets and printing geobus's
    warnings on stderr while it is open (``Out.logging``).

    Raises:
        Exit: 2 on a bad configuration.
    """
    try:
        config = ReplicationConfig.from_file(args.config) if args.config else ReplicationConfig.from_env()
    except (ConfigurationError, OSError) as exc:  # OSError: --config is a directory, unreadable...
        where = args.config if args.config else "the GEOBUS_* environment"
        problem = exc if isinstance(exc, ConfigurationError) else f"cannot read it: {exc.strerror or exc}"
        raise out.fail(f"configuration ({where}): {problem}", USAGE) from None
    out.scrub = Scrubber(config)
    with out.logging():
        yield config


@contextlib.contextmanager
def session(args: argparse.Namespace, out: Out) -> Iterator[tuple[ReplicationConfig, GeoServiceBusClient]]:
    """The configuration (as ``configured``) and an open client.

    Raises:
        Exit: 2 on a bad configuration, 1 if the client cannot be built (a damaged outbox).
    """
    with configured(args, out) as config:
        try:
            client = GeoServiceBusClient(config)
        except ConfigurationError as exc:
            raise out.fail(f"configuration: {exc}", USAGE) from None
        except (GeobusError, ServiceBusError, ValueError, OSError) as exc:  # OutboxError, a credential
            raise out.fail(describe(exc), FAILED) from None
        with client:
            yield config, client


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--json``, as ``send`` and ``receive`` take them."""
    parser.add_argument(
        "--config", metavar="FILE.toml", help="a geobus TOML configuration file (default: the GEOBUS_* variables)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def number(kind: type[int] | type[float], what: str, *, at_least: float | None = None) -> Callable[[str], float]:
    """An argument type: a finite ``kind`` above 0 (or, given ``at_least``, not below it);
    anything else is a usage error that names the argument (exit status 2)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if at_least is not None and not at_least <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be at least {at_least:g}, got {text}")
        if at_least is None and not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be {what} > 0, got {text}")
        return value

    return parse


def parse_property(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name.strip(), value
