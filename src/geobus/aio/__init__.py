"""geobus for asyncio: the same names as ``geobus``, async (Azure SDK convention)."""

from .._config import (
    Deadlines,
    DedupKey,
    DedupPolicy,
    NamespaceConfig,
    ReplicationConfig,
    ReplicationMode,
    SdkRetryPolicy,
    WriteQuorum,
)
from .._errors import ConfigurationError, GeobusError, NamespaceTimeoutError, ReplicationError
from .._policy import SendResult
from ._client import GeoServiceBusClient
from ._receiver import DedupReceiver, ReceiverStats
from ._sender import ReplicatedMessageBatch, ReplicatedSender, ScheduledMessage, SenderStats

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
]
