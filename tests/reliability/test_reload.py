"""Reload under real conditions: a bundle copied file by file, a bundle that fails at warm-up,
an atomic symlink switch, and input-spec changes while samples pour in.
"""

import shutil
import threading

import pytest

from edge_runtime.contract.bundle import load_bundle
from edge_runtime.runtime import Runtime
from edge_runtime.scoring.model_runner import ModelRunner
from helpers import committed_bundle, runtime_config, wait_for


@pytest.fixture(scope="module")
def other_bundles(tmp_path_factory) -> dict:
    """``same``: another model with the runtime bundle's input spec; ``narrow``: one on 4 of its 6 features (committed)."""
    root = tmp_path_factory.mktemp("reload_bundles")
    return {name: committed_bundle(name, root) for name in ("same", "narrow")}


def model_id(runtime: Runtime) -> str:
    return runtime.models[0].bundle.model_id


def test_a_bundle_copied_file_by_file_is_refused_then_retried_when_its_files_change(broker, runtime_bundle, other_bundles, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(runtime_bundle, live)
    new = other_bundles["same"]
    runtime = Runtime(runtime_config(broker.port, live, tmp_path))
    runtime.start()
    try:
        old_id = model_id(runtime)
        shutil.copy2(new / "bundle.json", live / "bundle.json")  # the manifest lands first: its model file does not match yet
        assert wait_for(lambda: runtime.models[0].reloads_refused == 1, 10)
        assert model_id(runtime) == old_id  # still scoring with the old bundle
        for artifact in ("model.onnx", "model.pt2"):
            shutil.copy2(new / artifact, live / artifact)
        assert wait_for(lambda: model_id(runtime) == load_bundle(new).model_id, 10)
        assert runtime.models[0].reloads_refused == 1 and runtime.watch_errors == 0
    finally:
        runtime.stop()


def test_a_bundle_failing_at_warm_up_is_refused_and_a_symlink_switch_deploys_atomically(broker, runtime_bundle, other_bundles, tmp_path,
                                                                                        monkeypatch):
    current = tmp_path / "current"
    current.symlink_to(runtime_bundle)
    runtime = Runtime(runtime_config(broker.port, current, tmp_path))
    runtime.start()
    try:
        old_id = model_id(runtime)
        warm_up = ModelRunner._warm_up

        def failing_warm_up(self, backend):
            raise RuntimeError("CUDA out of memory (simulated)")

        monkeypatch.setattr(ModelRunner, "_warm_up", failing_warm_up)
        switch = tmp_path / "current.new"
        switch.symlink_to(other_bundles["same"])
        switch.rename(current)  # the atomic deploy: rename a new symlink over the old one
        assert wait_for(lambda: runtime.models[0].reloads_refused == 1, 10)
        assert model_id(runtime) == old_id and runtime.watch_errors == 0
        monkeypatch.setattr(ModelRunner, "_warm_up", warm_up)
        runtime.reload_requested.set()  # SIGHUP: try again
        assert wait_for(lambda: model_id(runtime) == load_bundle(other_bundles["same"]).model_id, 10)
    finally:
        runtime.stop()


def test_the_watcher_survives_any_exception(broker, runtime_bundle, tmp_path, monkeypatch):
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path))
    calls = []

    def broken(self):
        calls.append(1)
        raise OSError("disk gone")

    monkeypatch.setattr(ModelRunner, "changed_on_disk", broken)
    runtime.start()
    try:
        assert wait_for(lambda: runtime.watch_errors >= 3, 10)  # still polling after each failure
        assert runtime.link.connected.is_set()
    finally:
        runtime.stop()


@pytest.mark.slow
def test_input_spec_changes_while_samples_pour_in_never_mix_layouts(runtime_bundle, other_bundles, tmp_path, flapping):
    payloads, _ = flapping
    current = tmp_path / "current"
    current.symlink_to(runtime_bundle)
    runtime = Runtime(runtime_config(1883, current, tmp_path))  # the broker does not matter here: samples are fed directly
    runtime.accepting = True
    runner = runtime.models[0]
    runner.start()
    stop = threading.Event()

    def pour() -> None:
        while not stop.is_set():
            for topic, payload in payloads[:4000]:
                runtime._on_message(topic, payload, 0.0)

    feeder = threading.Thread(target=pour, daemon=True)
    feeder.start()
    try:
        for i in range(10):
            target = other_bundles["narrow"] if i % 2 == 0 else runtime_bundle
            switch = tmp_path / "current.new"
            switch.symlink_to(target)
            switch.rename(current)
            assert runner.reload()
            assert len(runner.ingest.layout) == len(runner.bundle.features)
    finally:
        stop.set()
        feeder.join(10)
        runner.stop(0)
        runtime.outbox.close()
    bad = runtime.snapshot()["bad_input"]
    assert bad.get("internal_error", 0) == 0, bad
    assert runtime.snapshot()["accepted"] > 0
