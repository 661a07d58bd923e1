"""Owning a session in two namespaces (``Ownership``), the store's lease, and the state envelope, with fakes."""

from __future__ import annotations

import asyncio
import datetime
import random
from typing import Any

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusConnectionError,
    SessionCannotBeLockedError,
)

from geobus._config import ReplicationMode
from geobus._decisions.session_state import MAGIC, SessionState, decode, newest
from geobus._engine.sessions.ownership import Ownership, SessionLease, lease_key
from geobus._engine.sessions.state import ReplicatedState
from geobus._errors import ReplicationError
from geobus._storage.seenset.memory import MemorySeenSet
from geobus.testing import FakeClock


class Broker:
    """Who holds which session in one namespace, shared by the fake channels of several receivers."""

    def __init__(self, sessions: list[str] | None = None) -> None:
        self.holders: dict[str, object] = {}
        self.sessions = list(sessions or [])  # offered to next-available, in order
        self.down = False
        self.reads_down = False  # get_state fails (a timeout), set_state still works
        self.state: dict[str, bytes | None] = {}


class FakeSessionChannel:
    """A ``SessionChannel`` over a ``Broker``: lock, reset, state; nothing is received."""

    def __init__(self, name: str, broker: Broker, *, offer_delay: float = 0.0) -> None:
        self.name = name
        self.broker = broker
        self.held: str | None = None
        self.offer_delay = offer_delay
        self.managing = False

    def when_idle(self, wake: Any) -> None:
        pass  # never managing: the pump is never held off

    @property
    def session_id(self) -> str | None:
        return self.held

    @property
    def locked_until(self) -> datetime.datetime | None:
        return None

    async def lock(self, target: Any, *, timeout: float) -> str:
        if self.broker.down:
            raise ServiceBusConnectionError(message="down")
        if target == NEXT_AVAILABLE_SESSION:
            await asyncio.sleep(self.offer_delay)
            free = [s for s in self.broker.sessions if s not in self.broker.holders]
            if not free:
                raise OperationTimeoutError(message="no session")
            target = free[0]
        holder = self.broker.holders.get(target)
        if holder is not None and holder is not self:
            raise SessionCannotBeLockedError(message="held")
        self.broker.holders[target] = self
        self.held = target
        return str(target)

    async def reset(self) -> None:
        if self.held is not None and self.broker.holders.get(self.held) is self:
            del self.broker.holders[self.held]
        self.held = None

    async def get_state(self, *, timeout: float) -> bytes | None:
        if self.broker.down or self.broker.reads_down:
            raise ServiceBusConnectionError(message="down")
        return self.broker.state.get(self.held or "")

    async def set_state(self, state: bytes | None, *, timeout: float) -> None:
        if self.broker.down:
            raise ServiceBusConnectionError(message="down")
        self.broker.state[self.held or ""] = state


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def owner(brokers: dict[str, Broker], target: Any, *, lease: SessionLease | None = None, attempts: int = 3, **delays: float) -> Ownership:
    channels = {name: FakeSessionChannel(name, broker, offer_delay=delays.get(name, 0.0)) for name, broker in brokers.items()}
    return Ownership(channels, target=target, attempts=attempts, attach_timeout=1.0, lease=lease, sleep=no_sleep, rng=random.Random(1))  # type: ignore[arg-type]


class TestNamed:
    """A named session is locked in both namespaces; a namespace that is down is attached later."""

    def test_locked_in_both(self) -> None:
        brokers = {"primary": Broker(), "secondary": Broker()}
        ownership = owner(brokers, "s")
        assert asyncio.run(ownership.acquire()) == "s"
        assert ownership.attached == {"primary", "secondary"}

    def test_a_namespace_down_is_left_for_the_background(self) -> None:
        brokers = {"primary": Broker(), "secondary": Broker()}
        brokers["primary"].down = True
        ownership = owner(brokers, "s")

        async def run() -> bool:
            await ownership.acquire()
            assert ownership.attached == {"secondary"}
            brokers["primary"].down = False
            return await ownership.attach("primary")

        assert asyncio.run(run()) and ownership.attached == {"primary", "secondary"}

    def test_held_elsewhere_in_one_namespace_lets_go_of_the_other_and_gives_up_after_the_attempts(self) -> None:
        brokers = {"primary": Broker(), "secondary": Broker()}
        brokers["secondary"].holders["s"] = object()
        ownership = owner(brokers, "s", attempts=3)
        with pytest.raises(SessionCannotBeLockedError):
            asyncio.run(ownership.acquire())
        assert "s" not in brokers["primary"].holders  # never kept half of it

    def test_every_namespace_down_raises_its_error(self) -> None:
        brokers = {"primary": Broker(), "secondary": Broker()}
        for broker in brokers.values():
            broker.down = True
        with pytest.raises(ServiceBusConnectionError):
            asyncio.run(owner(brokers, "s").acquire())


class TestNextAvailable:
    """Next-available: taken where offered first, then locked by name in the other namespace."""

    def test_the_first_offer_wins_and_the_other_namespace_locks_it_by_name(self) -> None:
        brokers = {"primary": Broker(["x"]), "secondary": Broker(["y"])}
        ownership = owner(brokers, NEXT_AVAILABLE_SESSION, primary=0.05)
        assert asyncio.run(ownership.acquire()) == "y"
        assert brokers["primary"].holders.get("y") is not None and "x" not in brokers["primary"].holders

    def test_no_session_anywhere_times_out(self) -> None:
        brokers = {"primary": Broker(), "secondary": Broker()}
        with pytest.raises(OperationTimeoutError):
            asyncio.run(owner(brokers, NEXT_AVAILABLE_SESSION).acquire())

    def test_two_receivers_never_share_a_session(self) -> None:
        brokers = {"primary": Broker(["a", "b"]), "secondary": Broker(["a", "b"])}
        one, two = owner(brokers, NEXT_AVAILABLE_SESSION), owner(brokers, NEXT_AVAILABLE_SESSION)

        async def run() -> list[str]:
            return list(await asyncio.gather(one.acquire(), two.acquire()))

        assert sorted(asyncio.run(run())) == ["a", "b"]

    def test_contested_in_the_other_namespace_is_skipped_for_another_session(self) -> None:
        brokers = {"primary": Broker(["a", "b"]), "secondary": Broker(["a", "b"])}
        brokers["secondary"].holders["a"] = object()  # a's owner reaches only the secondary (partition)
        ownership = owner(brokers, NEXT_AVAILABLE_SESSION, secondary=0.05)
        # The primary offers a first; the secondary refuses a by name: let go, try again. The
        # primary offers a again (it has the oldest message): skipped, the secondary's b is taken.
        assert asyncio.run(ownership.acquire()) == "b"
        assert "a" not in brokers["primary"].holders
        assert ownership.attached == {"primary", "secondary"}

    def test_only_contested_sessions_on_offer_time_out_as_the_sdk_does(self) -> None:
        brokers = {"primary": Broker(["a"]), "secondary": Broker(["a"])}
        brokers["secondary"].holders["a"] = object()
        ownership = owner(brokers, NEXT_AVAILABLE_SESSION, attempts=5)
        with pytest.raises(OperationTimeoutError):
            asyncio.run(ownership.acquire())
        assert "a" not in brokers["primary"].holders  # nothing kept

    def test_a_named_session_held_elsewhere_still_cannot_be_locked(self) -> None:
        brokers = {"primary": Broker(), "secondary": Broker()}
        brokers["primary"].holders["s"] = object()
        with pytest.raises(SessionCannotBeLockedError):
            asyncio.run(owner(brokers, "s", attempts=2).acquire())


class TestLease:
    """With a shared store, the session's lease is the one lock every receiver must pass."""

    def test_a_held_lease_keeps_a_second_receiver_out_even_where_a_namespace_is_down(self) -> None:
        clock = FakeClock()
        store = MemorySeenSet(max_entries=100, clock=clock)
        one_view = {"primary": Broker(), "secondary": Broker()}
        two_view = {"primary": Broker(), "secondary": Broker()}  # a partition: each sees its own namespaces
        one = owner(one_view, "s", lease=SessionLease(store, "one", "q", lease=3.0))
        two = owner(two_view, "s", lease=SessionLease(store, "two", "q", lease=3.0), attempts=2)

        async def run() -> None:
            await one.acquire()
            with pytest.raises(SessionCannotBeLockedError):
                await two.acquire()
            assert await one.lease.renew()  # type: ignore[union-attr]
            clock.advance(3.0)  # one died: its lease runs out
            assert not await one.lease.renew()  # type: ignore[union-attr]
            assert await two.acquire() == "s"

        asyncio.run(run())

    def test_a_lease_key_is_apart_from_message_keys(self) -> None:
        assert lease_key("q", "s").startswith("x:session:")

    def test_a_lease_key_ignores_the_entity_names_case_not_the_sessions(self) -> None:
        assert lease_key("Orders/Subscriptions/Audit", "s") == lease_key("orders/subscriptions/audit", "s")
        assert lease_key("q", "S") != lease_key("q", "s")  # session ids are case-sensitive


class TestState:
    """The state envelope, and the newest version winning across namespaces."""

    def test_round_trip(self) -> None:
        state = SessionState(3, b"\x00user\n", {"p.1": 4})
        assert decode(state.encode()) == state
        assert decode(SessionState(2, None).encode()).user is None

    @pytest.mark.parametrize("raw", [b"plain", "text", MAGIC + b"not json\nx", MAGIC + b'{"v": 1}'])
    def test_anything_else_is_version_zero_user_state(self, raw: bytes | str) -> None:
        state = decode(raw)
        assert state.version == 0 and state.user == (raw.encode() if isinstance(raw, str) else raw)

    def test_equal_versions_are_told_apart_by_time_then_writer_whatever_the_read_order(self) -> None:
        older = SessionState(4, b"primary's stale", {}, written_at=100.0, writer="a")
        later = SessionState(4, b"secondary's", {}, written_at=160.0, writer="b")
        assert newest([older, later]).user == newest([later, older]).user == b"secondary's"
        same_time = [SessionState(4, b"x", {}, 100.0, "a"), SessionState(4, b"y", {}, 100.0, "b")]
        assert newest(same_time).user == newest(same_time[::-1]).user == b"y"
        assert decode(later.encode()) == later

    def test_newest_wins_and_marks_only_move_forward(self) -> None:
        merged = newest([SessionState(1, b"old", {"p": 9}), SessionState(2, b"new", {"p": 3, "q": 1})])
        assert (merged.version, merged.user, dict(merged.marks)) == (2, b"new", {"p": 9, "q": 1})

    def test_passive_writes_the_active_namespace_then_the_other_best_effort(self) -> None:
        brokers = {"primary": Broker(), "secondary": Broker()}
        channels = {n: FakeSessionChannel(n, b) for n, b in brokers.items()}
        for channel in channels.values():
            channel.held = "s"
        state = ReplicatedState(
            channels,  # type: ignore[arg-type]
            mode=ReplicationMode.PASSIVE,
            attached=lambda: {"primary", "secondary"},
            active=lambda: "secondary",
            marks=lambda: {"p": 2},
            timeout=1.0,
        )

        async def run() -> None:
            await state.write(b"one")
            brokers["primary"].down = True
            await state.write(b"two")  # the primary misses it: best effort
            brokers["primary"].down = False
            assert (await state.read()).user == b"two"
            brokers["secondary"].down = True
            brokers["primary"].down = True
            with pytest.raises(ReplicationError):
                await state.write(b"three")

        asyncio.run(run())
        assert decode(brokers["secondary"].state["s"]).version == 2
        assert decode(brokers["primary"].state["s"]).version == 1

    def test_marks_are_never_written_over_a_state_not_read_from_every_namespace(self) -> None:
        brokers, state, marks, app_state = _held_state(ReplicationMode.ACTIVE)

        async def run() -> None:
            for broker in brokers.values():
                broker.reads_down = True
            with pytest.raises(ReplicationError):
                await state.read()  # at attach: the receiver goes on with no marks
            brokers["primary"].reads_down = False
            marks["p"] = 7  # messages settled: the marks moved
            await state.write_marks()  # the secondary's state is still unknown: nothing written
            assert brokers["primary"].state["s"] == brokers["secondary"].state["s"] == app_state
            brokers["secondary"].reads_down = False
            await state.write_marks()

        asyncio.run(run())
        for broker in brokers.values():
            written = decode(broker.state["s"])
            assert (written.version, written.user, dict(written.marks)) == (4, b"the application's", {"p": 7})

    def test_a_namespace_read_while_held_that_stops_answering_does_not_hold_the_marks_back(self) -> None:
        brokers, state, marks, app_state = _held_state(ReplicationMode.PASSIVE)

        async def run() -> None:
            await state.read()  # both read at attach
            brokers["primary"].down = True  # a failover: the primary stops answering
            marks["p"] = 7
            await state.write_marks()

        asyncio.run(run())
        written = decode(brokers["secondary"].state["s"])
        assert (written.version, written.user, dict(written.marks)) == (4, b"the application's", {"p": 7})
        assert brokers["primary"].state["s"] == app_state


def _held_state(mode: ReplicationMode) -> tuple[dict[str, Broker], ReplicatedState, dict[str, int], bytes]:
    """A session held in both namespaces, each with the application's state (version 3) and
    marks the test moves: (brokers, state, marks, the application's encoded state)."""
    brokers = {"primary": Broker(), "secondary": Broker()}
    channels = {n: FakeSessionChannel(n, b) for n, b in brokers.items()}
    app_state = SessionState(3, b"the application's", {"p": 1}, 50.0, "earlier-owner").encode()
    for name, channel in channels.items():
        channel.held = "s"
        brokers[name].state["s"] = app_state
    marks = {"p": 1}
    state = ReplicatedState(
        channels,  # type: ignore[arg-type]
        mode=mode,
        attached=lambda: {"primary", "secondary"},
        active=lambda: "primary",
        marks=lambda: dict(marks),
        timeout=1.0,
    )
    return brokers, state, marks, app_state
