"""OpenTelemetry metrics for geobus senders and receivers (``pip install 'geobus[otel]'``).

When ``opentelemetry-api`` is importable, the first sender or receiver a
``GeoServiceBusClient`` hands out registers geobus's instruments on the global
meter provider, under the meter ``geobus`` (version: geobus's). Call
``enable_metrics(meter_provider=...)`` to report to another provider instead,
and ``disable_metrics()`` to stop. Without opentelemetry, nothing is imported,
nothing is kept and ``enable_metrics`` returns False.

Every instrument is observable: at each collection its callback reads the
``stats`` snapshot of every live sender and receiver (and the ``session_stats``
of every session receiver, for the ``session_`` ones), so sending and receiving
pay nothing for metrics. Counters are cumulative for the process: what a closed
sender or receiver counted stays in the totals.

| Instrument | Kind | Unit | Attributes | Value |
|---|---|---|---|---|
| `geobus.sender.active_namespace` | gauge | `1` | ns, dest | 1 for the namespace passive mode sends to first, 0 for the other |
| `geobus.sender.messages` | counter | `{message}` | ns, dest | messages the namespace stored (sends and outbox drains) |
| `geobus.sender.failures` | counter | `{attempt}` | ns, dest | send attempts to the namespace that failed |
| `geobus.sender.failovers` | counter | `{failover}` | dest | times passive mode moved to the other namespace |
| `geobus.sender.failbacks` | counter | `{failback}` | (none) | times passive mode came back to the primary (per client) |
| `geobus.sender.partial_writes` | counter | `{send}` | dest | active-mode sends stored on one namespace only |
| `geobus.outbox.depth` | updowncounter | `{message}` | dest | copies waiting in the outbox |
| `geobus.outbox.oldest_age` | gauge | `s` | dest | how long the oldest waiting copy has waited; no point while none waits |
| `geobus.outbox.buffered` | counter | `{message}` | dest | messages accepted into the outbox |
| `geobus.outbox.drained` | counter | `{message}` | dest | copies sent from the outbox |
| `geobus.outbox.dead_lettered` | counter | `{message}` | dest | copies moved to the outbox's dead letters (refused for good, expired, unreadable) |
| `geobus.receiver.received` | counter | `{message}` | ns, dest | copies received from the namespace |
| `geobus.receiver.delivered` | counter | `{message}` | dest | messages handed to the application |
| `geobus.receiver.duplicates_absorbed` | counter | `{message}` | dest | copies settled without reaching the application |
| `geobus.receiver.held` | updowncounter | `{message}` | dest | copies held until their twin is settled |
| `geobus.receiver.in_flight` | updowncounter | `{message}` | dest | messages the application holds unsettled |
| `geobus.receiver.evictions` | counter | `{key}` | dest | keys the seen-set dropped to stay within its bounds |
| `geobus.receiver.receive_errors` | counter | `{error}` | ns, dest | failed receive calls (each one reconnects) |
| `geobus.receiver.lag` | gauge | `s` | ns, dest | enqueued-to-received time of the newest message from the namespace |
| `geobus.receiver.session_gaps` | counter | `{gap}` | dest | session receivers: producers' gaps delivered past after their wait |
| `geobus.receiver.session_gap_messages` | counter | `{message}` | dest | session receivers: the messages those gaps skipped |
| `geobus.receiver.session_out_of_order` | counter | `{message}` | dest | session receivers: messages delivered after later ones of their producer |

Attributes: every point has ``messaging.system`` = ``servicebus``; *ns* is
``geobus.namespace`` (the namespace's name in the configuration, ``primary`` and
``secondary`` by default); *dest* is ``messaging.destination.name`` (the queue or
topic) and, for a subscription's receiver, ``messaging.destination.subscription.name``.
Senders and receivers of one destination in one process add up; a gauge reports
the largest value among them.

The callbacks run on the exporter's thread and take an in-memory snapshot of
each sender and receiver (never their files, never the network).
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

_LOG = logging.getLogger("geobus")

NAMESPACE = "geobus.namespace"
DESTINATION = "messaging.destination.name"
SUBSCRIPTION = "messaging.destination.subscription.name"
_SYSTEM = ("messaging.system", "servicebus")

Attrs = tuple[tuple[str, str], ...]  # sorted: hashable and comparable
Reading = tuple[int, Attrs, float]  # (source token, attributes, value)

COUNTER, UPDOWN, GAUGE = "counter", "updowncounter", "gauge"
SENDER, RECEIVER = "sender", "receiver"


@dataclass(frozen=True)
class _Watched:
    """A registered sender or receiver: its attributes and the tokens of what it reads.

    ``token`` names the object itself; ``health`` and ``outbox`` name what it shares
    with the other senders of its client, so a shared count is read once.
    """

    role: str
    token: int
    base: Attrs
    health: int = 0
    outbox: int = 0

    def at(self, namespace: str | None = None) -> Attrs:
        return self.base if namespace is None else tuple(sorted((*self.base, (NAMESPACE, namespace))))

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(t for t in (self.token, self.health, self.outbox) if t)


Read = Callable[[_Watched, Any], list[Reading]]  # (what is watched, its stats) -> its readings


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str
    unit: str
    description: str
    role: str
    read: Read
    snapshot: str = "stats"  # the property read: a session receiver's order counters are its session_stats


def _each(watched: _Watched, token: int, values: Mapping[str, float | None]) -> list[Reading]:
    return [(token, watched.at(name), value) for name, value in values.items() if value is not None]


def _one(token: int, attrs: Attrs, value: float | None) -> list[Reading]:
    return [] if value is None or not token else [(token, attrs, value)]


def _per_namespace(stat: str) -> Read:
    """The stats field ``stat``, a mapping of namespace to value: one point per namespace."""
    return lambda w, s: _each(w, w.token, getattr(s, stat))


# Whose count a total is, so a count shared by several senders is read once: the sender's or
# receiver's own, its client's (no destination: passive mode's state is per client), its
# outbox's, or its own count of what went through an outbox (none without one).
_SOURCES: dict[str, Callable[[_Watched], tuple[int, Attrs]]] = {
    "own": lambda w: (w.token, w.base),
    "client": lambda w: (w.health, (_SYSTEM,)),
    "outbox": lambda w: (w.outbox, w.base),
    "own_outbox": lambda w: (w.token if w.outbox else 0, w.base),
}


def _total(stat: str, source: str = "own") -> Read:
    """The stats field ``stat``, one number: one point, counted once per ``source``."""
    find = _SOURCES[source]
    return lambda w, s: _one(*find(w), getattr(s, stat))


def _active(w: _Watched, s: Any) -> list[Reading]:
    return _each(w, w.token, {n: float(n == s.active_namespace) for n in s.messages_sent})


# (name, kind, unit, description, role, read): the table in the docstring, as code.
_SPECS = tuple(
    _Spec(*row)
    for row in (
        ("geobus.sender.active_namespace", GAUGE, "1", "1 for the namespace passive mode sends to first, 0 for the other", SENDER, _active),
        ("geobus.sender.messages", COUNTER, "{message}", "Messages a namespace stored (sends and outbox drains)", SENDER, _per_namespace("messages_sent")),
        ("geobus.sender.failures", COUNTER, "{attempt}", "Send attempts to a namespace that failed", SENDER, _per_namespace("send_failures")),
        ("geobus.sender.failovers", COUNTER, "{failover}", "Times passive mode moved to the other namespace", SENDER, _total("failovers")),
        ("geobus.sender.failbacks", COUNTER, "{failback}", "Times passive mode came back to the primary", SENDER, _total("failbacks", "client")),
        ("geobus.sender.partial_writes", COUNTER, "{send}", "Active-mode sends stored on one namespace only", SENDER, _total("partial_writes")),
        ("geobus.outbox.depth", UPDOWN, "{message}", "Copies waiting in the outbox", SENDER, _total("outbox_depth", "outbox")),
        ("geobus.outbox.oldest_age", GAUGE, "s", "How long the oldest copy in the outbox has waited", SENDER, _total("outbox_oldest_age", "outbox")),
        ("geobus.outbox.buffered", COUNTER, "{message}", "Messages accepted into the outbox", SENDER, _total("buffered", "own_outbox")),
        ("geobus.outbox.drained", COUNTER, "{message}", "Copies sent from the outbox", SENDER, _total("drained", "own_outbox")),
        ("geobus.outbox.dead_lettered", COUNTER, "{message}", "Copies moved to the outbox's dead letters (refused for good, expired, unreadable)", SENDER, _total("outbox_dead_lettered", "outbox")),
        ("geobus.receiver.received", COUNTER, "{message}", "Copies received from a namespace", RECEIVER, _per_namespace("received")),
        ("geobus.receiver.delivered", COUNTER, "{message}", "Messages handed to the application", RECEIVER, _total("delivered")),
        ("geobus.receiver.duplicates_absorbed", COUNTER, "{message}", "Copies settled without reaching the application", RECEIVER, _total("duplicates_absorbed")),
        ("geobus.receiver.held", UPDOWN, "{message}", "Copies held until their twin is settled", RECEIVER, _total("held")),
        ("geobus.receiver.in_flight", UPDOWN, "{message}", "Messages the application holds unsettled", RECEIVER, _total("in_flight")),
        ("geobus.receiver.evictions", COUNTER, "{key}", "Keys the seen-set dropped to stay in bounds", RECEIVER, _total("evictions")),
        ("geobus.receiver.receive_errors", COUNTER, "{error}", "Failed receive calls (each reconnects)", RECEIVER, _per_namespace("receive_errors")),
        ("geobus.receiver.lag", GAUGE, "s", "Enqueued-to-received time of the newest message from a namespace", RECEIVER, _per_namespace("receive_lag")),
        ("geobus.receiver.session_gaps", COUNTER, "{gap}", "Producers' gaps in a session delivered past after their wait", RECEIVER, _total("gaps"), "session_stats"),
        ("geobus.receiver.session_gap_messages", COUNTER, "{message}", "Session messages skipped by the gaps delivered past", RECEIVER, _total("gap_messages"), "session_stats"),
        ("geobus.receiver.session_out_of_order", COUNTER, "{message}", "Session messages delivered after later ones of their producer", RECEIVER, _total("out_of_order"), "session_stats"),
    )
)  # fmt: skip
INSTRUMENTS = tuple(spec.name for spec in _SPECS)


class _Ledger:
    """One counter's cumulative totals, which outlive the objects they were read from.

    The last reading of each (source, attributes) is kept; once its source is gone
    (closed, or collected) the reading moves to the retired totals for good.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[int, Attrs], float] = {}
        self._retired: dict[Attrs, float] = {}

    def record(self, readings: Mapping[tuple[int, Attrs], float]) -> None:
        self._last.update(readings)

    def totals(self, live: set[int]) -> dict[Attrs, float]:
        for key in [key for key in self._last if key[0] not in live]:
            self._retired[key[1]] = self._retired.get(key[1], 0) + self._last.pop(key)
        totals = dict(self._retired)
        for (_, attrs), value in self._last.items():
            totals[attrs] = totals.get(attrs, 0) + value
        return totals


class _Binding:
    """geobus's instruments on one meter provider (None: the global one)."""

    def __init__(self, provider: MeterProvider | None) -> None:
        from opentelemetry import metrics

        self.provider = provider  # held: its id() keys the binding
        self.active = True
        self._observation = metrics.Observation
        self._ledgers = {spec.name: _Ledger() for spec in _SPECS if spec.kind == COUNTER}
        meter = metrics.get_meter("geobus", __version__, meter_provider=provider)
        create = {
            COUNTER: meter.create_observable_counter,
            UPDOWN: meter.create_observable_up_down_counter,
            GAUGE: meter.create_observable_gauge,
        }
        for spec in _SPECS:
            create[spec.kind](
                spec.name,
                callbacks=[functools.partial(self._observe, spec)],
                unit=spec.unit,
                description=spec.description,
            )

    def _observe(self, spec: _Spec, options: CallbackOptions) -> Iterable[Observation]:
        with _LOCK:
            if not self.active:
                return []
            readings, live = _read(spec, _watched_now())
            if spec.kind == COUNTER:
                ledger = self._ledgers[spec.name]
                ledger.record(readings)
                totals = ledger.totals(live)
            else:
                totals = {}
                for (_, attrs), value in readings.items():
                    if attrs not in totals:
                        totals[attrs] = value
                    elif spec.kind == UPDOWN:
                        totals[attrs] += value
                    else:
                        totals[attrs] = max(totals[attrs], value)
        return [self._observation(value, dict(attrs)) for attrs, value in totals.items()]

    def retire(self, obj: Any, watched: _Watched) -> None:
        """Keep what a closing sender or receiver counted, read one last time."""
        for spec in _SPECS:
            if spec.kind == COUNTER and spec.role == watched.role:
                self._ledgers[spec.name].record(_read(spec, [(obj, watched)])[0])


def _read(spec: _Spec, objects: list[tuple[Any, _Watched]]) -> tuple[dict[tuple[int, Attrs], float], set[int]]:
    """Each object's readings for ``spec`` (a shared source read once), and every live token."""
    readings: dict[tuple[int, Attrs], float] = {}
    live: set[int] = set()
    for obj, watched in objects:
        live.update(watched.tokens)
        if watched.role != spec.role:
            continue
        try:
            stats = getattr(obj, spec.snapshot, None)  # None: a receiver without sessions, for a session instrument
            found = spec.read(watched, stats) if stats is not None else []
        except Exception as exc:  # a snapshot taken mid-change: the next collection reads it
            _LOG.debug("geobus: metrics could not read %r: %r", obj, exc)
            continue
        for token, attrs, value in found:
            readings[(token, attrs)] = value
    return readings, live


# -- the module's state (under _LOCK: clients register on their loops, exporters collect on theirs) --

_LOCK = threading.RLock()
_watched: weakref.WeakKeyDictionary[Any, _Watched] = weakref.WeakKeyDictionary()
_shared: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_tokens = itertools.count(1)
_bindings: dict[int | None, _Binding] = {}
_state = {"disabled": False}


def _watched_now() -> list[tuple[Any, _Watched]]:
    return list(_watched.items())


def _api_available() -> bool:
    try:
        import opentelemetry.metrics  # noqa: F401
    except ImportError:
        return False
    return True


def _token(shared: Any) -> int:
    if shared is None:
        return 0
    try:
        token = _shared.get(shared)
        if token is None:
            token = _shared[shared] = next(_tokens)
        return token
    except TypeError:  # not weak-referenceable or not hashable: counted per sender
        return next(_tokens)


def _bind(provider: MeterProvider | None) -> None:
    from opentelemetry import metrics

    if provider is not None and provider is metrics.get_meter_provider():
        provider = None  # the global provider: one set of instruments, whichever way it is named
    key = None if provider is None else id(provider)
    for other in _bindings.values():
        other.active = False
    binding = _bindings.get(key)
    if binding is None:
        # A provider keeps an instrument's first callbacks: never register twice on one.
        binding = _bindings[key] = _Binding(provider)
    binding.active = True


def enable_metrics(*, meter_provider: Any = None) -> bool:
    """Report geobus's metrics to ``meter_provider`` (None: OpenTelemetry's global provider).

    Not needed with the global provider: the first sender or receiver turns metrics
    on by itself. Call it to report to a provider of your own, or to turn metrics
    back on after ``disable_metrics``. Calling it again with the same provider keeps
    the instruments already registered there. Thread-safe.

    Returns:
        True if metrics are on; False if ``opentelemetry-api`` is not installed
        (then nothing happens).

    Raises:
        TypeError: ``meter_provider`` is not an OpenTelemetry ``MeterProvider``.
    """
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        raise TypeError(
            f"meter_provider must be an OpenTelemetry MeterProvider, not {type(meter_provider).__name__}"
        )
    if not _api_available():
        _LOG.info("geobus: opentelemetry-api is not installed (pip install 'geobus[otel]'); no metrics")
        return False
    with _LOCK:
        _state["disabled"] = False
        _bind(meter_provider)
    return True


def disable_metrics() -> None:
    """Stop reporting: geobus's instruments observe nothing until ``enable_metrics``. Thread-safe."""
    with _LOCK:
        _state["disabled"] = True
        for binding in _bindings.values():
            binding.active = False


def watch_sender(sender: Any, *, destination: str, health: Any = None, outbox: Any = None) -> None:
    """Observe ``sender`` (it has a ``stats`` property) until ``forget``. ``health`` and
    ``outbox`` are what it shares with its client's other senders."""
    if not _api_available():
        return
    base = tuple(sorted((_SYSTEM, (DESTINATION, destination))))
    with _LOCK:
        watched = _Watched(SENDER, next(_tokens), base, _token(health), _token(outbox))
        _watch(sender, watched)


def watch_receiver(receiver: Any, *, destination: str, subscription: str | None = None) -> None:
    """Observe ``receiver`` (it has a ``stats`` property) until ``forget``."""
    if not _api_available():
        return
    items = [_SYSTEM, (DESTINATION, destination)]
    if subscription is not None:
        items.append((SUBSCRIPTION, subscription))
    with _LOCK:
        _watch(receiver, _Watched(RECEIVER, next(_tokens), tuple(sorted(items))))


def _watch(obj: Any, watched: _Watched) -> None:
    if not _bindings and not _state["disabled"]:
        _bind(None)
    _watched[obj] = watched


def forget(obj: Any) -> None:
    """Stop observing ``obj`` (closed); its counts stay in the counters' totals. Idempotent."""
    with _LOCK:
        watched = _watched.pop(obj, None)
        if watched is None:
            return
        for binding in _bindings.values():
            binding.retire(obj, watched)
