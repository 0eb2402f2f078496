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
    """The last :data:`HISTORY` scores of a stream, its threshold, and its alarm's story."""

    __slots__ = ("scores", "next", "count", "threshold", "since", "top")

    def __init__(self) -> None:
        self.scores = np.zeros(HISTORY, np.float32)
        self.next = self.count = 0
        self.threshold = math.nan
        self.since: float | None = None  # sample time of the last alarm transition (raised or cleared)
        self.top: list[dict] = []  # the top sensors of the last alarm raised

    def record(self, end: float, score: float, threshold: float, kinds: list[str], features: list[str], feature_error) -> None:
        """One decided window; ``kinds``: the events it produced."""
        i = self.next
        self.scores[i] = score
        self.next = (i + 1) % HISTORY
        self.count = min(self.count + 1, HISTORY)
        self.threshold = threshold
        for kind in kinds:
            if kind == "alarm_raised":
                self.since, self.top = end, top_features(features, feature_error)
            elif kind == "alarm_cleared":
                self.since = end

    def recent(self) -> list[float]:
        """The scores, oldest first, rounded for the page (an infinite score shown as the largest float32)."""
        scores = np.roll(self.scores, -self.next)[HISTORY - self.count :] if self.count == HISTORY else self.scores[: self.count]
        return np.minimum(np.round(scores.astype(np.float64), 4), float(np.finfo(np.float32).max)).tolist()
