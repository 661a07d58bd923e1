"""The policies: one frozen dataclass per table of settings (``[deadlines]``, ``[dedup]``...).

Each field is declared with its check (``checks.seconds``, ``checks.count``...); a
policy's ``_prefix`` is its table in files and the start of its names in errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigurationError
from .._redact import describe, looks_like, redact
from .._sas import is_host
from .checks import Checked, checked, choice, count, optional_path, positive, seconds
from .choices import DedupKey, FailbackMode, StoreUnavailable

MAX_MESSAGE_ID_LENGTH = 128
MIN_LEASE = 3.0  # seconds: a lease is renewed a third of the way in, on a one-second tick


@dataclass(frozen=True)
class Deadlines(Checked):
    """geobus's own time limits, in seconds. The SDK's are set inside them.

    ``attempt``: one namespace's share of a send. ``send``: the whole
    ``send_messages`` call, failover included. ``receive_stall``: a namespace
    whose receive call has not returned this long after its wait time is
    treated as stalled, and the receiver reconnects it without stopping the other.
    """

    _prefix = "deadlines"
    _at_least = (("send", "attempt"),)

    attempt: float = field(default=5.0, metadata=seconds())
    send: float = field(default=10.0, metadata=seconds())
    receive_stall: float = field(default=10.0, metadata=seconds())


def _retry_mode(name: str, value: Any) -> str:
    value = getattr(value, "value", value)  # the SDK's RetryMode.FIXED is "fixed"
    if value not in ("fixed", "exponential"):
        raise ConfigurationError(name, f"must be one of fixed | exponential, got {describe(value)}")
    return str(value)


@dataclass(frozen=True)
class SdkRetryPolicy(Checked):
    """The retry settings geobus gives the azure-servicebus clients it builds.

    Kept small on purpose: in passive mode the failover is the retry, and every
    SDK retry is time the caller waits inside ``deadlines.attempt``.
    """

    _prefix = "retry"

    total: int = field(default=1, metadata=count(minimum=0))
    backoff_factor: float = field(default=0.2, metadata=seconds(allow_zero=True))
    backoff_max: float = field(default=1.0, metadata=seconds(allow_zero=True))
    mode: str = field(default="fixed", metadata=checked(_retry_mode))


def _lease(name: str, value: Any) -> float:
    lease = positive(name, value)
    if lease < MIN_LEASE:  # renewed every third of it, checked about every second
        raise ConfigurationError(name, f"must be at least {MIN_LEASE:g} s, got {lease:g}")
    return lease


def _store(name: str, store: Any) -> str:
    if isinstance(store, str) and (
        store == "memory"
        or (store.startswith("sqlite:") and len(store) > len("sqlite:"))
        or store.startswith(("redis://", "rediss://"))
    ):
        return store
    problem = f"must be memory, sqlite:PATH or redis://host:port/db, got {describe(store)}"
    if looks_like(store) == "redis_portal":
        host = str(store).split(",", 1)[0].strip()
        host = host if is_host(host) else "HOST:PORT"
        # Said in pieces: a whole URL with ":PASSWORD@" in it is masked on its way out.
        problem += f"; write it as a URL: rediss:// (ssl=True), then :PASSWORD@, then {host}/0"
    raise ConfigurationError(name, problem)


@dataclass(frozen=True)
class DedupPolicy(Checked):
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

    _prefix = "dedup"

    key: DedupKey = field(default=DedupKey.MESSAGE_ID, metadata=choice(DedupKey))
    property_name: str | None = None
    max_entries: int = field(default=100_000, metadata=count())
    max_age: float = field(default=3600.0, metadata=seconds())
    store: str = field(default="memory", repr=False, metadata=checked(_store))
    lease: float = field(default=30.0, metadata=checked(_lease))
    store_unavailable: StoreUnavailable = field(default=StoreUnavailable.DELIVER, metadata=choice(StoreUnavailable))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.key == DedupKey.APPLICATION_PROPERTY and not self.property_name:
            raise ConfigurationError("dedup.property_name", "key application_property needs a property_name")

    def __repr__(self) -> str:
        return (
            f"DedupPolicy(key={self.key.value!r}, property_name={self.property_name!r}, "
            f"max_entries={self.max_entries}, max_age={self.max_age}, store={redact(self.store)!r}, "
            f"lease={self.lease}, store_unavailable={self.store_unavailable.value!r})"
        )


@dataclass(frozen=True)
class BreakerPolicy(Checked):
    """The per-namespace circuit breaker.

    After ``failure_threshold`` availability errors in a row the namespace's
    breaker opens: sends skip it at once, without waiting for a timeout. After
    ``cooldown`` seconds one call is let through (half-open); its success closes
    the breaker, its failure opens it for another ``cooldown``.
    """

    _prefix = "breaker"

    failure_threshold: int = field(default=3, metadata=count())
    cooldown: float = field(default=10.0, metadata=seconds())


@dataclass(frozen=True)
class FailbackPolicy(Checked):
    """Passive mode's way home after a failover.

    ``mode``: ``stay`` or ``prefer_primary``. With ``prefer_primary`` the client
    probes the primary every ``probe_interval`` seconds while the secondary is
    active and fails back after ``healthy_probes`` good probes in a row — but
    never sooner than ``cooldown`` seconds after the last swap, so a flapping
    primary cannot make the traffic flap with it.
    """

    _prefix = "failback"

    mode: FailbackMode = field(default=FailbackMode.STAY, metadata=choice(FailbackMode))
    probe_interval: float = field(default=5.0, metadata=seconds())
    healthy_probes: int = field(default=3, metadata=count())
    cooldown: float = field(default=60.0, metadata=seconds(allow_zero=True))


@dataclass(frozen=True)
class OutboxPolicy(Checked):
    """The durable client-side outbox (off unless ``path`` is set).

    ``path``: the SQLite file. ``max_messages`` / ``max_bytes``: when either
    would be exceeded, ``send_messages`` raises ``OutboxFullError`` instead of
    buffering. ``batch_size``: messages per drain send. ``backoff_initial`` /
    ``backoff_max``: the drainer's exponential backoff (seconds, jittered)
    while a namespace stays down.
    """

    _prefix = "outbox"
    _at_least = (("backoff_max", "backoff_initial"),)

    path: str | None = field(default=None, metadata=checked(optional_path))
    max_messages: int = field(default=100_000, metadata=count())
    max_bytes: int = field(default=256 * 1024 * 1024, metadata=count())
    batch_size: int = field(default=100, metadata=count())
    backoff_initial: float = field(default=0.2, metadata=seconds())
    backoff_max: float = field(default=10.0, metadata=seconds())

    @property
    def enabled(self) -> bool:
        """Whether sends may be buffered: ``path`` is set."""
        return self.path is not None


@dataclass(frozen=True)
class OverridePolicy(Checked):
    """The operator's override file (off unless ``path`` is set).

    A TOML file, re-read when it changes (checked at most every ``interval``
    seconds, without restarting the process)::

        active = "secondary"      # force passive mode's active namespace
        paused = ["primary"]      # send nothing to these namespaces

    A missing file means no override; a file that cannot be read is logged and
    the last good override stays in force.
    """

    _prefix = "override"

    path: str | None = field(default=None, metadata=checked(optional_path))
    interval: float = field(default=2.0, metadata=seconds())
