"""geobus: keep Azure Service Bus applications working through a regional outage."""

from ._version import __version__

__all__ = ["__version__"]
