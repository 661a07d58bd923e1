"""``geobus.testing.pytest_plugin`` as a user meets it: a test file run by pytester.

The inner runs are in-process, so they also show that everything the fixtures
started is stopped when the inner session ends.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from .helpers import LOOPBACK

pytestmark = pytest.mark.timeout(90)

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
    ignore::ResourceWarning
    ignore::pytest.PytestUnraisableExceptionWarning
"""

OPT_IN = 'pytest_plugins = ["geobus.testing.pytest_plugin"]\n'

USER_TESTS = '''
import json
from pathlib import Path

from azure.servicebus import ServiceBusClient, ServiceBusMessage

import geobus
from geobus.testing import sdk_proxy_options


def test_every_fixture(geobus_namespace, geobus_namespace_pair, geobus_namespace_factory, geobus_fault_proxy):
    pair = geobus_namespace_pair
    extra = geobus_namespace_factory(lock_duration=2.0)
    proxy = geobus_fault_proxy(pair.primary)
    cs = pair.primary.connection_string
    with ServiceBusClient.from_connection_string(cs, **sdk_proxy_options(proxy, cs)) as client:
        with client.get_queue_sender("q") as sender:
            sender.send_messages(ServiceBusMessage("through the proxy"))
    assert pair.primary.counts() == {"q": 1}
    with ServiceBusClient.from_connection_string(geobus_namespace.connection_string) as client:
        with client.get_queue_sender("solo") as sender:
            sender.send_messages(ServiceBusMessage("alone"))
    assert geobus_namespace.counts() == {"solo": 1}
    assert extra.port not in (pair.primary.port, pair.secondary.port, geobus_namespace.port)
    ports = [ns.port for ns in (geobus_namespace, pair.primary, pair.secondary, extra)] + [proxy.port]
    Path("ports.json").write_text(json.dumps(ports))


def test_pair_config_drives_geobus(geobus_namespace_pair, geobus_fault_proxy):
    pair = geobus_namespace_pair
    proxy = geobus_fault_proxy(pair.secondary)
    config = pair.config(secondary_via=proxy, mode="active")
    with geobus.GeoServiceBusClient(config) as client, client.get_queue_sender("q") as sender:
        result = sender.send_messages(ServiceBusMessage("both", message_id="b1"))
    assert set(result.landed) == {"primary", "secondary"}
    assert pair.counts() == {"primary": {"q": 1}, "secondary": {"q": 1}}
'''


def _geobus_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(("geobus-local-", "geobus-fault-proxy"))}


class TestPlugin:
    """Opted in, the fixtures work with the real SDK and stop everything they started."""

    def test_fixtures_pass_and_stop_everything(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(INI)
        pytester.makeconftest(OPT_IN)
        pytester.makepyfile(test_user=USER_TESTS)
        before = _geobus_threads()
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)
        assert _geobus_threads() <= before, "a namespace or proxy thread outlived the session"
        ports = json.loads((pytester.path / "ports.json").read_text())
        assert len(ports) == 5
        for port in ports:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((LOOPBACK, port), timeout=5).close()
        assert "SharedAccessKey=" not in result.stdout.str() + result.stderr.str()

    def test_not_loaded_without_opting_in(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(INI)
        pytester.makepyfile("def test_needs_it(geobus_namespace):\n    pass\n")
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*fixture 'geobus_namespace' not found*"])

    def test_coexists_with_a_conftest_of_the_same_kind(self, pytester: pytest.Pytester) -> None:
        # geobus's own tests define ``namespace`` and ``namespace_factory``; so may users.
        pytester.makeini(INI)
        pytester.makeconftest(
            OPT_IN
            + "import pytest\n"
            + "from geobus.local import LocalNamespace\n\n"
            + "@pytest.fixture\n"
            + "def namespace():\n"
            + "    with LocalNamespace() as ns:\n"
            + "        yield ns\n"
        )
        pytester.makepyfile(
            "def test_both(namespace, geobus_namespace):\n"
            "    assert namespace.port != geobus_namespace.port\n"
        )
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)

    def test_async_tests_can_use_the_fixtures(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(INI)
        pytester.makeconftest(OPT_IN)
        pytester.makepyfile(
            "from azure.servicebus import ServiceBusMessage\n"
            "from azure.servicebus.aio import ServiceBusClient\n\n"
            "async def test_send(geobus_namespace, geobus_fault_proxy):\n"
            "    proxy = geobus_fault_proxy(geobus_namespace)\n"
            "    proxy.set_latency(0.05)\n"
            "    cs = geobus_namespace.connection_string\n"
            "    from geobus.testing import proxied_connection_string\n"
            "    async with ServiceBusClient.from_connection_string(proxied_connection_string(cs, proxy)) as c:\n"
            "        async with c.get_queue_sender('q') as s:\n"
            "            await s.send_messages(ServiceBusMessage('x'))\n"
            "    assert geobus_namespace.counts() == {'q': 1}\n"
        )
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
