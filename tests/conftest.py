"""Shared fixtures. Under CI (CI=true) nothing CI can provide may skip: it fails instead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import DATASETS, FP16_KINDS, TEST_DATA, committed_bundle, need, tiny_detector


@pytest.fixture(scope="session", autouse=True)
def state_directory(tmp_path_factory) -> Path:
    """Every runtime the tests start keeps its state in a folder of the test session, as systemd's StateDirectory= would
    give it (``$STATE_DIRECTORY``, inherited by the runtimes started as processes), never in /var/lib or ~/.local.
    """
    import os

    folder = tmp_path_factory.mktemp("state")
    previous = os.environ.get("STATE_DIRECTORY")
    os.environ["STATE_DIRECTORY"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("STATE_DIRECTORY", None)
    else:
        os.environ["STATE_DIRECTORY"] = previous


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared benchmark data folder (../shared/datasets)."""
    need(DATASETS.is_dir(), f"shared datasets not found at {DATASETS}")
    return DATASETS


@pytest.fixture(scope="session")
def plant_csv() -> Path:
    """A small synthetic plant CSV (committed): 2 machines x 3000 rows, 1500 normal, 2 faults each."""
    return TEST_DATA / "plant.csv"


@pytest.fixture(scope="session")
def plant_table(plant_csv):
    """The plant CSV read as a SensorTable (one series per machine)."""
    from train.data import read_table

    return read_table(plant_csv, series_column="machine")


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
def runtime_bundle(tmp_path_factory) -> Path:
    """A small dense-AE bundle (window 20, stride 5) trained on the plant's normal period (committed; a copy)."""
    return committed_bundle("runtime", tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="session")
def runtime_run() -> Path:
    """The training run the runtime bundle was exported from (loading it needs torch)."""
    return TEST_DATA / "runs" / "runtime"


@pytest.fixture(scope="session")
def kind_bundles(plant_table, tmp_path_factory) -> dict:
    """Per model kind: a tiny fitted detector and its bundle (with an FP16 variant where the kind supports one)."""
    from export.bundler import export_run
    from train.models import MODELS

    root = tmp_path_factory.mktemp("bundles")
    made = {}
    for kind in sorted(MODELS):
        detector = tiny_detector(kind).fit(plant_table)
        detector.save(root / f"run_{kind}")
        bundle = export_run(root / f"run_{kind}", root / f"bundle_{kind}", fp16=kind in FP16_KINDS, echo=lambda *_: None)
        made[kind] = (detector, bundle)
    return made
