"""Episode-level metrics: what an operator receives is alarm episodes, not flagged rows.

An episode is a contiguous run of flagged rows (one alarm, raised then cleared). ``episode_precision`` is the share of
episodes that overlap a labelled event; ``episodes_per_day`` the episodes per day of data (per machine-day when a series
is a machine). ``nab_score`` is the Numenta Anomaly Benchmark's standard-profile score, each episode's first row being
one detection: within an event's window the earliest detection earns the scaled sigmoid of its position (1 at the
window's start, 0 at its end), every other detection outside a window costs 0.11 times the sigmoid of its distance
past the previous window (the whole 0.11 with no window before it), a window without a detection costs 1; the sum is
normalised so that detecting nothing scores 0 and detecting every window at its start scores 100. NAB counts every
flagged row of a point detector; counting episodes instead scores an alarm policy the way its alarms reach people.
"""

from __future__ import annotations

import math

import numpy as np

DAY = 86_400.0
TP_WEIGHT, FP_WEIGHT, FN_WEIGHT = 1.0, 0.11, 1.0  # NAB's standard profile


def events(labels: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of 1 (labelled events, alarm episodes) as ``(start, stop)`` half-open row ranges."""
    edges = np.flatnonzero(np.diff(np.r_[0, np.asarray(labels, dtype=np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def scaled_sigmoid(position: float) -> float:
    """NAB's reward curve: about 0.987 at -1 (a window's start), 0 at 0 (its end), towards -1 far past it."""
    return 1.0 if position < -3.0 else 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_raw(labels: np.ndarray, detections: list[int]) -> tuple[float, int]:
    """NAB's raw standard-profile score of one series and its number of windows (labelled events)."""
    windows = events(labels)
    score, previous_end = 0.0, None
    detected = [False] * len(windows)
    w = 0
    for row in sorted(detections):
        while w < len(windows) and row >= windows[w][1]:
            previous_end = windows[w][1] - 1
            w += 1
        if w < len(windows) and windows[w][0] <= row:  # inside window w
            if not detected[w]:
                start, stop = windows[w]
                position = -(stop - row) / (stop - start)
                score += TP_WEIGHT * scaled_sigmoid(position) / scaled_sigmoid(-1.0)
                detected[w] = True
        elif previous_end is None:
            score -= FP_WEIGHT
        else:
            width = windows[w - 1][1] - windows[w - 1][0]
            score += FP_WEIGHT * scaled_sigmoid((row - previous_end) / max(width - 1, 1))
    score -= FN_WEIGHT * detected.count(False)
    return score, len(windows)


def episode_metrics(series: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> dict:
    """``alarm_episodes``, ``episode_precision``, ``episodes_per_day`` (None without times) and ``nab_score`` over
    series of ``(labels, flags, times)``; times in seconds or None.
    """
    episodes = true_episodes = 0
    seconds = 0.0
    timed = all(t is not None for _, _, t in series)
    raw = null = perfect = 0.0
    for labels, flags, times in series:
        y, p = np.asarray(labels).astype(bool), np.asarray(flags).astype(bool)
        found = events(p)
        episodes += len(found)
        true_episodes += sum(bool(y[start:stop].any()) for start, stop in found)
        if timed and len(times) > 1:
            period = float(np.median(np.diff(times)))
            seconds += period * len(y)
        score, windows = nab_raw(y, [start for start, _ in found])
        raw += score
        null -= FN_WEIGHT * windows
        perfect += TP_WEIGHT * windows
    return {"alarm_episodes": episodes,
            "episode_precision": true_episodes / episodes if episodes else None,
            "episodes_per_day": episodes / (seconds / DAY) if timed and seconds else None,
            "nab_score": 100 * (raw - null) / (perfect - null) if perfect > null else None}
