"""Rule descriptions: the XML of a ``RuleRecord``'s filter and action.

A ``Filter`` is typed by ``i:type``: ``SqlFilter`` (``SqlExpression``, ``Parameters``),
``TrueFilter``, ``FalseFilter`` or ``CorrelationFilter`` (``CorrelationId``... with
``Label`` for the subject, and ``Properties``); an ``Action`` is ``SqlRuleAction`` or
``EmptyRuleAction``. Parameters and properties are ``KeyValueOfstringanyType`` pairs
whose ``Value`` names an XML Schema type (``i:type="d6p1:int"``, with ``d6p1`` bound
on the value itself, as the service and the SDK write it); they travel to and from
the ``FilterSpec`` / ``ActionSpec`` mappings of ``_admin_model`` as Python values.

A true filter reads as ``{"kind": "true"}`` and is shown as the service shows a
``$Default`` rule's: ``TrueFilter`` with ``1=1``; a false one as ``FalseFilter`` with
``1=0``. Every described rule has an ``Action`` (the SDK reads one unconditionally).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping
from typing import Any
from xml.etree import ElementTree

from . import _atom
from ._admin_model import ActionSpec, AdminError, FilterSpec, RuleRecord
from ._atom import DESCRIPTION_NAMESPACES, XSD_NS, element

COMPATIBILITY_LEVEL = "20"
_INT32 = 2**31 - 1

# (element, FilterSpec key) of a correlation filter, in the service's order.
_CORRELATION = (
    ("CorrelationId", "correlation_id"),
    ("MessageId", "message_id"),
    ("To", "to"),
    ("ReplyTo", "reply_to"),
    ("Label", "subject"),
    ("SessionId", "session_id"),
    ("ReplyToSessionId", "reply_to_session_id"),
    ("ContentType", "content_type"),
)


def parse_filter_and_action(description: ElementTree.Element) -> tuple[FilterSpec, ActionSpec]:
    """The filter and action a ``RuleDescription`` (or a subscription's
    ``DefaultRuleDescription``) holds; no filter is a true one, no action an empty one."""
    if _atom.local_name(description) not in ("RuleDescription", "DefaultRuleDescription"):
        raise AdminError(
            400,
            f"A '{_atom.local_name(description)}' cannot be put here: a RuleDescription was expected.",
        )
    filter_node = _atom.child(description, "Filter")
    action_node = _atom.child(description, "Action")
    filter_: FilterSpec = {"kind": "true"} if filter_node is None else _parse_filter(filter_node)
    action: ActionSpec = {"kind": "empty"} if action_node is None else _parse_action(action_node)
    return filter_, action


def _parse_filter(node: ElementTree.Element) -> FilterSpec:
    kind = _atom.xsi_type(node)
    if kind == "SqlFilter":
        return {"kind": "sql", **_sql(node, "SqlFilter")}
    if kind == "TrueFilter":
        return {"kind": "true"}
    if kind == "FalseFilter":
        return {"kind": "false"}
    if kind == "CorrelationFilter":
        spec: FilterSpec = {"kind": "correlation"}
        for name, key in _CORRELATION:
            text = _atom.text_of(_atom.child(node, name))
            if text is not None:
                spec[key] = text
        properties = _atom.child(node, "Properties")
        spec["properties"] = {} if properties is None else parse_key_values(properties)
        return spec
    raise AdminError(
        400,
        f"A rule's Filter of type '{kind}' is not known: SqlFilter, TrueFilter, FalseFilter "
        "or CorrelationFilter was expected.",
    )


def _parse_action(node: ElementTree.Element) -> ActionSpec:
    kind = _atom.xsi_type(node)
    if kind == "SqlRuleAction":
        return {"kind": "sql", **_sql(node, "SqlRuleAction")}
    if kind in ("EmptyRuleAction", None):
        return {"kind": "empty"}
    raise AdminError(
        400,
        f"A rule's Action of type '{kind}' is not known: SqlRuleAction or EmptyRuleAction was expected.",
    )


def _sql(node: ElementTree.Element, what: str) -> dict[str, Any]:
    expression = _atom.text_of(_atom.child(node, "SqlExpression"))
    if not expression or not expression.strip():
        raise AdminError(400, f"A {what} needs a SqlExpression.")
    parameters = _atom.child(node, "Parameters")
    return {
        "expression": expression,
        "parameters": {} if parameters is None else parse_key_values(parameters),
    }


def describe_rule(record: RuleRecord) -> str:
    """The record's ``RuleDescription`` element."""
    return (
        f"<RuleDescription {DESCRIPTION_NAMESPACES}>"
        f"{_describe_filter(record.filter)}{_describe_action(record.action)}"
        f"{element('CreatedAt', _atom.format_time(record.created_at))}"
        f"{element('Name', record.name)}</RuleDescription>"
    )


def _describe_filter(spec: FilterSpec) -> str:
    kind = spec.get("kind")
    if kind == "true":
        return _describe_sql("Filter", "TrueFilter", "1=1", {})
    if kind == "false":
        return _describe_sql("Filter", "FalseFilter", "1=0", {})
    if kind == "correlation":
        parts = [
            element(name, str(spec[key])) for name, key in _CORRELATION if spec.get(key) is not None
        ]
        properties = spec.get("properties") or {}
        if properties:
            parts.append(f"<Properties>{describe_key_values(properties)}</Properties>")
        return f'<Filter i:type="CorrelationFilter">{"".join(parts)}</Filter>'
    return _describe_sql(
        "Filter", "SqlFilter", str(spec.get("expression", "")), spec.get("parameters") or {}
    )


def _describe_action(spec: ActionSpec) -> str:
    if spec.get("kind") == "sql":
        return _describe_sql(
            "Action", "SqlRuleAction", str(spec.get("expression", "")), spec.get("parameters") or {}
        )
    return '<Action i:type="EmptyRuleAction"/>'


def _describe_sql(tag: str, kind: str, expression: str, parameters: Mapping[str, Any]) -> str:
    inner = element("SqlExpression", expression) + element(
        "CompatibilityLevel", COMPATIBILITY_LEVEL
    )
    if parameters:
        inner += f"<Parameters>{describe_key_values(parameters)}</Parameters>"
    return f'<{tag} i:type="{kind}">{inner}</{tag}>'


# -- typed key-value pairs ------------------------------------------------------------


def _parse_float(text: str, what: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise AdminError(400, f"The value '{text[:40]}' is not valid for {what}.") from None


_VALUE_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "string": lambda text, _what: text,
    "guid": lambda text, _what: text.strip(),
    "boolean": _atom.parse_bool,
    "double": _parse_float,
    "float": _parse_float,
    "decimal": _parse_float,
    "dateTime": _atom.parse_time,
    "duration": _atom.parse_duration,
    **dict.fromkeys(
        (
            "int",
            "long",
            "short",
            "byte",
            "unsignedByte",
            "unsignedShort",
            "unsignedInt",
            "unsignedLong",
        ),
        _atom.parse_int,
    ),
}


def parse_key_values(node: ElementTree.Element) -> dict[str, Any]:
    """A ``Parameters`` or ``Properties`` element's pairs, each value of its named type
    (``string`` when it names none)."""
    values: dict[str, Any] = {}
    for _, pair in _atom.children(node):
        key = _atom.text_of(_atom.child(pair, "Key"))
        if key is None:
            raise AdminError(400, "A rule's key-value pair has no Key.")
        value_node = _atom.child(pair, "Value")
        if value_node is None:  # absent or i:nil
            values[key] = None
            continue
        type_name = _atom.xsi_type(value_node) or "string"
        parser = _VALUE_PARSERS.get(type_name)
        if parser is None:
            raise AdminError(
                400,
                f"The value of '{key[:40]}' has a type, '{type_name[:40]}', that rules do not take.",
            )
        values[key] = parser(value_node.text or "", f"the value of '{key[:40]}'")
    return values


def _value_type(value: Any) -> tuple[str, str]:
    if isinstance(value, bool):  # before int: a bool is an int
        return "boolean", _atom.format_bool(value)
    if isinstance(value, int):
        return ("int" if -_INT32 - 1 <= value <= _INT32 else "long"), str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return "double", "NaN" if math.isnan(value) else ("INF" if value > 0 else "-INF")
        return "double", repr(value)
    if isinstance(value, datetime.datetime):
        return "dateTime", _atom.format_time(value)
    if isinstance(value, datetime.timedelta):
        return "duration", _atom.format_duration(value)
    return "string", str(value)


def describe_key_values(values: Mapping[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        if value is None:
            value_xml = f'<Value xmlns:d6p1="{XSD_NS}" i:type="d6p1:string" i:nil="true"/>'
        else:
            type_name, text = _value_type(value)
            value_xml = element("Value", text, f'xmlns:d6p1="{XSD_NS}" i:type="d6p1:{type_name}"')
        parts.append(
            f"<KeyValueOfstringanyType>{element('Key', key)}{value_xml}</KeyValueOfstringanyType>"
        )
    return "".join(parts)
