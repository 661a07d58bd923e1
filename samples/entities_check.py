"""Entities check: both namespaces must define the same queues, topics, subscriptions and rules.

Shows: ``geobus.compare_entities`` as a deployment check (what ``geobus entities
check`` prints, in your own code), ``EntityReport.table()`` and its differences.
Run it before a release: a subscription missing in the secondary loses every
message sent there during a failover, and nothing else would tell you beforehand.

    python samples/entities_check.py

Locally, the two namespaces start alike and the sample then gives the primary's
``billing`` subscription a rule the secondary lacks, to show what the check finds
(the fix: ``geobus entities sync --from primary``). Against Azure (GEOBUS_PRIMARY_*,
GEOBUS_SECONDARY_*), it checks your namespaces and exits 1 if they differ. No async
twin: the comparison is sync in ``geobus.aio`` too (a deployment check, not a hot path).
"""

from __future__ import annotations

import sys

from azure.servicebus.management import ServiceBusAdministrationClient, SqlRuleFilter

from geobus import EntityReadError, compare_entities

from _local import namespaces

TOPICS = {"order-events": ["billing", "shipping"]}


def main() -> int:
    with namespaces(topics=TOPICS) as ns:
        print(f"checking {ns.describe()}")
        if ns.primary is not None:
            # The administration client as for any namespace; a local one's HTTPS
            # certificate is its own (azure-servicebus 7.15 always dials https://).
            with ServiceBusAdministrationClient.from_connection_string(
                ns.primary.connection_string, connection_verify=ns.primary.certificate_path
            ) as admin:
                admin.create_rule("order-events", "billing", "large", filter=SqlRuleFilter("amount > 100"))
        try:
            report = compare_entities(ns.config)
        except EntityReadError as exc:
            print(f"cannot read the {exc.namespace} namespace's entities: {exc.error}", file=sys.stderr)
            return 1
        if report.alike:
            print(f"alike: {report.primary} and {report.secondary} define the same entities")
            return 0
        print(report.table())
        print("fix: geobus entities sync --from primary   (--dry-run first to see the plan)")
        if ns.local:
            found = [(d.path, d.kind, d.property) for d in report.differences]
            expected = [("order-events/Subscriptions/billing", "rule", "large")]
            if found != expected:
                print(f"unexpected differences: {found}", file=sys.stderr)
                return 1
            print("found the rule the secondary lacks, as set up")
            return 0
        return 1


if __name__ == "__main__":
    sys.exit(main())
