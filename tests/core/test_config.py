"""ReplicationConfig: three loaders, one result; every bad setting named; keys never shown."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from geobus import (
    ConfigurationError,
    Deadlines,
    DedupKey,
    DedupPolicy,
    NamespaceConfig,
    ReplicationConfig,
    ReplicationMode,
    SdkRetryPolicy,
    WriteQuorum,
)
from geobus._config import SETTINGS, Setting
from geobus._config.checks import env_part, in_files

WEU_KEY = "c2VjcmV0LWtleS13ZXUtMDEyMzQ1Njc4OQ=="
NEU_KEY = "c2VjcmV0LWtleS1uZXUtOTg3NjU0MzIxMA=="
WEU = f"Endpoint=sb://orders-weu.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={WEU_KEY}"
NEU = f"Endpoint=sb://orders-neu.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={NEU_KEY}"

MAPPING: dict[str, Any] = {
    "mode": "active",
    "write_quorum": "all",
    "primary": {"connection_string": WEU},
    "secondary": {"connection_string": NEU},
    "deadlines": {"attempt": 1.5, "send": 4, "receive_stall": 6},
    "retry": {"total": 2, "backoff_factor": 0.1, "backoff_max": 0.5, "mode": "exponential"},
    "dedup": {"key": "application_property", "property_name": "order_id", "max_entries": 500, "max_age": 120},
}

ENVIRON = {
    "GEOBUS_MODE": "active",
    "GEOBUS_WRITE_QUORUM": "all",
    "GEOBUS_PRIMARY_CONNECTION_STRING": WEU,
    "GEOBUS_SECONDARY_CONNECTION_STRING": NEU,
    "GEOBUS_DEADLINE_ATTEMPT": "1.5",
    "GEOBUS_DEADLINE_SEND": "4",
    "GEOBUS_DEADLINE_RECEIVE_STALL": "6",
    "GEOBUS_RETRY_TOTAL": "2",
    "GEOBUS_RETRY_BACKOFF_FACTOR": "0.1",
    "GEOBUS_RETRY_BACKOFF_MAX": "0.5",
    "GEOBUS_RETRY_MODE": "exponential",
    "GEOBUS_DEDUP_KEY": "application_property",
    "GEOBUS_DEDUP_PROPERTY_NAME": "order_id",
    "GEOBUS_DEDUP_MAX_ENTRIES": "500",
    "GEOBUS_DEDUP_MAX_AGE": "120",
}

TOML = f"""
mode = "active"
write_quorum = "all"

[primary]
connection_string = "{WEU}"

[secondary]
connection_string = "{NEU}"

[deadlines]
attempt = 1.5
send = 4
receive_stall = 6

[retry]
total = 2
backoff_factor = 0.1
backoff_max = 0.5
mode = "exponential"

[dedup]
key = "application_property"
property_name = "order_id"
max_entries = 500
max_age = 120
"""


def with_changes(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``path`` ("deadlines.attempt") set, or removed for ``...``."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    *parents, leaf = path.split(".")
    target = data
    for parent in parents:
        target = target.setdefault(parent, {})
    if value is ...:
        target.pop(leaf, None)
    else:
        target[leaf] = value
    return data


class TestLoaders:
    """The environment, a TOML file and a mapping build the same config."""

    def test_mapping_reads_every_setting(self) -> None:
        config = ReplicationConfig.from_mapping(MAPPING)
        assert config.mode is ReplicationMode.ACTIVE
        assert config.write_quorum is WriteQuorum.ALL
        assert config.primary.name == "primary"
        assert config.primary.fully_qualified_namespace == "orders-weu.servicebus.windows.net"
        assert config.secondary.fully_qualified_namespace == "orders-neu.servicebus.windows.net"
        assert config.deadlines == Deadlines(attempt=1.5, send=4, receive_stall=6)
        assert config.retry == SdkRetryPolicy(total=2, backoff_factor=0.1, backoff_max=0.5, mode="exponential")
        assert config.dedup == DedupPolicy(
            key=DedupKey.APPLICATION_PROPERTY, property_name="order_id", max_entries=500, max_age=120
        )

    def test_env_builds_the_same_config(self) -> None:
        assert ReplicationConfig.from_env(ENVIRON) == ReplicationConfig.from_mapping(MAPPING)

    def test_toml_file_builds_the_same_config(self, tmp_path: Path) -> None:
        path = tmp_path / "geobus.toml"
        path.write_text(TOML)
        assert ReplicationConfig.from_file(path) == ReplicationConfig.from_mapping(MAPPING)

    def test_env_defaults_to_os_environ(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in ENVIRON.items():
            monkeypatch.setenv(name, value)
        assert ReplicationConfig.from_env() == ReplicationConfig.from_mapping(MAPPING)

    def test_env_namespace_without_credential_means_default_credential(self) -> None:
        config = ReplicationConfig.from_env(
            {"GEOBUS_PRIMARY_NAMESPACE": "a.servicebus.windows.net", "GEOBUS_SECONDARY_NAMESPACE": "b.servicebus.windows.net"}
        )
        assert config.primary.credential == "default"
        assert config.secondary.fully_qualified_namespace == "b.servicebus.windows.net"

    def test_connection_strings_shortcut_matches_mapping(self) -> None:
        built = ReplicationConfig.from_connection_strings(WEU, NEU)
        loaded = ReplicationConfig.from_mapping({"primary": {"connection_string": WEU}, "secondary": {"connection_string": NEU}})
        assert built == loaded

    def test_missing_file_is_a_configuration_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_file(tmp_path / "absent.toml")
        assert caught.value.field == "file"

    def test_invalid_toml_names_the_file_not_the_key(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.toml"
        path.write_text(f'[primary]\nconnection_string = "{WEU}\n')  # unterminated string
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_file(path)
        assert caught.value.field == "file"
        assert WEU_KEY not in str(caught.value)


class TestModeSwitch:
    """Switching active and passive replication is a change of one setting."""

    def test_only_the_mode_differs(self) -> None:
        active = ReplicationConfig.from_mapping(MAPPING)
        passive = ReplicationConfig.from_mapping(with_changes(MAPPING, "mode", "passive"))
        assert passive.mode is ReplicationMode.PASSIVE
        assert dataclasses.replace(passive, mode=ReplicationMode.ACTIVE) == active

    @pytest.mark.parametrize("spelling", ["PASSIVE", " passive ", ReplicationMode.PASSIVE])
    def test_mode_spellings(self, spelling: Any) -> None:
        config = ReplicationConfig.from_connection_strings(WEU, NEU, mode=spelling)
        assert config.mode is ReplicationMode.PASSIVE

    def test_env_switches_mode(self) -> None:
        config = ReplicationConfig.from_env({**ENVIRON, "GEOBUS_MODE": "passive"})
        assert config.mode is ReplicationMode.PASSIVE


class TestDefaults:
    """What a config holds when only the two namespaces are given."""

    def test_defaults(self) -> None:
        config = ReplicationConfig.from_mapping({"primary": {"connection_string": WEU}, "secondary": {"connection_string": NEU}})
        assert config.mode is ReplicationMode.PASSIVE
        assert config.write_quorum is WriteQuorum.ANY
        assert (config.deadlines.attempt, config.deadlines.send, config.deadlines.receive_stall) == (5.0, 10.0, 10.0)
        assert (config.retry.total, config.retry.backoff_factor, config.retry.backoff_max, config.retry.mode) == (
            1,
            0.2,
            1.0,
            "fixed",
        )
        assert config.dedup.key is DedupKey.MESSAGE_ID
        assert (config.dedup.max_entries, config.dedup.max_age) == (100_000, 3600.0)
        assert [ns.name for ns in config.namespaces] == ["primary", "secondary"]


class TestValidation:
    """Every bad setting raises ConfigurationError naming its field."""

    @pytest.mark.parametrize(
        ("path", "value", "field"),
        [
            ("mode", "mirrored", "mode"),
            ("write_quorum", "most", "write_quorum"),
            ("primary", ..., "primary"),
            ("secondary", "not a table", "secondary"),
            ("primary.connection_string", "Endpoint=sb://x.servicebus.windows.net/", "primary.connection_string"),
            ("secondary.connection_string", WEU, "secondary"),  # the same namespace twice
            ("secondary.name", "primary", "secondary.name"),
            ("deadlines.attempt", 0, "deadlines.attempt"),
            ("deadlines.attempt", "soon", "deadlines.attempt"),
            ("deadlines.attempt", True, "deadlines.attempt"),
            ("deadlines.send", 1, "deadlines.send"),  # below attempt
            ("deadlines.receive_stall", float("nan"), "deadlines.receive_stall"),
            ("deadlines.send", float("inf"), "deadlines.send"),
            ("retry.total", -1, "retry.total"),
            ("retry.total", 1.5, "retry.total"),
            ("retry.total", True, "retry.total"),
            ("retry.backoff_factor", -0.1, "retry.backoff_factor"),
            ("retry.backoff_max", "x", "retry.backoff_max"),
            ("retry.mode", "linear", "retry.mode"),
            ("dedup.key", "body", "dedup.key"),
            ("dedup.property_name", ..., "dedup.property_name"),
            ("dedup.max_entries", 0, "dedup.max_entries"),
            ("dedup.max_age", -5, "dedup.max_age"),
            ("deadlines", 5, "deadlines"),
        ],
    )
    def test_error_names_the_field(self, path: str, value: Any, field: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_mapping(with_changes(MAPPING, path, value))
        assert caught.value.field == field
        assert str(caught.value).startswith(f"{field}: ")

    @pytest.mark.parametrize(
        ("section", "field"),
        [
            ({"fully_qualified_namespace": "a.servicebus.windows.net"}, "primary.credential"),
            ({"fully_qualified_namespace": "sb://a.servicebus.windows.net/", "credential": "default"}, "primary.fully_qualified_namespace"),
            ({"fully_qualified_namespace": "a.servicebus.windows.net", "credential": "kerberos"}, "primary.credential"),
            ({"connection_string": NEU, "credential": "default"}, "primary"),
            ({}, "primary"),
        ],
    )
    def test_namespace_errors_name_the_field(self, section: dict[str, Any], field: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_mapping({"primary": section, "secondary": {"connection_string": WEU}})
        assert caught.value.field == field

    def test_env_value_error_names_the_field(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_env({**ENVIRON, "GEOBUS_DEDUP_MAX_ENTRIES": "many"})
        assert caught.value.field == "dedup.max_entries"

    def test_shortcut_names_which_connection_string_is_bad(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_connection_strings(WEU, "Endpoint=sb://b.servicebus.windows.net/")
        assert caught.value.field == "secondary.connection_string"

    def test_configuration_error_is_a_value_error(self) -> None:
        with pytest.raises(ValueError):
            ReplicationConfig.from_mapping(with_changes(MAPPING, "mode", "x"))

    def test_policies_validate_on_direct_construction(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            Deadlines(attempt=-1)
        assert caught.value.field == "deadlines.attempt"


class TestUnknownKeys:
    """A misspelt setting is an error, not silently ignored."""

    @pytest.mark.parametrize(
        ("path", "field"),
        [
            ("modes", "modes"),
            ("primary.endpoint", "primary.endpoint"),
            ("deadlines.atempt", "deadlines.atempt"),
            ("retry.tries", "retry.tries"),
            ("dedup.ttl", "dedup.ttl"),
        ],
    )
    def test_unknown_key_is_named(self, path: str, field: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_mapping(with_changes(MAPPING, path, 1))
        assert caught.value.field == field
        assert "unknown setting" in caught.value.problem


class TestSecrets:
    """A key never appears in an error message or a repr."""

    @pytest.mark.parametrize(
        "connection_string",
        [
            f"Endpoint=sb//orders.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={WEU_KEY}",
            f"Endpoint=orders.servicebus.windows.net,SharedAccessKeyName=Root,SharedAccessKey={WEU_KEY}",
            f"Endpoint=sb://orders.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey:{WEU_KEY}",
            f"Endpoint=sb://orders.servicebus.windows.net/;SharedAccessKeyName=Root;{WEU_KEY.rstrip('=')}",
            f"Endpoint=sb://orders.servicebus.windows.net:port/;SharedAccessKeyName=Root;SharedAccessKey={WEU_KEY}",
            f"SharedAccessKeyName=Root;SharedAccessKey={WEU_KEY}",
            WEU_KEY.rstrip("="),
        ],
        ids=["bad-scheme", "commas", "colon", "bare-key", "bad-port", "no-endpoint", "only-key"],
    )
    def test_malformed_connection_string_is_rejected_without_the_key(self, connection_string: str) -> None:
        fragment = WEU_KEY[:8]  # not even a prefix of the key may show
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_mapping(with_changes(MAPPING, "primary.connection_string", connection_string))
        assert caught.value.field == "primary.connection_string"
        assert fragment not in str(caught.value)
        assert fragment not in repr(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__

    def test_reprs_hide_keys(self) -> None:
        config = ReplicationConfig.from_mapping(MAPPING)
        text = repr(config) + repr(config.primary) + str(config.secondary)
        assert WEU_KEY not in text and NEU_KEY not in text
        assert "orders-weu.servicebus.windows.net" in repr(config.primary)

    def test_credential_object_repr_shows_only_its_type(self) -> None:
        class TokenCredential:
            def __repr__(self) -> str:
                return "TokenCredential(secret=hunter2)"

        namespace = NamespaceConfig(fully_qualified_namespace="a.servicebus.windows.net", credential=TokenCredential())
        assert "hunter2" not in repr(namespace)
        assert "TokenCredential" in repr(namespace)

    def test_client_options_reach_the_sdk_client_and_never_the_repr(self) -> None:
        from azure.servicebus import TransportType

        from geobus._engine.channels import build_client

        namespace = NamespaceConfig(
            name="primary",
            connection_string=MAPPING["primary"]["connection_string"],
            client_options={"transport_type": TransportType.Amqp, "custom_endpoint_address": "sb://127.0.0.1:5999"},
        )
        assert "5999" not in repr(namespace)
        client = build_client(namespace, SdkRetryPolicy(), try_timeout=1.0)
        assert client._config.custom_endpoint_address.startswith("sb://127.0.0.1:5999")
        assert client._config.retry_total == SdkRetryPolicy().total  # geobus's, not the SDK's

    def test_client_options_are_copied_and_compared(self) -> None:
        options = {"user_agent": "drill"}
        cs = MAPPING["primary"]["connection_string"]
        namespace = NamespaceConfig(name="primary", connection_string=cs, client_options=options)
        options["retry_total"] = 99  # after construction: must not reach the SDK
        assert dict(namespace.client_options) == {"user_agent": "drill"}
        assert namespace != NamespaceConfig(name="primary", connection_string=cs)

    @pytest.mark.parametrize("option", ["try_timeout", "retry_total", "retry_mode"])
    def test_client_options_may_not_set_what_geobus_owns(self, option: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            NamespaceConfig(name="primary", connection_string=MAPPING["primary"]["connection_string"], client_options={option: 1})
        assert caught.value.field == "primary.client_options" and option in str(caught.value)
        with pytest.raises(ConfigurationError, match="custom_endpoint not among"):
            NamespaceConfig(name="primary", connection_string=MAPPING["primary"]["connection_string"], client_options={"custom_endpoint": "x"})
        with pytest.raises(ConfigurationError, match="credential not among"):
            NamespaceConfig(name="primary", connection_string=MAPPING["primary"]["connection_string"], client_options={"credential": "x"})
        with pytest.raises(ConfigurationError, match="mapping"):
            NamespaceConfig(name="primary", connection_string=MAPPING["primary"]["connection_string"], client_options=[1])  # type: ignore[arg-type]

    @pytest.mark.parametrize("name", ["default", "cli"])
    def test_a_credential_named_in_configuration_needs_no_aiohttp(self, name: str) -> None:
        """Built from azure.identity's sync classes (the aio ones need aiohttp, which is
        not installed); token calls are awaited on a thread. No token is fetched here."""
        import inspect

        from geobus._engine.channels import _credential

        credential = _credential(name)
        assert inspect.iscoroutinefunction(credential.get_token)
        assert type(credential._credential).__module__.startswith("azure.identity")


class TestEnvironmentSpelling:
    """A misspelt GEOBUS_ variable is an error, not a silently missing setting."""

    BASE: ClassVar[dict[str, str]] = {
        "GEOBUS_PRIMARY_CONNECTION_STRING": "Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true",
        "GEOBUS_SECONDARY_CONNECTION_STRING": "Endpoint=sb://127.0.0.1:5674;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true",
    }

    def test_unknown_variable_is_named(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_env({**self.BASE, "GEOBUS_OUTBOX_PTH": "/tmp/outbox.db"})
        assert caught.value.field == "GEOBUS_OUTBOX_PTH"

    def test_new_policies_load_from_the_environment(self) -> None:
        config = ReplicationConfig.from_env(
            {
                **self.BASE,
                "GEOBUS_OUTBOX_PATH": "/tmp/outbox.db",
                "GEOBUS_OUTBOX_MAX_MESSAGES": "10",
                "GEOBUS_BREAKER_FAILURE_THRESHOLD": "5",
                "GEOBUS_FAILBACK_MODE": "prefer_primary",
                "GEOBUS_OVERRIDE_PATH": "/etc/geobus/override.toml",
                "GEOBUS_LOCAL_KEY": "not ours: geobus local reads it",
            }
        )
        assert config.outbox.path == "/tmp/outbox.db" and config.outbox.max_messages == 10
        assert config.breaker.failure_threshold == 5
        assert config.failback.mode.value == "prefer_primary"
        assert config.override.path == "/etc/geobus/override.toml"

    @pytest.mark.parametrize(
        ("section", "values", "field"),
        [
            ("breaker", {"failure_threshold": 0}, "breaker.failure_threshold"),
            ("breaker", {"cooldown": -1}, "breaker.cooldown"),
            ("failback", {"mode": "sometimes"}, "failback.mode"),
            ("failback", {"healthy_probes": 0}, "failback.healthy_probes"),
            ("outbox", {"path": ""}, "outbox.path"),
            ("outbox", {"max_messages": 0}, "outbox.max_messages"),
            ("outbox", {"backoff_initial": 5, "backoff_max": 1}, "outbox.backoff_max"),
            ("override", {"interval": 0}, "override.interval"),
            ("outbox", {"pth": "x"}, "outbox.pth"),
        ],
    )
    def test_bad_policy_values_name_the_field(self, section: str, values: dict[str, object], field: str) -> None:
        mapping = {
            "primary": {"connection_string": self.BASE["GEOBUS_PRIMARY_CONNECTION_STRING"]},
            "secondary": {"connection_string": self.BASE["GEOBUS_SECONDARY_CONNECTION_STRING"]},
            section: values,
        }
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_mapping(mapping)
        assert caught.value.field == field


class TestSharedSeenSet:
    """``[dedup] store``, ``lease``, ``store_unavailable``: checked when the configuration is built."""

    @pytest.mark.parametrize("store", ["memory", "sqlite:/var/lib/worker/seen.db", "redis://127.0.0.1:6379/0"])
    def test_stores_by_url(self, store: str) -> None:
        assert DedupPolicy(store=store).store == store

    @pytest.mark.parametrize("store", ["", "sqlite:", "postgres://x", "redis:/x", "mem"])
    def test_an_unknown_store_is_rejected(self, store: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            DedupPolicy(store=store)
        assert caught.value.field == "dedup.store"

    @pytest.mark.parametrize("password", ["s3cret-pass", "p@ss@word", "pa/ss", "pa?ss", "pa:ss"])
    def test_a_redis_password_never_shows(self, password: str) -> None:
        policy = DedupPolicy(store=f"redis://user:{password}@cache.internal:6380/2")
        assert password not in repr(policy) and "cache.internal:6380" in repr(policy)
        with pytest.raises(ConfigurationError) as caught:
            DedupPolicy(store="rediz://:s3cret-pass@cache.internal:6380/2")
        assert "s3cret-pass" not in str(caught.value)

    def test_from_env(self) -> None:
        env = {
            "GEOBUS_PRIMARY_CONNECTION_STRING": WEU,
            "GEOBUS_SECONDARY_CONNECTION_STRING": NEU,
            "GEOBUS_DEDUP_STORE": "sqlite:/tmp/seen.db",
            "GEOBUS_DEDUP_LEASE": "12.5",
            "GEOBUS_DEDUP_STORE_UNAVAILABLE": "hold",
        }
        dedup = ReplicationConfig.from_env(env).dedup
        assert (dedup.store, dedup.lease, dedup.store_unavailable.value) == ("sqlite:/tmp/seen.db", 12.5, "hold")

    @pytest.mark.parametrize(
        ("field", "value"), [("lease", 0), ("lease", 2.9), ("lease", "soon"), ("store_unavailable", "drop")]
    )
    def test_bad_values_name_the_field(self, field: str, value: object) -> None:
        with pytest.raises(ConfigurationError) as caught:
            DedupPolicy(**{field: value})
        assert caught.value.field == f"dedup.{field}"


PORTAL_PASSWORD = "UG9ydGFsUGFzc3dvcmQtbm90LWEtcmVhbC1vbmUtMTIzNA=="
PORTAL_REDIS = f"contoso.redis.cache.windows.net:6380,password={PORTAL_PASSWORD},ssl=True,abortConnect=False"
LOCAL = "Endpoint=sb://{host}/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0;UseDevelopmentEmulator=true"


def _error(mapping: dict[str, Any]) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        ReplicationConfig.from_mapping(mapping)
    return caught.value


class TestNoValueEchoed:
    """A value that does not parse is never quoted: it may be a key in the wrong field."""

    @pytest.mark.parametrize(
        ("path", "value", "secret", "field", "hint"),
        [
            ("primary", {"fully_qualified_namespace": WEU, "credential": "default"}, WEU_KEY,
             "primary.fully_qualified_namespace", "put it in primary.connection_string"),
            ("primary", {"fully_qualified_namespace": "orders.servicebus.windows.net", "credential": WEU_KEY}, WEU_KEY,
             "primary.credential", "a key belongs in primary.connection_string"),
            ("primary", {"fully_qualified_namespace": WEU_KEY, "credential": "default"}, WEU_KEY,
             "primary.fully_qualified_namespace", "looks like a key"),
            ("primary", {"fully_qualified_namespace": f"sb://u:{WEU_KEY}@orders.servicebus.windows.net/", "credential": "cli"},
             WEU_KEY, "primary.fully_qualified_namespace", "user or password"),
            ("dedup.store", PORTAL_REDIS, PORTAL_PASSWORD, "dedup.store",
             "then :PASSWORD@, then contoso.redis.cache.windows.net:6380/0"),
            ("deadlines.attempt", WEU_KEY, WEU_KEY, "deadlines.attempt", "looks like a key"),
            ("retry.backoff_max", WEU, WEU_KEY, "retry.backoff_max", "connection string"),
            ("retry.total", WEU_KEY, WEU_KEY, "retry.total", "looks like a key"),
            ("retry.mode", WEU_KEY, WEU_KEY, "retry.mode", "looks like a key"),
            ("mode", WEU, WEU_KEY, "mode", "connection string"),
            ("dedup.store_unavailable", f"password={PORTAL_PASSWORD}", PORTAL_PASSWORD, "dedup.store_unavailable", "secret"),
            ("failback.mode", "sometimes-maybe", "sometimes-maybe", "failback.mode", "'some'"),
        ],
    )  # fmt: skip
    def test_the_value_is_described_not_quoted(self, path: str, value: Any, secret: str, field: str, hint: str) -> None:
        error = _error(with_changes(MAPPING, path, value))
        assert error.field == field
        assert hint in str(error)
        for text in (str(error), repr(error)):
            assert secret not in text and secret[:6] not in text

    def test_an_endpoint_with_a_password_is_not_quoted(self) -> None:
        error = _error(with_changes(MAPPING, "primary.connection_string", f"Endpoint=sb://user:{WEU_KEY}@ns/;SharedAccessKeyName=k;SharedAccessKey=x"))
        assert error.field == "primary.connection_string" and WEU_KEY[:6] not in str(error)

    @pytest.mark.parametrize(
        "store",
        [f"redis://cache:6379/0?password={PORTAL_PASSWORD}", f"rediss://default:{PORTAL_PASSWORD}@cache:6380/0"],
    )
    def test_a_store_password_never_shows_in_the_repr(self, store: str) -> None:
        config = ReplicationConfig.from_mapping(with_changes(MAPPING, "dedup.store", store))
        for text in (repr(config), repr(config.dedup)):
            assert PORTAL_PASSWORD not in text and "cache:63" in text


class TestEmulatorOnlyOnLoopback:
    """UseDevelopmentEmulator=true is plaintext AMQP: loopback hosts only, unless allowed."""

    @pytest.mark.parametrize("host", ["10.0.0.5:5672", "orders.servicebus.windows.net", "0.0.0.0:5672", "127.0.0.1.example.com"])
    def test_a_remote_host_is_refused(self, host: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            NamespaceConfig(name="primary", connection_string=LOCAL.format(host=host))
        assert caught.value.field == "primary.connection_string"
        assert "plaintext" in caught.value.problem and "allow_remote_emulator" in caught.value.problem

    @pytest.mark.parametrize("host", ["127.0.0.1:5672", "127.9.8.7:6000", "localhost:5672", "LOCALHOST.", "[::1]:5672"])
    def test_loopback_hosts_are_accepted(self, host: str) -> None:
        assert NamespaceConfig(name="primary", connection_string=LOCAL.format(host=host)).fully_qualified_namespace

    def test_a_remote_custom_endpoint_is_refused_too(self) -> None:
        """Where the SDK connects is the custom endpoint, when there is one."""
        with pytest.raises(ConfigurationError, match=r"'proxy\.example\.com'"):
            NamespaceConfig(
                name="primary",
                connection_string=LOCAL.format(host="127.0.0.1:5672"),
                client_options={"custom_endpoint_address": "sb://proxy.example.com:5672"},
            )

    def test_allowed_in_code_in_toml_and_in_the_environment(self, tmp_path: Path) -> None:
        remote = LOCAL.format(host="10.0.0.5:5672")
        assert NamespaceConfig(connection_string=remote, allow_remote_emulator=True).allow_remote_emulator is True
        path = tmp_path / "geobus.toml"
        path.write_text(
            f'[primary]\nconnection_string = "{remote}"\nallow_remote_emulator = true\n'
            f'[secondary]\nconnection_string = "{LOCAL.format(host="127.0.0.1:5673")}"\n'
        )
        assert ReplicationConfig.from_file(path).primary.allow_remote_emulator is True
        env = {
            "GEOBUS_PRIMARY_CONNECTION_STRING": LOCAL.format(host="127.0.0.1:5672"),
            "GEOBUS_SECONDARY_CONNECTION_STRING": remote,
            "GEOBUS_SECONDARY_ALLOW_REMOTE_EMULATOR": "true",
        }
        config = ReplicationConfig.from_env(env)
        assert (config.primary.allow_remote_emulator, config.secondary.allow_remote_emulator) == (False, True)
        assert "allow_remote_emulator=True" in repr(config.secondary)
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_env({**env, "GEOBUS_SECONDARY_ALLOW_REMOTE_EMULATOR": "perhaps"})
        assert caught.value.field == "secondary.allow_remote_emulator"

    def test_tls_namespaces_need_no_permission(self) -> None:
        assert NamespaceConfig(connection_string=WEU).allow_remote_emulator is False

    def test_a_hostname_part_cannot_move_the_endpoint(self) -> None:
        """The SDK also reads HostName as the Endpoint: two of them are refused, not guessed."""
        text = LOCAL.format(host="127.0.0.1:5672") + ";HostName=sb://evil.example.com/"
        with pytest.raises(ConfigurationError, match="twice"):
            NamespaceConfig(connection_string=text)


class TestSameNamespace:
    """The two namespaces must differ, however their addresses are written."""

    @pytest.mark.parametrize(
        ("primary", "secondary"),
        [
            ("sb://orders.servicebus.windows.net", "sb://orders.servicebus.windows.net:5671"),
            ("sb://orders.servicebus.windows.net/", "amqps://ORDERS.servicebus.windows.net."),
            ("https://orders.servicebus.windows.net:443/", "sb://orders.servicebus.windows.net:5671/"),
            ("sb://orders.servicebus.windows.net:9350", "sb://orders.servicebus.windows.net"),  # TLS: the SDK drops any port
        ],
    )
    def test_connection_strings(self, primary: str, secondary: str) -> None:
        key = "SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"
        with pytest.raises(ConfigurationError, match="same namespace") as caught:
            ReplicationConfig.from_connection_strings(f"Endpoint={primary};{key}", f"Endpoint={secondary};{key}")
        assert caught.value.field == "secondary"

    @pytest.mark.parametrize("secondary", ["ORDERS.SERVICEBUS.WINDOWS.NET.", "orders.servicebus.windows.net:5671"])
    def test_a_connection_string_and_a_namespace(self, secondary: str) -> None:
        with pytest.raises(ConfigurationError, match="same namespace"):
            ReplicationConfig(
                primary=NamespaceConfig(connection_string="Endpoint=sb://orders.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=eA=="),
                secondary=NamespaceConfig(fully_qualified_namespace=secondary, credential="default"),
            )

    @pytest.mark.parametrize(
        ("primary", "secondary", "same"),
        [
            ("127.0.0.1:5672", "127.0.0.1:5673", False),  # the local pair
            ("127.0.0.1", "127.0.0.1:5672", True),  # no TLS: 5672 when no port is given
            ("127.0.0.1:5671", "127.0.0.1", False),
            ("LOCALHOST.:5672", "localhost:5672", True),
        ],
    )
    def test_local_namespaces_differ_by_port(self, primary: str, secondary: str, same: bool) -> None:
        def build() -> ReplicationConfig:
            return ReplicationConfig.from_connection_strings(LOCAL.format(host=primary), LOCAL.format(host=secondary))

        if same:
            with pytest.raises(ConfigurationError, match="same namespace"):
                build()
        else:
            assert build().secondary.fully_qualified_namespace

    def test_the_sdk_drops_the_port_over_tls_and_keeps_it_without(self) -> None:
        """Why a TLS namespace's port is ignored and a local one's is not."""
        from azure.servicebus import ServiceBusClient

        key = "SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"
        tls = ServiceBusClient.from_connection_string(f"Endpoint=sb://a.example:9350/;{key}")
        plain = ServiceBusClient.from_connection_string(f"Endpoint=sb://127.0.0.1:5673/;{key};UseDevelopmentEmulator=true")
        assert (tls.fully_qualified_namespace, plain.fully_qualified_namespace) == ("a.example", "127.0.0.1:5673")


class TestEmptyVariables:
    """A GEOBUS_ variable set to nothing is an error, not a quietly missing setting."""

    @pytest.mark.parametrize(
        "variable", ["GEOBUS_OUTBOX_PATH", "GEOBUS_MODE", "GEOBUS_DEDUP_STORE", "GEOBUS_SECONDARY_CREDENTIAL", "GEOBUS_DEADLINE_SEND"]
    )
    @pytest.mark.parametrize("value", ["", "  "])
    def test_empty_is_named(self, variable: str, value: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            ReplicationConfig.from_env({**ENVIRON, variable: value})
        assert caught.value.field == variable and "empty" in caught.value.problem

    def test_geobus_local_variables_are_not_ours(self) -> None:
        assert ReplicationConfig.from_env({**ENVIRON, "GEOBUS_LOCAL_KEY": ""}) == ReplicationConfig.from_env(ENVIRON)


# Every variable and the key it sets, as they were spelt by hand before they were derived
# from the fields: a rename of a field must not rename a variable users have set.
ENV_NAMES = {
    "GEOBUS_MODE": "mode",
    "GEOBUS_WRITE_QUORUM": "write_quorum",
    "GEOBUS_PRIMARY_CONNECTION_STRING": "primary.connection_string",
    "GEOBUS_PRIMARY_NAMESPACE": "primary.fully_qualified_namespace",
    "GEOBUS_PRIMARY_CREDENTIAL": "primary.credential",
    "GEOBUS_PRIMARY_ALLOW_REMOTE_EMULATOR": "primary.allow_remote_emulator",
    "GEOBUS_SECONDARY_CONNECTION_STRING": "secondary.connection_string",
    "GEOBUS_SECONDARY_NAMESPACE": "secondary.fully_qualified_namespace",
    "GEOBUS_SECONDARY_CREDENTIAL": "secondary.credential",
    "GEOBUS_SECONDARY_ALLOW_REMOTE_EMULATOR": "secondary.allow_remote_emulator",
    "GEOBUS_DEADLINE_ATTEMPT": "deadlines.attempt",
    "GEOBUS_DEADLINE_SEND": "deadlines.send",
    "GEOBUS_DEADLINE_RECEIVE_STALL": "deadlines.receive_stall",
    "GEOBUS_RETRY_TOTAL": "retry.total",
    "GEOBUS_RETRY_BACKOFF_FACTOR": "retry.backoff_factor",
    "GEOBUS_RETRY_BACKOFF_MAX": "retry.backoff_max",
    "GEOBUS_RETRY_MODE": "retry.mode",
    "GEOBUS_DEDUP_KEY": "dedup.key",
    "GEOBUS_DEDUP_PROPERTY_NAME": "dedup.property_name",
    "GEOBUS_DEDUP_MAX_ENTRIES": "dedup.max_entries",
    "GEOBUS_DEDUP_MAX_AGE": "dedup.max_age",
    "GEOBUS_DEDUP_STORE": "dedup.store",
    "GEOBUS_DEDUP_LEASE": "dedup.lease",
    "GEOBUS_DEDUP_STORE_UNAVAILABLE": "dedup.store_unavailable",
    "GEOBUS_BREAKER_FAILURE_THRESHOLD": "breaker.failure_threshold",
    "GEOBUS_BREAKER_COOLDOWN": "breaker.cooldown",
    "GEOBUS_FAILBACK_MODE": "failback.mode",
    "GEOBUS_FAILBACK_PROBE_INTERVAL": "failback.probe_interval",
    "GEOBUS_FAILBACK_HEALTHY_PROBES": "failback.healthy_probes",
    "GEOBUS_FAILBACK_COOLDOWN": "failback.cooldown",
    "GEOBUS_OUTBOX_PATH": "outbox.path",
    "GEOBUS_OUTBOX_MAX_MESSAGES": "outbox.max_messages",
    "GEOBUS_OUTBOX_MAX_BYTES": "outbox.max_bytes",
    "GEOBUS_OUTBOX_BATCH_SIZE": "outbox.batch_size",
    "GEOBUS_OUTBOX_BACKOFF_INITIAL": "outbox.backoff_initial",
    "GEOBUS_OUTBOX_BACKOFF_MAX": "outbox.backoff_max",
    "GEOBUS_OVERRIDE_PATH": "override.path",
    "GEOBUS_OVERRIDE_INTERVAL": "override.interval",
    "GEOBUS_SESSIONS_ORDER_GAP_WAIT": "sessions.order_gap_wait",
    "GEOBUS_SESSIONS_LOCK_ATTEMPTS": "sessions.lock_attempts",
}
BASE = {"primary": {"connection_string": WEU}, "secondary": {"connection_string": NEU}}
BASE_ENV = {"GEOBUS_PRIMARY_CONNECTION_STRING": WEU, "GEOBUS_SECONDARY_CONNECTION_STRING": NEU}
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> set[tuple[str | None, str]]:
    """(variable, key) for each setting in the README's configuration reference; the
    variable is None for a setting files can give and the environment cannot."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    pairs: set[tuple[str | None, str]] = set()
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| setting |"):
            continue
        _setting, env_cell, toml_cell, _default = (cell.strip() for cell in line.strip().strip("|").split("|"))
        variables = re.findall(r"`(GEOBUS_[A-Z_]+)`", env_cell)
        keys, table = [], ""
        for token in re.findall(r"`([^`]+)`", toml_cell):
            if token.startswith("["):  # "[deadlines] attempt": the next bare keys are in it too
                table, _, token = token[1:].partition("] ")
            keys.append(f"{table}.{token}" if table else token)
        assert not variables or len(variables) == len(keys), f"one variable per key: {line}"
        pairs |= set(zip(variables or [None] * len(keys), keys, strict=True))
    return pairs


def to_toml(mapping: dict[str, Any]) -> str:
    """A TOML file of a mapping of strings and tables of strings."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in mapping.items() if not isinstance(value, dict)]
    for table, values in mapping.items():
        if isinstance(values, dict):
            lines += [f"[{table}]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def outcome(load: Callable[[], ReplicationConfig]) -> object:
    """The config ``load`` builds, or the field and problem of the error it raises."""
    try:
        return load()
    except ConfigurationError as exc:
        return (exc.field, exc.problem)


class TestNames:
    """Variables, TOML keys, dict keys and the README's table: one list, spelt from the fields."""

    def test_every_variable_sets_the_key_it_always_did(self) -> None:
        assert {s.env: s.key for s in SETTINGS if s.env is not None} == ENV_NAMES

    def test_the_readme_table_names_every_setting(self) -> None:
        assert readme_table() == {(s.env, s.key) for s in SETTINGS}

    def test_a_policy_is_named_in_errors_as_its_table_in_files(self) -> None:
        tables = {f.name: f.metadata["table"] for f in dataclasses.fields(ReplicationConfig)}
        for name, table in tables.items():
            if table is not None and table is not NamespaceConfig:
                assert table._prefix == name

    def test_a_field_is_named_by_the_rule_unless_its_metadata_says_otherwise(self) -> None:
        @dataclasses.dataclass(frozen=True)
        class Probe(Deadlines):
            settle_time: float = 1.0

        probe = {f.name: (env_part(f), in_files(f)) for f in dataclasses.fields(Probe)}
        assert probe["settle_time"] == ("SETTLE_TIME", True)
        namespace = {f.name: (env_part(f), in_files(f)) for f in dataclasses.fields(NamespaceConfig)}
        assert namespace["fully_qualified_namespace"] == ("NAMESPACE", True)
        assert namespace["client_options"] == (None, False)  # in code only

    @pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
    def test_env_toml_and_dict_give_the_same_setting(self, setting: Setting, tmp_path: Path) -> None:
        """The same odd value, given each way, ends the same way, and not as if it were not given."""
        value = "bogus-value"
        mapping = with_changes(BASE, setting.key, value)
        by_dict = outcome(lambda: ReplicationConfig.from_mapping(mapping))
        assert by_dict != outcome(lambda: ReplicationConfig.from_mapping(BASE))
        path = tmp_path / "geobus.toml"
        path.write_text(to_toml(mapping))
        assert outcome(lambda: ReplicationConfig.from_file(path)) == by_dict
        if setting.env is not None:
            assert outcome(lambda: ReplicationConfig.from_env({**BASE_ENV, setting.env: value})) == by_dict
