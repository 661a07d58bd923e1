"""geobus for asyncio: the same names as ``geobus``, async (Azure SDK convention)."""

from .. import _common
from .._common import *  # noqa: F403 - configuration, errors and results, shared with geobus
from ._client import GeoServiceBusClient
from ._receiver import DedupReceiver, ReceiverStats
from ._sender import ReplicatedMessageBatch, ReplicatedSender, ScheduledMessage, SenderStats

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
