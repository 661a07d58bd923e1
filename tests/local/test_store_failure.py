"""A store that cannot be written stops the namespace before it acknowledges anything unsaved.

Out of process (``geobus local`` under a file size limit) the process exits non-zero
with a message naming the store; in process the failure is raised to the test.
Either way, every message the SDK was told was sent is in the store afterwards.
The store file, with its -wal and -shm, is owner-only.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from geobus.local import DEV_KEY, LocalNamespace, LocalNamespaceProcess

pytestmark = pytest.mark.timeout(120)

QUEUE = "orders"
BODY = "x" * 16_000  # a few SQLite pages per message: the limit is reached in a few sends
# Room for the schema and a handful of messages, in the database and its WAL.
FILE_SIZE_LIMIT = 200_000
MAX_SENDS = 200  # far more than fit under the limit


def _fill(connection_string: str) -> list[str]:
    """Send one message at a time until a send fails; the ids the SDK said were sent."""
    sent: list[str] = []
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client:
        sender = client.get_queue_sender(QUEUE)
        try:
            for n in range(MAX_SENDS):
                sender.send_messages(ServiceBusMessage(BODY, message_id=f"m{n}"))
                sent.append(f"m{n}")
        except ServiceBusError:
            pass
        finally:
            sender.close()
    return sent


def _stored_ids(connection_string: str) -> set[str]:
    """Every message id in ``QUEUE``, received and completed until the queue is empty."""
    found: set[str] = set()
    with ServiceBusClient.from_connection_string(connection_string, retry_total=1) as client:
        with client.get_queue_receiver(QUEUE) as receiver:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batch = receiver.receive_messages(max_message_count=50, max_wait_time=2)
                if not batch:
                    break
                for message in batch:
                    found.add(str(message.message_id))
                    receiver.complete_message(message)
    return found


def _limit_file_size() -> None:
    """In the child, before exec: writes past the limit fail with EFBIG instead of a signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.fixture
def limited_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``geobus local --store`` under a file size limit, and its connection string."""
    process = subprocess.Popen(
        [sys.executable, "-m", "geobus", "local", "--port", "0", "--store", str(tmp_path / "store.db")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=_limit_file_size,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the connection string, once it is listening
        assert line.startswith("Endpoint=sb://"), "geobus local did not start"
        yield process, line.strip()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(15)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


class TestFullStoreProcess:
    """``geobus local`` whose store hits a file size limit exits non-zero, and loses nothing."""

    @pytest.mark.slow
    def test_exits_non_zero_with_a_message_and_every_acknowledged_message_is_stored(
        self, tmp_path: Path, limited_process: tuple[subprocess.Popen[str], str]
    ) -> None:
        process, connection_string = limited_process
        sent = _fill(connection_string)
        assert 0 < len(sent) < MAX_SENDS, "the limit was reached after some sends"
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("geobus local kept running after its store failed")
        assert process.stderr is not None
        stderr = process.stderr.read()
        assert status != 0
        assert "stopped" in stderr and "cannot write the store" in stderr and "store.db" in stderr
        assert DEV_KEY not in stderr and "Traceback" not in stderr

        with LocalNamespaceProcess(store=tmp_path / "store.db") as restarted:
            stored = _stored_ids(restarted.connection_string)
        assert set(sent) <= stored, "a message the SDK was told was sent is missing"


class TestFullStoreInProcess:
    """In process, the failure stops the namespace and is raised to the test."""

    def test_the_failure_is_recorded_raised_by_later_calls_and_on_leaving_the_block(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "store.db"
        failures: list[BaseException] = []
        namespace = LocalNamespace(store=path, on_failure=failures.append)
        with pytest.raises(OSError, match="cannot write the store") as raised:
            with namespace:
                # SQLite's own "disk full": a page limit on the namespace's connection.
                db = namespace._store._db  # type: ignore[union-attr]
                pages = namespace._server.call(lambda: db.execute("PRAGMA page_count").fetchone()[0])
                namespace._server.call(lambda: db.execute(f"PRAGMA max_page_count = {pages + 20}"))
                sent = _fill(namespace.connection_string)
                assert 0 < len(sent) < MAX_SENDS, "the limit was reached after some sends"
                assert isinstance(namespace.failure, OSError)
                with pytest.raises(RuntimeError, match="stopped: cannot write the store"):
                    namespace.counts()
        assert raised.value is namespace.failure
        assert failures == [namespace.failure]
        assert str(path) in str(raised.value)

        with LocalNamespace(store=path) as reopened:
            stored = _stored_ids(reopened.connection_string)
        assert set(sent) <= stored, "a message the SDK was told was sent is missing"


class TestFileModes:
    """The store holds message bodies: it and its -wal and -shm are owner-only."""

    def test_a_new_store_and_its_wal_and_shm_are_0600(self, tmp_path: Path) -> None:
        path = tmp_path / "store.db"
        old_umask = os.umask(0o022)
        try:
            with LocalNamespace(store=path) as namespace:
                with ServiceBusClient.from_connection_string(namespace.connection_string) as client:
                    with client.get_queue_sender(QUEUE) as sender:
                        sender.send_messages(ServiceBusMessage("body"))
                files = [path, path.with_name("store.db-wal"), path.with_name("store.db-shm")]
                modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        finally:
            os.umask(old_umask)
        assert modes == {f.name: 0o600 for f in files}

    def test_an_existing_store_keeps_its_mode(self, tmp_path: Path) -> None:
        path = tmp_path / "store.db"
        sqlite3.connect(path).close()  # an empty file, as another tool might leave
        path.chmod(0o640)
        with LocalNamespace(store=path):
            pass
        assert stat.S_IMODE(path.stat().st_mode) == 0o640

    def test_a_store_in_a_missing_directory_is_a_value_error_naming_it(self, tmp_path: Path) -> None:
        path = tmp_path / "missing" / "store.db"
        with pytest.raises(ValueError, match="cannot create the store") as raised:
            LocalNamespace(store=path)
        assert str(path) in str(raised.value)
