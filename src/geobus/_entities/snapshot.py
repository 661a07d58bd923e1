"""A namespace's entity definitions at one moment: ``EntitySnapshot``, read by ``read_entities``.

A snapshot holds azure-servicebus's own model objects (``QueueProperties``,
``TopicProperties``, ``SubscriptionProperties``, ``RuleProperties``) as the
administration client returned them, each under its path as Service Bus writes
it: ``orders``, ``events``, ``events/Subscriptions/audit``,
``events/Subscriptions/audit/Rules/$Default``. Names are case-insensitive, as
the service's are: ``find`` looks them up so.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from azure.servicebus.management import (
    QueueProperties,
    RuleProperties,
    ServiceBusAdministrationClient,
    SubscriptionProperties,
    TopicProperties,
)

EntityKind = Literal["queue", "topic", "subscription", "rule"]
Properties = QueueProperties | TopicProperties | SubscriptionProperties | RuleProperties
KINDS: tuple[EntityKind, ...] = ("queue", "topic", "subscription", "rule")


def entity_path(names: tuple[str, ...]) -> str:
    """``topic/Subscriptions/sub/Rules/rule`` from ``(topic, sub, rule)``; a name alone is itself."""
    parts = [names[0]]
    for separator, name in zip(("Subscriptions", "Rules"), names[1:], strict=False):
        parts += [separator, name]
    return "/".join(parts)


@dataclass(frozen=True)
class Entity:
    """One queue, topic, subscription or rule of a snapshot.

    ``names``: ``(queue,)``, ``(topic,)``, ``(topic, subscription)`` or ``(topic,
    subscription, rule)``; ``properties``: the SDK's model object.
    """

    kind: EntityKind
    names: tuple[str, ...]
    properties: Properties = field(compare=False, repr=False)

    @property
    def path(self) -> str:
        """Where Service Bus puts it: ``events/Subscriptions/audit``."""
        return entity_path(self.names)

    @property
    def key(self) -> tuple[EntityKind, str]:
        """What identifies it in a namespace: its kind and its path in lower case."""
        return self.kind, self.path.lower()

    @property
    def parent_key(self) -> tuple[EntityKind, str] | None:
        """The key of the topic (of a subscription) or subscription (of a rule) it belongs to."""
        if self.kind == "subscription":
            return "topic", self.names[0].lower()
        if self.kind == "rule":
            return "subscription", entity_path(self.names[:2]).lower()
        return None


@dataclass(frozen=True)
class EntitySnapshot:
    """The queues, topics, subscriptions and rules of one namespace (``read_entities``).

    ``namespace`` says where it was read (for messages); ``entities`` holds each
    one as an ``Entity`` (kind, names, the SDK's properties object). ``build`` makes
    one from the SDK's model objects: a definition to compare a namespace against.
    """

    namespace: str
    entities: tuple[Entity, ...]

    def __post_init__(self) -> None:
        seen: set[tuple[EntityKind, str]] = set()
        for entity in self.entities:
            if entity.key in seen:
                raise ValueError(f"{entity.kind} {entity.path!r} is in the snapshot twice (names are case-insensitive)")
            seen.add(entity.key)

    @classmethod
    def build(
        cls,
        namespace: str = "",
        *,
        queues: Iterable[QueueProperties] = (),
        topics: Iterable[TopicProperties] = (),
        subscriptions: Iterable[tuple[str, SubscriptionProperties]] = (),
        rules: Iterable[tuple[str, str, RuleProperties]] = (),
    ) -> EntitySnapshot:
        """A snapshot of these SDK objects: ``subscriptions`` as ``(topic name, properties)``,
        ``rules`` as ``(topic name, subscription name, properties)``.

        Raises:
            ValueError: an entity given twice (names compare case-insensitively).
        """
        entities = [
            *(Entity("queue", (queue.name,), queue) for queue in queues),
            *(Entity("topic", (topic.name,), topic) for topic in topics),
            *(Entity("subscription", (topic, sub.name), sub) for topic, sub in subscriptions),
            *(Entity("rule", (topic, sub, rule.name), rule) for topic, sub, rule in rules),
        ]
        return cls(namespace, tuple(entities))

    @functools.cached_property
    def _index(self) -> dict[tuple[EntityKind, str], Entity]:
        return {entity.key: entity for entity in self.entities}

    def find(self, kind: EntityKind, path: str) -> Entity | None:
        """The ``kind`` entity at ``path`` (any case), or None."""
        return self._index.get((kind, path.lower()))

    def counts(self) -> dict[str, int]:
        """How many of each kind: ``{"queue": 2, "topic": 1, "subscription": 3, "rule": 3}``."""
        return {kind: sum(1 for entity in self.entities if entity.kind == kind) for kind in KINDS}


def read_entities(admin: ServiceBusAdministrationClient) -> EntitySnapshot:
    """Every queue, topic, subscription and rule of the namespace ``admin`` manages.

    Raises:
        azure.core.exceptions.AzureError: as the SDK raises it (the namespace cannot be
            reached, the credential is refused...). ``compare_entities`` wraps it in an
            ``EntityReadError`` that names the namespace.
    """
    topics = list(admin.list_topics())
    subscriptions = [(topic.name, sub) for topic in topics for sub in admin.list_subscriptions(topic.name)]
    return EntitySnapshot.build(
        admin.fully_qualified_namespace,
        queues=admin.list_queues(),
        topics=topics,
        subscriptions=subscriptions,
        rules=[(topic, sub.name, rule) for topic, sub in subscriptions for rule in admin.list_rules(topic, sub.name)],
    )
