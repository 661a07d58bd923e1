"""What the local namespace's administration API knows of an entity, without HTTP or XML.

``_admin_http`` turns requests of azure-servicebus's ``ServiceBusAdministrationClient``
into calls on a ``Registry`` (the broker's, ``_registry``) and the records it returns
into the Atom XML the client reads (``_atom``). The records carry properties under the
administration client's own names (``QueueProperties.lock_duration``...), with the
values that client shows: ``datetime.timedelta`` for durations, ``int``, ``bool``,
``str`` or ``None``.

Filters and actions travel as plain mappings (``FilterSpec``, ``ActionSpec``) so that
the XML side and the rule engine (``_rules``) need not know each other's classes:

- ``{"kind": "sql", "expression": "color = 'red'", "parameters": {"@p": 1}}``
- ``{"kind": "true"}``, ``{"kind": "false"}`` (``1=1`` and ``1=0`` as the service names them)
- ``{"kind": "correlation", "correlation_id": ..., "message_id": ..., "to": ...,
  "reply_to": ..., "subject": ..., "session_id": ..., "reply_to_session_id": ...,
  "content_type": ..., "properties": {"name": value}}`` (absent or None: not matched on)
- an action: ``{"kind": "sql", "expression": "SET a = 1", "parameters": {}}`` or
  ``{"kind": "empty"}``
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .._entity_facts import FOREVER, FOREVER_TEXT, IMMUTABLE, STATUSES

__all__ = [
    "DEFAULTS", "DEFAULT_RULE", "FOREVER", "FOREVER_TEXT", "IMMUTABLE", "STATUSES", "ActionSpec", "AdminError",
    "Counts", "EntityRecord", "FilterSpec", "Kind", "Registry", "RuleRecord",
]  # fmt: skip

Kind = Literal["queue", "topic", "subscription"]
FilterSpec = dict[str, Any]
ActionSpec = dict[str, Any]


_MINUTE = datetime.timedelta(minutes=1)

# Service Bus's defaults for a new entity, per kind (what a GET shows for what a PUT left out).
QUEUE_DEFAULTS: dict[str, Any] = {
    "lock_duration": _MINUTE,
    "max_size_in_megabytes": 1024,
    "requires_duplicate_detection": False,
    "requires_session": False,
    "default_message_time_to_live": FOREVER,
    "dead_lettering_on_message_expiration": False,
    "duplicate_detection_history_time_window": 10 * _MINUTE,
    "max_delivery_count": 10,
    "enable_batched_operations": True,
    "status": "Active",
    "auto_delete_on_idle": FOREVER,
    "enable_partitioning": False,
    "enable_express": False,
    "forward_to": None,
    "forward_dead_lettered_messages_to": None,
    "user_metadata": None,
    "max_message_size_in_kilobytes": 256,
}
TOPIC_DEFAULTS: dict[str, Any] = {
    "default_message_time_to_live": FOREVER,
    "max_size_in_megabytes": 1024,
    "requires_duplicate_detection": False,
    "duplicate_detection_history_time_window": 10 * _MINUTE,
    "enable_batched_operations": True,
    "status": "Active",
    "support_ordering": True,
    "auto_delete_on_idle": FOREVER,
    "enable_partitioning": False,
    "enable_express": False,
    "filtering_messages_before_publishing": False,
    "user_metadata": None,
    "max_message_size_in_kilobytes": 256,
}
SUBSCRIPTION_DEFAULTS: dict[str, Any] = {
    "lock_duration": _MINUTE,
    "requires_session": False,
    "default_message_time_to_live": FOREVER,
    "dead_lettering_on_message_expiration": False,
    "dead_lettering_on_filter_evaluation_exceptions": True,
    "max_delivery_count": 10,
    "enable_batched_operations": True,
    "status": "Active",
    "forward_to": None,
    "forward_dead_lettered_messages_to": None,
    "user_metadata": None,
    "auto_delete_on_idle": FOREVER,
}
DEFAULTS: dict[Kind, dict[str, Any]] = {
    "queue": QUEUE_DEFAULTS,
    "topic": TOPIC_DEFAULTS,
    "subscription": SUBSCRIPTION_DEFAULTS,
}

DEFAULT_RULE = "$Default"


class AdminError(Exception):
    """A request the service would refuse: ``status`` is its HTTP status, the message its
    description (no secret ever goes in one)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Counts:
    """What ``get_*_runtime_properties`` reports of an entity now."""

    active: int = 0
    dead_letter: int = 0
    scheduled: int = 0
    size_in_bytes: int = 0
    subscription_count: int = 0  # topics only


@dataclass
class EntityRecord:
    """One queue, topic or subscription: its name as created (case kept), its
    properties (every key of ``DEFAULTS[kind]``) and its times (UTC)."""

    kind: Kind
    name: str
    properties: dict[str, Any]
    created_at: datetime.datetime
    updated_at: datetime.datetime
    accessed_at: datetime.datetime
    counts: Counts = field(default_factory=Counts)
    topic: str | None = None  # a subscription's topic


@dataclass
class RuleRecord:
    """One rule of a subscription."""

    name: str
    filter: FilterSpec
    action: ActionSpec
    created_at: datetime.datetime


class Registry(Protocol):
    """The entity operations the administration API needs; ``_registry`` is the broker's.

    Names are case-insensitive. Every method raises ``AdminError``: 404 when the entity
    (or its topic or subscription) does not exist, 409 when a create finds it there, 400
    for a property the service would refuse (an immutable one changed, a bad value,
    a filter that does not parse). ``properties`` given to ``create`` hold only what
    the request set; the registry fills in ``DEFAULTS``. ``update`` gets every property.
    """

    def list_entities(self, kind: Kind, topic: str | None = None) -> list[EntityRecord]: ...

    def get_entity(self, kind: Kind, name: str, topic: str | None = None) -> EntityRecord: ...

    def create_entity(
        self, kind: Kind, name: str, properties: dict[str, Any], topic: str | None = None
    ) -> EntityRecord: ...

    def update_entity(
        self, kind: Kind, name: str, properties: dict[str, Any], topic: str | None = None
    ) -> EntityRecord: ...

    def delete_entity(self, kind: Kind, name: str, topic: str | None = None) -> None: ...

    def list_rules(self, topic: str, subscription: str) -> list[RuleRecord]: ...

    def get_rule(self, topic: str, subscription: str, name: str) -> RuleRecord: ...

    def create_rule(
        self, topic: str, subscription: str, name: str, filter: FilterSpec, action: ActionSpec
    ) -> RuleRecord: ...

    def update_rule(
        self, topic: str, subscription: str, name: str, filter: FilterSpec, action: ActionSpec
    ) -> RuleRecord: ...

    def delete_rule(self, topic: str, subscription: str, name: str) -> None: ...

    def namespace_name(self) -> str: ...
