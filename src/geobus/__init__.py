"""geobus: keep Azure Service Bus applications working through a regional outage.

Sync API here; the same names, async, in ``geobus.aio``.
"""

from ._client import GeoServiceBusClient
from ._config import (
    Deadlines,
    DedupKey,
    DedupPolicy,
    NamespaceConfig,
    ReplicationConfig,
    ReplicationMode,
    SdkRetryPolicy,
    WriteQuorum,
)
from ._errors import ConfigurationError, GeobusError, NamespaceTimeoutError, ReplicationError
from ._policy import SendResult
from ._receiver import DedupReceiver
from ._sender import ReplicatedSender
from ._version import __version__
from .aio._receiver import ReceiverStats
from .aio._sender import ReplicatedMessageBatch, ScheduledMessage, SenderStats

__all__ = [
    "ConfigurationError",
    "Deadlines",
    "DedupKey",
    "DedupPolicy",
    "DedupReceiver",
    "GeoServiceBusClient",
    "GeobusError",
    "NamespaceConfig",
    "NamespaceTimeoutError",
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
    "WriteQuorum",
    "__version__",
]
