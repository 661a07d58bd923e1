"""A session's messages from two regions, merged back into each producer's order. No I/O.

A session receiver reads one session in both regions. Each region keeps the
session's messages in the order they reached it; the sender's stamps
(``session_stamps``: a producer stream and a sequence number from 1) say the order
they were sent in. ``SessionOrder`` takes the copies the duplicate rules let
through (one per message: twins never reach it) and releases them in each
producer's order, each once.

**Which seq comes next.** Per producer, ``next`` is the next number to release.
It is known from the marks kept in the session state (the last number a previous
owner settled, ``marks``) or, for a producer without a mark, it is 1 when 1 is
held, else the lowest number held once every live region has answered once — in
passive mode, with a region down, only after ``gap_wait`` (the region may hold
lower numbers), and then reported as a gap whose first number is unknown.

**A gap** is a producer's ``next`` missing while a later number is held. It is
closed (the later numbers are released) as soon as no region can still hold it:

- a live region has *passed* ``next`` when it showed a later number of that
  producer (each region keeps the session's order, so ``next`` is not behind it),
  or has had nothing more to give since the gap opened (``drained``);
- a region that is down: in **active** mode it is not waited on (every region
  holds every copy, so the live one's order is complete); in **passive** mode it
  may hold the missing messages (stranded there when it went down), so the gap
  waits for it — at most ``gap_wait`` seconds, then the later numbers are released
  and the gap is reported (``Gap``), never silently.

A message whose number is below ``next`` (it arrived after its gap was given up:
the region came back, an outbox drained it) is released at once and counted as
out of order (``late``). One the application let go of (abandoned, lock lost) is
waited for again (``released``): ``next`` goes back to it, and its producer's later
numbers not yet taken (``take(limit)`` leaves them here) wait behind it, as Service
Bus hands an abandoned session message out before the ones after it. A second
message with a number already held or released (a copied stamp) goes out as
unstamped, counted (``duplicate_stamps``), never dropped. Unstamped messages
(plain SDK senders, scheduled ones) are released as they come.

Not thread-safe: one event loop owns it; the counters may be read from another thread.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .session_stamps import Stamp

T = TypeVar("T")
MAX_PRODUCERS = 64  # marks kept in the session state: the producers seen most recently


@dataclass(frozen=True)
class Gap:
    """Numbers ``first``..``last`` of ``producer`` released past after ``waited`` seconds.
    ``first`` is None when the stream's start was not known (no mark, a region down): numbers
    up to ``last`` may have been settled by a previous owner, or be stranded."""

    producer: str
    first: int | None
    last: int
    waited: float

    @property
    def count(self) -> int:
        """The numbers skipped; 0 when ``first`` is unknown."""
        return 0 if self.first is None else self.last - self.first + 1


@dataclass(frozen=True)
class Release(Generic[T]):
    """An item for the application; ``late``: it came after later numbers of its producer."""

    item: T
    stamp: Stamp | None
    late: bool = False


@dataclass
class _Region:
    live: bool = False
    answered: bool = False
    drained_at: float | None = None  # the last time a receive from it came back empty
    seen: dict[str, int] = field(default_factory=dict)  # producer -> highest number shown (since a release)


@dataclass
class _Stream:
    producer: str
    next: int | None
    held: dict[int, Any] = field(default_factory=dict)
    waiting_since: float | None = None  # a gap (or an undecided start) opened then
    unsettled: set[int] = field(default_factory=set)
    last_handed: int = 0
    start: int | None = None  # the first number released in order here: one below it is late
    returning: set[int] = field(default_factory=set)  # let go of by the application, waited for again
    skipped: list[tuple[int, int]] = field(default_factory=list)  # gaps given up: late numbers
    late_taken: set[int] = field(default_factory=set)  # late numbers released once already


@dataclass
class OrderCounters:
    """What a session receiver reports about order (read from any thread)."""

    gaps: int = 0  # gaps released past
    gap_messages: int = 0  # numbers those gaps skipped
    out_of_order: int = 0  # messages released after later numbers of their producer
    gap_wait_seconds: float = 0.0  # time spent waiting on gaps, in total
    duplicate_stamps: int = 0  # messages whose stamp another message had: released as unstamped


class SessionOrder(Generic[T]):
    """Releases one session's messages in each producer's order (see the module).

    ``regions``: the namespaces' names. ``wait_for_down``: passive mode (a region
    that is down may hold missing messages). ``gap_wait``: the most a gap waits,
    in seconds. ``marks``: per producer, the last number already settled.
    """

    def __init__(
        self,
        regions: Iterable[str],
        *,
        wait_for_down: bool,
        gap_wait: float,
        clock: Callable[[], float] = time.monotonic,
        marks: Mapping[str, int] | None = None,
    ) -> None:
        if gap_wait < 0:
            raise ValueError("gap_wait must be >= 0")
        self._regions = {name: _Region() for name in regions}
        self._wait_for_down = wait_for_down
        self._gap_wait = gap_wait
        self._clock = clock
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._marks: dict[str, int] = dict(marks or {})
        self._free: deque[Release[T]] = deque()  # released, not yet taken by the application
        self.counters = OrderCounters()
        self.gaps: deque[Gap] = deque()  # reported gaps not yet taken by the receiver (for its log)

    # -- what the regions say ------------------------------------------------------------------

    def region_live(self, region: str, live: bool) -> None:
        """``region``'s session receiver is attached and receiving (True) or not (down, detached)."""
        state = self._regions[region]
        if state.live and not live:
            state.answered = False
        state.live = live

    def observed(self, region: str, stamp: Stamp | None) -> None:
        """A copy arrived from ``region`` (any copy, a twin too): the region's progress."""
        state = self._regions[region]
        state.answered = True
        if stamp is not None and stamp.seq > state.seen.get(stamp.producer, 0):
            state.seen[stamp.producer] = stamp.seq

    def drained(self, region: str) -> None:
        """A receive from ``region`` came back empty: it holds nothing more for now."""
        state = self._regions[region]
        state.answered = True
        state.drained_at = self._clock()

    # -- what the receiver gives and gets ---------------------------------------------------------

    def offer(self, item: T, stamp: Stamp | None) -> None:
        """A copy for the application (the duplicate rules let it through)."""
        if stamp is None:
            self._free.append(Release(item, None))
            return
        stream = self._stream(stamp.producer)
        place = self._place(stream, stamp.seq)
        if place == "duplicate":
            self.counters.duplicate_stamps += 1
            self._free.append(Release(item, None))
        elif place == "late":
            self.counters.out_of_order += 1
            stream.late_taken.add(stamp.seq)
            self._free.append(Release(item, stamp, late=True))
        else:
            stream.held[stamp.seq] = item
            if stream.waiting_since is None and stamp.seq != stream.next:
                stream.waiting_since = self._clock()  # a gap (or an undecided start) opens now

    def settled(self, stamp: Stamp | None) -> None:
        """The application settled (completed, dead-lettered, deferred) the message stamped ``stamp``."""
        if stamp is not None and stamp.producer in self._streams:
            self._streams[stamp.producer].unsettled.discard(stamp.seq)

    def released(self, stamp: Stamp | None) -> None:
        """The application let go of the message stamped ``stamp`` (abandoned, lock lost): its copy
        comes back (a twin or the redelivery) and goes out before its producer's later numbers
        not yet taken, which wait for it as for a gap (bounded and reported the same way)."""
        stream = self._streams.get(stamp.producer) if stamp is not None else None
        if stamp is None or stream is None:
            return
        stream.returning.add(stamp.seq)
        if stream.next is None or stamp.seq < stream.next:
            stream.next = stamp.seq
        kept: deque[Release[T]] = deque()
        for release in self._free:
            back = release.stamp
            if back is not None and back.producer == stamp.producer and back.seq > stamp.seq and not release.late:
                stream.held[back.seq] = release.item
            else:
                kept.append(release)
        self._free = kept
        stream.waiting_since = None
        for region in self._regions.values():  # a region's progress past it no longer says it is gone
            if region.seen.get(stamp.producer, 0) >= stamp.seq:
                region.seen[stamp.producer] = stamp.seq - 1

    def take(self, limit: int | None = None) -> list[Release[T]]:
        """What the application may have now, in order: at most ``limit`` (None: all); the
        rest stays for the next call."""
        self._advance_all()
        count = len(self._free) if limit is None else min(limit, len(self._free))
        out = [self._free.popleft() for _ in range(count)]
        for release in out:
            if release.stamp is not None and not release.late:
                self._handed(release.stamp)
        return out

    def ready(self) -> int:
        """How many ``take`` would hand out now."""
        self._advance_all()
        return len(self._free)

    def needs(self, region: str) -> bool:
        """``region`` may still hold a number that a held message waits for (a gap, or an
        undecided start): a receiver fetches from it to close the gap."""
        state = self._regions[region]
        if not state.live:
            return False
        for stream in self._streams.values():
            if not stream.held:
                continue
            if stream.next is None:
                if not state.answered:
                    return True
            elif stream.next not in stream.held:
                since = stream.waiting_since if stream.waiting_since is not None else self._clock()
                if self._may_hold(state, stream.producer, stream.next, since):
                    return True
        return False

    def wake_at(self) -> float | None:
        """When a gap's wait runs out (clock time), None when nothing waits on time."""
        times = [s.waiting_since + self._gap_wait for s in self._streams.values() if s.waiting_since is not None]
        return min(times) if times else None

    @property
    def waiting(self) -> int:
        """Messages held back for their turn."""
        return sum(len(s.held) for s in list(self._streams.values()))

    def held_items(self) -> list[T]:
        """Every item held back for its turn, or not yet taken (the receiver gives them back on close)."""
        items: list[T] = [release.item for release in self._free]
        for stream in self._streams.values():
            items += stream.held.values()
        return items

    def marks(self) -> dict[str, int]:
        """Per producer, the highest number settled with everything released before it: what a
        next owner starts after. At most ``MAX_PRODUCERS``, the most recently active."""
        marks = dict(self._marks)
        for producer, stream in self._streams.items():
            mark = min(stream.unsettled) - 1 if stream.unsettled else stream.last_handed
            if mark > marks.get(producer, 0):
                marks[producer] = mark
        return dict(list(marks.items())[-MAX_PRODUCERS:])

    # -- inside -------------------------------------------------------------------------------------

    def _stream(self, producer: str) -> _Stream:
        stream = self._streams.get(producer)
        if stream is None:
            mark = self._marks.pop(producer, None)
            stream = self._streams[producer] = _Stream(producer, next=None if mark is None else mark + 1)
            if mark is not None:
                stream.last_handed = mark
                self._marks[producer] = mark  # kept (and ordered as recent) until passed
        self._streams.move_to_end(producer)
        return stream

    def _handed(self, stamp: Stamp) -> None:
        stream = self._streams.get(stamp.producer)
        if stream is not None:
            stream.unsettled.add(stamp.seq)
            stream.last_handed = max(stream.last_handed, stamp.seq)

    def _place(self, stream: _Stream, seq: int) -> str:
        """Where a copy numbered ``seq`` goes: ``held`` for its turn, ``late`` (its gap was given
        up, or a previous owner's range), or ``duplicate`` (its number was given out already)."""
        if seq in stream.held:
            return "duplicate"
        if seq in stream.returning:
            return "held"
        behind = stream.next is not None and seq < stream.next
        if not behind and seq > stream.last_handed:
            return "held"
        if seq in stream.late_taken:
            return "duplicate"
        before_start = stream.start is None or seq < stream.start
        if before_start or any(first <= seq <= last for first, last in stream.skipped):
            return "late"
        return "duplicate"

    def _advance_all(self) -> None:
        now = self._clock()
        for stream in self._streams.values():
            self._advance(stream, now)

    def _advance(self, stream: _Stream, now: float) -> None:
        if not stream.held:
            stream.waiting_since = None
            return
        if stream.next is None:
            if not self._start_known(now, stream):
                return
            stream.next = min(stream.held)
        if stream.start is None:
            stream.start = stream.next
        while True:
            self._release_run(stream)
            if not stream.held:
                stream.waiting_since = None
                return
            if stream.waiting_since is None:
                stream.waiting_since = now
            waited = now - stream.waiting_since
            if not self._nowhere_else(stream.producer, stream.next, stream.waiting_since) and waited < self._gap_wait:
                return
            end = self._missing_end(stream)
            self._report(Gap(stream.producer, stream.next, end, waited))
            stream.skipped.append((stream.next, end))
            for seq in [n for n in stream.returning if n <= end]:  # let go of and never came back
                stream.returning.discard(seq)
                stream.unsettled.discard(seq)
            stream.next = end + 1
            stream.waiting_since = None

    def _release_run(self, stream: _Stream) -> None:
        """Release ``next`` and on while held, stepping over numbers handed out already (after a
        release set ``next`` back, the ones the application still holds)."""
        assert stream.next is not None
        while True:
            if stream.next in stream.held:
                stream.returning.discard(stream.next)
                self._free.append(Release(stream.held.pop(stream.next), Stamp(stream.producer, stream.next)))
            elif stream.next > stream.last_handed or stream.next in stream.returning:
                return
            stream.next += 1
            stream.waiting_since = None

    @staticmethod
    def _missing_end(stream: _Stream) -> int:
        """The last number of the gap at ``next``: below the lowest held, and below the first
        number handed out already (not let go of) after it."""
        assert stream.next is not None
        end = min(stream.held) - 1
        for seq in range(stream.next + 1, min(end, stream.last_handed) + 1):
            if seq not in stream.returning:
                return seq - 1
        return end

    def _start_known(self, now: float, stream: _Stream) -> bool:
        """A producer without a mark starts at 1 if it is held, otherwise at its lowest number
        held once every live region has answered — and, in passive mode, once the wait for a
        region that is down has run out (it may hold lower numbers: then reported as a gap
        whose first number is unknown). A region that never answers is given up after ``gap_wait``."""
        lowest = min(stream.held)
        if lowest == 1:
            return True
        down = self._wait_for_down and any(not r.live for r in self._regions.values())
        if all(r.answered for r in self._regions.values() if r.live) and not down:
            return True
        if stream.waiting_since is None:
            stream.waiting_since = now
        waited = now - stream.waiting_since
        if waited < self._gap_wait:
            return False
        if down:
            self._report(Gap(stream.producer, None, lowest - 1, waited))
        return True

    def _report(self, gap: Gap) -> None:
        self.gaps.append(gap)
        self.counters.gaps += 1
        self.counters.gap_messages += gap.count
        self.counters.gap_wait_seconds += gap.waited

    def _nowhere_else(self, producer: str, missing: int, since: float) -> bool:
        """No region can still hand over ``missing`` of ``producer`` (see the module)."""
        for region in self._regions.values():
            if not region.live:
                if self._wait_for_down:
                    return False
                continue
            if self._may_hold(region, producer, missing, since):
                return False
        return True

    @staticmethod
    def _may_hold(region: _Region, producer: str, missing: int, since: float) -> bool:
        """A live ``region`` may still hand over ``missing``: it has neither shown a later number
        of ``producer`` nor come back empty since ``since``."""
        passed = region.seen.get(producer, 0) > missing
        drained = region.drained_at is not None and region.drained_at >= since
        return not (passed or drained)
