"""`geobus local` as its own process: output contract, signals, control endpoint, SQLite store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusConnectionError

from geobus.local import LocalNamespaceProcess

pytestmark = pytest.mark.timeout(120)


def _send(connection_string: str, queue: str, ids: list[str]) -> None:
    with ServiceBusClient.from_connection_string(connection_string, retry_total=1) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage(f"body-{i}", message_id=i) for i in ids])


def _receive_all(connection_string: str, queue: str, *, abandon: int = 0) -> list:
    """Complete everything until the queue is empty (bounded), or abandon the first
    ``abandon`` messages once each; returns (id, sequence, delivery count) tuples."""
    found = []
    with ServiceBusClient.from_connection_string(connection_string, retry_total=1) as client:
        with client.get_queue_receiver(queue) as receiver:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (abandon and len(found) >= abandon):
                batch = receiver.receive_messages(max_message_count=100, max_wait_time=1)
                if not batch:
                    break
                for message in batch:
                    found.append((str(message.message_id), message.sequence_number, message.delivery_count))
                    if abandon:
                        receiver.abandon_message(message)
                    else:
                        receiver.complete_message(message)
    return found


class TestCommandLine:
    """The output contract and signal handling of `geobus local`."""

    def test_two_namespaces_print_two_connection_strings_and_both_serve(self) -> None:
        with LocalNamespaceProcess(namespaces=2) as process:
            assert len(process.connection_strings) == 2
            assert all(cs.startswith("Endpoint=sb://127.0.0.1:") for cs in process.connection_strings)
            assert all("UseDevelopmentEmulator=true" in cs for cs in process.connection_strings)
            first, second = process.connection_strings
            assert first != second
            _send(first, "q", ["a1"])
            _send(second, "q", ["b1", "b2"])
            assert [m[0] for m in _receive_all(first, "q")] == ["a1"]
            assert sorted(m[0] for m in _receive_all(second, "q")) == ["b1", "b2"]

    def test_sigterm_exits_zero(self) -> None:
        process = LocalNamespaceProcess().start()
        assert process.stop() == 0


class TestControlEndpoint:
    """Faults commanded from outside the process."""

    def test_refuse_then_heal(self) -> None:
        with LocalNamespaceProcess() as process:
            process.control.refuse()
            assert process.control.status()["fault"] == "refuse"
            with ServiceBusClient.from_connection_string(process.connection_string, retry_total=0) as client:
                with pytest.raises(ServiceBusConnectionError):
                    with client.get_queue_sender("q") as sender:
                        sender.send_messages(ServiceBusMessage("x"))
            process.control.heal()
            _send(process.connection_string, "q", ["after-heal"])
            assert process.control.status()["counts"] == {"q": 1}


class TestSqliteStore:
    """A namespace with --store keeps what it acknowledged across kill -9 and restart."""

    def test_kill_and_restart_loses_nothing(self, tmp_path: Path) -> None:
        store = tmp_path / "primary.sqlite"
        ids = [f"m{i}" for i in range(50)]
        with LocalNamespaceProcess(store=store) as process:
            _send(process.connection_string, "orders", ids)
            abandoned = _receive_all(process.connection_string, "orders", abandon=len(ids))
            assert sorted(m[0] for m in abandoned) == sorted(ids)
            process.kill()
            process.start()
            received = _receive_all(process.connection_string, "orders")
            assert sorted(m[0] for m in received) == sorted(ids)
            assert all(m[2] == 1 for m in received), "abandon counts survive the restart"
            last_seq = max(m[1] for m in received)
            _send(process.connection_string, "orders", ["after-restart"])
            (after,) = _receive_all(process.connection_string, "orders")
            assert after[1] > last_seq, "sequence numbers continue after a restart"

    def test_wiped_store_is_a_disaster(self, tmp_path: Path) -> None:
        store = tmp_path / "primary.sqlite"
        with LocalNamespaceProcess(store=store) as process:
            _send(process.connection_string, "orders", ["m1", "m2"])
            process.kill()
            for path in tmp_path.glob("primary.sqlite*"):
                path.unlink()
            process.start()
            assert _receive_all(process.connection_string, "orders") == []

    def test_damaged_store_is_reported_not_recreated(self, tmp_path: Path) -> None:
        store = tmp_path / "broken.sqlite"
        store.write_bytes(b"this is not a database" * 100)
        with pytest.raises(RuntimeError, match="not a geobus local store"):
            LocalNamespaceProcess(store=store, startup_timeout=20).start()
        assert store.read_bytes().startswith(b"this is not a database")
