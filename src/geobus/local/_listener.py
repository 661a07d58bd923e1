"""The local namespace's listening socket on its server's selector.

It listens, stops listening while the namespace refuses connections (keeping
the port: ``_sockets.KeptPort``), and accepts unless the loop is frozen or the
process is out of file descriptors (``_limits.AcceptBackoff``). Which
connection gives way, and what a new one gets, is the server's to decide.
Everything here runs on the server's loop thread.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time

from ._limits import AcceptBackoff
from ._sockets import KeptPort

# ``accept()`` errors that mean "no descriptor (or buffer) for a new socket now".
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
LISTENER = "listener"  # the selector key's data


class Listener:
    """One namespace's listening port; not thread-safe."""

    def __init__(self, selector: selectors.BaseSelector, address: KeptPort) -> None:
        self._selector = selector
        self._port = address
        self.sock: socket.socket | None = None  # None while refusing, and once closed
        self.backoff = AcceptBackoff()

    def listen(self) -> None:
        """Listen on the port (again, after ``refuse``); call ``watch`` next.

        Raises:
            OSError: the port cannot be bound or listened on.
        """
        sock = self._port.bind()
        try:
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock

    def refuse(self) -> None:
        """Stop listening, keeping the port: connects are refused until ``listen``."""
        self._stop_listening()
        self._port.keep()

    def close(self) -> None:
        """Stop listening and give up the port. Safe to call twice."""
        self._stop_listening()
        self._port.close()

    def watch(self, *, frozen: bool) -> None:
        """Have the selector report waiting connections unless ``frozen`` or accepting is paused.

        A stopped process (``frozen``) leaves new connections in the backlog.
        """
        if self.sock is None:
            return
        try:
            self._selector.get_key(self.sock)
            watched = True
        except KeyError:
            watched = False
        wanted = not frozen and not self.backoff.paused(time.monotonic())
        if watched and not wanted:
            self._selector.unregister(self.sock)
        elif wanted and not watched:
            self._selector.register(self.sock, selectors.EVENT_READ, LISTENER)

    def accept(self) -> socket.socket | None:
        """The next waiting connection, or None when none waits (or ``accept`` failed otherwise).

        Raises:
            OSError: no descriptor is free for it (``OUT_OF_DESCRIPTORS``): the
                caller frees one, or pauses accepting with ``backoff``.
        """
        if self.sock is None:
            return None
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            if exc.errno in OUT_OF_DESCRIPTORS:
                raise
            return None
        self.backoff.succeeded()
        return sock

    def _stop_listening(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.sock)
            self.sock.close()
            self.sock = None
