"""geobus: keep Azure Service Bus applications working through a regional outage.

Sync API here; the same names, async, in ``geobus.aio``.
"""

from . import aio as _aio
from ._common import *  # noqa: F403 - configuration, errors and results, shared with geobus.aio
from ._engine.receiver import ReceiverStats as ReceiverStats
from ._engine.sender import ReplicatedMessageBatch as ReplicatedMessageBatch
from ._engine.sender import ScheduledMessage as ScheduledMessage
from ._engine.sender import SenderStats as SenderStats
from ._redact import redact_logs as _redact_logs
from ._sync.client import GeoServiceBusClient as GeoServiceBusClient
from ._sync.receiver import DedupReceiver as DedupReceiver
from ._sync.sender import ReplicatedSender as ReplicatedSender
from ._version import __version__ as __version__

_redact_logs()  # no log line of geobus's carries a key, whoever configured the handlers

# The same names as geobus.aio (the sync classes in place of the async ones), and the version.
__all__ = sorted([*_aio.__all__, "__version__"])
