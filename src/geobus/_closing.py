"""Context-manager behaviour shared by every closable geobus object."""

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
