"""The embedded local namespace: an AMQP 1.0 server that azure-servicebus talks to.

``LocalNamespace`` runs one in this process, ``LocalNamespaceProcess`` in a child
process; ``ControlServer`` and ``ControlClient`` inject faults into one over HTTP.
``load_entities`` reads a TOML file of queues, topics and subscriptions with their
settings (``EntityDefinitions``), which either takes as ``entities=``.

Constants: ``DEV_KEY_NAME`` and ``DEV_KEY``, the published development key
(like Azurite's, it protects nothing; ``development_key(n)`` for namespace n of
a set); ``DEFAULT_MAX_MESSAGE_SIZE``, the largest message a namespace takes
unless told otherwise (1 MiB); ``MAX_LATENCY``, the most latency a
fault may add, in seconds.

Needs the ``local`` extra (``pip install 'geobus[local]'``), which brings
python-qpid-proton.
"""

from ._control import ControlClient, ControlServer
from ._definitions import EntityDefinitions, load_entities
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
    "EntityDefinitions",
    "EntitySettings",
    "Fault",
    "Limits",
    "LocalNamespace",
    "LocalNamespaceProcess",
    "MAX_LATENCY",
    "development_key",
    "load_entities",
]
