"""No key or SAS signature in the output of any `geobus` command, run as a user runs it.

Each command runs as its own process (`python -m geobus ...`) against local
namespaces that use a freshly generated key (not the published development key),
so a leak anywhere — a repr, a log line, an exception, a traceback — shows up as
that key in stdout or stderr. `geobus local` is the one command that prints a
connection string by design (it hands its development connection strings to the
caller) and is not covered here.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from geobus.local import DEV_KEY, LocalNamespace

pytestmark = pytest.mark.timeout(180)

KEY = base64.b64encode(secrets.token_bytes(32)).decode()
WRONG_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
PASSWORD = base64.b64encode(secrets.token_bytes(32)).decode()  # an Azure Cache for Redis key's shape


def _connection_string(namespace: LocalNamespace, key: str = KEY) -> str:
    return f"Endpoint={namespace.endpoint};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={key};UseDevelopmentEmulator=true"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[LocalNamespace, LocalNamespace]]:
    with LocalNamespace(key=KEY) as primary, LocalNamespace(key=KEY) as secondary:
        yield primary, secondary


def _geobus(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    """Runs ``python -m geobus ARGS``; returns its status and everything it printed."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GEOBUS_")}
    completed = subprocess.run(
        [sys.executable, "-m", "geobus", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return completed.returncode, completed.stdout + completed.stderr


def _assert_clean(printed: str) -> None:
    for secret in (KEY, WRONG_KEY, DEV_KEY, KEY[:12], PASSWORD, PASSWORD[:8], "SharedAccessKey=", "SharedAccessSignature", "sig="):
        assert secret not in printed, f"{secret[:16]!r} was printed"


def _env(pair: tuple[LocalNamespace, LocalNamespace], **extra: str) -> dict[str, str]:
    primary, secondary = pair
    return {
        "GEOBUS_PRIMARY_CONNECTION_STRING": _connection_string(primary),
        "GEOBUS_SECONDARY_CONNECTION_STRING": _connection_string(secondary),
        "GEOBUS_DEADLINE_ATTEMPT": "3",
        **extra,
    }


def test_send_and_receive(pair: tuple[LocalNamespace, LocalNamespace]) -> None:
    code, printed = _geobus("send", "secrets", "--body", "hello", "--count", "3", env=_env(pair))
    assert code == 0, printed
    _assert_clean(printed)
    code, printed = _geobus("receive", "secrets", "--max", "3", "--wait", "5", "--json", env=_env(pair))
    assert code == 0 and '"message_id"' in printed, printed
    _assert_clean(printed)


def test_a_wrong_key_is_reported_without_either_key(pair: tuple[LocalNamespace, LocalNamespace]) -> None:
    primary, secondary = pair
    env = _env(
        pair,
        GEOBUS_PRIMARY_CONNECTION_STRING=_connection_string(primary, WRONG_KEY),
        GEOBUS_SECONDARY_CONNECTION_STRING=_connection_string(secondary, WRONG_KEY),
    )
    code, printed = _geobus("send", "secrets", "--body", "x", env=env)
    assert code == 1 and "Authentication" in printed, printed
    _assert_clean(printed)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GEOBUS_PRIMARY_CONNECTION_STRING", f"SharedAccessKeyName=k;SharedAccessKey={KEY}"),  # no endpoint
        ("GEOBUS_PRIMARY_CONNECTION_STRING", f"Endpoint=sb://x;SharedAccessKeyName=k;SharedAccessKey={KEY};Bogus"),
        ("GEOBUS_PRIMRAY_CONNECTION_STRING", f"Endpoint=sb://x;SharedAccessKeyName=k;SharedAccessKey={KEY}"),
        ("GEOBUS_DEADLINE_ATTEMPT", "-1"),
    ],
)
def test_bad_configuration_is_reported_without_the_key(
    pair: tuple[LocalNamespace, LocalNamespace], variable: str, value: str
) -> None:
    for command in (["send", "secrets", "--body", "x"], ["receive", "secrets", "--wait", "1"]):
        code, printed = _geobus(*command, env=_env(pair, **{variable: value}))
        assert code == 2, printed
        _assert_clean(printed)


def _without(env: dict[str, str], *variables: str) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in variables}


@pytest.mark.parametrize(
    ("case", "hint"),
    [
        ({"GEOBUS_DEDUP_STORE": f"contoso.redis.cache.windows.net:6380,password={PASSWORD},ssl=True,abortConnect=False"},
         "then :PASSWORD@, then contoso.redis.cache.windows.net:6380/0"),
        ({"GEOBUS_DEDUP_STORE": f"rediz://default:{PASSWORD}@127.0.0.1:1/0"}, "dedup.store"),
        ({"GEOBUS_DEADLINE_ATTEMPT": KEY}, "deadlines.attempt"),
        ({"GEOBUS_RETRY_MODE": KEY}, "retry.mode"),
        ({"GEOBUS_PRIMARY_NAMESPACE": f"Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey={KEY}"},
         "put it in primary.connection_string"),
        ({"GEOBUS_PRIMARY_NAMESPACE": "orders.servicebus.windows.net", "GEOBUS_PRIMARY_CREDENTIAL": KEY},
         "primary.credential"),
    ],
    ids=["portal-redis-store", "store-with-password", "key-as-deadline", "key-as-retry-mode",
         "connection-string-as-namespace", "key-as-credential"],
)  # fmt: skip
def test_a_secret_in_the_wrong_setting_is_never_printed(
    pair: tuple[LocalNamespace, LocalNamespace], case: dict[str, str], hint: str
) -> None:
    env = _env(pair, **case)
    if "GEOBUS_PRIMARY_NAMESPACE" in case:
        env = _without(env, "GEOBUS_PRIMARY_CONNECTION_STRING")
    for command in (["send", "secrets", "--body", "x"], ["receive", "secrets", "--wait", "1"]):
        code, printed = _geobus(*command, env=env)
        assert code == 2 and hint in printed, printed
        _assert_clean(printed)


def test_a_store_password_in_the_query_is_never_printed(pair: tuple[LocalNamespace, LocalNamespace]) -> None:
    """Accepted as a redis:// URL, refused when the store opens: a configuration error (not
    a traceback) naming the URL, redacted."""
    env = _env(pair, GEOBUS_DEDUP_STORE=f"redis://127.0.0.1:1/0?password={PASSWORD}")
    code, printed = _geobus("receive", "secrets", "--wait", "1", env=env)
    assert code == 2 and "dedup.store" in printed and "password=***" in printed, printed
    assert "Traceback" not in printed
    _assert_clean(printed)


def test_a_remote_host_without_tls_is_refused(pair: tuple[LocalNamespace, LocalNamespace]) -> None:
    """UseDevelopmentEmulator=true to another machine: refused before anything is sent."""
    remote = f"Endpoint=sb://192.0.2.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY};UseDevelopmentEmulator=true"
    code, printed = _geobus("send", "secrets", "--body", "x", env=_env(pair, GEOBUS_SECONDARY_CONNECTION_STRING=remote))
    assert code == 2 and "plaintext" in printed and "secondary.allow_remote_emulator" in printed, printed
    _assert_clean(printed)


def test_a_bad_toml_file_is_reported_without_the_key(tmp_path: Path) -> None:
    config = tmp_path / "geobus.toml"
    config.write_text(f'[primary]\nconnection_string = "Endpoint=sb://x;SharedAccessKey={KEY}"\n[secondary\n')
    code, printed = _geobus("send", "secrets", "--body", "x", "--config", str(config))
    assert code == 2, printed
    _assert_clean(printed)


def test_outbox_report(pair: tuple[LocalNamespace, LocalNamespace], tmp_path: Path) -> None:
    primary, secondary = pair
    outbox = tmp_path / "outbox.db"
    primary.refuse()
    secondary.refuse()
    try:
        env = _env(pair, GEOBUS_OUTBOX_PATH=str(outbox), GEOBUS_DEADLINE_ATTEMPT="1", GEOBUS_RETRY_TOTAL="0")
        code, printed = _geobus("send", "secrets", "--body", "kept", env=env)
        assert code == 0 and "outbox" in printed, printed
        _assert_clean(printed)
    finally:
        primary.heal()
        secondary.heal()
    code, printed = _geobus("outbox", str(outbox))
    assert code == 0 and "waiting" in printed, printed
    _assert_clean(printed)


def test_demo() -> None:
    code, printed = _geobus("demo", "--messages", "20", "--rate", "200")
    assert code == 0 and "OK: lost 0" in printed, printed
    _assert_clean(printed)


def test_drill_with_its_own_key() -> None:
    # The drill's namespaces take GEOBUS_LOCAL_KEY, like `geobus local`.
    code, printed = _geobus(
        "drill", "--scenario", "refused", "--api", "sync", "--mode", "passive", "--messages", "40",
        env={"GEOBUS_LOCAL_KEY": KEY},
    )  # fmt: skip
    assert code == 0 and "1 of 1 run(s) kept every promise" in printed, printed
    _assert_clean(printed)
