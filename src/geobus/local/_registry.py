"""The broker's entities as the administration API sees them (``_admin_model.Registry``).

Every entity has a record: the properties a ``ServiceBusAdministrationClient`` reads
and writes, and its times. An entity created through the API keeps the properties
it was given (those the local namespace does not act on, such as
``max_size_in_megabytes``, are kept and shown as given); one declared in an
``--entities`` file or created on first use gets a record drawn from its settings.
What the broker acts on (``EntitySettings``: lock duration, max delivery count,
time to live, dead-lettering on expiry, sessions, duplicate detection) is always
derived from the record, so an entity behaves the same however it was made.

Runs on the namespace's loop thread, like the broker it wraps.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._entity_facts import ENTITY_NAME, RULE_NAME
from ._admin_model import (
    DEFAULT_RULE,
    DEFAULTS,
    FOREVER,
    IMMUTABLE,
    STATUSES,
    ActionSpec,
    AdminError,
    Counts,
    EntityRecord,
    FilterSpec,
    Kind,
    RuleRecord,
)
from ._broker import SUBSCRIPTIONS, Broker, Topic, entity_path
from ._entities import EntitySettings, MessageLog, MessageState
from ._routing import compile_rules

_DURATIONS = (
    "lock_duration",
    "default_message_time_to_live",
    "duplicate_detection_history_time_window",
    "auto_delete_on_idle",
)
_MAX_LOCK = datetime.timedelta(minutes=5)
# The properties an entity's settings (``EntitySettings``) decide, per kind.
_RECEIVING = ("lock_duration", "max_delivery_count", "dead_lettering_on_message_expiration", "requires_session")
_DETECTING = ("requires_duplicate_detection", "duplicate_detection_history_time_window")
_FROM_SETTINGS: dict[Kind, tuple[str, ...]] = {
    "queue": ("default_message_time_to_live", *_RECEIVING, *_DETECTING),
    "topic": ("default_message_time_to_live", *_DETECTING),
    "subscription": ("default_message_time_to_live", *_RECEIVING),
}


def true_rule(now: datetime.datetime) -> RuleRecord:
    """The rule Service Bus gives every new subscription: all messages, no action."""
    return RuleRecord(DEFAULT_RULE, {"kind": "true"}, {"kind": "empty"}, now)


@dataclass
class Stamp:
    """An entity's administration record apart from its counts (what the store keeps)."""

    name: str
    properties: dict[str, Any]
    created_at: datetime.datetime
    updated_at: datetime.datetime
    rules: dict[str, RuleRecord] = field(default_factory=dict)  # by lower-case name; subscriptions


def settings_from(kind: Kind, properties: dict[str, Any], base: EntitySettings) -> EntitySettings:
    """What the broker does with an entity of these properties (a topic's: what its
    subscriptions created on first use take, with its time to live and detection)."""
    ttl = properties["default_message_time_to_live"]
    detection = properties.get("requires_duplicate_detection", False)
    window = properties.get("duplicate_detection_history_time_window")
    common: dict[str, Any] = {
        "default_ttl": None if ttl >= FOREVER else ttl.total_seconds(),
        "duplicate_detection_window": window.total_seconds() if detection and window else None,
    }
    if kind == "topic":
        return EntitySettings(
            lock_duration=base.lock_duration,
            max_delivery_count=base.max_delivery_count,
            dead_letter_on_expiration=base.dead_letter_on_expiration,
            **common,
        )
    return EntitySettings(
        lock_duration=properties["lock_duration"].total_seconds(),
        max_delivery_count=properties["max_delivery_count"],
        dead_letter_on_expiration=properties["dead_lettering_on_message_expiration"],
        requires_session=properties["requires_session"],
        **common,
    )


def properties_from(kind: Kind, settings: EntitySettings) -> dict[str, Any]:
    """The record of an entity that was not created through the API."""
    properties = dict(DEFAULTS[kind])
    seconds = datetime.timedelta(seconds=1)
    if settings.default_ttl is not None:
        properties["default_message_time_to_live"] = settings.default_ttl * seconds
    if kind != "subscription" and settings.duplicate_detection_window is not None:
        properties["requires_duplicate_detection"] = True
        properties["duplicate_detection_history_time_window"] = settings.duplicate_detection_window * seconds
    if kind != "topic":
        properties["lock_duration"] = settings.lock_duration * seconds
        properties["max_delivery_count"] = settings.max_delivery_count
        properties["dead_lettering_on_message_expiration"] = settings.dead_letter_on_expiration
        properties["requires_session"] = settings.requires_session
    return properties


class EntityRegistry:
    """``Registry`` over one ``Broker``: create, read, update and delete its entities and rules."""

    def __init__(self, broker: Broker, clock: Callable[[], float]) -> None:
        self.broker = broker
        self._clock = clock
        self._started = self._now()

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc)

    # -- entities -------------------------------------------------------------------

    def list_entities(self, kind: Kind, topic: str | None = None) -> list[EntityRecord]:
        if kind == "queue":
            paths = list(self.broker.queues)
        elif kind == "topic":
            paths = list(self.broker.topics)
        else:
            owner = self._topic(topic)
            paths = [f"{owner.path}{SUBSCRIPTIONS}{sub}" for sub in owner.subscriptions]
        return [self._record(kind, path, topic) for path in sorted(paths)]

    def get_entity(self, kind: Kind, name: str, topic: str | None = None) -> EntityRecord:
        path = self._path(kind, name, topic)
        if not self._exists(kind, path, topic):
            raise AdminError(404, f"The messaging entity '{path}' could not be found.")
        return self._record(kind, path, topic)

    def create_entity(
        self, kind: Kind, name: str, properties: dict[str, Any], topic: str | None = None
    ) -> EntityRecord:
        _check_name(kind, name)
        path = self._path(kind, name, topic)
        if kind == "subscription":
            self._topic(topic)
        if path in self.broker.queues or path in self.broker.topics or self._exists(kind, path, topic):
            raise AdminError(409, f"The messaging entity '{path}' already exists.")
        merged = _checked(kind, {**DEFAULTS[kind], **properties})
        now = self._now()
        stamp = Stamp(name, merged, now, now)
        if kind == "subscription":
            stamp.rules[DEFAULT_RULE.lower()] = true_rule(now)
        self._apply(kind, path, topic, stamp)
        return self._record(kind, path, topic)

    def update_entity(
        self, kind: Kind, name: str, properties: dict[str, Any], topic: str | None = None
    ) -> EntityRecord:
        record = self.get_entity(kind, name, topic)
        merged = _checked(kind, {**record.properties, **properties})
        for key in IMMUTABLE[kind]:
            if merged[key] != record.properties[key]:
                raise AdminError(
                    400,
                    f"The value for the {_pascal(key)} property of an existing {kind.capitalize()} "
                    "cannot be changed.",
                )
        path = self._path(kind, name, topic)
        stamp = self._stamp(kind, path)
        stamp.properties = merged
        stamp.updated_at = self._now()
        self._apply(kind, path, topic, stamp)
        return self._record(kind, path, topic)

    def delete_entity(self, kind: Kind, name: str, topic: str | None = None) -> None:
        path = self._path(kind, name, topic)
        if not self._exists(kind, path, topic):
            raise AdminError(404, f"The messaging entity '{path}' could not be found.")
        self.broker.delete_entity(path)

    # -- rules ------------------------------------------------------------------------

    def list_rules(self, topic: str, subscription: str) -> list[RuleRecord]:
        return list(self._rules(topic, subscription).values())

    def get_rule(self, topic: str, subscription: str, name: str) -> RuleRecord:
        rule = self._rules(topic, subscription).get(name.lower())
        if rule is None:
            raise AdminError(404, f"The messaging entity '{self._sub_path(topic, subscription)}/rules/{name}' could not be found.")
        return rule

    def create_rule(
        self, topic: str, subscription: str, name: str, filter: FilterSpec, action: ActionSpec
    ) -> RuleRecord:
        _check_name("rule", name)
        rules = self._rules(topic, subscription)
        if name.lower() in rules:
            raise AdminError(409, f"The messaging entity '{self._sub_path(topic, subscription)}/rules/{name}' already exists.")
        return self._put_rule(topic, subscription, RuleRecord(name, filter, action, self._now()))

    def update_rule(
        self, topic: str, subscription: str, name: str, filter: FilterSpec, action: ActionSpec
    ) -> RuleRecord:
        old = self.get_rule(topic, subscription, name)
        return self._put_rule(topic, subscription, RuleRecord(old.name, filter, action, old.created_at))

    def delete_rule(self, topic: str, subscription: str, name: str) -> None:
        self.get_rule(topic, subscription, name)
        path = self._sub_path(topic, subscription)
        stamp = self._stamp("subscription", path)
        del stamp.rules[name.lower()]
        self.broker.admin.set_rules(path, stamp, list(stamp.rules.values()))

    def declared(self, kind: Kind, path: str) -> None:
        """Entity definitions (a file) gave ``path`` its settings: a record it already
        had (made through the API, kept by the store) shows them too."""
        stamp = self.broker.admin.stamps.get(path)
        if stamp is None:
            return
        drawn = properties_from(kind, self._entity(kind, path).settings)
        stamp.properties.update({key: drawn[key] for key in _FROM_SETTINGS[kind]})
        self.broker.admin.stamped(path)

    def declare_rules(self, topic: str, subscription: str, rules: Iterable[Any]) -> None:
        """Make declared rules (``RuleDefinition``s) the subscription's only ones, as a
        subscription created with its rules has no ``$Default``."""
        path = self._sub_path(topic, subscription)
        stamp = self._stamp("subscription", path)
        now = self._now()
        records = {rule.name.lower(): RuleRecord(rule.name, rule.filter, rule.action, now) for rule in rules}
        self.broker.admin.set_rules(path, stamp, list(records.values()))
        stamp.rules = records

    def namespace_name(self) -> str:
        return "local"

    # -- helpers ---------------------------------------------------------------------

    def _put_rule(self, topic: str, subscription: str, rule: RuleRecord) -> RuleRecord:
        path = self._sub_path(topic, subscription)
        stamp = self._stamp("subscription", path)
        rules = dict(stamp.rules)
        rules[rule.name.lower()] = rule
        # Compiles every rule first: a bad one changes nothing (AdminError 400).
        self.broker.admin.set_rules(path, stamp, list(rules.values()))
        stamp.rules = rules
        return rule

    def _rules(self, topic: str, subscription: str) -> dict[str, RuleRecord]:
        path = self._sub_path(topic, subscription)
        if not self._exists("subscription", path, topic):
            raise AdminError(404, f"The messaging entity '{path}' could not be found.")
        return self._stamp("subscription", path).rules

    def _sub_path(self, topic: str, subscription: str) -> str:
        return self._path("subscription", subscription, topic)

    def _topic(self, topic: str | None) -> Topic:
        try:
            owner = self.broker.topics.get(entity_path(topic or ""))
        except ValueError:  # BadAddress: no name at all
            raise AdminError(400, "The topic name is empty.") from None
        if owner is None:
            raise AdminError(404, f"The messaging entity '{topic}' could not be found.")
        return owner

    def _path(self, kind: Kind, name: str, topic: str | None) -> str:
        try:
            if kind == "subscription":
                return f"{entity_path(topic or '')}{SUBSCRIPTIONS}{entity_path(name)}"
            return entity_path(name)
        except ValueError:
            raise AdminError(400, "The entity name is empty.") from None

    def _exists(self, kind: Kind, path: str, topic: str | None) -> bool:
        if kind == "queue":
            return path in self.broker.queues
        if kind == "topic":
            return path in self.broker.topics
        owner = self.broker.topics.get(entity_path(topic or "x"))
        return owner is not None and path.rpartition(SUBSCRIPTIONS)[2] in owner.subscriptions

    def _stamp(self, kind: Kind, path: str) -> Stamp:
        """The entity's record, drawn from its settings if it was not made through the API."""
        stamp: Stamp | None = self.broker.admin.stamps.get(path)
        if stamp is None:
            settings = self._entity(kind, path).settings
            name = path.rpartition(SUBSCRIPTIONS)[2] if kind == "subscription" else path
            stamp = Stamp(name, properties_from(kind, settings), self._started, self._started)
            if kind == "subscription":
                stamp.rules[DEFAULT_RULE.lower()] = true_rule(self._started)
            self.broker.admin.stamps[path] = stamp
        return stamp

    def _entity(self, kind: Kind, path: str) -> MessageLog | Topic:
        if kind == "queue":
            return self.broker.queues[path]
        if kind == "topic":
            return self.broker.topics[path]
        topic, _, sub = path.partition(SUBSCRIPTIONS)
        return self.broker.topics[topic].subscriptions[sub]

    def _apply(self, kind: Kind, path: str, topic: str | None, stamp: Stamp) -> None:
        if kind == "queue":
            self.broker.declare_queue(path, settings_from(kind, stamp.properties, self.broker.settings))
        elif kind == "topic":
            self.broker.declare_topic(path, settings=settings_from(kind, stamp.properties, self.broker.settings))
        else:
            owner = self._topic(topic)
            sub = path.rpartition(SUBSCRIPTIONS)[2]
            self.broker.declare_subscription(owner.path, sub, settings_from(kind, stamp.properties, owner.settings))
        self.broker.admin.stamps[path] = stamp
        self.broker.admin.stamped(path)

    def _record(self, kind: Kind, path: str, topic: str | None) -> EntityRecord:
        stamp = self._stamp(kind, path)
        entity = self._entity(kind, path)
        counts = _counts(entity)
        return EntityRecord(
            kind=kind,
            name=stamp.name,
            properties=dict(stamp.properties),
            created_at=stamp.created_at,
            updated_at=stamp.updated_at,
            accessed_at=stamp.updated_at,
            counts=counts,
            topic=topic,
        )


def _counts(entity: MessageLog | Topic) -> Counts:
    """Runtime counts. A message scheduled on a topic is the topic's until it is due, as
    in Service Bus (``TopicRuntimeProperties`` has a scheduled count, a subscription's
    none), though the local namespace keeps each subscription's copy from the start."""
    if isinstance(entity, Topic):
        subs = entity.subscriptions.values()
        scheduled = {
            message.origin or seq
            for sub in subs
            for seq, message in sub.messages.items()
            if message.state == MessageState.SCHEDULED
        }
        size = sum(_counts(sub).size_in_bytes for sub in subs)
        return Counts(scheduled=len(scheduled), size_in_bytes=size, subscription_count=len(subs))
    counts = Counts()
    in_topic = SUBSCRIPTIONS in entity.path
    for message in entity.messages.values():
        if message.state == MessageState.SCHEDULED:
            if not in_topic:
                counts.scheduled += 1
                counts.size_in_bytes += len(message.rest)
            continue
        counts.size_in_bytes += len(message.rest)
        counts.active += 1
    if entity.dead_letter is not None:
        counts.dead_letter = len(entity.dead_letter.messages)
    return counts


def _pascal(key: str) -> str:
    return "".join(part.capitalize() for part in key.split("_"))


def _check_name(kind: str, name: str) -> None:
    pattern = ENTITY_NAME if kind in ("queue", "topic") else RULE_NAME
    if not isinstance(name, str) or not pattern.fullmatch(name) or "//" in name:
        limit = 260 if pattern is ENTITY_NAME else 50
        raise AdminError(
            400,
            f"The {kind} name is not valid: it can contain only letters, numbers, periods (.), "
            f"hyphens (-) and underscores (_), must start with a letter or number and be at most {limit} characters.",
        )


def _checked(kind: Kind, properties: dict[str, Any]) -> dict[str, Any]:
    """``properties`` with only known keys and values the service takes, or AdminError 400."""
    known = DEFAULTS[kind]
    checked = {key: properties[key] for key in known}
    for key in _DURATIONS:
        if key in checked:
            value = checked[key]
            if not isinstance(value, datetime.timedelta) or value <= datetime.timedelta(0):
                raise AdminError(400, f"The value supplied for {_pascal(key)} is not a positive time span.")
    if "lock_duration" in checked and checked["lock_duration"] > _MAX_LOCK:
        raise AdminError(400, "The supplied lock time exceeds the allowed maximum of '5' minutes.")
    count = checked.get("max_delivery_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise AdminError(400, "The value supplied for MaxDeliveryCount must be at least 1.")
    if checked["status"] not in STATUSES[kind]:
        raise AdminError(400, f"The value '{checked['status']}' is not a valid EntityStatus for a {kind}.")
    return checked


def restore_stamp(broker: Broker, path: str, stamp: Stamp) -> None:
    """Give the entity at ``path`` its kept record (and a subscription its rules)."""
    broker.admin.stamps[path] = stamp
    if SUBSCRIPTIONS in path:
        broker.admin.rules[path] = compile_rules(stamp.rules.values())
