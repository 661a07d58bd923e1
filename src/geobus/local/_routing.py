"""Which copies of a topic's message a subscription gets, by its rules.

As Service Bus does (Topic filters and actions): the rules without an action are
OR-ed and give at most one copy, the message as sent; each rule with an action that
matches gives a copy of its own, changed by the action and carrying the property
``RuleName``. A subscription with no rules gets nothing. A filter or action that
fails while it is evaluated dead-letters the copy when the subscription has
``dead_lettering_on_filter_evaluation_exceptions`` (its default), and drops it
otherwise.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from proton import symbol

from ._admin_model import RuleRecord
from ._codec import ParsedMessage, rewritten
from ._rules import Action, EvaluationError, Filter, MessageView, compile_action, compile_filter

FILTER_EXCEPTION_REASON = "FilterEvaluationException"

# The properties section's field for each settable system property (``_codec.ParsedMessage``).
_SYSTEM_FIELDS = {
    "MessageId": 0,
    "To": 2,
    "Label": 3,
    "ReplyTo": 4,
    "CorrelationId": 5,
    "ContentType": 6,
    "SessionId": 10,
    "ReplyToSessionId": 12,
}


@dataclass(frozen=True)
class CompiledRule:
    name: str
    filter: Filter
    action: Action | None  # None: the empty action
    everything: bool = False  # the true filter with no action: a copy of every message


@dataclass(frozen=True)
class Copy:
    """One copy for the subscription: ``rest`` as it is stored (the sent one's, or the
    action's), or a failed evaluation (``failed``: its description)."""

    rest: bytes
    failed: str | None = None
    # An action's copy: its properties section's fields as the action left them (the
    # broker keeps the message and session ids it set).
    fields: list[Any] | None = None


def compile_rules(rules: Iterable[RuleRecord]) -> list[CompiledRule]:
    """Compile every rule, or raise ``AdminError`` (400) for the first that is bad."""
    return [
        CompiledRule(
            rule.name,
            compile_filter(rule.filter),
            None if rule.action.get("kind", "empty") == "empty" else compile_action(rule.action),
            everything=_is_true(rule) and rule.action.get("kind", "empty") == "empty",
        )
        for rule in rules
    ]


def _is_true(rule: RuleRecord) -> bool:
    kind = rule.filter.get("kind")
    expression = str(rule.filter.get("expression", "")).replace(" ", "")
    return kind == "true" or (kind == "sql" and expression == "1=1")


def gives_everything(rules: list[CompiledRule]) -> bool:
    """True when ``rules`` copy every message as sent (the one rule a subscription starts with)."""
    return any(rule.everything for rule in rules) and all(rule.action is None for rule in rules)


def view_of(parsed: ParsedMessage, enqueued_at: float) -> MessageView:
    props = parsed.properties
    ttl = parsed.ttl_ms
    system: dict[str, Any] = {name: props[index] for name, index in _SYSTEM_FIELDS.items()}
    system["ContentType"] = None if props[6] is None else str(props[6])
    system["TimeToLive"] = None if ttl is None else datetime.timedelta(milliseconds=ttl)
    system["EnqueuedTimeUtc"] = datetime.datetime.fromtimestamp(enqueued_at, datetime.timezone.utc)
    properties = {str(k): v for k, v in parsed.application_properties.items()}
    return MessageView(system=system, properties=properties)


def route(rules: list[CompiledRule], parsed: ParsedMessage, enqueued_at: float) -> list[Copy]:
    """The copies ``rules`` give of ``parsed`` (none when no rule matches)."""
    view = view_of(parsed, enqueued_at)
    copies: list[Copy] = []
    plain = False
    try:
        for rule in rules:
            if not rule.filter.matches(view):
                continue
            if rule.action is None:
                plain = True
                continue
            copies.append(_acted(parsed, view, rule.name, rule.action))
    except EvaluationError as exc:
        return [Copy(parsed.rest, failed=str(exc)[:200])]
    if plain:
        copies.insert(0, Copy(parsed.rest))
    return copies


def _acted(parsed: ParsedMessage, view: MessageView, name: str, action: Action) -> Copy:
    edit = action.apply(view)
    properties = dict(view.properties) if edit is None else dict(edit.properties)
    properties["RuleName"] = name
    fields = list(parsed.properties)
    if edit is not None:
        for key, value in edit.system.items():
            index = _SYSTEM_FIELDS.get(key.removeprefix("sys."))
            if index is not None:
                fields[index] = symbol(value) if index == 6 and value is not None else value
    return Copy(rewritten(parsed.rest, fields, properties), fields=fields)
