"""Regenerate the committed test data: the plant CSVs and the tiny ONNX bundles (with their training runs) that the
runtime and reliability tests use, so that those tests run on a gateway install, where there is no torch.

Run from the repository root, with the train extra installed::

    python tests/data/regenerate.py

Everything here is small (a few hundred KB) and deterministic in its inputs (seeded simulator, seeded training);
the trained weights may differ in the last bits between torch builds, which the tests do not depend on.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from export.bundler import export_run
from train.data import read_table
from train.simulate import FEATURES, simulate_plant, write_table

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("helpers", HERE.parent / "helpers.py")  # the tests' own tiny_detector
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)
tiny_detector = helpers.tiny_detector

REGIME_ROWS_KEPT = 600  # rows per machine of the regime plant the tests replay (the model trains on all 9,000)
FAST_HZ = 100  # the fast bundle: the plant's samples at 100 Hz


def _bundle(detector, table, name: str, work: Path, keep_run: bool = False) -> None:
    """Fit, save, export into ``bundles/<name>`` (and keep the run in ``runs/<name>`` when asked)."""
    run = work / f"run_{name}"
    detector.fit(table).save(run)
    target = HERE / "bundles" / name
    shutil.rmtree(target, ignore_errors=True)
    export_run(run, target, echo=lambda *_: None)
    if keep_run:
        shutil.rmtree(HERE / "runs" / name, ignore_errors=True)
        shutil.copytree(run, HERE / "runs" / name)
    print(f"bundles/{name}: {sum(p.stat().st_size for p in target.iterdir()) >> 10} KiB")


def main() -> None:
    """Write plant.csv, regime.csv, bundles/* and runs/runtime."""
    frame, _ = simulate_plant(machines=2, rows=3000, normal_rows=1500, faults_per_machine=2, seed=1)
    write_table(frame, str(HERE / "plant.csv"))
    regime, _ = simulate_plant(machines=2, rows=9000, normal_rows=9000, faults_per_machine=0, seed=5, regimes=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        write_table(regime, str(work / "regime.csv"))
        write_table(regime.groupby("machine").head(REGIME_ROWS_KEPT), str(HERE / "regime.csv"))
        plant = read_table(HERE / "plant.csv", series_column="machine")
        # eight epochs: good enough to alarm on the plant's faults; the held-out tail calibrates it
        _bundle(tiny_detector("dense", epochs=8, calibration="holdout"), plant, "runtime", work, keep_run=True)
        fast = read_table(HERE / "plant.csv", series_column="machine")
        for series in fast.series:
            series.time = series.time / FAST_HZ
        _bundle(tiny_detector("dense", epochs=8), fast, "fast", work)
        _bundle(tiny_detector("dense", epochs=8, seed=7), plant, "same", work)
        _bundle(tiny_detector("dense", epochs=8, seed=7), read_table(HERE / "plant.csv", features=FEATURES[:4], series_column="machine"),
                "narrow", work)
        _bundle(tiny_detector("pca", window=10, stride=5), plant, "window10", work)
        conditions = read_table(work / "regime.csv", series_column="machine", conditions=["setpoint", "recipe"])
        _bundle(tiny_detector("dense", conditions=["setpoint", "recipe"], calibration="holdout"), conditions, "conditional", work)


if __name__ == "__main__":
    main()
