"""Subscription rules of the local namespace: which messages a subscription takes (filters)
and how its copy changes (actions), compiled from ``_admin_model``'s specs.

``compile_filter`` and ``compile_action`` raise ``AdminError(400)`` for a spec the service
would refuse; the compiled ``Filter.matches`` and ``Action.apply`` raise ``EvaluationError``
where the service's evaluation throws (``_routing`` then dead-letters or drops the copy).

Semantics, after the Service Bus documents "Subscription Rule SQL Filter Syntax",
"Subscription Rule SQL Action Syntax", "Topic filters and actions", "Set subscription
filters" and "Service Bus quotas" (where they are silent, the choice and its reason):

- Grammar as documented, strictly: a filter is a condition (``color`` or ``TRUE`` alone
  is refused), IS NULL and EXISTS take a property, keywords are case-insensitive. Parse
  errors are worded as the service's ("There was an error parsing ... [Token line=...,
  column=..., Token in error=..., Additional details=...]", quoted in
  Azure/azure-service-bus issue 15), quoting at most 60 characters.
- Names: ``sys.<name>`` is a system property (case-insensitive; ``sys.Subject`` is
  ``sys.Label``, the new SDKs' name for it); one Service Bus messages lack is a compile
  error. ``user.<name>``, ``<name>``, ``[delimited]`` and ``"quoted"`` are application
  properties, case-insensitive ("Property names are case-insensitive"); a missing one is
  unknown, so ``color = 'red'`` is false without a ``color``. ``property(name)`` reads
  application properties only (``property('sys.Label')`` gives nothing on the service:
  MicrosoftDocs/azure-docs issue 87667).
- Types follow C# operator binding: integer constants are ``long`` (wrapping), decimal and
  exponent ones ``double``; integers and doubles mix; ``+`` with a string concatenates;
  dates and durations add and subtract. Any other mix, or an operator C# lacks (``<`` on
  strings, booleans or Guids), is unknown, not an error (a string property compared with
  a number matches nothing: MicrosoftDocs/azure-docs issue 56144). String ``=`` and LIKE
  are ordinal, case-sensitive, as C# ``==`` is and as "Topic filters" says of correlation
  filters. ``EvaluationError``: an integer division by zero, ``long.MinValue / -1``, a date
  out of range, a LIKE escape that is not one character or ends the pattern, and SET of
  a non-string on a system property.
- Unknown follows the documented AND/OR tables; ``[NOT] IN`` is unknown only when its left
  side is; ``IS NULL`` and ``EXISTS`` are never unknown (a system property exists when set).
- Actions run their statements in order, each seeing what the earlier ones did; SET of an
  integer on a double property gives a double (the doc's "implicit conversion"). Only the
  eight string system properties an application sets can be changed.
- Limits: 1024 characters per filter or action, 32 statements per action (quotas); 40
  nested levels (ours, to bound recursion).
- Correlation filters: each set system field equals the message's as an exact string
  (``subject`` or ``label`` is ``Label``); each property equals the message's property of
  that name in type (int, float, bool, string... kept apart) and value. One with nothing
  set is refused in the Service Bus emulator's words.
"""

from __future__ import annotations

import datetime
import uuid
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._admin_model import ActionSpec, AdminError, FilterSpec
from ._sql import Statement, compile_predicate, compile_statements
from ._sql_values import Env, EvaluationError, Evaluator, category, find_key

__all__ = [
    "Action",
    "EvaluationError",
    "Filter",
    "MessageEdit",
    "MessageView",
    "compile_action",
    "compile_filter",
]

# A correlation filter's fields (``_admin_model``) and the system property each matches.
CORRELATION_FIELDS = {
    "correlation_id": "CorrelationId",
    "message_id": "MessageId",
    "to": "To",
    "reply_to": "ReplyTo",
    "subject": "Label",
    "label": "Label",  # azure-servicebus's CorrelationRuleFilter keyword
    "session_id": "SessionId",
    "reply_to_session_id": "ReplyToSessionId",
    "content_type": "ContentType",
}
# What a parameter or correlation property may hold (the administration client's types).
_VALUE_TYPES = (str, int, float, bool, datetime.datetime, datetime.timedelta, uuid.UUID)


@dataclass(frozen=True)
class MessageView:
    """A message as rules read it: ``system`` by Service Bus names ("MessageId", "Label",
    "TimeToLive"...; absent or None: not set), ``properties`` its application properties."""

    system: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageEdit:
    """What an action makes of a message: all its application properties, and the system
    properties it set, by ``MessageView`` names (None: removed)."""

    properties: dict[str, Any]
    system: dict[str, Any]


class Filter(Protocol):
    def matches(self, view: MessageView) -> bool:
        """Whether the rule takes ``view``; raises ``EvaluationError`` if evaluation fails."""
        ...


class Action(Protocol):
    def apply(self, view: MessageView) -> MessageEdit | None:
        """The changed message, or None for no change; raises ``EvaluationError``."""
        ...


@dataclass(frozen=True)
class _Constant:
    result: bool

    def matches(self, view: MessageView) -> bool:
        return self.result


@dataclass(frozen=True)
class _SqlFilter:
    condition: Evaluator

    def matches(self, view: MessageView) -> bool:
        # Unknown is not a match.
        return self.condition(Env(view.system, view.properties)) is True


@dataclass(frozen=True)
class _CorrelationFilter:
    system: tuple[tuple[str, str], ...]
    properties: tuple[tuple[str, Any], ...]

    def matches(self, view: MessageView) -> bool:
        if any(view.system.get(name) != value for name, value in self.system):
            return False
        for name, expected in self.properties:
            key = find_key(view.properties, name)
            if key is None or not _same(view.properties[key], expected):
                return False
        return True


def _same(actual: Any, expected: Any) -> bool:
    # Typed equality: 1 is neither 1.0 nor True nor '1'.
    return category(actual) == category(expected) and actual == expected


@dataclass(frozen=True)
class _EmptyAction:
    def apply(self, view: MessageView) -> MessageEdit | None:
        return None


@dataclass(frozen=True)
class _SqlAction:
    statements: tuple[Statement, ...]

    def apply(self, view: MessageView) -> MessageEdit | None:
        properties = dict(view.properties)
        system: dict[str, Any] = {}
        env = Env(ChainMap(system, dict(view.system)), properties)
        changed = False
        for statement in self.statements:
            target = statement.target
            value: Any = None if statement.value is None else statement.value(env)
            if target.system:
                if value is not None and not isinstance(value, str):
                    raise EvaluationError(f"sys.{target.name} cannot be set to {category(value)}.")
                system[target.name] = value
                changed = True
                continue
            key = find_key(properties, target.name)
            if statement.value is None:
                if key is not None:
                    del properties[key]
                    changed = True
                continue
            replaced = None if key is None else properties[key]
            if isinstance(replaced, float) and category(value) == "int":
                value = float(value)  # C#'s implicit long-to-double conversion
            properties[target.name if key is None else key] = value
            changed = True
        return MessageEdit(properties, system) if changed else None


def compile_filter(spec: FilterSpec) -> Filter:
    """The filter ``spec`` describes (kind "sql", "true", "false" or "correlation").

    Raises ``AdminError(400)`` for a spec or SQL expression the service would refuse.
    """
    kind = _kind(spec, ("sql", "true", "false", "correlation"), "filter")
    if kind in ("true", "false"):
        return _Constant(kind == "true")
    if kind == "sql":
        return _SqlFilter(compile_predicate(spec.get("expression"), _parameters(spec)))
    return _correlation(spec)


def compile_action(spec: ActionSpec) -> Action:
    """The action ``spec`` describes (kind "sql" or "empty").

    Raises ``AdminError(400)`` for a spec or SQL action the service would refuse.
    """
    if _kind(spec, ("sql", "empty"), "action") == "empty":
        return _EmptyAction()
    return _SqlAction(compile_statements(spec.get("expression"), _parameters(spec)))


def _kind(spec: Any, kinds: tuple[str, ...], what: str) -> str:
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if kind not in kinds:
        raise AdminError(400, f"The rule {what} type {str(kind)[:60]!r} is not supported.")
    return str(kind)


def _parameters(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's parameters by their names with the leading ``@``."""
    given = spec.get("parameters") or {}
    if not isinstance(given, Mapping):
        raise AdminError(400, "The parameters of a SQL expression must be name-value pairs.")
    parameters: dict[str, Any] = {}
    for name, value in given.items():
        if not isinstance(name, str) or not name.strip("@"):
            raise AdminError(400, f"{str(name)[:60]!r} is not a parameter name.")
        _check_value(value, f"The parameter {name[:60]!r}")
        parameters[name if name.startswith("@") else "@" + name] = value
    return parameters


def _check_value(value: Any, what: str) -> None:
    if value is not None and not isinstance(value, _VALUE_TYPES):
        raise AdminError(400, f"{what} has a value of an unsupported type, {type(value).__name__}.")


def _correlation(spec: Mapping[str, Any]) -> _CorrelationFilter:
    unknown = sorted(set(spec) - set(CORRELATION_FIELDS) - {"kind", "properties"})
    if unknown:
        raise AdminError(400, f"A correlation filter has no property {unknown[0][:60]!r}.")
    system: dict[str, str] = {}
    for key, name in CORRELATION_FIELDS.items():
        value = spec.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise AdminError(400, f"The correlation filter's {key} must be a string.")
        if system.setdefault(name, value) != value:
            raise AdminError(400, "The correlation filter's subject and label differ.")
    properties = spec.get("properties") or {}
    if not isinstance(properties, Mapping) or not all(isinstance(k, str) for k in properties):
        raise AdminError(400, "The properties of a correlation filter must be name-value pairs.")
    for name, value in properties.items():
        _check_value(value, f"The correlation filter property {name[:60]!r}")
    if not system and not properties:
        raise AdminError(
            400, "At least one system or user property must be set for a correlation filter."
        )
    return _CorrelationFilter(tuple(system.items()), tuple(properties.items()))
