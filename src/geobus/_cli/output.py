"""How every ``geobus`` command speaks: its exit statuses, its two streams, its redaction.

The convention itself is written in ``geobus._cli``'s docstring; this module is
the one helper that carries it out: ``Out`` (results, problems, the live
progress line, geobus's own log lines), ``Exit`` (stop with a status whose
reason is printed), and ``Scrubber`` (what every printed line goes through).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from .._config import ReplicationConfig
from .._redact import redact
from .._sas import ConnectionString, SasTokenError

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
PROGRESS_INTERVAL = 0.1  # seconds between redraws of the live progress line


class Scrubber:
    """Masks the configured secrets (keys, signatures, the seen-set store's password)
    wherever they stand, and anything shaped like a secret (``redact``)."""

    def __init__(self, config: ReplicationConfig | None = None) -> None:
        self._secrets: list[str] = []
        for namespace in config.namespaces if config is not None else ():
            if namespace.connection_string is not None:
                with contextlib.suppress(SasTokenError):
                    parsed = ConnectionString.parse(namespace.connection_string)
                    self._secrets += [s for s in (parsed.shared_access_key, parsed.shared_access_signature) if s]
        if config is not None:
            with contextlib.suppress(ValueError):  # a store URL that does not parse has no password
                password = urlsplit(config.dedup.store).password
                self._secrets += [password, unquote(password)] if password else []

    def __call__(self, text: str) -> str:
        return redact(text, self._secrets)


class Exit(Exception):
    """Stop the command with ``status``; the reason is already printed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes a record scrubbed, after wiping the progress line it would otherwise cut into."""

    def __init__(self, out: Out, stream: TextIO, prefix: str) -> None:
        super().__init__(stream)
        self.setFormatter(logging.Formatter(prefix + "%(message)s"))  # geobus's lines start "geobus: "
        self._out = out

    def format(self, record: logging.LogRecord) -> str:
        return self._out.scrub(super().format(record))  # the scrubber of the moment: it learns the config

    def emit(self, record: logging.LogRecord) -> None:
        self._out.clear()
        super().emit(record)


class Out:
    """Prints for one command, every line through ``scrub``.

    Results go to ``text`` (stdout unless given: the drill's table goes to stderr
    when stdout carries its JSON), JSON always to stdout, problems to stderr as
    ``geobus <command>: ...``. A live progress line is drawn on ``text`` only when
    it is a terminal, and wiped before anything else is printed.
    """

    def __init__(self, command: str, *, text: TextIO | None = None) -> None:
        self.command = command
        self.scrub = Scrubber()
        self._text = text
        self._drawn = 0.0  # when the progress line was last drawn; 0: none is showing

    @property
    def text(self) -> TextIO:
        # Looked up at each call: a test's capture replaces sys.stdout after this is built.
        return self._text or sys.stdout

    def line(self, text: str = "") -> None:
        self.clear()
        print(self.scrub(text), file=self.text, flush=True)

    def json(self, data: dict[str, Any]) -> None:
        print(self.scrub(json.dumps(data, indent=2, default=str)), flush=True)

    def json_line(self, data: dict[str, Any]) -> None:
        """One object on one line (JSON Lines), for output that is a stream of records."""
        print(self.scrub(json.dumps(data, default=str)), flush=True)

    def note(self, text: str) -> None:
        """A line about the run, not a result (a benchmark's progress): on stderr, unprefixed."""
        self.clear()
        print(self.scrub(text), file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        self.clear()
        print(self.scrub(f"geobus {self.command}: {text}"), file=sys.stderr, flush=True)

    def fail(self, text: str, status: int) -> Exit:
        """Print ``text`` as an error; the ``Exit`` to raise with ``status``."""
        self.error(text)
        return Exit(status)

    def progress(self, label: str, counts: Callable[[], Mapping[str, object]]) -> None:
        """The live line, ``label: name n, name n``, redrawn at most every PROGRESS_INTERVAL s
        (``counts`` is called only then: counting may cost)."""
        now = time.monotonic()
        if not self.text.isatty() or now - self._drawn < PROGRESS_INTERVAL:
            return
        self._drawn = now
        shown = ", ".join(f"{name} {value}" for name, value in counts().items())
        self.text.write(self.scrub(f"\r  {label}: {shown}").ljust(100))
        self.text.flush()

    def clear(self) -> None:
        """Wipe the progress line, if one is showing."""
        if self._drawn:
            self._drawn = 0.0
            self.text.write("\r" + " " * 100 + "\r")

    @contextlib.contextmanager
    def logging(self, *, stream: TextIO | None = None, prefix: str = "") -> Iterator[None]:
        """While open: geobus's warnings (a failover, a namespace reconnecting) on ``stream``
        (stderr unless given), scrubbed, each after ``prefix``; the SDK's own reconnect
        tracebacks hidden (geobus names each namespace's cause). Restored on the way out."""
        geobus_log, azure_log = logging.getLogger("geobus"), logging.getLogger("azure")
        handler = _Handler(self, stream or sys.stderr, prefix)
        propagate, azure_level = geobus_log.propagate, azure_log.level
        geobus_log.addHandler(handler)
        geobus_log.propagate = False
        azure_log.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            geobus_log.removeHandler(handler)
            geobus_log.propagate = propagate
            azure_log.setLevel(azure_level)
