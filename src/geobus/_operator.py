"""What ``geobus send`` and ``geobus receive`` share: configuration, output, scrubbing.

Both read ``--config FILE.toml`` (``ReplicationConfig.from_file``) or else the
``GEOBUS_*`` environment (``ReplicationConfig.from_env``), and go through the
same ``ReplicatedSender`` and ``DedupReceiver`` an application would use.

Exit status: 0 done; 1 the send (or a settlement) failed, with each namespace's
cause; 2 the configuration or the command line is wrong. Nothing printed, on
either stream, contains a key or a SAS signature: every line goes through
``Scrubber``, which masks the configured keys and anything shaped like
``SharedAccessKey=...`` or ``sig=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

from azure.servicebus.exceptions import ServiceBusError

from ._client import GeoServiceBusClient
from ._config import ReplicationConfig
from ._errors import ConfigurationError, GeobusError, _describe
from ._sas import ConnectionString, SasTokenError

BODY_CHARS = 200  # a received body is shown up to this many characters (80 in the text output)
# Messages one namespace hands over per receive call. What was fetched but not shown when
# the command stops is abandoned by the receiver's close (delivery count + 1): fetch few.
PREFETCH = 1

_SECRET_SHAPES = re.compile(r"(?i)\b(?:SharedAccessKey|SharedAccessSignature|sig)=[^;&\s\"']*")


# -- shared: output, configuration, the client -----------------------------------------------


class Scrubber:
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


class Exit(Exception):
    """Stop the command with ``status``; the reason is already printed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Out:
    """Prints through a scrubber: results on stdout, problems on stderr as ``geobus <command>: ...``."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.scrub = Scrubber()

    def line(self, text: str = "") -> None:
        print(self.scrub(text), flush=True)

    def json(self, data: dict[str, Any]) -> None:
        self.line(json.dumps(data, indent=2, default=str))

    def error(self, text: str) -> None:
        print(self.scrub(f"geobus {self.command}: {text}"), file=sys.stderr, flush=True)

    def fail(self, text: str, status: int) -> Exit:
        self.error(text)
        return Exit(status)


class ScrubbingFormatter(logging.Formatter):
    def __init__(self, scrub: Scrubber) -> None:
        super().__init__("%(message)s")  # geobus's own lines start with "geobus: "
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


@contextlib.contextmanager
def session(args: argparse.Namespace, out: Out) -> Iterator[tuple[ReplicationConfig, GeoServiceBusClient]]:
    """The configuration and an open client; geobus's warnings (a failover, a namespace
    reconnecting) on stderr, scrubbed, and the SDK's own reconnect tracebacks hidden while
    it is open (geobus names each namespace's cause).

    Raises:
        Exit: 2 on a bad configuration, 1 if the client cannot be built (a damaged outbox).
    """
    try:
        config = ReplicationConfig.from_file(args.config) if args.config else ReplicationConfig.from_env()
    except (ConfigurationError, OSError) as exc:  # OSError: --config is a directory, unreadable...
        where = args.config if args.config else "the GEOBUS_* environment"
        problem = exc if isinstance(exc, ConfigurationError) else f"cannot read it: {exc.strerror or exc}"
        raise out.fail(f"configuration ({where}): {problem}", 2) from None
    out.scrub = Scrubber(config)
    geobus_log, azure_log = logging.getLogger("geobus"), logging.getLogger("azure")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubbingFormatter(out.scrub))
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


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE.toml", help="a geobus TOML configuration file (default: the GEOBUS_* variables)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def positive(kind: type[int] | type[float], what: str) -> Any:
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


def parse_property(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name.strip(), value
