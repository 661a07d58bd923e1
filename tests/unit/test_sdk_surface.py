"""The drop-in contract: every name azure-servicebus's client, sender and receiver offer
(sync and aio) is accepted by geobus's counterpart under the same name.

``SDK_SURFACE`` is written out by hand from the installed SDK; the first test derives
it again by introspection (signatures, ``:keyword`` docstrings, instance attributes), so
an SDK that adds a name fails here until geobus has decided what to do with it.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import azure.servicebus
import azure.servicebus.aio
import pytest
from azure.servicebus import TransportType

import geobus
import geobus.aio
from geobus import ConfigurationError
from geobus._config import CLIENT_OPTIONS, OWNED_OPTIONS, RETRY_OPTIONS

ATTR = frozenset({"<attribute>"})  # a property or an instance attribute, not a method

# Every client keyword of ServiceBusClient's constructors (signature + class docstring).
_CLIENT_KEYWORDS = frozenset(
    {
        "connection_verify",
        "custom_endpoint_address",
        "http_proxy",
        "logging_enable",
        "retry_backoff_factor",
        "retry_backoff_max",
        "retry_mode",
        "retry_total",
        "ssl_context",
        "transport_type",
        "try_timeout",
        "uamqp_transport",
        "user_agent",
    }
)
_RECEIVER_OPTIONS = frozenset(
    {
        "auto_lock_renewer",
        "client_identifier",
        "max_wait_time",
        "prefetch_count",
        "receive_mode",
        "session_id",
        "socket_timeout",
        "sub_queue",
    }
)
_CLIENT: dict[str, frozenset[str]] = {
    "__init__": _CLIENT_KEYWORDS | {"fully_qualified_namespace", "credential"},
    "close": frozenset(),
    "from_connection_string": _CLIENT_KEYWORDS | {"conn_str"},
    "fully_qualified_namespace": ATTR,
    "get_queue_receiver": _RECEIVER_OPTIONS | {"queue_name"},
    "get_queue_sender": frozenset({"client_identifier", "queue_name", "socket_timeout"}),
    "get_subscription_receiver": _RECEIVER_OPTIONS | {"subscription_name", "topic_name"},
    "get_topic_sender": frozenset({"client_identifier", "socket_timeout", "topic_name"}),
    "list_queue_sessions": frozenset({"queue_name", "state_updated_after", "timeout"}),
    "list_subscription_sessions": frozenset({"state_updated_after", "subscription_name", "timeout", "topic_name"}),
}
_SENDER: dict[str, frozenset[str]] = {
    "__init__": frozenset(
        {
            "client_identifier",
            "credential",
            "fully_qualified_namespace",
            "http_proxy",
            "logging_enable",
            "queue_name",
            "socket_timeout",
            "topic_name",
            "transport_type",
            "user_agent",
        }
    ),
    "cancel_scheduled_messages": frozenset({"sequence_numbers", "timeout"}),
    "client_identifier": ATTR,
    "close": frozenset(),
    "create_message_batch": frozenset({"max_size_in_bytes"}),
    "entity_name": ATTR,
    "fully_qualified_namespace": ATTR,
    "schedule_messages": frozenset({"messages", "schedule_time_utc", "timeout"}),
    "send_messages": frozenset({"message", "timeout"}),
}
_RECEIVER: dict[str, frozenset[str]] = {
    "__init__": _RECEIVER_OPTIONS
    - {"session_id", "sub_queue"}
    | {"credential", "fully_qualified_namespace", "http_proxy", "logging_enable", "queue_name"}
    | {"subscription_name", "topic_name", "transport_type", "user_agent"},
    "abandon_message": frozenset({"message"}),
    "client_identifier": ATTR,
    "close": frozenset(),
    "complete_message": frozenset({"message"}),
    "dead_letter_message": frozenset({"error_description", "message", "reason"}),
    "defer_message": frozenset({"message"}),
    "entity_path": ATTR,
    "fully_qualified_namespace": ATTR,
    "peek_messages": frozenset({"max_message_count", "sequence_number", "timeout"}),
    "receive_deferred_messages": frozenset({"sequence_numbers", "timeout"}),
    "receive_messages": frozenset({"max_message_count", "max_wait_time"}),
    "renew_message_lock": frozenset({"message", "timeout"}),
    "session": ATTR,
}
_SYNC_CM = {"__enter__": frozenset(), "__exit__": frozenset()}
_ASYNC_CM = {"__aenter__": frozenset(), "__aexit__": frozenset()}

SDK_SURFACE: dict[tuple[str, str], dict[str, frozenset[str]]] = {
    ("sync", "client"): {**_CLIENT, **_SYNC_CM},
    ("sync", "sender"): {**_SENDER, **_SYNC_CM},
    ("sync", "receiver"): {**_RECEIVER, **_SYNC_CM, "__iter__": frozenset(), "__next__": frozenset(), "next": frozenset()},
    ("aio", "client"): {**_CLIENT, **_ASYNC_CM},
    ("aio", "sender"): {**_SENDER, **_ASYNC_CM},
    ("aio", "receiver"): {**_RECEIVER, **_ASYNC_CM, "__aiter__": frozenset(), "__anext__": frozenset()},
}

# SDK name -> geobus's name for it, and the SDK parameters that name one namespace
# (geobus's counterpart takes two in their place, positionally).
COUNTERPART: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    ("client", "__init__"): ("from_namespaces", frozenset({"fully_qualified_namespace", "credential"})),
    ("client", "from_connection_string"): ("from_connection_strings", frozenset({"conn_str"})),
}
# SDK names geobus does not compare, and why.
NOT_COMPARED: dict[tuple[str, str], str] = {
    ("sender", "__init__"): "a ReplicatedSender is built by its client (get_queue_sender), as the SDK's samples build theirs",
    ("receiver", "__init__"): "a DedupReceiver is built by its client (get_queue_receiver), as the SDK's samples build theirs",
}
# SDK names geobus cannot offer: calling them raises NotImplementedError naming the reason.
NOT_OFFERED: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("client", "from_connection_string"): lambda cls: cls.from_connection_string("Endpoint=sb://a.example.com/"),
}
# Names other helpers of issue 13 are building now: the coordinator empties this set.
PENDING: dict[tuple[str, str], str] = {}

_DUNDERS = {"__init__", "__enter__", "__exit__", "__aenter__", "__aexit__", "__iter__", "__next__", "__aiter__", "__anext__"}
_SDK = {"sync": azure.servicebus, "aio": azure.servicebus.aio}
_GEO = {"sync": geobus, "aio": geobus.aio}
_SDK_CLASS = {"client": "ServiceBusClient", "sender": "ServiceBusSender", "receiver": "ServiceBusReceiver"}
_GEO_CLASS = {"client": "GeoServiceBusClient", "sender": "ReplicatedSender", "receiver": "DedupReceiver"}


class _NoToken:
    """A credential that is never asked: nothing in these tests connects."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("no test here should ask for a token")


def _keywords(fn: Any, extra_doc: str) -> frozenset[str]:
    parameters = inspect.signature(fn).parameters.values()
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = {p.name for p in parameters if p.kind in kinds and p.name != "self"}
    names |= set(re.findall(r":keyword (?:[^:\n]*\s)?(\w+):", (fn.__doc__ or "") + extra_doc))
    return frozenset(names)


def _sdk_instances(api: str) -> dict[str, Any]:
    module = _SDK[api]
    client = module.ServiceBusClient("example.servicebus.windows.net", _NoToken())
    return {"client": client, "sender": client.get_queue_sender("q"), "receiver": client.get_queue_receiver("q")}


def _introspect(api: str, role: str, instance: Any) -> dict[str, frozenset[str]]:
    cls = getattr(_SDK[api], _SDK_CLASS[role])
    found: dict[str, frozenset[str]] = {}
    for name in sorted(set(dir(cls)) | set(vars(instance))):
        if name.startswith("_") and name not in _DUNDERS:
            continue
        static = inspect.getattr_static(cls, name, None)
        if static is None or isinstance(static, property):
            found[name] = ATTR
            continue
        extra = cls.__doc__ or "" if name in ("__init__", "from_connection_string") else ""
        found[name] = _keywords(getattr(cls, name), extra)
    return found


@pytest.fixture(scope="module")
def geo_instances() -> Iterator[dict[str, dict[str, Any]]]:
    """A geobus client, sender and receiver of each API, built without connecting."""
    sync_client = geobus.GeoServiceBusClient.from_namespaces(
        "a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken()
    )
    aio_client = geobus.aio.GeoServiceBusClient.from_namespaces(
        "a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken()
    )
    loop = asyncio.new_event_loop()
    try:
        made = {
            "sync": {
                "client": sync_client,
                "sender": sync_client.get_queue_sender("q"),
                "receiver": sync_client.get_queue_receiver("q"),
            },
            "aio": {
                "client": aio_client,
                "sender": aio_client.get_queue_sender("q"),
                "receiver": aio_client.get_queue_receiver("q"),
            },
        }
        yield made
    finally:
        sync_client.close()
        loop.run_until_complete(aio_client.close())
        loop.close()


def _cases() -> list[Any]:
    cases = []
    for (api, role), members in SDK_SURFACE.items():
        for name in members:
            marks = []
            if (role, name) in PENDING:
                marks.append(pytest.mark.skip(reason=PENDING[(role, name)]))
            cases.append(pytest.param(api, role, name, id=f"{api}-{role}-{name}", marks=marks))
    return cases


class TestTheTableIsTheInstalledSdk:
    """``SDK_SURFACE`` is what azure-servicebus offers now: a new name fails here first."""

    @pytest.mark.parametrize(("api", "role"), list(SDK_SURFACE))
    def test_table_matches_introspection(self, api: str, role: str) -> None:
        instance = _sdk_instances(api)[role]
        assert _introspect(api, role, instance) == SDK_SURFACE[(api, role)]

    def test_the_installed_sdk_is_7_15(self) -> None:
        from azure.servicebus import __version__

        assert __version__.startswith("7.15."), "re-derive SDK_SURFACE and docs/dropin.md for this SDK"

    def test_every_client_keyword_is_sorted_by_geobus(self) -> None:
        """Passed on, mapped onto SdkRetryPolicy, or refused with a reason: never ignored."""
        assert CLIENT_OPTIONS | set(RETRY_OPTIONS) | set(OWNED_OPTIONS) >= _CLIENT_KEYWORDS


class TestGeobusAcceptsEveryName:
    """geobus's counterpart of each SDK name exists and binds the SDK's keyword arguments."""

    @pytest.mark.parametrize(("api", "role", "name"), _cases())
    def test_name_is_accepted(self, geo_instances: dict[str, dict[str, Any]], api: str, role: str, name: str) -> None:
        if (role, name) in NOT_COMPARED:
            pytest.skip(NOT_COMPARED[(role, name)])
        keywords = SDK_SURFACE[(api, role)][name]
        target, replaced = COUNTERPART.get((role, name), (name, frozenset()))
        geo_class = getattr(_GEO[api], _GEO_CLASS[role])
        instance = geo_instances[api][role]
        if keywords is ATTR:
            try:
                getattr(instance, target)
            except NotImplementedError as exc:
                assert str(exc)
            return
        member = getattr(geo_class if target.startswith("from_") else instance, target)
        assert callable(member)
        inspect.signature(member).bind_partial(**dict.fromkeys(keywords - replaced, object()))

    @pytest.mark.parametrize(("api", "role", "name"), [(api, r, n) for api in _GEO for (r, n) in NOT_OFFERED])
    def test_what_cannot_be_offered_says_why(self, api: str, role: str, name: str) -> None:
        geo_class = getattr(_GEO[api], _GEO_CLASS[role])
        with pytest.raises(NotImplementedError, match=f"^{name}: .+"):
            NOT_OFFERED[(role, name)](geo_class)


# -- client options ---------------------------------------------------------------------------

_VALID: dict[str, Any] = {
    "connection_verify": "/etc/ssl/certs/ca-certificates.crt",
    "custom_endpoint_address": "sb://gateway.example.com:443",
    "http_proxy": {"proxy_hostname": "proxy.example.com", "proxy_port": 3128, "username": "u", "password": "hunter2-pw"},
    "logging_enable": True,
    "socket_timeout": 0.5,
    "ssl_context": ssl.create_default_context(),
    "transport_type": TransportType.AmqpOverWebsocket,
    "uamqp_transport": False,
    "user_agent": "orders/1.0",
}
_WRONG: dict[str, Any] = {
    "connection_verify": 42,
    "custom_endpoint_address": ["hunter2-secret"],
    "http_proxy": "hunter2-secret",
    "logging_enable": "hunter2-secret",
    "socket_timeout": "hunter2-secret",
    "ssl_context": "hunter2-secret",
    "transport_type": "hunter2-secret",
    "uamqp_transport": "hunter2-secret",
    "user_agent": 7,
}


def _client(api: str, **options: Any) -> Any:
    cls = _GEO[api].GeoServiceBusClient
    return cls.from_namespaces("a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), **options)


class TestClientOptions:
    """The SDK client's options reach both namespaces' SDK clients, are mapped, or refused."""

    def test_tables_cover_every_option(self) -> None:
        assert set(_VALID) == set(_WRONG) == CLIENT_OPTIONS

    @pytest.mark.parametrize("option", sorted(CLIENT_OPTIONS))
    def test_option_reaches_both_namespaces(self, option: str) -> None:
        config = geobus.ReplicationConfig.from_namespaces(
            "a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), **{option: _VALID[option]}
        )
        assert config.primary.client_options[option] == _VALID[option]
        assert config.secondary.client_options[option] == _VALID[option]

    def test_options_reach_the_sdk_clients(self) -> None:
        from geobus._engine.channels import build_client

        config = geobus.ReplicationConfig.from_namespaces(
            "a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), logging_enable=True, user_agent="orders/1.0"
        )
        for namespace in config.namespaces:
            sdk = build_client(namespace, config.retry, try_timeout=config.deadlines.attempt)
            assert sdk._config.logging_enable is True
            assert sdk._config.user_agent == "orders/1.0"

    @pytest.mark.parametrize("option", sorted(CLIENT_OPTIONS))
    def test_a_wrong_type_is_named_and_never_quoted(self, option: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            geobus.ReplicationConfig.from_namespaces(
                "a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), **{option: _WRONG[option]}
            )
        assert caught.value.field.split(".")[0] == option
        assert "hunter2" not in str(caught.value)

    def test_a_proxy_password_never_shows(self) -> None:
        config = geobus.ReplicationConfig.from_namespaces(
            "a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), http_proxy=_VALID["http_proxy"]
        )
        assert "hunter2" not in repr(config) and "hunter2" not in str(config)
        bad = {**_VALID["http_proxy"], "proxy_port": "3128"}
        with pytest.raises(ConfigurationError, match="proxy_port") as caught:
            geobus.ReplicationConfig.from_namespaces("a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), http_proxy=bad)
        assert "hunter2" not in str(caught.value)

    def test_retry_options_set_the_retry_policy(self) -> None:
        from azure.servicebus._pyamqp.error import RetryMode

        config = geobus.ReplicationConfig.from_namespaces(
            "a.servicebus.windows.net",
            "b.servicebus.windows.net",
            _NoToken(),
            retry_total=2,
            retry_backoff_factor=0.1,
            retry_backoff_max=0.3,
            retry_mode=RetryMode.EXPONENTIAL,
        )
        assert config.retry == geobus.SdkRetryPolicy(total=2, backoff_factor=0.1, backoff_max=0.3, mode="exponential")
        assert config.primary.client_options == {}

    def test_retries_that_outlast_the_attempt_are_refused(self) -> None:
        with pytest.raises(ConfigurationError, match=r"deadlines\.attempt") as caught:
            geobus.ReplicationConfig.from_namespaces(
                "a.servicebus.windows.net",
                "b.servicebus.windows.net",
                _NoToken(),
                retry_total=3,
                retry_backoff_factor=0.8,
                retry_backoff_max=120,
                retry_mode="exponential",
            )
        assert caught.value.field.startswith("retry_")

    def test_a_bad_retry_value_is_named_by_its_sdk_name(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            geobus.ReplicationConfig.from_namespaces("a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), retry_mode="linear")
        assert caught.value.field == "retry_mode"

    @pytest.mark.parametrize(("option", "value"), [("try_timeout", 3.0), ("uamqp_transport", True)])
    def test_what_geobus_owns_is_refused_with_the_reason(self, option: str, value: Any) -> None:
        with pytest.raises(ConfigurationError) as caught:
            geobus.ReplicationConfig.from_namespaces("a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), **{option: value})
        assert caught.value.field == option and "geobus" in caught.value.problem

    def test_an_unknown_option_is_a_configuration_error_not_a_type_error(self) -> None:
        with pytest.raises(ConfigurationError, match="logging_enabled: not a ReplicationConfig field"):
            geobus.ReplicationConfig.from_namespaces("a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), logging_enabled=True)

    def test_from_config_takes_the_options_over_the_configs_own(self) -> None:
        base = geobus.ReplicationConfig.from_namespaces(
            "a.servicebus.windows.net", "b.servicebus.windows.net", _NoToken(), user_agent="old", socket_timeout=1.0
        )
        with geobus.GeoServiceBusClient.from_config(base, user_agent="new", retry_total=0) as client:
            assert dict(client.config.primary.client_options) == {"user_agent": "new", "socket_timeout": 1.0}
            assert client.config.retry.total == 0
        with pytest.raises(ConfigurationError, match="mode: not a ServiceBusClient option"):
            base.with_sdk_options(mode="active")


class TestHandlerOptions:
    """Sender and receiver options, as get_queue_sender / get_queue_receiver take them."""

    def test_a_sender_has_one_identifier_for_both_namespaces(self) -> None:
        with _client("sync") as client:
            sender = client.get_queue_sender("orders", client_identifier="orders-api", socket_timeout=0.5)
            assert sender.client_identifier == "orders-api"
            assert sender.entity_name == "orders"
            assert sender.fully_qualified_namespace == "a.servicebus.windows.net"
            assert sender.fully_qualified_namespaces == {"primary": "a.servicebus.windows.net", "secondary": "b.servicebus.windows.net"}
            generated = client.get_topic_sender("events").client_identifier
            assert generated and generated.startswith("SBSender-")

    def test_an_active_client_names_the_primary(self) -> None:
        with _client("sync", mode="active") as client:
            assert client.fully_qualified_namespace == "a.servicebus.windows.net"
            assert client.get_queue_sender("q").fully_qualified_namespace == "a.servicebus.windows.net"

    @pytest.mark.parametrize(
        ("options", "fetch"),
        [({}, 0), ({"prefetch_count": 0}, 0), ({"prefetch_count": 5}, 5), ({"prefetch": 7}, 7)],
    )
    def test_prefetch_count_is_each_namespaces_fetch_size(self, options: dict[str, Any], fetch: int) -> None:
        with _client("sync") as client:
            receiver = client.get_queue_receiver("q", **options)
            assert receiver._core._prefetch == fetch

    @pytest.mark.parametrize(
        "options",
        [{"prefetch_count": -1}, {"prefetch_count": 2, "prefetch": 3}, {"prefetch": 0}, {"max_wait_time": 0}, {"receive_mode": "nope"}, {"sub_queue": "nope"}, {"socket_timeout": -1}],
    )
    def test_a_bad_receiver_option_is_a_value_error(self, options: dict[str, Any]) -> None:
        with _client("sync") as client, pytest.raises(ValueError):
            client.get_queue_receiver("q", **options)

    @pytest.mark.parametrize("api", ["sync", "aio"])
    def test_cancel_refuses_a_bare_sequence_number(self, api: str) -> None:
        if api == "sync":
            with _client("sync") as client, pytest.raises(TypeError, match="ScheduledMessage"):
                client.get_queue_sender("q").cancel_scheduled_messages(7)
            return

        async def run() -> None:
            async with _client("aio") as client:
                with pytest.raises(TypeError, match="ScheduledMessage"):
                    await client.get_queue_sender("q").cancel_scheduled_messages(7)

        asyncio.run(run())


class _SessionLister:
    """Stands in for one namespace's aio ServiceBusClient: lists sessions, or fails."""

    def __init__(self, sessions: list[str] | None) -> None:
        self.sessions = sessions
        self.asked: list[tuple[str, ...]] = []

    async def _list(self) -> Any:
        if self.sessions is None:
            raise ConnectionError("namespace down")
        for session in self.sessions:
            yield session

    def list_queue_sessions(self, queue_name: str, **options: Any) -> Any:
        self.asked.append((queue_name,))
        return self._list()

    def list_subscription_sessions(self, topic_name: str, subscription_name: str, **options: Any) -> Any:
        self.asked.append((topic_name, subscription_name))
        return self._list()

    async def close(self) -> None:
        pass


class TestListSessions:
    """list_queue_sessions / list_subscription_sessions: either namespace's sessions, each once."""

    def test_sync_lists_the_union(self) -> None:
        with _client("sync") as client:
            listers = {"primary": _SessionLister(["a", "b"]), "secondary": _SessionLister(["b", "c"])}
            client._core._clients.update(listers)
            assert client.list_queue_sessions("q") == ["a", "b", "c"]
            assert client.list_subscription_sessions("t", "s") == ["a", "b", "c"]
            assert listers["secondary"].asked == [("q",), ("t", "s")]

    def test_aio_leaves_out_a_namespace_that_fails(self, caplog: pytest.LogCaptureFixture) -> None:
        async def run() -> list[str]:
            async with _client("aio") as client:
                client._clients.update({"primary": _SessionLister(None), "secondary": _SessionLister(["c"])})
                return [session async for session in client.list_queue_sessions("q")]

        assert asyncio.run(run()) == ["c"]
        assert "did not list its sessions" in caplog.text

    def test_neither_answering_is_a_replication_error(self) -> None:
        with _client("sync") as client:
            client._core._clients.update({"primary": _SessionLister(None), "secondary": _SessionLister(None)})
            with pytest.raises(geobus.ReplicationError, match="no namespace listed its sessions"):
                client.list_queue_sessions("q")
            with pytest.raises(ValueError, match="timeout"):
                client.list_queue_sessions("q", timeout=0)
