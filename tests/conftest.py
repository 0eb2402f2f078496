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


@pytest.fixture(scope="session")
def mosquitto_path() -> str:
    """The mosquitto binary (make test installs it from Debian)."""
    from mqtt_helpers import MOSQUITTO

    need(MOSQUITTO is not None, "mosquitto is not installed (apt-get install mosquitto)")
    return MOSQUITTO


@pytest.fixture
def broker(mosquitto_path, tmp_path):
    """A fresh mosquitto on a free loopback port."""
    from mqtt_helpers import Mosquitto

    instance = Mosquitto(tmp_path).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def runtime_bundle(plant_table, tmp_path_factory):
    """A small dense-AE bundle (window 20, stride 5) trained on the plant's normal period."""
    from export.bundler import export_run

    root = tmp_path_factory.mktemp("runtime_bundle")
    tiny_detector("dense", epochs=8).fit(plant_table).save(root / "run")
    return export_run(root / "run", root / "bundle", echo=lambda *_: None)


def runtime_config(port: int, bundle, tmp_path, inputs=None, **runtime) -> "object":
    """A validated runtime Config for tests: fast reconnect, short timeouts, QoS 1 inputs."""
    from edge_runtime.config import parse_config

    data = {
        "broker": {"host": "127.0.0.1", "port": port, "client_id": "lw-test", "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "runtime": {"outbox": str(tmp_path / "outbox.sqlite"), "latency_budget_ms": 50.0, "shutdown_timeout_s": 5.0,
                    "reload_poll_s": 0.2, **runtime},
        "models": [{"name": "pumps", "bundle": str(bundle), "alarm": {"on_k": 2, "on_n": 3, "off_m": 3, "deadband": 0.1},
                    "inputs": inputs or [{"topic": "plant/{line}/{machine}/telemetry", "format": "json", "qos": 1}]}],
    }
    return parse_config(data)
