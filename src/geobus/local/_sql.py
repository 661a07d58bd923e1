"""Service Bus's SQL language for rule filters and actions: tokenizer, parser, evaluator.

Used by ``_rules``; the semantics and their sources are listed in its docstring. An
expression compiles once into nested closures over an ``Env`` (a message's system and
application properties); a compile error is ``AdminError(400)``, worded like the
service's "There was an error parsing the SQL expression. [Token line=..., column=...,
Token in error=..., Additional details=...]", a failure while evaluating is
``EvaluationError``. Operator chains (``a + b + c``, ``x AND y AND z``) run in a loop and
nesting is bounded (``MAX_NESTING``), so neither compiling nor evaluating can recurse
deeper than a few hundred frames.
"""

from __future__ import annotations

import datetime
import functools
import math
import operator
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from ._admin_model import AdminError

MAX_EXPRESSION = 1024  # Service Bus quotas: filter condition and rule action strings
MAX_STATEMENTS = 32  # Service Bus quotas: expressions per rule action
MAX_NESTING = 40  # ours: parentheses, signs, NOTs and function calls inside one another
EXCERPT = 60  # the most of an expression an error message quotes

_INT64 = 2**63
KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE", "EXISTS"}
)
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
_COMPARISONS = frozenset({"=", "<>", "!=", ">", ">=", "<", "<="})
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    | (?P<number>\d+(?P<fraction>\.\d*)?(?P<exponent>[eE][+-]?\d+)?)
    | (?P<str>'(?:[^']|'')*')
    | (?P<bracket>\[(?:[^\]]|\]\])*\])
    | (?P<double>"(?:[^"]|"")*")
    | (?P<param>@\w+)
    | (?P<name>[^\W\d_]\w*)
    | (?P<op><>|!=|>=|<=|[=><+\-*/%(),.;])""",
    re.VERBOSE,
)
# The closing character of each quoted token, which it doubles to stand for itself.
_QUOTES = {"str": "'", "bracket": "]", "double": '"'}


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


@dataclass(frozen=True)
class Statement:
    """One ``SET target = value`` (``value`` set) or ``REMOVE target`` (``value`` None)."""

    target: PropRef
    value: Callable[[Env], Any] | None


Evaluator = Callable[[Env], Any]


@dataclass(frozen=True)
class _Token:
    kind: str  # int float str name quoted param op kw end
    text: str
    value: Any
    pos: int


@dataclass(frozen=True)
class _Node:
    run: Evaluator
    boolean: bool  # a predicate (true, false or None for unknown), not a value
    token: _Token
    prop: PropRef | None = None
    constant: bool = False


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


def find_key(properties: Mapping[str, Any], name: str) -> str | None:
    """The key of ``properties`` that ``name`` names: property names are case-insensitive."""
    if name in properties:
        return name
    folded = name.casefold()
    return next((key for key in properties if key.casefold() == folded), None)


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


def _wrap(value: int) -> int:
    # C# long arithmetic is unchecked: it wraps around.
    return (value + _INT64) % (2 * _INT64) - _INT64


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
            if quotient == _INT64:  # long.MinValue / -1 throws even unchecked
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


def _negate(value: Any) -> Any:
    kind = category(value)
    if kind == "int":
        return _wrap(-value)
    return -value if kind in ("float", "timedelta") else None


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


def _like(value: Any, pattern: Any, escape: Any) -> bool | None:
    if not (isinstance(value, str) and isinstance(pattern, str) and isinstance(escape, str | None)):
        return None
    try:
        return _wildcard(like_pattern(pattern, escape), value)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from exc


def _read(ref: PropRef, env: Env) -> Any:
    if ref.system:
        return env.system.get(ref.name)
    key = find_key(env.properties, ref.name)
    return None if key is None else env.properties[key]


def _exists(ref: PropRef, env: Env) -> bool:
    if ref.system:
        return env.system.get(ref.name) is not None
    return find_key(env.properties, ref.name) is not None


def syntax_error(source: str, pos: int, token: str, details: str) -> AdminError:
    """The service's parse error for ``token`` at ``pos`` of ``source`` (quoting at most
    ``EXCERPT`` characters of it)."""
    line = source.count("\n", 0, pos) + 1
    column = pos - (source.rfind("\n", 0, pos) + 1) + 1
    excerpt = token if len(token) <= EXCERPT else token[: EXCERPT - 3] + "..."
    return AdminError(
        400,
        "There was an error parsing the SQL expression. [Token line="
        f"{line}, column={column}, Token in error= {excerpt}, Additional details= {details}]",
    )


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            char = source[pos]
            if char in "'[\"":
                what = "string constant" if char == "'" else "identifier"
                raise syntax_error(source, pos, source[pos:], f"The {what} is not terminated.")
            if char == "@":
                raise syntax_error(source, pos, char, "A parameter name must follow '@'.")
            raise syntax_error(source, pos, char, f"Unrecognized character. '{char}'")
        kind, text, pos = str(match.lastgroup), match.group(), match.end()
        value: Any = text
        if kind == "number":
            exact = match.group("fraction") is None and match.group("exponent") is None
            kind, value = ("int", int(text)) if exact else ("float", float(text))
        elif kind in _QUOTES:
            close = _QUOTES[kind]
            value = text[1:-1].replace(close * 2, close)
            if kind != "str" and not value:
                raise syntax_error(source, match.start(), text, "An identifier cannot be empty.")
            kind = "str" if kind == "str" else "quoted"
        elif kind == "name" and text.upper() in KEYWORDS:
            kind, value = "kw", text.upper()
        if kind != "space":
            tokens.append(_Token(kind, text, value, match.start()))
    tokens.append(_Token("end", "", None, len(source)))
    return tokens


def _unexpected(token: _Token) -> str:
    return "Unexpected end of expression." if token.kind == "end" else "Unexpected token."


def _constant(value: Any, token: _Token) -> _Node:
    return _Node(lambda env: value, False, token, constant=True)


def _chain(first: Evaluator, rest: list[tuple[str, Evaluator]]) -> Evaluator:
    def run(env: Env) -> Any:
        value = first(env)
        for op, operand in rest:
            value = arithmetic(op, value, operand(env))
        return value

    return run


def _combine(operands: list[Evaluator], stop: bool) -> Evaluator:
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


class _Parser:
    """Precedence climbing over ``_tokenize``'s tokens, from OR down to a primary."""

    def __init__(self, source: str, parameters: Mapping[str, Any]) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.index = 0
        self.depth = 0
        self.parameters = parameters

    def fail(self, token: _Token, details: str) -> NoReturn:
        raise syntax_error(self.source, token.pos, token.text, details)

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def accept(self, kind: str, *values: str) -> _Token | None:
        token = self.peek()
        if token.kind == kind and (not values or token.value in values):
            return self.take()
        return None

    def expect(self, kind: str, value: str) -> _Token:
        token = self.accept(kind, value)
        if token is None:
            found = self.peek()
            self.fail(found, _unexpected(found) if found.kind == "end" else f"Expected '{value}'.")
        return token

    def nest(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.fail(token, f"The expression is nested more than {MAX_NESTING} levels deep.")

    def boolean(self, node: _Node) -> Evaluator:
        if not node.boolean:
            self.fail(node.token, "A condition is expected here, not a value.")
        return node.run

    def value(self, node: _Node) -> Evaluator:
        if node.boolean:
            self.fail(node.token, "A value is expected here, not a condition.")
        return node.run

    def finish(self) -> None:
        if self.peek().kind != "end":
            self.fail(self.peek(), _unexpected(self.peek()))

    def disjunction(self) -> _Node:
        return self._logical("OR", self.conjunction, stop=True)

    def conjunction(self) -> _Node:
        return self._logical("AND", self.negation, stop=False)

    def _logical(self, keyword: str, operand: Callable[[], _Node], stop: bool) -> _Node:
        first = operand()
        nodes = [first]
        while self.accept("kw", keyword):
            nodes.append(operand())
        if len(nodes) == 1:
            return first
        return _Node(_combine([self.boolean(node) for node in nodes], stop), True, first.token)

    def negation(self) -> _Node:
        token = self.accept("kw", "NOT")
        if token is None:
            return self.predicate()
        self.nest(token)
        inner = self.boolean(self.negation())
        self.depth -= 1
        return _Node(lambda env: None if (value := inner(env)) is None else not value, True, token)

    def predicate(self) -> _Node:
        exists = self.accept("kw", "EXISTS")
        if exists is not None:
            self.expect("op", "(")
            ref = self.property_ref(self.take())
            self.expect("op", ")")
            return _Node(lambda env: _exists(ref, env), True, exists)
        left = self.additive()
        token = self.peek()
        if token.kind == "op" and token.value in _COMPARISONS:
            self.take()
            lhs, rhs, op = self.value(left), self.value(self.additive()), token.value
            return _Node(lambda env: compare(op, lhs(env), rhs(env)), True, left.token)
        if self.accept("kw", "IS"):
            negated = self.accept("kw", "NOT") is not None
            self.expect("kw", "NULL")
            if left.prop is None:
                self.fail(left.token, "IS NULL applies to a property only.")
            ref = left.prop
            return _Node(lambda env: (_read(ref, env) is None) != negated, True, left.token)
        negated = token.kind == "kw" and token.value == "NOT"
        negated = negated and self.peek(1).kind == "kw" and self.peek(1).value in ("IN", "LIKE")
        if negated:
            self.take()
        if self.accept("kw", "IN"):
            return self.membership(left, negated)
        if self.accept("kw", "LIKE"):
            return self.like(left, negated)
        return left

    def membership(self, left: _Node, negated: bool) -> _Node:
        subject = self.value(left)
        self.expect("op", "(")
        items = [self.value(self.additive())]
        while self.accept("op", ","):
            items.append(self.value(self.additive()))
        self.expect("op", ")")

        def run(env: Env) -> bool | None:
            value = subject(env)
            if value is None:
                return None
            found = any(compare("=", value, item(env)) for item in items)
            return found != negated

        return _Node(run, True, left.token)

    def like(self, left: _Node, negated: bool) -> _Node:
        subject, pattern_node = self.value(left), self.additive()
        pattern = self.value(pattern_node)
        escape_node = self.additive() if self.accept("kw", "ESCAPE") else None
        escape = None if escape_node is None else self.value(escape_node)
        if pattern_node.constant and (escape_node is None or escape_node.constant):
            # Constant pattern and escape: refuse a bad one now, as the service does.
            text = pattern(Env({}, {}))
            char = None if escape is None else escape(Env({}, {}))
            if isinstance(text, str) and isinstance(char, str | None):
                try:
                    like_pattern(text, char)
                except ValueError as exc:
                    self.fail((escape_node or pattern_node).token, str(exc))

        def run(env: Env) -> bool | None:
            char = None if escape is None else escape(env)
            if escape is not None and char is None:
                return None
            matched = _like(subject(env), pattern(env), char)
            return None if matched is None else matched != negated

        return _Node(run, True, left.token)

    def additive(self) -> _Node:
        return self._arithmetic(("+", "-"), self.multiplicative)

    def multiplicative(self) -> _Node:
        return self._arithmetic(("*", "/", "%"), self.unary)

    def _arithmetic(self, ops: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        first = operand()
        rest: list[tuple[str, Evaluator]] = []
        while (token := self.accept("op", *ops)) is not None:
            rest.append((token.value, self.value(operand())))
        if not rest:
            return first
        return _Node(_chain(self.value(first), rest), False, first.token)

    def unary(self) -> _Node:
        sign = self.accept("op", "+", "-")
        if sign is None:
            return self.primary()
        after = self.peek()
        if sign.value == "-" and after.kind == "int" and after.value == _INT64:
            self.take()  # long.MinValue is written as a negated constant one past long.MaxValue
            return _constant(-_INT64, sign)
        self.nest(sign)
        inner = self.value(self.unary())
        self.depth -= 1
        if sign.value == "-":
            return _Node(lambda env: _negate(inner(env)), False, sign)

        def plus(env: Env) -> Any:
            value = inner(env)
            return value if category(value) in ("int", "float", "timedelta") else None

        return _Node(plus, False, sign)

    def primary(self) -> _Node:
        token = self.take()
        if token.kind in ("int", "float", "str"):
            if token.kind == "int" and token.value >= _INT64:
                self.fail(token, "The integer constant is out of range.")
            return _constant(token.value, token)
        if token.kind == "kw" and token.value in ("TRUE", "FALSE", "NULL"):
            return _constant({"TRUE": True, "FALSE": False, "NULL": None}[token.value], token)
        if token.kind == "param":
            key = find_key(self.parameters, token.value)
            if key is None:
                self.fail(token, f"The parameter {token.value} has no value.")
            return _constant(self.parameters[key], token)
        if token.kind == "op" and token.value == "(":
            self.nest(token)
            inner = self.disjunction()
            self.expect("op", ")")
            self.depth -= 1
            return inner
        if token.kind == "name" and self.peek().kind == "op" and self.peek().value == "(":
            return self.function(token)
        if token.kind in ("name", "quoted"):
            ref = self.property_ref(token)
            return _Node(lambda env: _read(ref, env), False, token, prop=ref)
        self.fail(token, _unexpected(token))

    def function(self, token: _Token) -> _Node:
        name = token.value.lower()
        self.nest(self.take())
        if name == "newid":
            self.expect("op", ")")
            self.depth -= 1
            return _Node(lambda env: uuid.uuid4(), False, token)
        if name not in ("property", "p"):
            self.fail(token, f"Unknown function '{token.text}'.")
        argument = self.value(self.disjunction())
        self.expect("op", ")")
        self.depth -= 1

        # property(name) reads application properties only: the service gives nothing
        # for property('sys.Label') (MicrosoftDocs/azure-docs issue 87667).
        def run(env: Env) -> Any:
            key = argument(env)
            return _read(PropRef(False, key), env) if isinstance(key, str) else None

        return _Node(run, False, token)

    def property_ref(self, token: _Token) -> PropRef:
        if token.kind not in ("name", "quoted"):
            self.fail(token, "A property name is expected.")
        if not self.accept("op", "."):
            return PropRef(False, token.value)
        scope = token.value.lower()
        name = self.take()
        if scope not in ("sys", "user"):
            self.fail(token, "The scope of a property must be 'sys' or 'user'.")
        if name.kind not in ("name", "quoted", "kw"):
            self.fail(name, "A property name is expected.")
        if scope == "user":
            return PropRef(False, name.text if name.kind == "kw" else name.value)
        canonical = SYSTEM_PROPERTIES.get(str(name.value).lower())
        if canonical is None:
            self.fail(name, f"'{name.text}' is not a system property of a message.")
        return PropRef(True, canonical)


def _checked(source: Any, what: str, limit_name: str) -> str:
    if not isinstance(source, str) or not source.strip():
        raise AdminError(400, f"The SQL {what} expression is empty.")
    if len(source) > MAX_EXPRESSION:
        length = f"{len(source)} characters long; the maximum is {MAX_EXPRESSION}"
        raise AdminError(400, f"The {limit_name} is {length}.")
    return source


def compile_predicate(source: Any, parameters: Mapping[str, Any]) -> Callable[[Env], bool | None]:
    """A SQL filter's condition as a function of a message: true, false or None (unknown).

    Raises ``AdminError(400)`` for an expression the service would refuse.
    """
    parser = _Parser(_checked(source, "filter", "filter condition string"), parameters)
    node = parser.disjunction()
    parser.finish()
    return parser.boolean(node)


def compile_statements(source: Any, parameters: Mapping[str, Any]) -> tuple[Statement, ...]:
    """A SQL rule action's statements (``SET p = e``, ``REMOVE p``; ``;`` optional between).

    Raises ``AdminError(400)`` for an action the service would refuse.
    """
    parser = _Parser(_checked(source, "action", "rule action string"), parameters)
    statements: list[Statement] = []
    while True:
        while parser.accept("op", ";"):
            pass
        token = parser.take()
        if token.kind == "end":
            break
        verb = token.text.upper() if token.kind == "name" else ""
        if verb not in ("SET", "REMOVE"):
            parser.fail(token, "SET or REMOVE is expected.")
        target_token = parser.peek()
        target = parser.property_ref(parser.take())
        if target.system and target.name not in SETTABLE:
            details = f"The system property '{target.name}' cannot be changed by an action."
            parser.fail(target_token, details)
        value = None
        if verb == "SET":
            parser.expect("op", "=")
            value = parser.value(parser.additive())
        statements.append(Statement(target, value))
        if len(statements) > MAX_STATEMENTS:
            parser.fail(token, f"A rule action has at most {MAX_STATEMENTS} statements.")
    if not statements:
        parser.fail(token, "A rule action needs at least one SET or REMOVE statement.")
    return tuple(statements)
