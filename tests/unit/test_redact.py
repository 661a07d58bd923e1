"""The one redactor: every shape of secret geobus meets, masked whole, idempotently."""

from __future__ import annotations

import base64
import secrets
from urllib.parse import quote, quote_plus

import pytest

from geobus._redact import LOOKS_LIKE, describe, looks_like, redact

KEY = base64.b64encode(secrets.token_bytes(32)).decode()  # an Azure-shaped key: 43 chars and '='
PASSWORD = base64.b64encode(secrets.token_bytes(32)).decode()
SIG = quote_plus(base64.b64encode(secrets.token_bytes(32)).decode())  # URL-encoded, as in a token

# (input, what must be gone, what redact returns)
CASES = [
    pytest.param(
        f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={KEY};EntityPath=q",
        KEY,
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=***;EntityPath=q",
        id="connection-string",
    ),
    pytest.param(
        f"endpoint=sb://ns/;SHAREDACCESSKEY = {KEY} ;entitypath=q",
        KEY,
        "endpoint=sb://ns/;SHAREDACCESSKEY = *** ;entitypath=q",
        id="mixed-case-and-spaces",
    ),
    pytest.param(
        f"Endpoint=sb://ns/;SharedAccessSignature=SharedAccessSignature sr=sb%3A%2F%2Fns%2F&sig={SIG}&se=1&skn=Root",
        SIG,
        "Endpoint=sb://ns/;SharedAccessSignature=*** sr=sb%3A%2F%2Fns%2F&sig=***&se=1&skn=Root",
        id="signature-in-connection-string",
    ),
    pytest.param(
        f"SharedAccessSignature sr=sb%3A%2F%2Fns%2Fq&sig={SIG}&se=1800000000&skn=Root",
        SIG,
        "SharedAccessSignature sr=sb%3A%2F%2Fns%2Fq&sig=***&se=1800000000&skn=Root",
        id="sas-token",
    ),
    pytest.param(
        quote(f"sr=sb://ns/q&sig={SIG}&se=1", safe=""),
        SIG.replace("%", "%25"),
        "sr%3Dsb%3A%2F%2Fns%2Fq%26sig%3D***",
        id="sas-token-url-encoded-again",
    ),
    pytest.param(
        f"contoso.redis.cache.windows.net:6380,password={PASSWORD},ssl=True,abortConnect=False",
        PASSWORD,
        "contoso.redis.cache.windows.net:6380,password=***,ssl=True,abortConnect=False",
        id="azure-portal-redis",
    ),
    pytest.param(
        f"rediss://default:{PASSWORD}@contoso.redis.cache.windows.net:6380/0",
        PASSWORD,
        "rediss://***@contoso.redis.cache.windows.net:6380/0",
        id="redis-user-password",
    ),
    pytest.param(f"redis://:{PASSWORD}@cache:6379/2?prefix=x", PASSWORD, "redis://***@cache:6379/2?prefix=x", id="redis-password"),
    pytest.param("redis://user:p@ss/w?rd@cache:1/0", "p@ss/w?rd", "redis://***@cache:1/0", id="password-with-@-/-?"),
    pytest.param("redis:hunter22@cache", "hunter22", "redis:***@cache", id="scheme-without-slashes"),
    pytest.param("amqps://user:hunter22@host:5671/", "hunter22", "amqps://***@host:5671/", id="any-scheme"),
    pytest.param("https://user:hunter22@host/path?a=1", "hunter22", "https://***@host/path?a=1", id="https"),
    pytest.param(
        f"rediss://cache:6380/0?ssl=true&password={PASSWORD}&db=1",
        PASSWORD,
        "rediss://cache:6380/0?ssl=true&password=***&db=1",
        id="password-in-query",
    ),
    pytest.param(f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={KEY};", KEY, "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=***;", id="storage-account-key"),
    pytest.param(f"REDIS_PASSWORD={PASSWORD} next", PASSWORD, "REDIS_PASSWORD=*** next", id="env-style"),
    pytest.param(f"Pwd='{PASSWORD}' and more", PASSWORD, "Pwd='***' and more", id="quoted-value"),
    pytest.param(f'{{"password": "{PASSWORD}", "ssl": true}}', PASSWORD, '{"password": "***", "ssl": true}', id="json"),
    pytest.param(f"redis:\n  password: {PASSWORD}\n", PASSWORD, "redis:\n  password: ***\n", id="yaml"),
    pytest.param(f"Endpoint=sb://ns/;SharedAccessKey:{KEY}", KEY, "Endpoint=sb://ns/;SharedAccessKey:***", id="colon-typo"),
    pytest.param(
        f"geobus receive: the seen-set at redis://u:{PASSWORD}@h:1/0 failed: ConnectionError: refused",
        PASSWORD,
        "geobus receive: the seen-set at redis://***@h:1/0 failed: ConnectionError: refused",
        id="inside-a-line",
    ),
]


class TestRedact:
    """Every case: the secret gone (no prefix of it either), the rest kept, idempotent."""

    @pytest.mark.parametrize(("text", "secret", "expected"), CASES)
    def test_masks(self, text: str, secret: str, expected: str) -> None:
        redacted = redact(text)
        assert redacted == expected
        assert secret not in redacted and secret[:5] not in redacted.replace("***", "")

    @pytest.mark.parametrize(("text", "secret", "expected"), CASES)
    def test_idempotent(self, text: str, secret: str, expected: str) -> None:
        assert redact(redact(text)) == redact(text)

    @pytest.mark.parametrize(
        "text",
        [
            "Endpoint=sb://ns/;SharedAccessKeyName=RootManageSharedAccessKey;EntityPath=q",  # no secret in it
            "sent message 42 to queue 'orders': primary ok",
            "sqlite:/var/lib/seen.db",
            "bob@example.com wrote: 12:30",
            "namespace 'primary': ServiceBusConnectionError: [Errno 111] Connection refused",
        ],
    )
    def test_leaves_text_without_secrets_alone(self, text: str) -> None:
        assert redact(text) == text

    def test_known_secrets_are_masked_wherever_they_stand(self) -> None:
        text = f"bare {KEY}, encoded {quote_plus(KEY)}, and {quote(KEY, safe='')}"
        assert redact(text, [KEY, None]) == "bare ***, encoded ***, and ***"

    def test_a_very_short_known_secret_does_not_garble_the_text(self) -> None:
        assert redact("sent 3 messages", ["s"]) == "sent 3 messages"

    def test_any_object(self) -> None:
        assert redact(ValueError(f"password={PASSWORD}")) == "password=***"

    def test_the_library_has_one_redactor(self) -> None:
        """The stores, the drill and the connection strings all use this one."""
        import geobus._sas as sas
        import geobus._storage.seenset.factory as store_urls
        import geobus._tools.drill.harness as harness

        assert store_urls.redact is harness.redact is sas.redact is redact


class TestDescribe:
    """What a value that did not parse looks like: never the value."""

    @pytest.mark.parametrize(
        ("value", "kind"),
        [
            (f"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey={KEY}", "connection_string"),
            (f"sharedaccesskey={KEY}", "connection_string"),
            (f"contoso.redis.cache.windows.net:6380,password={PASSWORD},ssl=True,abortConnect=False", "redis_portal"),
            (f"password={PASSWORD}", "secret_settings"),
            (f"user:{PASSWORD}@host", "userinfo"),
            (KEY, "key"),
            (KEY.rstrip("="), "key"),
            ("c2VjcmV0LWtleS13ZXUtMDEyMzQ1Njc4OQ", "key"),  # base64 without '+', '/' or '='
        ],
    )
    def test_what_it_looks_like(self, value: str, kind: str) -> None:
        assert looks_like(value) == kind
        assert describe(value) == LOOKS_LIKE[kind]
        assert value[:5] not in describe(value)

    @pytest.mark.parametrize(
        ("value", "described"),
        [
            ("mirrored", "a value starting 'mirr' (8 characters)"),
            ("soon", "a value starting 'so' (4 characters)"),
            ("x", "a 1-character value"),
            ("  ", "an empty value"),
            ("-1", "'-1'"),  # a number in the wrong range is shown
            (2.5, "2.5"),
            (None, "None"),
            ([1], "a list"),
            (f"rediz://:{PASSWORD}@cache:1/0", "a URL (rediz://...) with a user or password"),
            ("sb://ns.servicebus.windows.net/", "a URL (sb://...)"),
            ("contoso.servicebus.windows.net", "a value starting 'cont' (30 characters)"),
        ],
    )
    def test_never_more_than_a_short_prefix(self, value: object, described: str) -> None:
        assert describe(value) == described

    @pytest.mark.parametrize(
        ("value", "described"),
        [
            (TimeoutError("no answer\nfrom the second line on"), "TimeoutError: no answer"),
            (ValueError(), "ValueError"),
            (ValueError(f"refused SharedAccessKey={KEY}"), "ValueError: refused SharedAccessKey=***"),
            (ValueError(f"refused redis://:{PASSWORD}@cache:6380"), "ValueError: refused redis://***@cache:6380"),
            (ValueError("x" * 300), "ValueError: " + "x" * 200),
            (b"\xff\xfe", "bytes of 2 bytes"),
            (bytearray(3), "bytearray of 3 bytes"),
        ],
    )
    def test_an_error_in_one_redacted_line_and_bytes_by_their_size(self, value: object, described: str) -> None:
        assert describe(value) == described


class TestLogLines:
    """Every record of geobus's loggers is redacted before a handler formats it."""

    @pytest.mark.parametrize("logger_name", ["geobus", "geobus.local", "geobus.testing"])
    def test_a_key_in_a_log_line_or_its_traceback_is_masked(
        self, logger_name: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        import logging

        import geobus  # noqa: F401 - installs the filters

        secret = "c2VjcmV0LWtleS1mb3ItdGhlLWxvZy10ZXN0"
        logger = logging.getLogger(logger_name)
        with caplog.at_level(logging.INFO, logger=logger_name):
            logger.warning("could not connect with %s", f"Endpoint=sb://h/;SharedAccessKey={secret}")
            try:
                raise ValueError(f"bad sig={secret}")
            except ValueError:
                logger.exception("failed")
        assert len(caplog.records) == 2
        assert secret not in caplog.text
        assert "SharedAccessKey=***" in caplog.text and "sig=***" in caplog.text

    def test_quoted_values_are_masked_whole(self) -> None:
        assert redact('{"password": "correct horse battery"}') == '{"password": "***"}'
        assert redact('SharedAccessKey="abc def";x=1') == 'SharedAccessKey="***";x=1'
