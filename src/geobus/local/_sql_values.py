"""Service Bus SQL's values: what an expression reads and what its operators make of values.

Used by ``_sql`` (which compiles an expression into calls to these) and ``_rules``; the
semantics and their sources are listed in ``_rules``'s docstring. A message is an ``Env``
(system and application properties, the latter named case-insensitively). Operators
follow C# operator binding (``category``): ``compare`` and ``arithmetic`` give None
(unknown) for a null or a type mismatch, long arithmetic wraps, doubles are IEEE 754,
``+`` with a string concatenates, LIKE matches in linear time, and AND, OR and NOT follow
SQL's three-valued tables. A failure the service's evaluation throws is ``EvaluationError``.
"""

from __future__ import annotations

import datetime
import functools
import math
import operator
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

INT64 = 2**63
_SYSTEM_NAMES = (
    "ContentType", "CorrelationId", "DeadLetterSource", "DeliveryCount", "EnqueuedSequenceNumber",
    "EnqueuedTimeUtc", "ExpiresAtUtc", "ForcePersistence", "Label", "LockedUntilUtc", "LockToken",
    "MessageId", "PartitionKey", "ReplyTo", "ReplyToSessionId", "ScheduledEnqueueTimeUtc",
    "SequenceNumber", "SessionId", "Size", "State", "TimeToLive", "To", "ViaPartitionKey",
)  # fmt: skip
# sys.<name> (case-insensitive) -> the MessageView key; Subject is the new SDKs' Label.
SYSTEM_PROPERTIES = {name.lower(): name for name in _SYSTEM_NAMES} | {"subject": "Label"}
# What an action may SET or REMOVE: the string system properties an application sets.
SETTABLE = frozenset(
    {
        "MessageId", "CorrelationId", "To", "ReplyTo",
        "Label", "SessionId", "ReplyToSessionId", "ContentType",
    }
)  # fmt: skip


class EvaluationError(Exception):
    """Evaluating a compiled filter or action failed, as the service's FilterException."""


@dataclass(frozen=True)
class Env:
    """What an expression reads: system properties by their ``SYSTEM_PROPERTIES`` names
    (absent or None: not set) and application properties."""

    system: Mapping[str, Any]
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class PropRef:
    """A property an expression names: a system one (canonical name) or a user one."""

    system: bool
    name: str


Evaluator = Callable[[Env], Any]


def find_key(properties: Mapping[str, Any], name: str) -> str | None:
    """The key of ``properties`` that ``name`` names: property names are case-insensitive."""
    if name in properties:
        return name
    folded = name.casefold()
    return next((key for key in properties if key.casefold() == folded), None)


def read(ref: PropRef, env: Env) -> Any:
    """The value of the property ``ref`` names (None: not set)."""
    if ref.system:
        return env.system.get(ref.name)
    key = find_key(env.properties, ref.name)
    return None if key is None else env.properties[key]


def exists(ref: PropRef, env: Env) -> bool:
    """``EXISTS(ref)``: a system property exists when set, an application one when present."""
    if ref.system:
        return env.system.get(ref.name) is not None
    return find_key(env.properties, ref.name) is not None


def category(value: Any) -> str | None:
    """The type family C# operator binding would see (None for null)."""
    if value is None:
        return None
    for kind, name in _CATEGORIES:
        if isinstance(value, kind):
            return name
    return "other"


# bool before int: a Python bool is an int, a C# one is not.
_CATEGORIES: tuple[tuple[type, str], ...] = (
    (bool, "bool"), (int, "int"), (float, "float"), (str, "str"),
    (datetime.datetime, "datetime"), (datetime.timedelta, "timedelta"), (uuid.UUID, "uuid"),
)  # fmt: skip
_NUMERIC = frozenset({"int", "float"})
_ORDERED = frozenset({"int", "float", "datetime", "timedelta"})
_RELATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<>": operator.ne, "!=": operator.ne,
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}  # fmt: skip


def compare(op: str, left: Any, right: Any) -> bool | None:
    """``left op right``; None (unknown) for a null or for types C# cannot compare so."""
    kinds = (category(left), category(right))
    if None in kinds:
        return None
    if kinds[0] in _NUMERIC and kinds[1] in _NUMERIC:
        if "float" in kinds:
            left, right = float(left), float(right)
    elif kinds[0] != kinds[1] or kinds[0] == "other":
        return None
    elif op not in ("=", "<>", "!=") and kinds[0] not in _ORDERED:
        return None  # bool, string and Guid have only == and != in C#
    try:
        return _RELATIONS[op](left, right)
    except TypeError:  # a naive and an aware datetime
        return None


def member(value: Any, items: Iterable[Any], negated: bool) -> bool | None:
    """``value [NOT] IN (items)``: unknown only for a null ``value``; ``items`` are read
    lazily, up to the first equal one."""
    if value is None:
        return None
    found = any(compare("=", value, item) for item in items)
    return found != negated


def _wrap(value: int) -> int:
    # C# long arithmetic is unchecked: it wraps around.
    return (value + INT64) % (2 * INT64) - INT64


def _text(value: Any) -> str:
    """``value`` as C#'s string concatenation writes it."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def arithmetic(op: str, left: Any, right: Any) -> Any:
    """``left op right`` with C#'s promotions; None (unknown) for a null or a type mismatch.

    Raises ``EvaluationError`` for an integer division by zero or a date out of range.
    """
    kinds = (category(left), category(right))
    if None in kinds:
        return None
    if kinds == ("int", "int"):
        if op in "/%" and right == 0:
            raise EvaluationError("Attempted to divide by zero.")
        if op in "/%":
            quotient = abs(left) // abs(right) * (1 if (left < 0) == (right < 0) else -1)
            if quotient == INT64:  # long.MinValue / -1 throws even unchecked
                raise EvaluationError("Arithmetic operation resulted in an overflow.")
            return _wrap(quotient if op == "/" else left - right * quotient)
        return _wrap({"+": operator.add, "-": operator.sub, "*": operator.mul}[op](left, right))
    if kinds[0] in _NUMERIC and kinds[1] in _NUMERIC:
        return _float(op, float(left), float(right))
    if op == "+" and "str" in kinds:
        return _text(left) + _text(right)
    if set(kinds) <= {"datetime", "timedelta"} and op in "+-":
        try:
            result = operator.add(left, right) if op == "+" else operator.sub(left, right)
        except OverflowError as exc:
            raise EvaluationError("The date is out of range.") from exc
        except TypeError:  # timedelta - datetime, or a naive and an aware datetime
            return None
        return result
    return None


def _float(op: str, left: float, right: float) -> float:
    # IEEE 754 as in C#, where Python would raise ZeroDivisionError.
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "%":
        return math.nan if right == 0 else math.fmod(left, right)
    if right != 0:
        return left / right
    if left == 0 or math.isnan(left):
        return math.nan
    return math.copysign(math.inf, left) * math.copysign(1.0, right)


def negate(value: Any) -> Any:
    """Unary ``-value``; None (unknown) for a null or a type without it."""
    kind = category(value)
    if kind == "int":
        return _wrap(-value)
    return -value if kind in ("float", "timedelta") else None


def plus(value: Any) -> Any:
    """Unary ``+value``; None (unknown) for a null or a type without it."""
    return value if category(value) in ("int", "float", "timedelta") else None


_ANY, _ONE = 0, 1  # a LIKE pattern's % and _; its other characters stand for themselves


@functools.lru_cache(maxsize=256)
def like_pattern(pattern: str, escape: str | None) -> tuple[str | int, ...]:
    """A LIKE ``pattern`` as characters, ``_ANY`` (``%``) and ``_ONE`` (``_``).

    Raises ``ValueError`` (its message the service-style detail) for a bad escape.
    """
    if escape is not None and len(escape) != 1:
        raise ValueError("The escape character must be a string of length 1.")
    parts: list[str | int] = []
    chars = iter(pattern)
    for char in chars:
        if char == escape:
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError("The pattern ends with its escape character.")
            parts.append(escaped)
        else:
            parts.append(_ANY if char == "%" else _ONE if char == "_" else char)
    return tuple(parts)


def _wildcard(parts: tuple[str | int, ...], text: str) -> bool:
    """Whether ``parts`` match all of ``text``: greedy, going back to the last % on a
    mismatch, so O(len(parts) * len(text)) where a backtracking regex can be exponential."""
    at = index = 0
    star, resume = -1, 0
    while at < len(text):
        part = parts[index] if index < len(parts) else None
        if part == _ANY:
            star, resume, index = index, at, index + 1
        elif part is not None and (part == _ONE or part == text[at]):
            at, index = at + 1, index + 1
        elif star >= 0:
            resume += 1
            at, index = resume, star + 1
        else:
            return False
    return all(part == _ANY for part in parts[index:])


def like(value: Any, pattern: Any, escape: Any) -> bool | None:
    """``value LIKE pattern [ESCAPE escape]``; None (unknown) unless all are strings (the
    escape may be absent).

    Raises ``EvaluationError`` for a bad escape.
    """
    if not (isinstance(value, str) and isinstance(pattern, str) and isinstance(escape, str | None)):
        return None
    try:
        return _wildcard(like_pattern(pattern, escape), value)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc


def logical_not(value: bool | None) -> bool | None:
    """``NOT value``: unknown stays unknown."""
    return None if value is None else not value


def chain(first: Evaluator, rest: list[tuple[str, Evaluator]]) -> Evaluator:
    """``first op1 operand1 op2 operand2 ...`` (``rest``), left to right, in a loop."""

    def run(env: Env) -> Any:
        value = first(env)
        for op, operand in rest:
            value = arithmetic(op, value, operand(env))
        return value

    return run


def combine(operands: list[Evaluator], stop: bool) -> Evaluator:
    """``AND`` (``stop`` False) or ``OR`` (``stop`` True) of ``operands``, left to right."""

    # AND stops at the first false, OR at the first true; otherwise unknown beats the rest.
    def run(env: Env) -> bool | None:
        result: bool | None = not stop
        for operand in operands:
            value = operand(env)
            if value is None:
                result = None
            elif value == stop:
                return stop
        return result

    return run
