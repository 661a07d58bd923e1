"""geobus for asyncio: the same names as ``geobus``, async (Azure SDK convention)."""

from .. import _common
from .._common import *  # noqa: F403 - configuration, errors and results, shared with geobus
from .._engine.client import GeoServiceBusClient as GeoServiceBusClient
from .._engine.receiver import DedupReceiver as DedupReceiver
from .._engine.receiver import ReceiverStats as ReceiverStats
from .._engine.sender import ReplicatedMessageBatch as ReplicatedMessageBatch
from .._engine.sender import ReplicatedSender as ReplicatedSender
from .._engine.sender import ScheduledMessage as ScheduledMessage
from .._engine.sender import SenderStats as SenderStats

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
