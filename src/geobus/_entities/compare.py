"""What ``geobus entities check`` compares, and how: one snapshot against another.

The compared properties are the tuples below, per kind (the one list; docs/entities.md
shows it). They are the definitions an application relies on; what is each
namespace's own by nature is left out (``IGNORED``). Values are compared as they
mean, not as they are written:

- names (of entities and rules) case-insensitively, as Service Bus does;
- durations as ``timedelta``: an ISO-8601 string is read as one, a difference of one
  microsecond is none (the SDK rounds ``TimeSpan.MaxValue``), and anything of
  ``FOREVER_DAYS`` days or more is "forever";
- ``forward_to`` and ``forward_dead_lettered_messages_to`` by entity path only
  (``sb://ns-a.servicebus.windows.net/q`` and ``https://ns-b.../Q`` are both ``q``): the
  service writes the namespace into them, and each namespace forwards within itself;
- ``status`` by its value (``Active``), an empty ``user_metadata`` as none;
- a rule by its filter (true, false, SQL expression and parameters, or correlation
  fields and properties) and its action (SQL expression and parameters, or none).
"""

from __future__ import annotations

import builtins
import datetime
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    RuleProperties,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from .._entity_facts import FOREVER, FOREVER_DAYS, format_duration, parse_duration
from .._entity_facts import IMMUTABLE as ENTITY_IMMUTABLE
from .snapshot import KINDS, Entity, EntityKind, EntitySnapshot, entity_path

QUEUE_PROPERTIES = (
    "lock_duration", "max_size_in_megabytes", "requires_duplicate_detection", "requires_session",
    "default_message_time_to_live", "dead_lettering_on_message_expiration",
    "duplicate_detection_history_time_window", "max_delivery_count", "enable_batched_operations", "status",
    "auto_delete_on_idle", "enable_partitioning", "enable_express", "forward_to",
    "forward_dead_lettered_messages_to", "user_metadata", "max_message_size_in_kilobytes",
)  # fmt: skip
TOPIC_PROPERTIES = (
    "default_message_time_to_live", "max_size_in_megabytes", "requires_duplicate_detection",
    "duplicate_detection_history_time_window", "enable_batched_operations", "status", "support_ordering",
    "auto_delete_on_idle", "enable_partitioning", "enable_express", "filtering_messages_before_publishing",
    "user_metadata", "max_message_size_in_kilobytes",
)  # fmt: skip
SUBSCRIPTION_PROPERTIES = (
    "lock_duration", "requires_session", "default_message_time_to_live", "dead_lettering_on_message_expiration",
    "dead_lettering_on_filter_evaluation_exceptions", "max_delivery_count", "enable_batched_operations", "status",
    "forward_to", "forward_dead_lettered_messages_to", "user_metadata", "auto_delete_on_idle",
)  # fmt: skip
RULE_PARTS = ("filter", "action")
COMPARED: Mapping[EntityKind, tuple[str, ...]] = {
    "queue": QUEUE_PROPERTIES,
    "topic": TOPIC_PROPERTIES,
    "subscription": SUBSCRIPTION_PROPERTIES,
    "rule": RULE_PARTS,
}
# Set when the entity is created: the service refuses to change them.
IMMUTABLE: Mapping[str, tuple[str, ...]] = {**ENTITY_IMMUTABLE, "rule": ()}
# What the SDK's models also show, and why it is not compared.
IGNORED: Mapping[str, str] = {
    "authorization_rules": "hold keys, and each namespace has its own",
    "availability_status": "the entity's state in its region",
    "size_in_bytes": "a count, per namespace",
    "created_at_utc": "a time, per namespace",
    "requires_preprocessing": "set by the SDK, not the entity's definition",
}
DURATIONS = frozenset(
    {"lock_duration", "default_message_time_to_live", "duplicate_detection_history_time_window", "auto_delete_on_idle"}
)
ENTITY_PATHS = frozenset({"forward_to", "forward_dead_lettered_messages_to"})
CORRELATION_FIELDS = (
    "correlation_id", "message_id", "to", "reply_to", "label", "session_id", "reply_to_session_id", "content_type",
)  # fmt: skip

_TOLERANCE = datetime.timedelta(microseconds=1)

DifferenceKind = Literal["missing in secondary", "missing in primary", "property", "rule"]


def normal(name: str, value: Any) -> Any:
    """``value`` of property ``name`` as it is compared (and shown)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or (value == "" and (name in ENTITY_PATHS or name == "user_metadata")):
        return None
    if name in DURATIONS:
        duration = _duration(value)
        return FOREVER if isinstance(duration, datetime.timedelta) and duration.days >= FOREVER_DAYS else duration
    if name in ENTITY_PATHS and isinstance(value, str):
        parts = urlsplit(value.strip())
        return (parts.path if parts.netloc else value.strip()).strip("/")
    return value


def same(name: str, a: Any, b: Any) -> bool:
    """Whether two ``normal`` values of property ``name`` mean the same."""
    if isinstance(a, datetime.timedelta) and isinstance(b, datetime.timedelta):
        return abs(a - b) <= _TOLERANCE
    if name in ENTITY_PATHS and isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return bool(a == b)


def differing(a: Entity, b: Entity) -> list[str]:
    """The compared properties (for a rule: ``filter``, ``action``) in which ``a`` and ``b`` differ."""
    if a.kind == "rule":
        left, right = rule_definition(a.properties), rule_definition(b.properties)  # type: ignore[arg-type]
        return [part for part in RULE_PARTS if left[part] != right[part]]
    return [
        name
        for name in COMPARED[a.kind]
        if not same(name, normal(name, getattr(a.properties, name, None)), normal(name, getattr(b.properties, name, None)))
    ]


def rule_definition(rule: RuleProperties) -> dict[str, Any]:
    """A rule's filter and action as plain data: ``{"filter": {"type": "sql", "expression":
    ..., "parameters": {...}}, "action": None}``; a filter's type is ``true``, ``false``,
    ``sql`` or ``correlation``, an action's ``sql`` (or the action is None)."""
    found = rule.filter
    if found is None or isinstance(found, TrueRuleFilter):
        filter_: dict[str, Any] = {"type": "true"}
    elif isinstance(found, FalseRuleFilter):
        filter_ = {"type": "false"}
    elif isinstance(found, SqlRuleFilter):
        filter_ = {"type": "sql", "expression": (found.sql_expression or "").strip(), "parameters": dict(found.parameters or {})}
    elif isinstance(found, CorrelationRuleFilter):
        fields = {name: getattr(found, name) for name in CORRELATION_FIELDS if getattr(found, name) not in (None, "")}
        filter_ = {"type": "correlation", **fields, "properties": dict(found.properties or {})}
    else:  # pragma: no cover - the SDK has no other filter
        filter_ = {"type": type(found).__name__}
    action = rule.action
    action_: dict[str, Any] | None = None
    if isinstance(action, SqlRuleAction) and (action.sql_expression or "").strip():
        action_ = {"type": "sql", "expression": (action.sql_expression or "").strip(), "parameters": dict(action.parameters or {})}
    return {"filter": filter_, "action": action_}


@dataclass(frozen=True)
class EntityDifference:
    """One way two namespaces' entities differ.

    - ``path``: the entity (``orders``, ``events/Subscriptions/audit``);
    - ``kind``: ``"missing in secondary"`` or ``"missing in primary"`` (the side that has
      the entity holds its kind, ``"queue"``, ``"topic"`` or ``"subscription"``; the other
      None); ``"property"`` (``property`` names it; each side holds its value as compared:
      a ``timedelta`` for a duration, an entity path for a forwarding target...); or
      ``"rule"`` (``property`` is the rule's name; each side holds its filter and action
      as plain data, or None where the subscription lacks the rule).
    """

    path: str
    kind: DifferenceKind
    property: str | None
    primary: Any
    secondary: Any

    @builtins.property  # the field ``property`` hides the builtin here
    def what(self) -> str:
        """The table's "what" column: ``missing in secondary``, ``lock_duration``, ``rule $Default``."""
        if self.kind == "property":
            return str(self.property)
        if self.kind == "rule":
            return f"rule {self.property}"
        return self.kind

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: the values readable (durations in ISO-8601 or ``"forever"``)."""
        return {
            "entity": self.path,
            "kind": self.kind,
            "property": self.property,
            "primary": jsonable(self.primary),
            "secondary": jsonable(self.secondary),
        }


@dataclass(frozen=True)
class EntityReport:
    """How two namespaces' entity definitions differ (``compare_entities``).

    ``primary`` and ``secondary`` name the namespaces compared; ``differences`` holds
    each difference in path order, empty when ``alike``.
    """

    primary: str
    secondary: str
    differences: tuple[EntityDifference, ...]

    @property
    def alike(self) -> bool:
        """No difference: the same entities with the same compared properties and rules."""
        return not self.differences

    def table(self) -> str:
        """The differences as a text table: entity, what, primary, secondary."""
        rows = [(d.path, d.what, render(d.primary), render(d.secondary)) for d in self.differences]
        return text_table(("entity", "what", "primary", "secondary"), rows)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"alike": ..., "primary": ..., "secondary": ..., "differences": [...]}``."""
        return {
            "alike": self.alike,
            "primary": self.primary,
            "secondary": self.secondary,
            "differences": [difference.as_dict() for difference in self.differences],
        }


def order(entity: Entity) -> tuple[tuple[str, ...], int]:
    """Path order: a topic, then its subscriptions, each followed by its rules."""
    return tuple(name.lower() for name in entity.names), KINDS.index(entity.kind)


def diff_snapshots(primary: EntitySnapshot, secondary: EntitySnapshot) -> EntityReport:
    """Every difference between two snapshots. A missing topic's subscriptions are listed
    missing too; a missing subscription's rules are not (they come with it)."""
    union = {entity.key: entity for entity in (*secondary.entities, *primary.entities)}
    found: list[EntityDifference] = []
    for entity in sorted(union.values(), key=order):
        a, b = primary.find(entity.kind, entity.path), secondary.find(entity.kind, entity.path)
        if entity.kind == "rule":
            parent = entity_path(entity.names[:2])
            if primary.find("subscription", parent) is None or secondary.find("subscription", parent) is None:
                continue
            if a is None or b is None or differing(a, b):
                found.append(EntityDifference(
                    parent, "rule", entity.names[2],
                    None if a is None else rule_definition(a.properties),  # type: ignore[arg-type]
                    None if b is None else rule_definition(b.properties),  # type: ignore[arg-type]
                ))  # fmt: skip
        elif a is None or b is None:
            kind: DifferenceKind = "missing in primary" if a is None else "missing in secondary"
            found.append(EntityDifference(
                entity.path, kind, None, None if a is None else entity.kind, None if b is None else entity.kind
            ))  # fmt: skip
        else:
            for name in differing(a, b):
                found.append(EntityDifference(
                    entity.path, "property", name,
                    normal(name, getattr(a.properties, name, None)), normal(name, getattr(b.properties, name, None)),
                ))  # fmt: skip
    return EntityReport(primary.namespace, secondary.namespace, tuple(found))


# -- showing values ----------------------------------------------------------------------


def _duration(value: Any) -> Any:
    """A timedelta from a timedelta or an ISO-8601 duration (``PT1M``, ``P14D``); else as given."""
    if not isinstance(value, str):
        return value
    try:
        return parse_duration(value)
    except ValueError:
        return value


def iso_duration(value: datetime.timedelta) -> str:
    """``PT1M``, ``P14D``, ``PT0.5S``; ``forever`` from ``FOREVER_DAYS`` days on."""
    return "forever" if value.days >= FOREVER_DAYS else format_duration(value)


def jsonable(value: Any) -> Any:
    """``value`` for JSON: durations as ``iso_duration``, times in ISO-8601, mappings through."""
    if isinstance(value, datetime.timedelta):
        return iso_duration(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    return value


def render(value: Any) -> str:
    """``value`` for a table cell: ``-`` for none, ``true``/``false``, durations as
    ``iso_duration``, a rule as ``sql: color = 'red' @p=1; action: SET x = 1``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping) and "filter" in value:
        return _render_rule(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={render(item)}" for key, item in value.items())
    return str(jsonable(value))


def _render_rule(rule: Mapping[str, Any]) -> str:
    """``sql: color = '@c' @c=red; action: SET x = 1``, ``correlation: label='a' properties k=1``, ``true``."""
    filter_ = dict(rule["filter"])
    kind = str(filter_.pop("type"))
    parameters = filter_.pop("parameters", None)
    properties = filter_.pop("properties", None)
    parts = [kind]
    if kind == "sql":
        parts = [f"sql: {filter_.pop('expression')}"]
    elif kind == "correlation":
        parts = ["correlation:", ", ".join(f"{key}={item!r}" for key, item in filter_.items())]
        parts += [f"properties {render(properties)}"] if properties else []
    parts += [render(parameters)] if parameters else []
    text = " ".join(part for part in parts if part)
    action = rule.get("action")
    if action:
        text += f"; action: {action['expression']}"
        text += f" {render(action['parameters'])}" if action.get("parameters") else ""
    return text


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, the last one as it is."""
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(len(headers) - 1)]
    lines = [
        "  ".join([*(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)), str(row[-1])]).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)
