"""``compare_entities`` over any pair of sources, and ``admin_client``: the SDK's
administration client as geobus builds it for a namespace (over plain HTTP for the emulator)."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.servicebus.aio.management import ServiceBusAdministrationClient as AsyncAdmin

from geobus import (
    ConfigurationError,
    EntityReadError,
    NamespaceConfig,
    ReplicationConfig,
    compare_entities,
    read_entities,
)
from geobus._entities import admin as admin_module
from geobus._entities import sources
from geobus.local import DEV_KEY

from .entity_fakes import UNREACHABLE, FakeAdmin, queue, snap


class TestCompareEntities:
    """``compare_entities``: any pair of sources, errors naming the namespace."""

    def test_two_admin_clients(self) -> None:
        primary, secondary = FakeAdmin("ns-a"), FakeAdmin("ns-b")
        primary.add("queue", "orders")
        report = compare_entities(primary, secondary)
        assert (report.primary, report.secondary, [d.kind for d in report.differences]) == ("ns-a", "ns-b", ["missing in secondary"])
        assert not primary.closed  # a client given stays open

    def test_read_entities_reads_every_kind(self) -> None:
        admin = FakeAdmin("ns")
        admin.add("queue", "orders")
        admin.add("topic", "events")
        admin.add("subscription", "events", "audit")
        admin.add("rule", "events", "audit", "$Default")
        assert read_entities(admin).counts() == {"queue": 1, "topic": 1, "subscription": 1, "rule": 1}  # type: ignore[arg-type]

    def test_a_replication_config_builds_and_closes_an_admin_client_per_namespace(
        self, monkeypatch: pytest.MonkeyPatch, config: ReplicationConfig
    ) -> None:
        built: dict[str, FakeAdmin] = {}

        def fake(namespace: NamespaceConfig) -> FakeAdmin:
            built[str(namespace.name)] = FakeAdmin(str(namespace.fully_qualified_namespace))
            return built[str(namespace.name)]

        monkeypatch.setattr(sources, "admin_client", fake)
        assert compare_entities(config).alike
        assert sorted(built) == ["primary", "secondary"] and all(admin.closed for admin in built.values())

    def test_an_unreadable_namespace_is_named(self) -> None:
        secondary = FakeAdmin("ns-b")
        secondary.fail = UNREACHABLE
        with pytest.raises(EntityReadError, match="namespace 'secondary': ServiceRequestError: Failed to establish") as raised:
            compare_entities(FakeAdmin("ns-a"), secondary)
        assert raised.value.namespace == "secondary" and raised.value.__cause__ is UNREACHABLE

    def test_a_snapshot_is_compared_as_it_is(self) -> None:
        assert not compare_entities(snap(queues=[queue("orders")]), FakeAdmin("ns")).alike

    @pytest.mark.parametrize("second", [None, "config"])
    def test_a_replication_config_alone_or_two_namespaces(self, config: ReplicationConfig, second: str | None) -> None:
        with pytest.raises(ConfigurationError, match="secondary"):
            compare_entities(config if second else config.primary, config if second else None)

    def test_anything_else_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="primary: expected a NamespaceConfig"):
            compare_entities("Endpoint=sb://x", FakeAdmin("ns"))  # type: ignore[arg-type]

    def test_an_async_admin_client_is_refused_up_front(self) -> None:
        client = AsyncAdmin.from_connection_string(
            f"Endpoint=sb://127.0.0.1:5999/;SharedAccessKeyName=k;SharedAccessKey={DEV_KEY};UseDevelopmentEmulator=true"
        )  # builds no connection
        try:
            with pytest.raises(TypeError, match="secondary: an async ServiceBusAdministrationClient") as raised:
                compare_entities(FakeAdmin("ns"), client)
            message = str(raised.value)
            assert "sync" in message and "azure.servicebus.management.ServiceBusAdministrationClient" in message
            assert "NamespaceConfig" in message
        finally:
            asyncio.run(client.close())


KEY = "FAKEKEYdoNotPrint0123456789abcdefghijklmnopq="


@pytest.fixture
def config() -> ReplicationConfig:
    return ReplicationConfig.from_connection_strings(
        f"Endpoint=sb://ns-a.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY}",
        f"Endpoint=sb://ns-b.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY}",
    )


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[str]]]:
    """A plain-HTTP server answering every GET with an empty Atom feed; the paths it was asked."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = b'<feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Queues</title></feed>'
            self.send_response(200)
            self.send_header("Content-Type", "application/atom+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], asked
    server.shutdown()
    server.server_close()
    thread.join()


class TestAdminClient:
    """``admin_client``: the SDK's client, over plain HTTP for a namespace without TLS."""

    def test_an_emulator_connection_string_is_served_over_http(self, http_server: tuple[int, list[str]]) -> None:
        port, asked = http_server
        namespace = NamespaceConfig(
            name="primary",
            connection_string=f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=k;SharedAccessKey={KEY};UseDevelopmentEmulator=true",
        )
        with admin_module.admin_client(namespace) as admin:
            assert list(admin.list_queues()) == []
        assert asked and asked[0].startswith("/$Resources/queues")

    def test_a_namespace_with_tls_keeps_the_sdks_transport(self, config: ReplicationConfig) -> None:
        with admin_module.admin_client(config.primary) as admin:
            transport = admin._pipeline._transport  # type: ignore[attr-defined]
        assert type(transport) is RequestsTransport
        assert admin.fully_qualified_namespace == "ns-a.servicebus.windows.net"

    def test_an_emulator_on_a_remote_host_needs_allow_remote_emulator(self) -> None:
        remote = f"Endpoint=sb://10.1.2.3:5672;SharedAccessKeyName=k;SharedAccessKey={KEY};UseDevelopmentEmulator=true"
        namespace = NamespaceConfig(name="primary", connection_string=remote, allow_remote_emulator=True)
        with admin_module.admin_client(namespace) as admin:
            assert isinstance(admin._pipeline._transport, admin_module.PlainHttpTransport)  # type: ignore[attr-defined]

    def test_an_async_credential_is_a_configuration_error(self) -> None:
        class AsyncCredential:
            async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
                raise AssertionError("not called")

        namespace = NamespaceConfig(name="primary", fully_qualified_namespace="ns-a.servicebus.windows.net", credential=AsyncCredential())
        with pytest.raises(ConfigurationError, match=r"primary\.credential: the administration client is sync"):
            admin_module.admin_client(namespace)

    def test_only_http_options_reach_the_admin_client(self) -> None:
        namespace = NamespaceConfig(
            name="primary",
            connection_string=f"Endpoint=sb://ns-a.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY}",
            client_options={
                "user_agent": "deploy-check",
                "socket_timeout": 5.0,
                "http_proxy": {"proxy_hostname": "proxy", "proxy_port": 3128, "username": "u", "password": "p@ss"},
            },
        )
        options = admin_module._pipeline_options(namespace)
        assert options == {
            "user_agent": "deploy-check",
            "proxies": {"http": "http://u:p%40ss@proxy:3128", "https": "http://u:p%40ss@proxy:3128"},
        }
