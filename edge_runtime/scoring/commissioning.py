"""Commissioning at the edge: each stream learns its own threshold from its own first scores.

Real machines differ from the training data and from each other. While a stream commissions
(from its first window until ``period_s`` of its sample time has passed and ``min_windows``
windows were scored) its windows are scored and published as telemetry but raise no alarm. Then
its threshold is the split-conformal quantile of those scores for ``false_alarms_per_day`` (the
rule training uses), never below the bundle's threshold (the floor and the fallback). Learned
thresholds are written atomically to a JSON file, tied to the bundle's id, and read back at start,
so a restart does not commission again; a new bundle starts over.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from edge_runtime.contract.conformal import conformal, window_rate

log = logging.getLogger("linewatch.commissioning")
MAX_SCORES = 4096  # per commissioning stream: 16 KB; beyond, the oldest are overwritten


class Learning:
    """The scores one stream collected so far (a bounded ring) and the sample time it started at."""

    __slots__ = ("scores", "count", "started")

    def __init__(self, started: float) -> None:
        self.scores = np.empty(MAX_SCORES, np.float32)
        self.count = 0
        self.started = started

    def add(self, score: float) -> None:
        """Keep one score."""
        self.scores[self.count % MAX_SCORES] = score
        self.count += 1


class Commissioning:
    """Per-stream thresholds of one model (see the module docstring)."""

    def __init__(self, model: str, bundle_id: str, floor: float, period_s: float, min_windows: int, false_alarms_per_day: float,
                 stride: int, sample_period: float, path: Path | None) -> None:
        self.model, self.bundle_id, self.floor = model, bundle_id, floor
        self.period_s, self.min_windows = period_s, min_windows
        self.rate = window_rate(false_alarms_per_day, stride, sample_period)
        self.path = path
        self.learned: dict[str, dict] = self._load()
        self.learning: dict[str, Learning] = {}
        self.completed = 0  # streams that finished learning in this run
        self.lock = threading.Lock()  # the scoring thread learns, the control topic restarts

    def _load(self) -> dict[str, dict]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            saved = json.loads(self.path.read_text()).get(self.model, {})
        except (OSError, ValueError) as error:
            log.error("cannot read learned thresholds from %s (%s); streams commission again", self.path, error)
            return {}
        if saved.get("bundle_id") != self.bundle_id:
            return {}  # learned with another model: its scores are on another scale
        return dict(saved.get("streams", {}))

    def threshold(self, key: str, score: float, sample_time: float) -> float | None:
        """The stream's threshold, or None while it is still commissioning (this window's score is kept)."""
        learned = self.learned.get(key)
        if learned is not None:
            return learned["threshold"]
        with self.lock:
            return self._learn(key, score, sample_time)

    def _learn(self, key: str, score: float, sample_time: float) -> float | None:
        state = self.learning.get(key)
        if state is None:
            state = self.learning[key] = Learning(sample_time)
        if score == score and score != float("inf"):
            state.add(score)
        if state.count < self.min_windows or sample_time - state.started < self.period_s:
            return None
        return self._finish(key, state)

    def _finish(self, key: str, state: Learning) -> float:
        scores = state.scores[: min(state.count, MAX_SCORES)]
        value, supported = conformal(scores, self.rate)
        threshold = max(self.floor, value)
        entry = {"threshold": threshold, "windows": int(len(scores)), "supported": supported,
                 "learned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.save({**self.learned, key: entry})  # on disk first: a stream counts as commissioned once its threshold survives a restart
        self.learned[key] = entry
        del self.learning[key]
        self.completed += 1
        log.info("%s/%s commissioned: threshold %.4g from %d windows%s", self.model, key, threshold, len(scores),
                 "" if supported else " (fewer than the target rate needs: the largest score is used)")
        return threshold

    def restart(self, keys: list[str]) -> None:
        """Commission these streams again (their learned thresholds are forgotten)."""
        with self.lock:
            for key in keys:
                self.learned.pop(key, None)
                self.learning.pop(key, None)
            self.save()

    def save(self, learned: dict[str, dict] | None = None) -> None:
        """Write the learned thresholds (``learned``, default the current ones; every model's, one file) atomically:
        a new file, then a rename.
        """
        if self.path is None:
            return
        try:
            everything = json.loads(self.path.read_text()) if self.path.exists() else {}
        except (OSError, ValueError):
            everything = {}
        everything[self.model] = {"bundle_id": self.bundle_id, "streams": self.learned if learned is None else learned}
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(everything, indent=1))
        os.replace(partial, self.path)

    def summary(self) -> dict:
        """For the retained status: how many streams learned and are learning, and the learned thresholds."""
        return {"learned": len(self.learned), "learning": len(self.learning),
                "thresholds": {key: round(v["threshold"], 6) for key, v in list(self.learned.items())[:100]}}
