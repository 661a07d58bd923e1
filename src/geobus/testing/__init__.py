"""Test helpers for code that uses geobus: local namespaces and a network fault proxy.

``FaultProxy`` sits between a client and a namespace and breaks the network on
demand (``refuse``, ``black_hole``, ``set_latency``, ``set_bandwidth``,
``reset``, ``heal``). ``local_pair`` starts two in-process local namespaces,
``process_pair`` two ``geobus local`` child processes (both a ``NamespacePair``);
``fault_proxy`` puts a proxy in front of one. ``FaultProxyProcess`` (and
``fault_proxy_process``) runs one in its own process with a fixed latency, so
that a client under measurement shares no interpreter lock with it.
``sdk_proxy_options`` and ``proxied_connection_string`` point the
azure-servicebus client, or a geobus configuration, at either.

``RedisServer`` runs a throwaway ``redis-server`` (loopback, nothing saved) for
tests of a fleet sharing a ``redis://`` seen-set.

``eventually`` (and ``eventually_async``) poll a condition with a bound instead
of sleeping for a guess; ``FakeClock`` is a clock the test moves by hand.

``assert_entities_alike`` fails a test (with a table of the differences) unless two
namespaces define the same queues, topics, subscriptions and rules
(``geobus.compare_entities``).

pytest fixtures (``geobus_namespace``, ``geobus_namespace_pair``,
``geobus_namespace_factory``, ``geobus_fault_proxy``, and ``geobus_entities`` to
override with your entity definitions) are in a plugin you opt into:
``pytest_plugins = ["geobus.testing.pytest_plugin"]``.

Needs the ``local`` extra: ``pip install 'geobus[local]'``.
"""

from ._entities import assert_entities_alike  # needs no local namespace

# First of the rest: it checks for the local extra before anything imports it (geobus._extras).
from ._namespaces import NamespacePair, fault_proxy, local_pair, process_pair
from ._proxy import FaultProxy
from ._proxy_process import FaultProxyProcess, fault_proxy_process
from ._redis import RedisServer, redis_server_binary
from ._sdk import namespace_tls_context, proxied_connection_string, sdk_proxy_options
from ._waiting import FakeClock, eventually, eventually_async

__all__ = [
    "FakeClock",
    "FaultProxy",
    "FaultProxyProcess",
    "NamespacePair",
    "RedisServer",
    "assert_entities_alike",
    "eventually",
    "eventually_async",
    "fault_proxy",
    "fault_proxy_process",
    "local_pair",
    "namespace_tls_context",
    "process_pair",
    "proxied_connection_string",
    "redis_server_binary",
    "sdk_proxy_options",
]
