"""``FaultProxyProcess``: the real azure-servicebus client and geobus through a proxy in its own process.

Time bounds are lower bounds for the injected delay (it must cost at least that
much), never upper bounds on speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

import geobus.aio
from geobus.local import LocalNamespace
from geobus.testing import (
    FaultProxyProcess,
    NamespacePair,
    eventually,
    fault_proxy_process,
    local_pair,
    sdk_proxy_options,
)

pytestmark = pytest.mark.timeout(60)

QUEUE = "q"
LATENCY = 0.05  # each way: a send (transfer out, disposition back) takes at least twice this


@pytest.fixture
def pair() -> Iterator[NamespacePair]:
    with local_pair() as pair:
        yield pair


def _gone(pid: int) -> bool:
    """No process ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _sdk_client(namespace: LocalNamespace, proxy: FaultProxyProcess) -> ServiceBusClient:
    cs = namespace.connection_string
    return ServiceBusClient.from_connection_string(cs, **sdk_proxy_options(proxy, cs))


class TestThroughTheProxyProcess:
    def test_the_sdk_sends_and_receives_through_it(self, pair: NamespacePair) -> None:
        with fault_proxy_process(pair.primary) as proxy, _sdk_client(pair.primary, proxy) as client:
            assert proxy.pid is not None and proxy.pid != os.getpid()
            with client.get_queue_sender(QUEUE) as sender:
                sender.send_messages([ServiceBusMessage(f"m{i}", message_id=f"m{i}") for i in range(3)])
            with client.get_queue_receiver(QUEUE) as receiver:
                got = receiver.receive_messages(max_message_count=3, max_wait_time=5)
                for message in got:
                    receiver.complete_message(message)
        assert sorted(str(m.message_id) for m in got) == ["m0", "m1", "m2"]
        assert pair.primary.counts().get(QUEUE, 0) == 0

    async def test_geobus_is_routed_through_one_per_namespace(self, pair: NamespacePair) -> None:
        with fault_proxy_process(pair.primary) as first, fault_proxy_process(pair.secondary) as second:
            config = pair.config(primary_via=first, secondary_via=second, mode="active")
            async with geobus.aio.GeoServiceBusClient(config) as client:
                async with client.get_queue_sender(QUEUE) as sender:
                    result = await sender.send_messages(ServiceBusMessage("both"))
        assert set(result.landed) == {"primary", "secondary"}
        assert pair.counts() == {"primary": {QUEUE: 1}, "secondary": {QUEUE: 1}}

    def test_its_latency_delays_every_round_trip(self, pair: NamespacePair) -> None:
        with fault_proxy_process(pair.primary, latency=LATENCY) as proxy, _sdk_client(pair.primary, proxy) as client:
            with client.get_queue_sender(QUEUE) as sender:
                sender.send_messages(ServiceBusMessage("warm"))  # the link is open: one round trip per send
                started = time.perf_counter()
                sender.send_messages(ServiceBusMessage("slow"))
                assert time.perf_counter() - started >= 2 * LATENCY
        assert pair.primary.counts() == {QUEUE: 2}


class TestLifetime:
    def test_the_process_is_gone_after_the_block(self, pair: NamespacePair) -> None:
        with fault_proxy_process(pair.primary) as proxy:
            pid = proxy.pid
            assert pid is not None and not _gone(pid)
        assert proxy.pid is None and _gone(pid)
        with pytest.raises(RuntimeError, match="no port"):
            _ = proxy.port
        proxy.close()  # idempotent

    def test_it_exits_when_its_parent_dies(self, pair: NamespacePair) -> None:
        parent_code = (
            "import sys; from geobus.testing import FaultProxyProcess\n"
            f"proxy = FaultProxyProcess(({pair.primary.host!r}, {pair.primary.port})).start()\n"
            "print(proxy.pid, flush=True); sys.stdin.read()"
        )
        parent = subprocess.Popen([sys.executable, "-c", parent_code], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            assert not _gone(child)
            parent.send_signal(signal.SIGKILL)  # no close(): only the closed stdin tells the child
            parent.wait(10)
            eventually(lambda: _gone(child), within=15, what="the proxy process exiting after its parent")
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait(10)
            for stream in (parent.stdin, parent.stdout):
                if stream is not None:
                    stream.close()

    def test_bad_arguments_are_refused_before_anything_starts(self) -> None:
        with pytest.raises(ValueError, match="latency"):
            FaultProxyProcess(("127.0.0.1", 5672), latency=-1)
        with pytest.raises(ValueError, match="upstream"):
            FaultProxyProcess(("127.0.0.1", 0))
