"""``FaultProxyProcess``: a ``FaultProxy`` in a child process, with a fixed latency.

A ``FaultProxy`` relays on a thread of the process that runs it, so in the same
process as a client under measurement it competes with that client for the
interpreter lock, and both the client's speed and the delay it sees suffer. In its
own process (``python -m geobus.testing._proxy_process --upstream HOST:PORT
--latency SECONDS``) the proxy shares nothing with the client but the loopback
network: what a benchmark measures is the client's own cost.

The child listens on 127.0.0.1 at any free port and prints that port, alone on a
line, once it is listening; it then serves until its stdin reaches end of file
or it gets SIGTERM. The parent holds the other end of that stdin, so when the
parent dies, even by SIGKILL, the pipe closes and the child exits: no orphan.
``close`` closes the pipe, then terminates and at last kills the child, by its
own pid only.

Latency is ``FaultProxy.set_latency``'s: every chunk is held ``latency`` seconds
from its arrival, in each direction, chunks in flight overlapping (a delay on the
wire, not a cost per chunk). A request answered in one chunk each way therefore
takes ``2 * latency`` longer: a 4 ms round trip is ``latency=0.002``.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import NoReturn

from typing_extensions import Self

from .._closing import Serving
from .._sas import ConnectionString
from ..local import LocalNamespace, LocalNamespaceProcess
from ._namespaces import upstream_of
from ._proxy import FaultProxy
from ._sdk import ProxyAddress

_HOST = "127.0.0.1"
_STOP_WAIT = 5.0


class FaultProxyProcess(ProxyAddress, Serving):
    """A ``FaultProxy`` to ``upstream`` in its own child process, ``latency`` seconds each way.

    Start it with ``with FaultProxyProcess(...) as proxy:`` or ``start()``; then
    ``host``, ``port`` and ``endpoint`` are the proxy's, as on a ``FaultProxy``, so
    ``sdk_proxy_options(proxy, conn_str)`` and ``NamespacePair.config(primary_via=proxy)``
    route a client through it. ``close()`` stops the child (idempotent).

    Raises:
        ValueError: a bad ``upstream`` or ``latency`` (on construction).
        RuntimeError: the child did not print its port within ``startup_timeout``
            seconds, or exited (on ``start``).
    """

    def __init__(self, upstream: tuple[str, int], *, latency: float = 0.0, startup_timeout: float = 15.0) -> None:
        FaultProxy(upstream)  # checks ``upstream`` as the child will; binds nothing until started
        if not isinstance(latency, (int, float)) or isinstance(latency, bool) or not 0 <= latency < float("inf"):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {latency!r}")
        self.upstream = upstream
        self.latency = float(latency)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._port = 0

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs, else None."""
        return self._process.pid if self._process else None

    @property
    def host(self) -> str:
        """The address the proxy listens on."""
        return _HOST

    @property
    def port(self) -> int:
        """The port the proxy listens on.

        Raises:
            RuntimeError: the proxy is not started.
        """
        if not self._port:
            raise RuntimeError("the FaultProxyProcess has no port until it is started")
        return self._port

    def start(self) -> Self:
        """Start the child and wait for its port; a second call does nothing.

        Raises:
            RuntimeError: see the class docstring.
        """
        if self._process is not None:
            return self
        upstream = f"{self.upstream[0]}:{self.upstream[1]}"
        self._process = process = subprocess.Popen(
            # runpy warns that geobus.testing imported this module already: it is the same code.
            [sys.executable, "-W", "ignore::RuntimeWarning:runpy", "-m", __name__,
             "--upstream", upstream, "--latency", repr(self.latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        while not self._port:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                self.close()
                raise RuntimeError(f"the fault proxy process did not start (exit status {process.returncode})")
            if select.select([process.stdout], [], [], min(remaining, 0.5))[0]:
                line = process.stdout.readline()
                if line.strip().isdigit():
                    self._port = int(line)
        return self

    def close(self) -> None:
        """End of file on its stdin, then SIGTERM, then SIGKILL, each given a few seconds."""
        process, self._process, self._port = self._process, None, 0
        if process is None:
            return
        for stop in (_close_stdin, subprocess.Popen.terminate, subprocess.Popen.kill):
            if process.poll() is None:
                stop(process)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(_STOP_WAIT)
                break
        if process.stdout is not None:
            process.stdout.close()

    def __repr__(self) -> str:
        listening = f"{self.host}:{self._port or '?'}"
        return f"FaultProxyProcess({listening} -> {self.upstream[0]}:{self.upstream[1]}, latency={self.latency:g})"


def _close_stdin(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()


@contextlib.contextmanager
def fault_proxy_process(
    target: LocalNamespace | LocalNamespaceProcess | tuple[str, int], *, latency: float = 0.0
) -> Iterator[FaultProxyProcess]:
    """Start a ``FaultProxyProcess`` in front of ``target`` (a local namespace, a
    ``geobus local`` process or ``(host, port)``), ``latency`` seconds each way; stop it after.

    Raises:
        ValueError: a bad target or latency. RuntimeError: the child did not start.
    """
    if isinstance(target, LocalNamespaceProcess):
        host, _, port = ConnectionString.parse(target.connection_string).fully_qualified_namespace.rpartition(":")
        upstream = (host, int(port))
    else:
        upstream = upstream_of(target)
    with FaultProxyProcess(upstream, latency=latency) as proxy:
        yield proxy


# -- the child -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Serve until stdin closes or SIGTERM; the port goes to stdout once listening."""
    parser = argparse.ArgumentParser(description="a FaultProxy on 127.0.0.1 with a fixed latency")
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each chunk is held, each way")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds the ``with``: every socket closed
    with FaultProxy((host, int(port)), host=_HOST) as proxy:
        proxy.set_latency(args.latency)
        print(proxy.port, flush=True)
        sys.stdin.buffer.read()  # returns at end of file: the parent closed it, or died
    sys.exit(0)


if __name__ == "__main__":
    main()
