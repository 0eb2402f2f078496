"""Offline scoring of a file's series with a bundle, through the runtime's own stream assembly.

Rows are replayed through the stream :func:`~edge_runtime.ingest.streams.stream_for` builds, exactly
as live samples are (the same gap rule, the same refusal of late and too-fast samples); windows are
scored in batches by a backend, and each row receives the score of the latest window that ended at
or before it (NaN before the first window of a run), which is what the training stage's
``score_samples`` computes.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.contract.conditions import unseen
from edge_runtime.contract.detection_metrics import ScoredSeries
from edge_runtime.contract.rowscores import spread_to_rows
from edge_runtime.contract.tables import FileSeries, read_csv
from edge_runtime.ingest.streams import CLOCK_STEP, LATE, READY, RESTARTED, STEPPED_READY, TOO_FAST, stream_for
from edge_runtime.scoring.backends import Backend


def window_scores(series: FileSeries, backend: Backend, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ends, scores, run_of_row)``: the row of each window's last sample, its score, in order, and each
    row's run of good samples (-1: unusable), replayed through a :class:`Stream` and scored in batches.
    """
    bundle = backend.bundle
    stream = stream_for(series.name, bundle)
    batch = np.empty((batch_size, bundle.window, bundle.channels), np.float32)
    ends: list[int] = []
    scores: list[np.ndarray] = []
    run_id = np.zeros(len(series.time), dtype=np.int64)  # which run of good samples each row is in
    run = 0
    filled = 0
    for i, (t, row) in enumerate(zip(series.time, series.values)):
        missing = tuple(np.flatnonzero(np.isnan(row)).tolist())
        result = stream.push(float(t), row.copy() if missing else row, missing)  # holding fills the row in place
        if result == RESTARTED:
            run_id[i] = -1
            continue
        if (result != LATE and result != TOO_FAST and stream.filled == 1) or result in (CLOCK_STEP, STEPPED_READY):
            run += 1
        run_id[i] = run
        if result in (READY, STEPPED_READY):
            batch[filled] = stream.window()
            filled += 1
            ends.append(i)
            if filled == batch_size:
                scores.append(_scores(backend, batch))
                filled = 0
    if filled:
        scores.append(_scores(backend, batch[:filled]))
    return np.asarray(ends, dtype=np.int64), np.concatenate(scores) if scores else np.empty(0, np.float32), run_id


def _scores(backend: Backend, windows: np.ndarray) -> np.ndarray:
    """Window scores; NaN where a conditional model's conditions were never seen in training (not scored)."""
    scores = backend.infer(windows)[0].copy()
    conditions = backend.bundle.conditions
    if conditions:
        scores[unseen(windows[:, -1, len(backend.bundle.features) :], conditions)] = np.nan
    return scores


def score_series(series: FileSeries, backend: Backend, batch_size: int = 256) -> np.ndarray:
    """Row scores of one series: each row holds the score of the latest window ending at or before it."""
    ends, scores, run_id = window_scores(series, backend, batch_size)
    if not len(ends):
        return np.full(len(series.time), np.nan)
    return spread_to_rows(len(series.time), ends, scores, backend.bundle.stride, run_id)


def labelled_parts(backend: Backend, files: list[str], series_column: str | None, time_column: str | None, label_column: str | None,
                   train_rows: int = 0, train_until: float | None = None) -> list[ScoredSeries]:
    """Every labelled series of ``files``, from row ``train_rows`` on (or after ``train_until``), scored through the runtime's
    stream assembly: SKAB's protocol (``train_rows = 400``) needs no hand-split files.
    """
    parts = []
    for path in files:
        for series in read_csv(path, backend.bundle.features, series_column, time_column, label_column, labels=True,
                               conditions=backend.bundle.conditions):
            first = train_rows
            if train_until is not None:
                first = max(first, int(np.searchsorted(series.time, train_until, side="right")))
            test = FileSeries(series.name, series.time[first:], series.values[first:], None, series.labels[first:])
            ends, scores, run_of_row = window_scores(test, backend)
            parts.append(ScoredSeries(f"{path}:{series.name}", test.time, test.labels, ends, scores, run_of_row))
    return parts
