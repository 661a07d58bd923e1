"""``LocalNamespaceProcess``: ``geobus local`` as a child process, for real kill -9 and SIGSTOP."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from typing_extensions import Self

from .._closing import Serving
from ._control import ControlClient
from ._definitions import load_entities


class LocalNamespaceProcess(Serving):
    """Runs ``geobus local`` in a child process and knows its connection strings.

    ``restart()`` starts it again on the same ports and store (an outage that
    ends); ``kill()`` is SIGKILL, ``pause()``/``resume()`` are SIGSTOP/SIGCONT.
    Only the process this object started is ever signalled, by its id.

    ``key``: the shared access key of its namespaces, handed over in the child's
    environment (``GEOBUS_LOCAL_KEY``), never on its command line where any local
    user could read it. By default each namespace has its own development key
    (``development_key``); two processes that stand for two regions should be
    given different keys, as two Azure namespaces have.

    ``entities``: a TOML file of entity definitions (``geobus local --entities``),
    checked here first and read again by the child at every start, so a
    ``restart()`` applies an edited file.

    Raises:
        RuntimeError: the process did not print its connection strings in time,
            or exited early (its stderr tail is in the message).
        ConfigurationError: ``entities`` cannot be read or has a bad definition
            (on construction).
    """

    def __init__(
        self,
        *,
        namespaces: int = 1,
        port: int = 0,
        store: str | Path | None = None,
        args: Sequence[str] = (),
        key: str | None = None,
        startup_timeout: float = 30.0,
        entities: str | os.PathLike[str] | None = None,
    ) -> None:
        if entities is not None:
            load_entities(entities)  # a bad file fails here, not as "exited early"
        self.entities = Path(entities) if entities is not None else None
        self.namespaces = namespaces
        self._key = key
        self.store = Path(store) if store is not None else None
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self._ports = [port + i for i in range(namespaces)] if port else []
        self._process: subprocess.Popen[str] | None = None
        self.connection_strings: list[str] = []
        self.controls: list[ControlClient] = []
        self._scratch: str | None = None  # the child's TMPDIR, while it may run
        self._stderr_tail: list[str] = []

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs, else None."""
        return self._process.pid if self._process else None

    @property
    def connection_string(self) -> str:
        """The first namespace's connection string (key included: a development key)."""
        return self.connection_strings[0]

    @property
    def control(self) -> ControlClient:
        """The first namespace's fault control."""
        return self.controls[0]

    def start(self) -> Self:
        """Start ``geobus local`` and wait for its connection strings.

        Raises:
            RuntimeError: see the class docstring.
        """
        command = [sys.executable, "-m", "geobus", "local", "--namespaces", str(self.namespaces)]
        command += ["--port", str(self._ports[0] if self._ports else 0)]
        if self.store is not None:
            command += ["--store", str(self.store)]
        if self.entities is not None:
            command += ["--entities", str(self.entities)]
        command += self.args
        # Its temporary files (the administration API's certificate) go in a directory
        # of this object's, removed on ``stop``: a kill -9 leaves nothing behind.
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="geobus-local-process-")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": self._scratch}
        if self._key is not None:
            env["GEOBUS_LOCAL_KEY"] = self._key
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        for name, stream in (("out", self._process.stdout), ("err", self._process.stderr)):
            assert stream is not None
            threading.Thread(target=_pump, args=(name, stream, lines), daemon=True).start()
        try:
            self._wait_for_start(lines)
        except BaseException:
            self.kill()
            self._remove_scratch()
            raise
        return self

    def _wait_for_start(self, lines: queue.Queue[tuple[str, str | None]]) -> None:
        assert self._process is not None
        endpoints: list[str] = []
        controls: list[str] = []
        deadline = time.monotonic() + self.startup_timeout
        while len(endpoints) < self.namespaces or len(controls) < self.namespaces:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"geobus local did not start in time: {self._tail()}")
            try:
                name, line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:
                if self._process.poll() is not None and name == "out":
                    raise RuntimeError(f"geobus local exited early: {self._tail()}")
                continue
            if name == "out" and line.startswith("Endpoint=sb://"):
                endpoints.append(line.strip())
            elif name == "err":
                self._stderr_tail = [*self._stderr_tail[-20:], line.rstrip()]
                if " control http://" in line:
                    controls.append(line.split(" control ")[1].split()[0])
        self.connection_strings = endpoints
        self.controls = [ControlClient(url) for url in controls]
        if not self._ports:
            self._ports = [int(cs.split(";")[0].rsplit(":", 1)[1]) for cs in endpoints]

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _tail(self) -> str:
        return " | ".join(self._stderr_tail[-5:]) or "(no output)"

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then wait; returns the exit status (None if it was not running)."""
        process = self._process
        if process is None:
            self._remove_scratch()  # killed before: its files go now
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._process = None
        self._remove_scratch()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: the region is gone mid-flight."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(15)
        self._process = None

    def pause(self) -> None:
        """SIGSTOP: the host stops answering, its sockets stay open."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: the host answers again."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self) -> Self:
        """Start again on the same ports with the same store."""
        self.kill()
        return self.start()

    def close(self) -> None:
        """``stop``, without its exit status."""
        self.stop()


def _pump(name: str, stream: IO[str], lines: queue.Queue[tuple[str, str | None]]) -> None:
    for line in stream:
        lines.put((name, line))
    lines.put((name, None))
