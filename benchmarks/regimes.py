"""Conditional against unconditional on a plant whose product changes during normal operation.

Both models are the dense autoencoder (the kind conditional models use) trained with the tool's defaults otherwise on the
same normal hours of ``simulate --regimes``; the unconditional one sees the set-point as a feature and
never the product, the conditional one is given both as conditions (``--conditions
setpoint,recipe``). Each is then measured on a day of *other* normal operation per machine (false
alarms per machine-day under the runtime's default alarm policy, against the calibrated target
of 1), on a faulty stretch of the same plant (events detected, F1 and FAR of the alarm policy),
and on *recipe mismatches*: stretches where the controller reports one product while the pump
runs another (a wrong recipe loaded). The sensors there look like normal operation of the other
product, so only a model that knows the reported conditions can tell; the unconditional model's
row is the baseline that shows it. Scoring runs through training's scorer: conditional models
do not export yet.
Usage::

    python -m benchmarks.regimes [--seeds 0] [--train-rows 14400]

Writes ``results/regimes.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, write_results
from edge_runtime.contract.alarms import Alarm, AlarmConfig
from train.data import read_table
from train.detector import AutoencoderDetector
from train.evaluation import evaluate_detector
from train.simulate import simulate_plant, write_table
from train.windows import default_window

MODELS = {"unconditional": None, "conditional": ["setpoint", "recipe"]}
RECIPES_OTHER = {"A": "B", "B": "C", "C": "A"}


def plant(path: Path, machines: int, rows: int, normal_rows: int, faults: int, seed: int, conditions: list[str] | None,
          mismatches: int = 0):
    """Write a regime plant (with ``mismatches`` wrong-recipe stretches of 20 min per machine) and read it back."""
    frame, _ = simulate_plant(machines, rows, normal_rows, faults, seed=seed, regimes=True)
    rng = np.random.default_rng(seed)
    for machine in frame.machine.unique():
        rows_of = np.flatnonzero(frame.machine.to_numpy() == machine)
        for start in rng.choice(len(rows_of) - 1200, mismatches, replace=False):
            stretch = rows_of[start : start + 1200]
            actual = frame.recipe.iloc[stretch[0]]
            frame.loc[stretch, "recipe"] = RECIPES_OTHER[actual]  # reported; the sensors still follow the actual product
            frame.loc[stretch, "label"] = 1
    write_table(frame, str(path))
    return read_table(path, series_column="machine", conditions=conditions)


def false_alarms(detector: AutoencoderDetector, table) -> tuple[int, list]:
    """Alarm raises under the runtime's default policy over every series, and the first series' scores and recipes."""
    policy, raises, trace = AlarmConfig(), 0, []
    for series in table.series:
        scored = detector.score_series(series)
        alarm = Alarm(*policy.policy())
        raises += sum(alarm.update(float(s), detector.threshold_) == "alarm_raised" for s in scored.window_scores if s == s)
        if not trace:
            trace = [scored.windows.ends, scored.window_scores]
    return raises, trace


def measure(seed: int, machines: int, train_rows: int, days: float, work: Path) -> dict:
    """Both models on one seed's plant."""
    result = {"seed": seed}
    for name, conditions in MODELS.items():
        train = plant(work / f"train-{name}.csv", machines, train_rows, train_rows, 0, seed, conditions)
        window, stride = default_window([len(s) for s in train.series])
        detector = AutoencoderDetector(kind="dense", window=window, stride=stride, seed=seed, progress=False, device="cpu",
                                       conditions=conditions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector.fit(train)
            unseen = plant(work / f"unseen-{name}.csv", machines, int(days * 86_400), int(days * 86_400), 0, seed + 1000,
                           detector.conditions_ or None)
            raises, trace = false_alarms(detector, unseen)
            faulty = plant(work / f"faulty-{name}.csv", machines, 21_600, 3_600, 4, seed + 2000, detector.conditions_ or None)
            metrics, _ = evaluate_detector(detector, faulty)
            mismatch = plant(work / f"mismatch-{name}.csv", machines, 21_600, 21_600, 0, seed + 3000, detector.conditions_ or None, 4)
            mismatched, _ = evaluate_detector(detector, mismatch)
        result[name] = {"threshold": detector.threshold_, "calibration_windows": detector.threshold_info_.windows,
                        "false_alarms_per_machine_day": raises / (machines * days), "events_detected": metrics["alarm_policy_events_detected"],
                        "events": metrics["events"], "alarm_policy_f1": metrics["alarm_policy_f1"], "alarm_policy_far": metrics["alarm_policy_far"],
                        "roc_auc": metrics["roc_auc"], "mismatch_events_detected": mismatched["alarm_policy_events_detected"],
                        "mismatch_events": mismatched["events"], "mismatch_roc_auc": mismatched["roc_auc"]}
        result[name]["trace"] = {"ends": trace[0].tolist()[:4000], "scores": [float(s) for s in trace[1][:4000]]}
        print(seed, name, {k: v for k, v in result[name].items() if k != "trace"}, flush=True)
    return result


def plot(run: dict, recipes: np.ndarray, path: Path) -> None:
    """Scores on unseen normal operation with the threshold, each model on its own axis, the product shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    colours = {"A": "#ffffff", "B": "#dde8f5", "C": "#f5e6d8"}
    for axis, name in zip(axes, MODELS):
        ends = np.array(run[name]["trace"]["ends"])
        for start in range(0, len(recipes), 600):  # shade the product in 10-minute steps
            axis.axvspan(start / 3600, min(start + 600, len(recipes)) / 3600, color=colours[recipes[start]], lw=0)
        axis.plot(ends / 3600, run[name]["trace"]["scores"], lw=0.7, color="black")
        axis.axhline(run[name]["threshold"], color="red", ls="--", lw=1, label="threshold")
        axis.set_yscale("log")
        axis.set_ylabel("window score")
        axis.set_title(f"{name}: {run[name]['false_alarms_per_machine_day']:.1f} false alarms per machine-day (target 1)", fontsize=10)
        axis.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("hours of unseen normal operation (shading: product A white, B blue, C tan)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    """Run every seed; write results/regimes.{json,md,png}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=14_400)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            runs.append(measure(seed, args.machines, args.train_rows, args.days, Path(folder)))
    frame, _ = simulate_plant(args.machines, int(args.days * 86_400), int(args.days * 86_400), 0, seed=args.seeds[0] + 1000, regimes=True)
    plot(runs[0], frame[frame.machine == "m1"].recipe.to_numpy()[:40_000], RESULTS / "regimes.png")
    rows = [[r["seed"], name, f"{r[name]['false_alarms_per_machine_day']:.1f}", f"{r[name]['events_detected']} / {r[name]['events']}",
             f"{r[name]['alarm_policy_f1']:.3f}", f"{r[name]['alarm_policy_far']:.3f}", f"{r[name]['roc_auc']:.3f}",
             f"{r[name]['mismatch_events_detected']} / {r[name]['mismatch_events']}", f"{r[name]['mismatch_roc_auc']:.3f}"]
            for r in runs for name in MODELS]
    write_results("regimes", {"machines": args.machines, "train_rows": args.train_rows, "days": args.days,
                              "runs": [{k: ({kk: vv for kk, vv in v.items() if kk != "trace"} if isinstance(v, dict) else v)
                                        for k, v in r.items()} for r in runs]},
                  ["seed", "model", "false alarms per machine-day (target 1)", "faults detected", "alarm-policy F1", "alarm-policy FAR", "ROC AUC",
                   "recipe mismatches detected", "mismatch ROC AUC"],
                  rows, f"{args.machines} machines of `simulate --regimes`, trained with the defaults on {args.train_rows} normal rows each; "
                        f"false alarms on {args.days:g} day(s) of other normal operation per machine, detection on 6 h per machine with "
                        "4 faults each; recipe mismatches: 4 stretches of 20 min per machine in 6 h of otherwise normal operation where "
                        "the reported product is not the one running. Command: `python -m benchmarks.regimes --seeds "
                        + " ".join(map(str, args.seeds)) + "`.")


if __name__ == "__main__":
    main()
