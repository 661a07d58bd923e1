"""Entity definitions: the queues, topics and subscriptions a local namespace starts with.

A TOML file (``geobus local --entities FILE``) or a mapping of the same shape::

    [queues.orders]
    requires_session = true
    lock_duration = 30                      # seconds, or "PT30S"

    [topics.events]
    requires_duplicate_detection = true

    [topics.events.subscriptions.audit]
    max_delivery_count = 5

Keys are the names azure-servicebus's administration client gives these properties
(``QueueProperties``, ``TopicProperties``, ``SubscriptionProperties``), so a file can
be compared with, or written from, what a real namespace reports. A key left out takes
Service Bus's default for a new entity, not the local namespace's options (those apply
to entities created on first use).

A duration is a number of seconds or an ISO-8601 duration as the administration API
prints it (``"PT30S"``, ``"P1D"``, ``"P10675199DT2H48M5.4775807S"``: the longest, which
means "forever" for a time to live); code may also give a ``datetime.timedelta``.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .._config import read_toml
from .._config.checks import TOMLDecodeError
from .._entity_facts import ENTITY_NAME, RULE_NAME, SUBSCRIPTION_NAME
from .._errors import ConfigurationError
from .._redact import describe
from ._entities import EntitySettings

# Service Bus's defaults for a new entity.
DEFAULT_LOCK_DURATION = 60.0
DEFAULT_MAX_DELIVERY_COUNT = 10
DEFAULT_DUPLICATE_DETECTION_WINDOW = 600.0
# A time to live this long or longer is Service Bus's "forever" (TimeSpan.MaxValue, ~29,000 years).
FOREVER = datetime.timedelta(days=10675199).total_seconds()

_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)
_UNIT_SECONDS = {
    "weeks": 604800.0,
    "days": 86400.0,
    "hours": 3600.0,
    "minutes": 60.0,
    "seconds": 1.0,
}


# -- the checks of one value -------------------------------------------------------------


def _shown(value: Any) -> str:
    """A bad value for an error: a short string as it is ("yes", "P1M"; far shorter than
    any key pasted by mistake), anything else as ``describe`` says it."""
    if isinstance(value, str) and len(value) <= 16:
        return repr(value)
    return describe(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(name, f"must be true or false, got {_shown(value)}")
    return value


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(name, f"must be a whole number, got {_shown(value)}")
    if value < 1:
        raise ConfigurationError(name, f"must be at least 1, got {value}")
    return value


def _seconds(name: str, value: Any) -> float:
    """A positive duration in seconds, from a number, an ISO-8601 string or a timedelta."""
    if isinstance(value, datetime.timedelta):
        number = value.total_seconds()
    elif isinstance(value, str):
        number = _iso_seconds(name, value.strip())
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            name, f'must be a duration (seconds, or ISO-8601 like "PT30S"), got {_shown(value)}'
        )
    else:
        number = float(value)
    if math.isnan(number) or math.isinf(number) or number <= 0:
        raise ConfigurationError(name, f"must be a positive duration, got {number:g} seconds")
    return number


def _iso_seconds(name: str, text: str) -> float:
    if text.startswith("-P"):
        raise ConfigurationError(name, "must be a positive duration, got a negative one")
    match = _ISO_DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        problem = 'must be a duration: seconds, or ISO-8601 like "PT30S" or "P1D"'
        if re.fullmatch(r"P.*\d(?:Y|M).*", text.partition("T")[0]):
            problem += " (years and months have no fixed length: use days)"
        raise ConfigurationError(name, f"{problem}, got {_shown(text)}")
    return sum(
        float(part) * _UNIT_SECONDS[unit] for unit, part in match.groupdict().items() if part
    )


def _time_to_live(name: str, value: Any) -> float | None:
    """None is forever, as is Service Bus's longest time span."""
    if value is None:
        return None
    seconds = _seconds(name, value)
    return None if seconds >= FOREVER else seconds


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "requires_session": _flag,
    "lock_duration": _seconds,
    "max_delivery_count": _count,
    "default_message_time_to_live": _time_to_live,
    "dead_lettering_on_message_expiration": _flag,
    "requires_duplicate_detection": _flag,
    "duplicate_detection_history_time_window": _seconds,
}


class _Checked:
    """Checks and normalises every field named in ``_CHECKS`` at construction."""

    name: str

    def _where(self) -> str:
        raise NotImplementedError

    def __post_init__(self) -> None:
        for key, check in _CHECKS.items():
            if hasattr(self, key):
                object.__setattr__(self, key, check(f"{self._where()}.{key}", getattr(self, key)))


# -- one entity ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Receiving(_Checked):
    """What a queue and a subscription both have: the properties a receiver meets."""

    requires_session: bool = False
    lock_duration: float = DEFAULT_LOCK_DURATION
    max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT
    default_message_time_to_live: float | None = None
    dead_lettering_on_message_expiration: bool = False

    def settings(self) -> EntitySettings:
        """What the local namespace's queue or subscription does with these properties."""
        return EntitySettings(
            lock_duration=self.lock_duration,
            max_delivery_count=self.max_delivery_count,
            default_ttl=self.default_message_time_to_live,
            dead_letter_on_expiration=self.dead_lettering_on_message_expiration,
            requires_session=self.requires_session,
        )


@dataclass(frozen=True)
class RuleDefinition:
    """One rule of a subscription: its filter and action as the administration API's
    ``_admin_model`` specs (``{"kind": "sql", "expression": ...}``...)."""

    name: str
    filter: dict[str, Any]
    action: dict[str, Any]


@dataclass(frozen=True)
class SubscriptionDefinition(_Receiving):
    """One subscription of a topic, with ``SubscriptionProperties``' names, and its
    rules (none declared: the ``$Default`` rule, as the service gives)."""

    topic: str
    name: str
    rules: tuple[RuleDefinition, ...] = field(default=(), kw_only=True)

    def _where(self) -> str:
        return f"topics.{self.topic}.subscriptions.{self.name}"


@dataclass(frozen=True)
class QueueDefinition(_Receiving):
    """One queue, with ``QueueProperties``' names. The duplicate detection window is
    kept when detection is off (the administration API keeps it too) but does nothing."""

    name: str
    requires_duplicate_detection: bool = field(default=False, kw_only=True)
    duplicate_detection_history_time_window: float = field(default=DEFAULT_DUPLICATE_DETECTION_WINDOW, kw_only=True)

    def _where(self) -> str:
        return f"queues.{self.name}"

    def settings(self) -> EntitySettings:
        return replace(super().settings(), duplicate_detection_window=_detection_window(self))


@dataclass(frozen=True)
class TopicDefinition(_Checked):
    """One topic, with ``TopicProperties``' names, and its declared subscriptions."""

    name: str
    requires_duplicate_detection: bool = False
    duplicate_detection_history_time_window: float = DEFAULT_DUPLICATE_DETECTION_WINDOW
    default_message_time_to_live: float | None = None
    subscriptions: tuple[SubscriptionDefinition, ...] = ()

    def _where(self) -> str:
        return f"topics.{self.name}"

    def settings(self, base: EntitySettings) -> EntitySettings:
        """The topic's settings: duplicate detection and time to live from here, the rest
        from ``base`` (the namespace's), which subscriptions created on first use take."""
        return replace(base, default_ttl=self.default_message_time_to_live, duplicate_detection_window=_detection_window(self))


def _detection_window(entity: QueueDefinition | TopicDefinition) -> float | None:
    """The window a queue or topic detects duplicates in; None: it does not."""
    return entity.duplicate_detection_history_time_window if entity.requires_duplicate_detection else None


# -- a file of them ------------------------------------------------------------------------

_SUBSCRIPTION_KEYS = frozenset(
    f for f in SubscriptionDefinition.__dataclass_fields__ if f not in ("topic", "name")
)
_QUEUE_KEYS = frozenset(f for f in QueueDefinition.__dataclass_fields__ if f != "name")
_TOPIC_KEYS = frozenset(f for f in TopicDefinition.__dataclass_fields__ if f != "name")


@dataclass(frozen=True)
class EntityDefinitions:
    """Queues, topics and subscriptions a local namespace creates when it starts, with
    their settings (``load_entities(path)``, ``EntityDefinitions.from_mapping(data)``).

    ``queues`` and ``topics`` hold one definition each (``QueueDefinition``,
    ``TopicDefinition`` with its ``subscriptions``) whose fields carry the
    administration API's names; ``source`` names the file they came from.
    Immutable, so safe to share between threads and namespaces.
    """

    queues: tuple[QueueDefinition, ...] = ()
    topics: tuple[TopicDefinition, ...] = ()
    source: str = field(default="definitions", compare=False)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str = "definitions"
    ) -> EntityDefinitions:
        """Definitions from ``{"queues": {name: {key: value}}, "topics": {...}}``, the
        shape of the TOML file.

        Raises:
            ConfigurationError: an unknown key, a value of the wrong type or range, a
                subscription under a queue, one name for two entities; ``field`` names
                the key (``queues.orders.lock_duration``), the message also ``source``.
        """
        try:
            return _parse(data, source)
        except ConfigurationError as exc:
            raise ConfigurationError(exc.field, f"{exc.problem} (in {source})") from None

    def __len__(self) -> int:
        return len(self.queues) + len(self.topics) + sum(len(t.subscriptions) for t in self.topics)


def load_entities(path: str | os.PathLike[str]) -> EntityDefinitions:
    """Read entity definitions from a TOML file (see ``EntityDefinitions``).

    Raises:
        ConfigurationError: the file is missing, unreadable, not TOML, or holds a bad
            definition; the message names the file, the entity and the key.
    """
    source = os.fspath(path)
    try:
        data = read_toml(path)
    except FileNotFoundError:
        raise ConfigurationError("entities", f"{source!r} does not exist") from None
    except TOMLDecodeError as exc:
        raise ConfigurationError("entities", f"{source!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(
            "entities", f"{source!r} cannot be read: {describe(exc)}"
        ) from None
    return EntityDefinitions.from_mapping(data, source=source)


def as_definitions(
    entities: str | os.PathLike[str] | EntityDefinitions | Mapping[str, Any] | None,
) -> EntityDefinitions | None:
    """What ``LocalNamespace(entities=...)`` takes: a file, definitions or a mapping.

    Raises:
        ConfigurationError: see ``load_entities`` and ``EntityDefinitions.from_mapping``.
    """
    if entities is None or isinstance(entities, EntityDefinitions):
        return entities
    if isinstance(entities, str | os.PathLike):
        return load_entities(entities)
    if isinstance(entities, Mapping):
        return EntityDefinitions.from_mapping(entities)
    raise ConfigurationError(
        "entities", f"must be a file path, EntityDefinitions or a mapping, got {describe(entities)}"
    )


def _table(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(where, f"must be a table ([{where}]), got {_shown(value)}")
    return value


def _unknown(where: str, given: Mapping[str, Any], known: frozenset[str]) -> None:
    for key in given:
        if key not in known:
            raise ConfigurationError(
                f"{where}.{key}" if where else str(key),
                f"unknown key (known: {', '.join(sorted(known))})",
            )


def _name(where: str, name: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(name) or "//" in name:
        raise ConfigurationError(
            where,
            "is not an entity name (letters, digits, '.', '-', '_'"
            + ("" if pattern is SUBSCRIPTION_NAME else ", '/' inside")
            + f"; at most {260 if pattern is ENTITY_NAME else 50} characters)",
        )
    return name


def _parse(data: Mapping[str, Any], source: str) -> EntityDefinitions:
    _unknown("", _table(source, data), frozenset({"queues", "topics"}))
    # Names are case-insensitive: the lower-case name -> where it was declared.
    seen: dict[str, str] = {}

    def claim(where: str, name: str) -> None:
        key = name.lower()
        if key in seen:
            raise ConfigurationError(
                where, f"names the same entity as {seen[key]} (names are case-insensitive)"
            )
        seen[key] = where

    queues = []
    for name, body in _table("queues", data.get("queues", {})).items():
        where = f"queues.{name}"
        claim(where, _name(where, name, ENTITY_NAME))
        options = dict(_table(where, body))
        if "subscriptions" in options:
            raise ConfigurationError(
                f"{where}.subscriptions",
                f"a queue has no subscriptions: declare a topic ([topics.{name}.subscriptions.NAME])",
            )
        _unknown(where, options, _QUEUE_KEYS)
        queues.append(QueueDefinition(name, **options))
    topics = []
    for name, body in _table("topics", data.get("topics", {})).items():
        where = f"topics.{name}"
        claim(where, _name(where, name, ENTITY_NAME))
        options = dict(_table(where, body))
        _unknown(where, options, _TOPIC_KEYS)
        subs, subs_seen = [], set()
        for sub, sub_body in _table(
            f"{where}.subscriptions", options.pop("subscriptions", {})
        ).items():
            sub_where = f"{where}.subscriptions.{sub}"
            if _name(sub_where, sub, SUBSCRIPTION_NAME).lower() in subs_seen:
                raise ConfigurationError(
                    sub_where, "is declared twice (names are case-insensitive)"
                )
            subs_seen.add(sub.lower())
            sub_options = _table(sub_where, sub_body)
            if (
                "requires_duplicate_detection" in sub_options
                or "duplicate_detection_history_time_window" in sub_options
            ):
                raise ConfigurationError(
                    sub_where, f"duplicate detection is a topic's setting: put it in [{where}]"
                )
            _unknown(sub_where, sub_options, _SUBSCRIPTION_KEYS)
            sub_options = dict(sub_options)
            rules = _rules(f"{sub_where}.rules", sub_options.pop("rules", {}))
            subs.append(SubscriptionDefinition(name, sub, rules=rules, **sub_options))
        topics.append(TopicDefinition(name, subscriptions=tuple(subs), **options))
    return EntityDefinitions(tuple(queues), tuple(topics), source=source)


_RULE_KEYS = frozenset({"sql", "parameters", "correlation", "action", "action_parameters"})


def _rules(where: str, table: Any) -> tuple[RuleDefinition, ...]:
    """``[...subscriptions.NAME.rules.RULE]`` tables: ``sql`` (with ``parameters``) or
    ``correlation``, and an optional SQL ``action`` (with ``action_parameters``)."""
    from ._admin_model import AdminError
    from ._rules import compile_action, compile_filter

    rules = []
    seen: set[str] = set()
    for name, body in _table(where, table).items():
        rule_where = f"{where}.{name}"
        if not RULE_NAME.fullmatch(name):
            raise ConfigurationError(rule_where, "is not a rule name (letters, digits, '.', '-', '_'; at most 50 characters)")
        if name.lower() in seen:
            raise ConfigurationError(rule_where, "is declared twice (names are case-insensitive)")
        seen.add(name.lower())
        options = _table(rule_where, body)
        _unknown(rule_where, options, _RULE_KEYS)
        if ("sql" in options) == ("correlation" in options):
            raise ConfigurationError(rule_where, "needs one filter: sql = \"...\" or correlation = { ... }")
        if "sql" in options:
            rule_filter: dict[str, Any] = {
                "kind": "sql", "expression": options["sql"], "parameters": dict(_table(f"{rule_where}.parameters", options.get("parameters", {})))
            }  # fmt: skip
        else:
            rule_filter = {"kind": "correlation", **_table(f"{rule_where}.correlation", options["correlation"])}
        action: dict[str, Any] = {"kind": "empty"}
        if "action" in options:
            parameters = _table(f"{rule_where}.action_parameters", options.get("action_parameters", {}))
            action = {"kind": "sql", "expression": options["action"], "parameters": dict(parameters)}
        try:
            compile_filter(rule_filter)
            compile_action(action)
        except AdminError as exc:
            raise ConfigurationError(rule_where, exc.message) from None
        rules.append(RuleDefinition(name, rule_filter, action))
    return tuple(rules)
