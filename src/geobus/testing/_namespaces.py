"""Local namespaces and proxies as plain context managers (for unittest, scripts and fixtures).

``NamespacePair`` is the one "pair of namespaces" of geobus: the tests, the
benchmarks and the drill all hold theirs in it, in-process ``LocalNamespace``s
(``local_pair``) or ``geobus local`` child processes (``process_pair``, for a
real kill -9 or SIGSTOP), with the same faults and counts on either.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol

from typing_extensions import TypeVar

from .._config import NamespaceConfig, ReplicationConfig
from .._extras import require_local_extra

# geobus.testing imports this module first: without the extra, the error names the fix.
require_local_extra("geobus.testing")

from ..local import LocalNamespace, LocalNamespaceProcess, development_key  # noqa: E402
from ._proxy import FaultProxy  # noqa: E402
from ._sdk import Proxy, sdk_proxy_options  # noqa: E402

Role = Literal["primary", "secondary"]
ROLES: tuple[Role, Role] = ("primary", "secondary")

# Either kind of namespace; a bare ``NamespacePair`` is one of in-process namespaces.
N = TypeVar("N", LocalNamespace, LocalNamespaceProcess, default=LocalNamespace)


class _Faults(Protocol):
    """What both a ``LocalNamespace`` and a child process's ``ControlClient`` take."""

    def refuse(self) -> None: ...
    def black_hole(self) -> None: ...
    def heal(self) -> None: ...
    def set_latency(self, seconds: float) -> None: ...


def _faults(namespace: LocalNamespace | LocalNamespaceProcess) -> _Faults:
    return namespace if isinstance(namespace, LocalNamespace) else namespace.control


def counts_of(namespace: LocalNamespace | LocalNamespaceProcess) -> dict[str, int]:
    """Messages ``namespace`` holds per entity path (dead-letter queues included), either kind."""
    if isinstance(namespace, LocalNamespace):
        return namespace.counts()
    counts: dict[str, int] = namespace.control.status()["counts"]
    return counts


@dataclass(frozen=True)
class NamespacePair(Generic[N]):
    """Two local namespaces, for geobus's ``primary`` and ``secondary``: both in this
    process (``LocalNamespace``, from ``local_pair``) or both child processes
    (``LocalNamespaceProcess``, from ``process_pair`` or ``of_processes``).

    Faults (``refuse``, ``black_hole``, ``set_latency``, ``heal``) act on the roles
    named, both when none is; a child process is reached through its control
    endpoint. Not a context manager itself: ``local_pair()``, ``process_pair()`` and
    the ``geobus_namespace_pair`` fixture start and stop it.
    """

    primary: N
    secondary: N

    @classmethod
    def of_processes(
        cls,
        *,
        args: Sequence[str] = (),
        stores: tuple[str | Path, str | Path] | None = None,
        startup_timeout: float = 30.0,
        entities: str | os.PathLike[str] | None = None,
    ) -> NamespacePair[LocalNamespaceProcess]:
        """Two ``geobus local`` processes, not started yet (``start``): each with ``args``
        (``geobus local``'s options), its own store file if ``stores`` are given, and its
        own development key, as two Azure namespaces have their own keys. ``entities``:
        both declare the entity definitions of this TOML file (``--entities``).

        Raises:
            ConfigurationError: ``entities`` cannot be read or has a bad definition.
        """
        primary, secondary = (
            LocalNamespaceProcess(
                args=args,
                store=stores[n - 1] if stores is not None else None,
                key=development_key(n),
                startup_timeout=startup_timeout,
                entities=entities,
            )
            for n in (1, 2)
        )
        return NamespacePair(primary, secondary)

    def __iter__(self) -> Iterator[N]:
        return iter((self.primary, self.secondary))

    @property
    def connection_strings(self) -> tuple[str, str]:
        """The primary's and the secondary's, keys included (they are local keys)."""
        return self.primary.connection_string, self.secondary.connection_string

    def config(
        self,
        *,
        primary_via: Proxy | None = None,
        secondary_via: Proxy | None = None,
        **options: Any,
    ) -> ReplicationConfig:
        """A ``ReplicationConfig`` for the pair; ``options`` are its other fields.

        ``primary_via`` / ``secondary_via``: reach that namespace through a
        ``FaultProxy`` or ``FaultProxyProcess`` (one in front of it, e.g. from
        ``fault_proxy(pair.primary)``),
        by the namespace's ``client_options`` — as for a real namespace.

        Raises:
            ConfigurationError: an option is invalid (the message names it).
        """
        primary, secondary = self.connection_strings
        return ReplicationConfig(
            primary=_namespace("primary", primary, primary_via),
            secondary=_namespace("secondary", secondary, secondary_via),
            **options,
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """Messages held per entity, per namespace: ``{"primary": {...}, "secondary": {...}}``."""
        return {"primary": counts_of(self.primary), "secondary": counts_of(self.secondary)}

    def _roles(self, roles: tuple[Role, ...]) -> list[_Faults]:
        return [_faults(self.primary if role == "primary" else self.secondary) for role in roles or ROLES]

    def refuse(self, *roles: Role) -> None:
        """Refuse new connections and reset open ones on ``roles`` (default both)."""
        for namespace in self._roles(roles):
            namespace.refuse()

    def black_hole(self, *roles: Role) -> None:
        """Accept TCP and never answer, on ``roles`` (default both)."""
        for namespace in self._roles(roles):
            namespace.black_hole()

    def set_latency(self, seconds: float, *roles: Role) -> None:
        """Answer ``seconds`` late on ``roles`` (default both)."""
        for namespace in self._roles(roles):
            namespace.set_latency(seconds)

    def heal(self, *roles: Role) -> None:
        """Clear every fault on ``roles`` (default both)."""
        for namespace in self._roles(roles):
            namespace.heal()

    def start(self) -> None:
        """Start both at once; if either fails (or Ctrl-C), stop both and raise.

        Raises:
            OSError: a port cannot be bound. RuntimeError: a process did not start.
        """
        try:
            with ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(namespace.start) for namespace in self]:
                    future.result()
        except BaseException:  # one failed, or Ctrl-C: the other may be listening already
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both, each on its own: one that fails to stop does not leave the other
        running (the first error is raised after). A process is only ever signalled by
        its own id."""
        errors: list[BaseException] = []
        for namespace in self:
            try:
                namespace.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def _namespace(role: str, connection_string: str, via: Proxy | None) -> NamespaceConfig:
    options = sdk_proxy_options(via, connection_string) if via is not None else {}
    return NamespaceConfig(name=role, connection_string=connection_string, client_options=options)


@contextlib.contextmanager
def local_pair(**options: Any) -> Iterator[NamespacePair[LocalNamespace]]:
    """Start two in-process local namespaces with the same ``options``; stop both after.

    ``options`` are ``LocalNamespace``'s (``lock_duration=2.0``, ``queues=["q"]``,
    ``entities="entities.toml"`` for the same entity definitions in both...).
    Unless ``key`` is one of them, each namespace has its own development key
    (``geobus.local.development_key(1)`` and ``(2)``), as two Azure namespaces have
    their own keys: a connection string mixed up between them is refused.

    Raises:
        OSError: a port cannot be bound. TypeError: an unknown option.
        ConfigurationError: ``entities`` cannot be read or has a bad definition.
    """
    keys = {"key": options.pop("key")} if "key" in options else None
    with (
        LocalNamespace(**(keys or {"key": development_key(1)}), **options) as primary,
        LocalNamespace(**(keys or {"key": development_key(2)}), **options) as secondary,
    ):
        yield NamespacePair(primary, secondary)


@contextlib.contextmanager
def process_pair(
    *,
    args: Sequence[str] = (),
    stores: tuple[str | Path, str | Path] | None = None,
    entities: str | os.PathLike[str] | None = None,
) -> Iterator[NamespacePair[LocalNamespaceProcess]]:
    """Start two ``geobus local`` child processes at once (``NamespacePair.of_processes``),
    both with the entity definitions of the TOML file ``entities`` if given; stop both
    after, also when the block or a start failed.

    Raises:
        RuntimeError: a process did not print its connection string in time, or exited.
        ConfigurationError: ``entities`` cannot be read or has a bad definition.
    """
    pair = NamespacePair.of_processes(args=args, stores=stores, entities=entities)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()


@contextlib.contextmanager
def fault_proxy(target: LocalNamespace | tuple[str, int], **options: Any) -> Iterator[FaultProxy]:
    """Start a ``FaultProxy`` in front of ``target`` (a local namespace or ``(host, port)``); close it after.

    ``options`` are ``FaultProxy``'s (``port``, ``connect_timeout``).

    Raises:
        OSError: the port cannot be bound. ValueError: a bad target or option.
    """
    with FaultProxy(upstream_of(target), **options) as proxy:
        yield proxy


def upstream_of(target: LocalNamespace | tuple[str, int]) -> tuple[str, int]:
    """The ``(host, port)`` a proxy in front of ``target`` forwards to."""
    if isinstance(target, LocalNamespace):
        return (target.host, target.port)
    return target
