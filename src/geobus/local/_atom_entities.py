"""Queue, topic and subscription descriptions: the XML of an ``EntityRecord``.

``parse_entity`` reads a PUT's description into the properties the request set (under
the names of ``_admin_model.DEFAULTS``), its authorization rules and, for a
subscription, its default rule. ``describe_entity`` writes a record back with its
runtime counts, elements in the order the service writes them (the SDK reads them by
name, but order is the service's schema: .NET's serializer drops elements out of it).
Elements a client sends that the service computes (``MessageCount``, ``CreatedAt``...:
the SDK sends back whatever it got) or that this namespace does not keep are ignored,
as the service ignores elements it does not know.

``ForwardTo`` and ``ForwardDeadLetteredMessagesTo`` travel as URLs
(``sb://host/name``, the SDK makes one of a bare name); the registry gets and gives
the entity's name, and a GET shows the URL again.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from . import _atom
from ._admin_model import DEFAULTS, STATUSES, ActionSpec, AdminError, EntityRecord, FilterSpec, Kind
from ._atom import COUNTS_NS, DESCRIPTION_NAMESPACES, element, format_bool
from ._atom_rules import parse_filter_and_action

KIND_OF_DESCRIPTION: dict[str, Kind] = {
    "QueueDescription": "queue",
    "TopicDescription": "topic",
    "SubscriptionDescription": "subscription",
}
DESCRIPTION_OF_KIND: dict[Kind, str] = {kind: tag for tag, kind in KIND_OF_DESCRIPTION.items()}

_STATUSES = {name.lower(): name for name in STATUSES["queue"]}  # every status a queue has: all of them
_RIGHTS = {name.lower(): name for name in ("Manage", "Send", "Listen")}

# Element -> (property, value type) for what a client may set.
_SETTABLE: dict[str, tuple[str, str]] = {
    "LockDuration": ("lock_duration", "duration"),
    "MaxSizeInMegabytes": ("max_size_in_megabytes", "int"),
    "RequiresDuplicateDetection": ("requires_duplicate_detection", "bool"),
    "RequiresSession": ("requires_session", "bool"),
    "DefaultMessageTimeToLive": ("default_message_time_to_live", "duration"),
    "DeadLetteringOnMessageExpiration": ("dead_lettering_on_message_expiration", "bool"),
    "DeadLetteringOnFilterEvaluationExceptions": (
        "dead_lettering_on_filter_evaluation_exceptions",
        "bool",
    ),
    "DuplicateDetectionHistoryTimeWindow": ("duplicate_detection_history_time_window", "duration"),
    "MaxDeliveryCount": ("max_delivery_count", "int"),
    "EnableBatchedOperations": ("enable_batched_operations", "bool"),
    "FilteringMessagesBeforePublishing": ("filtering_messages_before_publishing", "bool"),
    "Status": ("status", "status"),
    "ForwardTo": ("forward_to", "entity"),
    "UserMetadata": ("user_metadata", "str"),
    "SupportOrdering": ("support_ordering", "bool"),
    "AutoDeleteOnIdle": ("auto_delete_on_idle", "duration"),
    "EnablePartitioning": ("enable_partitioning", "bool"),
    "ForwardDeadLetteredMessagesTo": ("forward_dead_lettered_messages_to", "entity"),
    "EnableExpress": ("enable_express", "bool"),
    "MaxMessageSizeInKilobytes": ("max_message_size_in_kilobytes", "int"),
}

# The service's element order per kind (settable and computed elements together).
_LAYOUT: dict[Kind, tuple[str, ...]] = {
    "queue": (
        "LockDuration", "MaxSizeInMegabytes", "RequiresDuplicateDetection", "RequiresSession",
        "DefaultMessageTimeToLive", "DeadLetteringOnMessageExpiration",
        "DuplicateDetectionHistoryTimeWindow", "MaxDeliveryCount", "EnableBatchedOperations",
        "SizeInBytes", "MessageCount", "IsAnonymousAccessible", "AuthorizationRules", "Status",
        "ForwardTo", "UserMetadata", "CreatedAt", "UpdatedAt", "AccessedAt", "SupportOrdering",
        "CountDetails", "AutoDeleteOnIdle", "EnablePartitioning", "EntityAvailabilityStatus",
        "ForwardDeadLetteredMessagesTo", "EnableExpress", "MaxMessageSizeInKilobytes",
    ),
    "topic": (
        "DefaultMessageTimeToLive", "MaxSizeInMegabytes", "RequiresDuplicateDetection",
        "DuplicateDetectionHistoryTimeWindow", "EnableBatchedOperations", "SizeInBytes",
        "FilteringMessagesBeforePublishing", "IsAnonymousAccessible", "AuthorizationRules",
        "Status", "CreatedAt", "UpdatedAt", "AccessedAt", "SupportOrdering", "CountDetails",
        "SubscriptionCount", "AutoDeleteOnIdle", "EnablePartitioning",
        "EntityAvailabilityStatus", "EnableSubscriptionPartitioning", "EnableExpress",
        "UserMetadata", "MaxMessageSizeInKilobytes", "SqlFilterCount", "CorrelationFilterCount",
    ),
    "subscription": (
        "LockDuration", "RequiresSession", "DefaultMessageTimeToLive",
        "DeadLetteringOnMessageExpiration", "DeadLetteringOnFilterEvaluationExceptions",
        "MessageCount", "MaxDeliveryCount", "EnableBatchedOperations", "Status", "ForwardTo",
        "CreatedAt", "UpdatedAt", "AccessedAt", "CountDetails", "UserMetadata",
        "ForwardDeadLetteredMessagesTo", "AutoDeleteOnIdle", "EntityAvailabilityStatus",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class AuthorizationRule:
    """One shared access rule of a queue or topic, echoed as given (keys included: the
    client set them; nothing here logs them)."""

    key_name: str | None
    rights: tuple[str, ...]
    type: str = "SharedAccessAuthorizationRule"
    claim_type: str = "SharedAccessKey"
    claim_value: str = "None"
    primary_key: str | None = field(default=None, repr=False)
    secondary_key: str | None = field(default=None, repr=False)
    created_time: datetime.datetime | None = None
    modified_time: datetime.datetime | None = None


@dataclass(frozen=True)
class DefaultRule:
    """A subscription's ``DefaultRuleDescription``: the rule to have instead of a true
    ``$Default``."""

    name: str
    filter: FilterSpec
    action: ActionSpec


@dataclass(frozen=True)
class EntityRequest:
    """What a PUT of a queue, topic or subscription asks for."""

    kind: Kind
    properties: dict[str, Any]
    authorization_rules: tuple[AuthorizationRule, ...]
    default_rule: DefaultRule | None = None


def parse_entity(description: ElementTree.Element) -> EntityRequest:
    """The request a description element makes (only the properties it sets)."""
    tag = _atom.local_name(description)
    kind = KIND_OF_DESCRIPTION.get(tag)
    if kind is None:
        raise AdminError(
            400,
            f"A '{tag}' cannot be put here: a QueueDescription, TopicDescription or "
            "SubscriptionDescription was expected.",
        )
    properties: dict[str, Any] = {}
    rules: tuple[AuthorizationRule, ...] = ()
    default_rule = None
    for name, node in _atom.children(description):
        settable = _SETTABLE.get(name)
        if settable is not None and settable[0] in DEFAULTS[kind]:
            properties[settable[0]] = _PARSERS[settable[1]](node.text or "", name)
        elif name == "AuthorizationRules" and kind != "subscription":
            rules = tuple(_parse_authorization_rule(rule) for _, rule in _atom.children(node))
        elif name == "DefaultRuleDescription" and kind == "subscription":
            filter_, action = parse_filter_and_action(node)
            rule_name = _atom.text_of(_atom.child(node, "Name")) or "$Default"
            default_rule = DefaultRule(rule_name.strip() or "$Default", filter_, action)
    return EntityRequest(kind, properties, rules, default_rule)


def describe_entity(
    record: EntityRecord,
    *,
    host: str,
    authorization_rules: tuple[AuthorizationRule, ...] = (),
    filter_counts: tuple[int, int] = (0, 0),
) -> str:
    """The record's description element. ``filter_counts`` (a topic's SQL and correlation
    filters over its subscriptions) shows in a topic's ``SqlFilterCount`` and
    ``CorrelationFilterCount``."""
    counts = record.counts
    computed: dict[str, Callable[[], str | None]] = {
        "SizeInBytes": lambda: str(counts.size_in_bytes),
        "MessageCount": lambda: str(counts.active + counts.dead_letter + counts.scheduled),
        "IsAnonymousAccessible": lambda: "false",
        "CreatedAt": lambda: _atom.format_time(record.created_at),
        "UpdatedAt": lambda: _atom.format_time(record.updated_at),
        "AccessedAt": lambda: _atom.format_time(record.accessed_at),
        "SupportOrdering": lambda: "true",
        "SubscriptionCount": lambda: str(counts.subscription_count),
        "EntityAvailabilityStatus": lambda: "Available",
        "EnableSubscriptionPartitioning": lambda: "false",
        "SqlFilterCount": lambda: str(filter_counts[0]),
        "CorrelationFilterCount": lambda: str(filter_counts[1]),
    }
    parts = [f"<{DESCRIPTION_OF_KIND[record.kind]} {DESCRIPTION_NAMESPACES}>"]
    for name in _LAYOUT[record.kind]:
        settable = _SETTABLE.get(name)
        if settable is not None and settable[0] in DEFAULTS[record.kind]:
            value = record.properties.get(settable[0], DEFAULTS[record.kind][settable[0]])
            if value is not None:
                parts.append(element(name, _FORMATTERS[settable[1]](value, host)))
        elif name == "AuthorizationRules":
            parts.append(_describe_authorization_rules(authorization_rules))
        elif name == "CountDetails":
            parts.append(_describe_counts(record))
        elif name in computed:
            text = computed[name]()
            if text is not None:
                parts.append(element(name, text))
    parts.append(f"</{DESCRIPTION_OF_KIND[record.kind]}>")
    return "".join(parts)


def _describe_counts(record: EntityRecord) -> str:
    counts = record.counts
    details = (
        ("ActiveMessageCount", counts.active),
        ("DeadLetterMessageCount", counts.dead_letter),
        ("ScheduledMessageCount", counts.scheduled),
        ("TransferMessageCount", 0),
        ("TransferDeadLetterMessageCount", 0),
    )
    inner = "".join(element(f"d2p1:{name}", str(value)) for name, value in details)
    return f'<CountDetails xmlns:d2p1="{COUNTS_NS}">{inner}</CountDetails>'


# -- authorization rules -----------------------------------------------------------


def _parse_authorization_rule(node: ElementTree.Element) -> AuthorizationRule:
    if _atom.local_name(node) != "AuthorizationRule":
        raise AdminError(400, f"AuthorizationRules holds a '{_atom.local_name(node)}'.")
    fields = dict(_atom.children(node))
    rights = []
    for _, right in _atom.children(fields["Rights"]) if "Rights" in fields else ():
        name = _RIGHTS.get((right.text or "").strip().lower())
        if name is None:
            raise AdminError(
                400, "An authorization rule's AccessRights must be Manage, Send or Listen."
            )
        rights.append(name)
    texts = {name: (found.text or "").strip() for name, found in fields.items()}
    times = {
        name: _atom.parse_time(texts[name], name)
        for name in ("CreatedTime", "ModifiedTime")
        if texts.get(name)
    }
    return AuthorizationRule(
        key_name=texts.get("KeyName"),
        rights=tuple(rights),
        type=_atom.xsi_type(node) or "SharedAccessAuthorizationRule",
        claim_type=texts.get("ClaimType") or "SharedAccessKey",
        claim_value=texts.get("ClaimValue") or "None",
        primary_key=texts.get("PrimaryKey"),
        secondary_key=texts.get("SecondaryKey"),
        created_time=times.get("CreatedTime"),
        modified_time=times.get("ModifiedTime"),
    )


def stamp_authorization_rules(
    rules: tuple[AuthorizationRule, ...], now: datetime.datetime
) -> tuple[AuthorizationRule, ...]:
    """The rules with the times the service gives them when a client left them out."""
    return tuple(
        AuthorizationRule(
            key_name=rule.key_name,
            rights=rule.rights,
            type=rule.type,
            claim_type=rule.claim_type,
            claim_value=rule.claim_value,
            primary_key=rule.primary_key,
            secondary_key=rule.secondary_key,
            created_time=rule.created_time or now,
            modified_time=rule.modified_time or now,
        )
        for rule in rules
    )


def _describe_authorization_rules(rules: tuple[AuthorizationRule, ...]) -> str:
    parts = ["<AuthorizationRules>"]
    for rule in rules:
        parts.append(f'<AuthorizationRule i:type="{rule.type}">')
        parts.append(
            element("ClaimType", rule.claim_type) + element("ClaimValue", rule.claim_value)
        )
        rights = "".join(element("AccessRights", right) for right in rule.rights)
        parts.append(f"<Rights>{rights}</Rights>")
        for name, when in (
            ("CreatedTime", rule.created_time),
            ("ModifiedTime", rule.modified_time),
        ):
            if when is not None:
                parts.append(element(name, _atom.format_time(when)))
        for name, text in (
            ("KeyName", rule.key_name),
            ("PrimaryKey", rule.primary_key),
            ("SecondaryKey", rule.secondary_key),
        ):
            if text is not None:
                parts.append(element(name, text))
        parts.append("</AuthorizationRule>")
    parts.append("</AuthorizationRules>")
    return "".join(parts)


# -- values ------------------------------------------------------------------------


def _parse_status(text: str, what: str) -> str:
    status = _STATUSES.get(text.strip().lower())
    if status is None:
        raise AdminError(
            400,
            f"The value '{text[:40]}' is not valid for {what}: Active, Disabled, "
            "SendDisabled or ReceiveDisabled was expected.",
        )
    return status


def _parse_entity_name(text: str, what: str) -> str | None:
    """The entity a ``ForwardTo`` URL names (None for an empty one)."""
    text = text.strip()
    if not text:
        return None
    parts = urlsplit(text)
    path = parts.path if parts.scheme and parts.netloc else text
    return path.strip("/") or None


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "duration": _atom.parse_duration,
    "int": _atom.parse_int,
    "bool": _atom.parse_bool,
    "status": _parse_status,
    "entity": _parse_entity_name,
    "str": lambda text, _what: text,
}


def _format_duration(value: Any, _host: str) -> str:
    return _atom.format_duration(value) if isinstance(value, datetime.timedelta) else str(value)


def _format_entity(value: Any, host: str) -> str:
    text = str(value)
    return text if "://" in text else f"sb://{host}/{text}"


_FORMATTERS: dict[str, Callable[[Any, str], str]] = {
    "duration": _format_duration,
    "int": lambda value, _host: str(int(value)),
    "bool": lambda value, _host: format_bool(bool(value)),
    "status": lambda value, _host: str(value),
    "entity": _format_entity,
    "str": lambda value, _host: str(value),
}

__all__ = [
    "AuthorizationRule",
    "DefaultRule",
    "EntityRequest",
    "describe_entity",
    "parse_entity",
    "stamp_authorization_rules",
]
