"""Putting samples in order and on the grid: the tag aligner and the reorder buffer of one stream."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np


class TagAligner:
    """Aligns one-scalar-per-tag messages onto the bundle's sample grid for one stream.

    Grid ticks are multiples of the sample period. A tick is emitted once a message newer than it
    arrives; each feature takes its latest value at or before the tick if that value is no older
    than ``staleness_s``, and is missing otherwise (then the stream's hold rule applies).
    """

    __slots__ = ("values", "times", "next_tick", "period", "staleness", "max_ticks")

    def __init__(self, n_features: int, period: float, staleness: float, max_gap: float) -> None:
        self.values = np.zeros(n_features, np.float32)
        self.times = np.full(n_features, -math.inf)
        self.next_tick = None
        self.period, self.staleness = period, staleness
        self.max_ticks = int(max_gap / period) + 2

    def update(self, t: float, feature: int, value: float, emit: Callable[[float, np.ndarray, tuple], None]) -> None:
        """Emit every grid tick before ``t``, then record the new value."""
        if self.next_tick is None:
            self.next_tick = math.ceil(t / self.period) * self.period
        emitted = 0
        while self.next_tick < t:
            if emitted < self.max_ticks:
                ages = self.next_tick - self.times
                missing = tuple(np.flatnonzero((ages > self.staleness) | (ages < 0)).tolist())
                emit(self.next_tick, self.values.copy(), missing)
                emitted += 1
            self.next_tick += self.period
        self.values[feature] = value
        self.times[feature] = t


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

    def drain(self) -> list[tuple]:
        """Everything still held, oldest first."""
        released = [(topic, t, row, missing, arrival) for t, _, topic, row, missing, arrival in sorted(self.heap)]
        self.heap.clear()
        return released
