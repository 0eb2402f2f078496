"""Offline scoring of a CSV file with a bundle, through the runtime's own stream assembly.

Rows are replayed through :class:`edge_runtime.streams.Stream` exactly as live samples would
be, windows are scored in batches by a backend, and each row receives the score of the latest
window that ended at or before it (NaN before the first window of a run), which is what the
training stage's ``score_samples`` computes.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_runtime.backends import Backend
from edge_runtime.errors import LinewatchError
from edge_runtime.streams import LATE, READY, RESTARTED, Stream

TIME_COLUMNS = ("time", "timestamp", "datetime", "date")


class InputError(LinewatchError):
    """A data file that cannot be scored."""


def parse_time(text: str) -> float:
    """Seconds since the epoch from a number or an ISO 8601 timestamp (naive means UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


@dataclass
class FileSeries:
    """One series of a CSV file: name, times, values ``[T, F]`` (NaN where empty)."""

    name: str
    time: np.ndarray
    values: np.ndarray


def read_csv(path: str | Path, features: list[str], series_column: str | None = None, time_column: str | None = None) -> list[FileSeries]:
    """Read the bundle's features from a CSV (``,`` or ``;``); errors name the file, row and column."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        header_line = handle.readline()
        delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
        handle.seek(0)
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader)
        lowered = {c.lower(): i for i, c in enumerate(header)}
        tname = time_column or next((c for c in TIME_COLUMNS if c in lowered), None)
        if tname is None or tname.lower() not in lowered:
            raise InputError(f"{path}: no time column; expected one of {TIME_COLUMNS}")
        missing = [f for f in features if f not in header]
        if missing:
            raise InputError(f"{path}: missing feature column(s) {missing}; the bundle needs {features}")
        tcol = lowered[tname.lower()]
        cols = [header.index(f) for f in features]
        scol = header.index(series_column) if series_column else None
        if series_column and series_column not in header:
            raise InputError(f"{path}: series column '{series_column}' not found")
        groups: dict[str, tuple[list[float], list[list[float]]]] = {}
        for line, row in enumerate(reader, start=2):
            key = row[scol] if scol is not None else path.stem
            times, values = groups.setdefault(key, ([], []))
            try:
                times.append(parse_time(row[tcol]))
                values.append([float(row[c]) if row[c].strip() else math.nan for c in cols])
            except (ValueError, IndexError) as error:
                raise InputError(f"{path}: row {line}: {error}") from None
    result = []
    for key, (times, values) in groups.items():
        t = np.asarray(times)
        order = np.argsort(t, kind="stable")
        result.append(FileSeries(key, t[order], np.asarray(values, dtype=np.float32).reshape(-1, len(features))[order]))
    return result


def score_series(series: FileSeries, backend: Backend, batch_size: int = 256) -> np.ndarray:
    """Row scores of one series, replayed through a :class:`Stream` and scored in batches."""
    bundle = backend.bundle
    stream = Stream(series.name, bundle.window, bundle.stride, len(bundle.features), bundle.max_gap)
    batch = np.empty((batch_size, bundle.window, len(bundle.features)), np.float32)
    ends: list[int] = []
    window_scores: list[np.ndarray] = []
    run_id = np.zeros(len(series.time), dtype=np.int64)  # which run of good samples each row is in
    run = 0
    filled = 0
    for i, (t, row) in enumerate(zip(series.time, series.values)):
        missing = tuple(np.flatnonzero(np.isnan(row)).tolist())
        result = stream.push(float(t), row.copy() if missing else row, missing)  # holding fills the row in place
        if result == RESTARTED:
            run_id[i] = -1
            continue
        if result != LATE and stream.filled == 1:
            run += 1
        run_id[i] = run
        if result == READY:
            batch[filled] = stream.window()
            filled += 1
            ends.append(i)
            if filled == batch_size:
                window_scores.append(backend.infer(batch)[0].copy())
                filled = 0
    if filled:
        window_scores.append(backend.infer(batch[:filled])[0].copy())
    rows = np.full(len(series.time), np.nan)
    if not ends:
        return rows
    scores = np.concatenate(window_scores)
    ends_array = np.asarray(ends)
    for offset in range(bundle.stride):
        targets = ends_array + offset
        ok = targets < len(rows)
        ok[ok] &= run_id[targets[ok]] == run_id[ends_array[ok]]
        rows[targets[ok]] = scores[ok]
    return rows
