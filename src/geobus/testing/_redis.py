"""A throwaway ``redis-server`` for fleet tests and benchmarks: loopback, a free port, nothing saved.

    with RedisServer() as server:          # started; stopped (by its own pid) after
        config = ReplicationConfig(..., dedup=DedupPolicy(store=server.url))
        server.stop()                      # an outage of the shared seen-set...
        server.start()                     # ...and the same server back on the same port

Needs the Debian/Ubuntu package ``redis-server`` (or any ``redis-server`` on PATH).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from typing_extensions import Self

from .._closing import Serving

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    """The path of ``redis-server`` on PATH, or None."""
    return shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer(Serving):
    """One ``redis-server`` child process; ``stop`` and ``start`` keep its port (an outage).

    ``url`` is ``redis://[:password@]127.0.0.1:PORT/0``. Only ever stops the
    process it started, by its pid. Not thread-safe.
    """

    def __init__(self, *, password: str | None = None, binary: str | None = None) -> None:
        self.password = password
        self.binary = binary or redis_server_binary() or "redis-server"
        self.port = free_port()
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:PORT/0`` (with the password, if any: do not print it)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Starts the server (again, on the same port) and returns once it answers PING.

        Raises:
            RuntimeError: it exited or did not answer within ``START_TIMEOUT`` s (with its log).
        """
        if self.running:
            return self
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="geobus-redis-"))
        log = self._dir / "redis.log"
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes",
            "--save", "", "--appendonly", "no", "--dir", str(self._dir), "--logfile", str(log),
            "--daemonize", "no",
        ]
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stops the server (SIGTERM, SIGKILL after ``STOP_TIMEOUT`` s) and waits for it; the port stays ours."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stops the server and removes its directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"

    def _answers(self) -> bool:
        """True once the server replies to PING (+PONG, or -NOAUTH when it has a password)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as conn:
                conn.sendall(b"PING\r\n")
                reply = conn.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))
