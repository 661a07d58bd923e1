"""What ``geobus send`` and ``geobus receive`` share: configuration, output, scrubbing.

Both read ``--config FILE.toml`` (``ReplicationConfig.from_file``) or else the
``GEOBUS_*`` environment (``ReplicationConfig.from_env``), and go through the
same ``ReplicatedSender`` and ``DedupReceiver`` an application would use.
``receive --peek`` browses instead, with a plain SDK receiver per namespace from
geobus's own client factory, every request under geobus's deadlines (``peeked``).

Exit status: 0 done; 1 the send (or a settlement, or a ``receive --peek`` of one
namespace) failed, with each namespace's cause; 2 the configuration or the command
line is wrong. Nothing printed, on either stream, contains a key, a SAS signature
or a password: every line goes through ``Scrubber``, which masks the configured
secrets wherever they stand and everything ``geobus._redact`` knows the shape of.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

from .._config import NamespaceConfig, ReplicationConfig
from .._engine.channels import _Bounded, build_client, close_quietly
from .._errors import ConfigurationError, GeobusError, NamespaceTimeoutError, _describe
from .._redact import redact
from .._sas import ConnectionString, SasTokenError
from .._sync.client import GeoServiceBusClient

BODY_CHARS = 200  # a received body is shown up to this many characters (80 in the text output)
# Messages one namespace hands over per receive call. What was fetched but not shown when
# the command stops is abandoned by the receiver's close (delivery count + 1): fetch few.
PREFETCH = 1


# -- shared: output, configuration, the client -----------------------------------------------


class Scrubber:
    """Masks the configured secrets (keys, signatures, the seen-set store's password)
    wherever they stand, and anything shaped like a secret (``redact``)."""

    def __init__(self, config: ReplicationConfig | None = None) -> None:
        self._secrets: list[str] = []
        for namespace in config.namespaces if config is not None else ():
            if namespace.connection_string is not None:
                with contextlib.suppress(SasTokenError):
                    parsed = ConnectionString.parse(namespace.connection_string)
                    self._secrets += [s for s in (parsed.shared_access_key, parsed.shared_access_signature) if s]
        if config is not None:
            with contextlib.suppress(ValueError):  # a store URL that does not parse has no password
                password = urlsplit(config.dedup.store).password
                self._secrets += [password, unquote(password)] if password else []

    def __call__(self, text: str) -> str:
        return redact(text, self._secrets)


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

    def json_line(self, data: dict[str, Any]) -> None:
        """One object on one line (JSON Lines), for output that is a stream of records."""
        self.line(json.dumps(data, default=str))

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
def configured(args: argparse.Namespace, out: Out) -> Iterator[ReplicationConfig]:
    """The configuration; geobus's warnings (a failover, a namespace reconnecting) on
    stderr, scrubbed, and the SDK's own reconnect tracebacks hidden while it is open
    (geobus names each namespace's cause).

    Raises:
        Exit: 2 on a bad configuration.
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
        yield config
    finally:
        geobus_log.removeHandler(handler)
        geobus_log.propagate = propagate
        azure_log.setLevel(azure_level)


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
            raise out.fail(f"configuration: {exc}", 2) from None
        except (GeobusError, ServiceBusError, ValueError, OSError) as exc:  # OutboxError, a credential
            raise out.fail(_describe(exc), 1) from None
        with client:
            yield config, client


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


# -- geobus receive --peek ---------------------------------------------------------------------


@dataclass
class Peeked:
    """What one namespace showed: its messages in sequence-number order, and the error that
    stopped the browse (``None`` if it finished; the messages before it are kept)."""

    namespace: str
    messages: list[ServiceBusReceivedMessage] = field(default_factory=list)
    error: BaseException | None = None


def _peek_page(
    count: int, start: int
) -> Callable[[ServiceBusReceiver], Awaitable[list[ServiceBusReceivedMessage]]]:
    async def page(receiver: ServiceBusReceiver) -> list[ServiceBusReceivedMessage]:
        return await receiver.peek_messages(count, sequence_number=start)

    return page


class _Browser:
    """One namespace's plain SDK receiver, used for ``peek_messages`` only.

    Its client comes from geobus's own factory (``build_client``: the namespace's connection
    string or credential, its ``client_options``, geobus's retry settings). Every peek request
    is cut off after ``deadlines.attempt`` (the SDK cannot bound a black-holed connection) and
    the whole browse after ``deadlines.send``. The receive link is opened with no prefetch, so
    it is never given credit: no message is delivered, locked or settled through it.
    """

    def __init__(self, namespace: NamespaceConfig, config: ReplicationConfig, entity: Mapping[str, str]) -> None:
        self.name = namespace.name or ""
        self._config = config
        self._client: ServiceBusClient | None = None

        def open_receiver() -> ServiceBusReceiver:
            if self._client is None:  # built here, so a failure is this namespace's alone
                self._client = build_client(namespace, config.retry, try_timeout=config.deadlines.attempt)
            if "queue" in entity:
                return self._client.get_queue_receiver(entity["queue"], prefetch_count=0)
            return self._client.get_subscription_receiver(entity["topic"], entity["subscription"], prefetch_count=0)

        self._bounded = _Bounded(self.name, open_receiver)

    async def peek(self, max_count: int) -> Peeked:
        """Up to ``max_count`` messages from the head of the entity; an error ends the browse
        and is returned with what came before it, never raised."""
        deadlines = self._config.deadlines
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadlines.send
        peeked = Peeked(self.name)
        next_sequence = 1
        try:
            # The service may hand back fewer than asked for: page on from the last one seen.
            while len(peeked.messages) < max_count:
                left = give_up - loop.time()
                if left <= 0:
                    raise NamespaceTimeoutError(self.name, deadlines.send)
                page = await self._bounded.call(
                    _peek_page(max_count - len(peeked.messages), next_sequence), min(deadlines.attempt, left)
                )
                if not page:
                    break
                peeked.messages += page
                next_sequence = max(m.sequence_number or 0 for m in page) + 1
        except Exception as exc:  # whatever stops one namespace, the other is still shown
            peeked.error = exc
        peeked.messages.sort(key=lambda m: m.sequence_number or 0)
        return peeked

    async def close(self) -> None:
        await self._bounded.close()
        if self._client is not None:
            await close_quietly(self._client, self.name)


@contextlib.asynccontextmanager
async def peeked(config: ReplicationConfig, entity: Mapping[str, str], max_count: int) -> AsyncIterator[list[Peeked]]:
    """Peek up to ``max_count`` messages of ``entity`` (``{"queue": Q}`` or ``{"topic": T,
    "subscription": S}``) on every namespace at once, one ``Peeked`` each in configuration order.

    The results are yielded before the receivers close: a black-holed namespace's connection
    can take a few more seconds to give up, and the operator need not wait for that to read.
    """
    browsers = [_Browser(namespace, config, entity) for namespace in config.namespaces]
    try:
        yield list(await asyncio.gather(*(browser.peek(max_count) for browser in browsers)))
    finally:
        await asyncio.gather(*(browser.close() for browser in browsers))
