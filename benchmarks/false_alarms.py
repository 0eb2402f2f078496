"""Does the threshold keep its promise on normal data the model has not seen? False alarms per
machine and day, measured.

Trains with the defaults on the simulator's normal operation (``--train-rows`` per machine, one
seed), exports the bundle, then replays a day of *other* normal operation per machine (another
seed: other duty cycles and noise, no faults) through the exported ONNX and the runtime's alarm
policy, and counts alarm raises per machine and day against ``--false-alarms-per-day``. Usage:
``python -m benchmarks.false_alarms [--machines 3] [--days 1] [--seeds 0 1 2]``. Writes
``results/false_alarms.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import train_with_defaults, write_results
from edge_runtime.contract.alarms import Alarm, AlarmConfig
from edge_runtime.contract.tables import read_csv
from edge_runtime.scoring.backends import create_backend
from edge_runtime.scoring.offline import window_scores
from train.data import read_table
from train.simulate import simulate_plant, write_table


def measure(seed: int, machines: int, train_rows: int, days: float, target: float, work: Path, regimes: bool = False) -> dict:
    """Raises per machine-day on unseen normal data, and what the threshold rests on."""
    frame, _ = simulate_plant(machines, train_rows, train_rows, 0, seed=seed, regimes=regimes)
    write_table(frame, str(work / "train.csv"))
    table = read_table(work / "train.csv", series_column="machine")
    _, bundle, _ = train_with_defaults(table, seed, work, false_alarms_per_day=target)
    rows = int(days * 86_400 / 1.0)
    unseen, _ = simulate_plant(machines, rows, rows, 0, seed=seed + 1000, start="2026-03-01T00:00:00Z", regimes=regimes)
    write_table(unseen, str(work / "unseen.csv"))
    a = AlarmConfig()
    raises = windows = 0
    with create_backend(bundle) as backend:
        for series in read_csv(work / "unseen.csv", bundle.features, "machine"):
            _, scores, _ = window_scores(series, backend)
            alarm = Alarm(*a.policy())
            raises += sum(alarm.update(float(s), bundle.threshold) == "alarm_raised" for s in scores)
            windows += len(scores)
    info = bundle.manifest["threshold"]
    per_day = raises / (machines * days)
    return {"seed": seed, "window": bundle.window, "stride": bundle.stride, "threshold": info["value"], "calibration_windows": info["windows"],
            "supported": info["supported"], "windows_scored": windows, "alarm_raises": raises,
            "false_alarms_per_machine_day": round(per_day, 3), "target": target, "within_2x": per_day <= 2 * target}


def main() -> None:
    """Run every seed; write results/false_alarms.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=7200)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=1.0, help="--false-alarms-per-day given to training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--regimes", action="store_true", help="products and set-points that change during normal operation "
                        "(simulate --regimes), the set-point a feature of the unconditional model; results/false_alarms_regimes.*")
    parser.add_argument("--name", default=None, help="results file stem (default false_alarms, or false_alarms_regimes)")
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            runs.append(measure(seed, args.machines, args.train_rows, args.days, args.target, Path(folder), args.regimes))
        runs[-1]["seconds"] = round(time.perf_counter() - started, 1)
        print(runs[-1], flush=True)
    rows = [[r["seed"], r["calibration_windows"], "yes" if r["supported"] else "no", r["windows_scored"], r["alarm_raises"],
             r["false_alarms_per_machine_day"], r["target"]] for r in runs]
    write_results(args.name or ("false_alarms_regimes" if args.regimes else "false_alarms"), {"machines": args.machines, "days": args.days,
                                                                                "regimes": args.regimes, "runs": runs},
                         ["seed", "calibration windows", "target supported", "windows scored", "alarm raises",
                          "false alarms per machine-day", "target"], rows,
                         f"{args.machines} simulated machines, trained on {args.train_rows} normal rows each, scored on {args.days:g} day(s) "
                         "of other normal operation each (another seed, no faults), exported ONNX, the runtime's default alarm policy."
                         + (" Regime plant (`simulate --regimes`): the product changes every 30-90 min; the unconditional model sees "
                            "the set-point as a feature and not the product." if args.regimes else ""))


if __name__ == "__main__":
    main()
