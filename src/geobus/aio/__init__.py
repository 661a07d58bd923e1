"""geobus for asyncio: the same names as ``geobus``, async (Azure SDK convention)."""

from .. import _common
from .._common import *  # noqa: F403 - configuration, errors and results, shared with geobus
from ._client import GeoServiceBusClient as GeoServiceBusClient
from ._receiver import DedupReceiver as DedupReceiver
from ._receiver import ReceiverStats as ReceiverStats
from ._sender import ReplicatedMessageBatch as ReplicatedMessageBatch
from ._sender import ReplicatedSender as ReplicatedSender
from ._sender import ScheduledMessage as ScheduledMessage
from ._sender import SenderStats as SenderStats

__all__ = sorted(
    [
        *_common.__all__,
        "DedupReceiver",
        "GeoServiceBusClient",
        "ReceiverStats",
        "ReplicatedMessageBatch",
        "ReplicatedSender",
        "ScheduledMessage",
        "SenderStats",
    ]
)
