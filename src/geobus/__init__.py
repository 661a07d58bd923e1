"""geobus: keep Azure Service Bus applications working through a regional outage.

Sync API here; the same names, async, in ``geobus.aio``.
"""

from . import aio as _aio
from ._client import GeoServiceBusClient as GeoServiceBusClient
from ._common import *  # noqa: F403 - configuration, errors and results, shared with geobus.aio
from ._receiver import DedupReceiver as DedupReceiver
from ._redact import redact_logs as _redact_logs
from ._sender import ReplicatedSender as ReplicatedSender
from ._version import __version__ as __version__
from .aio._receiver import ReceiverStats as ReceiverStats
from .aio._sender import ReplicatedMessageBatch as ReplicatedMessageBatch
from .aio._sender import ScheduledMessage as ScheduledMessage
from .aio._sender import SenderStats as SenderStats

_redact_logs()  # no log line of geobus's carries a key, whoever configured the handlers

# The same names as geobus.aio (the sync classes in place of the async ones), and the version.
__all__ = sorted([*_aio.__all__, "__version__"])
