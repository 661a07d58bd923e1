"""The administration API contract: the real ``ServiceBusAdministrationClient`` against
``geobus.local``, on the namespace's own port.

Every call runs through the sync client (``azure.servicebus.management``) and the
async one (``azure.servicebus.aio.management``): the ``admin`` fixture gives an
``Admin`` of each mode, whose calls are all awaited (``admin_helpers``), so one test
body is one table of calls for both. The clients are built as a user builds them,
``from_connection_string(ns.connection_string, connection_verify=ns.certificate_path)``:
azure-servicebus 7.15 dials https:// even for a development connection string.

Beyond the calls: entities created through the API behave as declared ones (sessions,
lock duration, max delivery count, deletion), declared entities show in the API, the
SQLite store keeps what the API made, and a plain HTTP client with a SAS token is
served on the same port as AMQP. Messages go through the real ``ServiceBusClient``.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusError
from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    ServiceBusAdministrationClient,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from geobus._sas import generate_sas_token
from geobus.local import DEV_KEY, DEV_KEY_NAME, LocalNamespace

from .admin_helpers import MODES, Admin, message, open_admin, received_properties, send, unique
from .contract_helpers import NO_KEEP_ALIVE, ONCE, SHORT_WAIT, ids, receive, wrong_key

pytestmark = pytest.mark.timeout(60)

# Service Bus's "forever" (TimeSpan.MaxValue) as the SDK parses it: over 29,000 years.
FOREVER_AT_LEAST = timedelta(days=10675199)


@pytest.fixture(scope="module")
def ns() -> Iterator[LocalNamespace]:
    """One namespace for the module: every test names its own entities (``unique``)."""
    with LocalNamespace() as namespace:
        yield namespace


@pytest.fixture(params=MODES)
async def admin(request: pytest.FixtureRequest, ns: LocalNamespace) -> AsyncIterator[Admin]:
    """The sync and the async administration client, one per test."""
    async with open_admin(request.param, ns) as client:
        yield client


def _names(items: list[Any]) -> list[str]:
    return [item.name for item in items]


def _one(items: list[Any], name: str) -> Any:
    (found,) = [item for item in items if item.name.lower() == name.lower()]
    return found


def _counts(runtime: Any) -> tuple[int, int, int]:
    return (
        runtime.active_message_count,
        runtime.dead_letter_message_count,
        runtime.total_message_count,
    )


def _sb(ns: LocalNamespace) -> ServiceBusClient:
    return ServiceBusClient.from_connection_string(ns.connection_string)


# -- queues --------------------------------------------------------------------------------


class TestQueues:
    """Queues: create, get, list, update, delete, and what the service refuses."""

    async def test_create_get_list_update_delete(self, admin: Admin) -> None:
        name = unique("queue")
        created = await admin.create_queue(
            name,
            lock_duration=timedelta(seconds=30),
            max_delivery_count=4,
            user_metadata="made by a test",
            dead_lettering_on_message_expiration=True,
            default_message_time_to_live=timedelta(hours=2),
        )
        assert created.name == name
        fetched = await admin.get_queue(name)
        for queue in (created, fetched):
            assert queue.lock_duration == timedelta(seconds=30)
            assert queue.max_delivery_count == 4
            assert queue.user_metadata == "made by a test"
            assert queue.dead_lettering_on_message_expiration is True
            assert queue.default_message_time_to_live == timedelta(hours=2)
            assert queue.requires_session is False
        assert name in _names(await admin.list_queues())

        fetched.max_delivery_count = 7
        fetched.lock_duration = timedelta(seconds=45)
        await admin.update_queue(fetched)
        updated = await admin.get_queue(name)
        assert (updated.max_delivery_count, updated.lock_duration) == (7, timedelta(seconds=45))
        assert updated.user_metadata == "made by a test", "an update keeps what it did not change"
        await admin.update_queue(updated, max_delivery_count=8)  # keyword overrides
        assert (await admin.get_queue(name)).max_delivery_count == 8

        await admin.delete_queue(name)
        with pytest.raises(ResourceNotFoundError):
            await admin.get_queue(name)
        assert name not in _names(await admin.list_queues())

    async def test_a_new_queue_has_service_bus_defaults(self, admin: Admin) -> None:
        queue = await admin.create_queue(unique("defaults"))
        assert queue.lock_duration == timedelta(minutes=1)
        assert queue.max_delivery_count == 10
        assert queue.max_size_in_megabytes == 1024
        assert queue.requires_session is False
        assert queue.requires_duplicate_detection is False
        assert queue.duplicate_detection_history_time_window == timedelta(minutes=10)
        assert queue.dead_lettering_on_message_expiration is False
        assert queue.enable_batched_operations is True
        assert queue.enable_partitioning is False
        assert queue.status == "Active"
        assert queue.default_message_time_to_live >= FOREVER_AT_LEAST
        assert queue.auto_delete_on_idle >= FOREVER_AT_LEAST
        assert queue.forward_to is None

    async def test_creating_twice_is_a_conflict_whatever_the_case(self, admin: Admin) -> None:
        name = unique("Twice")
        await admin.create_queue(name)
        for again in (name, name.upper(), name.lower()):
            with pytest.raises(ResourceExistsError):
                await admin.create_queue(again)
        with pytest.raises(ResourceExistsError):
            await admin.create_topic(name)  # a topic cannot take a queue's name
        assert [q for q in _names(await admin.list_queues()) if q.lower() == name.lower()] == [name]

    async def test_names_are_case_insensitive(self, admin: Admin) -> None:
        name = unique("MixedCase")
        await admin.create_queue(name, max_delivery_count=3)
        assert (await admin.get_queue(name.lower())).max_delivery_count == 3
        assert (await admin.get_queue_runtime_properties(name.upper())).active_message_count == 0
        upper = await admin.get_queue(name.upper())
        upper.max_delivery_count = 5
        await admin.update_queue(upper)
        assert (await admin.get_queue(name)).max_delivery_count == 5
        await admin.delete_queue(name.lower())
        with pytest.raises(ResourceNotFoundError):
            await admin.get_queue(name)

    async def test_a_missing_queue_is_not_found(self, admin: Admin) -> None:
        name = unique("gone")
        stale = await admin.create_queue(name)
        await admin.delete_queue(name)
        with pytest.raises(ResourceNotFoundError):
            await admin.get_queue(name)
        with pytest.raises(ResourceNotFoundError):
            await admin.get_queue_runtime_properties(name)
        with pytest.raises(ResourceNotFoundError):
            await admin.delete_queue(name)
        with pytest.raises(ResourceNotFoundError):
            await admin.update_queue(stale)  # an update never creates
        assert name not in _names(await admin.list_queues())

    async def test_requires_session_cannot_change(self, admin: Admin) -> None:
        name = unique("sessionless")
        queue = await admin.create_queue(name)
        queue.requires_session = True
        with pytest.raises(HttpResponseError) as caught:
            await admin.update_queue(queue)
        assert caught.value.status_code == 400
        assert (await admin.get_queue(name)).requires_session is False

    @pytest.mark.parametrize(
        "options",
        [
            {"lock_duration": timedelta(minutes=6)},
            {"max_delivery_count": 0},
            {"default_message_time_to_live": timedelta(seconds=-1)},
        ],
        ids=["lock-over-5-minutes", "no-deliveries", "negative-ttl"],
    )
    async def test_a_bad_value_is_refused(self, admin: Admin, options: dict[str, Any]) -> None:
        name = unique("bad")
        with pytest.raises(HttpResponseError) as caught:
            await admin.create_queue(name, **options)
        assert caught.value.status_code == 400
        with pytest.raises(ResourceNotFoundError):
            await admin.get_queue(name)

    async def test_a_bad_name_is_refused(self, admin: Admin) -> None:
        with pytest.raises(HttpResponseError) as caught:
            await admin.create_queue("not a name!")
        assert caught.value.status_code == 400

    async def test_listing_pages_through_everything(self, admin: Admin) -> None:
        for _ in range(5):
            await admin.create_queue(unique("paged"))
        whole = _names(await admin.list_queues())
        paged = _names(await admin.list_queues(max_page_size=2))
        assert len(whole) >= 5
        assert paged == whole


# -- topics, subscriptions, rules ---------------------------------------------------------------


class TestTopicsAndSubscriptions:
    """Topics and subscriptions: the same calls, and a subscription's first rule."""

    async def test_topic_create_get_list_update_delete(self, admin: Admin) -> None:
        name = unique("topic")
        created = await admin.create_topic(
            name, default_message_time_to_live=timedelta(hours=1), user_metadata="t"
        )
        fetched = await admin.get_topic(name)
        for topic in (created, fetched):
            assert topic.name == name
            assert topic.default_message_time_to_live == timedelta(hours=1)
            assert topic.user_metadata == "t"
            assert topic.requires_duplicate_detection is False
        assert name in _names(await admin.list_topics())
        with pytest.raises(ResourceExistsError):
            await admin.create_topic(name.upper())
        with pytest.raises(ResourceExistsError):
            await admin.create_queue(name)  # a queue cannot take a topic's name

        fetched.default_message_time_to_live = timedelta(hours=3)
        await admin.update_topic(fetched)
        assert (await admin.get_topic(name)).default_message_time_to_live == timedelta(hours=3)

        await admin.delete_topic(name)
        with pytest.raises(ResourceNotFoundError):
            await admin.get_topic(name)
        with pytest.raises(ResourceNotFoundError):
            await admin.delete_topic(name)
        assert name not in _names(await admin.list_topics())

    async def test_subscription_create_get_list_update_delete(self, admin: Admin) -> None:
        topic, name = unique("topic"), unique("Sub")
        await admin.create_topic(topic)
        created = await admin.create_subscription(
            topic,
            name,
            max_delivery_count=3,
            lock_duration=timedelta(seconds=20),
            dead_lettering_on_filter_evaluation_exceptions=False,
        )
        fetched = await admin.get_subscription(topic, name.lower())
        for sub in (created, fetched):
            assert sub.max_delivery_count == 3
            assert sub.lock_duration == timedelta(seconds=20)
            assert sub.dead_lettering_on_filter_evaluation_exceptions is False
            assert sub.requires_session is False
        assert _names(await admin.list_subscriptions(topic)) == [name]
        with pytest.raises(ResourceExistsError):
            await admin.create_subscription(topic, name.upper())

        fetched.max_delivery_count = 6
        await admin.update_subscription(topic, fetched)
        assert (await admin.get_subscription(topic, name)).max_delivery_count == 6
        fetched.requires_session = True
        with pytest.raises(HttpResponseError) as caught:
            await admin.update_subscription(topic, fetched)
        assert caught.value.status_code == 400

        await admin.delete_subscription(topic, name)
        with pytest.raises(ResourceNotFoundError):
            await admin.get_subscription(topic, name)
        with pytest.raises(ResourceNotFoundError):
            await admin.delete_subscription(topic, name)
        assert await admin.list_subscriptions(topic) == []

    async def test_a_new_subscription_has_the_default_true_rule(self, admin: Admin) -> None:
        topic, name = unique("topic"), unique("sub")
        await admin.create_topic(topic)
        await admin.create_subscription(topic, name)
        (rule,) = await admin.list_rules(topic, name)
        assert rule.name == "$Default"
        assert isinstance(rule.filter, TrueRuleFilter)
        assert rule.action is None
        fetched = await admin.get_rule(topic, name, "$Default")
        assert isinstance(fetched.filter, TrueRuleFilter)

    async def test_deleting_a_topic_deletes_its_subscriptions(self, admin: Admin) -> None:
        topic = unique("topic")
        await admin.create_topic(topic)
        await admin.create_subscription(topic, "a")
        await admin.delete_topic(topic)
        await admin.create_topic(topic)
        assert await admin.list_subscriptions(topic) == []
        with pytest.raises(ResourceNotFoundError):
            await admin.get_subscription(topic, "a")

    async def test_what_a_missing_topic_or_subscription_gives(self, admin: Admin) -> None:
        topic = unique("nowhere")
        with pytest.raises(ResourceNotFoundError):
            await admin.get_topic(topic)
        with pytest.raises(ResourceNotFoundError):
            await admin.get_topic_runtime_properties(topic)
        with pytest.raises(ResourceNotFoundError):
            await admin.create_subscription(topic, "sub")
        with pytest.raises(ResourceNotFoundError):
            await admin.get_subscription(topic, "sub")
        with pytest.raises(ResourceNotFoundError):
            await admin.get_subscription_runtime_properties(topic, "sub")
        await admin.create_topic(topic)
        with pytest.raises(ResourceNotFoundError):
            await admin.get_subscription(topic, "sub")
        with pytest.raises(ResourceNotFoundError):
            await admin.create_rule(topic, "sub", "r", filter=SqlRuleFilter("a = 1"))
        with pytest.raises(ResourceNotFoundError):
            await admin.list_rules(topic, "sub")


class TestRules:
    """Rules: create, get, list, update, delete, with every filter and action kind."""

    async def _subscription(self, admin: Admin) -> tuple[str, str]:
        topic, sub = unique("topic"), unique("sub")
        await admin.create_topic(topic)
        await admin.create_subscription(topic, sub)
        return topic, sub

    async def test_sql_rule_create_get_list_update_delete(self, admin: Admin) -> None:
        topic, sub = await self._subscription(admin)
        created = await admin.create_rule(
            topic,
            sub,
            "Priced",
            filter=SqlRuleFilter("price > @low AND color = 'red'", parameters={"@low": 5}),
            action=SqlRuleAction("SET tier = @tier", parameters={"@tier": "gold"}),
        )
        fetched = await admin.get_rule(topic, sub, "priced")
        for rule in (created, fetched):
            assert rule.filter.sql_expression == "price > @low AND color = 'red'"
            assert dict(rule.filter.parameters) == {"@low": 5}
            assert rule.action.sql_expression == "SET tier = @tier"
            assert dict(rule.action.parameters) == {"@tier": "gold"}
        assert sorted(_names(await admin.list_rules(topic, sub))) == ["$Default", "Priced"]
        with pytest.raises(ResourceExistsError):
            await admin.create_rule(topic, sub, "PRICED", filter=SqlRuleFilter("a = 1"))

        fetched.filter = CorrelationRuleFilter(correlation_id="order", properties={"k": 1})
        fetched.action = None
        await admin.update_rule(topic, sub, fetched)
        updated = await admin.get_rule(topic, sub, "Priced")
        assert isinstance(updated.filter, CorrelationRuleFilter)
        assert updated.filter.correlation_id == "order"
        assert dict(updated.filter.properties) == {"k": 1}
        assert updated.action is None

        await admin.delete_rule(topic, sub, "Priced")
        with pytest.raises(ResourceNotFoundError):
            await admin.get_rule(topic, sub, "Priced")
        with pytest.raises(ResourceNotFoundError):
            await admin.delete_rule(topic, sub, "Priced")
        assert _names(await admin.list_rules(topic, sub)) == ["$Default"]
        await admin.delete_rule(topic, sub, "$Default")
        assert await admin.list_rules(topic, sub) == []

    async def test_correlation_filter_keeps_every_field(self, admin: Admin) -> None:
        topic, sub = await self._subscription(admin)
        fields: dict[str, Any] = {
            "correlation_id": "c",
            "message_id": "m",
            "to": "t",
            "reply_to": "r",
            "label": "l",
            "session_id": "s",
            "reply_to_session_id": "rs",
            "content_type": "application/json",
        }
        properties = {"text": "x", "number": 7, "real": 2.5, "flag": True}
        await admin.create_rule(
            topic, sub, "all", filter=CorrelationRuleFilter(**fields, properties=properties)
        )
        rule = await admin.get_rule(topic, sub, "all")
        assert isinstance(rule.filter, CorrelationRuleFilter)
        assert {key: getattr(rule.filter, key) for key in fields} == fields
        assert dict(rule.filter.properties) == properties

    async def test_true_and_false_filters_keep_their_kind(self, admin: Admin) -> None:
        topic, sub = await self._subscription(admin)
        await admin.create_rule(topic, sub, "never", filter=FalseRuleFilter())
        await admin.create_rule(topic, sub, "always", filter=TrueRuleFilter())
        rules = {rule.name: rule for rule in await admin.list_rules(topic, sub)}
        assert isinstance(rules["never"].filter, FalseRuleFilter)
        assert isinstance(rules["always"].filter, TrueRuleFilter)


# -- runtime properties and the namespace ------------------------------------------------------


class TestRuntimeProperties:
    """Message counts as the service reports them: active, dead-lettered, scheduled."""

    async def test_queue_counts(self, admin: Admin, ns: LocalNamespace) -> None:
        name = unique("counted")
        await admin.create_queue(name)
        send(ns, name, [message(f"m{i}") for i in range(3)], scheduled=[message("later")])
        with _sb(ns) as client, client.get_queue_receiver(name) as receiver:
            (first,) = receive(receiver)
            receiver.dead_letter_message(first, reason="test")
        runtime = await admin.get_queue_runtime_properties(name)
        assert runtime.name == name
        counts = (
            runtime.active_message_count,
            runtime.dead_letter_message_count,
            runtime.scheduled_message_count,
            runtime.total_message_count,
        )
        assert counts == (2, 1, 1, 4)
        assert runtime.size_in_bytes > 0
        assert runtime.created_at_utc is not None
        listed = _one(await admin.list_queues_runtime_properties(), name)
        assert (listed.active_message_count, listed.dead_letter_message_count) == (2, 1)
        assert listed.scheduled_message_count == 1

    async def test_subscription_counts(self, admin: Admin, ns: LocalNamespace) -> None:
        topic = unique("counted")
        await admin.create_topic(topic)
        await admin.create_subscription(topic, "a")
        await admin.create_subscription(topic, "b")
        send(ns, topic, [message("one"), message("two")], topic=True)
        with _sb(ns) as client, client.get_subscription_receiver(topic, "a") as receiver:
            (first,) = receive(receiver)
            receiver.dead_letter_message(first)
        a = _counts(await admin.get_subscription_runtime_properties(topic, "a"))
        b = _counts(await admin.get_subscription_runtime_properties(topic, "b"))
        assert (a, b) == ((1, 1, 2), (2, 0, 2))  # (active, dead-lettered, total)
        listed = {sub.name: sub for sub in await admin.list_subscriptions_runtime_properties(topic)}
        assert sorted(listed) == ["a", "b"]
        assert listed["a"].dead_letter_message_count == 1
        assert listed["b"].active_message_count == 2

        runtime = await admin.get_topic_runtime_properties(topic)
        assert runtime.subscription_count == 2
        assert runtime.size_in_bytes > 0
        listed_topic = _one(await admin.list_topics_runtime_properties(), topic)
        assert listed_topic.subscription_count == 2

    async def test_a_message_scheduled_on_a_topic_counts_on_the_topic(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        # Service Bus keeps a scheduled message in the topic until its time comes:
        # TopicRuntimeProperties has a scheduled count, SubscriptionRuntimeProperties none.
        topic = unique("scheduled")
        await admin.create_topic(topic)
        await admin.create_subscription(topic, "a")
        send(ns, topic, [], topic=True, scheduled=[message("later")])
        runtime = await admin.get_topic_runtime_properties(topic)
        assert runtime.scheduled_message_count == 1
        sub = await admin.get_subscription_runtime_properties(topic, "a")
        assert (sub.active_message_count, sub.total_message_count) == (0, 0)

    async def test_namespace_properties(self, admin: Admin) -> None:
        props = await admin.get_namespace_properties()
        assert isinstance(props.name, str) and props.name
        assert props.messaging_sku in ("Basic", "Standard", "Premium")
        assert props.namespace_type == "Messaging"
        assert isinstance(props.created_at_utc, datetime)


# -- who may call ----------------------------------------------------------------------------------


class TestAuthorisation:
    """A wrong key is the service's 401; the namespace's certificate is the one to trust."""

    @pytest.mark.parametrize("mode", MODES)
    async def test_a_wrong_key_is_refused(self, ns: LocalNamespace, mode: str) -> None:
        name = unique("unauthorised")
        async with open_admin(mode, ns, wrong_key(ns.connection_string)) as intruder:
            with pytest.raises(ClientAuthenticationError) as caught:
                await intruder.get_queue(name)
            assert caught.value.status_code == 401
            with pytest.raises(ClientAuthenticationError):
                await intruder.list_queues()
            with pytest.raises(ClientAuthenticationError):
                await intruder.create_queue(name)
        async with open_admin(mode, ns) as admin:
            with pytest.raises(ResourceNotFoundError):
                await admin.get_queue(name)

    def test_an_untrusted_certificate_is_refused(self, ns: LocalNamespace) -> None:
        with ServiceBusAdministrationClient.from_connection_string(
            ns.connection_string, retry_total=0
        ) as client:
            with pytest.raises(ServiceRequestError):
                client.get_namespace_properties()


# -- entities made through the API behave as declared ones ----------------------------------------


class TestEntitiesBehave:
    """What the API creates, the broker acts on: sessions, locks, delivery counts, deletion."""

    async def test_a_session_queue_needs_a_session_receiver(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        name = unique("sessions")
        await admin.create_queue(name, requires_session=True)
        send(ns, name, [message("in-session", session_id="s1")])
        with ServiceBusClient.from_connection_string(ns.connection_string, **ONCE) as client:
            with pytest.raises(ServiceBusError) as caught:
                with client.get_queue_receiver(name) as plain:
                    plain.receive_messages(max_wait_time=SHORT_WAIT)
            assert "amqp:not-allowed" in str(caught.value)
            with client.get_queue_receiver(name, session_id="s1") as receiver:
                (got,) = receive(receiver)
                receiver.complete_message(got)
        assert got.session_id == "s1"

    async def test_lock_duration_sets_locked_until_and_an_update_changes_it(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        name = unique("locked")
        queue = await admin.create_queue(name, lock_duration="PT5S")
        assert queue.lock_duration == timedelta(seconds=5)
        send(ns, name, [message("held")])
        with _sb(ns) as client, client.get_queue_receiver(name) as receiver:
            before = datetime.now(timezone.utc)
            (got,) = receive(receiver)
            assert _lock_seconds(got.locked_until_utc, before) == pytest.approx(5, abs=1.5)
            receiver.abandon_message(got)
            await admin.update_queue(queue, lock_duration=timedelta(seconds=9))
            before = datetime.now(timezone.utc)
            (again,) = receive(receiver)
            assert _lock_seconds(again.locked_until_utc, before) == pytest.approx(9, abs=1.5)
            receiver.complete_message(again)

    async def test_max_delivery_count_dead_letters_after_that_many_abandons(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        name = unique("poison")
        await admin.create_queue(name, max_delivery_count=2)
        send(ns, name, [message("poison")])
        with _sb(ns) as client:
            with client.get_queue_receiver(name) as receiver:
                for _ in range(2):
                    (got,) = receive(receiver)
                    receiver.abandon_message(got)
            with client.get_queue_receiver(name, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dead:
                (dead_lettered,) = receive(dead)
                dead.complete_message(dead_lettered)
        assert dead_lettered.message_id == "poison"
        assert dead_lettered.dead_letter_reason == "MaxDeliveryCountExceeded"

    async def test_a_subscription_made_by_the_api_keeps_its_settings(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        topic = unique("topic")
        await admin.create_topic(topic)
        await admin.create_subscription(topic, "once", max_delivery_count=1)
        send(ns, topic, [message("only-once")], topic=True)
        with _sb(ns) as client:
            with client.get_subscription_receiver(topic, "once") as receiver:
                (got,) = receive(receiver)
                receiver.abandon_message(got)
            with client.get_subscription_receiver(
                topic, "once", sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dead:
                (dead_lettered,) = receive(dead)
                dead.complete_message(dead_lettered)
        assert dead_lettered.dead_letter_reason == "MaxDeliveryCountExceeded"

    async def test_deleting_a_queue_removes_its_messages_and_detaches_its_receivers(
        self, admin: Admin, ns: LocalNamespace
    ) -> None:
        name = unique("doomed")
        await admin.create_queue(name)
        send(ns, name, [message("a"), message("b")])
        with ServiceBusClient.from_connection_string(ns.connection_string, **ONCE) as client:
            with client.get_queue_receiver(name) as receiver:
                (held,) = receive(receiver)
                await admin.delete_queue(name)
                with pytest.raises(MessagingEntityNotFoundError):
                    receiver.receive_messages(max_wait_time=SHORT_WAIT)
        assert name not in ns.counts()
        await admin.create_queue(name)
        runtime = await admin.get_queue_runtime_properties(name)
        assert (runtime.active_message_count, runtime.total_message_count) == (0, 0)
        assert held.message_id == "a"


def _lock_seconds(locked_until: datetime | None, before: datetime) -> float:
    assert locked_until is not None
    return (locked_until - before).total_seconds()


# -- declared entities, the store ------------------------------------------------------------------

DECLARED: dict[str, Any] = {
    "queues": {
        "declared": {"lock_duration": 30, "max_delivery_count": 5, "requires_session": True}
    },
    "topics": {"news": {"subscriptions": {"reader": {"max_delivery_count": 3}}}},
}


class TestDeclaredEntities:
    """Entities declared at start, or made on first use, are in the API like the rest."""

    @pytest.mark.parametrize("mode", MODES)
    async def test_declared_and_first_use_entities_are_listed(self, mode: str) -> None:
        with LocalNamespace(entities=DECLARED, lock_duration=40) as ns:
            send(ns, "first-use", [message("made-it")])
            async with open_admin(mode, ns) as admin:
                queues = {q.name: q for q in await admin.list_queues()}
                assert sorted(queues) == ["declared", "first-use"]
                declared = queues["declared"]
                assert declared.lock_duration == timedelta(seconds=30)
                assert declared.max_delivery_count == 5
                assert declared.requires_session is True
                assert queues["first-use"].lock_duration == timedelta(seconds=40)
                runtime = await admin.get_queue_runtime_properties("first-use")
                assert runtime.active_message_count == 1
                assert _names(await admin.list_topics()) == ["news"]
                (reader,) = await admin.list_subscriptions("news")
                assert (reader.name, reader.max_delivery_count) == ("reader", 3)
                assert _names(await admin.list_rules("news", "reader")) == ["$Default"]


class TestPersistence:
    """With a store, what the API made survives a restart: entities, properties, rules."""

    async def test_queue_and_rule_survive_a_restart(self, tmp_path: Path) -> None:
        store = tmp_path / "s.db"
        with LocalNamespace(store=store) as ns:
            async with open_admin("sync", ns) as admin:
                await admin.create_queue(
                    "kept",
                    max_delivery_count=3,
                    lock_duration=timedelta(seconds=20),
                    user_metadata="k",
                )
                await admin.create_queue("dropped")
                await admin.delete_queue("dropped")
                await admin.create_topic("events")
                await admin.create_subscription("events", "reds")
                await admin.delete_rule("events", "reds", "$Default")
                await admin.create_rule(
                    "events",
                    "reds",
                    "red",
                    filter=SqlRuleFilter("color = 'red'"),
                    action=SqlRuleAction("SET seen = 1"),
                )
        with LocalNamespace(store=store) as ns:
            async with open_admin("async", ns) as admin:
                kept = await admin.get_queue("kept")
                assert (kept.max_delivery_count, kept.lock_duration) == (3, timedelta(seconds=20))
                assert kept.user_metadata == "k"
                assert "dropped" not in _names(await admin.list_queues())
                (rule,) = await admin.list_rules("events", "reds")
                assert rule.name == "red"
                assert rule.filter.sql_expression == "color = 'red'"
                assert rule.action.sql_expression == "SET seen = 1"
            send(
                ns,
                "events",
                [message("r", {"color": "red"}), message("b", {"color": "blue"})],
                topic=True,
            )
            with _sb(ns) as client, client.get_subscription_receiver("events", "reds") as receiver:
                (got,) = receive(receiver)
                receiver.complete_message(got)
                assert receiver.peek_messages(max_message_count=5, sequence_number=1) == []
        assert got.message_id == "r"
        assert received_properties(got) == {"color": "red", "seen": 1, "RuleName": "red"}


# -- plain HTTP beside AMQP ---------------------------------------------------------------------------


class TestPlainHttp:
    """The API answers plain HTTP too, with a SAS token, on the port AMQP clients use."""

    def _get(self, connection: http.client.HTTPConnection, token: str | None) -> tuple[int, bytes]:
        headers = {"Authorization": token} if token else {}
        connection.request("GET", "/$Resources/queues?api-version=2021-05", headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    def test_get_with_and_without_a_token_beside_an_amqp_client(self, ns: LocalNamespace) -> None:
        # A token as the SDK signs one (geobus._sas makes it byte for byte the same way).
        audience = f"https://{ns.fully_qualified_namespace}"
        token = generate_sas_token(audience, DEV_KEY_NAME, DEV_KEY, int(time.time()) + 600)
        name = unique("beside")
        connection = http.client.HTTPConnection(ns.host, ns.port, timeout=10)
        try:
            status, body = self._get(connection, None)
            assert status == 401
            with _sb(ns) as client:
                with client.get_queue_sender(name, **NO_KEEP_ALIVE) as sender:
                    status, body = self._get(connection, token)  # while AMQP is open
                    assert status == 200
                    assert b"<feed" in body
                    sender.send_messages(ServiceBusMessage("over AMQP", message_id="amqp"))
                with client.get_queue_receiver(name) as receiver:
                    (got,) = receive(receiver)
                    receiver.complete_message(got)
                    status, body = self._get(connection, token)  # the same HTTP connection
            assert status == 200
            assert name.encode() in body, "the queue AMQP made is listed"
            assert ids([got]) == ["amqp"]
        finally:
            connection.close()
