"""Commissioning at the edge: each stream learns its own threshold from its own first scores.

Real machines differ from the training data and from each other. While a stream commissions
(from its first window until ``period_s`` of its sample time has passed and ``min_windows``
windows were scored) its windows are scored and published as telemetry but raise no alarm. Then
its threshold is the split-conformal quantile of those scores for ``false_alarms_per_day`` (the
rule training uses), never below the bundle's threshold (the floor and the fallback). Learned
thresholds are kept, tied to the bundle's id, in one JSON file per runtime (:class:`ThresholdStore`:
one writer, written by the runtime's housekeeping thread, never by a scoring thread) and read back
at start, so a restart does not commission again; a new bundle starts over. A stream forgotten as
idle takes its learning in progress with it; what it learned is kept, for at most ``max_learned`` streams per
model (the runtime's ``max_streams``): beyond, the longest-learned are forgotten first and commission again
if they return.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
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


class ThresholdStore:
    """The learned thresholds of every model of one runtime, in one JSON file with one writer.

    Commissioning changes them in memory (:meth:`put`); :meth:`flush` writes the file atomically (a new
    file with this process's own name, then a rename) when something changed, called by the runtime's
    housekeeping thread and at shutdown, so a burst of streams finishing costs one write, and no
    scoring thread waits for the disk. A failed write is logged and tried again at the next flush.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.models: dict[str, dict] = self._read()
        self.dirty = False
        self.writes = 0

    def _read(self) -> dict[str, dict]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            saved = json.loads(self.path.read_text())
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            log.error("cannot read learned thresholds from %s (%s); streams commission again", self.path, error)
            return {}
        return saved

    def get(self, model: str, bundle_id: str) -> dict[str, dict]:
        """The streams ``model`` learned with this bundle (another bundle's thresholds are on another scale: none)."""
        with self.lock:
            saved = self.models.get(model, {})
            return dict(saved.get("streams", {})) if saved.get("bundle_id") == bundle_id else {}

    def put(self, model: str, bundle_id: str, streams: dict[str, dict]) -> None:
        """Replace ``model``'s learned thresholds (written at the next :meth:`flush`)."""
        with self.lock:
            self.models[model] = {"bundle_id": bundle_id, "streams": dict(streams)}
            self.dirty = True

    def flush(self) -> bool:
        """Write the file if anything changed; True when written."""
        with self.lock:
            if not self.dirty or self.path is None:
                return False
            partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                with open(partial, "w") as handle:
                    json.dump(self.models, handle, indent=1)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(partial, self.path)
            except OSError as error:
                log.error("cannot write learned thresholds to %s (%s); trying again", self.path, error)
                return False
            self.dirty = False
            self.writes += 1
            return True


class Commissioning:
    """Per-stream thresholds of one model (see the module docstring)."""

    def __init__(self, model: str, bundle_id: str, floor: float, period_s: float, min_windows: int, false_alarms_per_day: float,
                 stride: int, sample_period: float, store: ThresholdStore, max_learned: int = 10_000) -> None:
        self.model, self.bundle_id, self.floor = model, bundle_id, floor
        self.max_learned = max_learned
        self.period_s, self.min_windows = period_s, min_windows
        self.rate = window_rate(false_alarms_per_day, stride, sample_period)
        self.store = store
        self.learned: dict[str, dict] = store.get(model, bundle_id)
        self.learning: dict[str, Learning] = {}
        self.completed = 0  # streams that finished learning in this run
        self.on_learned: Callable[[str], None] | None = None  # told of each stream that finishes learning (scoring thread)
        self.lock = threading.Lock()  # the scoring thread learns, the control topic restarts, the sweep forgets

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
        self._keep(key, {"threshold": threshold, "windows": int(len(scores)), "supported": supported})
        self.completed += 1
        if self.on_learned is not None:
            self.on_learned(key)
        log.info("%s/%s commissioned: threshold %.4g from %d windows%s", self.model, key, threshold, len(scores),
                 "" if supported else " (fewer than the target rate needs: the largest score is used)")
        return threshold

    def adopt(self, key: str, threshold: float) -> bool:
        """Take the threshold another owner of the stream learned (``handover``), unless this runtime has one;
        returns whether it was taken.
        """
        with self.lock:
            if key in self.learned:
                return False
            self._keep(key, {"threshold": max(self.floor, threshold), "windows": 0, "supported": True, "handed_over": True})
        return True

    def _keep(self, key: str, entry: dict) -> None:
        """A stream's learned threshold (holding the lock): kept with the time, at most ``max_learned``, its learning ended."""
        self.learned[key] = entry | {"learned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        while len(self.learned) > self.max_learned:  # insertion order: the longest-learned first
            del self.learned[next(iter(self.learned))]
        self.store.put(self.model, self.bundle_id, self.learned)
        self.learning.pop(key, None)

    def progress(self, key: str, sample_time: float) -> float | None:
        """How far the stream is through commissioning (0 to 1) at this sample time, or None when it is not learning."""
        state = self.learning.get(key)
        if state is None:
            return None
        by_time = (sample_time - state.started) / self.period_s if self.period_s else 1.0
        return max(0.0, min(1.0, state.count / self.min_windows, by_time))

    def restart(self, keys: list[str]) -> None:
        """Commission these streams again (their learned thresholds are forgotten)."""
        with self.lock:
            for key in keys:
                self.learned.pop(key, None)
                self.learning.pop(key, None)
            self.store.put(self.model, self.bundle_id, self.learned)

    def forget(self, keys: list[str]) -> None:
        """Streams evicted as idle: their learning in progress goes with them (what they learned stays)."""
        with self.lock:
            for key in keys:
                self.learning.pop(key, None)

    def summary(self) -> dict:
        """For the retained status: how many streams learned and are learning, and the learned thresholds."""
        return {"learned": len(self.learned), "learning": len(self.learning),
                "thresholds": {key: round(v["threshold"], 6) for key, v in list(self.learned.items())[:100]}}
