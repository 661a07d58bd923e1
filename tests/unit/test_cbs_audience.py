"""Which hosts a local namespace answers to in a SAS token's audience, without a server."""

from __future__ import annotations

import socket

import pytest

from geobus._sas import SasTokenError
from geobus.local._cbs import check_audience_host, own_hosts


class TestOwnHosts:
    """The names a namespace is known by, from the address it listens on."""

    def test_a_loopback_address_is_also_localhost(self) -> None:
        assert own_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
        assert own_hosts("127.0.0.2") == {"127.0.0.2", "127.0.0.1", "localhost", "::1"}
        assert own_hosts("localhost") == {"localhost", "127.0.0.1", "::1"}

    def test_another_address_is_only_itself_and_the_names_given(self) -> None:
        assert own_hosts("192.0.2.7", ["Bus.Example."]) == {"192.0.2.7", "bus.example"}

    def test_a_wildcard_address_is_loopback_and_this_machine(self) -> None:
        assert own_hosts("0.0.0.0") == {"localhost", "127.0.0.1", "::1", socket.gethostname().lower()}


class TestCheckAudienceHost:
    """``sr`` must be an sb:// (or amqp[s]://, http[s]://) URL naming one of the hosts."""

    HOSTS = frozenset({"127.0.0.1", "localhost"})

    @pytest.mark.parametrize(
        "audience",
        ["sb://127.0.0.1:5673/q", "sb://LOCALHOST./q", "amqps://localhost:5671", "https://127.0.0.1/q/"],
    )
    def test_accepted(self, audience: str) -> None:
        check_audience_host(audience, self.HOSTS)

    @pytest.mark.parametrize(
        "audience, reason",
        [
            ("sb://evil.example/q", "names host 'evil.example'"),
            ("sb://[::1/q", "not a URL"),
            ("sb://127.0.0.1:x/q", "not a URL"),
            ("q", "not an sb://"),
            ("ftp://127.0.0.1/q", "not an sb://"),
            ("sb://u:p@127.0.0.1/q", "not an sb://"),
            ("sb://127.0.0.1/q#f", "not an sb://"),
            ("", "not an sb://"),
        ],
    )
    def test_refused_with_the_reason(self, audience: str, reason: str) -> None:
        with pytest.raises(SasTokenError, match=reason.replace("[", r"\[")) as raised:
            check_audience_host(audience, self.HOSTS)
        assert "u:p" not in str(raised.value)

    def test_a_long_host_is_shown_cut(self) -> None:
        with pytest.raises(SasTokenError) as raised:
            check_audience_host(f"sb://{'a' * 300}.example/q", self.HOSTS)
        assert len(str(raised.value)) < 200
