"""Namespace health, without I/O: circuit breakers, failback hysteresis, the operator's override.

One ``Health`` per client is shared by all its senders (a namespace's health is
not per entity). Time comes from an injected monotonic clock, so unit tests
walk breakers and failback through minutes in microseconds.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._config import BreakerPolicy, FailbackMode, FailbackPolicy, OverridePolicy, read_toml
from .._errors import NamespaceUnavailableError
from .judge import PassiveRoles

_LOG = logging.getLogger("geobus")

Clock = Callable[[], float]


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure breaker with a cool-down and a single half-open probe."""

    def __init__(self, policy: BreakerPolicy, clock: Clock = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0  # availability errors in a row
        self._opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May a call go to this namespace now? In half-open, only the first caller may."""
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.OPEN:
            if self._clock() - self._opened_at < self.policy.cooldown:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.state != BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.cooldown - self._clock())

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probing = False

    def record_failure(self) -> None:
        self.failures += 1
        self._probing = False
        if self.state == BreakerState.HALF_OPEN or self.failures >= self.policy.failure_threshold:
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()

    def record_released(self) -> None:
        """The call neither proved nor disproved health (it was rejected as bad input)."""
        if self.state == BreakerState.HALF_OPEN:
            self._probing = False


class FailbackGate:
    """Decides when passive mode may come home to the preferred namespace.

    Fail back after ``healthy_probes`` good probes in a row, and never sooner
    than ``cooldown`` after the last swap (failover or failback): a flapping
    primary gets at most one failback per cool-down.
    """

    def __init__(self, policy: FailbackPolicy, clock: Clock = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self.streak = 0
        self._last_swap = -float("inf")

    def swapped(self) -> None:
        self._last_swap = self._clock()
        self.streak = 0

    def observe(self, healthy: bool) -> bool:
        """Record one probe of the preferred namespace; True when it is time to fail back."""
        self.streak = self.streak + 1 if healthy else 0
        if self.streak < self.policy.healthy_probes:
            return False
        return self._clock() - self._last_swap >= self.policy.cooldown


@dataclass(frozen=True)
class Override:
    """What the operator asked for: a forced active namespace, paused namespaces."""

    active: str | None = None
    paused: frozenset[str] = frozenset()


def parse_override(data: object, names: Sequence[str]) -> Override:
    """Validate the override file's content.

    Raises:
        ValueError: an unknown key or namespace name, or both namespaces paused
            with one forced active.
    """
    if not isinstance(data, dict):
        raise ValueError("the override must be a table")
    unknown = set(data) - {"active", "paused"}
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)} (known: active, paused)")
    active = data.get("active")
    if active is not None and active not in names:
        raise ValueError(f"active = {active!r} is not one of {list(names)}")
    paused = data.get("paused", [])
    if not isinstance(paused, list) or any(name not in names for name in paused):
        raise ValueError(f"paused = {paused!r} must be a list of {list(names)}")
    if active is not None and active in paused:
        raise ValueError(f"{active!r} cannot be both forced active and paused")
    return Override(active=active, paused=frozenset(paused))


class OverrideFile:
    """Re-reads the override file when it changes, at most every ``interval`` seconds."""

    def __init__(self, policy: OverridePolicy, names: Sequence[str], clock: Clock = time.monotonic) -> None:
        self.policy = policy
        self._names = tuple(names)
        self._clock = clock
        self.current = Override()
        self._checked_at = -float("inf")
        self._seen: tuple[float, int] | None = None

    def due(self) -> bool:
        """Is the file to be looked at again now? Read-only."""
        return self.policy.path is not None and self._clock() - self._checked_at >= self.policy.interval

    def refresh(self) -> bool:
        """Re-read the file if it is due and changed; True if the override changed."""
        path = self.policy.path
        if path is None or not self.due():
            return False
        self._checked_at = self._clock()
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            _LOG.error("geobus: cannot read the override file %s: %s; keeping %s", self.policy.path, exc, self.current)
            return False
        else:
            stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            new = Override() if stamp is None else parse_override(read_toml(path), self._names)
        except (OSError, ValueError) as exc:  # TOMLDecodeError is a ValueError
            _LOG.error("geobus: ignoring the override file %s: %s; keeping %s", self.policy.path, exc, self.current)
            return False
        if new == self.current:
            return False
        _LOG.warning("geobus: operator override now %s (was %s)", new, self.current)
        self.current = new
        return True


class Health:
    """Roles, breakers, failback and the override for one client's two namespaces.

    Not thread-safe: the client's event loop owns it.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        breaker: BreakerPolicy | None = None,
        failback: FailbackPolicy | None = None,
        override: OverridePolicy | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.roles = PassiveRoles(names)
        self.preferred = self.roles.names[0]
        self.breakers = {name: CircuitBreaker(breaker or BreakerPolicy(), clock) for name in self.roles.names}
        self.failback = failback or FailbackPolicy()
        self.gate = FailbackGate(self.failback, clock)
        self.override = OverrideFile(override or OverridePolicy(), self.roles.names, clock)
        self.failbacks = 0  # per client; failovers are counted per sender, by its replicator

    # -- what to try ---------------------------------------------------------------------

    @property
    def refresh_due(self) -> bool:
        """``refresh`` would look at the override file now. Read-only."""
        return self.override.due()

    def refresh(self) -> None:
        """Apply a changed override file (cheap when nothing is due)."""
        if self.override.refresh():
            forced = self.override.current.active
            if forced is not None and forced != self.roles.active:
                self.roles.active = forced
                self.gate.swapped()

    def unavailable(self, name: str) -> NamespaceUnavailableError | None:
        """Why ``name`` must be skipped now, or None if a call may go to it.

        A None answer may take the breaker's half-open probe slot: the caller must
        then ``record`` the outcome.
        """
        return self._skipped(name, CircuitBreaker.allow)

    def is_clear(self, name: str) -> bool:
        """Neither paused nor behind a breaker that is open or half-open. Read-only: for a
        call that proves nothing either way (a warm-up, sizing a batch) and must not take
        the probe slot."""
        return self.held_back(name) is None

    def held_back(self, name: str) -> NamespaceUnavailableError | None:
        """Why ``name`` is not clear (``is_clear``), or None if it is. Read-only."""
        return self._skipped(name, lambda breaker: breaker.state == BreakerState.CLOSED)

    def _skipped(
        self, name: str, lets_through: Callable[[CircuitBreaker], bool]
    ) -> NamespaceUnavailableError | None:
        if name in self.override.current.paused:
            return NamespaceUnavailableError(name, "paused by operator")
        breaker = self.breakers[name]
        if not lets_through(breaker):
            return NamespaceUnavailableError(name, f"circuit open (retry in {breaker.retry_after():.1f} s)")
        return None

    def passive_order(self) -> tuple[str, str]:
        """The namespaces passive mode tries, in order: the active one first (a forced
        namespace is made active by ``refresh`` and never swapped while forced)."""
        return self.roles.order()

    # -- what happened ---------------------------------------------------------------------

    def record(self, name: str, error: BaseException | None, *, availability: bool = True) -> None:
        """Tell ``name``'s breaker how a call went: a success closes it; an error counts
        toward opening it only when ``availability`` (the sender passes
        ``SendJudge.counts_against``: an outage, never the message's fault or an
        unknown error); any other error just gives back a half-open probe slot."""
        breaker = self.breakers[name]
        if error is None:
            breaker.record_success()
        elif availability:
            breaker.record_failure()
        else:
            breaker.record_released()

    def succeeded_on(self, name: str) -> bool:
        """A passive send landed on ``name``; True if that made it the active namespace.

        A forced active namespace stays active: a send that had to go elsewhere is
        a failover for that send only.
        """
        if self.override.current.active is not None:
            return False
        if self.roles.succeeded_on(name):
            self.gate.swapped()
            return True
        return False

    @property
    def wants_failback(self) -> bool:
        return (
            self.failback.mode == FailbackMode.PREFER_PRIMARY
            and self.override.current.active is None
            and self.preferred not in self.override.current.paused
            and self.roles.active != self.preferred
        )

    def observe_probe(self, healthy: bool) -> bool:
        """Record a probe of the preferred namespace; True if that failed back to it."""
        if not self.wants_failback:
            self.gate.streak = 0
            return False
        if healthy:
            self.breakers[self.preferred].record_success()
        if not self.gate.observe(healthy):
            return False
        self.roles.active = self.preferred
        self.failbacks += 1
        self.gate.swapped()
        _LOG.warning("geobus: namespace %r healthy again; failed back to it", self.preferred)
        return True

    def breaker_states(self) -> dict[str, str]:
        return {name: breaker.state.value for name, breaker in self.breakers.items()}
