"""A session's state in both namespaces: read the newest, write both (``_decisions/session_state.py``
has the envelope).

Writes: in active mode to every attached namespace at once; in passive mode to
the active namespace first (the other if it fails), then to the rest as a best
effort. A write succeeds when one namespace took it; the version it carries makes
the newest win on the next read, wherever it landed.

The order marks are written in the background (``write_marks``) as a
read-modify-write under the state's lock: the state is read afresh from every
namespace holding the session, and the marks are written only when all of them
answered, over the application's bytes as read. A namespace that did not answer
could hold a newer state than the one known here; writing over it would put an
older (or an empty) state back in both regions.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping

from ..._config import ReplicationMode
from ..._decisions.session_state import SessionState, decode, newest
from ..._errors import ReplicationError
from .channel import SessionChannel

_LOG = logging.getLogger("geobus")


class ReplicatedState:
    """One owned session's state across namespaces. Task-safe within one event loop.

    ``attached``: the namespaces holding the session now. ``active``: passive mode's
    active namespace now. ``marks``: the order marks to write with each version.
    """

    def __init__(
        self,
        channels: Mapping[str, SessionChannel],
        *,
        mode: ReplicationMode,
        attached: Callable[[], set[str]],
        active: Callable[[], str],
        marks: Callable[[], dict[str, int]],
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._channels = channels
        self._mode = mode
        self._attached = attached
        self._active = active
        self._marks = marks
        self._timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self.writer = uuid.uuid4().hex[:8]  # tells this receiver's writes apart from another's of one version
        self.known = SessionState()  # the newest read or written
        self.written_marks: dict[str, int] = {}
        self._read_from: set[str] = set()  # namespaces whose state was read since they attached

    async def read(self, names: list[str] | None = None) -> SessionState:
        """The newest state among ``names`` (default: the attached namespaces) and what was known.

        Raises:
            ReplicationError: no namespace answered.
        """
        names = sorted(self._attached()) if names is None else names
        answers = await asyncio.gather(
            *(self._channels[n].get_state(timeout=self._timeout) for n in names), return_exceptions=True
        )
        states = [decode(a) for a in answers if not isinstance(a, BaseException)]
        failed = {n: a for n, a in zip(names, answers, strict=True) if isinstance(a, BaseException)}
        self._read_from |= set(names) - set(failed)
        if names and not states:
            raise ReplicationError("no namespace answered for the session state", causes=failed)
        self.known = newest([self.known, *states])
        return self.known

    async def write(self, user: bytes | None) -> None:
        """Write ``user`` (None clears it) as the next version, with the current marks. A
        namespace holding the session whose state was not read yet is read first (best effort),
        so that the version is above the newest there.

        Raises:
            ReplicationError: no namespace took it.
        """
        async with self._lock:
            unread = sorted(self._attached() - self._read_from)
            if unread:
                try:
                    await self.read(unread)
                except ReplicationError as exc:
                    _LOG.info("geobus: the session state was written without reading %s first (%s)", unread, exc)
            await self._write_next(user)

    async def write_marks(self) -> None:
        """Write the marks, if they moved since the last write, over the state read afresh from
        every namespace holding the session. One that does not answer now is no bar if its
        state was read while this receiver held it (a failover in progress at ``close``);
        one never read is: the marks wait for the keeper's next turn rather than write an
        older state over a newer one."""
        if self._marks() == self.written_marks:
            return
        async with self._lock:
            names = sorted(self._attached())
            try:
                answers = await asyncio.gather(
                    *(self._channels[n].get_state(timeout=self._timeout) for n in names), return_exceptions=True
                )
                failed = {n: a for n, a in zip(names, answers, strict=True) if isinstance(a, BaseException)}
                # One that does not answer now may be written over only if its state was read while
                # this receiver held it: no one else can have written a newer one there since.
                if len(failed) == len(names) or not set(failed) <= self._read_from:
                    raise ReplicationError("the session state was not read from every namespace holding it", causes=failed)
                answered = [n for n in names if n not in failed]
                self._read_from |= set(answered)
                self.known = newest([self.known, *(decode(a) for a in answers if not isinstance(a, BaseException))])
                # Only where the read was answered, and all at once: a namespace that just failed to
                # answer would hold the others up for its whole timeout (at close, past the bound).
                state = SessionState(self.known.version + 1, self.known.user, self._marks(), self._clock(), self.writer)
                await self._all(answered, state.encode())
                self.known = state
                self.written_marks = dict(state.marks)
            except ReplicationError as exc:
                _LOG.info("geobus: the session's order marks were not written (%s); trying again later", exc)

    async def catch_up(self, name: str) -> None:
        """Namespace ``name`` attached again: read its state (it may have changed while it was
        not held here) and give it the newest if it has an older one."""
        self._read_from.discard(name)
        try:
            theirs = decode(await self._channels[name].get_state(timeout=self._timeout))
            self._read_from.add(name)
            if theirs.rank < self.known.rank:
                await self._channels[name].set_state(self.known.encode(), timeout=self._timeout)
            else:
                self.known = newest([self.known, theirs])
        except Exception as exc:
            _LOG.info("geobus: the session state on %r was not brought up to date (%s)", name, type(exc).__name__)

    async def _write_next(self, user: bytes | None) -> None:
        """Under ``_lock``: write ``user`` as the next version with the current marks."""
        state = SessionState(self.known.version + 1, user, self._marks(), self._clock(), self.writer)
        await self._write(state)
        self.known = state
        self.written_marks = dict(state.marks)

    async def _write(self, state: SessionState) -> None:
        raw = state.encode()
        names = sorted(self._attached())
        if not names:
            raise ReplicationError("the session is held in no namespace now", causes={})
        if self._mode == ReplicationMode.ACTIVE:
            await self._all(names, raw)
            return
        active = self._active()
        order = sorted(names, key=lambda n: n != active)  # the active namespace first
        errors: dict[str, BaseException] = {}
        for index, name in enumerate(order):
            try:
                await self._channels[name].set_state(raw, timeout=self._timeout)
            except Exception as exc:
                errors[name] = exc
                continue
            rest = order[index + 1 :]
            if rest:  # best effort: the newest version wins on read wherever it landed
                results = await asyncio.gather(
                    *(self._channels[n].set_state(raw, timeout=self._timeout) for n in rest), return_exceptions=True
                )
                for n, result in zip(rest, results, strict=True):
                    if isinstance(result, BaseException):
                        _LOG.info("geobus: session state not written to %r (%s)", n, type(result).__name__)
            return
        raise ReplicationError("no namespace took the session state", causes=errors)

    async def _all(self, names: list[str], raw: bytes) -> None:
        results = await asyncio.gather(
            *(self._channels[n].set_state(raw, timeout=self._timeout) for n in names), return_exceptions=True
        )
        errors = {n: r for n, r in zip(names, results, strict=True) if isinstance(r, BaseException)}
        if len(errors) == len(names):
            raise ReplicationError("no namespace took the session state", causes=errors)
        for name, error in errors.items():
            _LOG.info("geobus: session state not written to %r (%s)", name, type(error).__name__)
