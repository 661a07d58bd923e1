"""Subscription rules route a topic's messages: the real administration client makes the
rules, the real ``ServiceBusClient`` sends, and sync and async receivers drain.

For each receiver mode a topic carries one subscription per case; the same four messages
(``_sent()``) go to it once, every subscription is drained (side by side: each SDK
receiver takes about a second to open and close), and each test compares what one
subscription got with what Service Bus routes to it ("Topic filters and actions",
"Subscription Rule SQL Filter Syntax"). Routing happens when the namespace accepts a
message, so a drain peeks at everything there, receives exactly that, completes it and
peeks again (``admin_helpers.drain_sync``): a missing copy costs no wait, an extra one
shows. Actions get a topic of their own; invalid expressions must be refused by
``create_rule`` with a 400, and change nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from geobus.local import LocalNamespace

from .admin_helpers import (
    MODES,
    Admin,
    Drained,
    drain,
    drain_all,
    message,
    open_admin,
    outcome,
    received_properties,
    send,
    sync_admin,
    unique,
)
from .contract_helpers import ids

pytestmark = pytest.mark.timeout(60)

ALL = ("red", "blue", "green", "bare")


def _sent() -> list[ServiceBusMessage]:
    """The messages every filter case sees: three with properties, one with none."""
    return [
        message(
            "red",
            {"color": "red", "size": 10, "price": 2.5, "flag": True, "name": "alpha-one"},
            subject="red-label",
            correlation_id="c-red",
            to="to-red",
            reply_to="reply-red",
            content_type="application/json",
            session_id="s-red",
            reply_to_session_id="rs-red",
        ),
        message(
            "blue",
            {"color": "blue", "size": 20, "price": 7.25, "flag": False, "name": "beta_two"},
            subject="blue-label",
            correlation_id="c-blue",
            to="to-blue",
            content_type="text/plain",
        ),
        message("green", {"color": "green", "size": 30, "name": "alpha%three"}),
        message("bare"),
    ]


@dataclass(frozen=True)
class Case:
    """One subscription: its rules (name -> filter) and the ids it must get."""

    name: str
    expected: tuple[str, ...]
    rules: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def _sql(name: str, expression: str, *expected: str, **parameters: Any) -> Case:
    return Case(name, expected, {"r": SqlRuleFilter(expression, parameters or None)})


def _corr(name: str, *expected: str, **fields: Any) -> Case:
    return Case(name, expected, {"r": CorrelationRuleFilter(**fields)})


# A missing application property is unknown: a comparison, IN or LIKE with it is not
# true, and neither is its NOT (so "bare" matches none of those, either way round).
SQL_CASES = [
    _sql("eq", "color = 'red'", "red"),
    _sql("ne", "color <> 'red'", "blue", "green"),
    _sql("ne-bang", "color != 'blue'", "red", "green"),
    _sql("gt", "size > 15", "blue", "green"),
    _sql("le", "size <= 20", "red", "blue"),
    _sql("int-vs-float", "price > 5", "blue"),
    _sql("arithmetic", "size * 2 + 1 = 41", "blue"),
    _sql("modulo", "size % 20 = 10", "red", "green"),
    _sql("and", "color = 'red' AND size = 10", "red"),
    _sql("or", "color = 'blue' OR size = 30", "blue", "green"),
    _sql("not", "NOT (color = 'red')", "blue", "green"),
    _sql("and-binds-tighter", "color = 'green' OR color = 'blue' AND size = 10", "green"),
    _sql("parentheses", "(color = 'green' OR color = 'blue') AND size >= 20", "blue", "green"),
    _sql("in", "color IN ('red', 'green')", "red", "green"),
    _sql("not-in", "color NOT IN ('red', 'green')", "blue"),
    _sql("like-prefix", "name LIKE 'alpha%'", "red", "green"),
    _sql("like-one-char", "name LIKE 'b_ta%'", "blue"),
    _sql("like-escape", "name LIKE 'alpha!%%' ESCAPE '!'", "green"),
    _sql("not-like", "name NOT LIKE 'alpha%'", "blue"),
    _sql("is-null", "color IS NULL", "bare"),
    _sql("is-not-null", "color IS NOT NULL", "red", "blue", "green"),
    _sql("exists", "EXISTS(price)", "red", "blue"),
    _sql("not-exists", "NOT EXISTS(price)", "green", "bare"),
    _sql("boolean", "flag = TRUE", "red"),
    _sql("user-scope", "user.color = 'blue'", "blue"),
    _sql("sys-label", "sys.Label = 'red-label'", "red"),
    _sql("sys-label-like", "sys.Label LIKE '%-label'", "red", "blue"),
    _sql("sys-correlation-id", "sys.CorrelationId = 'c-blue'", "blue"),
    _sql("sys-correlation-null", "sys.CorrelationId IS NULL", "green", "bare"),
    _sql("sys-to", "sys.To = 'to-red'", "red"),
    _sql("sys-reply-to", "sys.ReplyTo = 'reply-red'", "red"),
    _sql("sys-content-type", "sys.ContentType = 'text/plain'", "blue"),
    _sql("sys-message-id", "sys.MessageId IN ('green', 'bare')", "green", "bare"),
    _sql("sys-session-id", "sys.SessionId = 's-red'", "red"),
    _sql("sys-reply-to-session-id", "sys.ReplyToSessionId = 'rs-red'", "red"),
    _sql("parameters", "color = @c AND size >= @n", "blue", **{"@c": "blue", "@n": 15}),
    _sql("one-equals-one", "1=1", *ALL),
]
CORRELATION_CASES = [
    _corr("corr-correlation-id", "red", correlation_id="c-red"),
    _corr("corr-message-id", "blue", message_id="blue"),
    _corr("corr-to", "red", to="to-red"),
    _corr("corr-reply-to", "red", reply_to="reply-red"),
    _corr("corr-subject", "blue", label="blue-label"),
    _corr("corr-session-id", "red", session_id="s-red"),
    _corr("corr-reply-to-session-id", "red", reply_to_session_id="rs-red"),
    _corr("corr-content-type", "blue", content_type="text/plain"),
    _corr("corr-text-property", "green", properties={"color": "green"}),
    _corr("corr-int-property", "blue", properties={"size": 20}),
    _corr("corr-bool-property", "blue", properties={"flag": False}),
    _corr("corr-two-properties", "red", properties={"color": "red", "size": 10}),
    _corr("corr-property-mismatch", properties={"color": "red", "size": 11}),
    _corr("corr-fields-and", correlation_id="c-red", label="blue-label"),
    _corr("corr-field-and-property", "red", correlation_id="c-red", properties={"color": "red"}),
]
OTHER_CASES = [
    Case("true-filter", ALL, {"r": TrueRuleFilter()}),
    Case("false-filter", (), {"r": FalseRuleFilter()}),
    Case("no-rules", (), {}),
    Case(
        "two-rules-one-copy",
        ("red", "blue", "green"),
        {"red": SqlRuleFilter("color = 'red'"), "sized": SqlRuleFilter("size >= 10")},
    ),
    Case("default-rule", ALL, {"$Default": TrueRuleFilter()}),
]
CASES = [*SQL_CASES, *CORRELATION_CASES, *OTHER_CASES]


@pytest.fixture(scope="module")
def ns() -> Iterator[LocalNamespace]:
    with LocalNamespace() as namespace:
        yield namespace


def _subscribe(
    admin: Any, topic: str, name: str, rules: dict[str, Any], actions: dict[str, Any] | None = None
) -> None:
    """Subscription ``name`` with exactly ``rules`` (``$Default`` only if named)."""
    admin.create_subscription(topic, name)
    if "$Default" not in rules:
        admin.delete_rule(topic, name, "$Default")
    for rule, rule_filter in rules.items():
        if rule != "$Default":
            action = (actions or {}).get(rule)
            admin.create_rule(topic, name, rule, filter=rule_filter, action=action)


@pytest.fixture(scope="module", params=MODES)
def routed(request: pytest.FixtureRequest, ns: LocalNamespace) -> dict[str, Drained | Exception]:
    """A topic with a subscription per case, ``_sent()`` sent once, every subscription
    drained with the receivers of the mode (``sync`` or ``async``)."""
    return _route(request.param, ns, "filters", [(case.name, case.rules, None) for case in CASES])


def _route(
    mode: str, ns: LocalNamespace, prefix: str, subscriptions: list[tuple[str, dict[str, Any], dict[str, Any] | None]]
) -> dict[str, Drained | Exception]:
    """A new topic with ``subscriptions`` (name, rules, actions), ``_sent()`` sent to it
    once, and every subscription drained with ``mode``'s receivers."""
    topic = unique(f"{prefix}-{mode}")
    with sync_admin(ns.connection_string, ns.certificate_path) as admin:
        admin.create_topic(topic)
        for name, rules, actions in subscriptions:
            _subscribe(admin, topic, name, rules, actions)
    send(ns, topic, _sent(), topic=True)
    return drain_all(mode, ns, topic, [name for name, _, _ in subscriptions])


class TestFilters:
    """Each filter kind selects exactly the messages Service Bus would give it."""

    @pytest.mark.parametrize("case", CASES, ids=str)
    def test_subscription_gets_exactly_its_messages(
        self, routed: dict[str, Drained | Exception], case: Case
    ) -> None:
        drained = outcome(routed, case.name)
        assert sorted(ids(drained.got)) == sorted(case.expected)
        assert ids(drained.left) == [], "no other copy is waiting"
        assert [str(m) for m in drained.got] == ids(drained.got), "bodies are as sent"
        assert all("RuleName" not in received_properties(m) for m in drained.got), "no action"


# -- actions ---------------------------------------------------------------------------------

_GONE = object()  # a property an action removed
_BASE: dict[str, dict[str, Any]] = {
    "red": {"color": "red", "size": 10, "price": 2.5, "flag": True, "name": "alpha-one"},
    "blue": {"color": "blue", "size": 20, "price": 7.25, "flag": False, "name": "beta_two"},
    "green": {"color": "green", "size": 30, "name": "alpha%three"},
    "bare": {},
}
Copy = tuple[str, str, tuple[tuple[str, Any], ...]]  # (id, subject, application properties)


def _copy(message_id: str, subject: str | None = None, **changes: Any) -> Copy:
    """A copy of ``_sent()``'s ``message_id`` as a receiver should see it."""
    subjects = {"red": "red-label", "blue": "blue-label"}
    merged = {**_BASE[message_id], **changes}
    kept = tuple(sorted((k, v) for k, v in merged.items() if v is not _GONE))
    return message_id, str(subject or subjects.get(message_id)), kept


def _received(got: list[ServiceBusReceivedMessage]) -> Counter[Copy]:
    return Counter(
        (str(m.message_id), str(m.subject), tuple(sorted(received_properties(m).items())))
        for m in got
    )


@dataclass(frozen=True)
class ActionCase:
    """One subscription: rules (name -> (filter, action or None)) and the copies it gets."""

    name: str
    rules: dict[str, tuple[Any, SqlRuleAction | None]]
    expected: tuple[Copy, ...]

    def __str__(self) -> str:
        return self.name


ACTION_CASES = [
    ActionCase(
        "set",
        {"gold": (SqlRuleFilter("color = 'red'"), SqlRuleAction("SET tier = 'gold'"))},
        (_copy("red", tier="gold", RuleName="gold"),),
    ),
    ActionCase(
        "remove",
        {"strip": (SqlRuleFilter("EXISTS(color)"), SqlRuleAction("REMOVE color"))},
        tuple(_copy(i, color=_GONE, RuleName="strip") for i in ("red", "blue", "green")),
    ),
    ActionCase(
        "plain-and-acted",
        {
            "plain": (SqlRuleFilter("color = 'red'"), None),
            "acted": (SqlRuleFilter("color = 'red'"), SqlRuleAction("SET x = 1")),
        },
        (_copy("red"), _copy("red", x=1, RuleName="acted")),
    ),
    ActionCase(
        "two-actions",
        {
            "small": (SqlRuleFilter("size >= 10"), SqlRuleAction("SET a = 1")),
            "large": (SqlRuleFilter("size >= 20"), SqlRuleAction("SET b = 2")),
        },
        (
            _copy("red", a=1, RuleName="small"),
            _copy("blue", a=1, RuleName="small"),
            _copy("blue", b=2, RuleName="large"),
            _copy("green", a=1, RuleName="small"),
            _copy("green", b=2, RuleName="large"),
        ),
    ),
    ActionCase(
        "relabel",
        {
            "relabel": (
                SqlRuleFilter("sys.Label = 'red-label'"),
                SqlRuleAction("SET sys.Label = 'relabelled'"),
            )
        },
        (_copy("red", "relabelled", RuleName="relabel"),),
    ),
    ActionCase(
        "computed",
        {
            "double": (
                SqlRuleFilter("EXISTS(size)"),
                SqlRuleAction("SET doubled = size * 2; SET tier = @t", {"@t": "silver"}),
            )
        },
        tuple(
            _copy(i, doubled=size * 2, tier="silver", RuleName="double")
            for i, size in (("red", 10), ("blue", 20), ("green", 30))
        ),
    ),
    ActionCase(
        "true-with-action",
        {"all": (TrueRuleFilter(), SqlRuleAction("SET seen = TRUE"))},
        tuple(_copy(i, seen=True, RuleName="all") for i in ALL),
    ),
]


@pytest.fixture(scope="module", params=MODES)
def acted(request: pytest.FixtureRequest, ns: LocalNamespace) -> dict[str, Drained | Exception]:
    """``routed`` for ``ACTION_CASES``."""
    return _route(
        request.param,
        ns,
        "actions",
        [
            (
                case.name,
                {name: rule_filter for name, (rule_filter, _) in case.rules.items()},
                {name: action for name, (_, action) in case.rules.items()},
            )
            for case in ACTION_CASES
        ],
    )


class TestActions:
    """Each matching rule with an action adds a changed copy with ``RuleName``; the rest one."""

    @pytest.mark.parametrize("case", ACTION_CASES, ids=str)
    def test_subscription_gets_exactly_its_copies(
        self, acted: dict[str, Drained | Exception], case: ActionCase
    ) -> None:
        drained = outcome(acted, case.name)
        assert _received(drained.got) == Counter(case.expected)
        assert ids(drained.left) == [], "no other copy is waiting"
        sequence = [m.sequence_number for m in drained.got]
        assert len(set(sequence)) == len(sequence), "each copy is a message of its own"


# -- what create_rule refuses --------------------------------------------------------------------

INVALID_FILTERS = [
    "color = ",
    "color === 'red'",
    "color = 'red",
    "SELECT * FROM messages",
    "color LIKE",
    "color IN ()",
    "(color = 'red'",
    "nosuchfunction(color) = 1",
    "color = 'red' AND",
    "x" * 1100 + " = 1",
]
INVALID_ACTIONS = [
    "SET = 1",
    "SET tier",
    "UPDATE tier = 1",
    "DELETE color",
    "SET tier = 'gold' AND",
]


@pytest.fixture(params=MODES)
async def admin(request: pytest.FixtureRequest, ns: LocalNamespace) -> AsyncIterator[Admin]:
    async with open_admin(request.param, ns) as client:
        yield client


class TestRefusals:
    """An expression the namespace cannot run is refused at once: 400, nothing stored."""

    async def _subscription(self, admin: Admin) -> tuple[str, str]:
        topic = unique("refusals")
        await admin.create_topic(topic)
        await admin.create_subscription(topic, "sub")
        return topic, "sub"

    async def test_invalid_filters_are_refused(self, admin: Admin) -> None:
        topic, sub = await self._subscription(admin)
        for number, expression in enumerate(INVALID_FILTERS):
            with pytest.raises(HttpResponseError) as caught:
                await admin.create_rule(
                    topic, sub, f"bad{number}", filter=SqlRuleFilter(expression)
                )
            assert caught.value.status_code == 400, expression[:40]
        assert [rule.name for rule in await admin.list_rules(topic, sub)] == ["$Default"]

    async def test_invalid_actions_are_refused(self, admin: Admin) -> None:
        topic, sub = await self._subscription(admin)
        for number, expression in enumerate(INVALID_ACTIONS):
            with pytest.raises(HttpResponseError) as caught:
                await admin.create_rule(
                    topic,
                    sub,
                    f"bad{number}",
                    filter=TrueRuleFilter(),
                    action=SqlRuleAction(expression),
                )
            assert caught.value.status_code == 400, expression
        assert [rule.name for rule in await admin.list_rules(topic, sub)] == ["$Default"]

    async def test_an_invalid_update_keeps_the_rule(self, admin: Admin) -> None:
        topic, sub = await self._subscription(admin)
        rule = await admin.create_rule(topic, sub, "good", filter=SqlRuleFilter("color = 'red'"))
        rule.filter = SqlRuleFilter("color = ")
        with pytest.raises(HttpResponseError) as caught:
            await admin.update_rule(topic, sub, rule)
        assert caught.value.status_code == 400
        kept = await admin.get_rule(topic, sub, "good")
        assert kept.filter.sql_expression == "color = 'red'"

    async def test_a_refused_rule_changes_no_routing(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        topic, sub = await self._subscription(admin)
        await admin.delete_rule(topic, sub, "$Default")
        await admin.create_rule(topic, sub, "reds", filter=SqlRuleFilter("color = 'red'"))
        with pytest.raises(HttpResponseError):
            await admin.create_rule(topic, sub, "broken", filter=SqlRuleFilter("color = = 'blue'"))
        send(ns, topic, _sent(), topic=True)
        drained = await drain(admin.mode, ns, topic, sub)
        assert (ids(drained.got), ids(drained.left)) == (["red"], [])


class TestRuleChanges:
    """Routing follows the rules a subscription has now: an update, a delete, a new rule."""

    async def test_update_and_delete_change_what_later_messages_get(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        topic = unique("changes")
        await admin.create_topic(topic)
        await admin.create_subscription(topic, "sub")
        await admin.delete_rule(topic, "sub", "$Default")
        rule = await admin.create_rule(topic, "sub", "pick", filter=SqlRuleFilter("color = 'red'"))
        send(ns, topic, [message("first", {"color": "red"})], topic=True)

        rule.filter = SqlRuleFilter("color = 'blue'")
        await admin.update_rule(topic, "sub", rule)
        send(
            ns,
            topic,
            [message("second", {"color": "red"}), message("third", {"color": "blue"})],
            topic=True,
        )

        await admin.delete_rule(topic, "sub", "pick")
        send(ns, topic, [message("fourth", {"color": "blue"})], topic=True)

        await admin.create_rule(topic, "sub", "$Default", filter=TrueRuleFilter())
        send(ns, topic, [message("fifth")], topic=True)

        drained = await drain(admin.mode, ns, topic, "sub")
        assert ids(drained.got) == ["first", "third", "fifth"]
        assert ids(drained.left) == []


class TestEvaluationFailures:
    """A filter that fails on a message dead-letters the copy, or drops it if told to."""

    async def test_a_failing_filter_dead_letters_or_drops_the_copy(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        topic = unique("failing")
        await admin.create_topic(topic)
        failing = SqlRuleFilter("size / 0 = 1")  # integer division by zero, for sized messages
        for sub, keep in (("kept", True), ("dropped", False)):
            await admin.create_subscription(
                topic, sub, dead_lettering_on_filter_evaluation_exceptions=keep
            )
            await admin.delete_rule(topic, sub, "$Default")
            await admin.create_rule(topic, sub, "divide", filter=failing)
        send(ns, topic, _sent(), topic=True)
        kept = await admin.get_subscription_runtime_properties(topic, "kept")
        dropped = await admin.get_subscription_runtime_properties(topic, "dropped")
        assert (kept.active_message_count, kept.dead_letter_message_count) == (0, 3)
        assert (dropped.active_message_count, dropped.dead_letter_message_count) == (0, 0)
