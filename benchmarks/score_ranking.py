"""Which window score ranks faults best: the pooled ROC AUC of the reconstruction errors alone against the errors with
the residual and operating-point distances, on SKAB, NAB realKnownCause and the simulated plant.

Every experiment is trained with the defaults but for the setting compared (window and stride from the data's length,
the default threshold), on the same rows as ``benchmarks.real_data`` (SKAB: each file's first 400 rows; NAB: its
probationary 15 %) and, for the simulated plant, on each machine's fault-free first rows; the rest is scored as the
runtime would (``score_series``), divided by the model's own threshold, and pooled over the experiments of a data set.
The AUC does not depend on any threshold rule: it says how well a score puts anomalous rows above normal ones.

Usage: ``python -m benchmarks.score_ranking [--data-dir ../shared/datasets] [--seeds 0 1 2] [--kinds dense pca auto]``.
Writes ``results/score_ranking.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.common import write_results
from benchmarks.real_data import cut, nab_files, skab_files
from train.data import SensorTable, read_table
from train.simulate import simulate_plant, write_table

SETTINGS = {"reconstruction errors": False, "errors + distances": True}  # name -> the detector's ``distances``
SIMULATED = {"machines": 4, "rows": 12_000, "normal_rows": 4_000, "faults": 6}


def simulated_files(seed: int, work: Path) -> Iterator[tuple[str, Path, str, SensorTable, int]]:
    """The simulated plant of ``seed`` as one experiment: every machine trained on its fault-free first rows."""
    frame, _ = simulate_plant(SIMULATED["machines"], SIMULATED["rows"], SIMULATED["normal_rows"], SIMULATED["faults"], seed=seed)
    path = work / "plant.csv"
    write_table(frame.drop(columns="fault"), str(path))
    yield "plant", path, "label", read_table(path, label_column="label", series_column="machine"), SIMULATED["normal_rows"]


def pooled_auc(experiments, kind: str, distances: bool, seed: int) -> tuple[float, int, Counter]:
    """``(pooled ROC AUC, experiments trained, kinds trained)``: rows ranked by score over each model's threshold; an
    experiment the defaults cannot train on is left out of both settings alike (it fails on its data, not on the
    score). ``kind`` ``auto``: each experiment's kind chosen as ``linewatch train --model auto`` chooses it, on its
    training rows alone.
    """
    from train.detector import AutoencoderDetector
    from train.selection import choose_kind
    from train.windows import default_window

    labels, scores, trained, kinds = [], [], 0, Counter()
    for _, _, _, table, train_rows in experiments:
        window, stride = default_window([min(len(s), train_rows) for s in table.series])
        options = {"window": window, "stride": stride, "device": "cpu", "distances": distances}
        training = cut(table, slice(0, train_rows))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                chosen = choose_kind(training, seed, echo=lambda *_: None, **options)[0] if kind == "auto" else kind
                detector = AutoencoderDetector(kind=chosen, seed=seed, progress=False, **options).fit(training)
        except Exception:
            continue
        trained += 1
        kinds[chosen] += 1
        for series in table.series:
            labels.append(series.labels[train_rows:])
            scores.append(detector.score_series(series).row_scores[train_rows:] / detector.threshold_)
    y, s = np.concatenate(labels), np.concatenate(scores)
    scored = np.isfinite(s)
    return float(roc_auc_score(y[scored], s[scored])), trained, kinds


def main() -> None:
    """Every data set, kind, seed and setting; the pooled AUCs side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=["dense", "pca", "auto"], help="model kinds, or auto (chosen per experiment)")
    args = parser.parse_args()
    data_sets = {"SKAB": lambda seed, work: skab_files(args.data_dir, work), "NAB realKnownCause": lambda seed, work: nab_files(args.data_dir, work),
                 "simulated plant": simulated_files}
    runs, rows = [], []
    for name, experiments in data_sets.items():
        for kind in args.kinds:
            for seed in args.seeds:
                result = {"data": name, "kind": kind, "seed": seed}
                for setting, distances in SETTINGS.items():
                    started = time.perf_counter()
                    with tempfile.TemporaryDirectory() as folder:
                        auc, trained, kinds = pooled_auc(experiments(seed, Path(folder)), kind, distances, seed)
                    result[setting] = {"roc_auc": round(auc, 4), "experiments": trained, "kinds": dict(kinds),
                                       "seconds": round(time.perf_counter() - started, 1)}
                runs.append(result)
                chosen = result["errors + distances"]["kinds"]
                rows.append([name, kind, seed, *(result[s]["roc_auc"] for s in SETTINGS),
                             f"{result['errors + distances']['roc_auc'] - result['reconstruction errors']['roc_auc']:+.4f}",
                             result["errors + distances"]["experiments"],
                             ", ".join(f"{k} {n}" for k, n in sorted(chosen.items(), key=lambda kv: -kv[1])),
                             result["errors + distances"]["seconds"]])
                print(*rows[-1], flush=True)
    write_results("score_ranking", {"settings": SETTINGS, "simulated": SIMULATED, "runs": runs},
                  ["data", "kind", "seed", *(f"ROC AUC, {s}" for s in SETTINGS), "change", "experiments",
                   "kinds trained (errors + distances)", "seconds (errors + distances)"], rows,
                  "Pooled ROC AUC of the rows' scores over each model's own threshold; the defaults otherwise (window and stride from "
                  "the data's length, out-of-fold levels, the alarms threshold). SKAB: each file's first 400 rows to train; NAB "
                  "realKnownCause: the probationary 15 %; simulated plant: "
                  f"{SIMULATED['machines']} machines x {SIMULATED['rows']:,} rows, the first {SIMULATED['normal_rows']:,} fault-free "
                  f"to train, {SIMULATED['faults']} faults each after. Experiments the defaults cannot train on are left out of both "
                  "settings. Kind auto: each experiment's kind chosen on its training rows as `linewatch train --model auto` chooses it "
                  "(the seconds include the candidates' training). Command: `python -m benchmarks.score_ranking`.")


if __name__ == "__main__":
    main()
