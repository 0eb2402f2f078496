"""Does the threshold keep its promise on normal data the model has not seen? False alarms per machine and day,
promised against realised, at several targets.

Trains with the defaults on the simulator's normal operation (``--train-hours`` per machine, one seed), exports the
bundle, then replays ``--days`` of *other* normal operation per machine (another seed: other duty cycles and noise,
no faults) through the exported ONNX, and counts the raises of the runtime's default alarm policy at the threshold
each target gets from the same training (``AutoencoderDetector.threshold_for``; the bundle's own is the one for
``--false-alarms-per-day`` 1). Usage: ``python -m benchmarks.false_alarms [--regimes] [--seeds 0 1 2] [--train-hours 24]
[--name NAME]``. Writes ``results/false_alarms[_regimes].{json,md,png}`` (or ``results/NAME.*``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, train_with_defaults, write_results
from edge_runtime.contract.alarm_rate import alarm_raises
from edge_runtime.contract.tables import read_csv
from edge_runtime.scoring.backends import create_backend
from edge_runtime.scoring.offline import window_scores
from train.data import read_table
from train.simulate import simulate_plant, write_table

BAND = (0.5, 2.0)  # realised over promised, the band a calibrated promise stays in


def unseen_scores(bundle, machines: int, days: float, seed: int, regimes: bool, work: Path) -> list[np.ndarray]:
    """Window scores of ``days`` of other normal operation per machine, through the exported ONNX, in time order."""
    rows = int(days * 86_400)
    unseen, _ = simulate_plant(machines, rows, rows, 0, seed=seed + 1000, start="2026-03-01T00:00:00Z", regimes=regimes)
    write_table(unseen, str(work / "unseen.csv"))
    with create_backend(bundle) as backend:
        return [window_scores(series, backend)[1] for series in read_csv(work / "unseen.csv", bundle.features, "machine")]


def measure(seed: int, args: argparse.Namespace, work: Path) -> list[dict]:
    """Per target: the threshold, what it rests on, and the false alarms it raised per machine-day on unseen data."""
    rows = int(args.train_hours * 3600)
    frame, _ = simulate_plant(args.machines, rows, rows, 0, seed=seed, regimes=args.regimes)
    write_table(frame, str(work / "train.csv"))
    started = time.perf_counter()
    detector, bundle, _ = train_with_defaults(read_table(work / "train.csv", series_column="machine"), seed, work)
    trained_s = time.perf_counter() - started
    scores = unseen_scores(bundle, args.machines, args.days, seed, args.regimes, work)
    machine_days = sum(len(s) for s in scores) * bundle.stride * bundle.sample_period / 86_400
    found = []
    for target in args.targets:
        threshold = detector.threshold_for(target)
        if target == detector.false_alarms_per_day:
            assert abs(threshold.value - bundle.threshold) <= 1e-6 * bundle.threshold, "the bundle's threshold is the target's"
        raises = sum(alarm_raises(s, threshold.value) for s in scores)
        realised = raises / machine_days
        found.append({"seed": seed, "target": target, "threshold": threshold.value, "calibration_days": threshold.days,
                      "supported": threshold.supported, "alarm_raises": raises, "machine_days": round(machine_days, 3),
                      "false_alarms_per_machine_day": round(realised, 4), "ratio": round(realised / target, 3),
                      "in_band": BAND[0] <= realised / target <= BAND[1], "training_s": round(trained_s, 1)})
        print(found[-1], flush=True)
    return found


def plot(runs: list[dict], path: Path, title: str) -> None:
    """Promised against realised false alarms per machine-day, the calibration band shaded; none realised sits on the axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted({r["target"] for r in runs})
    floor = min(1 / r["machine_days"] for r in runs) / 2
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    line = np.geomspace(targets[0] / 2, targets[-1] * 2, 50)
    ax.fill_between(line, BAND[0] * line, BAND[1] * line, color="tab:green", alpha=0.15, label=f"{BAND[0]:g}x to {BAND[1]:g}x")
    ax.plot(line, line, color="tab:green", lw=0.8)
    for supported, marker, label in ((True, "o", "rests on enough days"), (False, "v", "extrapolated (too few days)")):
        chosen = [r for r in runs if bool(r["supported"]) is supported]
        if chosen:
            ax.scatter([r["target"] * (1 + 0.08 * (r["seed"] - 1)) for r in chosen],
                       [max(r["false_alarms_per_machine_day"], floor) for r in chosen], marker=marker, label=label, zorder=3)
    ax.axhline(floor, color="grey", lw=0.5, ls=":")
    ax.text(targets[0] / 2, floor * 1.1, "none raised", fontsize=7, color="grey")
    ax.set(xscale="log", yscale="log", xlabel="promised false alarms per machine-day", ylabel="realised on unseen normal data",
           title=title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Run every seed; write the results and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=3)
    parser.add_argument("--train-hours", type=float, default=24.0, help="normal operation each machine is trained on")
    parser.add_argument("--days", type=float, default=10.0, help="unseen normal operation replayed per machine")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.1, 1.0, 10.0], help="false alarms per machine-day promised")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--regimes", action="store_true", help="products and set-points that change during normal operation "
                        "(simulate --regimes), the set-point a feature of the unconditional model")
    parser.add_argument("--name", help="results name (default false_alarms, or false_alarms_regimes with --regimes)")
    args = parser.parse_args()
    name = args.name or ("false_alarms_regimes" if args.regimes else "false_alarms")
    runs = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            runs += measure(seed, args, Path(folder))
    plot(runs, RESULTS / f"{name}.png", "Regime plant" if args.regimes else "Steady plant")
    rows = [[r["seed"], r["target"], f"{r['threshold']:.4g}", r["calibration_days"], "yes" if r["supported"] else "no (extrapolated)",
             r["alarm_raises"], r["machine_days"], r["false_alarms_per_machine_day"], r["ratio"]] for r in runs]
    write_results(name, {"machines": args.machines, "train_hours": args.train_hours, "days": args.days, "regimes": args.regimes,
                         "band": list(BAND), "runs": runs},
                  ["seed", "promised per machine-day", "threshold", "calibration stream-days", "target supported", "alarm raises",
                   "unseen machine-days", "realised per machine-day", "realised / promised"], rows,
                  f"{args.machines} simulated machines trained with the defaults on {args.train_hours:g} h of normal operation each; "
                  f"{args.days:g} day(s) of other normal operation per machine (another seed, no faults) through the exported ONNX "
                  "and the runtime's default alarm policy. One training per seed; each target's threshold from the same "
                  "calibration scores." + (" Regime plant (`simulate --regimes`): the product changes every 30-90 min; the "
                                           "unconditional model sees the set-point as a feature and not the product." if args.regimes else ""))


if __name__ == "__main__":
    main()
