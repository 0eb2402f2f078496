"""SKAB with its rig setup as an operating condition: one model for the whole rig, unconditional against
conditional on the setup, the tool's defaults otherwise.

SKAB records no operating-condition column, but its experiments ran the rig in known setups: the ``valve1``,
``valve2`` and ``other`` groups (valve1/valve2 at about 32 L/min, the others mostly near 125). A plant that deploys
one model per rig rather than one per experiment meets exactly the case conditional models are for. Each
experiment's first 400 rows (SKAB's protocol) are pooled into one training set, with the group as a categorical
condition ``setup`` (added in a temporary copy outside the project); both models are dense autoencoders (the kind
conditional models use) trained with the defaults otherwise (window and stride from the data's length, the default
threshold at one false alarm per machine and day), exported, and every test part is scored through the exported ONNX
with the runtime's alarm policy. One confusion matrix is pooled over the 34 test parts, as in ``benchmarks/real_data.py`` (per-file models).

Usage: ``python -m benchmarks.skab_setups [--data-dir ../shared/datasets] [--seeds 0 1 2]``.
Writes ``results/skab_setups.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import train_with_defaults, write_results
from benchmarks.real_data import SKAB_TRAIN_ROWS, cut, summary
from edge_runtime.contract.alarms import AlarmConfig
from edge_runtime.contract.detection_metrics import evaluate_models
from edge_runtime.scoring.backends import create_backend
from edge_runtime.scoring.offline import labelled_parts
from train.data import read_table

GROUPS = ("valve1", "valve2", "other")


def with_setup(data_dir: Path, folder: Path) -> list[Path]:
    """Each SKAB experiment with its group as a ``setup`` column, written under ``folder`` (a temporary one)."""
    paths = []
    for group in GROUPS:
        for path in sorted((data_dir / "skab" / "data" / group).glob("*.csv"), key=lambda p: int(p.stem)):
            frame = pd.read_csv(path, sep=";").drop(columns=["changepoint"], errors="ignore")
            target = folder / f"{group}_{path.stem}.csv"
            frame.assign(setup=group).to_csv(target, index=False)
            paths.append(target)
    return paths


def measure(paths: list[Path], conditional: bool, seed: int, work: Path) -> dict:
    """Train one pooled model (conditional on ``setup`` or not), score every test part, pool the decisions."""
    conditions = ["setup"] if conditional else None
    table = read_table(paths, label_column="anomaly", conditions=conditions)
    started = time.perf_counter()
    detector, bundle, caught = train_with_defaults(cut(table, slice(0, SKAB_TRAIN_ROWS)), seed, work, kind="dense",
                                                  conditions=conditions)
    seconds = time.perf_counter() - started
    with create_backend(bundle) as backend:
        parts = labelled_parts(backend, [str(p) for p in paths], None, None, "anomaly", SKAB_TRAIN_ROWS)
    metrics = evaluate_models([(parts, bundle.threshold, bundle.stride)], AlarmConfig().policy())
    return {"raw": summary(metrics), "alarm": summary(metrics, "alarm_policy_"), "roc_auc": round(metrics["roc_auc"], 3),
            "pr_auc": round(metrics["pr_auc"], 3),
            "window": bundle.window, "stride": bundle.stride,
            "threshold_windows": bundle.manifest["threshold"]["windows"], "train_seconds": round(seconds, 1), "warnings": caught}


def main() -> None:
    """Both models for each seed; write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="linewatch-skab-") as tmp:
        folder = Path(tmp)
        paths = with_setup(args.data_dir, folder)
        for seed in args.seeds:
            for conditional in (False, True):
                work = folder / f"{'cond' if conditional else 'plain'}-{seed}"
                work.mkdir()
                result = measure(paths, conditional, seed, work)
                runs.append({"seed": seed, "model": "conditional (setup)" if conditional else "unconditional", **result})
                print(runs[-1]["model"], seed, result["alarm"], flush=True)
    rows = [[r["model"], r["seed"], decision, r[key]["f1"], round(100 * r[key]["far"], 1), round(100 * r[key]["mar"], 1),
             f"{r[key]['events_detected']}/{r[key]['events']}", r[key]["series_alarming_before_anomaly"], r["roc_auc"], r["pr_auc"]]
            for r in runs for key, decision in (("raw", "raw threshold"), ("alarm", "alarm policy"))]
    write_results("skab_setups", {"runs": runs},
                  ["model (one for all 34 experiments)", "seed", "decision", "F1", "FAR %", "MAR %", "events detected",
                   "series alarming before the anomaly", "ROC AUC", "PR AUC"], rows,
                  "Dense AE, defaults; trained on the first 400 rows of every experiment pooled, the experiment group (valve1, valve2, "
                  "other) as a categorical condition for the conditional model; test parts scored through the exported ONNX; ROC and PR AUC "
                  "of the window scores over the scored test rows (threshold-free). "
                  "Command: `python -m benchmarks.skab_setups`.")


if __name__ == "__main__":
    main()
