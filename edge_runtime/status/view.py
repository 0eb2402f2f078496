"""What the status page keeps of one stream: its recent scores and what its last alarm said.

Updated on the scoring thread once per decided window (never per message); the arrays are allocated once per stream
and dropped with it when the stream is evicted.
"""

from __future__ import annotations

import math

import numpy as np

from edge_runtime.delivery.event_schema import top_features

HISTORY = 120  # windows kept for the sparkline


class StreamView:
    """The last :data:`HISTORY` window ends and scores of a stream, its threshold, and its alarm's story."""

    __slots__ = ("ends", "scores", "next", "count", "threshold", "since", "top")

    def __init__(self) -> None:
        self.ends = np.zeros(HISTORY)
        self.scores = np.zeros(HISTORY, np.float32)
        self.next = self.count = 0
        self.threshold = math.nan
        self.since: float | None = None  # sample time of the last alarm transition (raised or cleared)
        self.top: list[dict] = []  # the top sensors of the last alarm raised

    def record(self, end: float, score: float, threshold: float, kinds: list[str], features: list[str], feature_error) -> None:
        """One decided window; ``kinds``: the events it produced."""
        i = self.next
        self.ends[i], self.scores[i] = end, score
        self.next = (i + 1) % HISTORY
        self.count = min(self.count + 1, HISTORY)
        self.threshold = threshold
        for kind in kinds:
            if kind == "alarm_raised":
                self.since, self.top = end, top_features(features, feature_error)
            elif kind == "alarm_cleared":
                self.since = end

    def recent(self) -> tuple[list[float], list[float]]:
        """Window ends and scores, oldest first."""
        order = np.roll(np.arange(HISTORY), -self.next)[HISTORY - self.count :]
        return self.ends[order].tolist(), [min(float(s), 3.4e38) for s in self.scores[order]]
