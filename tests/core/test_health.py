"""Namespace health without I/O: breakers, failback hysteresis, the operator's override (fake clock)."""

from __future__ import annotations

import itertools
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusConnectionError

from geobus import (
    BreakerPolicy,
    FailbackMode,
    FailbackPolicy,
    NamespaceUnavailableError,
    OverridePolicy,
)
from geobus._decisions import health as health_module
from geobus._decisions.health import (
    BreakerState,
    CircuitBreaker,
    FailbackGate,
    Health,
    Override,
    OverrideFile,
    parse_override,
)

from .fakes import FakeClock

NAMES = ("weu", "neu")
DOWN = ServiceBusConnectionError(message="down")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


def write_override(path: Path, text: str, *, mtime: float) -> None:
    """Write the override file with an explicit mtime, so a change never hides in one timestamp tick."""
    path.write_text(text)
    os.utime(path, (mtime, mtime))


class TestCircuitBreaker:
    """Consecutive failures open it; a cool-down later exactly one probe decides."""

    def breaker(self, clock: FakeClock, threshold: int = 3, cooldown: float = 10.0) -> CircuitBreaker:
        return CircuitBreaker(BreakerPolicy(failure_threshold=threshold, cooldown=cooldown), clock)

    def open_breaker(self, breaker: CircuitBreaker) -> None:
        for _ in range(breaker.policy.failure_threshold):
            breaker.record_failure()
        assert breaker.state == BreakerState.OPEN

    def test_starts_closed_and_lets_everything_through(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock)
        assert breaker.state == BreakerState.CLOSED
        assert all(breaker.allow() for _ in range(10))
        assert (breaker.failures, breaker.retry_after()) == (0, 0.0)

    def test_opens_at_the_threshold_not_before(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock, threshold=3)
        breaker.record_failure()
        breaker.record_failure()
        assert breaker.state == BreakerState.CLOSED and breaker.allow()
        breaker.record_failure()
        assert breaker.state == BreakerState.OPEN
        assert not breaker.allow()

    def test_only_consecutive_failures_count(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock, threshold=3)
        for _ in range(5):
            breaker.record_failure()
            breaker.record_failure()
            breaker.record_success()
        assert breaker.state == BreakerState.CLOSED
        assert breaker.failures == 0

    def test_released_calls_do_not_count(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock, threshold=2)
        breaker.record_failure()
        breaker.record_released()
        assert breaker.state == BreakerState.CLOSED and breaker.failures == 1

    def test_stays_open_for_the_cooldown(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock, cooldown=10.0)
        self.open_breaker(breaker)
        assert breaker.retry_after() == pytest.approx(10.0)
        clock.advance(9.999)
        assert not breaker.allow()
        assert breaker.state == BreakerState.OPEN
        assert breaker.retry_after() == pytest.approx(0.001)

    def test_exactly_one_half_open_probe_after_the_cooldown(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock, cooldown=10.0)
        self.open_breaker(breaker)
        clock.advance(10.0)
        assert breaker.retry_after() == 0.0
        assert breaker.allow()
        assert breaker.state == BreakerState.HALF_OPEN
        assert [breaker.allow() for _ in range(5)] == [False] * 5
        clock.advance(100.0)  # time alone does not free the probe slot: an outcome does
        assert not breaker.allow()

    def test_probe_success_closes(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock)
        self.open_breaker(breaker)
        clock.advance(10.0)
        assert breaker.allow()
        breaker.record_success()
        assert breaker.state == BreakerState.CLOSED
        assert breaker.failures == 0
        assert all(breaker.allow() for _ in range(3))

    def test_probe_failure_reopens_for_another_cooldown(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock, threshold=3, cooldown=10.0)
        self.open_breaker(breaker)
        clock.advance(12.0)
        assert breaker.allow()
        breaker.record_failure()  # one failure in half-open is enough
        assert breaker.state == BreakerState.OPEN
        assert breaker.retry_after() == pytest.approx(10.0)
        clock.advance(9.0)
        assert not breaker.allow()
        clock.advance(1.0)
        assert breaker.allow()
        assert breaker.state == BreakerState.HALF_OPEN

    def test_released_probe_lets_the_next_caller_probe(self, clock: FakeClock) -> None:
        breaker = self.breaker(clock)
        self.open_breaker(breaker)
        clock.advance(10.0)
        assert breaker.allow()
        assert not breaker.allow()
        breaker.record_released()  # the probe was refused as bad input: it proved nothing
        assert breaker.state == BreakerState.HALF_OPEN
        assert breaker.allow()
        assert not breaker.allow()


class TestFailbackGate:
    """Hysteresis: N healthy probes in a row, and never within the cool-down of the last swap."""

    def gate(self, clock: FakeClock, probes: int = 3, cooldown: float = 60.0) -> FailbackGate:
        policy = FailbackPolicy(mode=FailbackMode.PREFER_PRIMARY, healthy_probes=probes, cooldown=cooldown)
        return FailbackGate(policy, clock)

    def test_needs_n_healthy_probes_in_a_row(self, clock: FakeClock) -> None:
        gate = self.gate(clock, probes=3, cooldown=0.0)
        assert [gate.observe(True), gate.observe(True)] == [False, False]
        assert gate.observe(True)

    def test_an_unhealthy_probe_restarts_the_count(self, clock: FakeClock) -> None:
        gate = self.gate(clock, probes=3, cooldown=0.0)
        answers = [gate.observe(healthy) for healthy in (True, True, False, True, True)]
        assert answers == [False] * 5
        assert gate.streak == 2
        assert gate.observe(True)

    def test_not_within_the_cooldown_of_the_last_swap(self, clock: FakeClock) -> None:
        gate = self.gate(clock, probes=2, cooldown=60.0)
        gate.swapped()
        for _ in range(10):
            clock.advance(5.0)  # 50 s of healthy probes
            assert not gate.observe(True)
        clock.advance(9.999)
        assert not gate.observe(True)
        clock.advance(0.001)
        assert gate.observe(True)

    def test_a_swap_restarts_the_streak(self, clock: FakeClock) -> None:
        gate = self.gate(clock, probes=2, cooldown=0.0)
        gate.observe(True)
        gate.swapped()
        assert gate.streak == 0
        assert not gate.observe(True)
        assert gate.observe(True)


class TestParseOverride:
    """The override file's content: validated against the two namespace names."""

    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            ({}, Override()),
            ({"active": "neu"}, Override(active="neu")),
            ({"paused": ["weu"]}, Override(paused=frozenset({"weu"}))),
            ({"active": "neu", "paused": ["weu"]}, Override(active="neu", paused=frozenset({"weu"}))),
            ({"paused": []}, Override()),
        ],
        ids=["empty", "active", "paused", "both", "nothing-paused"],
    )
    def test_valid(self, data: dict[str, Any], expected: Override) -> None:
        assert parse_override(data, NAMES) == expected

    @pytest.mark.parametrize(
        ("data", "words"),
        [
            ({"activ": "neu"}, ["unknown", "activ"]),
            ({"active": "eus"}, ["'eus'", "not one of"]),
            ({"paused": ["eus"]}, ["paused", "eus"]),
            ({"paused": "weu"}, ["paused", "list"]),
            ({"active": "weu", "paused": ["weu"]}, ["'weu'", "both forced active and paused"]),
            (["active", "weu"], ["table"]),
        ],
        ids=["unknown-key", "unknown-active", "unknown-paused", "paused-not-a-list", "active-and-paused", "not-a-table"],
    )
    def test_invalid_raises_value_error_saying_why(self, data: Any, words: list[str]) -> None:
        with pytest.raises(ValueError) as caught:
            parse_override(data, NAMES)
        for word in words:
            assert word in str(caught.value)


class TestOverrideFile:
    """Re-read when changed, at most every interval; a missing file is no override; a bad one is ignored."""

    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        return tmp_path / "override.toml"

    @pytest.fixture
    def loads(self, monkeypatch: pytest.MonkeyPatch) -> list[object]:
        """Every parse of the file, in order."""
        parsed: list[object] = []
        real_read = health_module.read_toml

        def counting_read(path: Any) -> Any:
            data = real_read(path)
            parsed.append(data)
            return data

        monkeypatch.setattr(health_module, "read_toml", counting_read)
        return parsed

    def override_file(self, path: Path, clock: FakeClock, interval: float = 2.0) -> OverrideFile:
        return OverrideFile(OverridePolicy(path=str(path), interval=interval), NAMES, clock)

    def test_no_path_is_no_override(self, clock: FakeClock) -> None:
        override = OverrideFile(OverridePolicy(), NAMES, clock)
        assert not override.refresh()
        assert override.current == Override()

    def test_missing_file_is_no_override(self, path: Path, clock: FakeClock) -> None:
        override = self.override_file(path, clock)
        assert not override.refresh()
        assert override.current == Override()

    def test_read_on_first_refresh(self, path: Path, clock: FakeClock) -> None:
        write_override(path, 'active = "neu"\npaused = ["weu"]\n', mtime=1.0)
        override = self.override_file(path, clock)
        assert override.refresh()
        assert override.current == Override(active="neu", paused=frozenset({"weu"}))

    def test_interval_respected(self, path: Path, clock: FakeClock, loads: list[object]) -> None:
        override = self.override_file(path, clock, interval=2.0)
        override.refresh()
        write_override(path, 'active = "neu"\n', mtime=1.0)
        clock.advance(1.999)
        assert not override.refresh()
        assert override.current == Override()
        assert loads == []
        clock.advance(0.001)
        assert override.refresh()
        assert override.current.active == "neu"
        assert len(loads) == 1

    def test_unchanged_file_is_not_parsed_again(self, path: Path, clock: FakeClock, loads: list[object]) -> None:
        write_override(path, 'active = "neu"\n', mtime=1.0)
        override = self.override_file(path, clock)
        assert override.refresh()
        for _ in range(5):
            clock.advance(10.0)
            assert not override.refresh()
        assert len(loads) == 1

    def test_change_detected(self, path: Path, clock: FakeClock) -> None:
        write_override(path, 'active = "neu"\n', mtime=1.0)
        override = self.override_file(path, clock)
        override.refresh()
        write_override(path, 'paused = ["neu"]\n', mtime=2.0)
        clock.advance(2.0)
        assert override.refresh()
        assert override.current == Override(paused=frozenset({"neu"}))

    def test_same_override_rewritten_is_no_change(self, path: Path, clock: FakeClock, loads: list[object]) -> None:
        write_override(path, 'active = "neu"\n', mtime=1.0)
        override = self.override_file(path, clock)
        override.refresh()
        write_override(path, 'active = "neu"  # still\n', mtime=2.0)
        clock.advance(2.0)
        assert not override.refresh()
        assert len(loads) == 2
        assert override.current.active == "neu"

    def test_removed_file_ends_the_override(self, path: Path, clock: FakeClock) -> None:
        write_override(path, 'active = "neu"\n', mtime=1.0)
        override = self.override_file(path, clock)
        override.refresh()
        path.unlink()
        clock.advance(2.0)
        assert override.refresh()
        assert override.current == Override()

    @pytest.mark.parametrize(
        "text",
        ['active = "neu', 'actve = "neu"\n', 'active = "eus"\n', 'active = "neu"\npaused = ["neu"]\n'],
        ids=["not-toml", "unknown-key", "unknown-name", "active-and-paused"],
    )
    def test_bad_file_keeps_the_last_good_override_and_is_logged(
        self, path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, text: str
    ) -> None:
        write_override(path, 'active = "neu"\n', mtime=1.0)
        override = self.override_file(path, clock)
        override.refresh()
        write_override(path, text, mtime=2.0)
        clock.advance(2.0)
        with caplog.at_level(logging.ERROR, logger="geobus"):
            assert not override.refresh()
        assert override.current == Override(active="neu")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert str(path) in errors[0].getMessage()
        assert "ignoring the override file" in errors[0].getMessage()

    def test_bad_file_is_logged_once_not_every_interval(
        self, path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        write_override(path, "not toml at all [", mtime=1.0)
        override = self.override_file(path, clock)
        with caplog.at_level(logging.ERROR, logger="geobus"):
            for _ in range(5):
                override.refresh()
                clock.advance(2.0)
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
        assert override.current == Override()

    def test_fixed_file_is_applied(self, path: Path, clock: FakeClock) -> None:
        write_override(path, 'active = "eus"\n', mtime=1.0)
        override = self.override_file(path, clock)
        assert not override.refresh()
        write_override(path, 'active = "weu"\n', mtime=2.0)
        clock.advance(2.0)
        assert override.refresh()
        assert override.current.active == "weu"


def make_health(clock: FakeClock, *, mode: FailbackMode = FailbackMode.PREFER_PRIMARY, **options: Any) -> Health:
    return Health(
        list(NAMES),
        breaker=options.pop("breaker", BreakerPolicy(failure_threshold=2, cooldown=10.0)),
        failback=FailbackPolicy(mode=mode, probe_interval=5.0, healthy_probes=3, cooldown=60.0),
        clock=clock,
        **options,
    )


def passive_send(health: Health, up: Callable[[str], bool]) -> str | None:
    """One passive send as the sender makes it; returns the namespace that took it."""
    health.refresh()
    for name in health.passive_order():
        if health.unavailable(name) is not None:
            continue
        if up(name):
            health.record(name, None)
            health.succeeded_on(name)
            return name
        health.record(name, DOWN)
    return None


class TestHealth:
    """Roles, breakers, failback and the override together, over simulated minutes."""

    def test_failover_swaps(self, clock: FakeClock) -> None:
        health = make_health(clock)
        assert passive_send(health, lambda name: name != "weu") == "neu"
        assert health.roles.active == "neu"
        assert health.passive_order() == ("neu", "weu")
        assert health.failbacks == 0
        assert health.wants_failback

    def test_stay_mode_never_fails_back(self, clock: FakeClock) -> None:
        health = make_health(clock, mode=FailbackMode.STAY)
        passive_send(health, lambda name: name != "weu")
        assert not health.wants_failback
        for _ in range(100):
            clock.advance(5.0)
            assert not health.observe_probe(True)
        assert health.roles.active == "neu" and health.failbacks == 0

    def test_failback_after_n_probes_and_the_cooldown(self, clock: FakeClock) -> None:
        health = make_health(clock)
        passive_send(health, lambda name: name != "weu")
        answers = []
        for _ in range(12):  # a probe every 5 s: the 12th is 60 s after the failover
            clock.advance(5.0)
            answers.append(health.observe_probe(True))
        assert answers == [False] * 11 + [True]
        assert health.roles.active == "weu"
        assert health.failbacks == 1
        assert not health.wants_failback

    def test_healthy_probe_closes_the_preferred_breaker(self, clock: FakeClock) -> None:
        health = make_health(clock)
        passive_send(health, lambda name: name != "weu")
        health.record("weu", DOWN)  # the second failure in a row: threshold 2
        assert health.breakers["weu"].state == BreakerState.OPEN
        health.observe_probe(True)
        assert health.breakers["weu"].state == BreakerState.CLOSED

    def test_never_fails_back_on_two_healthy_probes_in_three(self, clock: FakeClock) -> None:
        health = make_health(clock)
        passive_send(health, lambda name: name != "weu")
        pattern = [True, True, False]
        for probe in range(30 * 60 // 5):  # half an hour of probes
            clock.advance(5.0)
            assert not health.observe_probe(pattern[probe % 3])
        assert health.roles.active == "neu"
        assert health.failbacks == 0

    def test_flapping_primary_fails_back_at_most_once_per_cooldown(self, clock: FakeClock) -> None:
        health = make_health(clock)
        rng = random.Random(20240601)
        start = clock()
        # The primary flaps: up for 5-90 s, down for 1-20 s, for 30 minutes. The secondary stays up.
        down: list[tuple[float, float]] = []
        t = start
        while t < start + 1800:
            t += rng.uniform(5, 90)
            length = rng.uniform(1, 20)
            down.append((t, t + length))
            t += length

        def up(name: str) -> bool:
            now = clock()
            return name != "weu" or not any(begin <= now < end for begin, end in down)

        swaps: list[tuple[str, float]] = []
        probes: list[tuple[float, bool]] = []
        for second in range(1, 1801):
            clock.advance(1.0)
            active = health.roles.active
            assert passive_send(health, up) is not None
            if health.roles.active != active:  # a send only ever moves the roles by failing over
                swaps.append(("failover", clock()))
            if second % 5 == 0:  # the client's probe task, every probe_interval
                if health.wants_failback:
                    healthy = up("weu")
                    probes.append((clock(), healthy))
                    if health.observe_probe(healthy):
                        swaps.append(("failback", clock()))
                else:
                    health.observe_probe(False)

        failbacks = [(i, when) for i, (kind, when) in enumerate(swaps) if kind == "failback"]
        assert len(failbacks) >= 3, "the scenario should exercise failback"
        assert health.failbacks == len(failbacks)
        for index, when in failbacks:
            previous_swap = swaps[index - 1][1]
            assert when - previous_swap >= 60.0
            recent = [healthy for at, healthy in probes if previous_swap < at <= when]
            assert recent[-3:] == [True, True, True]
        failback_times = [when for _, when in failbacks]
        assert all(later - earlier >= 60.0 for earlier, later in itertools.pairwise(failback_times))

    def test_forced_active_never_swaps(self, clock: FakeClock, tmp_path: Path) -> None:
        path = tmp_path / "override.toml"
        write_override(path, 'active = "neu"\n', mtime=1.0)
        health = make_health(clock, override=OverridePolicy(path=str(path), interval=1.0))
        health.refresh()
        assert health.roles.active == "neu"
        assert health.passive_order() == ("neu", "weu")
        # The forced namespace fails: this send goes to the other, roles stay.
        assert passive_send(health, lambda name: name != "neu") == "weu"
        assert health.passive_order() == ("neu", "weu")
        assert not health.succeeded_on("weu")  # a failover for that send only: no swap
        assert not health.wants_failback
        for _ in range(50):
            clock.advance(5.0)
            assert not health.observe_probe(True)
        assert health.failbacks == 0
        assert health.roles.active == "neu"

    def test_forcing_the_active_namespace_counts_as_a_swap_for_failback(
        self, clock: FakeClock, tmp_path: Path
    ) -> None:
        path = tmp_path / "override.toml"
        write_override(path, 'active = "neu"\n', mtime=1.0)
        health = make_health(clock, override=OverridePolicy(path=str(path), interval=1.0))
        health.refresh()
        path.unlink()  # the operator lifts the override: neu stays active, failback may start
        clock.advance(1.0)
        health.refresh()
        assert health.override.current == Override()
        assert health.roles.active == "neu" and health.wants_failback
        answers = []
        for _ in range(12):
            clock.advance(5.0)
            answers.append(health.observe_probe(True))
        # The cool-down runs from the forced swap (1 s before the lift): the 12th probe is 61 s later.
        assert answers == [False] * 11 + [True]
        assert health.roles.active == "weu"

    def test_paused_namespace_is_unavailable_without_touching_its_breaker(
        self, clock: FakeClock, tmp_path: Path
    ) -> None:
        path = tmp_path / "override.toml"
        write_override(path, 'paused = ["weu"]\n', mtime=1.0)
        health = make_health(clock, override=OverridePolicy(path=str(path), interval=1.0))
        health.refresh()
        skipped = health.unavailable("weu")
        assert isinstance(skipped, NamespaceUnavailableError)
        assert (skipped.namespace, skipped.reason) == ("weu", "paused by operator")
        assert health.unavailable("neu") is None
        assert passive_send(health, lambda name: True) == "neu"
        assert health.breakers["weu"].state == BreakerState.CLOSED
        assert health.breakers["weu"].failures == 0

    def test_open_breaker_is_unavailable_with_the_retry_time(self, clock: FakeClock) -> None:
        health = make_health(clock, breaker=BreakerPolicy(failure_threshold=1, cooldown=10.0))
        health.record("weu", DOWN)
        skipped = health.unavailable("weu")
        assert isinstance(skipped, NamespaceUnavailableError)
        assert skipped.reason == "circuit open (retry in 10.0 s)"
        clock.advance(10.0)
        assert health.unavailable("weu") is None  # the half-open probe slot is now taken
        assert isinstance(health.unavailable("weu"), NamespaceUnavailableError)

    def test_held_back_says_why_and_takes_no_probe_slot(self, clock: FakeClock) -> None:
        health = make_health(clock, breaker=BreakerPolicy(failure_threshold=1, cooldown=10.0))
        assert health.held_back("weu") is None and health.is_clear("weu")
        health.record("weu", DOWN)
        clock.advance(10.0)  # a probe may go through now
        for _ in range(3):  # asking, however often, leaves the probe slot for a call
            skipped = health.held_back("weu")
            assert isinstance(skipped, NamespaceUnavailableError)
            assert skipped.reason == "circuit open (retry in 0.0 s)" and not health.is_clear("weu")
        assert health.breakers["weu"].state == BreakerState.OPEN
        assert health.unavailable("weu") is None  # the call takes the slot: half-open
        assert isinstance(health.held_back("weu"), NamespaceUnavailableError)  # still not clear

    def test_rejection_releases_the_probe_slot(self, clock: FakeClock) -> None:
        health = make_health(clock, breaker=BreakerPolicy(failure_threshold=1, cooldown=10.0))
        health.record("weu", DOWN)
        clock.advance(10.0)
        assert health.unavailable("weu") is None
        health.record("weu", MessageSizeExceededError(message="too large"), availability=False)
        assert health.unavailable("weu") is None

    def test_breaker_states(self, clock: FakeClock) -> None:
        health = make_health(clock, breaker=BreakerPolicy(failure_threshold=1, cooldown=10.0))
        health.record("neu", DOWN)
        assert health.breaker_states() == {"weu": "closed", "neu": "open"}


def test_no_failback_into_a_paused_primary(tmp_path: Path) -> None:
    override = tmp_path / "override.toml"
    override.write_text('paused = ["weu"]\n')
    clock = FakeClock(0.0)
    health = Health(
        ["weu", "neu"],
        failback=FailbackPolicy(mode="prefer_primary", healthy_probes=1, cooldown=0),
        override=OverridePolicy(path=str(override), interval=1.0),
        clock=clock,
    )
    health.refresh()
    assert health.succeeded_on("neu")
    assert not health.wants_failback
    assert not health.observe_probe(True)
    assert health.roles.active == "neu"
