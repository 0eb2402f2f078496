"""Batching across streams within a latency budget, and the scoring loop of one model.

Ready windows are copied once, from their stream's ring buffer into a preallocated pending
batch. A scoring thread swaps the pending batch with its own buffer and scores it when it is
full, or when waiting longer would break the budget: the oldest window's arrival plus the
budget, minus the time scoring took for that batch size (inference, deciding and handing events
on, as observed), minus how late the thread has recently woken up. Under overload (the pending
buffer full) the stalest pending window is shed and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edge_runtime.registry import StreamState

log = logging.getLogger("linewatch.batcher")
SLACK_S = 0.002  # time reserved for deciding and publishing after inference


class WindowBatch:
    """Preallocated windows with the stream, arrival time and time span of each."""

    def __init__(self, capacity: int, window: int, n_features: int) -> None:
        self.windows = np.zeros((capacity, window, n_features), np.float32)
        self.arrivals = np.zeros(capacity)
        self.starts = np.zeros(capacity)
        self.ends = np.zeros(capacity)
        self.streams: list[StreamState | None] = [None] * capacity
        self.count = 0


class InferenceClock:
    """Observed scoring seconds per batch size (exponentially weighted)."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}

    def observe(self, size: int, seconds: float) -> None:
        """Record one inference."""
        old = self.seconds.get(size)
        self.seconds[size] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def estimate(self, size: int) -> float:
        """Expected seconds for ``size``: the nearest observed size at or above it, else the largest."""
        if not self.seconds:
            return 0.0
        larger = [s for s in self.seconds if s >= size]
        return self.seconds[min(larger)] if larger else self.seconds[max(self.seconds)] * size / max(self.seconds)


class Batcher:
    """Collects ready windows from all streams of one model and scores them in batches.

    ``score(batch, n)`` is called on the scoring thread with a :class:`WindowBatch` holding ``n``
    windows; it runs inference and everything after it.
    """

    def __init__(self, window: int, n_features: int, max_batch: int, capacity: int, budget_s: float,
                 score: Callable[[WindowBatch, int], None]) -> None:
        self.max_batch, self.capacity, self.budget_s = max_batch, capacity, budget_s
        self.pending = WindowBatch(capacity, window, n_features)
        self.scoring = WindowBatch(capacity, window, n_features)
        self.score = score
        self.clock = InferenceClock()
        self.cond = threading.Condition()
        self.running = False
        self.shed = 0
        self.failed = 0
        self.lateness = 0.0  # decaying maximum of how late flushes started after they were due
        self.thread: threading.Thread | None = None

    def add(self, stream: StreamState, arrival: float) -> None:
        """Copy ``stream``'s ready window into the pending batch (ingest thread)."""
        with self.cond:
            p = self.pending
            i = p.count
            if i == self.capacity:
                i = int(np.argmin(p.arrivals[: self.capacity]))  # shed the stalest
                self.shed += 1
            else:
                p.count += 1
            ring = stream.ring
            p.windows[i] = ring.window()
            p.arrivals[i] = arrival
            p.starts[i], p.ends[i] = ring.window_span()
            p.streams[i] = stream
            if p.count == 1 or p.count == self.max_batch:
                self.cond.notify()

    def _due(self, now: float) -> float:
        """Seconds until the pending batch must be flushed (<= 0: now)."""
        p = self.pending
        if p.count >= self.max_batch:
            return 0.0
        oldest = float(p.arrivals[: p.count].min())
        return oldest + self.budget_s - self.clock.estimate(p.count) - self.lateness - SLACK_S - now

    def _loop(self) -> None:
        while True:
            with self.cond:
                while self.running and self.pending.count == 0:
                    self.cond.wait(0.5)
                if self.pending.count == 0:
                    return
                wait = self._due(time.perf_counter())
                if wait > 0 and self.running:
                    self.cond.wait(wait)
                    continue
                self.lateness = max(-wait, 0.95 * self.lateness) if self.running else self.lateness
                self.pending, self.scoring = self.scoring, self.pending
                n, self.scoring.count = self.scoring.count, 0
            try:
                started = time.perf_counter()
                self.score(self.scoring, n)
                self.clock.observe(n, time.perf_counter() - started)
            except Exception:  # one bad batch must not stop scoring for good
                log.exception("scoring a batch of %d window(s) failed; they are dropped", n)
                self.failed += n

    def start(self) -> None:
        """Start the scoring thread."""
        self.running = True
        self.thread = threading.Thread(target=self._loop, name="linewatch-batcher", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Score what is pending, then stop the thread; False if it is still running after ``timeout`` seconds."""
        with self.cond:
            self.running = False
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True
