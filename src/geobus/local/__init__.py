"""The embedded local namespace: an AMQP 1.0 server that azure-servicebus talks to.

Needs the ``local`` extra (``pip install 'geobus[local]'``), which brings
python-qpid-proton.
"""

from ._control import ControlClient, ControlServer
from ._entities import EntitySettings
from ._limits import Limits
from ._namespace import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEV_KEY,
    DEV_KEY_NAME,
    MAX_LATENCY,
    LocalNamespace,
    development_key,
)
from ._process import LocalNamespaceProcess
from ._server import Fault

__all__ = [
    "ControlClient",
    "ControlServer",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEV_KEY",
    "DEV_KEY_NAME",
    "EntitySettings",
    "Fault",
    "Limits",
    "LocalNamespace",
    "LocalNamespaceProcess",
    "MAX_LATENCY",
    "development_key",
]
