"""What the sync sender and receiver share: the client's portal and the async core run on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from .._closing import Closing
from .portal import Portal

_T = TypeVar("_T")


class _Closable(Protocol):
    async def close(self) -> None: ...


_Core = TypeVar("_Core", bound=_Closable)


async def _value(fn: Callable[..., _T], *args: Any) -> _T:
    return fn(*args)


class Shell(Closing, Generic[_Core]):
    """A sync face over one async core that lives on the client's private loop."""

    def __init__(self, portal: Portal, core: _Core) -> None:
        self._portal = portal
        self._core = core

    def _on_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the loop's thread, for state only the loop may touch."""
        return self._portal.run(_value(fn, *args))

    def __repr__(self) -> str:
        return repr(self._core)

    def close(self) -> None:
        """Stop its background work and close its links on both namespaces (the async
        class's ``close`` has the details). Safe to call twice, and after its client
        closed (a no-op then: the client's ``close`` closed it)."""
        if self._portal.closed:
            return
        self._portal.run(self._core.close())
