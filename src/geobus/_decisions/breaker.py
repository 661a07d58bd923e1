"""The shared seen-set's breaker, without I/O: a store that failed is left alone for a while.

After the store fails, the ``Deduplicator`` does not ask it again for ``backoff``
seconds, and its policy (``store_unavailable``) applies at once meanwhile — a
black-holed Redis must not cost every message its timeout. One warning per
outage, one line when the store answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._config import StoreUnavailable
from .actions import SeenSetError

_LOG = logging.getLogger("geobus")


class StoreBreaker:
    """Whether the shared seen-set is left alone now (``down``). ``clock``: seconds."""

    def __init__(self, clock: Callable[[], float], backoff: float, when_down: StoreUnavailable) -> None:
        self._clock = clock
        self._backoff = backoff
        self._when_down = when_down
        self._down_until: float | None = None

    @property
    def down(self) -> bool:
        """The store failed less than ``backoff`` seconds ago."""
        return self._down_until is not None and self._clock() < self._down_until

    def failed(self, error: SeenSetError) -> None:
        if self._down_until is None:
            _LOG.warning(
                "geobus: the shared seen-set is unavailable (%s); new keys are %s until it is back",
                error,
                "delivered (a twin may reach another worker)" if self._when_down is StoreUnavailable.DELIVER else "held",
            )
        self._down_until = self._clock() + self._backoff

    def answered(self) -> None:
        if self._down_until is not None:
            self._down_until = None
            _LOG.info("geobus: the shared seen-set answers again")
