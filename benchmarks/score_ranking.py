"""Which window score ranks faults best, on SKAB, NAB realKnownCause and the simulated plant: the pooled ROC AUC of the
reconstruction errors alone against the errors with the residual and operating-point distances (dense and PCA), the
kind ``--model auto`` chooses, an ensemble of the dense and PCA models, and the dense model at two window lengths.

Every experiment is trained with the defaults but for the setting compared (window and stride from the data's length,
the default threshold), on the same rows as ``benchmarks.real_data`` (SKAB: each file's first 400 rows; NAB: its
probationary 15 %) and, for the simulated plant, on each machine's fault-free first rows; the rest is scored as the
runtime would (``score_series``), divided by the model's own threshold, and pooled over the experiments of a data set.
The AUC does not depend on any threshold rule: it says how well a score puts anomalous rows above normal ones.

Usage: ``python -m benchmarks.score_ranking [--data-dir ../shared/datasets] [--seeds 0 1 2]``.
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
# (kind, distances, window factor) trained per data set and seed; labelled by (kind, distances) or a name
CONFIGURATIONS = [(("dense", False), "dense", False, 1), (("dense", True), "dense", True, 1), (("pca", False), "pca", False, 1),
                  (("pca", True), "pca", True, 1), (("auto", True), "auto", True, 1), ("dense 2W", "dense", True, 2)]
ENSEMBLES = {"dense + pca": (("dense", True), ("pca", True)), "dense, windows W and 2W": (("dense", True), "dense 2W")}
SIMULATED = {"machines": 4, "rows": 12_000, "normal_rows": 4_000, "faults": 6}


def simulated_files(seed: int, work: Path) -> Iterator[tuple[str, Path, str, SensorTable, int]]:
    """The simulated plant of ``seed`` as one experiment: every machine trained on its fault-free first rows."""
    frame, _ = simulate_plant(SIMULATED["machines"], SIMULATED["rows"], SIMULATED["normal_rows"], SIMULATED["faults"], seed=seed)
    path = work / "plant.csv"
    write_table(frame.drop(columns="fault"), str(path))
    yield "plant", path, "label", read_table(path, label_column="label", series_column="machine"), SIMULATED["normal_rows"]


def experiment_scores(experiments, kind: str, distances: bool, seed: int, window_factor: int = 1) -> tuple[dict, Counter]:
    """Per experiment trained, its rows' labels and scores over the model's own threshold (``{name: (labels,
    scores)}``), and the kinds trained. An experiment the defaults cannot train on is left out (it fails on its data,
    not on the score). ``kind`` ``auto``: each experiment's kind chosen as ``linewatch train --model auto`` chooses
    it, on its training rows alone; ``window_factor``: the default window (and stride) times this.
    """
    from train.detector import AutoencoderDetector
    from train.selection import choose_kind
    from train.windows import default_window

    results, kinds = {}, Counter()
    for name, _, _, table, train_rows in experiments:
        window, stride = default_window([min(len(s), train_rows) for s in table.series])
        options = {"window": window * window_factor, "stride": stride * window_factor, "device": "cpu", "distances": distances}
        training = cut(table, slice(0, train_rows))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                chosen = choose_kind(training, seed, echo=lambda *_: None, **options)[0] if kind == "auto" else kind
                detector = AutoencoderDetector(kind=chosen, seed=seed, progress=False, **options).fit(training)
        except Exception:
            continue
        kinds[chosen] += 1
        results[name] = (np.concatenate([s.labels[train_rows:] for s in table.series]),
                         np.concatenate([detector.score_series(s).row_scores[train_rows:] / detector.threshold_ for s in table.series]))
    return results, kinds


def pooled_auc(results: dict, names) -> float:
    """ROC AUC of the rows of the experiments ``names`` pooled, rows without a score left out."""
    y = np.concatenate([results[n][0] for n in names])
    s = np.concatenate([results[n][1] for n in names])
    scored = np.isfinite(s)
    return float(roc_auc_score(y[scored], s[scored]))


def combined(first: dict, second: dict) -> dict:
    """Two configurations' scores averaged row by row (over the threshold, so on one scale; where only one has a
    score, that one), on the experiments both trained.
    """
    out = {}
    for name in first.keys() & second.keys():
        a, b = first[name][1], second[name][1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows neither scores stay NaN
            out[name] = (first[name][0], np.nanmean(np.stack([a, b]), axis=0))
    return out


def main() -> None:
    """Every data set, seed and configuration; the pooled AUCs side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    data_sets = {"SKAB": lambda seed, work: skab_files(args.data_dir, work), "NAB realKnownCause": lambda seed, work: nab_files(args.data_dir, work),
                 "simulated plant": simulated_files}
    runs, rows = [], []

    def add(name: str, kind: str, seed: int, aucs: dict, trained: int, kinds: Counter, seconds: float) -> None:
        errors, both = aucs.get("reconstruction errors"), aucs["errors + distances"]
        runs.append({"data": name, "kind": kind, "seed": seed, "roc_auc": aucs, "experiments": trained, "kinds": dict(kinds),
                     "seconds": round(seconds, 1)})
        rows.append([name, kind, seed, "" if errors is None else round(errors, 4), round(both, 4),
                     "" if errors is None else f"{both - errors:+.4f}", trained,
                     ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])), f"{seconds:.1f}"])
        print(*rows[-1], flush=True)

    for name, experiments in data_sets.items():
        for seed in args.seeds:
            scored, cost = {}, {}
            for label, kind, distances, factor in CONFIGURATIONS:
                started = time.perf_counter()
                with tempfile.TemporaryDirectory() as folder:
                    scored[label] = experiment_scores(experiments(seed, Path(folder)), kind, distances, seed, factor)
                cost[label] = time.perf_counter() - started
            for kind in ("dense", "pca"):  # both settings, on the experiments both trained
                names = scored[(kind, False)][0].keys() & scored[(kind, True)][0].keys()
                aucs = {setting: pooled_auc(scored[(kind, distances)][0], names) for setting, distances in SETTINGS.items()}
                add(name, kind, seed, aucs, len(names), scored[(kind, True)][1], cost[(kind, True)])
            auto, kinds = scored[("auto", True)]
            add(name, "auto", seed, {"errors + distances": pooled_auc(auto, auto)}, len(auto), kinds, cost[("auto", True)])
            for label, (first, second) in ENSEMBLES.items():
                both = combined(scored[first][0], scored[second][0])
                add(name, label, seed, {"errors + distances": pooled_auc(both, both)}, len(both), scored[first][1] + scored[second][1],
                    cost[first] + cost[second])
    write_results("score_ranking", {"settings": SETTINGS, "simulated": SIMULATED, "runs": runs},
                  ["data", "kind", "seed", *(f"ROC AUC, {s}" for s in SETTINGS), "change", "experiments", "models trained", "seconds"], rows,
                  "Pooled ROC AUC of the rows' scores over each model's own threshold; the defaults otherwise (window and stride from "
                  "the data's length, out-of-fold levels, the alarms threshold). SKAB: each file's first 400 rows to train; NAB "
                  "realKnownCause: the probationary 15 %; simulated plant: "
                  f"{SIMULATED['machines']} machines x {SIMULATED['rows']:,} rows, the first {SIMULATED['normal_rows']:,} fault-free "
                  f"to train, {SIMULATED['faults']} faults each after. Experiments the defaults cannot train on are left out. auto: "
                  "each experiment's kind chosen on its training rows as `linewatch train --model auto` chooses it (the seconds include "
                  "the candidates' training). dense + pca: the two models' scores over their thresholds averaged row by row; dense, "
                  "windows W and 2W: the default window's model and one with twice the window and stride, averaged the same way "
                  "(where only one scores a row, its score). Seconds: training and scoring, with the distances. "
                  "Command: `python -m benchmarks.score_ranking`.")


if __name__ == "__main__":
    main()
