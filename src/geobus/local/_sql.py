"""Service Bus's SQL language for rule filters and actions: tokenizer, parser, evaluator.

Used by ``_rules``; the semantics and their sources are listed in its docstring, what
the operators make of values is ``_sql_values``. An expression compiles once into nested
closures over an ``Env`` (a message's system and application properties); a compile
error is ``AdminError(400)``, worded like the service's "There was an error parsing the
SQL expression. [Token line=..., column=..., Token in error=..., Additional details=...]",
a failure while evaluating is ``EvaluationError``. Operator chains (``a + b + c``,
``x AND y AND z``) run in a loop and nesting is bounded (``MAX_NESTING``), so neither
compiling nor evaluating can recurse deeper than a few hundred frames.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from ._admin_model import AdminError
from ._sql_values import (
    INT64,
    SETTABLE,
    SYSTEM_PROPERTIES,
    Env,
    Evaluator,
    PropRef,
    chain,
    combine,
    compare,
    exists,
    find_key,
    like,
    like_pattern,
    logical_not,
    member,
    negate,
    plus,
    read,
)

MAX_EXPRESSION = 1024  # Service Bus quotas: filter condition and rule action strings
MAX_STATEMENTS = 32  # Service Bus quotas: expressions per rule action
MAX_NESTING = 40  # ours: parentheses, signs, NOTs and function calls inside one another
EXCERPT = 60  # the most of an expression an error message quotes

KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE", "EXISTS"}
)
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


@dataclass(frozen=True)
class Statement:
    """One ``SET target = value`` (``value`` set) or ``REMOVE target`` (``value`` None)."""

    target: PropRef
    value: Callable[[Env], Any] | None


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
        return _Node(combine([self.boolean(node) for node in nodes], stop), True, first.token)

    def negation(self) -> _Node:
        token = self.accept("kw", "NOT")
        if token is None:
            return self.predicate()
        self.nest(token)
        inner = self.boolean(self.negation())
        self.depth -= 1
        return _Node(lambda env: logical_not(inner(env)), True, token)

    def predicate(self) -> _Node:
        keyword = self.accept("kw", "EXISTS")
        if keyword is not None:
            self.expect("op", "(")
            ref = self.property_ref(self.take())
            self.expect("op", ")")
            return _Node(lambda env: exists(ref, env), True, keyword)
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
            return _Node(lambda env: (read(ref, env) is None) != negated, True, left.token)
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
            return member(subject(env), (item(env) for item in items), negated)

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
            matched = like(subject(env), pattern(env), char)
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
        return _Node(chain(self.value(first), rest), False, first.token)

    def unary(self) -> _Node:
        sign = self.accept("op", "+", "-")
        if sign is None:
            return self.primary()
        after = self.peek()
        if sign.value == "-" and after.kind == "int" and after.value == INT64:
            self.take()  # long.MinValue is written as a negated constant one past long.MaxValue
            return _constant(-INT64, sign)
        self.nest(sign)
        inner = self.value(self.unary())
        self.depth -= 1
        if sign.value == "-":
            return _Node(lambda env: negate(inner(env)), False, sign)
        return _Node(lambda env: plus(inner(env)), False, sign)

    def primary(self) -> _Node:
        token = self.take()
        if token.kind in ("int", "float", "str"):
            if token.kind == "int" and token.value >= INT64:
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
            return _Node(lambda env: read(ref, env), False, token, prop=ref)
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
            return read(PropRef(False, key), env) if isinstance(key, str) else None

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
