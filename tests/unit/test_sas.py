"""Connection strings and SAS tokens: parsing, SDK-compatible signing, and keeping secrets out."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

import pytest
from azure.servicebus._pyamqp.utils import generate_sas_token as sdk_generate_sas_token

from geobus._redact import redact
from geobus._sas import (
    ConnectionString,
    Host,
    SasTokenError,
    generate_sas_token,
    host_problem,
    is_loopback,
    namespace_identity,
    parse_sas_token,
    split_host,
    validate_sas_token,
)

KEY = "c2VjcmV0LWtleS1ub2JvZHktc2hvdWxkLXNlZQ=="  # base64, with '=' padding
KEY_NAME = "RootManageSharedAccessKey"
AUDIENCE = "sb://127.0.0.1:5672/orders"
EXPIRY = 1_800_000_000
FULL = (
    f"Endpoint=sb://ns.servicebus.windows.net:5671/;SharedAccessKeyName={KEY_NAME};"
    f"SharedAccessKey={KEY};EntityPath=orders;UseDevelopmentEmulator=true"
)


def sdk_token(key_name: str = KEY_NAME, key: str = KEY, audience: str = AUDIENCE) -> str:
    return sdk_generate_sas_token(audience, key_name, key, EXPIRY)


def signature_of(token: str) -> str:
    return parse_qs(token.split(" ", 1)[1])["sig"][0]


def sas_error(call: Callable[..., object], *args: object, **kwargs: object) -> SasTokenError:
    """Call and return the SasTokenError it must raise."""
    with pytest.raises(SasTokenError) as info:
        call(*args, **kwargs)
    return info.value


class TestConnectionStringParse:
    """ConnectionString.parse reads every part Service Bus and the emulator use."""

    def test_every_part(self) -> None:
        parsed = ConnectionString.parse(FULL)
        assert parsed.endpoint == "sb://ns.servicebus.windows.net:5671/"
        assert parsed.fully_qualified_namespace == "ns.servicebus.windows.net:5671"
        assert (parsed.shared_access_key_name, parsed.shared_access_key) == (KEY_NAME, KEY)
        assert parsed.entity_path == "orders"
        assert parsed.use_development_emulator is True
        assert parsed.shared_access_signature is None

    def test_names_are_case_insensitive_and_spacing_and_empty_parts_are_ignored(self) -> None:
        parsed = ConnectionString.parse(
            f"  endpoint = sb://ns/ ;; sharedaccesskeyname={KEY_NAME}; SHAREDACCESSKEY={KEY};  "
        )
        assert parsed.fully_qualified_namespace == "ns"
        assert parsed.shared_access_key == KEY
        assert (parsed.entity_path, parsed.use_development_emulator) == (None, False)

    def test_a_shared_access_signature_stands_in_for_the_key(self) -> None:
        token = sdk_token()
        parsed = ConnectionString.parse(f"Endpoint=sb://ns/;SharedAccessSignature={token}")
        assert parsed.shared_access_signature == token
        assert parsed.shared_access_key is None

    def test_to_string_round_trips(self) -> None:
        parsed = ConnectionString.parse(FULL)
        assert ConnectionString.parse(parsed.to_string()) == parsed

    @pytest.mark.parametrize(
        ("text", "names"),
        [
            ("", "empty"),
            ("   ", "empty"),
            (f"SharedAccessKeyName=n;SharedAccessKey={KEY}", "Endpoint"),
            (f"Endpoint=;SharedAccessKeyName=n;SharedAccessKey={KEY}", "Endpoint"),
            (f"Endpoint=ftp://ns/;SharedAccessKeyName=n;SharedAccessKey={KEY}", "sb://"),
            (f"Endpoint=sb:///path;SharedAccessKeyName=n;SharedAccessKey={KEY}", "sb://"),
            (f"Endpoint=sb://ns:port/;SharedAccessKeyName=n;SharedAccessKey={KEY}", "sb://"),
            (f"Endpoint=sb://ns:99999/;SharedAccessKeyName=n;SharedAccessKey={KEY}", "sb://"),
            (f"Endpoint=sb://ns/;SharedAccessKey={KEY}", "SharedAccessKeyName"),
            ("Endpoint=sb://ns/;SharedAccessKeyName=n", "SharedAccessKey"),
            ("Endpoint=sb://ns/;SharedAccessKeyName=n;SharedAccessKey=", "SharedAccessKey"),
            ("Endpoint=sb://ns/;SharedAccessKeyName=n;SharedAccessKey", "'='"),
        ],
    )
    def test_malformed_strings_say_what_is_wrong(self, text: str, names: str) -> None:
        assert names in str(sas_error(ConnectionString.parse, text))

    @pytest.mark.parametrize(
        "text",
        [
            "Endpoint=sb://127.0.0.1:5672/;Endpoint=sb://evil.example/;SharedAccessKeyName=n;SharedAccessKey=x",
            "Endpoint=sb://127.0.0.1:5672/;HostName=sb://evil.example/;SharedAccessKeyName=n;SharedAccessKey=x",
            "Endpoint=sb://ns/;SharedAccessKeyName=n;SharedAccessKey=x; usedevelopmentemulator =false;UseDevelopmentEmulator=true",
        ],
    )
    def test_a_part_given_twice_is_refused(self, text: str) -> None:
        """The SDK could keep the other one of the two: refused, not guessed."""
        assert "twice" in str(sas_error(ConnectionString.parse, text))

    def test_an_ipv6_host_keeps_its_brackets(self) -> None:
        text = "Endpoint=sb://[::1]:5672/;SharedAccessKeyName=n;SharedAccessKey=x"
        assert ConnectionString.parse(text).fully_qualified_namespace == "[::1]:5672"

    def test_a_non_string_is_refused(self) -> None:
        sas_error(ConnectionString.parse, None)

    def test_the_error_is_a_value_error(self) -> None:
        assert issubclass(SasTokenError, ValueError)


class TestSecretsStayHidden:
    """Keys and signatures appear in no repr, str or error message."""

    def test_connection_string_repr_and_str(self) -> None:
        parsed = ConnectionString.parse(FULL)
        token = sdk_token()
        with_sig = ConnectionString.parse(f"Endpoint=sb://ns/;SharedAccessSignature={token}")
        for text in (repr(parsed), str(parsed), repr(with_sig), str(with_sig)):
            assert KEY not in text
            assert signature_of(token) not in text
        assert "SharedAccessKey=***" in str(parsed)
        assert "ns.servicebus.windows.net" in repr(parsed) and KEY_NAME in str(parsed)

    def test_sas_token_repr_and_str(self) -> None:
        token = sdk_token()
        parsed = parse_sas_token(token)
        assert parsed.signature == signature_of(token)
        for text in (repr(parsed), str(parsed)):
            assert signature_of(token) not in text
            assert AUDIENCE in text

    def test_redact_masks_secret_parts_whatever_their_case(self) -> None:
        text = f"endpoint=sb://ns/;sharedaccesskey={KEY};SharedAccessSignature=sig;EntityPath=q"
        assert redact(text) == (
            "endpoint=sb://ns/;sharedaccesskey=***;SharedAccessSignature=***;EntityPath=q"
        )

    @pytest.mark.parametrize(
        "text",
        [
            f"Endpoint=sb://ns/;SharedAccessKeyName=n;{KEY}",  # key pasted bare
            f"Endpoint=sb://ns/;SharedAccessKeyName=n;{KEY.rstrip('=')}",  # ... unpadded
            f"Endpoint=sb://ns/;SharedAccessKeyName=n;SharedAccessKey:{KEY}",  # ':' for '='
            f"Endpoint=sb://ns/,SharedAccessKeyName=n,SharedAccessKey={KEY}",  # ',' for ';'
            f"Endpoint=sb://ns/;SharedAccessKey={KEY}",
            f"SharedAccessKeyName=n;SharedAccessKey={KEY}",
            f"Endpoint=ftp://ns/;SharedAccessKeyName=n;SharedAccessKey={KEY}",
            f"Endpoint=sb://ns:{KEY.rstrip('=')}/;SharedAccessKeyName=n;SharedAccessKey=x",  # key typed as a port
            f"Endpoint=sb://user:{KEY}@ns/;SharedAccessKeyName=n;SharedAccessKey=x",  # ... as a password
            f"Endpoint=sb://[{KEY.rstrip('=')}/;SharedAccessKeyName=n;SharedAccessKey=x",  # a broken [IPv6]
            f"Endpoint={KEY.rstrip('=')};SharedAccessKeyName=n;SharedAccessKey=x",  # ... as the endpoint
        ],
    )
    def test_parse_errors_never_echo_the_key(self, text: str) -> None:
        error = sas_error(ConnectionString.parse, text)
        assert KEY not in str(error) and KEY not in repr(error)
        assert KEY[:12] not in str(error)

    def test_validation_errors_never_echo_the_key_or_signature(self) -> None:
        token = sdk_token()
        errors = [
            sas_error(validate_sas_token, token, key_name=KEY_NAME, key=KEY + "x", now=0),
            sas_error(validate_sas_token, token, key_name="other", key=KEY, now=0),
            sas_error(validate_sas_token, token, key_name=KEY_NAME, key=KEY, now=EXPIRY + 1),
            sas_error(validate_sas_token, token.replace("se=", "se=x"), key_name=KEY_NAME, key=KEY),
        ]
        for error in errors:
            assert KEY not in str(error)
            assert signature_of(token) not in str(error)


class TestGenerateAndValidate:
    """Tokens the SDK makes validate; anything else is a SasTokenError."""

    @pytest.mark.parametrize("key_name", [KEY_NAME, "send-only.policy_1", "my key", "a+b/c"])
    def test_an_sdk_token_validates(self, key_name: str) -> None:
        token = validate_sas_token(sdk_token(key_name), key_name=key_name, key=KEY, now=0)
        assert (token.audience, token.expiry) == (AUDIENCE, EXPIRY)

    @pytest.mark.parametrize("key_name", [KEY_NAME, "my key", "a+b/c"])
    @pytest.mark.parametrize(
        "audience", [AUDIENCE, "sb://ns.servicebus.windows.net/t/subscriptions/s", "amqps://h/q?x=1"]
    )
    def test_our_tokens_are_the_sdks_tokens(self, key_name: str, audience: str) -> None:
        ours = generate_sas_token(audience, key_name, KEY, EXPIRY)
        assert ours == sdk_token(key_name, audience=audience)
        assert validate_sas_token(ours, key_name=key_name, key=KEY, now=0).audience == audience

    def test_wrong_key(self) -> None:
        error = sas_error(validate_sas_token, sdk_token(), key_name=KEY_NAME, key="other", now=0)
        assert "signature" in str(error)

    def test_wrong_key_name(self) -> None:
        error = sas_error(validate_sas_token, sdk_token(), key_name="Other", key=KEY, now=0)
        assert "key" in str(error)

    def test_expiry_is_checked_against_now(self) -> None:
        token = sdk_token()
        assert validate_sas_token(token, key_name=KEY_NAME, key=KEY, now=EXPIRY).expiry == EXPIRY
        error = sas_error(validate_sas_token, token, key_name=KEY_NAME, key=KEY, now=EXPIRY + 1)
        assert "expired" in str(error)

    def test_without_now_the_wall_clock_decides(self) -> None:
        future = sdk_generate_sas_token(AUDIENCE, KEY_NAME, KEY, 4_000_000_000)
        past = sdk_generate_sas_token(AUDIENCE, KEY_NAME, KEY, 1_000_000)
        assert validate_sas_token(future, key_name=KEY_NAME, key=KEY).expiry == 4_000_000_000
        sas_error(validate_sas_token, past, key_name=KEY_NAME, key=KEY)

    @pytest.mark.parametrize(
        ("original", "forged"),
        [(f"se={EXPIRY}", f"se={EXPIRY + 3600}"), ("%2Forders", "%2Fpayments")],
        ids=["expiry", "audience"],
    )
    def test_a_tampered_token_fails_the_signature(self, original: str, forged: str) -> None:
        token = sdk_token()
        assert original in token
        tampered = token.replace(original, forged)
        error = sas_error(validate_sas_token, tampered, key_name=KEY_NAME, key=KEY, now=0)
        assert "signature" in str(error)

    @pytest.mark.parametrize(
        "token",
        [
            "",
            None,
            b"SharedAccessSignature sr=a&sig=b&se=1&skn=n",
            "Bearer eyJhbGciOi",
            "SharedAccessSignature ",
            f"SharedAccessSignature sig=abc&se={EXPIRY}&skn={KEY_NAME}",
            f"SharedAccessSignature sr=a&se={EXPIRY}&skn={KEY_NAME}",
            f"SharedAccessSignature sr=a&sig=abc&skn={KEY_NAME}",
            f"SharedAccessSignature sr=a&sig=abc&se=soon&skn={KEY_NAME}",
            f"SharedAccessSignature sr=a&sig=abc&se={'9' * 5000}&skn={KEY_NAME}",
            f"SharedAccessSignature sr=a&sig=%C3%A9&se={EXPIRY}&skn={KEY_NAME}",
            f"SharedAccessSignature sr=a&sig=abc&se={EXPIRY}",
        ],
        ids=[
            "empty",
            "none",
            "bytes",
            "not-sas",
            "no-fields",
            "no-sr",
            "no-sig",
            "no-se",
            "se-not-a-number",
            "se-too-long",
            "sig-not-ascii",
            "no-skn",
        ],
    )
    def test_malformed_tokens(self, token: object) -> None:
        sas_error(validate_sas_token, token, key_name=KEY_NAME, key=KEY, now=0)

    def test_parse_reads_every_field(self) -> None:
        parsed = parse_sas_token(f"SharedAccessSignature sr=a%2Fb&sig=c%2Bd&se=42&skn={KEY_NAME}")
        assert (parsed.audience, parsed.signature, parsed.expiry) == ("a/b", "c+d", 42)
        assert parsed.key_name == KEY_NAME
        assert parse_sas_token("SharedAccessSignature sr=a&sig=b&se=1").key_name == ""


class TestWhereANamespaceIs:
    """``namespace_identity`` (one namespace, however written) and ``is_loopback``."""

    @pytest.mark.parametrize(
        ("address", "tls", "identity"),
        [
            ("a.sb.net", True, ("a.sb.net", None)),
            ("sb://a.sb.net:5671/", True, ("a.sb.net", None)),
            ("amqps://A.SB.NET./", True, ("a.sb.net", None)),
            ("https://a.sb.net:443/path", True, ("a.sb.net", None)),
            ("a.sb.net:9350", True, ("a.sb.net", None)),  # the SDK drops the port over TLS
            ("127.0.0.1:5673", False, ("127.0.0.1", 5673)),
            ("sb://127.0.0.1", False, ("127.0.0.1", 5672)),  # no TLS: the SDK's port 5672
            ("[::1]:5672", False, ("::1", 5672)),
        ],
    )
    def test_identity(self, address: str, tls: bool, identity: tuple[str, int | None]) -> None:
        assert namespace_identity(address, tls=tls) == identity

    @pytest.mark.parametrize(
        ("host", "loopback"),
        [
            ("127.0.0.1", True),
            ("127.255.0.9", True),
            ("localhost", True),
            ("LocalHost.", True),
            ("::1", True),
            ("[::1]", True),
            ("::ffff:127.0.0.1", True),
            ("10.0.0.1", False),
            ("0.0.0.0", False),
            ("::", False),
            ("localhost.example.com", False),
            ("127.0.0.1.nip.io", False),
            ("", False),
        ],
    )
    def test_loopback(self, host: str, loopback: bool) -> None:
        assert is_loopback(host) is loopback


class TestOneHostParser:
    """``split_host``: the one parser of where an address points, for connection strings,
    namespace identities and configuration errors; its errors never quote the address."""

    @pytest.mark.parametrize(
        ("address", "host"),
        [
            ("a.sb.net", Host("a.sb.net", None, False)),
            ("A.SB.NET:5671", Host("a.sb.net", 5671, False)),
            ("sb://user:pw@a.sb.net:5671/queue?x=1", Host("a.sb.net", 5671, True)),
            ("[::1]:5672", Host("::1", 5672, False)),
        ],
    )
    def test_host_port_and_userinfo(self, address: str, host: Host) -> None:
        assert split_host(address) == host

    def test_an_ipv6_address_keeps_its_brackets(self) -> None:
        assert split_host("amqp://[::1]:5672/").address == "[::1]:5672"
        assert split_host("sb://a.sb.net/").address == "a.sb.net"

    @pytest.mark.parametrize(
        ("address", "problem"),
        [
            ("sb://", "it has no host"),
            ("sb://user@/", "it has no host"),
            (f"sb://[{KEY.rstrip('=')}/", "its [IPv6 address] is not closed"),
            (f"sb://a.sb.net:{KEY.rstrip('=')}/", "its port is not a number from 0 to 65535"),
            ("sb://a.sb.net:70000/", "its port is not a number from 0 to 65535"),
            ("a.sb.net", "it has no scheme (sb://)"),
            ("ftp://a.sb.net", "its scheme is 'ftp', not sb://"),
            (f"{KEY.rstrip('=')}://a.sb.net", "its scheme is not sb://"),
        ],
    )
    def test_what_is_wrong_is_said_never_the_address(self, address: str, problem: str) -> None:
        with pytest.raises(ValueError) as caught:
            split_host(address, schemes=("sb", "amqps", "amqp", "https"))
        assert str(caught.value) == problem
        assert KEY[:12] not in str(caught.value)

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("a.servicebus.windows.net", None),
            ("[::1]:5672", None),
            ("sb://a.servicebus.windows.net/", "give its host name only, 'a.servicebus.windows.net'"),
            (FULL, "put it in primary.connection_string"),
            (f"sb://user:{KEY}@a.servicebus.windows.net/", "user or password"),
            (KEY, "looks like a key"),
            (5, "must be a host name like"),
        ],
    )
    def test_why_a_value_is_not_a_namespace(self, value: object, problem: str | None) -> None:
        found = host_problem(value, connection_string="primary.connection_string")
        if problem is None:
            assert found is None
        else:
            assert found is not None and problem in found
            assert KEY[:12] not in found
