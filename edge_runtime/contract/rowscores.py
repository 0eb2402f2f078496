"""Window scores onto rows: the one rule shared by training's ``score_samples`` and ``linewatch score``."""

from __future__ import annotations

import numpy as np

from edge_runtime.contract.alarms import Alarm


def spread_to_rows(n_rows: int, ends: np.ndarray, scores: np.ndarray, stride: int, run_of_row: np.ndarray) -> np.ndarray:
    """Each row holds the score of the latest window ending at or before it (NaN before the first).

    ``ends`` are the rows of the windows' last samples, ``run_of_row`` labels each row with the
    gap-free run it belongs to (-1: none). A score is held for at most ``stride`` rows, until
    the next window of the run ends, and never past the end of its run: that is what the
    runtime would have reported at that moment.
    """
    rows = np.full(n_rows, np.nan, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.int64)
    scores = np.asarray(scores)
    for offset in range(stride):
        targets = ends + offset
        ok = targets < n_rows
        ok[ok] &= run_of_row[targets[ok]] == run_of_row[ends[ok]]
        rows[targets[ok]] = scores[ok]
    return rows


def alarm_rows(n_rows: int, ends: np.ndarray, scores: np.ndarray, stride: int, run_of_row: np.ndarray, threshold: float,
               alarm: Alarm) -> np.ndarray:
    """1 on every row while the runtime's alarm (on/off delays, deadband) is active, replayed over the window scores."""
    if not len(ends):
        return np.zeros(n_rows, np.int8)
    active = np.array([(alarm.update(float(score), threshold), alarm.active)[1] for score in scores], dtype=np.float64)
    return (np.nan_to_num(spread_to_rows(n_rows, ends, active, stride, run_of_row), nan=0.0) > 0.5).astype(np.int8)
