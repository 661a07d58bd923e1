"""geobus: keep Azure Service Bus applications working through a regional outage.

The sync API; the same names, async, in ``geobus.aio``. What each name does is in
its docstring; the README has the whole story.
"""

from ._config import (
    BreakerPolicy as BreakerPolicy,
)
from ._config import (
    Deadlines as Deadlines,
)
from ._config import (
    DedupKey as DedupKey,
)
from ._config import (
    DedupPolicy as DedupPolicy,
)
from ._config import (
    FailbackMode as FailbackMode,
)
from ._config import (
    FailbackPolicy as FailbackPolicy,
)
from ._config import (
    NamespaceConfig as NamespaceConfig,
)
from ._config import (
    OutboxPolicy as OutboxPolicy,
)
from ._config import (
    OverridePolicy as OverridePolicy,
)
from ._config import (
    ReplicationConfig as ReplicationConfig,
)
from ._config import (
    ReplicationMode as ReplicationMode,
)
from ._config import (
    SdkRetryPolicy as SdkRetryPolicy,
)
from ._config import (
    StoreUnavailable as StoreUnavailable,
)
from ._config import (
    WriteQuorum as WriteQuorum,
)
from ._errors import (
    ConfigurationError as ConfigurationError,
)
from ._errors import (
    GeobusError as GeobusError,
)
from ._errors import (
    NamespaceError as NamespaceError,
)
from ._errors import (
    NamespaceTimeoutError as NamespaceTimeoutError,
)
from ._errors import (
    NamespaceUnavailableError as NamespaceUnavailableError,
)
from ._errors import (
    OutboxError as OutboxError,
)
from ._errors import (
    OutboxFullError as OutboxFullError,
)
from ._errors import (
    ReplicationError as ReplicationError,
)
from ._metrics import disable_metrics as disable_metrics
from ._metrics import enable_metrics as enable_metrics
from ._models import (
    ReceiverStats as ReceiverStats,
)
from ._models import (
    ReplicatedMessageBatch as ReplicatedMessageBatch,
)
from ._models import (
    ScheduledMessage as ScheduledMessage,
)
from ._models import (
    SenderStats as SenderStats,
)
from ._models import (
    SendResult as SendResult,
)
from ._redact import redact_logs as _redact_logs
from ._sync.client import GeoServiceBusClient as GeoServiceBusClient
from ._sync.receiver import DedupReceiver as DedupReceiver
from ._sync.sender import ReplicatedSender as ReplicatedSender
from ._version import __version__ as __version__

_redact_logs()  # no log line of geobus's carries a key, whoever configured the handlers

# The same names as geobus.aio (the sync classes in place of the async ones), and the version.
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
    "__version__",
    "disable_metrics",
    "enable_metrics",
]
