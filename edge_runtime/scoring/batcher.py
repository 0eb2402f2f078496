"""Batching across streams, work-conserving, and the scoring loop of one model.

Ready windows are copied once, from their stream's ring buffer into a preallocated pending
batch. The scoring thread takes whatever is pending as soon as it is free: one window when the
plant is quiet, a larger batch when windows piled up while it was busy, so batches grow with the
load by themselves and latency stays near the inference time instead of near the budget. An
optional ``max_queue_delay_s`` lets it wait that long (from the oldest window's arrival) for a
fuller batch. The latency budget is a ceiling: windows past it are still scored and counted as
misses. Under overload (the pending buffer full) the stalest pending window is shed and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edge_runtime.ingest.registry import StreamState

log = logging.getLogger("linewatch.batcher")


class WindowBatch:
    """Preallocated windows with the stream, arrival time and time span of each."""

    def __init__(self, capacity: int, window: int, n_features: int) -> None:
        self.windows = np.zeros((capacity, window, n_features), np.float32)
        self.arrivals = np.zeros(capacity)
        self.starts = np.zeros(capacity)
        self.ends = np.zeros(capacity)
        self.streams: list[StreamState | None] = [None] * capacity
        self.count = 0


class Batcher:
    """Collects ready windows from all streams of one model and scores them in batches.

    ``score(batch, n)`` is called on the scoring thread with a :class:`WindowBatch` holding ``n``
    windows; it runs inference and everything after it.
    """

    def __init__(self, window: int, n_features: int, max_batch: int, capacity: int, score: Callable[[WindowBatch, int], None],
                 max_queue_delay_s: float = 0.0) -> None:
        self.max_batch, self.capacity, self.max_queue_delay_s = max_batch, capacity, max_queue_delay_s
        self.pending = WindowBatch(capacity, window, n_features)
        self.scoring = WindowBatch(capacity, window, n_features)
        self.score = score
        self.cond = threading.Condition()
        self.running = False
        self.shed = 0
        self.failed = 0
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
                self.cond.notify()  # the scorer may be idle (first window) or waiting for a full batch

    def _wait_for_more(self) -> float:
        """Seconds to wait for a fuller batch (<= 0: score now)."""
        p = self.pending
        if not self.max_queue_delay_s or p.count >= self.max_batch or not self.running:
            return 0.0
        return float(p.arrivals[: p.count].min()) + self.max_queue_delay_s - time.perf_counter()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while self.running and self.pending.count == 0:
                    self.cond.wait(0.5)
                if self.pending.count == 0:
                    return
                wait = self._wait_for_more()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                self.pending, self.scoring = self.scoring, self.pending
                n, self.scoring.count = self.scoring.count, 0
            try:
                self.score(self.scoring, n)
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
