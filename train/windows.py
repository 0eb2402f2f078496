"""Sliding windows ``[N, W, F]`` as numpy views over gap-free segments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from train.data import Series, hold_and_split


def window_view(values: np.ndarray, window: int) -> np.ndarray:
    """Every window of ``values [T, F]`` as a read-only view ``[T - W + 1, W, F]`` (no copy)."""
    return sliding_window_view(values, window, axis=0).swapaxes(1, 2)


@dataclass
class SeriesWindows:
    """The windows of one series: a view over its filled values and each window's end row.

    ``ends[i]`` is the row of the window's last sample: the moment the runtime would score it.
    """

    series: Series
    values: np.ndarray
    starts: np.ndarray
    window: int
    segments: list[slice]

    @property
    def ends(self) -> np.ndarray:
        """Row index of each window's last sample."""
        return self.starts + self.window - 1

    def segment_of(self, rows: np.ndarray) -> np.ndarray:
        """Index of the segment holding each row, or -1 for rows in no segment."""
        bounds = np.array([(seg.start, seg.stop) for seg in self.segments], dtype=np.int64).reshape(-1, 2)
        index = np.searchsorted(bounds[:, 0], rows, side="right") - 1
        inside = (index >= 0) & (rows < bounds[np.maximum(index, 0), 1]) if len(bounds) else np.zeros(len(rows), bool)
        return np.where(inside, index, -1)

    def take(self, indices: np.ndarray | slice | None = None) -> np.ndarray:
        """The selected windows ``[n, W, F]`` (a copy of just those windows)."""
        view = window_view(self.values, self.window)
        chosen = self.starts if indices is None else self.starts[indices]
        return np.ascontiguousarray(view[chosen])


def series_windows(series: Series, window: int, stride: int, max_gap: float, exclude_labelled: bool = False) -> SeriesWindows:
    """Window one series under the gap rule; within each segment windows start every ``stride`` rows.

    With ``exclude_labelled`` (training on normal data) rows labelled anomalous also end a segment.
    """
    filled, segments = hold_and_split(series.time, series.values, max_gap)
    if exclude_labelled and series.labels is not None and series.labels.any():
        segments = _without_rows(segments, series.labels.astype(bool))
    starts = [np.arange(seg.start, seg.stop - window + 1, stride) for seg in segments if seg.stop - seg.start >= window]
    starts_array = np.concatenate(starts) if starts else np.empty(0, dtype=np.int64)
    return SeriesWindows(series=series, values=filled, starts=starts_array.astype(np.int64), window=window, segments=segments)


def _without_rows(segments: list[slice], excluded: np.ndarray) -> list[slice]:
    """Split segments so that none contains an excluded row."""
    result = []
    for seg in segments:
        keep = ~excluded[seg]
        edges = np.flatnonzero(np.diff(np.r_[0, keep.astype(np.int8), 0]))
        result.extend(slice(seg.start + a, seg.start + b) for a, b in zip(edges[::2], edges[1::2]))
    return result


def default_window(series_lengths: list[int], window: int | None = None, most: int = 50, least: int = 10) -> tuple[int, int]:
    """``(window, stride)`` that leave enough windows to validate and calibrate on: unless given, the window is a
    twentieth of the shortest series' rows, between ``least`` and ``most`` samples; the stride a fifth of it.

    With 400 rows (SKAB's training part) this gives 20 and 4; from 1,000 rows on, 50 and 10.
    """
    window = window or int(min(most, max(least, min(series_lengths) // 20)))
    return window, max(1, window // 5)
