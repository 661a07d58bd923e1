"""Context-manager behaviour shared by every closable geobus object.

``Closing`` and ``AsyncClosing``: ``with`` closes the object on the way out.
``Serving``: ``with`` also starts it on the way in (a server, a child process),
and closes it again if starting fails.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from typing_extensions import Self


class Closing:
    """``with obj:`` calls ``obj.close()`` on the way out."""

    def close(self) -> Any:  # pragma: no cover - always overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Serving(Closing):
    """``with obj:`` calls ``obj.start()``, then ``obj.close()`` on the way out.

    If ``start`` raises, ``close`` releases what it had taken before the error
    is passed on.
    """

    def start(self) -> Self:  # pragma: no cover - always overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise


class AsyncClosing:
    """``async with obj:`` awaits ``obj.close()`` on the way out."""

    async def close(self) -> Any:  # pragma: no cover - always overridden
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
