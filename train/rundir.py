"""The run directory, the contract between ``linewatch train`` and ``linewatch export``.

Format ``linewatch.run/2`` (2: the scorer holds each channel's normal error level; a version 1
run predates it and must be retrained): ``config.json`` (everything needed to rebuild the detector, no
pickles), ``model.npz`` (the scorer's state dict), ``calibration_windows.npy`` (raw windows the
export checks parity on) and ``loss_curve.csv``. Plots are written beside it by the CLI; saving
needs neither matplotlib nor torch. :func:`load_run` checks the format and version first and says
what it found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contract.bundle import read_json_object
from train.errors import DataError

FORMAT = "linewatch.run"
VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.npz"
CALIBRATION_FILE = "calibration_windows.npy"
LOSS_CURVE_FILE = "loss_curve.csv"
REQUIRED_KEYS = ("kind", "model_params", "window", "stride", "features", "sample_period", "max_gap", "threshold",
                 "calibration_quantiles", "training")


class RunDirError(DataError):
    """A folder that is not a run directory this version of linewatch can read."""


@dataclass
class RunContents:
    """What a run directory holds: the config, the scorer weights and the calibration windows."""

    config: dict
    weights: dict[str, np.ndarray]
    calibration_windows: np.ndarray


def save_run(run_dir: str | Path, config: dict, weights: dict[str, np.ndarray], calibration_windows: np.ndarray,
             loss_curve: list[tuple[float, float]]) -> Path:
    """Write a run directory; ``config`` gets the format tag, ``loss_curve`` is (train, validation) per epoch."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps({"format": f"{FORMAT}/{VERSION}", **config}, indent=2))
    np.savez(run_dir / WEIGHTS_FILE, **weights)
    np.save(run_dir / CALIBRATION_FILE, calibration_windows, allow_pickle=False)
    rows = ["epoch,train_loss,val_loss"] + [f"{i},{a},{b}" for i, (a, b) in enumerate(loss_curve)]
    (run_dir / LOSS_CURVE_FILE).write_text("\n".join(rows) + "\n")
    return run_dir


def check_format(tag, where: str) -> None:
    """Accept ``linewatch.run/<VERSION>``; explain any other tag (missing, another format, a newer version)."""
    if not isinstance(tag, str) or "/" not in tag:
        raise RunDirError(f"{where}: no format tag (found {tag!r}); expected {FORMAT}/{VERSION}")
    name, _, version = tag.partition("/")
    if name != FORMAT:
        raise RunDirError(f"{where}: format {tag!r} is not a linewatch run directory ({FORMAT}/{VERSION})")
    if not version.isdigit() or int(version) != VERSION:
        newer = version.isdigit() and int(version) > VERSION
        hint = "written by a newer linewatch; upgrade" if newer else "an older linewatch's run: train it again"
        raise RunDirError(f"{where}: run directory version {version!r} found, this linewatch reads {VERSION} ({hint})")


def load_run(run_dir: str | Path) -> RunContents:
    """Read a run directory written by :func:`save_run`; :class:`RunDirError` says what is wrong."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    config = read_json_object(config_path, RunDirError, f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    check_format(config.get("format"), str(config_path))
    absent = [key for key in REQUIRED_KEYS if key not in config]
    if absent:
        raise RunDirError(f"{config_path}: missing key(s) {absent}")
    for name in (WEIGHTS_FILE, CALIBRATION_FILE):
        if not (run_dir / name).is_file():
            raise RunDirError(f"{run_dir}: {name} is missing; train again or copy the whole folder")
    with np.load(run_dir / WEIGHTS_FILE, allow_pickle=False) as archive:
        weights = {key: archive[key] for key in archive.files}
    calibration = np.load(run_dir / CALIBRATION_FILE, allow_pickle=False)
    return RunContents(config, weights, calibration)
