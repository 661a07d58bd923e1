"""``assert_entities_alike``: a test's check that two namespaces define the same entities."""

from __future__ import annotations

from typing import Any

from .._entities import compare_entities


def assert_entities_alike(primary: Any, secondary: Any = None) -> None:
    """Fail the test unless the two namespaces define the same queues, topics, subscriptions
    and rules, with the same compared properties (``geobus.compare_entities``, which takes
    the same arguments: two ``NamespaceConfig``s, administration clients or
    ``EntitySnapshot``s, or one ``ReplicationConfig``).

    Raises:
        AssertionError: they differ; the message is the table of differences.
        EntityReadError: a namespace could not be read.
    """
    report = compare_entities(primary, secondary)
    if not report.alike:
        count = len(report.differences)
        raise AssertionError(
            f"the entities of {report.primary or 'primary'} and {report.secondary or 'secondary'} differ "
            f"({count} difference{'' if count == 1 else 's'}):\n{report.table()}"
        )
