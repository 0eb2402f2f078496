"""Which sensor: does an alarm's top sensor name the sensor the fault hit?

On the simulated plant (faults of every kind, each on a known sensor), the default model (PCA) is trained with the
tool's defaults on each machine's normal hours; the rest is scored, the runtime's default alarm policy is applied, and
for every fault that raised an alarm, the sensors with the largest errors in the window that raised it (the event's
``top_features``) are compared with the sensors the fault changed. Broken correlation changes flow, degradation
vibration and bearing temperature; the other kinds change the sensor they were given. Usage::

    python -m benchmarks.top_sensor [--seeds 0 1 2]

Writes ``results/top_sensor.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.common import train_with_defaults, write_results
from edge_runtime.contract.alarms import Alarm, AlarmConfig
from edge_runtime.delivery.event_schema import top_features
from train.data import read_table
from train.detector import DEFAULT_KIND
from train.simulate import FAULT_KINDS, simulate_plant, write_table

CHANGED = {"broken_correlation": {"flow"}, "degradation": {"vibration", "bearing_temp"}}  # kinds that change fixed sensors


def changed_sensors(fault) -> set[str]:
    """The sensors a fault changes."""
    return CHANGED.get(fault.kind, {fault.feature})


def measure(seed: int, machines: int, rows: int, normal_rows: int, faults: int, work: Path) -> list[dict]:
    """One plant: per fault, whether an alarm was raised for it and where the raising window's top sensors point."""
    frame, injected = simulate_plant(machines, rows, normal_rows, faults, seed=seed)
    write_table(frame.groupby("machine").head(normal_rows), str(work / "train.csv"))
    write_table(frame, str(work / "all.csv"))
    detector, bundle, _ = train_with_defaults(read_table(work / "train.csv", series_column="machine"), seed, work)
    found = []
    for series in read_table(work / "all.csv", series_column="machine").series:
        scored = detector.score_series(series)
        ends = scored.windows.ends
        alarm = Alarm(*AlarmConfig().policy())
        raised = [j for j, score in enumerate(scored.window_scores) if alarm.update(float(score), detector.threshold_) == "alarm_raised"]
        for fault in (f for f in injected if f.machine == series.name):
            # the first alarm raised by a window that ends inside the fault or within one window after it
            hits = [j for j in raised if fault.start <= ends[j] < fault.start + fault.length + bundle.window]
            entry = {"seed": seed, "machine": fault.machine, "kind": fault.kind, "changed": sorted(changed_sensors(fault)), "detected": bool(hits)}
            if hits:
                top = [t["name"] for t in top_features(detector.features_, scored.feature_error[hits[0]])]
                entry.update({"top": top, "top1": top[0] in changed_sensors(fault), "top3": bool(set(top) & changed_sensors(fault))})
            found.append(entry)
    return found


def percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a whole percentage, or a dash when there is nothing to divide."""
    return f"{100 * part / whole:.0f}%" if whole else "–"


def main() -> None:
    """Every seed; the shares per fault kind and overall."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--rows", type=int, default=12_000)
    parser.add_argument("--normal-rows", type=int, default=4_000)
    parser.add_argument("--faults", type=int, default=6, help="faults per machine (their kinds rotate)")
    args = parser.parse_args()
    faults: list[dict] = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            faults += measure(seed, args.machines, args.rows, args.normal_rows, args.faults, Path(folder))
            print(f"seed {seed}: {sum(f['detected'] for f in faults)} of {len(faults)} faults detected so far", flush=True)
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for fault in faults:
        by_kind[fault["kind"]].append(fault)
    rows, summary = [], {}
    for kind in [k for k in FAULT_KINDS if k in by_kind] + ["all"]:
        group = faults if kind == "all" else by_kind[kind]
        detected = [f for f in group if f["detected"]]
        top1, top3 = sum(f["top1"] for f in detected), sum(f["top3"] for f in detected)
        summary[kind] = {"faults": len(group), "detected": len(detected), "top1": top1, "top3": top3,
                         "top1_share": top1 / len(detected) if detected else None, "top3_share": top3 / len(detected) if detected else None}
        rows.append([kind, len(group), len(detected), f"{top1} ({percent(top1, len(detected))})", f"{top3} ({percent(top3, len(detected))})"])
    write_results("top_sensor", {"seeds": args.seeds, "summary": summary, "faults": faults},
                  ["fault kind", "faults", "detected", "top sensor is a changed one", "a changed sensor in the top three"], rows,
                  f"The simulated plant ({args.machines} machines, {args.faults} faults each, seeds {', '.join(map(str, args.seeds))}), the default "
                  f"model ({DEFAULT_KIND}) trained with the tool's defaults on each machine's first "
                  f"{args.normal_rows:,} rows, the runtime's default alarm policy; per detected fault, the top sensors of the window that "
                  "raised its alarm (as the event's top_features) against the sensors the fault changed. "
                  "Command: `python -m benchmarks.top_sensor`.")


if __name__ == "__main__":
    main()
