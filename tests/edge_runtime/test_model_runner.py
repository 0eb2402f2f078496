"""Deciding windows: each window alone, its alarm state advancing only together with its event."""

import numpy as np
import orjson
import pytest

pytest.importorskip("torch")  # the bundle is trained here

from edge_runtime.badinput import BadInput  # noqa: E402
from edge_runtime.batcher import WindowBatch  # noqa: E402
from edge_runtime.event_schema import validate_event  # noqa: E402
from edge_runtime.metrics import Metrics  # noqa: E402
from edge_runtime.model_runner import ModelRunner  # noqa: E402
from helpers import runtime_config  # noqa: E402


def test_a_window_that_cannot_be_decided_is_dropped_alone(runtime_bundle, tmp_path):
    config = runtime_config(1883, runtime_bundle, tmp_path)
    runner = ModelRunner(config.models[0], config.runtime, sink=None, bad=BadInput(), metrics=Metrics())
    batch = WindowBatch(3, runner.bundle.window, len(runner.bundle.features))
    batch.streams[:3] = [runner.streams.get(f"l1/m{i}") for i in range(3)]
    batch.starts[:3], batch.ends[:3] = [1.7e9, -1e12, 1.7e9], [1.7e9 + 19, 1.7e9 + 19, 1.7e9 + 19]  # m1: a time no event can carry
    scores = np.full(3, 10 * runner.threshold, np.float32)
    errors = np.zeros((3, len(runner.bundle.features)), np.float32)
    assert runner._decide(batch, 0, scores, errors) == []  # on-delay: 2 of 3 windows above
    events = runner._decide(batch, 0, scores, errors)
    assert sorted(orjson.loads(payload)["stream"] for _, payload, _, _ in events) == ["l1/m0", "l1/m2"]
    for _, payload, _, _ in events:
        assert validate_event(orjson.loads(payload))["kind"] == "alarm_raised"
    assert runner.undecided == 1  # m1's second window (its raise) could not be published...
    assert not runner.streams["l1/m1"].alarm.active  # ...so its alarm did not advance without it
    assert [runner.streams[f"l1/m{i}"].alarm.active for i in (0, 2)] == [True, True]
    batch.starts[1] = 1.7e9  # once the data is sane again, m1 raises with its event
    events = runner._decide(batch, 0, scores, errors)
    assert [orjson.loads(p)["stream"] for _, p, _, _ in events] == ["l1/m1"] and runner.streams["l1/m1"].alarm.active
    runner.backend.deactivate()
