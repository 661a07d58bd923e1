"""geobus: keep Azure Service Bus applications working through a regional outage.

The sync API; the same names, async, in ``geobus.aio`` (the settings, errors and
results are the same objects there, and so are ``compare_entities`` and
``read_entities``, sync in both: a deployment check, not a hot path). What each name does is in its docstring;
the README has the whole story.
"""

from ._config import (
    BreakerPolicy,
    Deadlines,
    DedupKey,
    DedupPolicy,
    FailbackMode,
    FailbackPolicy,
    NamespaceConfig,
    OutboxPolicy,
    OverridePolicy,
    ReplicationConfig,
    ReplicationMode,
    SdkRetryPolicy,
    SessionPolicy,
    StoreUnavailable,
    WriteQuorum,
)
from ._engine.sessions.session import SessionStats
from ._entities import (
    EntityDifference,
    EntityReport,
    EntitySnapshot,
    compare_entities,
    read_entities,
)
from ._errors import (
    ConfigurationError,
    EntityReadError,
    GeobusError,
    NamespaceError,
    NamespaceTimeoutError,
    NamespaceUnavailableError,
    OutboxError,
    OutboxFullError,
    ReplicationError,
)
from ._metrics import disable_metrics, enable_metrics
from ._models import (
    ReceiverStats,
    ReplicatedMessageBatch,
    ScheduledMessage,
    SenderStats,
    SendResult,
)
from ._redact import redact_logs as _redact_logs
from ._sync.client import GeoServiceBusClient
from ._sync.receiver import DedupReceiver
from ._sync.sender import ReplicatedSender
from ._sync.session_receiver import DedupSessionReceiver
from ._version import __version__

_redact_logs()  # no log line of geobus's carries a key, whoever configured the handlers

# The same names as geobus.aio (the sync classes in place of the async ones), and the version.
__all__ = [
    "BreakerPolicy",
    "ConfigurationError",
    "Deadlines",
    "DedupKey",
    "DedupPolicy",
    "DedupReceiver",
    "DedupSessionReceiver",
    "EntityDifference",
    "EntityReadError",
    "EntityReport",
    "EntitySnapshot",
    "FailbackMode",
    "FailbackPolicy",
    "GeoServiceBusClient",
    "GeobusError",
    "NamespaceConfig",
    "NamespaceError",
    "NamespaceTimeoutError",
    "NamespaceUnavailableError",
    "OutboxError",
    "OutboxFullError",
    "OutboxPolicy",
    "OverridePolicy",
    "ReceiverStats",
    "ReplicatedMessageBatch",
    "ReplicatedSender",
    "ReplicationConfig",
    "ReplicationError",
    "ReplicationMode",
    "ScheduledMessage",
    "SdkRetryPolicy",
    "SendResult",
    "SenderStats",
    "SessionPolicy",
    "SessionStats",
    "StoreUnavailable",
    "WriteQuorum",
    "__version__",
    "compare_entities",
    "disable_metrics",
    "enable_metrics",
    "read_entities",
]
