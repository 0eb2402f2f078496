"""Shared fixtures. Under CI (CI=true) nothing CI can provide may skip: it fails instead."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = Path(os.environ.get("LINEWATCH_DATASETS", SHARED / "datasets"))


def need(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false, but fail under CI."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required under CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared benchmark data folder (../shared/datasets)."""
    need(DATASETS.is_dir(), f"shared datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture(scope="session")
def plant_csv(tmp_path_factory) -> Path:
    """A small synthetic plant CSV: 2 machines x 3000 rows, 1500 normal, 2 faults each."""
    pytest.importorskip("torch")
    from train.simulate import simulate_plant, write_table

    frame, _ = simulate_plant(machines=2, rows=3000, normal_rows=1500, faults_per_machine=2, seed=1)
    path = tmp_path_factory.mktemp("plant") / "plant.csv"
    write_table(frame, str(path))
    return path


@pytest.fixture(scope="session")
def plant_table(plant_csv):
    """The plant CSV read as a SensorTable (one series per machine)."""
    from train.data import read_table

    return read_table(plant_csv, series_column="machine")


def tiny_detector(kind: str, **overrides):
    """A detector small enough to train in about a second on the CPU."""
    from train.detector import AutoencoderDetector

    params = {"lstm": {"hidden": 16}, "conv": {"channels": [8, 8]}, "pca": {"components": 4}}.get(kind, {"hidden": [32], "latent": 4})
    options = dict(kind=kind, window=20, stride=5, model_params=params, epochs=3, batch_size=128, max_windows=1500, progress=False, seed=0)
    options.update(overrides)
    return AutoencoderDetector(**options)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator."""
    return np.random.default_rng(0)
