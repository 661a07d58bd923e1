"""The sync plan of ``geobus entities sync``: what it does, in which order, never a deletion
unasked; and the values it writes."""

from __future__ import annotations

import datetime

import pytest
from azure.servicebus.management import SqlRuleFilter

from geobus import EntitySnapshot
from geobus._entities import plan_sync
from geobus._entities.compare import FOREVER, IMMUTABLE
from geobus._entities.sync import writable

from .entity_fakes import one_entity, queue, rule, snap, subscription, topic, with_rule


def plan(source: EntitySnapshot, target: EntitySnapshot, *, delete: bool = False) -> list[tuple[str, str, str]]:
    """Each step as ``(action, kind, "path: properties")``."""
    return [
        (step.action, step.entity.kind, step.entity.path + (f": {', '.join(step.properties)}" if step.properties else ""))
        for step in plan_sync(source, target, delete=delete)
    ]


class TestPlan:
    """The sync plan: what, in which order, and never a deletion unasked."""

    def test_alike_namespaces_need_nothing(self) -> None:
        both = with_rule(rule("$Default"))
        assert plan_sync(both, both) == ()

    def test_topics_then_queues_then_subscriptions_then_rules(self) -> None:
        source = snap(
            queues=[queue("a-queue")],
            topics=[topic("z-topic")],
            subscriptions=[("z-topic", subscription("s"))],
            rules=[("z-topic", "s", rule("$Default")), ("z-topic", "s", rule("eu", SqlRuleFilter("region = 'eu'")))],
        )
        assert [(action, kind) for action, kind, _ in plan(source, snap())] == [
            ("create", "topic"), ("create", "queue"), ("create", "subscription"), ("create", "rule"),
        ]  # fmt: skip

    def test_a_queue_is_created_after_the_queue_it_forwards_to(self) -> None:
        source = snap(queues=[queue("a", forward_to="sb://ns/c"), queue("b"), queue("c", forward_dead_lettered_messages_to="b")])
        assert [path for _, _, path in plan(source, snap())] == ["b", "c", "a"]

    def test_a_new_subscription_loses_the_services_default_rule_after_its_own_rules(self) -> None:
        source = with_rule(rule("eu", SqlRuleFilter("region = 'eu'")))
        assert plan(source, snap(topics=[topic("events")])) == [
            ("create", "subscription", "events/Subscriptions/audit"),
            ("create", "rule", "events/Subscriptions/audit/Rules/eu"),
            ("delete", "rule", "events/Subscriptions/audit/Rules/$Default"),
        ]

    def test_a_new_subscription_gets_the_sources_default_rule(self) -> None:
        source = with_rule(rule("$Default", SqlRuleFilter("region = 'eu'")))
        assert plan(source, snap(topics=[topic("events")])) == [
            ("create", "subscription", "events/Subscriptions/audit"),
            ("update", "rule", "events/Subscriptions/audit/Rules/$Default: filter"),
        ]

    def test_a_new_subscription_keeps_a_default_rule_like_the_sources(self) -> None:
        source = with_rule(rule("$Default"))
        assert plan(source, snap(topics=[topic("events")])) == [("create", "subscription", "events/Subscriptions/audit")]

    def test_differing_properties_are_updated_together(self) -> None:
        source = snap(queues=[queue("orders", max_delivery_count=5, lock_duration=datetime.timedelta(seconds=30))])
        assert plan(source, snap(queues=[queue("orders")])) == [
            ("update", "queue", "orders: lock_duration, max_delivery_count"),
        ]

    @pytest.mark.parametrize(("kind", "name"), [(kind, name) for kind in ("queue", "topic", "subscription") for name in IMMUTABLE[kind]])  # type: ignore[index]
    def test_an_immutable_property_marks_the_entity_for_recreation_by_hand(self, kind: str, name: str) -> None:
        source = one_entity(kind, name, True)
        target = one_entity(kind, name, False)
        steps = plan_sync(source, target)
        assert [(step.action, step.entity.kind, step.properties) for step in steps] == [("recreate by hand", kind, (name,))]

    def test_a_property_the_sdk_cannot_send_is_left_to_be_set_by_hand(self) -> None:
        source = one_entity("topic", "filtering_messages_before_publishing", True)
        target = one_entity("topic", "filtering_messages_before_publishing", False)
        steps = plan_sync(source, target)
        assert [(step.action, step.properties) for step in steps] == [
            ("set by hand", ("filtering_messages_before_publishing",))
        ]

    def test_the_rest_of_an_entity_to_recreate_is_still_updated(self) -> None:
        source = snap(queues=[queue("orders", requires_session=True, max_delivery_count=3)])
        assert plan(source, snap(queues=[queue("orders")])) == [
            ("update", "queue", "orders: max_delivery_count"),
            ("recreate by hand", "queue", "orders: requires_session"),
        ]

    def test_nothing_is_deleted_without_delete(self) -> None:
        target = snap(queues=[queue("old")], topics=[topic("events")], subscriptions=[("events", subscription("gone"))])
        assert plan(snap(topics=[topic("events")]), target) == []

    def test_delete_removes_the_topmost_only_in_reverse_order(self) -> None:
        source = with_rule(rule("$Default"))
        target = snap(
            queues=[queue("old-queue")],
            topics=[topic("events"), topic("old-topic")],
            subscriptions=[("events", subscription("audit")), ("events", subscription("old-sub")), ("old-topic", subscription("s"))],
            rules=[("events", "audit", rule("$Default")), ("events", "audit", rule("old-rule")), ("events", "old-sub", rule("r"))],
        )
        assert plan(source, target, delete=True) == [
            ("delete", "rule", "events/Subscriptions/audit/Rules/old-rule"),
            ("delete", "subscription", "events/Subscriptions/old-sub"),
            ("delete", "queue", "old-queue"),
            ("delete", "topic", "old-topic"),
        ]

    def test_values_are_written_as_the_service_takes_them(self) -> None:
        [step] = plan_sync(
            snap(queues=[queue("q", forward_to="sb://ns-a.servicebus.windows.net/archive", auto_delete_on_idle="PT5M")]),
            snap(queues=[queue("q", default_message_time_to_live=datetime.timedelta(days=1))]),
        )
        assert dict(writable(step.entity, step.properties)) == {
            "default_message_time_to_live": FOREVER,
            "auto_delete_on_idle": datetime.timedelta(minutes=5),
            "forward_to": "archive",
        }


