"""Real data, the tool's defaults only: SKAB's official per-file protocol and NAB's realKnownCause.

Each experiment is trained with the defaults ``linewatch train`` uses (window and stride from the
data's length, out-of-fold conformal threshold at one false alarm per machine and day), exported
to a bundle, and its test part evaluated as ``linewatch evaluate BUNDLE FILE --train-rows N`` does:
through the exported ONNX with the runtime's stream assembly, with the raw threshold and with the
runtime's default alarm policy (2 of 3 windows to raise, 3 below threshold x 0.9 to clear). One
confusion matrix is pooled over all test rows of all experiments. The ROC AUC, which does not
depend on the threshold, measures how well the scores rank anomalous rows above normal ones; each
model's scores are divided by its threshold first, so that the rows of all experiments pool.

- SKAB (``skab/data/{valve1,valve2,other}/*.csv``): train on each file's first 400 rows, test on
  the rest; F1 = TP / (TP + (FN + FP) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP).
- NAB realKnownCause (7 univariate series): train on the first 15 % of rows (NAB's probationary
  period, anomaly windows left out), test on the rest, labels from ``combined_windows.json``.

Usage: ``python -m benchmarks.real_data [--data-dir ../shared/datasets] [--seeds 0 1 2]``.
Writes ``results/real_data.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import train_with_defaults, write_results
from edge_runtime.backends import create_backend
from edge_runtime.config import AlarmConfig
from edge_runtime.detection_metrics import SeriesResult, decisions, evaluate
from edge_runtime.offline import labelled_parts
from edge_runtime.tables import read_csv
from train.data import SensorTable, read_table

SKAB_TRAIN_ROWS = 400
NAB_PROBATION = 0.15


def cut(table: SensorTable, rows: slice) -> SensorTable:
    """The same table (conditions included) with each series limited to ``rows``."""
    return replace(table, series=[replace(s, time=s.time[rows], values=s.values[rows], labels=s.labels[rows]) for s in table.series])


def run_one(path: Path, label_column: str, train: SensorTable, test_from: int, seed: int, work: Path, pooled: tuple[list, list]) -> dict:
    """Train with the defaults, export, evaluate the rows from ``test_from`` on through ONNX as ``linewatch evaluate`` does."""
    detector, bundle, caught = train_with_defaults(train, seed, work)
    with create_backend(bundle) as backend:
        parts = [replace(p, window_scores=p.window_scores / bundle.threshold)  # one scale for every experiment's scores
                 for p in labelled_parts(backend, [str(path)], None, None, label_column, test_from)]
    a = AlarmConfig()
    raw, alarmed = decisions(parts, 1.0, bundle.stride, (a.on_k, a.on_n, a.off_m, a.deadband))
    pooled[0].extend(raw)
    pooled[1].extend(alarmed)
    info = bundle.manifest["threshold"]
    return {"window": bundle.window, "stride": bundle.stride, "threshold_windows": info["windows"], "source": info.get("source"),
            "supported": info.get("supported"), "epochs": len(detector.history_.train_loss), "warnings": caught}


def missed(path: Path, label_column: str, test_from: int, pooled: tuple[list, list]) -> None:
    """A file the defaults cannot train on counts as all missed: said, not hidden."""
    for series in read_csv(path, [], None, None, label_column, labels=True):
        labels = series.labels[test_from:]
        result = SeriesResult(labels, np.zeros(len(labels), np.int8), None, series.time[test_from:], series.name)
        pooled[0].append(result)
        pooled[1].append(result)


def summary(results: list) -> dict:
    """The pooled numbers the table shows."""
    m = evaluate(results)
    return {"f1": round(m["f1"], 3), "far": round(m["far"], 4), "mar": round(m["mar"], 4), "events_detected": m["events_detected"],
            "events": m["events"], "series_alarming_before_anomaly": m["series_with_early_false_alarm"], "roc_auc": round(m["roc_auc"], 3)}


def skab(data_dir: Path, seed: int, work: Path) -> tuple[dict, dict, list]:
    """SKAB's per-file protocol."""
    pooled, notes = ([], []), []
    for path in sorted((data_dir / "skab" / "data").glob("*/*.csv")):
        if path.parent.name == "anomaly-free":
            continue
        table = read_table(path, label_column="anomaly")
        try:
            notes.append({"file": f"{path.parent.name}/{path.name}",
                          **run_one(path, "anomaly", cut(table, slice(0, SKAB_TRAIN_ROWS)), SKAB_TRAIN_ROWS, seed, work, pooled)})
        except Exception as error:
            missed(path, "anomaly", SKAB_TRAIN_ROWS, pooled)
            notes.append({"file": f"{path.parent.name}/{path.name}", "error": str(error)})
    return summary(pooled[0]), summary(pooled[1]), notes


def nab(data_dir: Path, seed: int, work: Path) -> tuple[dict, dict, list]:
    """NAB realKnownCause: probationary period for training, the rest for testing."""
    windows = json.loads((data_dir / "nab" / "labels" / "combined_windows.json").read_text())
    pooled, notes = ([], []), []
    for path in sorted((data_dir / "nab" / "data" / "realKnownCause").glob("*.csv")):
        frame = pd.read_csv(path)
        stamps = pd.to_datetime(frame["timestamp"])
        labels = np.zeros(len(frame), np.int8)
        for start, stop in windows[f"realKnownCause/{path.name}"]:
            labels[((stamps >= pd.Timestamp(start)) & (stamps <= pd.Timestamp(stop))).to_numpy()] = 1
        labelled = work / path.name
        frame.assign(label=labels).to_csv(labelled, index=False)
        table = read_table(labelled, label_column="label")
        split = int(len(table.series[0].time) * NAB_PROBATION)
        try:
            notes.append({"file": path.name, **run_one(labelled, "label", cut(table, slice(0, split)), split, seed, work, pooled)})
        except Exception as error:
            missed(labelled, "label", split, pooled)
            notes.append({"file": path.name, "error": str(error)})
    return summary(pooled[0]), summary(pooled[1]), notes


def main() -> None:
    """Run every data set and seed; write results/real_data.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    runs, rows = [], []
    for name, protocol in (("SKAB", skab), ("NAB realKnownCause", nab)):
        for seed in args.seeds:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as folder:
                raw, alarmed, notes = protocol(args.data_dir, seed, Path(folder))
            runs.append({"data": name, "seed": seed, "raw": raw, "alarm_policy": alarmed, "files": notes,
                         "seconds": round(time.perf_counter() - started, 1)})
            for label, result in (("raw threshold", raw), ("alarm policy", alarmed)):
                rows.append([name, seed, label, result["f1"], f"{result['far'] * 100:.1f}", f"{result['mar'] * 100:.1f}",
                             f"{result['events_detected']}/{result['events']}", result["series_alarming_before_anomaly"], result["roc_auc"]])
            print(rows[-2], rows[-1], f"{runs[-1]['seconds']} s", flush=True)
    write_results("real_data", {"runs": runs}, ["data", "seed", "decision", "F1", "FAR %", "MAR %", "events detected",
                                                       "series alarming before the anomaly", "ROC AUC"], rows,
                         "Defaults only: window and stride from the data's length, out-of-fold conformal threshold at one "
                         "false alarm per machine and day (cross-fitted), the exported ONNX, the runtime's alarm policy (2 of 3 / 3 / 10 %). "
                         "ROC AUC: rows ranked by score / threshold, pooled over the experiments (the same for both decisions).")


if __name__ == "__main__":
    main()
