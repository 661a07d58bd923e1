"""geobus for asyncio: the same names as ``geobus``, async (the Azure SDK's convention)."""

from .._config import (
    BreakerPolicy as BreakerPolicy,
)
from .._config import (
    Deadlines as Deadlines,
)
from .._config import (
    DedupKey as DedupKey,
)
from .._config import (
    DedupPolicy as DedupPolicy,
)
from .._config import (
    FailbackMode as FailbackMode,
)
from .._config import (
    FailbackPolicy as FailbackPolicy,
)
from .._config import (
    NamespaceConfig as NamespaceConfig,
)
from .._config import (
    OutboxPolicy as OutboxPolicy,
)
from .._config import (
    OverridePolicy as OverridePolicy,
)
from .._config import (
    ReplicationConfig as ReplicationConfig,
)
from .._config import (
    ReplicationMode as ReplicationMode,
)
from .._config import (
    SdkRetryPolicy as SdkRetryPolicy,
)
from .._config import (
    StoreUnavailable as StoreUnavailable,
)
from .._config import (
    WriteQuorum as WriteQuorum,
)
from .._engine.client import GeoServiceBusClient as GeoServiceBusClient
from .._engine.receiver import DedupReceiver as DedupReceiver
from .._engine.sender import ReplicatedSender as ReplicatedSender
from .._errors import (
    ConfigurationError as ConfigurationError,
)
from .._errors import (
    GeobusError as GeobusError,
)
from .._errors import (
    NamespaceError as NamespaceError,
)
from .._errors import (
    NamespaceTimeoutError as NamespaceTimeoutError,
)
from .._errors import (
    NamespaceUnavailableError as NamespaceUnavailableError,
)
from .._errors import (
    OutboxError as OutboxError,
)
from .._errors import (
    OutboxFullError as OutboxFullError,
)
from .._errors import (
    ReplicationError as ReplicationError,
)
from .._metrics import disable_metrics as disable_metrics
from .._metrics import enable_metrics as enable_metrics
from .._models import (
    ReceiverStats as ReceiverStats,
)
from .._models import (
    ReplicatedMessageBatch as ReplicatedMessageBatch,
)
from .._models import (
    ScheduledMessage as ScheduledMessage,
)
from .._models import (
    SenderStats as SenderStats,
)
from .._models import (
    SendResult as SendResult,
)

__all__ = [
    "BreakerPolicy",
    "ConfigurationError",
    "Deadlines",
    "DedupKey",
    "DedupPolicy",
    "DedupReceiver",
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
    "StoreUnavailable",
    "WriteQuorum",
    "disable_metrics",
    "enable_metrics",
]
