"""Entity definitions for ``geobus entities`` tests: the SDK's own model objects with the
service's defaults, snapshots of them (``snap``, ``one_entity``, ``with_rule``), and
``FakeAdmin``, an in-memory ``ServiceBusAdministrationClient``.

``FakeAdmin`` answers as the service does where geobus relies on it: names are
case-insensitive, ``forward_to`` comes back as a URL naming the namespace, a new
subscription gets a ``$Default`` rule (true filter), times and counts are its own.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError, ServiceRequestError
from azure.servicebus.management import (
    QueueProperties,
    RuleProperties,
    SubscriptionProperties,
    TopicProperties,
    TrueRuleFilter,
)

from geobus import EntitySnapshot

# TimeSpan.MaxValue as the SDK reads it from the service: its last microsecond rounded up.
SDK_FOREVER = datetime.timedelta(days=10675199, hours=2, minutes=48, seconds=5, microseconds=477581)
MINUTE = datetime.timedelta(minutes=1)

QUEUE_DEFAULTS: dict[str, Any] = {
    "authorization_rules": None, "auto_delete_on_idle": SDK_FOREVER, "dead_lettering_on_message_expiration": False,
    "default_message_time_to_live": SDK_FOREVER, "duplicate_detection_history_time_window": 10 * MINUTE,
    "availability_status": "Available", "enable_batched_operations": True, "enable_express": False,
    "enable_partitioning": False, "lock_duration": MINUTE, "max_delivery_count": 10, "max_size_in_megabytes": 1024,
    "requires_duplicate_detection": False, "requires_session": False, "status": "Active", "forward_to": None,
    "user_metadata": None, "forward_dead_lettered_messages_to": None, "max_message_size_in_kilobytes": 256,
}  # fmt: skip
TOPIC_DEFAULTS: dict[str, Any] = {
    "default_message_time_to_live": SDK_FOREVER, "max_size_in_megabytes": 1024, "requires_duplicate_detection": False,
    "duplicate_detection_history_time_window": 10 * MINUTE, "enable_batched_operations": True, "size_in_bytes": 0,
    "filtering_messages_before_publishing": False, "authorization_rules": None, "status": "Active",
    "support_ordering": True, "auto_delete_on_idle": SDK_FOREVER, "enable_partitioning": False,
    "availability_status": "Available", "enable_express": False, "user_metadata": None,
    "max_message_size_in_kilobytes": 256,
}  # fmt: skip
SUBSCRIPTION_DEFAULTS: dict[str, Any] = {
    "lock_duration": MINUTE, "requires_session": False, "default_message_time_to_live": SDK_FOREVER,
    "dead_lettering_on_message_expiration": False, "dead_lettering_on_filter_evaluation_exceptions": True,
    "max_delivery_count": 10, "enable_batched_operations": True, "status": "Active", "forward_to": None,
    "user_metadata": None, "forward_dead_lettered_messages_to": None, "auto_delete_on_idle": SDK_FOREVER,
    "availability_status": "Available",
}  # fmt: skip
DEFAULTS = {"queue": QUEUE_DEFAULTS, "topic": TOPIC_DEFAULTS, "subscription": SUBSCRIPTION_DEFAULTS}
MODELS = {"queue": QueueProperties, "topic": TopicProperties, "subscription": SubscriptionProperties}


def queue(name: str, **properties: Any) -> QueueProperties:
    """A ``QueueProperties`` as the service shows a new queue, but for ``properties``."""
    return QueueProperties(name, **{**QUEUE_DEFAULTS, **properties})


def topic(name: str, **properties: Any) -> TopicProperties:
    """A ``TopicProperties`` as the service shows a new topic, but for ``properties``."""
    return TopicProperties(name, **{**TOPIC_DEFAULTS, **properties})


def subscription(name: str, **properties: Any) -> SubscriptionProperties:
    """A ``SubscriptionProperties`` as the service shows a new subscription, but for ``properties``."""
    return SubscriptionProperties(name, **{**SUBSCRIPTION_DEFAULTS, **properties})


def rule(name: str, filter: Any = None, action: Any = None) -> RuleProperties:
    """A ``RuleProperties`` (``filter`` None: the true filter, as the service stores it)."""
    return RuleProperties(name, filter=filter or TrueRuleFilter(), action=action, created_at_utc=None)


class FakeAdmin:
    """An in-memory administration client of one namespace, ``fully_qualified_namespace``.

    ``calls`` records each changing call as ``(method, path)``; ``fail`` (an exception)
    is raised by every call while set; ``closed`` says whether ``close`` was called.
    """

    def __init__(self, fully_qualified_namespace: str) -> None:
        self.fully_qualified_namespace = fully_qualified_namespace
        self.entities: dict[tuple[str, ...], tuple[str, Any]] = {}  # lower-case names -> (kind, model)
        self.calls: list[tuple[str, str]] = []
        self.fail: BaseException | None = None
        self.closed = False

    # -- test setup -----------------------------------------------------------------------

    def add(self, kind: str, *names: str, model: Any = None, **properties: Any) -> None:
        """Put an entity in place without recording a call (``model`` or the defaults + ``properties``)."""
        if model is None:
            model = rule(names[-1], **properties) if kind == "rule" else MODELS[kind](names[-1], **{**DEFAULTS[kind], **properties})
        self._store(kind, names, copy.deepcopy(model))

    def _store(self, kind: str, names: tuple[str, ...], model: Any) -> None:
        for name in ("forward_to", "forward_dead_lettered_messages_to"):
            value = getattr(model, name, None)
            if value and not urlsplit(value).netloc:  # the service answers with a URL naming itself
                setattr(model, name, f"sb://{self.fully_qualified_namespace}/{value}")
        self.entities[tuple(n.lower() for n in names)] = (kind, model)

    # -- the SDK's methods ------------------------------------------------------------------

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def _list(self, kind: str, *parent: str) -> Iterator[Any]:
        self._check()
        prefix = tuple(n.lower() for n in parent)
        for names, (found, model) in sorted(self.entities.items()):
            if found == kind and names[:-1] == prefix:
                yield copy.deepcopy(model)

    def _get(self, kind: str, *names: str) -> Any:
        self._check()
        found = self.entities.get(tuple(n.lower() for n in names))
        if found is None or found[0] != kind:
            raise ResourceNotFoundError(f"{kind} {'/'.join(names)} not found")
        return copy.deepcopy(found[1])

    def _create(self, kind: str, names: tuple[str, ...], model: Any) -> Any:
        self._check()
        if tuple(n.lower() for n in names) in self.entities:
            raise ResourceExistsError(f"{kind} {'/'.join(names)} exists")
        self.calls.append((f"create_{kind}", "/".join(names)))
        self._store(kind, names, model)
        return copy.deepcopy(model)

    def _update(self, kind: str, names: tuple[str, ...], model: Any) -> None:
        self._get(kind, *names)
        self.calls.append((f"update_{kind}", "/".join(names)))
        self._store(kind, names, copy.deepcopy(model))

    def _delete(self, kind: str, *names: str) -> None:
        self._get(kind, *names)
        self.calls.append((f"delete_{kind}", "/".join(names)))
        key = tuple(n.lower() for n in names)
        self.entities = {k: v for k, v in self.entities.items() if k[: len(key)] != key}

    def list_queues(self) -> Iterator[QueueProperties]:
        return self._list("queue")

    def list_topics(self) -> Iterator[TopicProperties]:
        return self._list("topic")

    def list_subscriptions(self, topic_name: str) -> Iterator[SubscriptionProperties]:
        return self._list("subscription", topic_name)

    def list_rules(self, topic_name: str, subscription_name: str) -> Iterator[RuleProperties]:
        return self._list("rule", topic_name, subscription_name)

    def get_queue(self, name: str) -> QueueProperties:
        return self._get("queue", name)  # type: ignore[no-any-return]

    def get_topic(self, name: str) -> TopicProperties:
        return self._get("topic", name)  # type: ignore[no-any-return]

    def get_subscription(self, topic_name: str, name: str) -> SubscriptionProperties:
        return self._get("subscription", topic_name, name)  # type: ignore[no-any-return]

    def get_rule(self, topic_name: str, subscription_name: str, name: str) -> RuleProperties:
        return self._get("rule", topic_name, subscription_name, name)  # type: ignore[no-any-return]

    def create_queue(self, name: str, **properties: Any) -> QueueProperties:
        return self._create("queue", (name,), queue(name, **properties))  # type: ignore[no-any-return]

    def create_topic(self, name: str, **properties: Any) -> TopicProperties:
        return self._create("topic", (name,), topic(name, **properties))  # type: ignore[no-any-return]

    def create_subscription(self, topic_name: str, name: str, **properties: Any) -> SubscriptionProperties:
        self._get("topic", topic_name)
        created = self._create("subscription", (topic_name, name), subscription(name, **properties))
        self._store("rule", (topic_name, name, "$Default"), rule("$Default"))  # the service's own
        return created  # type: ignore[no-any-return]

    def create_rule(self, topic_name: str, subscription_name: str, name: str, *, filter: Any, action: Any) -> RuleProperties:
        self._get("subscription", topic_name, subscription_name)
        return self._create("rule", (topic_name, subscription_name, name), rule(name, filter, action))  # type: ignore[no-any-return]

    def update_queue(self, model: QueueProperties) -> None:
        self._update("queue", (model.name,), model)

    def update_topic(self, model: TopicProperties) -> None:
        self._update("topic", (model.name,), model)

    def update_subscription(self, topic_name: str, model: SubscriptionProperties) -> None:
        self._update("subscription", (topic_name, model.name), model)

    def update_rule(self, topic_name: str, subscription_name: str, model: RuleProperties) -> None:
        self._update("rule", (topic_name, subscription_name, model.name), model)

    def delete_queue(self, name: str) -> None:
        self._delete("queue", name)

    def delete_topic(self, name: str) -> None:
        self._delete("topic", name)

    def delete_subscription(self, topic_name: str, name: str) -> None:
        self._delete("subscription", topic_name, name)

    def delete_rule(self, topic_name: str, subscription_name: str, name: str) -> None:
        self._delete("rule", topic_name, subscription_name, name)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeAdmin:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def snap(namespace: str = "ns", **entities: Any) -> EntitySnapshot:
    """``EntitySnapshot.build(namespace, **entities)``."""
    return EntitySnapshot.build(namespace, **entities)


def other_value(name: str, value: Any) -> Any:
    """A value of ``name`` that differs from ``value`` by what it means."""
    if name == "status":
        return "Disabled"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, datetime.timedelta):
        return datetime.timedelta(minutes=3)
    return "orders-archive" if "forward" in name else "owner=team-a"


def one_entity(kind: str, name: str, value: Any) -> EntitySnapshot:
    """A snapshot of one ``kind`` entity (a subscription with its topic) with ``name`` set to ``value``."""
    if kind == "queue":
        return snap(queues=[queue("orders", **{name: value})])
    if kind == "topic":
        return snap(topics=[topic("events", **{name: value})])
    return snap(topics=[topic("events")], subscriptions=[("events", subscription("audit", **{name: value}))])


def with_rule(*rules: Any) -> EntitySnapshot:
    """Topic ``events``, subscription ``audit``, and these rules of it."""
    return snap(
        topics=[topic("events")],
        subscriptions=[("events", subscription("audit"))],
        rules=[("events", "audit", found) for found in rules],
    )


UNREACHABLE = ServiceRequestError("Failed to establish a new connection: [Errno 111] Connection refused")
