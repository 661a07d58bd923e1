"""The administration API's translation: a real ``ServiceBusAdministrationClient`` (sync
and async) against ``AdminApi.handle`` in-process, over a dict-based ``Registry``.

Every request body here is the SDK's own (the transports in ``admin_fakes`` carry
what the client sends); the raw requests at the end send what the SDK never would.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator
from typing import Any
from xml.etree import ElementTree

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.servicebus.aio.management import (
    ServiceBusAdministrationClient as AsyncServiceBusAdministrationClient,
)
from azure.servicebus.management import (
    AuthorizationRule,
    CorrelationRuleFilter,
    FalseRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from geobus.local._admin_api import AdminApi, Response
from geobus.local._admin_model import FOREVER, FOREVER_TEXT, QUEUE_DEFAULTS, AdminError, Counts
from geobus.local._atom import format_duration, format_time, parse_duration, parse_time

from .admin_fakes import (
    CONNECTION_STRING,
    HOST,
    NAMESPACE,
    AsyncInProcessTransport,
    FakeRegistry,
    InProcessTransport,
)

ATOM = "{http://www.w3.org/2005/Atom}"
SB = "{http://schemas.microsoft.com/netservices/2010/10/servicebus/connect}"
COUNTS = "{http://schemas.microsoft.com/netservices/2011/06/servicebus}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
SECOND = datetime.timedelta(seconds=1)
UTC = datetime.timezone.utc


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def api(registry: FakeRegistry) -> AdminApi:
    return AdminApi(registry, host=HOST)


@pytest.fixture
def transport(api: AdminApi) -> InProcessTransport:
    return InProcessTransport(api)


@pytest.fixture
def client(transport: InProcessTransport) -> Iterator[ServiceBusAdministrationClient]:
    with ServiceBusAdministrationClient.from_connection_string(
        CONNECTION_STRING, transport=transport
    ) as admin:
        yield admin


@pytest.fixture
async def aclient(api: AdminApi) -> AsyncIterator[AsyncServiceBusAdministrationClient]:
    transport = AsyncInProcessTransport(api)
    async with AsyncServiceBusAdministrationClient.from_connection_string(
        CONNECTION_STRING, transport=transport
    ) as admin:
        yield admin


def forever(value: datetime.timedelta | None) -> bool:
    """What the SDK reads ``FOREVER_TEXT`` as (it rounds the seventh digit)."""
    return value is not None and abs(value - FOREVER) < datetime.timedelta(microseconds=2)


def call(api: AdminApi, method: str, target: str, body: str = "", **headers: str) -> Response:
    return api.handle(method, target, headers, body.encode())


def xml(response: Response) -> ElementTree.Element:
    return ElementTree.fromstring(response.body)


def entry_xml(description: str) -> str:
    return (
        '<entry xmlns="http://www.w3.org/2005/Atom"><content type="application/xml">'
        f"{description}</content></entry>"
    )


def queue_xml(inner: str) -> str:
    return entry_xml(f'<QueueDescription xmlns="{SB[1:-1]}">{inner}</QueueDescription>')


def detail(response: Response) -> str:
    root = xml(response)
    assert root.tag == "Error" and root.findtext("Code") == str(response.status)
    return root.findtext("Detail") or ""


class TestQueues:
    """Queues: every call of the client, the values it reads back, the errors it raises."""

    def test_create_returns_what_was_set_and_the_defaults(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        queue = client.create_queue(
            "Orders", lock_duration=datetime.timedelta(seconds=30), max_delivery_count=3,
            requires_session=True, user_metadata="meta <&>",
        )  # fmt: skip
        assert registry.created_with == [
            (
                "queue",
                "Orders",
                {
                    "lock_duration": datetime.timedelta(seconds=30),
                    "max_delivery_count": 3,
                    "requires_session": True,
                    "user_metadata": "meta <&>",
                },
            )
        ]
        assert queue.name == "Orders"
        assert queue.lock_duration == datetime.timedelta(seconds=30)
        assert (queue.max_delivery_count, queue.requires_session) == (3, True)
        assert queue.user_metadata == "meta <&>"
        assert queue.duplicate_detection_history_time_window == datetime.timedelta(minutes=10)
        assert forever(queue.default_message_time_to_live) and forever(queue.auto_delete_on_idle)
        assert (queue.status, queue.availability_status) == ("Active", "Available")
        assert queue.max_message_size_in_kilobytes == 256
        assert queue.forward_to is None and queue.authorization_rules is None

    def test_forward_to_reaches_the_registry_as_a_name_and_shows_as_a_url(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        queue = client.create_queue(
            "q", forward_to="target", forward_dead_lettered_messages_to="dlq"
        )
        stored = registry.get_entity("queue", "q").properties
        assert (stored["forward_to"], stored["forward_dead_lettered_messages_to"]) == (
            "target",
            "dlq",
        )
        assert queue.forward_to == f"sb://{HOST}/target"
        assert client.get_queue("q").forward_dead_lettered_messages_to == f"sb://{HOST}/dlq"

    def test_get_of_a_missing_queue_raises_not_found(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        with pytest.raises(ResourceNotFoundError):
            client.get_queue("nope")
        with pytest.raises(ResourceNotFoundError):
            client.get_queue_runtime_properties("nope")

    def test_create_of_an_existing_queue_raises_exists(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        client.create_queue("Orders")
        with pytest.raises(ResourceExistsError):
            client.create_queue("ORDERS")

    def test_list_shows_names_as_created(self, client: ServiceBusAdministrationClient) -> None:
        for name in ("beta", "Alpha", "gamma"):
            client.create_queue(name)
        assert [queue.name for queue in client.list_queues()] == ["Alpha", "beta", "gamma"]

    def test_update_sends_every_property_and_keeps_forever(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_queue("q", forward_to="elsewhere")
        queue = client.get_queue("q")
        queue.max_delivery_count = 7
        queue.forward_to = None  # the SDK leaves it out: forwarding stops
        client.update_queue(queue)
        kind, name, properties = registry.updated_with[-1]
        assert (kind, name) == ("queue", "q")
        assert set(properties) == set(QUEUE_DEFAULTS)
        assert properties["max_delivery_count"] == 7 and properties["forward_to"] is None
        # The SDK sends FOREVER back as ...5.477539S; the registry gets FOREVER itself.
        assert properties["default_message_time_to_live"] == FOREVER
        assert properties["auto_delete_on_idle"] == FOREVER
        again = client.get_queue("q")
        assert again.max_delivery_count == 7 and again.forward_to is None

    def test_update_with_keywords(self, client: ServiceBusAdministrationClient) -> None:
        queue = client.create_queue("q")
        client.update_queue(queue, lock_duration=datetime.timedelta(minutes=2), status="Disabled")
        again = client.get_queue("q")
        assert (again.lock_duration, again.status) == (datetime.timedelta(minutes=2), "Disabled")

    def test_update_refused_by_the_registry_raises_http_error_with_its_detail(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        queue = client.create_queue("q")
        queue.requires_session = True
        with pytest.raises(HttpResponseError) as caught:
            client.update_queue(queue)
        assert not isinstance(caught.value, (ResourceExistsError, ResourceNotFoundError))
        assert caught.value.status_code == 400
        assert "requires_session cannot be changed" in caught.value.message

    def test_update_of_a_missing_queue_raises_not_found(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        queue = client.create_queue("q")
        client.delete_queue("q")
        with pytest.raises(ResourceNotFoundError):
            client.update_queue(queue)

    def test_delete_then_delete_again_raises_not_found(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_queue("q")
        client.delete_queue("Q")
        assert registry.entities == {}
        with pytest.raises(ResourceNotFoundError):
            client.delete_queue("q")

    def test_list_pages_until_the_last_page(
        self, client: ServiceBusAdministrationClient, transport: InProcessTransport
    ) -> None:
        for index in range(5):
            client.create_queue(f"q{index}")
        transport.log.clear()
        assert [queue.name for queue in client.list_queues(max_page_size=2)] == [
            f"q{index}" for index in range(5)
        ]
        assert [exchange.target.split("&api")[0] for exchange in transport.log] == [
            "/$Resources/queues?$skip=0&$top=2",
            "/$Resources/queues?$skip=2&$top=2",
            "/$Resources/queues?$skip=4&$top=2",
        ]

    def test_runtime_properties_show_the_counts(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_queue("q")
        registry.set_counts(
            "queue", "q", Counts(active=3, dead_letter=2, scheduled=1, size_in_bytes=900)
        )
        runtime = client.get_queue_runtime_properties("q")
        assert (runtime.active_message_count, runtime.dead_letter_message_count) == (3, 2)
        assert (runtime.scheduled_message_count, runtime.total_message_count) == (1, 6)
        assert (runtime.transfer_message_count, runtime.transfer_dead_letter_message_count) == (
            0,
            0,
        )
        assert runtime.size_in_bytes == 900
        record = registry.get_entity("queue", "q")
        assert runtime.created_at_utc == record.created_at
        assert runtime.updated_at_utc == record.updated_at
        assert runtime.accessed_at_utc == record.accessed_at
        listed = list(client.list_queues_runtime_properties())
        assert [(item.name, item.total_message_count) for item in listed] == [("q", 6)]

    def test_authorization_rules_are_echoed_for_the_queue_as_created(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        rule = AuthorizationRule(
            claim_type="SharedAccessKey", claim_value="None", rights=["Listen", "Send"],
            key_name="app", primary_key="first-fake", secondary_key="second-fake",
        )  # fmt: skip
        created = client.create_queue("q", authorization_rules=[rule])
        for queue in (created, client.get_queue("q")):
            assert queue.authorization_rules is not None
            (echoed,) = queue.authorization_rules
            assert (echoed.key_name, echoed.rights) == ("app", ["Listen", "Send"])
            assert (echoed.primary_key, echoed.secondary_key) == ("first-fake", "second-fake")
            assert echoed.type == "SharedAccessAuthorizationRule"
            assert echoed.created_at_utc is not None
        client.delete_queue("q")
        assert client.create_queue("q").authorization_rules is None

    def test_a_name_with_a_slash_is_one_name(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_queue("app/orders")
        assert registry.get_entity("queue", "app/orders").name == "app/orders"
        assert client.get_queue("app/orders").name == "app/orders"
        assert [queue.name for queue in client.list_queues()] == ["app/orders"]


class TestTopics:
    """Topics: properties, runtime counts (subscriptions, filters) and errors."""

    def test_create_get_update_delete(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        topic = client.create_topic(
            "Events", default_message_time_to_live=datetime.timedelta(hours=1),
            support_ordering=False, max_size_in_megabytes=2048,
        )  # fmt: skip
        assert topic.name == "Events"
        assert topic.default_message_time_to_live == datetime.timedelta(hours=1)
        assert (topic.support_ordering, topic.max_size_in_megabytes) == (False, 2048)
        assert forever(topic.auto_delete_on_idle)
        topic = client.get_topic("events")
        topic.enable_batched_operations = False
        client.update_topic(topic)
        assert registry.updated_with[-1][2]["enable_batched_operations"] is False
        assert client.get_topic("events").enable_batched_operations is False
        assert [item.name for item in client.list_topics()] == ["Events"]
        client.delete_topic("events")
        with pytest.raises(ResourceNotFoundError):
            client.get_topic("events")

    def test_runtime_properties_count_subscriptions_and_filters(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_topic("t")
        client.create_subscription("t", "a")
        client.create_subscription("t", "b")
        client.create_rule("t", "a", "c", filter=CorrelationRuleFilter(label="x"))
        registry.set_counts("topic", "t", Counts(scheduled=4, size_in_bytes=10))
        runtime = client.get_topic_runtime_properties("t")
        assert runtime.subscription_count == 2
        assert (runtime.sql_filter_count, runtime.correlation_filter_count) == (2, 1)
        assert (runtime.scheduled_message_count, runtime.size_in_bytes) == (4, 10)
        (listed,) = client.list_topics_runtime_properties()
        assert (listed.name, listed.subscription_count) == ("t", 2)

    def test_a_name_taken_by_a_queue_raises_exists(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        client.create_queue("shared")
        with pytest.raises(ResourceExistsError):
            client.create_topic("shared")

    def test_delete_of_a_missing_topic_raises_not_found(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        with pytest.raises(ResourceNotFoundError):
            client.delete_topic("nope")


class TestSubscriptions:
    """Subscriptions under a topic: properties, runtime counts, missing topics."""

    def test_create_and_get(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_topic("t")
        created = client.create_subscription(
            "t", "Sub", lock_duration=datetime.timedelta(seconds=45), forward_to="q",
            dead_lettering_on_filter_evaluation_exceptions=False, max_delivery_count=4,
        )  # fmt: skip
        assert registry.created_with[-1] == (
            "subscription",
            "Sub",
            {
                "lock_duration": datetime.timedelta(seconds=45),
                "forward_to": "q",
                "dead_lettering_on_filter_evaluation_exceptions": False,
                "max_delivery_count": 4,
            },
        )
        for subscription in (created, client.get_subscription("t", "sub")):
            assert subscription.lock_duration == datetime.timedelta(seconds=45)
            assert subscription.forward_to == f"sb://{HOST}/q"
            assert subscription.dead_lettering_on_filter_evaluation_exceptions is False
            assert subscription.max_delivery_count == 4
            assert forever(subscription.default_message_time_to_live)
        assert [item.name for item in client.list_subscriptions("t")] == ["Sub"]

    def test_runtime_properties(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_topic("t")
        client.create_subscription("t", "s")
        registry.set_counts("subscription", "s", Counts(active=5, dead_letter=1), topic="t")
        runtime = client.get_subscription_runtime_properties("t", "s")
        assert (runtime.active_message_count, runtime.dead_letter_message_count) == (5, 1)
        assert runtime.total_message_count == 6
        (listed,) = client.list_subscriptions_runtime_properties("t")
        assert (listed.name, listed.active_message_count) == ("s", 5)

    def test_update_and_delete(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_topic("t")
        subscription = client.create_subscription("t", "s")
        subscription.user_metadata = "hello"
        client.update_subscription("t", subscription)
        assert registry.updated_with[-1][:2] == ("subscription", "s")
        assert client.get_subscription("t", "s").user_metadata == "hello"
        client.delete_subscription("t", "s")
        with pytest.raises(ResourceNotFoundError):
            client.get_subscription("t", "s")
        with pytest.raises(ResourceNotFoundError):
            client.delete_subscription("t", "s")

    def test_a_missing_topic_raises_not_found(self, client: ServiceBusAdministrationClient) -> None:
        with pytest.raises(ResourceNotFoundError):
            client.create_subscription("nope", "s")
        with pytest.raises(ResourceNotFoundError):
            client.get_subscription("nope", "s")
        with pytest.raises(ResourceNotFoundError):
            list(client.list_subscriptions("nope"))


class TestRules:
    """Rules: filters and actions to and from the registry's FilterSpec and ActionSpec."""

    @pytest.fixture(autouse=True)
    def subscription(self, client: ServiceBusAdministrationClient) -> None:
        client.create_topic("t")
        client.create_subscription("t", "s")

    def test_the_default_rule_is_a_true_filter(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        rule = client.get_rule("t", "s", "$Default")
        assert isinstance(rule.filter, TrueRuleFilter)
        assert rule.filter.sql_expression == "1=1"
        assert rule.action is None and rule.name == "$Default"

    def test_sql_filter_and_action_with_typed_parameters(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        when = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        parameters: dict[str, Any] = {
            "@s": "red", "@i": 7, "@l": 2**40, "@b": True, "@d": 1.5, "@t": when,
            "@span": datetime.timedelta(minutes=5),
        }  # fmt: skip
        rule = client.create_rule(
            "t", "s", "r1", filter=SqlRuleFilter("color = @s", parameters=parameters),
            action=SqlRuleAction("SET n = @n", parameters={"@n": 1}),
        )  # fmt: skip
        stored = registry.get_rule("t", "s", "r1")
        assert stored.filter == {
            "kind": "sql",
            "expression": "color = @s",
            "parameters": parameters,
        }
        assert stored.action == {"kind": "sql", "expression": "SET n = @n", "parameters": {"@n": 1}}
        for shown in (rule, client.get_rule("t", "s", "R1")):
            assert isinstance(shown.filter, SqlRuleFilter) and isinstance(
                shown.action, SqlRuleAction
            )
            assert shown.filter.sql_expression == "color = @s"
            assert dict(shown.filter.parameters) == parameters
            assert shown.action.sql_expression == "SET n = @n"
            assert dict(shown.action.parameters) == {"@n": 1}
            assert shown.created_at_utc == stored.created_at

    def test_correlation_filter_label_is_the_subject(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        correlation = CorrelationRuleFilter(
            correlation_id="c1", label="invoices", content_type="application/json",
            properties={"region": "eu", "priority": 2},
        )  # fmt: skip
        rule = client.create_rule("t", "s", "corr", filter=correlation)
        assert registry.get_rule("t", "s", "corr").filter == {
            "kind": "correlation", "correlation_id": "c1", "subject": "invoices",
            "content_type": "application/json", "properties": {"region": "eu", "priority": 2},
        }  # fmt: skip
        for shown in (rule, client.get_rule("t", "s", "corr")):
            assert isinstance(shown.filter, CorrelationRuleFilter)
            assert (shown.filter.correlation_id, shown.filter.label) == ("c1", "invoices")
            assert shown.filter.content_type == "application/json" and shown.filter.to is None
            assert dict(shown.filter.properties) == {"region": "eu", "priority": 2}
            assert shown.action is None

    def test_true_and_false_filters(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        client.create_rule("t", "s", "all")
        client.create_rule("t", "s", "none", filter=FalseRuleFilter())
        assert registry.get_rule("t", "s", "all").filter == {"kind": "true"}
        assert registry.get_rule("t", "s", "none").filter == {"kind": "false"}
        assert registry.get_rule("t", "s", "none").action == {"kind": "empty"}
        false = client.get_rule("t", "s", "none").filter
        assert isinstance(false, FalseRuleFilter) and false.sql_expression == "1=0"

    def test_update_rule(
        self, client: ServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        rule = client.create_rule("t", "s", "r", filter=SqlRuleFilter("a = 1"))
        rule.filter = SqlRuleFilter("a = 2")
        rule.action = SqlRuleAction("SET b = 3")
        client.update_rule("t", "s", rule)
        stored = registry.get_rule("t", "s", "r")
        assert stored.filter == {"kind": "sql", "expression": "a = 2", "parameters": {}}
        assert stored.action == {"kind": "sql", "expression": "SET b = 3", "parameters": {}}

    def test_list_rules_reads_the_parameters(self, client: ServiceBusAdministrationClient) -> None:
        client.create_rule("t", "s", "r", filter=SqlRuleFilter("a = @a", parameters={"@a": 5}))
        rules = list(client.list_rules("t", "s"))
        assert [rule.name for rule in rules] == ["$Default", "r"]
        assert isinstance(rules[0].filter, TrueRuleFilter)
        assert isinstance(rules[1].filter, SqlRuleFilter)
        assert dict(rules[1].filter.parameters) == {"@a": 5}

    def test_delete_and_missing_rules(self, client: ServiceBusAdministrationClient) -> None:
        client.create_rule("t", "s", "r")
        with pytest.raises(ResourceExistsError):
            client.create_rule("t", "s", "R")
        client.delete_rule("t", "s", "r")
        with pytest.raises(ResourceNotFoundError):
            client.get_rule("t", "s", "r")
        with pytest.raises(ResourceNotFoundError):
            client.delete_rule("t", "s", "r")

    def test_a_filter_the_registry_refuses_raises_http_error_with_its_detail(
        self, client: ServiceBusAdministrationClient
    ) -> None:
        with pytest.raises(HttpResponseError) as caught:
            client.create_rule("t", "s", "bad", filter=SqlRuleFilter("a = ("))
        assert caught.value.status_code == 400
        assert (
            caught.value.message
            == "The SQL expression does not parse: a parenthesis is not closed."
        )


class TestNamespace:
    """``get_namespace_properties``: the namespace's name and kind."""

    def test_namespace_properties(self, client: ServiceBusAdministrationClient) -> None:
        properties = client.get_namespace_properties()
        assert properties.name == NAMESPACE
        assert (properties.messaging_sku, properties.namespace_type) == ("Standard", "Messaging")
        assert properties.created_at_utc is not None and properties.alias is None


class TestAsyncClient:
    """The async client, over the same translation."""

    async def test_entities_and_rules(
        self, aclient: AsyncServiceBusAdministrationClient, registry: FakeRegistry
    ) -> None:
        queue = await aclient.create_queue("q", max_delivery_count=2)
        assert queue.max_delivery_count == 2
        queue.max_delivery_count = 9
        await aclient.update_queue(queue)
        assert (await aclient.get_queue("q")).max_delivery_count == 9
        registry.set_counts("queue", "q", Counts(active=1))
        assert (await aclient.get_queue_runtime_properties("q")).active_message_count == 1
        for index in range(3):
            await aclient.create_topic(f"t{index}")
        assert [topic.name async for topic in aclient.list_topics(max_page_size=2)] == [
            "t0", "t1", "t2",
        ]  # fmt: skip
        await aclient.create_subscription("t0", "s", lock_duration=datetime.timedelta(seconds=5))
        assert (await aclient.get_subscription("t0", "s")).lock_duration == 5 * SECOND
        assert [sub.name async for sub in aclient.list_subscriptions("t0")] == ["s"]
        rule = await aclient.create_rule(
            "t0", "s", "r", filter=SqlRuleFilter("x > @x", parameters={"@x": 3})
        )
        assert isinstance(rule.filter, SqlRuleFilter) and dict(rule.filter.parameters) == {"@x": 3}
        assert [item.name async for item in aclient.list_rules("t0", "s")] == ["$Default", "r"]
        assert (await aclient.get_namespace_properties()).name == NAMESPACE
        await aclient.delete_rule("t0", "s", "r")
        await aclient.delete_subscription("t0", "s")
        await aclient.delete_topic("t0")
        await aclient.delete_queue("q")
        assert [key[2] for key in registry.entities] == ["t1", "t2"]

    async def test_errors(self, aclient: AsyncServiceBusAdministrationClient) -> None:
        await aclient.create_queue("q")
        with pytest.raises(ResourceExistsError):
            await aclient.create_queue("q")
        with pytest.raises(ResourceNotFoundError):
            await aclient.get_queue("nope")
        with pytest.raises(ResourceNotFoundError):
            await aclient.get_rule("nope", "s", "r")
        with pytest.raises(ResourceNotFoundError):
            await aclient.delete_queue("nope")
        queue = await aclient.get_queue("q")
        queue.requires_session = True
        with pytest.raises(HttpResponseError) as caught:
            await aclient.update_queue(queue)
        assert caught.value.status_code == 400


class TestRawRequests:
    """Requests as they reach ``handle``: the service's XML shape and its refusals."""

    def test_an_entry_has_the_service_shape(self, api: AdminApi, registry: FakeRegistry) -> None:
        registry.create_entity("queue", "Orders", {"forward_to": "x", "lock_duration": SECOND})
        response = call(api, "GET", "/orders?enrich=false&api-version=2021-05")
        assert (response.status, response.headers["Content-Type"]) == (
            200,
            "application/atom+xml;type=entry;charset=utf-8",
        )
        entry = xml(response)
        assert entry.tag == f"{ATOM}entry"
        assert entry.findtext(f"{ATOM}id") == f"https://{HOST}/Orders?api-version=2021-05"
        assert entry.findtext(f"{ATOM}title") == "Orders"
        assert entry.findtext(f"{ATOM}author/{ATOM}name") == NAMESPACE
        link = entry.find(f"{ATOM}link")
        assert link is not None and link.attrib == {
            "rel": "self",
            "href": entry.findtext(f"{ATOM}id"),
        }
        description = entry.find(f"{ATOM}content/{SB}QueueDescription")
        assert description is not None
        names = [child.tag.replace(SB, "") for child in description]
        assert names[:9] == [
            "LockDuration", "MaxSizeInMegabytes", "RequiresDuplicateDetection", "RequiresSession",
            "DefaultMessageTimeToLive", "DeadLetteringOnMessageExpiration",
            "DuplicateDetectionHistoryTimeWindow", "MaxDeliveryCount", "EnableBatchedOperations",
        ]  # fmt: skip
        assert names.index("Status") < names.index("ForwardTo") < names.index("CreatedAt")
        assert names.index("CountDetails") < names.index("AutoDeleteOnIdle")
        assert description.findtext(f"{SB}LockDuration") == "PT1S"
        assert description.findtext(f"{SB}AutoDeleteOnIdle") == FOREVER_TEXT
        assert description.findtext(f"{SB}ForwardTo") == f"sb://{HOST}/x"
        assert description.findtext(f"{SB}EntityAvailabilityStatus") == "Available"
        details = description.find(f"{SB}CountDetails")
        assert details is not None and details[0].tag == f"{COUNTS}ActiveMessageCount"
        assert (
            b'xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus"'
            in response.body
        )

    def test_a_missing_entity_answers_an_empty_feed(self, api: AdminApi) -> None:
        for target in ("/nope", "/t/subscriptions/s", "/t/subscriptions/s/rules/r"):
            response = call(api, "GET", target + "?api-version=2021-05")
            assert response.status == 200
            feed = xml(response)
            assert feed.tag == f"{ATOM}feed" and feed.find(f"{ATOM}entry") is None

    def test_an_existing_entity_is_a_409_with_the_service_error_body(
        self, api: AdminApi, registry: FakeRegistry
    ) -> None:
        registry.create_entity("queue", "q", {})
        response = call(api, "PUT", "/q?api-version=2021-05", queue_xml(""))
        assert response.status == 409
        assert detail(response) == "The messaging entity 'q' already exists."

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            ("<entry", "not well-formed XML"),
            ('<!DOCTYPE x [<!ENTITY a "b">]><entry/>', "DTD"),
            ("<feed/>", "not an Atom entry"),
            (entry_xml(""), "no content"),
            ("", "no body"),
            (queue_xml("<MaxDeliveryCount>many</MaxDeliveryCount>"), "MaxDeliveryCount"),
            (queue_xml("<LockDuration>soon</LockDuration>"), "LockDuration"),
            (queue_xml("<RequiresSession>yes</RequiresSession>"), "RequiresSession"),
            (queue_xml("<Status>Sleeping</Status>"), "Status"),
            (entry_xml(f'<RuleDescription xmlns="{SB[1:-1]}"/>'), "cannot be put here"),
            (entry_xml(f'<SubscriptionDescription xmlns="{SB[1:-1]}"/>'), "/{topic}/subscriptions"),
        ],
    )
    def test_a_body_the_service_refuses_is_a_400(
        self, api: AdminApi, body: str, words: str
    ) -> None:
        response = call(api, "PUT", "/q?api-version=2021-05", body)
        assert response.status == 400
        assert words in detail(response)

    @pytest.mark.parametrize(
        ("rule", "words"),
        [
            ('<Filter i:type="LikeFilter"/>', "LikeFilter"),
            ('<Filter i:type="SqlFilter"/>', "needs a SqlExpression"),
            ('<Action i:type="Shout"/>', "Shout"),
            (
                '<Filter i:type="SqlFilter"><SqlExpression>a=@a</SqlExpression><Parameters>'
                "<KeyValueOfstringanyType><Key>@a</Key>"
                '<Value xmlns:d="http://www.w3.org/2001/XMLSchema" i:type="d:char">1</Value>'
                "</KeyValueOfstringanyType></Parameters></Filter>",
                "'char'",
            ),
        ],
    )
    def test_a_rule_the_service_refuses_is_a_400(
        self, api: AdminApi, registry: FakeRegistry, rule: str, words: str
    ) -> None:
        registry.create_entity("topic", "t", {})
        registry.create_entity("subscription", "s", {}, topic="t")
        body = entry_xml(
            f'<RuleDescription xmlns="{SB[1:-1]}" '
            f'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">{rule}</RuleDescription>'
        )
        response = call(api, "PUT", "/t/subscriptions/s/rules/r?api-version=2021-05", body)
        assert response.status == 400
        assert words in detail(response)

    def test_unknown_methods_and_paths(self, api: AdminApi) -> None:
        response = call(api, "POST", "/q/messages?api-version=2021-05")
        assert response.status == 405 and response.headers["Allow"] == "GET, PUT, DELETE"
        assert call(api, "DELETE", "/$Resources/queues").status == 405
        assert call(api, "GET", "/$Resources/eventhubs").status == 404
        assert call(api, "GET", "/t/subscriptions/s/sessions").status == 404
        assert call(api, "GET", "/$Resources/topics?$skip=minus").status == 400

    def test_the_next_link_only_while_more_remain(
        self, api: AdminApi, registry: FakeRegistry
    ) -> None:
        for name in ("a", "b", "c"):
            registry.create_entity("queue", name, {})

        def links(target: str) -> dict[str, str]:
            feed = xml(call(api, "GET", target))
            return {
                link.get("rel", ""): link.get("href", "") for link in feed.findall(f"{ATOM}link")
            }

        first = links("/$Resources/queues?$skip=0&$top=2&api-version=2021-05")
        assert (
            first["next"] == f"https://{HOST}/$Resources/queues?$skip=2&$top=2&api-version=2021-05"
        )
        assert list(first) == ["self", "next"]
        assert list(links("/$Resources/queues?$skip=2&$top=2&api-version=2021-05")) == ["self"]
        assert list(links("/$Resources/queues?$skip=0&$top=3&api-version=2021-05")) == ["self"]

    def test_a_default_rule_description_replaces_the_true_default(
        self, api: AdminApi, registry: FakeRegistry
    ) -> None:
        registry.create_entity("topic", "t", {})
        body = entry_xml(
            f'<SubscriptionDescription xmlns="{SB[1:-1]}" '
            'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
            "<LockDuration>PT5S</LockDuration><DefaultRuleDescription>"
            '<Filter i:type="CorrelationFilter"><Label>x</Label></Filter>'
            '<Action i:type="EmptyRuleAction"/><Name>only-x</Name></DefaultRuleDescription>'
            "</SubscriptionDescription>"
        )
        assert call(api, "PUT", "/t/subscriptions/s", body).status == 201
        (rule,) = registry.list_rules("t", "s")
        assert rule.name == "only-x"
        assert rule.filter == {"kind": "correlation", "subject": "x", "properties": {}}

    def test_rule_values_name_their_types(self, api: AdminApi, registry: FakeRegistry) -> None:
        registry.create_entity("topic", "t", {})
        registry.create_entity("subscription", "s", {}, topic="t")
        parameters = {"@n": 1, "@on": False, "@when": datetime.datetime(2024, 1, 2, tzinfo=UTC)}
        registry.create_rule(
            "t",
            "s",
            "r",
            {"kind": "sql", "expression": "a", "parameters": parameters},
            {"kind": "empty"},
        )
        response = call(api, "GET", "/t/subscriptions/s/rules/r")
        values = xml(response).findall(f".//{SB}Value")
        assert [value.get(XSI_TYPE) for value in values] == [
            "d6p1:int",
            "d6p1:boolean",
            "d6p1:dateTime",
        ]
        assert [value.text for value in values] == ["1", "false", "2024-01-02T00:00:00Z"]
        assert b'xmlns:d6p1="http://www.w3.org/2001/XMLSchema"' in response.body
        action = xml(response).find(f".//{SB}Action")
        assert action is not None and action.get(XSI_TYPE) == "EmptyRuleAction"

    def test_registry_errors_keep_their_status(self, api: AdminApi, registry: FakeRegistry) -> None:
        def refuse(*_: Any, **__: Any) -> None:
            raise AdminError(403, "The namespace holds as many queues as it may.")

        registry.create_entity = refuse  # type: ignore[method-assign,assignment]
        response = call(api, "PUT", "/q", queue_xml(""))
        assert response.status == 403
        assert detail(response) == "The namespace holds as many queues as it may."


class TestValues:
    """Durations and times as the service writes and reads them."""

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (datetime.timedelta(0), "PT0S"),
            (datetime.timedelta(minutes=1), "PT1M"),
            (datetime.timedelta(minutes=10), "PT10M"),
            (datetime.timedelta(days=14), "P14D"),
            (
                datetime.timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=500),
                "P1DT2H3M4.5S",
            ),
            (FOREVER, FOREVER_TEXT),
            (FOREVER + SECOND, FOREVER_TEXT),
        ],
    )
    def test_durations(self, value: datetime.timedelta, text: str) -> None:
        assert format_duration(value) == text
        assert parse_duration(text) == min(value, FOREVER)

    @pytest.mark.parametrize(
        ("text", "value"),
        [
            ("PT300S", datetime.timedelta(minutes=5)),
            ("P1W", datetime.timedelta(days=7)),
            ("P1Y", datetime.timedelta(days=365)),
            ("PT0.0000001S", datetime.timedelta(0)),
            ("P10675199DT2H48M5.477539S", FOREVER),  # the SDK's rounding of FOREVER_TEXT
            ("P99999999999D", FOREVER),
        ],
    )
    def test_other_duration_forms(self, text: str, value: datetime.timedelta) -> None:
        assert parse_duration(text) == value

    @pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1 minute", "PT1.S", "P-1D"])
    def test_bad_durations(self, text: str) -> None:
        with pytest.raises(AdminError) as caught:
            parse_duration(text)
        assert caught.value.status == 400

    def test_times(self) -> None:
        when = datetime.datetime(2024, 3, 1, 8, 30, 0, 123000, tzinfo=UTC)
        assert format_time(when) == "2024-03-01T08:30:00.123Z"
        assert parse_time("2024-03-01T08:30:00.1230000Z") == when
        assert parse_time("2024-03-01T09:30:00.123+01:00") == when
        assert parse_time("2024-03-01T08:30:00.123") == when
