"""Subscription rules of the local namespace (``geobus.local._rules``), without a broker.

Each table gives an expression, the message it reads and what Service Bus makes of it
("Subscription Rule SQL Filter Syntax", "... SQL Action Syntax", "Topic filters and
actions"). A filter that is unknown must not match, and neither must its negation: the
tables check ``NOT (...)`` wherever a result is unknown rather than false.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest

from geobus.local._admin_model import FOREVER, AdminError
from geobus.local._rules import (
    EvaluationError,
    MessageEdit,
    MessageView,
    compile_action,
    compile_filter,
)

NOW = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
GUID = uuid.UUID("6f1c4d0e-2b9a-4c55-9d43-0d7c2a8f4b11")
SYSTEM: dict[str, Any] = {
    "MessageId": "m-1",
    "CorrelationId": "c-1",
    "To": "store-5",
    "ReplyTo": "replies",
    "Label": "a bus ride",
    "SessionId": "s-1",
    "ReplyToSessionId": "rs-1",
    "ContentType": "application/json",
    "TimeToLive": datetime.timedelta(minutes=5),
    "EnqueuedTimeUtc": NOW,
    "DeliveryCount": 1,
    "SequenceNumber": 42,
    "Size": 100,
}
PROPERTIES: dict[str, Any] = {
    "color": "red",
    "Quantity": 10,
    "price": 2.5,
    "flag": True,
    "when": NOW,
    "id": GUID,
    "empty": None,
    "zero": 0,
    "word": "it's",
    "pct": "50%",
    "p": 3,
    "größe": "L",
    "Property With Space": "x",
    "HR-EmployeeID": 7,
    "odd]name": 1,
    'say "hi"': 2,
    "two": "ab",
    "bang": "red!",
}
MESSAGE = MessageView(SYSTEM, PROPERTIES)
PARAMETERS: dict[str, Any] = {
    "@name": "red",
    "@n": 10,
    "@half": 0.5,
    "@yes": True,
    "@when": NOW,
    "@guid": GUID,
    "@minute": datetime.timedelta(minutes=1),
    "@zero": datetime.timedelta(0),
    "@forever": FOREVER,
    "@nothing": None,
}
LOGIC = {"T": "1 = 1", "F": "1 = 0", "U": "missing = 1"}  # true, false, unknown
FIELDS = (  # a correlation filter's fields and the system property each matches
    ("correlation_id", "CorrelationId"),
    ("message_id", "MessageId"),
    ("to", "To"),
    ("reply_to", "ReplyTo"),
    ("subject", "Label"),
    ("label", "Label"),
    ("session_id", "SessionId"),
    ("reply_to_session_id", "ReplyToSessionId"),
    ("content_type", "ContentType"),
)


def matches(expression: str, view: MessageView = MESSAGE) -> bool:
    """Whether the SQL filter ``expression`` (with ``PARAMETERS``) takes ``view``."""
    spec = {"kind": "sql", "expression": expression, "parameters": PARAMETERS}
    return compile_filter(spec).matches(view)


def apply(expression: str, view: MessageView, parameters: Any = None) -> MessageEdit | None:
    """What the SQL action ``expression`` makes of ``view``."""
    spec = {"kind": "sql", "expression": expression, "parameters": parameters}
    return compile_action(spec).apply(view)


def refused(call: Any, *args: Any) -> str:
    """The message of the ``AdminError(400)`` that ``call(*args)`` raises."""
    with pytest.raises(AdminError) as caught:
        call(*args)
    assert caught.value.status == 400
    return caught.value.message


class TestComparison:
    """= <> != > >= < <= with C#'s promotions; other type mixes are unknown."""

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("color = 'red'", True),
            ("color = 'RED'", False),  # ordinal, as C# ==
            ("color <> 'blue'", True),
            ("color != 'red'", False),
            ("Quantity = 10", True),
            ("Quantity > 9", True),
            ("Quantity >= 10", True),
            ("Quantity < 10", False),
            ("Quantity <= 10", True),
            ("Quantity <> 10", False),
            ("Quantity = 10.0", True),
            ("price > 2", True),
            ("price = 2.5", True),
            ("2.5 = price", True),
            ("flag = TRUE", True),
            ("flag <> FALSE", True),
            ("when = sys.EnqueuedTimeUtc", True),
            ("when >= sys.EnqueuedTimeUtc", True),
            ("when < sys.EnqueuedTimeUtc", False),
            ("sys.TimeToLive > @minute", True),
            ("id = @guid", True),
            ("id <> @guid", False),
            ("color = color", True),
        ],
    )
    def test_operators(self, expression: str, expected: bool) -> None:
        assert matches(expression) is expected

    @pytest.mark.parametrize(
        "expression",
        [
            "Quantity = '10'",  # a number and a string (azure-docs issue 56144)
            "Quantity > '9'",
            "color > 'a'",  # C# strings have no <
            "flag > FALSE",
            "flag = 1",  # a C# bool is not a number
            "id = '6f1c4d0e-2b9a-4c55-9d43-0d7c2a8f4b11'",
            "id > @guid",
            "when = 1",
            "color = NULL",
            "NULL = NULL",
            "missing = missing",
            "empty = 1",
        ],
    )
    def test_mismatches_are_unknown(self, expression: str) -> None:
        assert matches(expression) is False
        assert matches(f"NOT ({expression})") is False


class TestArithmetic:
    """+ - * / % and signs: long (wrapping, truncating) and double, as in C#."""

    @pytest.mark.parametrize(
        "expression",
        [
            "Quantity + 1 = 11",
            "Quantity - 11 = -1",
            "Quantity * 2 = 20",
            "Quantity / 3 = 3",
            "-7 / 2 = -3",
            "-7 % 3 = -1",
            "7 % -3 = 1",
            "Quantity / 4.0 = 2.5",
            "price * 2 = 5",
            "1.5 % 1 = 0.5",
            "-Quantity = -10",
            "+Quantity = 10",
            "- -Quantity = 10",
            "2 + 3 * 4 = 14",
            "(2 + 3) * 4 = 20",
            "10 - 2 - 3 = 5",
            "100 / 10 / 5 = 2",
            "9223372036854775807 + 1 = -9223372036854775808",
            "1 / 0.0 > 1000000",
            "-1 / 0.0 < -1000000",
            "color + '!' = 'red!'",
            "color + 1 = 'red1'",
            "'n=' + flag = 'n=True'",
            "'x' + 2.0 = 'x2'",
            "when + @minute > when",
            "when - @minute < when",
            "when - sys.EnqueuedTimeUtc = @zero",
            "sys.TimeToLive - @minute > @minute",
            "-@minute < @zero",
        ],
    )
    def test_true(self, expression: str) -> None:
        assert matches(expression) is True

    @pytest.mark.parametrize(
        "expression",
        [
            "color * 2 = 2",
            "color - 'r' = 'ed'",
            "flag + 1 = 2",
            "-color = 'red'",
            "+color = 'red'",
            "missing + 1 = 1",
            "1 + missing = 1",
            "-missing = 1",
            "color + missing = 'red'",
            "@minute - when = @zero",
        ],
    )
    def test_unknown(self, expression: str) -> None:
        assert matches(expression) is False
        assert matches(f"NOT ({expression})") is False


class TestThreeValuedLogic:
    """AND, OR and NOT follow the documented tables for true, false and unknown."""

    def check(self, expression: str, expected: str) -> None:
        assert matches(expression) is (expected == "T")
        assert matches(f"NOT ({expression})") is (expected == "F")

    @pytest.mark.parametrize(
        ("left", "right", "expected"),
        [
            ("T", "T", "T"), ("T", "F", "F"), ("T", "U", "U"),
            ("F", "T", "F"), ("F", "F", "F"), ("F", "U", "F"),
            ("U", "T", "U"), ("U", "F", "F"), ("U", "U", "U"),
        ],
    )  # fmt: skip
    def test_and(self, left: str, right: str, expected: str) -> None:
        self.check(f"({LOGIC[left]}) AND ({LOGIC[right]})", expected)

    @pytest.mark.parametrize(
        ("left", "right", "expected"),
        [
            ("T", "T", "T"), ("T", "F", "T"), ("T", "U", "T"),
            ("F", "T", "T"), ("F", "F", "F"), ("F", "U", "U"),
            ("U", "T", "T"), ("U", "F", "U"), ("U", "U", "U"),
        ],
    )  # fmt: skip
    def test_or(self, left: str, right: str, expected: str) -> None:
        self.check(f"({LOGIC[left]}) OR ({LOGIC[right]})", expected)

    @pytest.mark.parametrize(("operand", "expected"), [("T", "F"), ("F", "T"), ("U", "U")])
    def test_not(self, operand: str, expected: str) -> None:
        self.check(f"NOT ({LOGIC[operand]})", expected)

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("1 = 0 AND 1 = 0 OR 1 = 1", "T"),  # AND binds tighter than OR
            ("1 = 1 OR 1 = 1 AND 1 = 0", "T"),
            ("NOT 1 = 0 AND 1 = 1", "T"),  # NOT binds tighter than AND
            ("NOT (1 = 0 OR 1 = 1)", "F"),
            ("1 = 1 AND 1 = 1 AND missing = 1", "U"),
            ("1 = 0 OR missing = 1 OR 1 = 0", "U"),
            ("NOT NOT 1 = 1", "T"),
        ],
    )
    def test_precedence(self, expression: str, expected: str) -> None:
        self.check(expression, expected)

    def test_and_stops_at_false(self) -> None:
        assert matches("1 = 0 AND Quantity / zero = 1") is False
        assert matches("1 = 1 OR Quantity / zero = 1") is True


class TestIn:
    """[NOT] IN: unknown only when its left side is."""

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("color IN ('blue', 'red')", True),
            ("color IN ('blue')", False),
            ("color NOT IN ('blue')", True),
            ("color NOT IN ('red', 'blue')", False),
            ("color in ('RED')", False),
            ("Quantity IN (1, 10.0)", True),
            ("Quantity IN (5 + 5)", True),
            ("Quantity IN ('10')", False),
            ("color IN ('blue', missing, 'red')", True),
            ("color NOT IN (missing)", True),
            ("sys.To IN ('Store5', 'store-5')", True),
            ("sys.To NOT IN ('Store1', 'Store2') OR color NOT IN ('red')", True),
        ],
    )
    def test_membership(self, expression: str, expected: bool) -> None:
        assert matches(expression) is expected

    @pytest.mark.parametrize("expression", ["missing IN ('a')", "missing NOT IN ('a')"])
    def test_unknown_left(self, expression: str) -> None:
        assert matches(expression) is False
        assert matches(f"NOT ({expression})") is False


class TestLike:
    """[NOT] LIKE: % any run, _ one character, ESCAPE; ordinal and whole-string."""

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("sys.Label LIKE '%bus%'", True),
            ("sys.Label LIKE 'a%'", True),
            ("sys.Label LIKE 'bus%'", False),
            ("sys.Label LIKE 'a bus'", False),
            ("sys.Label LIKE 'a_bus ride'", True),
            ("sys.Label LIKE 'a__bus%'", False),
            ("sys.Label LIKE '%BUS%'", False),
            ("sys.Label LIKE '%'", True),
            ("sys.Label NOT LIKE '%bus%'", False),
            ("sys.Label NOT LIKE '%car%'", True),
            ("word LIKE 'it''s'", True),
            ("word LIKE 'it_s'", True),
            ("color LIKE 'r.d'", False),
            ("color LIKE 'r[e]d'", False),
            ("color LIKE @name", True),
            ("color LIKE 'r' + '%'", True),
            (r"pct LIKE '50\%' ESCAPE '\'", True),
            (r"color LIKE 're\%' ESCAPE '\'", False),
            ("pct LIKE '50!%' ESCAPE '!'", True),
            ("pct LIKE '5!_%' ESCAPE '!'", False),
            ("pct LIKE '%!%' ESCAPE '!'", True),
            ("color LIKE 'r%' ESCAPE 'r'", False),  # 'r' escaped: a literal %
            ("bang LIKE 'red!!' ESCAPE '!'", True),
        ],
    )
    def test_patterns(self, expression: str, expected: bool) -> None:
        assert matches(expression) is expected

    def test_spans_lines(self) -> None:
        assert matches("note LIKE 'a%b'", MessageView({}, {"note": "a\nb"})) is True

    def test_many_wildcards_stay_linear(self) -> None:
        # A backtracking regular expression takes exponential time on this one.
        view = MessageView({}, {"long": "a" * 20000})
        assert matches("long LIKE '" + "%a" * 30 + "%b'", view) is False
        assert matches("long LIKE '" + "%a" * 30 + "%'", view) is True

    @pytest.mark.parametrize(
        "expression",
        [
            "missing LIKE '%'",
            "color LIKE missing",
            "color LIKE 'r%' ESCAPE missing",
            "Quantity LIKE '1%'",
            "color LIKE 5",
        ],
    )
    def test_unknown(self, expression: str) -> None:
        assert matches(expression) is False
        assert matches(f"NOT ({expression})") is False


class TestNullAndExists:
    """IS [NOT] NULL and EXISTS are never unknown: a missing property is null."""

    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("missing IS NULL", True),
            ("missing IS NOT NULL", False),
            ("empty IS NULL", True),
            ("color IS NULL", False),
            ("color IS NOT NULL", True),
            ("user.COLOR is not null", True),
            ("sys.Label IS NOT NULL", True),
            ("sys.PartitionKey IS NULL", True),
            ("EXISTS(color)", True),
            ("EXISTS (missing)", False),
            ("EXISTS(empty)", True),
            ("NOT EXISTS(missing)", True),
            ("exists(user.Color)", True),
            ("EXISTS([Property With Space])", True),
            ("EXISTS(sys.Label)", True),
            ("EXISTS(sys.PartitionKey)", False),
            ("NOT EXISTS(missing) AND missing IS NULL", True),
        ],
    )
    def test_predicates(self, expression: str, expected: bool) -> None:
        assert matches(expression) is expected


class TestNames:
    """sys. and user. scopes, delimited and quoted names, property() and newid()."""

    @pytest.mark.parametrize(
        "expression",
        [
            "sys.MessageId = 'm-1'",
            "sys.CorrelationId = 'c-1'",
            "sys.To = 'store-5'",
            "sys.ReplyTo = 'replies'",
            "sys.Label = 'a bus ride'",
            "sys.Subject = 'a bus ride'",
            "sys.SessionId = 's-1'",
            "sys.ReplyToSessionId = 'rs-1'",
            "sys.ContentType = 'application/json'",
            "sys.DeliveryCount = 1",
            "sys.SequenceNumber > 41",
            "sys.Size = 100",
            "sys.EnqueuedTimeUtc = @when",
            "sys.TimeToLive > @zero",
            "sys.label = 'a bus ride'",
            "SYS.LABEL = 'a bus ride'",
            "sys.Label = sys.Subject",
            "user.color = 'red'",
            "USER.Color = 'red'",
            "COLOR = 'red'",
            "quantity = 10",
            "[Property With Space] = 'x'",
            "[HR-EmployeeID] = 7",
            "user.[HR-EmployeeID] = 7",
            "[odd]]name] = 1",
            '"Property With Space" = \'x\'',
            '"say ""hi""" = 2',
            "größe = 'L'",
            "p = 3",
            "property('color') = 'red'",
            "P('Col' + 'or') = 'red'",
            "newid() <> newid()",
            "newid() <> id",
        ],
    )
    def test_reads(self, expression: str) -> None:
        assert matches(expression) is True

    @pytest.mark.parametrize(
        "expression",
        [
            "property('missing') = 1",
            "property(Quantity) = 10",  # the name is not a string
            "property('sys.Label') = 'a bus ride'",  # application properties only
            "sys.PartitionKey = 'a'",  # a system property the message does not set
        ],
    )
    def test_unknown(self, expression: str) -> None:
        assert matches(expression) is False
        assert matches(f"NOT ({expression})") is False


class TestLiterals:
    """Integers, decimals, exponents, strings, booleans and NULL; keywords in any case."""

    @pytest.mark.parametrize(
        "expression",
        [
            "1894 = 1894",
            "2.0 = 2",
            "101.5E5 = 10150000",
            "0.5E-2 = 0.005",
            "1e3 = 1000",
            "3. = 3",
            "'it''s' = word",
            "'' = ''",
            "TRUE = flag",
            "true = flag",
            "FALSE <> flag",
            "-9223372036854775808 < 0",
            "1=1",
            "1 = 1 and 2 = 2",
            "1 = 0 oR 2 = 2",
            "(((1 = 1)))",
            "color = 'red'\nAND\tQuantity = 10",
            "'a' + 'b' = 'ab'",
        ],
    )
    def test_true(self, expression: str) -> None:
        assert matches(expression) is True

    def test_false_filter(self) -> None:
        assert matches("1=0") is False
        assert matches("1>1") is False


class TestParameters:
    """@parameters stand for the spec's values, by name with or without the @."""

    @pytest.mark.parametrize(
        "expression",
        [
            "color = @name",
            "color = @NAME",
            "Quantity = @n",
            "@half < price",
            "flag = @yes",
            "when = @when",
            "id = @guid",
            "sys.TimeToLive > @minute",
            "color IN (@name, 'blue')",
        ],
    )
    def test_values(self, expression: str) -> None:
        assert matches(expression) is True

    def test_null_parameter_is_unknown(self) -> None:
        assert matches("color = @nothing") is False
        assert matches("NOT (color = @nothing)") is False

    def test_name_without_at(self) -> None:
        spec = {"kind": "sql", "expression": "Quantity = @n", "parameters": {"n": 10}}
        assert compile_filter(spec).matches(MESSAGE) is True

    def test_no_parameters(self) -> None:
        assert compile_filter({"kind": "sql", "expression": "1 = 1"}).matches(MESSAGE) is True


class TestEvaluationErrors:
    """Where the service's evaluation throws, matches() and apply() raise EvaluationError."""

    @pytest.mark.parametrize(
        "expression",
        [
            "Quantity / zero = 1",
            "Quantity % zero = 1",
            "-9223372036854775808 / -1 = 1",
            "color LIKE 'r%' ESCAPE two",
            "color LIKE bang ESCAPE '!'",
            "when + @forever > when",
        ],
    )
    def test_filter(self, expression: str) -> None:
        with pytest.raises(EvaluationError):
            matches(expression)

    @pytest.mark.parametrize("expression", ["SET sys.Label = 5", "SET a = 1 / 0"])
    def test_action(self, expression: str) -> None:
        with pytest.raises(EvaluationError):
            apply(expression, MESSAGE)

    def test_not_an_admin_error(self) -> None:
        assert not issubclass(EvaluationError, AdminError)


class TestCompileErrors:
    """A filter the service would refuse is AdminError 400, worded as its parse errors."""

    @pytest.mark.parametrize(
        ("expression", "words"),
        [
            ("color =", "column=8, Token in error= , Additional details= Unexpected end"),
            ("= 1", "column=1, Token in error= ="),
            ("color = 'red", "not terminated"),
            ("color = 'red' AND", "Unexpected end"),
            ("(color = 'red'", "Unexpected end"),
            ("(color = 'red' color", "Expected ')'"),
            ("color = 'red')", "Token in error= )"),
            ("color", "A condition is expected"),
            ("1", "A condition is expected"),
            ("TRUE", "A condition is expected"),
            ("color + 1", "A condition is expected"),
            ("NOT color", "A condition is expected"),
            ("color = 'red' AND Quantity", "A condition is expected"),
            ("1 + (1 = 1) = 2", "A value is expected"),
            ("color = 'a' = 'b'", "Token in error= ="),
            ("sys.Nope = 1", "'Nope' is not a system property"),
            ("sys.Label.x = 1", "Token in error= ."),
            ("other.color = 1", "must be 'sys' or 'user'"),
            ("[unterminated = 1", "not terminated"),
            ("[] = 1", "cannot be empty"),
            ('"" = 1', "cannot be empty"),
            ("color # 1", "Unrecognized character. '#'"),
            ("color = @missing", "The parameter @missing has no value"),
            ("@ = 1", "A parameter name must follow"),
            ("frob(color) = 1", "Unknown function 'frob'"),
            ("newid(1) = 1", "Expected ')'"),
            ("property() = 1", "Token in error= )"),
            ("color LIKE 'x' ESCAPE 'ab'", "length 1"),
            ("color LIKE 'x!' ESCAPE '!'", "ends with its escape"),
            ("color IN ()", "Token in error= )"),
            ("color IN 'a'", "Expected '('"),
            ("color NOT = 1", "Token in error= NOT"),
            ("1 IS NULL", "IS NULL applies to a property"),
            ("property('a') IS NULL", "IS NULL applies to a property"),
            ("EXISTS(1)", "A property name is expected"),
            ("EXISTS color", "Expected '('"),
            ("9223372036854775808 = 1", "out of range"),
            ("color = 'red';", "Token in error= ;"),
            ("AND = 1", "Token in error= AND"),
            ("1a = 1", "Token in error= a"),
            ("color = 'red'\n  AND ?", "line=2, column=7"),
            ("(" * 41 + "1 = 1" + ")" * 41, "nested more than 40"),
            ("NOT " * 41 + "1 = 1", "nested more than 40"),
            ("- " * 41 + "1 = 1", "nested more than 40"),
        ],
    )
    def test_syntax(self, expression: str, words: str) -> None:
        message = refused(compile_filter, {"kind": "sql", "expression": expression})
        assert message.startswith("There was an error parsing the SQL expression. [Token line=")
        assert words in message

    def test_deepest_nesting_allowed(self) -> None:
        assert matches("(" * 40 + "1 = 1" + ")" * 40) is True

    def test_quotes_at_most_sixty_characters(self) -> None:
        secretish = "y" * 200
        message = refused(compile_filter, {"kind": "sql", "expression": f"color = '{secretish}"})
        excerpt = message.split("Token in error= ")[1].split(", Additional details=")[0]
        assert excerpt == "'" + "y" * 56 + "..."

    @pytest.mark.parametrize("expression", ["", "   ", None, 5])
    def test_empty(self, expression: Any) -> None:
        refused(compile_filter, {"kind": "sql", "expression": expression})

    def test_missing_expression(self) -> None:
        refused(compile_filter, {"kind": "sql"})

    def test_length_limit(self) -> None:
        longest = "color = '" + "x" * 1014 + "'"
        assert len(longest) == 1024
        assert matches(longest) is False
        message = refused(compile_filter, {"kind": "sql", "expression": longest + " "})
        assert message == (
            "The filter condition string is 1025 characters long; the maximum is 1024."
        )


class TestSpecs:
    """Filter and action specs with a kind, parameters or fields the service refuses."""

    @pytest.mark.parametrize(
        "spec",
        [
            {},
            {"kind": "regex"},
            {"kind": None},
            "1=1",
            {"kind": "sql", "expression": "1=1", "parameters": [("@a", 1)]},
            {"kind": "sql", "expression": "1=1", "parameters": {"@a": [1]}},
            {"kind": "sql", "expression": "1=1", "parameters": {"@a": {"b": 1}}},
            {"kind": "sql", "expression": "1=1", "parameters": {"@": 1}},
            {"kind": "sql", "expression": "1=1", "parameters": {1: 1}},
        ],
    )
    def test_filter(self, spec: Any) -> None:
        refused(compile_filter, spec)

    @pytest.mark.parametrize(
        "spec",
        [
            {},
            {"kind": "update"},
            {"kind": "sql"},
            {"kind": "sql", "expression": ""},
            {"kind": "sql", "expression": "SET a = 1", "parameters": {"@a": b"x"}},
        ],
    )
    def test_action(self, spec: Any) -> None:
        refused(compile_action, spec)

    @pytest.mark.parametrize(("kind", "expected"), [("true", True), ("false", False)])
    def test_constant_filters(self, kind: str, expected: bool) -> None:
        rule = compile_filter({"kind": kind})
        assert rule.matches(MESSAGE) is expected
        assert rule.matches(MessageView()) is expected


class TestActions:
    """SET and REMOVE on application and settable system properties, in order."""

    @pytest.mark.parametrize(
        ("expression", "properties", "expected"),
        [
            ("SET color = 'blue'", {"color": "red"}, {"color": "blue"}),
            ("SET size = 'L'", {}, {"size": "L"}),
            ("SET COLOR = 'blue'", {"color": "red"}, {"color": "blue"}),
            ("SET user.color = 'blue'", {"color": "red"}, {"color": "blue"}),
            ("SET quantity = quantity / 2", {"quantity": 10}, {"quantity": 5}),
            ("SET price = 'cheap'", {"price": 2.5}, {"price": "cheap"}),
            ("REMOVE priority", {"priority": "high", "color": "red"}, {"color": "red"}),
            ("REMOVE user.PRIORITY", {"priority": "high"}, {}),
            ("SET a = 1; SET b = a + 1", {}, {"a": 1, "b": 2}),
            ("SET a = 1 SET b = 2", {}, {"a": 1, "b": 2}),
            (";SET a = 1;;SET b = 2;", {}, {"a": 1, "b": 2}),
            ("set a = 1; remove b", {"b": 1}, {"a": 1}),
            ("SET copy = missing", {}, {"copy": None}),
            ("SET [with space] = 'x'", {}, {"with space": "x"}),
            ("SET a = @p", {}, {"a": "v"}),
            ("SET stamp = sys.EnqueuedTimeUtc", {}, {"stamp": NOW}),
            ("SET a = 2; REMOVE a; SET b = a", {"a": 1}, {"b": None}),
            ("SET x = (1 + 2) * 3", {}, {"x": 9}),
        ],
    )
    def test_application_properties(
        self, expression: str, properties: dict[str, Any], expected: dict[str, Any]
    ) -> None:
        view = MessageView(SYSTEM, properties)
        before = dict(properties)
        edit = apply(expression, view, {"@p": "v"})
        assert edit == MessageEdit(expected, {})
        assert view.properties == before

    def test_int_replacing_a_double_stays_a_double(self) -> None:
        edit = apply("SET price = 3", MessageView({}, {"price": 2.5}))
        assert edit is not None
        assert edit.properties == {"price": 3.0}
        assert isinstance(edit.properties["price"], float)

    def test_newid(self) -> None:
        edit = apply("SET id = newid()", MessageView())
        assert edit is not None
        assert isinstance(edit.properties["id"], uuid.UUID)

    @pytest.mark.parametrize(
        "name",
        sorted({name for _, name in FIELDS}),
    )
    def test_settable_system_properties(self, name: str) -> None:
        edit = apply(f"SET sys.{name.lower()} = 'new'", MESSAGE)
        assert edit == MessageEdit(dict(PROPERTIES), {name: "new"})
        assert apply(f"REMOVE sys.{name}", MESSAGE) == MessageEdit(dict(PROPERTIES), {name: None})

    @pytest.mark.parametrize(
        ("expression", "properties", "system"),
        [
            ("SET sys.Subject = 'new'", {}, {"Label": "new"}),
            ("SET sys.CorrelationId = sys.MessageId + '+'", {}, {"CorrelationId": "m-1+"}),
            ("SET sys.To = 'x'; SET where = sys.To", {"where": "x"}, {"To": "x"}),
            ("REMOVE sys.SessionId; SET s = sys.SessionId", {"s": None}, {"SessionId": None}),
            ("SET sys.Label = missing", {}, {"Label": None}),
        ],
    )
    def test_system_properties(
        self, expression: str, properties: dict[str, Any], system: dict[str, Any]
    ) -> None:
        assert apply(expression, MessageView(SYSTEM, {})) == MessageEdit(properties, system)

    def test_no_change(self) -> None:
        assert apply("REMOVE missing", MessageView({}, {"a": 1})) is None
        assert compile_action({"kind": "empty"}).apply(MESSAGE) is None

    def test_thirty_two_statements(self) -> None:
        edit = apply("; ".join(f"SET a{i} = {i}" for i in range(32)), MessageView())
        assert edit is not None
        assert len(edit.properties) == 32

    @pytest.mark.parametrize(
        ("expression", "words"),
        [
            ("SET", "A property name is expected"),
            ("SET a", "Unexpected end"),
            ("SET a 1", "Expected '='"),
            ("SET a =", "Unexpected end"),
            ("SET a = 1 = 2", "SET or REMOVE is expected"),
            ("SET a = b > 1", "SET or REMOVE is expected"),
            ("SET a = (b > 1)", "A value is expected"),
            ("UPDATE a = 1", "Token in error= UPDATE"),
            ("REMOVE", "A property name is expected"),
            ("REMOVE 1", "A property name is expected"),
            ("SET sys.SequenceNumber = 1", "cannot be changed by an action"),
            ("REMOVE sys.EnqueuedTimeUtc", "cannot be changed by an action"),
            ("SET sys.Nope = 1", "'Nope' is not a system property"),
            ("SET a = 1, SET b = 2", "Token in error= ,"),
            (";;", "at least one SET or REMOVE"),
            ("SET a = @missing", "The parameter @missing has no value"),
            ("; ".join(f"SET a{i} = {i}" for i in range(33)), "at most 32 statements"),
        ],
    )
    def test_refused(self, expression: str, words: str) -> None:
        message = refused(compile_action, {"kind": "sql", "expression": expression})
        assert words in message

    def test_length_limit(self) -> None:
        expression = "SET a = '" + "x" * 1015 + "'"
        message = refused(compile_action, {"kind": "sql", "expression": expression})
        assert message == "The rule action string is 1025 characters long; the maximum is 1024."


class TestCorrelationFilter:
    """Every set field must equal the message's: strings exactly, properties in type and value."""

    @pytest.mark.parametrize(("field", "name"), FIELDS)
    def test_system_field(self, field: str, name: str) -> None:
        rule = compile_filter({"kind": "correlation", field: "Value-1"})
        assert rule.matches(MessageView({name: "Value-1"}, {})) is True
        assert rule.matches(MessageView({name: "value-1"}, {})) is False
        assert rule.matches(MessageView({name: "Value-2"}, {})) is False
        assert rule.matches(MessageView({}, {})) is False
        assert rule.matches(MessageView({name: None}, {name: "Value-1"})) is False

    def test_every_field_must_match(self) -> None:
        spec: dict[str, Any] = {"kind": "correlation", "properties": {"color": "red"}}
        spec |= {field: SYSTEM[name] for field, name in FIELDS}
        rule = compile_filter(spec)
        assert rule.matches(MESSAGE) is True
        for name in {name for _, name in FIELDS}:
            assert rule.matches(MessageView(SYSTEM | {name: "other"}, PROPERTIES)) is False
        assert rule.matches(MessageView(SYSTEM, PROPERTIES | {"color": "blue"})) is False

    @pytest.mark.parametrize(
        ("wanted", "actual", "expected"),
        [
            ("red", "red", True),
            ("red", "Red", False),
            (10, 10, True),
            (10, 10.0, False),
            (10, "10", False),
            (10.0, 10, False),
            (2.5, 2.5, True),
            (True, True, True),
            (True, 1, False),
            (1, True, False),
            (False, False, True),
            (NOW, NOW, True),
            (NOW, NOW + datetime.timedelta(seconds=1), False),
            (GUID, GUID, True),
            (GUID, str(GUID), False),
            (datetime.timedelta(minutes=1), datetime.timedelta(seconds=60), True),
            (None, None, True),
            ("", "", True),
        ],
    )
    def test_property(self, wanted: Any, actual: Any, expected: bool) -> None:
        rule = compile_filter({"kind": "correlation", "properties": {"Prop": wanted}})
        assert rule.matches(MessageView({}, {"prop": actual})) is expected

    def test_missing_property(self) -> None:
        rule = compile_filter({"kind": "correlation", "properties": {"color": "red"}})
        assert rule.matches(MessageView(SYSTEM, {})) is False
        assert rule.matches(MessageView({}, {"colour": "red"})) is False

    def test_empty_string_is_set(self) -> None:
        rule = compile_filter({"kind": "correlation", "correlation_id": ""})
        assert rule.matches(MessageView({"CorrelationId": ""}, {})) is True
        assert rule.matches(MessageView({}, {})) is False

    @pytest.mark.parametrize(
        "spec",
        [
            {"kind": "correlation"},
            {"kind": "correlation", "properties": {}},
            {"kind": "correlation", "correlation_id": None, "properties": None},
        ],
    )
    def test_nothing_set(self, spec: dict[str, Any]) -> None:
        message = refused(compile_filter, spec)
        assert message == (
            "At least one system or user property must be set for a correlation filter."
        )

    @pytest.mark.parametrize(
        "spec",
        [
            {"kind": "correlation", "to": 5},
            {"kind": "correlation", "colour": "red"},
            {"kind": "correlation", "properties": {"a": [1]}},
            {"kind": "correlation", "properties": [("a", 1)]},
            {"kind": "correlation", "properties": {1: "a"}},
            {"kind": "correlation", "subject": "a", "label": "b"},
        ],
    )
    def test_refused(self, spec: dict[str, Any]) -> None:
        refused(compile_filter, spec)

    def test_subject_and_label_agreeing(self) -> None:
        rule = compile_filter({"kind": "correlation", "subject": "a", "label": "a"})
        assert rule.matches(MessageView({"Label": "a"}, {})) is True
