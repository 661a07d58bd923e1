"""``geobus entities``: the two namespaces' entity definitions, compared (``check``) or made
alike (``sync --from primary|secondary``), through azure-servicebus's administration client.

What is compared, and how, is ``geobus._entities.compare`` (docs/entities.md); what sync
does, in which order, is ``geobus._entities.sync``. Exit statuses: 0 alike (after a sync),
1 they differ (a dry run that would change something too, and an entity that must be
recreated by hand) or a namespace could not be read or changed, 2 a bad configuration.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from azure.core.exceptions import AzureError
from azure.servicebus.management import ServiceBusAdministrationClient

from .._config import NamespaceConfig, ReplicationConfig
from .._entities import (
    EntitySnapshot,
    SyncStep,
    admin_client,
    apply_step,
    diff_snapshots,
    plan_sync,
    snapshot_of,
)
from .._entities.compare import EntityReport, text_table
from .._entities.sync import BY_HAND
from .._errors import ConfigurationError, EntityReadError
from .._redact import describe
from .common import add_common, configured
from .output import FAILED, OK, USAGE, Out

ROLES = ("primary", "secondary")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="{check,sync}")
    check = actions.add_parser(
        "check",
        help="print how the namespaces' entity definitions differ",
        description="Read both namespaces' queues, topics, subscriptions and rules and print their "
        "differences. Exit 0 alike, 1 they differ or a namespace could not be read, 2 a bad configuration.",
    )
    add_common(check)
    sync = actions.add_parser(
        "sync",
        help="create what is missing and update what differs in the other namespace",
        description="Print the plan, then create what the other namespace lacks and update what differs "
        "in it. Nothing is deleted unless --delete. Exit 0 alike afterwards; 1 they still differ (an "
        "entity that must be recreated by hand, a step that failed; with --dry-run: they differ now) or "
        "a namespace could not be read; 2 a bad configuration.",
    )
    add_common(sync)
    sync.add_argument("--from", dest="source", required=True, choices=ROLES, help="the namespace to copy from")
    sync.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    sync.add_argument("--delete", action="store_true", help="also delete what the source namespace lacks")


def run(args: argparse.Namespace) -> int:
    out = Out("entities")
    with configured(args, out) as config, contextlib.ExitStack() as opened:
        admins: dict[str, ServiceBusAdministrationClient] = {}
        for role, namespace in zip(ROLES, config.namespaces, strict=True):
            admins[role] = _admin(out, namespace)
            opened.callback(admins[role].close)
        before = _read(out, admins)
        if args.action == "check":
            return _check(out, args, config, before)
        return _sync(out, args, config, admins, before)


def _admin(out: Out, namespace: NamespaceConfig) -> ServiceBusAdministrationClient:
    try:
        return admin_client(namespace)
    except ConfigurationError as exc:
        raise out.fail(f"configuration: {exc}", USAGE) from None
    except (ValueError, AzureError, ImportError) as exc:  # an azure-identity credential that cannot be built
        raise out.fail(f"namespace {namespace.name!r}: {describe(exc)}", FAILED) from None


def _read(out: Out, admins: dict[str, ServiceBusAdministrationClient]) -> dict[str, EntitySnapshot]:
    """Both namespaces' snapshots; each one that cannot be read is named on stderr (exit 1)."""
    snapshots: dict[str, EntitySnapshot] = {}
    for role, admin in admins.items():
        try:
            snapshots[role] = snapshot_of(admin, role)
        except EntityReadError as exc:
            out.error(str(exc))
    if len(snapshots) < len(admins):
        raise out.fail("nothing compared", FAILED)
    return snapshots


def _where(config: ReplicationConfig, role: str) -> str:
    namespace = config.primary if role == "primary" else config.secondary
    return f"{role} ({namespace.fully_qualified_namespace})"


def _summary(snapshots: dict[str, EntitySnapshot]) -> str:
    counts = {kind: max(s.counts()[kind] for s in snapshots.values()) for kind in ("queue", "topic", "subscription", "rule")}
    return ", ".join(f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in counts.items())


def _show_report(out: Out, config: ReplicationConfig, report: EntityReport, snapshots: dict[str, EntitySnapshot]) -> None:
    where = f"{_where(config, 'primary')} and {_where(config, 'secondary')}"
    if report.alike:
        out.line(f"alike: {where} define the same entities ({_summary(snapshots)})")
        return
    out.line(report.table())
    count = len(report.differences)
    out.line(f"{count} difference{'' if count == 1 else 's'} between {where}")


def _check(out: Out, args: argparse.Namespace, config: ReplicationConfig, snapshots: dict[str, EntitySnapshot]) -> int:
    report = diff_snapshots(snapshots["primary"], snapshots["secondary"])
    if args.json:
        out.json(report.as_dict())
    else:
        _show_report(out, config, report, snapshots)
    return OK if report.alike else FAILED


def _sync(
    out: Out,
    args: argparse.Namespace,
    config: ReplicationConfig,
    admins: dict[str, ServiceBusAdministrationClient],
    before: dict[str, EntitySnapshot],
) -> int:
    source, target = args.source, next(role for role in ROLES if role != args.source)
    plan = plan_sync(before[source], before[target], delete=args.delete)
    if not args.json:
        _show_plan(out, config, source, target, plan)
    applied, failed = 0, None
    if not args.dry_run:
        for step in plan:
            if step.action in BY_HAND:
                continue
            try:
                apply_step(admins[target], step)
            except AzureError as exc:
                failed = {"step": step.text, "error": describe(exc)}
                out.error(f"{_where(config, target)}: {step.text}: {describe(exc)}")
                break
            applied += 1
    after = before if args.dry_run else _read(out, admins)
    report = diff_snapshots(after["primary"], after["secondary"])
    by_hand = [step for step in plan if step.action in BY_HAND]
    if args.json:
        out.json(_sync_json(args, source, target, plan, applied, failed, by_hand, report))
    else:
        if args.dry_run:
            out.line("dry run: nothing changed")
        else:
            out.line(f"applied {applied} of {len(plan) - len(by_hand)} step(s); now:")
        _show_report(out, config, report, after)
    for step in by_hand:
        where = f"{step.entity.kind} {step.entity.path} in {_where(config, target)}"
        properties = ", ".join(step.properties)
        if step.action == "set by hand":
            out.error(f"{where}: set {properties} in the portal or ARM (azure-servicebus cannot send it)")
        else:
            out.error(
                f"{where} must be recreated by hand: {properties} cannot change once it exists "
                "(sync deletes nothing to recreate it)"
            )
    return OK if report.alike and failed is None else FAILED


def _show_plan(out: Out, config: ReplicationConfig, source: str, target: str, plan: tuple[SyncStep, ...]) -> None:
    heading = f"plan: {_where(config, source)} -> {_where(config, target)}"
    if not plan:
        out.line(f"{heading}: nothing to do")
        return
    out.line(f"{heading}, {len(plan)} step{'' if len(plan) == 1 else 's'}:")
    rows = [(step.action, step.entity.kind, step.entity.path, ", ".join(step.properties)) for step in plan]
    table = text_table(("action", "kind", "entity", "properties"), rows)
    for line in table.splitlines():
        out.line(f"  {line}")


def _sync_json(
    args: argparse.Namespace,
    source: str,
    target: str,
    plan: tuple[SyncStep, ...],
    applied: int,
    failed: dict[str, str] | None,
    by_hand: list[SyncStep],
    report: EntityReport,
) -> dict[str, Any]:
    return {
        "from": source,
        "to": target,
        "dry_run": args.dry_run,
        "delete": args.delete,
        "plan": [step.as_dict() for step in plan],
        "applied": applied,
        "failed": failed,
        "recreate_by_hand": [step.entity.path for step in by_hand],
        **report.as_dict(),
    }
