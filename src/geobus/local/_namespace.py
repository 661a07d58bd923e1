"""``LocalNamespace``: one embedded Service Bus namespace, in this process."""

from __future__ import annotations

import base64
import math
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from typing_extensions import Self

from .._closing import Serving
from ._admin_api import AdminApi
from ._admin_http import AdminHttp
from ._amqp import Engine
from ._broker import BadAddress, Broker
from ._cbs import own_hosts
from ._definitions import EntityDefinitions, as_definitions
from ._entities import EntitySettings
from ._limits import Limits
from ._registry import EntityRegistry
from ._server import Fault, Server
from ._store import MemoryStore, SqliteStore
from ._tls import Certificate

DEV_KEY_NAME = "RootManageSharedAccessKey"
# A published development key, like Azurite's: it protects nothing and is safe to print.
DEV_KEY = "Z2VvYnVzLWxvY2FsLWRldmVsb3BtZW50LWtleQ=="
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
# More than any SDK timeout: a larger latency is a typo, not a fault worth injecting.
MAX_LATENCY = 3600.0


def development_key(number: int) -> str:
    """The published development key of namespace ``number`` (1, 2, ...) of a set.

    Namespace 1's is ``DEV_KEY``. ``geobus local --namespaces N`` and
    ``geobus.testing.local_pair`` give each namespace its own, so that a token
    (or a connection string) for one does not work on another, as in Azure.

    Raises:
        ValueError: ``number`` is not a positive int.
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"number must be a positive int, not {number!r}")
    if number == 1:
        return DEV_KEY
    return base64.b64encode(f"geobus-local-development-key-{number}".encode()).decode()


class LocalNamespace(Serving):
    """An AMQP 1.0 server that azure-servicebus talks to as if it were a namespace.

    Start it with ``with LocalNamespace() as ns:`` (or ``start()``/``stop()``) and
    hand ``ns.connection_string`` to ``ServiceBusClient.from_connection_string``.
    Queues are created on first use unless ``auto_create=False``; topics are
    declared with ``topics={"name": ["sub1", "sub2"]}`` or created when a
    subscription receiver attaches first. Entities created so take the namespace's
    settings (``lock_duration``, ``max_delivery_count``, ``default_ttl``,
    ``duplicate_detection_window``).

    ``entities`` declares queues, topics and subscriptions with settings of their
    own: a TOML file's path, ``EntityDefinitions`` (``load_entities``) or a mapping
    of the file's shape. They are created at start; a setting a definition leaves
    out is Service Bus's default, not the namespace's. With a ``store``, the
    definitions' settings replace those the entities had before and their messages
    stay.

    The same port serves the administration API of azure-servicebus's
    ``ServiceBusAdministrationClient`` (HTTP, and HTTPS with the certificate at
    ``certificate_path``): queues, topics, subscriptions and their rules, created
    through it or not, are the same entities. Subscriptions route a topic's messages
    by their rules (``$Default`` at first: everything).

    Fault methods (``refuse``, ``black_hole``, ``freeze``, ``set_latency``,
    ``drop_connections``, ``detach_links``, ``heal``) and ``counts`` are safe to
    call from any thread; they take effect on the server's loop before returning.

    A SAS token must name this namespace: its audience's host is ``host``, or one
    of ``hostnames`` (for a loopback ``host``, also ``localhost`` and the loopback
    addresses). Links are detached when their token expires.

    ``limits`` bounds what clients may hold (``Limits``: handshake and idle
    timeouts, connections, links per connection, ``$cbs`` request size), so that
    no local process can stop the namespace serving others or grow its memory
    without bound.

    If the ``store`` cannot be written (disk full, a file size limit), the
    namespace stops serving at once, before it acknowledges anything it did not
    save: ``failure`` holds the ``OSError``, ``on_failure(error)`` is called (on
    the server's thread; it must not block), later calls raise ``RuntimeError``,
    and leaving the ``with`` block raises the error.

    Raises:
        OSError: the port cannot be bound (on ``start``); the store could not be
            written (on leaving the ``with`` block).
        ValueError: ``store`` names a file that is not a local store, or cannot
            be created, or holds a queue the ``entities`` declare as a topic (or
            the other way round).
        ConfigurationError: ``entities`` cannot be read or has a bad definition
            (a ``ValueError`` too).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        key_name: str = DEV_KEY_NAME,
        key: str = DEV_KEY,
        hostnames: Iterable[str] = (),
        lock_duration: float = 60.0,
        max_delivery_count: int = 10,
        default_ttl: float | None = None,
        duplicate_detection_window: float | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        auto_create: bool = True,
        queues: Iterable[str] = (),
        topics: Mapping[str, Iterable[str]] | None = None,
        store: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        on_failure: Callable[[BaseException], None] | None = None,
        limits: Limits | None = None,
        entities: str | os.PathLike[str] | EntityDefinitions | Mapping[str, Any] | None = None,
    ) -> None:
        self.entities = as_definitions(entities)
        settings = EntitySettings(
            lock_duration=lock_duration,
            max_delivery_count=max_delivery_count,
            default_ttl=default_ttl,
            duplicate_detection_window=duplicate_detection_window,
        )
        self._broker = Broker(settings, auto_create=auto_create, clock=clock)
        self.store_path = Path(store) if store is not None else None
        self._store: MemoryStore | SqliteStore = (
            SqliteStore(store) if store is not None else MemoryStore()
        )
        self._registry = EntityRegistry(self._broker, clock)
        try:
            self._store.load(self._broker)
            # After the store: a stored entity takes the definitions' settings, keeps its messages.
            self._declare(self.entities)
            for name in queues:
                self._broker.declare_queue(name)
            for topic, subs in (topics or {}).items():
                self._broker.declare_topic(topic, subs)
        except BaseException:
            self._store.close()
            raise
        self.key_name = key_name
        self._key = key
        self._engine = Engine(
            self._broker,
            key_name=key_name,
            key=key,
            hosts=own_hosts(host, [hostnames] if isinstance(hostnames, str) else hostnames),
            max_message_size=max_message_size,
            limits=limits,
            clock=clock,
        )
        self._server = Server(self._engine, self._store, host, port, on_failure=on_failure)
        self._certificate: Certificate | None = None
        self._tls_lock = threading.Lock()
        self._server.admin = AdminHttp(
            AdminApi(self._registry, host=lambda: self.fully_qualified_namespace),
            run=self._server.call_saved,
            validate=self._engine.validate_token,
            hosts=self._engine.hosts,
            wait_until_answering=self._server.wait_until_answering,
            latency=lambda: self._server.latency,
            tls=self._tls_context,
            handshake_timeout=self._engine.limits.handshake_timeout,
        )
        self._started = False

    def _declare(self, entities: EntityDefinitions | None) -> None:
        if entities is None:
            return
        try:
            for queue in entities.queues:
                self._registry.declared("queue", self._broker.declare_queue(queue.name, queue.settings()).path)
            for topic in entities.topics:
                path = self._broker.declare_topic(topic.name, settings=topic.settings(self._broker.settings)).path
                self._registry.declared("topic", path)
                for sub in topic.subscriptions:
                    log = self._broker.declare_subscription(topic.name, sub.name, sub.settings())
                    self._registry.declared("subscription", log.path)
                    if sub.rules:
                        self._registry.declare_rules(topic.name, sub.name, sub.rules)
        except BadAddress as exc:  # the definitions agree with themselves: the store differs
            raise ValueError(
                f"{self.store_path}: {exc}, but the entity definitions ({entities.source}) "
                "declare it as the other kind"
            ) from exc

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Listen and serve on the server's thread; a second call does nothing.

        Raises:
            OSError: the port cannot be bound.
        """
        if not self._started:
            self._server.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop serving and close the store; never raises ``failure`` (see ``__exit__``)."""
        if self._started:
            self._server.stop()
            self._started = False
        self._store.close()
        if self._certificate is not None:
            self._certificate.remove()
            self._certificate = None

    @property
    def certificate_path(self) -> str:
        """The PEM certificate the administration API presents over HTTPS, made on first
        use and valid for this namespace's host names: what a client trusts with
        ``ServiceBusAdministrationClient.from_connection_string(ns.connection_string,
        connection_verify=ns.certificate_path)`` (azure-servicebus 7.15's administration
        client speaks HTTPS even to an emulator). Removed on ``stop``."""
        self._tls_context()
        assert self._certificate is not None
        return str(self._certificate.path)

    def _tls_context(self) -> ssl.SSLContext:
        with self._tls_lock:
            if self._certificate is None:
                self._certificate = Certificate(self._engine.hosts)
            return self._certificate.context

    def close(self) -> None:
        """The same as ``stop``."""
        self.stop()

    @property
    def failure(self) -> BaseException | None:
        """Why the namespace stopped by itself (an ``OSError`` from its store), or None."""
        return self._server.failure

    def __exit__(self, *exc_info: Any) -> None:
        super().__exit__(*exc_info)
        failure = self._server.failure
        if failure is not None and failure is not exc_info[1]:
            # The block may have failed because of it (the SDK saw its connection
            # close): raised here, the store's error is the one the reader sees first.
            raise failure

    def __repr__(self) -> str:
        return f"LocalNamespace(endpoint={self.endpoint!r}, fault={self.fault.value!r})"

    # -- addresses -------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._server.address.host

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, once started, when asked for port 0)."""
        return self._server.address.port

    @property
    def endpoint(self) -> str:
        """``sb://host:port``."""
        return f"sb://{self.host}:{self.port}"

    @property
    def fully_qualified_namespace(self) -> str:
        """``host:port``, what the SDK takes as a fully qualified namespace."""
        return f"{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        """The development connection string, key included (it is a local key)."""
        return (
            f"Endpoint={self.endpoint};SharedAccessKeyName={self.key_name};"
            f"SharedAccessKey={self._key};UseDevelopmentEmulator=true"
        )

    # -- faults ------------------------------------------------------------------------

    @property
    def fault(self) -> Fault:
        """The fault in force (``Fault.NONE`` when healthy)."""
        return self._server.fault

    @property
    def latency(self) -> float:
        """Seconds every inbound chunk is held (``set_latency``)."""
        return self._server.latency

    def refuse(self) -> None:
        """Refuse new connections and reset open ones (the host is down)."""
        self._server.call(lambda: self._server.set_fault(Fault.REFUSE))

    def black_hole(self) -> None:
        """Accept TCP but never answer, on new and open connections alike."""
        self._server.call(lambda: self._server.set_fault(Fault.BLACK_HOLE))

    def freeze(self) -> None:
        """Stop all I/O and timers, as SIGSTOP would; ``heal`` resumes."""
        self._server.call(lambda: self._server.set_fault(Fault.FREEZE))

    def set_latency(self, seconds: float) -> None:
        """Hold every inbound chunk ``seconds`` before it is processed.

        Raises:
            ValueError: ``seconds`` is not a finite number from 0 to ``MAX_LATENCY``.
        """
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or not 0 <= seconds <= MAX_LATENCY
        ):
            raise ValueError(f"latency seconds must be a number from 0 to {MAX_LATENCY:g}")
        self._server.call(lambda: setattr(self._server, "latency", float(seconds)))

    def drop_connections(self) -> int:
        """Reset every open connection once; returns how many there were."""
        return self._server.call(self._server.drop_connections)

    def detach_links(self, condition: str = "amqp:link:detach-forced") -> int:
        """Detach every entity link with ``condition``; returns how many."""
        return self._server.call(
            lambda: self._server.detach_links(condition, "detached by a local fault")
        )

    def heal(self) -> None:
        """Clear every fault and the added latency."""

        def _heal() -> None:
            self._server.latency = 0.0
            self._server.set_fault(Fault.NONE)

        self._server.call(_heal)

    # -- inspection ----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Messages held per entity path, dead-letter queues included."""
        return self._server.call(self._broker.counts)

    @property
    def connection_count(self) -> int:
        """Client connections open now."""
        return self._server.call(lambda: self._server.connection_count)

    def declare_topic(
        self,
        name: str,
        subscriptions: Iterable[str] = (),
        *,
        settings: EntitySettings | None = None,
    ) -> None:
        """Create topic ``name`` with ``subscriptions`` (those it lacks, if it exists);
        ``settings`` (an ``EntitySettings``) apply to the subscriptions created here.

        Raises:
            ValueError: ``name`` cannot name an entity, or is a queue's.
        """

        def declare() -> None:
            self._broker.declare_topic(name)
            for sub in subscriptions:
                self._broker.declare_subscription(name, sub, settings)

        self._server.call(declare)

    def declare_queue(self, name: str, *, settings: EntitySettings | None = None) -> None:
        """Create queue ``name`` unless it exists, with ``settings`` (an ``EntitySettings``;
        default: the namespace's).

        Raises:
            ValueError: ``name`` cannot name an entity, or is a topic's.
        """
        self._server.call(lambda: self._broker.declare_queue(name, settings) and None)
