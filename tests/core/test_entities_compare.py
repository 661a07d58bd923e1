"""``geobus entities``' comparison: snapshots of the SDK's own model objects compared property
by property (the documented table), values by what they mean, rules by filter and action."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    SqlRuleAction,
    SqlRuleFilter,
)

from geobus._entities.compare import (
    COMPARED,
    FOREVER,
    IGNORED,
    IMMUTABLE,
    diff_snapshots,
    iso_duration,
    render,
)
from geobus.testing import assert_entities_alike

from .entity_fakes import (
    DEFAULTS,
    SDK_FOREVER,
    one_entity,
    other_value,
    queue,
    rule,
    snap,
    subscription,
    topic,
    with_rule,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "entities.md"
PROPERTIES = [(kind, name) for kind in ("queue", "topic", "subscription") for name in COMPARED[kind]]  # type: ignore[index]


class TestProperties:
    """Each compared property, alone, makes one difference; ignored ones make none."""

    @pytest.mark.parametrize(("kind", "name"), PROPERTIES)
    def test_a_difference_in_exactly_this_property_is_reported_and_only_it(self, kind: str, name: str) -> None:
        default = DEFAULTS[kind][name]
        report = diff_snapshots(one_entity(kind, name, default), one_entity(kind, name, other_value(name, default)))
        assert [(d.kind, d.property) for d in report.differences] == [("property", name)]
        assert not report.alike

    @pytest.mark.parametrize(("kind", "name"), PROPERTIES)
    def test_the_documented_table_lists_every_compared_property(self, kind: str, name: str) -> None:
        row = next((line for line in DOCS.read_text().splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/entities.md has no row for {name}"
        cells = [cell.strip() for cell in row.split("|")[2:5]]
        assert cells[("queue", "topic", "subscription").index(kind)] == "✓"

    def test_the_documented_table_lists_nothing_else(self) -> None:
        documented = set(re.findall(r"^\| `(\w+)` \|", DOCS.read_text(), re.MULTILINE))
        assert documented == {name for _, name in PROPERTIES}

    @pytest.mark.parametrize("name", ["authorization_rules", "availability_status", "size_in_bytes"])
    def test_per_namespace_properties_are_ignored(self, name: str) -> None:
        assert name in IGNORED and f"`{name}`" in DOCS.read_text()
        value = {"authorization_rules": [], "availability_status": "Restoring", "size_in_bytes": 4096}[name]
        kind = "topic" if name == "size_in_bytes" else "queue"
        assert diff_snapshots(one_entity(kind, name, None), one_entity(kind, name, value)).alike

    def test_the_sdk_has_every_compared_property(self) -> None:
        made = {"queue": queue("q"), "topic": topic("t"), "subscription": subscription("s")}
        missing = [(kind, name) for kind, name in PROPERTIES if not hasattr(made[kind], name)]
        assert not missing

    def test_immutable_properties_are_compared_ones(self) -> None:
        assert all(set(IMMUTABLE[kind]) <= set(COMPARED[kind]) for kind in IMMUTABLE)


class TestValues:
    """Values compare by meaning: durations, forever, forwarding URLs, names' case."""

    @pytest.mark.parametrize(
        "other",
        [FOREVER, datetime.timedelta(days=10675199), datetime.timedelta(days=10675200), "P10675199DT2H48M5.4775807S"],
    )
    def test_forever_is_forever_however_written(self, other: Any) -> None:
        assert diff_snapshots(
            one_entity("queue", "default_message_time_to_live", SDK_FOREVER),
            one_entity("queue", "default_message_time_to_live", other),
        ).alike

    @pytest.mark.parametrize(
        ("one", "other", "alike"),
        [
            ("PT1M", datetime.timedelta(minutes=1), True),
            ("PT30S", datetime.timedelta(seconds=30), True),
            (datetime.timedelta(seconds=30), datetime.timedelta(seconds=30, microseconds=1), True),
            (datetime.timedelta(seconds=30), datetime.timedelta(seconds=30, milliseconds=1), False),
            (datetime.timedelta(days=14), SDK_FOREVER, False),
        ],
    )
    def test_durations_compare_as_timedeltas(self, one: Any, other: Any, alike: bool) -> None:
        report = diff_snapshots(one_entity("queue", "lock_duration", one), one_entity("queue", "lock_duration", other))
        assert report.alike is alike

    @pytest.mark.parametrize(
        ("one", "other", "alike"),
        [
            ("sb://ns-a.servicebus.windows.net/archive", "https://ns-b.servicebus.windows.net/Archive", True),
            ("sb://ns-a.servicebus.windows.net/archive", "archive", True),
            ("sb://ns-a.servicebus.windows.net/archive", "sb://ns-b.servicebus.windows.net/audit", False),
            ("archive", None, False),
            ("", None, True),
        ],
    )
    def test_forward_to_compares_the_entity_path_only(self, one: Any, other: Any, alike: bool) -> None:
        report = diff_snapshots(one_entity("queue", "forward_to", one), one_entity("queue", "forward_to", other))
        assert report.alike is alike

    def test_a_forwarding_difference_shows_the_paths(self) -> None:
        report = diff_snapshots(
            one_entity("subscription", "forward_dead_lettered_messages_to", "sb://ns-a.servicebus.windows.net/dlq"),
            one_entity("subscription", "forward_dead_lettered_messages_to", "https://ns-b.servicebus.windows.net/other"),
        )
        [difference] = report.differences
        assert (difference.path, difference.primary, difference.secondary) == ("events/Subscriptions/audit", "dlq", "other")

    def test_names_are_case_insensitive(self) -> None:
        primary = snap(
            queues=[queue("Orders")],
            topics=[topic("Events")],
            subscriptions=[("Events", subscription("Audit"))],
            rules=[("Events", "Audit", rule("$Default"))],
        )
        secondary = snap(
            queues=[queue("orders")],
            topics=[topic("EVENTS")],
            subscriptions=[("events", subscription("audit"))],
            rules=[("events", "AUDIT", rule("$default"))],
        )
        assert diff_snapshots(primary, secondary).alike

    def test_a_status_enum_and_its_string_are_alike(self) -> None:
        from azure.servicebus.management import EntityStatus

        assert diff_snapshots(one_entity("queue", "status", EntityStatus.ACTIVE), one_entity("queue", "status", "Active")).alike

    def test_a_snapshot_refuses_an_entity_given_twice_in_any_case(self) -> None:
        with pytest.raises(ValueError, match="queue 'ORDERS' is in the snapshot twice"):
            snap(queues=[queue("orders"), queue("ORDERS")])


class TestMissing:
    """Entities missing on either side, each listed once, at the right level."""

    def test_a_queue_missing_in_the_secondary(self) -> None:
        report = diff_snapshots(snap(queues=[queue("orders")]), snap())
        [difference] = report.differences
        assert (difference.path, difference.kind, difference.primary, difference.secondary) == (
            "orders", "missing in secondary", "queue", None,
        )  # fmt: skip

    def test_a_topic_missing_in_the_primary_lists_its_subscriptions_not_their_rules(self) -> None:
        secondary = snap(
            topics=[topic("events")],
            subscriptions=[("events", subscription("audit")), ("events", subscription("billing"))],
            rules=[("events", "audit", rule("$Default"))],
        )
        report = diff_snapshots(snap(), secondary)
        assert [(d.path, d.kind, d.secondary) for d in report.differences] == [
            ("events", "missing in primary", "topic"),
            ("events/Subscriptions/audit", "missing in primary", "subscription"),
            ("events/Subscriptions/billing", "missing in primary", "subscription"),
        ]

    def test_a_queue_and_a_topic_of_one_name_are_different_entities(self) -> None:
        report = diff_snapshots(snap(queues=[queue("orders")]), snap(topics=[topic("orders")]))
        assert [(d.kind, d.primary, d.secondary) for d in report.differences] == [
            ("missing in secondary", "queue", None),
            ("missing in primary", None, "topic"),
        ]


class TestRules:
    """Rules per subscription by name: filter and action."""

    @pytest.mark.parametrize(
        ("one", "other"),
        [
            (rule("r", SqlRuleFilter("color = 'red'")), rule("r", SqlRuleFilter("color = 'blue'"))),
            (rule("r", SqlRuleFilter("color = @c", {"@c": "red"})), rule("r", SqlRuleFilter("color = @c", {"@c": "blue"}))),
            (rule("r", CorrelationRuleFilter(label="a")), rule("r", CorrelationRuleFilter(label="b"))),
            (rule("r", CorrelationRuleFilter(correlation_id="x")), rule("r", CorrelationRuleFilter(session_id="x"))),
            (rule("r", CorrelationRuleFilter(properties={"k": 1})), rule("r", CorrelationRuleFilter(properties={"k": 2}))),
            (rule("r", action=SqlRuleAction("SET x = 1")), rule("r", action=SqlRuleAction("SET x = 2"))),
            (rule("r", action=SqlRuleAction("SET x = @v", {"@v": 1})), rule("r", action=SqlRuleAction("SET x = @v", {"@v": 2}))),
            (rule("r", action=SqlRuleAction("SET x = 1")), rule("r")),
            (rule("r"), rule("r", FalseRuleFilter())),
            (rule("r", SqlRuleFilter("1=1")), rule("r")),
        ],
    )
    def test_a_rule_that_differs(self, one: Any, other: Any) -> None:
        [difference] = diff_snapshots(with_rule(one), with_rule(other)).differences
        assert (difference.path, difference.kind, difference.property) == ("events/Subscriptions/audit", "rule", "r")
        assert difference.primary != difference.secondary

    @pytest.mark.parametrize(
        ("one", "other"),
        [
            (rule("r", SqlRuleFilter(" a = 1 ")), rule("r", SqlRuleFilter("a = 1", {}))),
            (rule("r", CorrelationRuleFilter(label="a", properties={"k": 1, "j": 2})),
             rule("r", CorrelationRuleFilter(label="a", properties={"j": 2, "k": 1}))),
            (rule("r", action=SqlRuleAction("")), rule("r")),
        ],
    )  # fmt: skip
    def test_a_rule_written_differently_is_alike(self, one: Any, other: Any) -> None:
        assert diff_snapshots(with_rule(one), with_rule(other)).alike

    def test_a_rule_missing_on_one_side(self) -> None:
        report = diff_snapshots(with_rule(rule("$Default"), rule("eu", SqlRuleFilter("region = 'eu'"))), with_rule(rule("$Default")))
        [difference] = report.differences
        assert (difference.what, difference.secondary) == ("rule eu", None)
        assert render(difference.primary) == "sql: region = 'eu'"

    def test_rules_render_readably(self) -> None:
        sql = rule("r", SqlRuleFilter("color = @c", {"@c": "red"}), SqlRuleAction("SET x = 1"))
        correlation = rule("r", CorrelationRuleFilter(label="a", properties={"k": 1}))
        [first] = diff_snapshots(with_rule(sql), with_rule(correlation)).differences
        assert render(first.primary) == "sql: color = @c @c=red; action: SET x = 1"
        assert render(first.secondary) == "correlation: label='a' properties k=1"


class TestReport:
    """The report's table and JSON: readable values, one row per difference."""

    def test_the_table_shows_durations_in_iso_8601_and_forever(self) -> None:
        primary = snap(queues=[queue("orders", lock_duration=datetime.timedelta(seconds=30), default_message_time_to_live=SDK_FOREVER)])
        secondary = snap(queues=[queue("orders", default_message_time_to_live=datetime.timedelta(days=14))])
        table = diff_snapshots(primary, secondary).table().splitlines()
        assert re.split(r"\s{2,}", table[0]) == ["entity", "what", "primary", "secondary"]
        assert re.split(r"\s{2,}", table[1]) == ["orders", "lock_duration", "PT30S", "PT1M"]
        assert re.split(r"\s{2,}", table[2]) == ["orders", "default_message_time_to_live", "forever", "P14D"]

    def test_the_json_form(self) -> None:
        report = diff_snapshots(snap("a", queues=[queue("orders", max_delivery_count=5)]), snap("b", queues=[queue("orders")]))
        assert report.as_dict() == {
            "alike": False,
            "primary": "a",
            "secondary": "b",
            "differences": [
                {"entity": "orders", "kind": "property", "property": "max_delivery_count", "primary": 5, "secondary": 10}
            ],
        }

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (datetime.timedelta(minutes=1), "PT1M"),
            (datetime.timedelta(days=14), "P14D"),
            (datetime.timedelta(days=1, hours=2, seconds=3.5), "P1DT2H3.5S"),
            (datetime.timedelta(0), "PT0S"),
            (SDK_FOREVER, "forever"),
        ],
    )
    def test_iso_durations(self, value: datetime.timedelta, text: str) -> None:
        assert iso_duration(value) == text


class TestAssertEntitiesAlike:
    """``geobus.testing.assert_entities_alike``: silent when alike, the table when not."""

    def test_alike_passes(self) -> None:
        assert_entities_alike(with_rule(rule("$Default")), with_rule(rule("$default")))

    def test_different_fails_with_the_table(self) -> None:
        with pytest.raises(AssertionError) as failed:
            assert_entities_alike(snap("ns-a", queues=[queue("orders", max_delivery_count=3)]), snap("ns-b"))
        assert str(failed.value).splitlines() == [
            "the entities of ns-a and ns-b differ (1 difference):",
            "entity  what                  primary  secondary",
            "orders  missing in secondary  queue    -",
        ]

