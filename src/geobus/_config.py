"""Configuration: two namespaces, the replication mode and the policies.

Every setting is validated when its dataclass is built; a bad one raises
``ConfigurationError`` naming the field (``primary.connection_string``,
``deadlines.attempt``). Switching active and passive replication is a change of
``mode`` only — in code, in the environment (``GEOBUS_MODE``) or in a TOML file.

Three loaders share one path: ``from_env`` and ``from_file`` build the same
nested mapping that ``from_mapping`` takes.
"""

from __future__ import annotations

import enum
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from ._errors import ConfigurationError
from ._redact import describe, looks_like, redact
from ._sas import ConnectionString, SasTokenError, is_loopback, namespace_identity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

MAX_MESSAGE_ID_LENGTH = 128
# Names accepted for ``credential`` in files and the environment (azure-identity classes).
CREDENTIAL_NAMES = ("default", "managed_identity", "workload_identity", "cli", "environment")


class ReplicationMode(str, enum.Enum):
    """How a send reaches the two namespaces."""

    ACTIVE = "active"
    """Both copies, concurrently, every time."""
    PASSIVE = "passive"
    """The active namespace; the other only when the active one is unavailable (roles swap)."""


class WriteQuorum(str, enum.Enum):
    """In active mode, how many copies must land for a send to succeed."""

    ANY = "any"
    ALL = "all"


class FailbackMode(str, enum.Enum):
    """What passive mode does after a failover: ``stay`` on the new active
    namespace (the seed's rule), or ``prefer_primary``: probe the primary and
    come back to it once it has been healthy for a while."""

    STAY = "stay"
    PREFER_PRIMARY = "prefer_primary"


MIN_LEASE = 3.0  # seconds: a lease is renewed a third of the way in, on a one-second tick


class StoreUnavailable(str, enum.Enum):
    """What a receiver does with a new key while its shared seen-set cannot be reached."""

    DELIVER = "deliver"  # at-least-once: a twin may reach another worker too
    HOLD = "hold"  # keep the copy locked and ask again: no duplicate, but a delay


class DedupKey(str, enum.Enum):
    """What identifies the two copies of one message to the receiver."""

    MESSAGE_ID = "message_id"
    SUBJECT = "subject"
    APPLICATION_PROPERTY = "application_property"


def _enum(cls: type[enum.Enum], field_name: str, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).strip().lower())
    except ValueError:
        choices = " | ".join(str(m.value) for m in cls)
        raise ConfigurationError(field_name, f"must be one of {choices}, got {describe(value)}") from None


# Errors below never quote a value that did not parse: it may be a key pasted into the
# wrong field. ``describe`` says what it looks like instead; a parsed number is shown.


def _positive(field_name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool):  # float(True) is 1.0: "attempt = true" must not mean one second
        raise ConfigurationError(field_name, f"must be a number of seconds, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(field_name, f"must be a number, got {describe(value)}") from None
    if math.isnan(number) or number < 0 or (number == 0 and not allow_zero) or math.isinf(number):
        raise ConfigurationError(field_name, f"must be {'>= 0' if allow_zero else '> 0'}, got {number:g}")
    return number


def _flag(field_name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigurationError(field_name, f"must be true or false, got {describe(value)}")


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file's content.

    Raises:
        OSError: it cannot be read. ValueError: it is not TOML (``TOMLDecodeError``).
    """
    with Path(path).open("rb") as handle:
        return tomllib.load(handle)


def _optional_path(field_name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(field_name, f"must be a file path, got {describe(value)}")
    return value


def _count(field_name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigurationError(field_name, f"must be a whole number, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(field_name, f"must be a whole number, got {describe(value)}") from None
    if number != float(value) or number < minimum:
        raise ConfigurationError(field_name, f"must be a whole number >= {minimum}, got {float(value):g}")
    return number


# -- where a namespace is ----------------------------------------------------------------

_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9.])?)(?::\d{1,5})?")


def _not_a_host(prefix: str, value: object) -> str:
    """Why ``value`` is not a fully qualified namespace, and where it belongs: never the value."""
    looks = describe(value)
    if looks_like(value) == "connection_string":
        return f"got {looks}: put it in {prefix}.connection_string"
    if isinstance(value, str) and "://" in value:
        try:
            host = urlsplit(value.strip()).hostname or ""
        except ValueError:
            host = ""
        if _HOST.fullmatch(host) and "@" not in value:
            return f"got {looks}: give its host name only, {host!r}"
    return f"must be a host name like 'contoso.servicebus.windows.net', got {looks}"


# ServiceBusClient options geobus sets from its own policies (``build_client``).
GEOBUS_CLIENT_OPTIONS = frozenset(
    {"retry_total", "retry_backoff_factor", "retry_backoff_max", "retry_mode", "try_timeout"}
)
# The other ServiceBusClient keyword options (azure-servicebus 7.x); a misspelt one would be
# ignored by the SDK, so a test meant to go through a fault proxy would quietly not.
CLIENT_OPTIONS = frozenset(
    {
        "transport_type",
        "http_proxy",
        "user_agent",
        "logging_enable",
        "custom_endpoint_address",
        "connection_verify",
        "ssl_context",
        "socket_timeout",
        "uamqp_transport",
    }
)


@dataclass(frozen=True)
class NamespaceConfig:
    """One Service Bus namespace: a connection string, or a namespace and a credential.

    ``credential`` is an azure-identity credential object, or one of the names in
    ``CREDENTIAL_NAMES`` (``"default"`` is ``DefaultAzureCredential``), which
    geobus builds as the sync or async class as needed. The repr never shows a key.

    A connection string with ``UseDevelopmentEmulator=true`` (no TLS: SAS tokens and
    messages in plaintext) is accepted for a loopback host only (127.0.0.0/8, ::1,
    ``localhost``) unless ``allow_remote_emulator`` is true.

    ``client_options`` (in code only) go to this namespace's ``ServiceBusClient``
    as they are: ``transport_type``, ``http_proxy``, ``custom_endpoint_address``,
    ``ssl_context`` (``geobus.testing.sdk_proxy_options`` builds the last ones for a
    fault proxy). The retry and timeout options are geobus's and are refused.

    Raises:
        ConfigurationError: neither or both forms given, a malformed connection
            string, a remote host without TLS, or ``client_options`` naming an option
            geobus sets itself. The message never quotes a value that did not parse.
    """

    name: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    fully_qualified_namespace: str | None = None
    credential: Any = field(default=None, repr=False)
    client_options: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)
    allow_remote_emulator: bool = False

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigurationError("name", "a namespace name must be a non-empty string")
        prefix = self.name or "namespace"
        if not isinstance(self.client_options, Mapping):
            raise ConfigurationError(f"{prefix}.client_options", "must be a mapping of ServiceBusClient options")
        owned = sorted(set(self.client_options) & GEOBUS_CLIENT_OPTIONS)
        if owned:
            raise ConfigurationError(
                f"{prefix}.client_options",
                f"{', '.join(owned)} are set by geobus (see deadlines and retry)",
            )
        unknown = sorted(set(self.client_options) - CLIENT_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"{prefix}.client_options",
                f"{', '.join(map(str, unknown))} not among the options geobus passes on: {', '.join(sorted(CLIENT_OPTIONS))}",
            )
        # A copy, read-only: changing the caller's dict later does not reach the SDK client.
        object.__setattr__(self, "client_options", MappingProxyType(dict(self.client_options)))
        object.__setattr__(
            self, "allow_remote_emulator", _flag(f"{prefix}.allow_remote_emulator", self.allow_remote_emulator)
        )
        if self.connection_string is not None:
            if not isinstance(self.connection_string, str):
                raise ConfigurationError(f"{prefix}.connection_string", f"must be a string, got {describe(self.connection_string)}")
            try:
                parsed = ConnectionString.parse(self.connection_string)
            except SasTokenError as exc:
                raise ConfigurationError(f"{prefix}.connection_string", str(exc)) from None
            given = self.fully_qualified_namespace
            tls = not parsed.use_development_emulator
            if self.credential is not None or (
                given
                and namespace_identity(str(given), tls=tls)
                != namespace_identity(parsed.fully_qualified_namespace, tls=tls)
            ):
                raise ConfigurationError(
                    prefix,
                    "give a connection_string, or fully_qualified_namespace with a credential, not both",
                )
            object.__setattr__(self, "fully_qualified_namespace", parsed.fully_qualified_namespace)
            if not tls:
                self._check_plaintext(prefix, parsed.fully_qualified_namespace)
            return
        if not self.fully_qualified_namespace:
            raise ConfigurationError(
                prefix, "needs a connection_string, or fully_qualified_namespace with a credential"
            )
        if not isinstance(self.fully_qualified_namespace, str) or not _HOST.fullmatch(self.fully_qualified_namespace):
            raise ConfigurationError(
                f"{prefix}.fully_qualified_namespace", _not_a_host(prefix, self.fully_qualified_namespace)
            )
        if self.credential is None:
            raise ConfigurationError(f"{prefix}.credential", "a fully_qualified_namespace needs a credential")
        if isinstance(self.credential, str) and self.credential not in CREDENTIAL_NAMES:
            looks = describe(self.credential)
            where = f"; a key belongs in {prefix}.connection_string" if looks_like(self.credential) else ""
            raise ConfigurationError(
                f"{prefix}.credential",
                f"must be an azure-identity credential or one of {' | '.join(CREDENTIAL_NAMES)}, got {looks}{where}",
            )

    def _check_plaintext(self, prefix: str, namespace: str) -> None:
        """Refuse a remote host for a connection without TLS, unless allowed.

        Where the SDK connects: the Endpoint's host, or ``custom_endpoint_address``'s."""
        if self.allow_remote_emulator:
            return
        hosts = [namespace_identity(namespace, tls=True)[0]]
        custom = self.client_options.get("custom_endpoint_address")
        if custom is not None:
            hosts.append(namespace_identity(str(custom), tls=True)[0])
        remote = [host for host in hosts if not is_loopback(host)]
        if remote:
            raise ConfigurationError(
                f"{prefix}.connection_string",
                f"UseDevelopmentEmulator=true turns TLS off: SAS tokens and every message would cross the "
                f"network in plaintext to {remote[0]!r}. It is accepted for a loopback host only "
                f"(127.0.0.0/8, ::1, localhost); set {prefix}.allow_remote_emulator = true to accept the risk",
            )

    def __repr__(self) -> str:
        how = "connection_string=***" if self.connection_string else f"credential={_credential_label(self.credential)}"
        remote = ", allow_remote_emulator=True" if self.allow_remote_emulator else ""
        return f"NamespaceConfig(name={self.name!r}, namespace={self.fully_qualified_namespace!r}, {how}{remote})"


def _identity(namespace: NamespaceConfig) -> tuple[str, int | None]:
    """Which namespace ``namespace`` reaches (``namespace_identity``): two configs with one
    identity are the same namespace, however their addresses are written."""
    assert namespace.fully_qualified_namespace is not None  # checked in __post_init__
    tls = True
    if namespace.connection_string is not None:
        tls = not ConnectionString.parse(namespace.connection_string).use_development_emulator
    return namespace_identity(namespace.fully_qualified_namespace, tls=tls)


def _credential_label(credential: Any) -> str:
    if credential is None or isinstance(credential, str):
        return repr(credential)
    return type(credential).__name__


@dataclass(frozen=True)
class Deadlines:
    """geobus's own time limits, in seconds. The SDK's are set inside them.

    ``attempt``: one namespace's share of a send. ``send``: the whole
    ``send_messages`` call, failover included. ``receive_stall``: a namespace
    whose receive call has not returned this long after its wait time is
    treated as stalled, and the receiver reconnects it without stopping the other.
    """

    attempt: float = 5.0
    send: float = 10.0
    receive_stall: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _positive(f"deadlines.{f.name}", getattr(self, f.name)))
        if self.send < self.attempt:
            raise ConfigurationError("deadlines.send", f"must be >= deadlines.attempt ({self.attempt:g})")


@dataclass(frozen=True)
class SdkRetryPolicy:
    """The retry settings geobus gives the azure-servicebus clients it builds.

    Kept small on purpose: in passive mode the failover is the retry, and every
    SDK retry is time the caller waits inside ``deadlines.attempt``.
    """

    total: int = 1
    backoff_factor: float = 0.2
    backoff_max: float = 1.0
    mode: str = "fixed"

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", _count("retry.total", self.total, minimum=0))
        object.__setattr__(
            self, "backoff_factor", _positive("retry.backoff_factor", self.backoff_factor, allow_zero=True)
        )
        object.__setattr__(self, "backoff_max", _positive("retry.backoff_max", self.backoff_max, allow_zero=True))
        if self.mode not in ("fixed", "exponential"):
            raise ConfigurationError("retry.mode", f"must be one of fixed | exponential, got {describe(self.mode)}")


@dataclass(frozen=True)
class DedupPolicy:
    """How the receiver recognises the copies of one message, and how much it remembers.

    ``key``: ``message_id`` (default), ``subject``, or ``application_property``
    with ``property_name``. ``max_entries`` and ``max_age`` (seconds) bound the
    set of keys already processed; keys whose message is being processed are
    never evicted.

    ``store`` is where the processed and in-flight keys live: ``memory`` (this
    process only), ``sqlite:PATH`` (processes on one host; survives a restart) or
    ``redis://[:password@]host:port/db`` (a fleet of workers). With a shared store
    a worker takes a key for ``lease`` seconds, renewed while the application holds
    the message; a dead worker's keys are free again when their lease runs out.
    ``store_unavailable``: ``deliver`` (default; at-least-once while the store is
    down) or ``hold`` (keep the copy locked and ask again). The repr hides a
    password in the store URL.
    """

    key: DedupKey = DedupKey.MESSAGE_ID
    property_name: str | None = None
    max_entries: int = 100_000
    max_age: float = 3600.0
    store: str = field(default="memory", repr=False)
    lease: float = 30.0
    store_unavailable: StoreUnavailable = StoreUnavailable.DELIVER

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _enum(DedupKey, "dedup.key", self.key))
        object.__setattr__(self, "max_entries", _count("dedup.max_entries", self.max_entries, minimum=1))
        object.__setattr__(self, "max_age", _positive("dedup.max_age", self.max_age))
        object.__setattr__(self, "lease", _positive("dedup.lease", self.lease))
        if self.lease < MIN_LEASE:  # renewed every third of it, checked about every second
            raise ConfigurationError("dedup.lease", f"must be at least {MIN_LEASE:g} s, got {self.lease:g}")
        object.__setattr__(
            self, "store_unavailable", _enum(StoreUnavailable, "dedup.store_unavailable", self.store_unavailable)
        )
        if self.key == DedupKey.APPLICATION_PROPERTY and not self.property_name:
            raise ConfigurationError("dedup.property_name", "key application_property needs a property_name")
        if not isinstance(self.store, str) or not (
            self.store == "memory"
            or (self.store.startswith("sqlite:") and len(self.store) > len("sqlite:"))
            or self.store.startswith(("redis://", "rediss://"))
        ):
            raise ConfigurationError("dedup.store", _not_a_store(self.store))

    def __repr__(self) -> str:
        return (
            f"DedupPolicy(key={self.key.value!r}, property_name={self.property_name!r}, "
            f"max_entries={self.max_entries}, max_age={self.max_age}, store={redact(self.store)!r}, "
            f"lease={self.lease}, store_unavailable={self.store_unavailable.value!r})"
        )


def _not_a_store(store: object) -> str:
    looks = describe(store)
    problem = f"must be memory, sqlite:PATH or redis://host:port/db, got {looks}"
    if looks_like(store) == "redis_portal":
        host = str(store).split(",", 1)[0].strip()
        host = host if _HOST.fullmatch(host) else "HOST:PORT"
        # Said in pieces: a whole URL with ":PASSWORD@" in it is masked on its way out.
        problem += f"; write it as a URL: rediss:// (ssl=True), then :PASSWORD@, then {host}/0"
    return problem


@dataclass(frozen=True)
class BreakerPolicy:
    """The per-namespace circuit breaker.

    After ``failure_threshold`` availability errors in a row the namespace's
    breaker opens: sends skip it at once, without waiting for a timeout. After
    ``cooldown`` seconds one call is let through (half-open); its success closes
    the breaker, its failure opens it for another ``cooldown``.
    """

    failure_threshold: int = 3
    cooldown: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "failure_threshold", _count("breaker.failure_threshold", self.failure_threshold, minimum=1)
        )
        object.__setattr__(self, "cooldown", _positive("breaker.cooldown", self.cooldown))


@dataclass(frozen=True)
class FailbackPolicy:
    """Passive mode's way home after a failover.

    ``mode``: ``stay`` or ``prefer_primary``. With ``prefer_primary`` the client
    probes the primary every ``probe_interval`` seconds while the secondary is
    active and fails back after ``healthy_probes`` good probes in a row — but
    never sooner than ``cooldown`` seconds after the last swap, so a flapping
    primary cannot make the traffic flap with it.
    """

    mode: FailbackMode = FailbackMode.STAY
    probe_interval: float = 5.0
    healthy_probes: int = 3
    cooldown: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", _enum(FailbackMode, "failback.mode", self.mode))
        object.__setattr__(self, "probe_interval", _positive("failback.probe_interval", self.probe_interval))
        object.__setattr__(self, "healthy_probes", _count("failback.healthy_probes", self.healthy_probes, minimum=1))
        object.__setattr__(self, "cooldown", _positive("failback.cooldown", self.cooldown, allow_zero=True))


@dataclass(frozen=True)
class OutboxPolicy:
    """The durable client-side outbox (off unless ``path`` is set).

    ``path``: the SQLite file. ``max_messages`` / ``max_bytes``: when either
    would be exceeded, ``send_messages`` raises ``OutboxFullError`` instead of
    buffering. ``batch_size``: messages per drain send. ``backoff_initial`` /
    ``backoff_max``: the drainer's exponential backoff (seconds, jittered)
    while a namespace stays down.
    """

    path: str | None = None
    max_messages: int = 100_000
    max_bytes: int = 256 * 1024 * 1024
    batch_size: int = 100
    backoff_initial: float = 0.2
    backoff_max: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _optional_path("outbox.path", self.path))
        object.__setattr__(self, "max_messages", _count("outbox.max_messages", self.max_messages, minimum=1))
        object.__setattr__(self, "max_bytes", _count("outbox.max_bytes", self.max_bytes, minimum=1))
        object.__setattr__(self, "batch_size", _count("outbox.batch_size", self.batch_size, minimum=1))
        object.__setattr__(self, "backoff_initial", _positive("outbox.backoff_initial", self.backoff_initial))
        object.__setattr__(self, "backoff_max", _positive("outbox.backoff_max", self.backoff_max))
        if self.backoff_max < self.backoff_initial:
            raise ConfigurationError("outbox.backoff_max", f"must be >= outbox.backoff_initial ({self.backoff_initial:g})")

    @property
    def enabled(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class OverridePolicy:
    """The operator's override file (off unless ``path`` is set).

    A TOML file, re-read when it changes (checked at most every ``interval``
    seconds, without restarting the process)::

        active = "secondary"      # force passive mode's active namespace
        paused = ["primary"]      # send nothing to these namespaces

    A missing file means no override; a file that cannot be read is logged and
    the last good override stays in force.
    """

    path: str | None = None
    interval: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _optional_path("override.path", self.path))
        object.__setattr__(self, "interval", _positive("override.interval", self.interval))


@dataclass(frozen=True)
class ReplicationConfig:
    """Everything a ``GeoServiceBusClient`` needs.

    Raises:
        ConfigurationError: a field is missing or invalid (the message names it).
    """

    primary: NamespaceConfig
    secondary: NamespaceConfig
    mode: ReplicationMode = ReplicationMode.PASSIVE
    write_quorum: WriteQuorum = WriteQuorum.ANY
    deadlines: Deadlines = field(default_factory=Deadlines)
    retry: SdkRetryPolicy = field(default_factory=SdkRetryPolicy)
    dedup: DedupPolicy = field(default_factory=DedupPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    failback: FailbackPolicy = field(default_factory=FailbackPolicy)
    outbox: OutboxPolicy = field(default_factory=OutboxPolicy)
    override: OverridePolicy = field(default_factory=OverridePolicy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", _enum(ReplicationMode, "mode", self.mode))
        object.__setattr__(self, "write_quorum", _enum(WriteQuorum, "write_quorum", self.write_quorum))
        for role in ("primary", "secondary"):
            namespace = getattr(self, role)
            if not isinstance(namespace, NamespaceConfig):
                raise ConfigurationError(role, "must be a NamespaceConfig")
            if namespace.name is None:
                object.__setattr__(self, role, replace(namespace, name=role))
        if self.primary.name == self.secondary.name:
            raise ConfigurationError("secondary.name", f"both namespaces are named {self.primary.name!r}")
        if _identity(self.primary) == _identity(self.secondary):
            raise ConfigurationError(
                "secondary",
                f"primary and secondary are the same namespace ({self.secondary.fully_qualified_namespace}); "
                "geobus needs two",
            )

    @property
    def namespaces(self) -> tuple[NamespaceConfig, NamespaceConfig]:
        return (self.primary, self.secondary)

    # -- loaders -----------------------------------------------------------------

    @classmethod
    def from_connection_strings(cls, primary: str, secondary: str, **options: Any) -> ReplicationConfig:
        """Two connection strings; ``options`` are the other fields (``mode="active"``...)."""
        # Named here, so an error says which one is wrong (``secondary.connection_string``).
        return cls(
            primary=NamespaceConfig(name="primary", connection_string=primary),
            secondary=NamespaceConfig(name="secondary", connection_string=secondary),
            **options,
        )

    @classmethod
    def from_namespaces(cls, primary: str, secondary: str, credential: Any, **options: Any) -> ReplicationConfig:
        """Two fully qualified namespaces and one azure-identity credential."""
        return cls(
            primary=NamespaceConfig(name="primary", fully_qualified_namespace=primary, credential=credential),
            secondary=NamespaceConfig(
                name="secondary", fully_qualified_namespace=secondary, credential=credential
            ),
            **options,
        )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ReplicationConfig:
        """Build from a nested mapping (the shape of the TOML file).

        Raises:
            ConfigurationError: an unknown key, a missing namespace or a bad value.
        """
        data = dict(mapping)
        _reject_unknown("", data, {"mode", "write_quorum", "primary", "secondary", *_POLICIES})
        namespaces = []
        for role in ("primary", "secondary"):
            section = data.get(role)
            if not isinstance(section, Mapping):
                raise ConfigurationError(role, "is missing (a table with connection_string, or fully_qualified_namespace and credential)")
            _reject_unknown(role, section, {"name", *_NAMESPACE_KEYS})
            namespaces.append(NamespaceConfig(**{"name": role, **section}))
        options: dict[str, Any] = {}
        for name in ("mode", "write_quorum"):
            if name in data:
                options[name] = data[name]
        for name, policy in _POLICIES.items():
            section = data.get(name)
            if section is None:
                continue
            if not isinstance(section, Mapping):
                raise ConfigurationError(name, "must be a table")
            _reject_unknown(name, section, {f.name for f in fields(policy)})
            options[name] = policy(**section)
        return cls(primary=namespaces[0], secondary=namespaces[1], **options)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ReplicationConfig:
        """Read a TOML file (see the README's configuration reference).

        Raises:
            ConfigurationError: the file is missing, not TOML, or has a bad value.
        """
        try:
            data = read_toml(path)
        except FileNotFoundError:
            raise ConfigurationError("file", f"{os.fspath(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError("file", f"{os.fspath(path)!r} is not valid TOML: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReplicationConfig:
        """Read ``GEOBUS_*`` variables (see the README's configuration reference).

        Raises:
            ConfigurationError: a variable is missing or has a bad value.
        """
        env = os.environ if environ is None else environ
        known = _known_env_names()
        for variable in env:
            if not variable.startswith("GEOBUS_") or variable.startswith("GEOBUS_LOCAL_"):
                continue
            # A misspelt GEOBUS_OUTBOX_PTH, or GEOBUS_OUTBOX_PATH='', must not quietly mean "no outbox".
            if variable not in known:
                raise ConfigurationError(variable, "unknown geobus environment variable (see the README's configuration reference)")
            if not env[variable].strip():
                raise ConfigurationError(variable, "is set but empty: unset it to use the default")
        data: dict[str, Any] = {}
        for key, variable in (("mode", "GEOBUS_MODE"), ("write_quorum", "GEOBUS_WRITE_QUORUM")):
            if variable in env:
                data[key] = env[variable]
        for role in ("primary", "secondary"):
            upper = role.upper()
            section = {
                key: env[f"GEOBUS_{upper}_{suffix}"]
                for key, suffix in _NAMESPACE_KEYS.items()
                if f"GEOBUS_{upper}_{suffix}" in env
            }
            if "fully_qualified_namespace" in section:
                section.setdefault("credential", "default")
            data[role] = section
        for section_name, prefix, keys in _ENV_POLICIES:
            section = {key: env[f"{prefix}{key.upper()}"] for key in keys if f"{prefix}{key.upper()}" in env}
            if section:
                data[section_name] = section
        return cls.from_mapping(data)


# A namespace's settings in files and mappings, and the suffix of their GEOBUS_PRIMARY_* /
# GEOBUS_SECONDARY_* variables.
_NAMESPACE_KEYS = {
    "connection_string": "CONNECTION_STRING",
    "fully_qualified_namespace": "NAMESPACE",
    "credential": "CREDENTIAL",
    "allow_remote_emulator": "ALLOW_REMOTE_EMULATOR",
}


_ENV_POLICIES = (
    ("deadlines", "GEOBUS_DEADLINE_", ("attempt", "send", "receive_stall")),
    ("retry", "GEOBUS_RETRY_", ("total", "backoff_factor", "backoff_max", "mode")),
    ("dedup", "GEOBUS_DEDUP_", ("key", "property_name", "max_entries", "max_age", "store", "lease", "store_unavailable")),
    ("breaker", "GEOBUS_BREAKER_", ("failure_threshold", "cooldown")),
    ("failback", "GEOBUS_FAILBACK_", ("mode", "probe_interval", "healthy_probes", "cooldown")),
    ("outbox", "GEOBUS_OUTBOX_", ("path", "max_messages", "max_bytes", "batch_size", "backoff_initial", "backoff_max")),
    ("override", "GEOBUS_OVERRIDE_", ("path", "interval")),
)

_POLICIES: dict[str, type] = {
    "deadlines": Deadlines,
    "retry": SdkRetryPolicy,
    "dedup": DedupPolicy,
    "breaker": BreakerPolicy,
    "failback": FailbackPolicy,
    "outbox": OutboxPolicy,
    "override": OverridePolicy,
}


def _known_env_names() -> set[str]:
    names = {"GEOBUS_MODE", "GEOBUS_WRITE_QUORUM"}
    for role in ("PRIMARY", "SECONDARY"):
        names |= {f"GEOBUS_{role}_{suffix}" for suffix in _NAMESPACE_KEYS.values()}
    for _, prefix, keys in _ENV_POLICIES:
        names |= {f"{prefix}{key.upper()}" for key in keys}
    return names


def _reject_unknown(prefix: str, section: Mapping[str, Any], known: set[str]) -> None:
    for key in section:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigurationError(where, f"unknown setting (known: {', '.join(sorted(known))})")
