"""``geobus.testing``'s public names, its plain context managers and its missing-extra message."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from azure.servicebus import ServiceBusMessage

import geobus
import geobus.testing
from geobus.local import LocalNamespace
from geobus.testing import FaultProxy, NamespacePair, fault_proxy, local_pair

pytestmark = pytest.mark.timeout(60)


class TestPublicNames:
    """``__all__`` is sorted, complete and documented."""

    def test_all_is_sorted_and_importable(self) -> None:
        names = geobus.testing.__all__
        assert names == sorted(names)
        assert set(names) == {
            "FaultProxy",
            "NamespacePair",
            "RedisServer",
            "fault_proxy",
            "local_pair",
            "namespace_tls_context",
            "proxied_connection_string",
            "redis_server_binary",
            "sdk_proxy_options",
        }
        for name in names:
            assert getattr(geobus.testing, name).__doc__, f"{name} has no docstring"

    def test_missing_local_extra_says_how_to_install_it(self) -> None:
        code = "import sys; sys.modules['proton'] = None; import geobus.testing"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "ImportError: geobus.testing needs the 'local' extra" in done.stderr
        assert "pip install 'geobus[local]'" in done.stderr


class TestContextManagers:
    """``local_pair`` and ``fault_proxy`` for unittest users and scripts."""

    def test_local_pair_starts_and_stops_two_namespaces(self) -> None:
        with local_pair(lock_duration=5.0) as pair:
            assert isinstance(pair, NamespacePair)
            assert pair.primary.port != pair.secondary.port
            threads = {f"geobus-local-{ns.port}" for ns in (pair.primary, pair.secondary)}
            assert threads <= {t.name for t in threading.enumerate()}
        assert not threads & {t.name for t in threading.enumerate()}

    def test_config_through_a_proxy_sends_through_it(self) -> None:
        with local_pair() as pair, fault_proxy(pair.primary) as proxy:
            assert isinstance(proxy, FaultProxy) and proxy.upstream == (pair.primary.host, pair.primary.port)
            config = pair.config(primary_via=proxy, mode="passive")
            # The namespace keeps its own address; only the client's connection goes via the proxy.
            assert config.primary.fully_qualified_namespace == pair.primary.fully_qualified_namespace
            assert config.primary.client_options["custom_endpoint_address"] == proxy.endpoint
            assert config.secondary.client_options == {}
            assert "SharedAccessKey" not in repr(config) + repr(proxy) + repr(pair.primary)
            with geobus.GeoServiceBusClient(config) as client, client.get_queue_sender("q") as sender:
                sender.send_messages(ServiceBusMessage("via the proxy"))
                assert proxy.connection_count >= 1
            assert pair.counts() == {"primary": {"q": 1}, "secondary": {}}

    def test_config_options_are_validated(self) -> None:
        with local_pair() as pair:
            with pytest.raises(geobus.ConfigurationError, match="mode"):
                pair.config(mode="sideways")

    def test_fault_proxy_takes_an_address(self) -> None:
        with LocalNamespace() as ns, fault_proxy((ns.host, ns.port)) as proxy:
            assert proxy.upstream == (ns.host, ns.port)
