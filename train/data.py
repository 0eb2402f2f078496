"""Reading sensor tables (CSV or Parquet) and cutting them into gap-free segments.

The gap rule is the one the runtime applies to a live stream (see ``edge_runtime.ingest.streams``):
a missing value is held from the last observation for at most ``max_gap`` seconds; a longer
gap, in a column or in the time axis, ends the segment. Windows never span a segment boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from edge_runtime.contract.conditions import category_code, category_codes
from edge_runtime.contract.tables import TIME_COLUMNS, find_time_column, sniff_delimiter
from edge_runtime.contract.timeparse import to_seconds
from train.errors import DataError

LABEL_COLUMNS = ("label", "anomaly", "is_anomaly")
# Columns that are annotations, not sensors, in known data sets (SKAB's second label column,
# the synthetic plant's fault name).
ANNOTATION_COLUMNS = ("changepoint", "fault")


@dataclass
class Series:
    """One machine's time series: times in seconds, values ``[T, F]``, optional 0/1 labels."""

    name: str
    time: np.ndarray
    values: np.ndarray
    labels: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.time)


@dataclass
class Condition:
    """An operating condition column (the model's input, never reconstructed).

    ``numeric`` values pass as they are; a ``categorical`` column is stored as the index of its
    value in ``categories`` (-1 for a value not among them, NaN where the row has none).
    """

    name: str
    kind: str  # "numeric" or "categorical"
    categories: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}


@dataclass
class SensorTable:
    """Several series that share one ordered list of feature columns.

    With ``conditions``, each series' values hold the features and then one column per condition.
    """

    features: list[str]
    series: list[Series] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)

    @property
    def has_labels(self) -> bool:
        """True when every series carries labels."""
        return bool(self.series) and all(s.labels is not None for s in self.series)


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    return pd.read_csv(path, sep=sniff_delimiter(header))


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], path: Path, role: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{path}: {role} column '{wanted}' not found; columns are {columns}")
        return wanted
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _to_seconds(column: pd.Series, path: Path) -> np.ndarray:
    """Times in epoch seconds by the runtime's rule (:func:`edge_runtime.contract.timeparse.to_seconds`)."""
    if pd.api.types.is_numeric_dtype(column):
        seconds = column.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(seconds)
        if bad.any():
            raise DataError(f"{path}: time column '{column.name}' has an empty or non-finite value at row "
                            f"{int(np.flatnonzero(bad)[0]) + 2}")
        return seconds
    seconds = np.empty(len(column))
    for i, value in enumerate(column.tolist()):
        try:
            seconds[i] = to_seconds(value)
        except ValueError as error:
            raise DataError(f"{path}: time column '{column.name}': {error}") from None
    return seconds


def read_table(
    paths: list[str | Path] | str | Path,
    features: list[str] | None = None,
    time_column: str | None = None,
    label_column: str | None = None,
    series_column: str | None = None,
    conditions: list[str] | list[Condition] | None = None,
) -> SensorTable:
    """Read one or more CSV/Parquet files into a :class:`SensorTable`.

    Each file is one series unless ``series_column`` names a column (such as ``machine``) that
    splits it into several. Features default to every numeric column other than time, label,
    series and known annotation columns, in file order. Errors name the file and the column.

    ``conditions`` names operating-condition columns (kept out of the features): numeric ones as
    they are, any other as categories, sorted, unless :class:`Condition` objects fix them (a
    trained model's), in which case a value outside them reads as -1 (unseen).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    frames: list[tuple[Path, pd.DataFrame, str, str | None, str | None]] = []
    known = {c.name: c for c in conditions or [] if isinstance(c, Condition)}
    condition_names = [c.name if isinstance(c, Condition) else c for c in conditions or []]
    for raw_path in paths:
        path = Path(raw_path)
        frame = _read_frame(path)
        columns = list(frame.columns)
        if time_column is not None and time_column not in columns:
            raise DataError(f"{path}: time column '{time_column}' not found; columns are {columns}")
        tcol = find_time_column(columns, time_column)
        if tcol is None:
            raise DataError(f"{path}: no time column; expected one of {TIME_COLUMNS} or --time-column")
        lcol = _pick(columns, label_column, LABEL_COLUMNS, path, "label")
        scol = _pick(columns, series_column, (), path, "series") if series_column else None
        skip = {tcol, lcol, scol, *condition_names, *(c for c in columns if c.lower() in ANNOTATION_COLUMNS)}
        absent = [c for c in condition_names if c not in columns]
        if absent:
            raise DataError(f"{path}: condition column(s) {absent} not found; columns are {columns}")
        if features is None:
            features = [c for c in columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]
            if not features:
                raise DataError(f"{path}: no numeric feature columns")
        missing = [f for f in features if f not in columns]
        if missing:
            raise DataError(f"{path}: missing feature column(s) {missing}; expected {features}")
        for name in features:
            if not pd.api.types.is_numeric_dtype(frame[name]):
                converted = pd.to_numeric(frame[name], errors="coerce")
                bad = converted.isna() & frame[name].notna()
                if bad.any():
                    raise DataError(
                        f"{path}: column '{name}' has non-numeric value {frame[name][bad].iloc[0]!r} "
                        f"at row {int(np.flatnonzero(bad.to_numpy())[0]) + 2}; expected a number"
                    )
                frame[name] = converted
            if frame[name].isna().all():
                raise DataError(f"{path}: column '{name}' has no values (all NaN)")
        frames.append((path, frame, tcol, lcol, scol))
    # categories come from every file, not the first: a recipe may first appear in the second file
    specs = [known.get(name) or _condition_of(pd.concat([f[name] for _, f, *_ in frames], ignore_index=True), name)
             for name in condition_names]
    table = SensorTable(features=list(features), conditions=specs)
    for path, frame, tcol, lcol, scol in frames:
        _encode_conditions(frame, table.conditions, path)
        frame["__seconds"] = _to_seconds(frame[tcol], path)
        groups = frame.groupby(scol, sort=False) if scol else [(path.stem, frame)]
        for key, group in groups:
            group = group.sort_values("__seconds", kind="stable")
            # The runtime drops a sample that is not newer than the last one; so does training.
            group = group[~group["__seconds"].duplicated(keep="first")]
            labels = None
            if lcol is not None:
                labels = (pd.to_numeric(group[lcol], errors="coerce").fillna(0).to_numpy() > 0).astype(np.int8)
            table.series.append(
                Series(
                    name=f"{path.stem}/{key}" if scol and len(paths) > 1 else str(key),
                    time=group["__seconds"].to_numpy(dtype=np.float64),
                    values=group[[*features, *(f"__condition_{c.name}" for c in table.conditions)]].to_numpy(dtype=np.float32),
                    labels=labels,
                    source=str(path),
                )
            )
    return table


def _condition_of(column: pd.Series, name: str) -> Condition:
    """A numeric condition, or a categorical one with the column's values as its categories (sorted)."""
    if pd.api.types.is_numeric_dtype(column):
        return Condition(name, "numeric")
    return Condition(name, "categorical", sorted(str(v) for v in column.dropna().unique()))


def _encode_conditions(frame: pd.DataFrame, conditions: list[Condition], path: Path) -> None:
    """Add a float column per condition: the value, or the category's index (-1: unseen; NaN: none)."""
    for condition in conditions:
        column = frame[condition.name]
        if condition.kind == "numeric":
            values = pd.to_numeric(column, errors="coerce")
            bad = values.isna() & column.notna()
            if bad.any():
                raise DataError(f"{path}: condition '{condition.name}' has non-numeric value {column[bad].iloc[0]!r}; it was numeric in training")
        else:
            codes = category_codes(condition.to_dict())
            values = column.map(lambda v, codes=codes: np.nan if pd.isna(v) else category_code(codes, v))
        frame[f"__condition_{condition.name}"] = values.astype(np.float64)


def infer_sample_period(table: SensorTable) -> float:
    """The median time step over all series, in seconds."""
    steps = np.concatenate([np.diff(s.time) for s in table.series if len(s) > 1])
    steps = steps[steps > 0]
    if steps.size == 0:
        raise DataError("cannot infer the sample period: fewer than two distinct timestamps")
    return float(np.median(steps))


def hold_and_split(time: np.ndarray, values: np.ndarray, max_gap: float) -> tuple[np.ndarray, list[slice]]:
    """Apply the gap rule to one series.

    Returns the values with missing entries held from their last observation (a copy only when
    something was filled) and the gap-free segments as slices. A row starts a new segment when
    the time step exceeds ``max_gap`` seconds, or when a column's last observation is older than
    ``max_gap`` (or there has been none); such unfillable rows are excluded from every segment.
    """
    n = len(time)
    if n == 0:
        return values, []
    split_before = np.zeros(n, dtype=bool)
    split_before[1:] = np.diff(time) > max_gap
    usable = np.ones(n, dtype=bool)
    missing = np.isnan(values)
    if missing.any():
        values = values.copy()
        for column in np.flatnonzero(missing.any(axis=0)):
            col = values[:, column]
            observed = ~np.isnan(col)
            last_index = np.maximum.accumulate(np.where(observed, np.arange(n), -1))
            has_last = last_index >= 0
            age = np.where(has_last, time - time[np.maximum(last_index, 0)], np.inf)
            fillable = ~observed & has_last & (age <= max_gap)
            col[fillable] = col[last_index[fillable]]
            usable &= observed | fillable
    starts = np.flatnonzero(usable & (np.r_[True, ~usable[:-1]] | split_before))
    ends = np.r_[starts[1:], n]
    unusable_rows = np.flatnonzero(~usable)
    segments = []
    for start, end in zip(starts, ends):
        after = np.searchsorted(unusable_rows, start)
        if after < len(unusable_rows):
            end = min(end, unusable_rows[after])
        segments.append(slice(int(start), int(end)))
    return values, segments
