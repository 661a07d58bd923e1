"""``geobus entities sync``: the plan that makes one namespace define what the other does, and
its steps carried out through the target's administration client.

The plan, in the order it runs:

1. topics, then queues (a queue after the queue it forwards to, when both are created),
   then subscriptions, then rules: each created, or updated in the properties that differ;
2. a subscription the plan creates gets a ``$Default`` rule (match everything) from the
   service: it is updated to the source's ``$Default``, or deleted after the source's rules
   are in place when the source has none (sync made it: not a deletion of anything that was
   there);
3. with ``delete``, what the source lacks is deleted, rules first, topics last; only the
   topmost of it (deleting a topic deletes its subscriptions and their rules).

A property the service cannot change after creation (``IMMUTABLE``: a queue's
``requires_session``...) that differs gives a step "recreate by hand": sync never deletes an
entity (nor its messages) to recreate it; it does the rest and says which must be. A
property azure-servicebus cannot send (``UNSENT``: a topic's
``filtering_messages_before_publishing``) that differs gives a step "set by hand" (the
portal or ARM sets it).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from azure.servicebus.management import (
    RuleProperties,
    ServiceBusAdministrationClient,
    TrueRuleFilter,
)

from .._entity_facts import FOREVER, FOREVER_DAYS, UNSENT
from .compare import (
    COMPARED,
    DURATIONS,
    ENTITY_PATHS,
    IMMUTABLE,
    differing,
    normal,
    order,
)
from .snapshot import Entity, EntityKind, EntitySnapshot, entity_path

Action = Literal["create", "update", "delete", "recreate by hand", "set by hand"]
# Steps sync cannot carry out: it names them and exits 1.
BY_HAND: tuple[Action, ...] = ("recreate by hand", "set by hand")
DEFAULT_RULE = "$Default"
_STAGES: tuple[EntityKind, ...] = ("topic", "queue", "subscription", "rule")


@dataclass(frozen=True)
class SyncStep:
    """One thing sync does to the target: ``action`` on ``entity`` (the source's; the
    target's for a delete). ``properties``: those an update sets, or the immutable ones
    that differ for "recreate by hand"."""

    action: Action
    entity: Entity
    properties: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """``update queue orders: lock_duration, max_delivery_count``."""
        detail = f": {', '.join(self.properties)}" if self.properties else ""
        return f"{self.action} {self.entity.kind} {self.entity.path}{detail}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "action": self.action,
            "kind": self.entity.kind,
            "entity": self.entity.path,
            "properties": list(self.properties),
        }


def plan_sync(source: EntitySnapshot, target: EntitySnapshot, *, delete: bool = False) -> tuple[SyncStep, ...]:
    """The steps that make ``target`` define what ``source`` does (see the module's docstring)."""
    stages: dict[EntityKind, list[SyncStep]] = {kind: [] for kind in _STAGES}
    created: set[tuple[EntityKind, str]] = set()  # the subscriptions this plan creates
    for entity in sorted(source.entities, key=order):
        have = target.find(entity.kind, entity.path)
        if entity.kind == "rule" and entity.parent_key in created:
            have = _service_default(entity.names) if entity.names[2].lower() == DEFAULT_RULE.lower() else None
        if have is None:
            stages[entity.kind].append(SyncStep("create", entity))
            if entity.kind == "subscription":
                created.add(entity.key)
            continue
        changed = differing(entity, have)
        fixed = tuple(name for name in changed if name in IMMUTABLE[entity.kind])
        unsent = tuple(name for name in changed if name in UNSENT.get(entity.kind, ()))
        settable = tuple(name for name in changed if name not in fixed and name not in unsent)
        if settable:
            stages[entity.kind].append(SyncStep("update", entity, settable))
        if fixed:
            stages[entity.kind].append(SyncStep("recreate by hand", entity, fixed))
        if unsent:
            stages[entity.kind].append(SyncStep("set by hand", entity, unsent))
    for key in sorted(created, key=lambda key: key[1]):
        subscription = next(entity for entity in source.entities if entity.key == key)
        if source.find("rule", entity_path((*subscription.names, DEFAULT_RULE))) is None:
            stages["rule"].append(SyncStep("delete", _service_default(subscription.names)))
    steps = [*stages["topic"], *_forwarded_first(stages["queue"]), *stages["subscription"], *_by_subscription(stages["rule"])]
    if delete:
        steps += _deletions(source, target)
    return tuple(steps)


def _service_default(names: tuple[str, ...]) -> Entity:
    """The rule the service gives a new subscription: ``$Default``, matching everything."""
    rule = RuleProperties(DEFAULT_RULE, filter=TrueRuleFilter(), action=None, created_at_utc=None)
    return Entity("rule", (*names[:2], DEFAULT_RULE), rule)


def _by_subscription(steps: list[SyncStep]) -> list[SyncStep]:
    """Rule steps per subscription, a new subscription's ``$Default`` deleted after its other rules."""
    return sorted(steps, key=lambda step: (order(step.entity)[0][:2], step.action == "delete"))


def _forwarded_first(steps: list[SyncStep]) -> list[SyncStep]:
    """Queue steps, each queue after a queue it forwards to that the plan creates."""
    groups: dict[str, list[SyncStep]] = {}
    for step in steps:
        groups.setdefault(step.entity.path.lower(), []).append(step)
    creating = {path for path, group in groups.items() if group[0].action == "create"}
    ordered: list[SyncStep] = []
    done: set[str] = set()

    def visit(path: str, trail: frozenset[str]) -> None:
        if path in done or path in trail:
            return
        for name in ENTITY_PATHS:
            forwards = normal(name, getattr(groups[path][0].entity.properties, name, None))
            if isinstance(forwards, str) and forwards.lower() in creating:
                visit(forwards.lower(), trail | {path})
        done.add(path)
        ordered.extend(groups[path])

    for path in groups:
        visit(path, frozenset())
    return ordered


def _deletions(source: EntitySnapshot, target: EntitySnapshot) -> list[SyncStep]:
    """What the source lacks, topmost only, rules first and topics last."""
    gone = [entity for entity in target.entities if source.find(entity.kind, entity.path) is None]
    keys = {entity.key for entity in gone}
    topmost = [entity for entity in gone if entity.parent_key not in keys]
    rank = {"rule": 0, "subscription": 1, "queue": 2, "topic": 3}
    return [SyncStep("delete", entity) for entity in sorted(topmost, key=lambda e: (rank[e.kind], order(e)))]


# -- carrying a step out -------------------------------------------------------------------


def apply_step(admin: ServiceBusAdministrationClient, step: SyncStep) -> None:
    """Carry ``step`` out on the namespace ``admin`` manages (a step ``BY_HAND``: nothing).

    Raises:
        azure.core.exceptions.AzureError: as the SDK raises it.
    """
    kind, names = step.entity.kind, step.entity.names
    if step.action in BY_HAND:
        return
    if step.action == "delete":
        getattr(admin, f"delete_{kind}")(*names)
    elif kind == "rule":
        rule: RuleProperties = step.entity.properties  # type: ignore[assignment]
        if step.action == "create":
            admin.create_rule(*names, filter=rule.filter or TrueRuleFilter(), action=rule.action)
        else:
            current = admin.get_rule(*names)
            current.filter, current.action = rule.filter or TrueRuleFilter(), rule.action
            admin.update_rule(names[0], names[1], current)
    elif step.action == "create":
        values = {name: value for name, value in writable(step.entity, COMPARED[kind]) if value is not None}
        getattr(admin, f"create_{kind}")(*names, **values)
    else:
        current = getattr(admin, f"get_{kind}")(*names)
        for name, value in writable(step.entity, step.properties):
            setattr(current, name, value)
        if kind == "subscription":
            admin.update_subscription(names[0], current)
        else:
            getattr(admin, f"update_{kind}")(current)


def writable(entity: Entity, properties: Iterable[str]) -> Iterable[tuple[str, Any]]:
    """The source's values to write to the target: durations as timedeltas ("forever" as
    the largest the service takes), a forwarding target by its entity path (the SDK
    writes the target namespace's URL around it), the rest as they are."""
    for name in properties:
        value = getattr(entity.properties, name, None)
        if name in DURATIONS or name in ENTITY_PATHS:
            value = normal(name, value)
        if isinstance(value, datetime.timedelta) and value.days >= FOREVER_DAYS:
            value = FOREVER
        yield name, value
