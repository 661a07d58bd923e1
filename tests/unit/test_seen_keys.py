"""The receiver's compact seen-set (``SeenKeys``): its bounds by count and age, its evictions,
its order, and that no key it was not given is ever reported as seen."""

from __future__ import annotations

import random
import uuid
from collections import OrderedDict

import pytest

from geobus._decisions.dedup import Outcome, key_of
from geobus._decisions.seen_keys import SeenKeys, _packed
from geobus.testing import FakeClock

TTL = 10.0
DONE, DEAD = Outcome.COMPLETED, Outcome.DEAD_LETTERED


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def seen(clock: FakeClock, max_entries: int = 100) -> SeenKeys[Outcome]:
    return SeenKeys(max_entries, TTL, clock, common=DONE)


class TestCount:
    def test_the_oldest_recorded_go_first_and_are_counted(self, clock: FakeClock) -> None:
        keys = seen(clock, max_entries=3)
        for i in range(5):
            keys.record(f"m{i}", DONE)
        assert (len(keys), keys.evictions) == (3, 2)
        assert [keys.get(f"m{i}") for i in range(5)] == [None, None, DONE, DONE, DONE]

    def test_recording_again_makes_a_key_the_newest(self, clock: FakeClock) -> None:
        keys = seen(clock, max_entries=3)
        for name in ("a", "b", "c", "a", "d"):
            keys.record(name, DONE)
        assert [keys.get(name) for name in "abcd"] == [DONE, None, DONE, DONE]
        assert (len(keys), keys.evictions) == (3, 1)

    def test_reading_does_not_reorder(self, clock: FakeClock) -> None:
        keys = seen(clock, max_entries=2)
        keys.record("a", DONE)
        keys.record("b", DONE)
        assert keys.get("a") is DONE
        keys.record("c", DONE)
        assert [keys.get(name) for name in "abc"] == [None, DONE, DONE]

    def test_a_key_recorded_again_is_not_dropped_with_its_older_slot(self, clock: FakeClock) -> None:
        keys = seen(clock, max_entries=2)
        keys.record("a", DONE)
        keys.record("a", DEAD)
        keys.record("b", DONE)
        assert (keys.get("a"), keys.get("b"), keys.evictions) == (DEAD, DONE, 0)
        keys.record("c", DONE)
        assert [keys.get(name) for name in "abc"] == [None, DONE, DONE]
        assert keys.evictions == 1

    def test_discard_is_not_an_eviction_and_frees_a_place(self, clock: FakeClock) -> None:
        keys = seen(clock, max_entries=2)
        keys.record("a", DONE)
        keys.record("b", DONE)
        keys.discard("a")
        keys.discard("never recorded")
        keys.record("c", DONE)
        assert [keys.get(name) for name in "abc"] == [None, DONE, DONE]
        assert (len(keys), keys.evictions) == (2, 0)

    def test_a_discarded_key_recorded_again_outlives_its_old_slot(self, clock: FakeClock) -> None:
        keys = seen(clock, max_entries=2)
        keys.record("a", DONE)
        keys.discard("a")
        keys.record("b", DONE)
        keys.record("a", DONE)
        keys.record("c", DONE)  # drops the oldest live key, "b", not "a" for its old slot
        assert [keys.get(name) for name in "abc"] == [DONE, None, DONE]
        assert keys.evictions == 1

    def test_many_records_of_one_key_keep_it_once(self, clock: FakeClock) -> None:
        keys = seen(clock, max_entries=4)
        for _ in range(1000):
            keys.record("a", DONE)
            keys.record("b", DONE)
        assert (len(keys), keys.evictions) == (2, 0)
        assert keys._slots < 100  # stale slots are dropped as they pile up

    def test_at_least_one_entry(self, clock: FakeClock) -> None:
        with pytest.raises(ValueError, match="max_entries"):
            seen(clock, max_entries=0)


class TestAge:
    def test_a_key_is_gone_at_its_record_time_plus_ttl(self, clock: FakeClock) -> None:
        keys = seen(clock)
        keys.record("a", DONE)
        clock.advance(TTL - 0.001)
        assert keys.get("a") is DONE
        clock.advance(0.001)
        assert len(keys) == 0
        assert keys.evictions == 0  # reading the length drops nothing
        assert keys.get("a") is None
        assert keys.evictions == 1

    def test_expire_drops_the_expired_only(self, clock: FakeClock) -> None:
        keys = seen(clock)
        keys.record("old", DONE)
        clock.advance(TTL / 2)
        keys.record("new", DEAD)
        clock.advance(TTL / 2)
        assert keys.expire() == 1
        assert (keys.get("old"), keys.get("new"), len(keys), keys.evictions) == (None, DEAD, 1, 1)

    def test_recording_again_restarts_the_age(self, clock: FakeClock) -> None:
        keys = seen(clock)
        keys.record("a", DONE)
        clock.advance(TTL - 1)
        keys.record("a", DONE)
        clock.advance(TTL - 1)
        assert keys.get("a") is DONE
        clock.advance(1)
        assert keys.get("a") is None
        assert keys.evictions == 1

    def test_a_discarded_key_that_had_expired_counts_as_evicted(self, clock: FakeClock) -> None:
        keys = seen(clock)
        keys.record("a", DONE)
        clock.advance(TTL)
        keys.discard("a")
        assert (len(keys), keys.evictions) == (0, 1)


class TestKeys:
    def test_every_spelling_is_its_own_key(self, clock: FakeClock) -> None:
        values: list[object] = [
            "42", 42, b"42", 42.0, True, 1, uuid.UUID(int=42), str(uuid.UUID(int=42)), ("4", 2), None,
        ]
        odd = ["", "\x00", "\x00\x00", "\x00s:42", "s:42\x00", "é", "\ud800", "\ud800\x00", "m1", "s:" + "f" * 500]
        names = [key_of(value) for value in values] + odd
        assert len(set(names)) == len(names)
        keys = seen(clock)
        for n, name in enumerate(names):
            keys.record(name, DEAD if n % 2 else DONE)
        assert [keys.get(name) for name in names] == [DEAD if n % 2 else DONE for n in range(len(names))]
        assert [keys.get(name + "x") for name in names] == [None] * len(names)

    def test_packing_never_merges_two_keys(self) -> None:
        rng = random.Random(14)
        alphabet = "\x00\x01a-:0f\x7fé\u20ac\ud800\U0001f600"
        names = {"".join(rng.choices(alphabet, k=rng.randrange(6))) for _ in range(20_000)}
        assert len({_packed(name) for name in names}) == len(names)

    def test_a_hash_collision_is_not_a_duplicate(self, clock: FakeClock) -> None:
        first = "s:" + str(uuid.UUID(int=14))
        packed = _packed(first)
        assert isinstance(packed, int)
        collision = next(  # equal hashes: ints hash modulo 2**61 - 1
            name
            for k in range(1, 10_000)
            if (name := _ascii(packed + k * (2**61 - 1))) is not None
        )
        assert hash(_packed(collision)) == hash(packed) and collision != first
        keys = seen(clock)
        keys.record(first, DONE)
        assert (keys.get(first), keys.get(collision)) == (DONE, None)
        keys.record(collision, DEAD)
        assert (keys.get(first), keys.get(collision)) == (DONE, DEAD)


def _ascii(number: int) -> str | None:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return raw.decode() if raw.isascii() and raw[:1] != b"\x00" else None


class TestAgainstAModel:
    """Random records, reads, discards and clock moves against an OrderedDict that does what
    the tracker's seen-set promises: never a key it was not given, the oldest go first."""

    @pytest.mark.parametrize("seed", range(6))
    def test_same_answers_and_evictions(self, clock: FakeClock, seed: int) -> None:
        rng = random.Random(seed)
        max_entries = rng.choice([1, 2, 5, 50])
        keys = seen(clock, max_entries)
        model: OrderedDict[str, tuple[Outcome, float]] = OrderedDict()
        evictions = 0
        names = [f"k{n}" for n in range(rng.choice([3, 20, 200]))]

        def expire() -> None:
            nonlocal evictions
            while model and next(iter(model.values()))[1] <= clock():
                model.popitem(last=False)
                evictions += 1

        for _ in range(3000):
            name, step = rng.choice(names), rng.random()
            if step < 0.45:
                value = DEAD if rng.random() < 0.2 else DONE
                keys.record(name, value)
                expire()
                if name not in model and len(model) >= max_entries:
                    model.popitem(last=False)
                    evictions += 1
                model.pop(name, None)
                model[name] = (value, clock() + TTL)
            elif step < 0.85:
                expire()
                assert keys.get(name) == (model[name][0] if name in model else None)
            elif step < 0.93:
                keys.discard(name)
                expire()
                model.pop(name, None)
            else:
                clock.advance(rng.choice([0.5, TTL / 3, TTL]))
            assert len(keys) == sum(1 for _, until in model.values() if clock() < until)
            assert keys.evictions == evictions
        expire()
        keys.expire()
        assert (len(keys), keys.evictions) == (len(model), evictions)
