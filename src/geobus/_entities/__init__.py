"""Two namespaces' entity definitions, compared and synced (``geobus entities``).

- ``snapshot``: ``read_entities(admin)`` reads a namespace into an ``EntitySnapshot``;
- ``compare``: the compared properties (one tuple per kind) and ``diff_snapshots``, an
  ``EntityReport`` of ``EntityDifference``s;
- ``sources``: ``compare_entities(primary, secondary)``, the library's entry point, from
  configurations, administration clients or snapshots;
- ``sync``: ``plan_sync`` and ``apply_step`` (the command's, not public);
- ``admin``: ``admin_client(namespace)``, the administration client for a ``NamespaceConfig``.
"""

from .admin import admin_client
from .compare import EntityDifference, EntityReport, diff_snapshots
from .snapshot import Entity, EntitySnapshot, read_entities
from .sources import compare_entities, snapshot_of
from .sync import SyncStep, apply_step, plan_sync

__all__ = [
    "Entity",
    "EntityDifference",
    "EntityReport",
    "EntitySnapshot",
    "SyncStep",
    "admin_client",
    "apply_step",
    "compare_entities",
    "diff_snapshots",
    "plan_sync",
    "read_entities",
    "snapshot_of",
]
