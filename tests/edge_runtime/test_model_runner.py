"""Deciding windows: each window alone, its alarm state advancing only together with its event."""

import numpy as np
import orjson
import pytest

from edge_runtime.contract.timeparse import iso
from edge_runtime.delivery.event_schema import EventError, validate_event, validate_scores
from edge_runtime.ingest.badinput import BadInput
from edge_runtime.metrics import Metrics
from edge_runtime.scoring.batcher import WindowBatch
from edge_runtime.scoring.model_runner import ModelRunner
from helpers import runtime_config


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


def test_grouped_score_telemetry_is_one_message_per_stream_and_alarms_stay_events(runtime_bundle, tmp_path):
    config = runtime_config(1883, runtime_bundle, tmp_path, publish_scores=True, score_events="grouped")
    runner = ModelRunner(config.models[0], config.runtime, sink=None, bad=BadInput(), metrics=Metrics())
    n, period = 5, runner.bundle.sample_period
    batch = WindowBatch(n, runner.bundle.window, len(runner.bundle.features))
    batch.streams[:n] = [runner.streams.get(key) for key in ("l1/m0", "l1/m1", "l1/m0", "l1/m0", "l1/m1")]
    batch.ends[:n] = [1.7e9 + k * period for k in range(n)]
    batch.starts[:n] = batch.ends[:n] - 10
    scores = np.array([0.0, 0.0, 0.0, 0.0, 10 * runner.threshold], np.float32)
    errors = np.zeros((n, len(runner.bundle.features)), np.float32)
    messages = [orjson.loads(payload) for _, payload, _, durable in runner._decide(batch, 0, scores, errors) if not durable]
    by_stream = {m["stream"]: validate_scores(m) for m in messages}
    assert sorted(by_stream) == ["l1/m0", "l1/m1"] and len(messages) == 2
    assert len(by_stream["l1/m0"]["window_end"]) == 3 and by_stream["l1/m0"]["window_end"][0] < by_stream["l1/m0"]["window_end"][-1]
    assert by_stream["l1/m1"]["score"] == pytest.approx([0.0, 10 * runner.threshold], rel=1e-6)
    runner.streams["l1/m1"].alarm.on_k = runner.streams["l1/m1"].alarm.on_n = 1
    events = runner._decide(batch, 0, scores, errors)
    raised = [orjson.loads(p) for _, p, _, durable in events if durable]
    assert [validate_event(e)["kind"] for e in raised] == ["alarm_raised"]  # the raising window as its event...
    m1 = [orjson.loads(p) for _, p, _, durable in events if not durable and orjson.loads(p)["stream"] == "l1/m1"]
    assert len(m1[0]["window_end"]) == 1  # ...and not repeated among the scores
    runner.backend.deactivate()


def test_an_alarm_policy_other_than_the_one_the_threshold_was_calibrated_for_is_warned_about(runtime_bundle, tmp_path, caplog):
    import json
    import shutil

    from edge_runtime.contract.alarms import AlarmConfig

    bundle = tmp_path / "bundle"
    shutil.copytree(runtime_bundle, bundle)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["threshold"]["policy"] = [3, 5, 3, 0.1]  # calibrated for 3 of 5
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    config = runtime_config(1883, bundle, tmp_path)
    for alarm, override, warned in ((AlarmConfig(), None, True), (AlarmConfig(on_k=3, on_n=5), None, False), (AlarmConfig(), 1.0, False)):
        caplog.clear()
        model = config.models[0]
        model.alarm, model.threshold = alarm, override
        runner = ModelRunner(model, config.runtime, sink=None, bad=BadInput(), metrics=Metrics())
        runner.backend.deactivate()
        assert ("calibrated for the alarm policy 3 of 5" in caplog.text) is warned, (alarm, override, caplog.text)


def test_an_alarm_raised_is_dated_to_the_first_window_that_exceeded(runtime_bundle, tmp_path):
    config = runtime_config(1883, runtime_bundle, tmp_path)  # on-delay: 2 of 3 windows above the threshold
    runner = ModelRunner(config.models[0], config.runtime, sink=None, bad=BadInput(), metrics=Metrics())
    b = runner.bundle
    batch = WindowBatch(1, b.window, len(b.features))
    batch.streams[0] = runner.streams.get("l1/m0")
    errors = np.zeros((1, len(b.features)), np.float32)
    decided = []
    for k, over in enumerate([False, True, False, True]):  # above, below, above: raised on the third of them
        batch.ends[0] = 1.7e9 + k * b.stride * b.sample_period
        batch.starts[0] = batch.ends[0] - (b.window - 1) * b.sample_period
        scores = np.float32([10 * runner.threshold if over else 0.0])
        decided += [validate_event(orjson.loads(p)) for _, p, _, _ in runner._decide(batch, 0, scores, errors)]
    assert [e["kind"] for e in decided] == ["alarm_raised"]
    assert decided[0]["exceeded_since"] == iso(1.7e9 + b.stride * b.sample_period)  # the window two strides before it
    with pytest.raises(EventError):
        validate_event({**decided[0], "exceeded_since": 1.7e9})
    runner.backend.deactivate()
