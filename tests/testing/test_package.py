"""``geobus.testing``: its missing-extra message, its plain context managers, its waiting helpers."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from azure.servicebus import ServiceBusMessage

import geobus
from geobus.local import LocalNamespace
from geobus.testing import (
    FakeClock,
    FaultProxy,
    NamespacePair,
    eventually,
    eventually_async,
    fault_proxy,
    local_pair,
)

pytestmark = pytest.mark.timeout(60)


class TestMissingExtra:
    """Without the ``local`` extra, importing ``geobus.testing`` says how to install it.

    (``__all__`` and the docstrings are checked with the other public packages', in
    ``tests/test_public_api.py``.)
    """

    def test_missing_local_extra_says_how_to_install_it(self) -> None:
        code = (
            "import sys; sys.modules['proton'] = None\n"
            "try:\n    import geobus.testing\n"
            "except ImportError as exc:\n    print(exc); sys.exit(3)"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, done.stderr  # an ImportError, as any missing dependency
        assert "geobus.testing needs the 'local' extra" in done.stdout
        assert "pip install 'geobus[local]'" in done.stdout


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


class Countdown:
    """A condition that holds from its ``after``-th call on; counts its calls."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.after

    async def asked(self) -> bool:
        return self()


class TestWaiting:
    """``eventually`` polls until a condition holds, within a bound; ``FakeClock`` moves by hand."""

    def test_eventually_returns_as_soon_as_the_condition_holds(self) -> None:
        condition = Countdown(after=3)
        eventually(condition, every=0.001)
        assert condition.calls == 3

    def test_eventually_fails_naming_what_it_waited_for(self) -> None:
        with pytest.raises(AssertionError, match=r"not within 0\.05 s: the queue empty"):
            eventually(lambda: False, within=0.05, what="the queue empty")

    def test_a_callable_what_is_asked_only_on_failure(self) -> None:
        asked: list[str] = []

        def state() -> str:
            asked.append("asked")
            return "depth 3"

        eventually(Countdown(after=2), what=state, every=0.001)
        assert asked == []
        with pytest.raises(AssertionError, match="depth 3"):
            eventually(lambda: False, within=0.01, what=state)
        assert asked == ["asked"]

    async def test_eventually_async_takes_plain_and_coroutine_conditions(self) -> None:
        plain, awaited = Countdown(after=2), Countdown(after=3)
        await eventually_async(plain, every=0.001)
        await eventually_async(awaited.asked, every=0.001)
        assert (plain.calls, awaited.calls) == (2, 3)
        with pytest.raises(AssertionError, match=r"not within 0\.01 s: never"):
            await eventually_async(Countdown(after=10**9).asked, within=0.01, what="never")

    def test_fake_clock_moves_only_when_told(self) -> None:
        clock = FakeClock(100.0)
        assert clock() == clock() == 100.0
        assert clock.advance(2.5) == 102.5 == clock()
        assert repr(clock) == "FakeClock(now=102.5)"
        assert FakeClock()() == 1_700_000_000.0  # a plausible wall-clock time by default
