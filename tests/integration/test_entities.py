"""``geobus entities`` against two local namespaces, through their administration API.

Each compared property gets a test of its own: the two namespaces hold the same
entity but for that one property, and ``check`` reports exactly it. ``sync`` then
makes whole namespaces alike (``check`` exits 0), and a subscription missing in the
secondary is reported before the outage that would have dropped its copies.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.management import (
    CorrelationRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
)

import geobus
from geobus._cli import main
from geobus._entities.compare import QUEUE_PROPERTIES, SUBSCRIPTION_PROPERTIES, TOPIC_PROPERTIES
from geobus.local import LocalNamespace
from geobus.testing import NamespacePair, local_pair

from .helpers import FAST

_S = datetime.timedelta(seconds=1)
# For each compared property: the primary's value and the secondary's.
VALUES: dict[str, tuple[Any, Any]] = {
    "lock_duration": (30 * _S, 45 * _S),
    "max_size_in_megabytes": (1024, 2048),
    "requires_duplicate_detection": (False, True),
    "requires_session": (False, True),
    "default_message_time_to_live": (86400 * _S, 172800 * _S),
    "dead_lettering_on_message_expiration": (False, True),
    "dead_lettering_on_filter_evaluation_exceptions": (True, False),
    "duplicate_detection_history_time_window": (300 * _S, 420 * _S),
    "max_delivery_count": (5, 7),
    "enable_batched_operations": (True, False),
    "status": ("Active", "Disabled"),
    "support_ordering": (True, False),
    "auto_delete_on_idle": (3600 * _S, 7200 * _S),
    "enable_partitioning": (False, True),
    "enable_express": (False, True),
    "filtering_messages_before_publishing": (False, True),
    "forward_to": ("target-a", "target-b"),
    "forward_dead_lettered_messages_to": ("target-a", "target-b"),
    "user_metadata": ("owned by team a", "owned by team b"),
    "max_message_size_in_kilobytes": (256, 1024),
}
# Compared, but never sent by the SDK's create or update (``TopicProperties._to_internal_entity``).
SDK_CANNOT_SET = frozenset({"filtering_messages_before_publishing"})
CASES = [
    *(("queue", p) for p in QUEUE_PROPERTIES),
    *(("topic", p) for p in TOPIC_PROPERTIES),
    *(("subscription", p) for p in SUBSCRIPTION_PROPERTIES),
]


@pytest.fixture
def pair() -> Iterator[NamespacePair[LocalNamespace]]:
    with local_pair() as pair:
        yield pair


def admin(namespace: LocalNamespace) -> ServiceBusAdministrationClient:
    """The SDK's administration client as a user builds it for a local namespace."""
    return ServiceBusAdministrationClient.from_connection_string(
        namespace.connection_string, connection_verify=namespace.certificate_path, retry_total=0
    )


def config_file(pair: NamespacePair[LocalNamespace], tmp_path: Path) -> Path:
    path = tmp_path / "geobus.toml"
    primary, secondary = pair.connection_strings
    path.write_text(f'[primary]\nconnection_string = "{primary}"\n[secondary]\nconnection_string = "{secondary}"\n')
    return path


def entities(pair: NamespacePair[LocalNamespace], tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``geobus entities ARGS --config FILE``: (status, stdout)."""
    status = main(["entities", *args, "--config", str(config_file(pair, tmp_path))])
    return status, capsys.readouterr().out


def create(client: ServiceBusAdministrationClient, kind: str, **properties: Any) -> str:
    """One entity of ``kind`` (a subscription under topic ``t``); its path as ``check`` names it."""
    for target in ("target-a", "target-b"):
        client.create_queue(target)
    if kind == "queue":
        client.create_queue("e", **properties)
        return "e"
    if kind == "topic":
        client.create_topic("e", **properties)
        return "e"
    client.create_topic("t")
    client.create_subscription("t", "e", **properties)
    return "t/Subscriptions/e"


class TestCheckEachProperty:
    """Two namespaces that differ in one compared property: ``check`` reports that one."""

    @pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}-{p}" for k, p in CASES])
    def test_one_property_differs(
        self, pair: NamespacePair[LocalNamespace], tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str
    ) -> None:
        primary_value, secondary_value = VALUES[name]
        with admin(pair.primary) as primary, admin(pair.secondary) as secondary:
            path = create(primary, kind, **{name: primary_value})
            create(secondary, kind, **{name: secondary_value})
        if name in SDK_CANNOT_SET:
            # azure-servicebus 7.15 leaves it out of its requests: set it as the portal would.
            for namespace, value in zip(pair, VALUES[name], strict=True):
                topic = "t" if kind == "subscription" else None
                namespace._server.call(  # the registry lives on the namespace's loop
                    lambda n=namespace, v=value, t=topic: n._registry.update_entity(kind, "e", {name: v}, t)
                )
        status, out = entities(pair, tmp_path, capsys, "check", "--json")
        report = json.loads(out)
        assert status == 1 and report["alike"] is False
        assert [(d["entity"].lower(), d["kind"], d["property"]) for d in report["differences"]] == [
            (path.lower(), "property", name)
        ]


def populate(client: ServiceBusAdministrationClient) -> None:
    """Queues with settings, a topic whose subscriptions filter with every kind of rule."""
    client.create_queue("dead-ends")
    client.create_queue("orders", lock_duration=30 * _S, max_delivery_count=3, forward_dead_lettered_messages_to="dead-ends")
    client.create_topic("events", requires_duplicate_detection=True)
    client.create_subscription("events", "red", default_message_time_to_live=3600 * _S)
    client.delete_rule("events", "red", "$Default")
    client.create_rule("events", "red", "colour", filter=SqlRuleFilter("colour = 'red' AND size > @min", parameters={"@min": 2}))
    client.create_subscription("events", "eu")
    client.delete_rule("events", "eu", "$Default")
    client.create_rule(
        "events", "eu", "region", filter=CorrelationRuleFilter(label="order", properties={"region": "eu"}),
        action=SqlRuleAction("SET routed = 'eu'"),
    )  # fmt: skip


def routed(namespace: LocalNamespace) -> dict[str, list[str]]:
    """Send three messages to ``events`` and say which bodies each subscription got."""
    messages = [
        ServiceBusMessage("big-red", application_properties={"colour": "red", "size": 3}),
        ServiceBusMessage("small-red", application_properties={"colour": "red", "size": 1}),
        ServiceBusMessage("eu-order", subject="order", application_properties={"region": "eu"}),
    ]
    got: dict[str, list[str]] = {}
    with ServiceBusClient.from_connection_string(namespace.connection_string) as client:
        with client.get_topic_sender("events") as sender:
            sender.send_messages(messages)
        for sub in ("red", "eu"):
            with client.get_subscription_receiver("events", sub, max_wait_time=1) as receiver:
                got[sub] = sorted(str(m) for m in receiver.receive_messages(10, max_wait_time=1))
    return got


class TestSync:
    """``sync`` makes the other namespace alike; ``check`` then exits 0 and both route alike."""

    def test_sync_from_primary_then_check_is_clean(
        self, pair: NamespacePair[LocalNamespace], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with admin(pair.primary) as primary:
            populate(primary)
        status, out = entities(pair, tmp_path, capsys, "check")
        assert status == 1 and "missing in secondary" in out

        status, _ = entities(pair, tmp_path, capsys, "sync", "--from", "primary", "--dry-run")
        assert status == 1
        with admin(pair.secondary) as secondary:
            assert [q.name for q in secondary.list_queues()] == []  # a dry run changes nothing

        status, _ = entities(pair, tmp_path, capsys, "sync", "--from", "primary")
        assert status == 0
        status, out = entities(pair, tmp_path, capsys, "check")
        assert status == 0, out
        expected = {"red": ["big-red"], "eu": ["eu-order"]}
        assert routed(pair.primary) == expected
        assert routed(pair.secondary) == expected
        geobus.testing.assert_entities_alike(pair.config())


class TestMissingSubscriptionBeforeAnOutage:
    """A subscription missing in the secondary is reported by ``check`` before the outage
    that would drop its copies; after ``sync`` the outage drops nothing."""

    def test_check_reports_what_the_outage_would_lose(
        self, pair: NamespacePair[LocalNamespace], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for namespace in pair:
            with admin(namespace) as client:
                client.create_topic("events")
                client.create_subscription("events", "billing")
        with admin(pair.primary) as primary:
            primary.create_subscription("events", "audit")

        status, out = entities(pair, tmp_path, capsys, "check", "--json")
        assert status == 1
        assert [(d["entity"].lower(), d["kind"]) for d in json.loads(out)["differences"]] == [
            ("events/subscriptions/audit", "missing in secondary")
        ]
        # What it warned of: with the primary down, audit's copy has nowhere to go.
        assert self.outage_delivers(pair, "lost-in-outage") == {"billing": ["lost-in-outage"], "audit": []}

        assert entities(pair, tmp_path, capsys, "sync", "--from", "primary")[0] == 0
        assert entities(pair, tmp_path, capsys, "check")[0] == 0
        assert self.outage_delivers(pair, "kept") == {"billing": ["kept"], "audit": ["kept"]}

    @staticmethod
    def outage_delivers(pair: NamespacePair[LocalNamespace], body: str) -> dict[str, list[str]]:
        """Send ``body`` with the primary refusing, heal, and read each subscription through
        a ``DedupReceiver``."""
        config = pair.config(**FAST)
        pair.refuse("primary")
        try:
            with geobus.GeoServiceBusClient(config) as client, client.get_topic_sender("events") as sender:
                sender.send_messages(ServiceBusMessage(body))
        finally:
            pair.heal("primary")
        got: dict[str, list[str]] = {}
        with geobus.GeoServiceBusClient(config) as client:
            for sub in ("billing", "audit"):
                with client.get_subscription_receiver("events", sub) as receiver:
                    messages = receiver.receive_messages(10, max_wait_time=1)
                    for message in messages:
                        receiver.complete_message(message)
                    got[sub] = [str(m) for m in messages]
        return got
