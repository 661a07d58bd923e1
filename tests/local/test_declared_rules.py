"""Subscription rules declared in an entities file: checked when read, routing at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import ServiceBusAdministrationClient, SqlRuleAction, SqlRuleFilter

from geobus import ConfigurationError
from geobus.local import EntityDefinitions, LocalNamespace

ENTITIES: dict[str, Any] = {
    "topics": {
        "events": {
            "subscriptions": {
                "red": {"rules": {"colour": {"sql": "colour = @c", "parameters": {"@c": "red"}, "action": "SET seen = 1"}}},
                "eu": {"rules": {"region": {"correlation": {"label": "order", "properties": {"region": "eu"}}}}},
                "all": {},
            }
        }
    }
}


def routed(namespace: LocalNamespace) -> dict[str, list[tuple[str, Any]]]:
    """Send three messages to ``events``; each subscription's (body, ``seen``)."""
    with ServiceBusClient.from_connection_string(namespace.connection_string) as client:
        with client.get_topic_sender("events") as sender:
            sender.send_messages(
                [
                    ServiceBusMessage("red", application_properties={"colour": "red"}),
                    ServiceBusMessage("blue", application_properties={"colour": "blue"}),
                    ServiceBusMessage("eu", subject="order", application_properties={"region": "eu"}),
                ]
            )
        got = {}
        for sub in ("red", "eu", "all"):
            with client.get_subscription_receiver("events", sub) as receiver:
                messages = receiver.receive_messages(10, max_wait_time=1)
                got[sub] = sorted((str(m), (m.application_properties or {}).get(b"seen")) for m in messages)
    return got


class TestDeclaredRules:
    """A subscription declared with rules has exactly those rules, and routes by them."""

    def test_declared_rules_route_and_replace_default(self) -> None:
        with LocalNamespace(entities=ENTITIES) as namespace:
            assert routed(namespace) == {
                "red": [("red", 1)],
                "eu": [("eu", None)],
                "all": [("blue", None), ("eu", None), ("red", None)],
            }
            with ServiceBusAdministrationClient.from_connection_string(
                namespace.connection_string, connection_verify=namespace.certificate_path
            ) as admin:
                [rule] = admin.list_rules("events", "red")
                assert rule.name == "colour" and isinstance(rule.filter, SqlRuleFilter)
                assert rule.filter.sql_expression == "colour = @c" and rule.filter.parameters == {"@c": "red"}
                assert isinstance(rule.action, SqlRuleAction) and rule.action.sql_expression == "SET seen = 1"
                assert [r.name for r in admin.list_rules("events", "all")] == ["$Default"]

    def test_a_store_keeps_the_file_s_rules_authoritative(self, tmp_path: Path) -> None:
        store = tmp_path / "store.db"
        with LocalNamespace(entities=ENTITIES, store=store) as namespace:
            with ServiceBusAdministrationClient.from_connection_string(
                namespace.connection_string, connection_verify=namespace.certificate_path
            ) as admin:
                admin.create_rule("events", "all", "extra", filter=SqlRuleFilter("1=1"))
                admin.delete_rule("events", "red", "colour")
        with LocalNamespace(entities=ENTITIES, store=store) as namespace:
            with ServiceBusAdministrationClient.from_connection_string(
                namespace.connection_string, connection_verify=namespace.certificate_path
            ) as admin:
                assert [r.name for r in admin.list_rules("events", "red")] == ["colour"]  # the file's, again
                assert sorted(r.name for r in admin.list_rules("events", "all")) == ["$Default", "extra"]  # kept


class TestBadRules:
    """A rule the service would refuse is refused when the file is read, naming it."""

    @pytest.mark.parametrize(
        ("rule", "problem"),
        [
            ({"sql": "colour = "}, "There was an error parsing the SQL expression"),
            ({"sql": "a = 1", "correlation": {"label": "x"}}, "needs one filter"),
            ({}, "needs one filter"),
            ({"sql": "a = 1", "colour": "red"}, "unknown key"),
            ({"correlation": {}}, "At least one system or user property must be set"),
            ({"sql": "a = 1", "action": "SET"}, "There was an error parsing the SQL expression"),
        ],
    )
    def test_refused_with_the_rule_named(self, rule: dict[str, Any], problem: str) -> None:
        data = {"topics": {"t": {"subscriptions": {"s": {"rules": {"r": rule}}}}}}
        with pytest.raises(ConfigurationError) as caught:
            EntityDefinitions.from_mapping(data)
        assert caught.value.field.startswith("topics.t.subscriptions.s.rules.r")
        assert problem in str(caught.value)
