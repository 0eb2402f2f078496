"""Putting samples in order and on the grid: the tag aligner and the reorder buffer of one stream."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np

ON_GRID = 1e-3  # a time within this fraction of a period of a grid tick is on it (epoch seconds / period carry float noise)


class TagAligner:
    """Aligns one-scalar-per-tag messages onto the bundle's sample grid for one stream.

    Grid ticks are multiples of the sample period, counted by an integer index (so the grid never
    drifts, even at 1 kHz with epoch timestamps). A tick is emitted as soon as every tag has a value
    stamped on it (nothing can change it any more), or else once a message newer than it arrives;
    each feature takes its latest value at or before the tick if that value is no older
    than ``staleness_s``, and is missing otherwise (then the stream's hold rule applies). After a
    silence, at most ``max_gap`` worth of ticks is emitted and the rest skipped arithmetically. A
    message more than ``max_gap`` before the next tick is refused as a straggler, unless messages
    keep coming on that older time line for longer than ``max_gap`` with none on the current one: then
    the clock stepped back (or a bogus future stamp came before), and the grid restarts there.
    """

    __slots__ = ("values", "times", "tick", "period", "staleness", "max_gap", "max_ticks", "behind_since")

    def __init__(self, n_features: int, period: float, staleness: float, max_gap: float) -> None:
        self.values = np.zeros(n_features, np.float32)
        self.times = np.full(n_features, -math.inf)
        self.tick: int | None = None  # index of the next tick to emit; its time is tick * period
        self.period, self.staleness = period, staleness
        self.max_gap = max_gap
        self.max_ticks = int(max_gap / period) + 2
        self.behind_since: float | None = None  # the oldest message of the run on an older time line

    def update(self, t: float, feature: int | slice, value, emit: Callable[[float, np.ndarray, tuple], None]) -> bool:
        """Emit the grid ticks before ``t``, record the new value, and emit ``t``'s tick too once all its tags are in;
        False (nothing recorded) for a straggler from further back than ``max_gap``.

        ``feature`` may be ``slice(None)`` with a value per feature: all of them at once (a whole sample).
        """
        steps = t / self.period
        due = math.ceil(steps - ON_GRID)  # the first tick at or after t (within float noise): every tick before it is complete
        tick = self.tick
        if tick is not None and due < tick - self.max_ticks:
            since = self.behind_since
            if since is None or t < since:
                self.behind_since = t
                return False
            if t - since <= self.max_gap:
                return False
            self.times[:] = -math.inf  # a time line of its own: the clock stepped back; values stamped later cannot be held
            tick = None
        self.behind_since = None
        if tick is None:
            self.tick = due
        elif due > tick:
            for k in range(tick, min(due, tick + self.max_ticks)):
                at = k * self.period
                ages = at - self.times
                emit(at, self.values.copy(), tuple(np.flatnonzero((ages > self.staleness) | (ages < 0)).tolist()))
            self.tick = due
        self.values[feature] = value
        self.times[feature] = t
        if due == self.tick and due - steps < ON_GRID and self.times.min() >= t - self.period * ON_GRID:
            emit(due * self.period, self.values.copy(), ())  # every tag stamped on this tick: waiting for the next one adds a period
            self.tick = due + 1
        return True


class Reorder:
    """Holds a stream's samples for ``tolerance`` seconds of sample time and releases them in time order.

    A sample that arrives after newer ones but within the tolerance takes its place; one older than
    what was already released is passed through and dropped by the stream as late. Costs the
    tolerance in latency, so it is off (0) unless configured.
    """

    __slots__ = ("tolerance", "heap", "newest", "count")

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.heap: list = []
        self.newest = -math.inf
        self.count = 0

    def add(self, topic: str, t: float, row, missing: tuple, arrival: float) -> list[tuple]:
        """Queue one sample; return the samples now old enough to release, oldest first."""
        self.count += 1
        heapq.heappush(self.heap, (t, self.count, topic, row, missing, arrival))
        self.newest = max(self.newest, t)
        released = []
        while self.heap and self.heap[0][0] <= self.newest - self.tolerance:
            t0, _, topic0, row0, missing0, arrival0 = heapq.heappop(self.heap)
            released.append((topic0, t0, row0, missing0, arrival0))
        return released

    def expire(self, now: float) -> list[tuple]:
        """Everything held, oldest first, once the oldest sample has waited ``tolerance`` seconds of wall clock
        (``now`` and arrivals are ``time.perf_counter()``): the stream went quiet, so nothing can still overtake it.
        """
        if self.heap and self.heap[0][5] <= now - self.tolerance:
            return self.drain()
        return []

    def drain(self) -> list[tuple]:
        """Everything still held, oldest first."""
        released = [(topic, t, row, missing, arrival) for t, _, topic, row, missing, arrival in sorted(self.heap)]
        self.heap.clear()
        return released
