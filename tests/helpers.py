"""Helpers shared by the test packages (imported as ``helpers``; ``tests/`` is on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATASETS = Path(os.environ.get("LINEWATCH_DATASETS", SHARED / "datasets"))
TEST_DATA = Path(__file__).resolve().parent / "data"  # committed, made by tests/data/regenerate.py: no torch needed to use it
FEATURES = ["current", "speed", "vibration", "bearing_temp", "pressure", "flow"]  # the simulated plant's (tests/data/plant.csv)


# The kinds whose FP16 ONNX variant keeps the tolerance on the test plant. ONNX Runtime's CPU provider crashes on an
# FP16 LSTM graph; PCA's FP16 reconstruction misses it once the residual distance reads its small errors
# (docs/export.md), and a test holds that the export refuses it.
FP16_KINDS = ("conv", "dense", "vae")


def need(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false, but fail under CI."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required under CI: {reason}")
        pytest.skip(reason)


def committed_bundle(name: str, into: Path) -> Path:
    """A copy (under ``into``) of the committed test bundle ``tests/data/bundles/<name>``: tests may change their copy."""
    import shutil

    return Path(shutil.copytree(TEST_DATA / "bundles" / name, into / name))


def tiny_detector(kind: str, **overrides):
    """A detector small enough to train in about a second on the CPU."""
    from train.detector import AutoencoderDetector

    params = {"lstm": {"hidden": 16}, "conv": {"channels": [8, 8]}, "pca": {"components": 4}}.get(kind, {"hidden": [32], "latent": 4})
    options = dict(kind=kind, window=20, stride=5, model_params=params, epochs=3, batch_size=128, max_windows=1500, progress=False, seed=0)
    options.update(overrides)
    return AutoencoderDetector(**options)


def runtime_config(port: int, bundle, tmp_path, inputs=None, **runtime) -> object:
    """A validated runtime Config for tests: fast reconnect, short timeouts, QoS 1 inputs."""
    from edge_runtime.config import parse_config

    data = {
        "broker": {"host": "127.0.0.1", "port": port, "client_id": "lw-test", "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "runtime": {"outbox": str(tmp_path / "outbox.sqlite"), "latency_budget_ms": 50.0, "shutdown_timeout_s": 5.0,
                    "reload_poll_s": 0.2, "max_past_s": 1e10, **runtime},  # the plant's samples are from 2026-01-01
        "models": [{"name": "pumps", "bundle": str(bundle), "alarm": {"on_k": 2, "on_n": 3, "off_m": 3, "deadband": 0.1},
                    "inputs": inputs or [{"topic": "plant/{line}/{machine}/telemetry", "format": "json", "qos": 1}]}],
    }
    return parse_config(data)


BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f"No module named '{{name}}' (blocked by test)", name=name)
sys.meta_path.insert(0, Block())
"""


def run_without_torch(code: str, blocked: tuple[str, ...] = ("torch", "train", "export")) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter where the ``blocked`` packages (torch, train, export) cannot be imported."""
    return subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=blocked) + code], capture_output=True, text=True, timeout=120)


# the flapping feed's normal windows score up to about 100 on the runtime test bundle (conftest), its scaled ones above 5,000
FLAP_THRESHOLD = 1000.0


def flapping_config(port: int, bundle, tmp_path, **runtime):
    """A runtime config whose alarm follows every window (raise above, clear below): many transitions.

    The threshold is set between the flapping feed's two levels (``FLAP_THRESHOLD``) rather than
    taken from the bundle, so that the transitions do not hang on how well a tiny test model is
    calibrated. The pending queue holds a whole test feed: tests hand samples over faster than paho would.
    """
    config = runtime_config(port, bundle, tmp_path, **{"queue_windows": 4096, **runtime})
    config.models[0].threshold = FLAP_THRESHOLD
    alarm = config.models[0].alarm
    alarm.on_k, alarm.on_n, alarm.off_m, alarm.deadband = 1, 1, 1, 0.0
    return config


def wait_for(predicate, timeout: float = 20.0) -> bool:
    """Poll a counter until ``predicate()`` holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def feed(runtime, payloads) -> None:
    """Hand samples to the runtime as paho's network thread would."""
    for topic, payload in payloads:
        runtime._on_message(topic, payload, time.perf_counter())


def all_stored(runtime, windows: int) -> bool:
    """True once ``windows`` windows are scored and the sink stored every event they made."""
    return runtime.snapshot()["models"]["pumps"]["scored"] == windows and runtime.sink.backlog == 0
