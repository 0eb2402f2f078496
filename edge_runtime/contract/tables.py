"""Reading sensor CSV files without pandas: the delimiter and time-column rules that training shares.

Files are UTF-8 text with a header; the delimiter is ``;`` when the header holds more of them
than commas (SKAB's files), else ``,``. The time column is named by the caller or is the first of
:data:`TIME_COLUMNS` present (case-insensitive); times follow :func:`edge_runtime.contract.timeparse.to_seconds`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contract.conditions import category_code, category_codes
from edge_runtime.contract.errors import LinewatchError
from edge_runtime.contract.timeparse import to_seconds

TIME_COLUMNS = ("time", "timestamp", "datetime", "date")


class InputError(LinewatchError):
    """A data file that cannot be read or scored."""


def sniff_delimiter(header_line: str) -> str:
    """``;`` when the header line holds more semicolons than commas, else ``,``."""
    return ";" if header_line.count(";") > header_line.count(",") else ","


def csv_rows(handle) -> tuple[list[str], Iterator[list[str]]]:
    """The header and a reader of the remaining rows of an open CSV file, its delimiter sniffed from the header line."""
    delimiter = sniff_delimiter(handle.readline())
    handle.seek(0)
    reader = csv.reader(handle, delimiter=delimiter)
    return next(reader, []), reader


def csv_header(path: str | Path) -> list[str]:
    """The column names of a CSV file, read as :func:`read_csv` reads them."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return csv_rows(handle)[0]


def find_time_column(columns: list[str], wanted: str | None = None) -> str | None:
    """The time column: ``wanted`` if given and present, else the first of :data:`TIME_COLUMNS` (any case)."""
    if wanted is not None:
        return wanted if wanted in columns else None
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in TIME_COLUMNS if c in lowered), None)


@dataclass
class FileSeries:
    """One series of a CSV file: name, times, values ``[T, F]`` (NaN where empty)."""

    name: str
    time: np.ndarray
    values: np.ndarray
    time_text: list[str] | None = None  # each row's time as the file wrote it, for output in the same format
    labels: np.ndarray | None = None  # 0/1 per row when a label column was asked for


LABEL_COLUMNS = ("label", "anomaly")


def read_csv(path: str | Path, features: list[str], series_column: str | None = None, time_column: str | None = None,
             label_column: str | None = None, labels: bool = False, conditions: list[dict] | None = None) -> list[FileSeries]:
    """Read the bundle's features (and with ``labels`` a 0/1 label column) from a CSV; errors name the file, row and column.

    A conditional bundle's ``conditions`` follow the features in each row: numeric as they are, categorical as the
    index of the category (-1 for one the model does not know), empty as missing.
    """
    conditions = conditions or []
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        header, reader = csv_rows(handle)
        tname = find_time_column(header, time_column)
        if tname is None:
            raise InputError(f"{path}: no time column; expected {time_column or ' or '.join(TIME_COLUMNS)}")
        missing = [f for f in [*features, *(c["name"] for c in conditions)] if f not in header]
        if missing:
            raise InputError(f"{path}: missing feature or condition column(s) {missing}; the bundle needs {features}"
                             + (f" and conditions {[c['name'] for c in conditions]}" if conditions else ""))
        if series_column and series_column not in header:
            raise InputError(f"{path}: series column '{series_column}' not found")
        lname = None
        if labels:
            lname = label_column or next((c for c in LABEL_COLUMNS if c in header), None)
            if lname not in header:
                raise InputError(f"{path}: no label column; expected {label_column or ' or '.join(LABEL_COLUMNS)}")
        tcol = header.index(tname)
        cols = [header.index(f) for f in features]
        coded = [(header.index(c["name"]), category_codes(c)) for c in conditions]
        scol = header.index(series_column) if series_column else None
        lcol = header.index(lname) if lname else None
        groups: dict[str, tuple[list[float], list[list[float]], list[str], list[int]]] = {}
        for line, row in enumerate(reader, start=2):
            key = row[scol] if scol is not None else path.stem
            times, values, texts, marks = groups.setdefault(key, ([], [], [], []))
            try:
                times.append(to_seconds(row[tcol]))
                values.append([float(row[c]) if row[c].strip() else math.nan for c in cols]
                              + [math.nan if not row[c].strip() else (float(row[c]) if codes is None else category_code(codes, row[c].strip()))
                                 for c, codes in coded])
                if lcol is not None:
                    marks.append(int(float(row[lcol])) if row[lcol].strip() else 0)
            except (ValueError, IndexError) as error:
                raise InputError(f"{path}: row {line}: {error}") from None
            texts.append(row[tcol].strip())
    result = []
    for key, (times, values, texts, marks) in groups.items():
        t = np.asarray(times)
        order = np.argsort(t, kind="stable")
        result.append(FileSeries(key, t[order], np.asarray(values, dtype=np.float32).reshape(len(times), len(features) + len(conditions))[order],
                                 [texts[i] for i in order], np.asarray(marks, dtype=np.int8)[order] if lcol is not None else None))
    return result
