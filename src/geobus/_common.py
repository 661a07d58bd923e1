"""The names ``geobus`` and ``geobus.aio`` both export: configuration, errors, the send result."""

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
    StoreUnavailable,
    WriteQuorum,
)
from ._decisions.judge import SendResult
from ._errors import (
    ConfigurationError,
    GeobusError,
    NamespaceError,
    NamespaceTimeoutError,
    NamespaceUnavailableError,
    OutboxError,
    OutboxFullError,
    ReplicationError,
)
from ._metrics import disable_metrics, enable_metrics

__all__ = [
    "BreakerPolicy",
    "ConfigurationError",
    "Deadlines",
    "DedupKey",
    "DedupPolicy",
    "FailbackMode",
    "FailbackPolicy",
    "GeobusError",
    "NamespaceConfig",
    "NamespaceError",
    "NamespaceTimeoutError",
    "NamespaceUnavailableError",
    "OutboxError",
    "OutboxFullError",
    "OutboxPolicy",
    "OverridePolicy",
    "ReplicationConfig",
    "ReplicationError",
    "ReplicationMode",
    "SdkRetryPolicy",
    "SendResult",
    "StoreUnavailable",
    "WriteQuorum",
    "disable_metrics",
    "enable_metrics",
]
