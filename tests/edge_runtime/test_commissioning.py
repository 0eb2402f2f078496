"""Commissioning against mosquitto: a stream learns its threshold without alarming, the threshold
is persisted and announced, a restart keeps it, the stream then alarms on a fault, and a request
over MQTT starts it over.
"""

import json

import numpy as np
import orjson
import pandas as pd
import pytest

from edge_runtime.runtime import Runtime
from edge_runtime.scoring.commissioning import Commissioning, ThresholdStore
from helpers import FEATURES, runtime_config, wait_for
from mqtt_helpers import Collector, client


def payloads(frame: pd.DataFrame, machine: str, rows: slice) -> list[tuple[str, bytes]]:
    part = frame[frame.machine == machine].iloc[rows]
    stamps = (pd.to_datetime(part["time"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return [(f"plant/l1/{machine}/telemetry", orjson.dumps({"ts": t, **{f: getattr(r, f) for f in FEATURES}}))
            for t, r in zip(stamps, part.itertuples(index=False))]


def commissioning_runtime(port, bundle, tmp_path) -> Runtime:
    config = runtime_config(port, bundle, tmp_path, thresholds_file=str(tmp_path / "thresholds.json"))
    c = config.models[0].commissioning
    c.enabled, c.period_s, c.min_windows = True, 200.0, 40  # 200 s of sample time and 40 windows (stride 5 at 1 Hz)
    return Runtime(config)


def test_a_stream_learns_its_threshold_keeps_it_across_a_restart_and_then_alarms(broker, runtime_bundle, tmp_path, plant_csv):
    frame = pd.read_csv(plant_csv)
    normal, fault = payloads(frame, "m1", slice(0, 400)), payloads(frame, "m1", slice(1500, 3000))
    collector = Collector(broker.port, "linewatch/events/#", "linewatch/lw-test/status")
    publisher = client(broker.port)
    runtime = commissioning_runtime(broker.port, runtime_bundle, tmp_path)
    runtime.start()
    try:
        assert runtime.link.wait_subscribed(5)
        for topic, payload in normal:
            publisher.publish(topic, payload, qos=1)
        assert wait_for(lambda: runtime.snapshot()["models"]["pumps"]["commissioned"] == 1, 20)
        learning_quiet = collector.events() == []  # no alarm while learning
        # written by the housekeeping thread's next turn (reload_poll_s), not by the scoring thread
        assert wait_for(lambda: runtime.thresholds.writes >= 1, 10)
        learned = json.loads((tmp_path / "thresholds.json").read_text())["pumps"]
        assert learned["bundle_id"] == runtime.models[0].bundle.model_id
        entry = learned["streams"]["l1/m1"]
        assert entry["windows"] >= 40 and entry["threshold"] >= runtime.models[0].bundle.threshold  # the bundle's is the floor
        assert learning_quiet
        assert collector.wait_for(lambda c: any(s.get("bundles", [{}])[0].get("commissioning", {}).get("learned") == 1
                                                for s in c.on("linewatch/lw-test/status")), 10)  # announced, retained
    finally:
        runtime.stop()
    restarted = commissioning_runtime(broker.port, runtime_bundle, tmp_path)
    restarted.start()
    try:
        assert restarted.link.wait_subscribed(5)
        assert restarted.snapshot()["models"]["pumps"]["commissioned"] == 1  # read back: no second commissioning
        for topic, payload in fault:
            publisher.publish(topic, payload, qos=1)
        assert collector.wait_for(lambda c: len(c.events("alarm_raised")) >= 1, 20)
        raised = collector.events("alarm_raised")[0]
        assert raised["threshold"] == pytest.approx(entry["threshold"], rel=1e-6)  # the stream's own threshold
        windows = (len(fault) - 20) // 5 + 1
        assert wait_for(lambda: restarted.snapshot()["models"]["pumps"]["scored"] == windows, 20)
        in_alarm = restarted.models[0].streams["l1/m1"].alarm.active
        publisher.publish("linewatch/lw-test/commission", orjson.dumps({"model": "pumps", "stream": "l1/m2"}), qos=1)
        publisher.publish("linewatch/lw-test/commission", orjson.dumps({"model": "pumps"}), qos=1)
        assert wait_for(lambda: restarted.control_requests == 2, 10)
        # a stream in alarm keeps its threshold (a fault is never learned as normal); otherwise it starts over
        assert restarted.snapshot()["models"]["pumps"]["commissioned"] == (1 if in_alarm else 0)
        stored = json.loads((tmp_path / "thresholds.json").read_text())["pumps"]["streams"]
        assert ("l1/m1" in stored) == in_alarm
    finally:
        restarted.stop()
        publisher.loop_stop()
        collector.close()


def test_learning_uses_the_training_rule_and_never_goes_below_the_bundle(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.json"
    store = ThresholdStore(path)
    c = Commissioning("pumps", "abc", floor=0.5, period_s=10.0, min_windows=100, false_alarms_per_day=86_400 / 50,
                      stride=1, sample_period=1.0, store=store)  # a per-window rate of 0.02
    scores = rng.gamma(2.0, 1.0, 300)
    results = [c.threshold("m1", float(s), float(t)) for t, s in enumerate(scores)]
    assert results[:99] == [None] * 99 and results[99] is not None  # 100 windows and 10 s of sample time
    assert results[99] == pytest.approx(max(0.5, float(np.sort(scores[:100])[int(np.ceil(101 * 0.98)) - 1])))
    quiet = Commissioning("pumps", "abc", floor=50.0, period_s=0.0, min_windows=10, false_alarms_per_day=1.0, stride=1,
                          sample_period=1.0, store=ThresholdStore(None))
    assert [quiet.threshold("m2", 0.1, float(t)) for t in range(10)][-1] == 50.0  # never below the bundle's threshold
    assert not path.exists() and store.flush() and not store.flush()  # written by the flush, once, not by the scoring thread
    reread = Commissioning("pumps", "abc", 0.5, 10.0, 100, 1.0, 1, 1.0, ThresholdStore(path))
    assert reread.learned["m1"]["threshold"] == results[99]
    assert Commissioning("pumps", "other-bundle", 0.5, 10.0, 100, 1.0, 1, 1.0, ThresholdStore(path)).learned == {}  # another model starts over


def test_a_request_never_recommissions_a_stream_in_alarm_or_rising_to_one(runtime_bundle, tmp_path):
    runner = commissioning_runtime(1, runtime_bundle, tmp_path).models[0]  # never started: no broker needed
    for key in ("l1/quiet", "l1/rising", "l1/alarm"):
        runner.commissioning.learned[key] = {"threshold": 1.0}
        runner.streams.get(key)
    threshold = runner.threshold
    runner.streams["l1/rising"].alarm.update(2 * threshold, threshold)  # one window above: on its way to raising
    for _ in range(2):
        runner.streams["l1/alarm"].alarm.update(2 * threshold, threshold)
    assert runner.streams["l1/rising"].alarm.rising and runner.streams["l1/alarm"].alarm.active
    assert runner.recommission(None) == ["l1/quiet"]
    assert sorted(runner.commissioning.learned) == ["l1/alarm", "l1/rising"]


def test_a_commissioning_request_without_the_token_is_refused_and_counted(runtime_bundle, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    config = runtime_config(1883, runtime_bundle, tmp_path, thresholds_file=str(tmp_path / "t.json"), control_token_file=str(token))
    config.models[0].commissioning.enabled = True
    runtime = Runtime(config, check=True)  # never started: the request is handed over as paho's thread would
    try:
        for request in ({"model": "pumps"}, {"model": "pumps", "token": "guess"}):
            runtime._control(orjson.dumps(request))
        assert runtime.bad.counts["unauthorized"] == 2 and runtime.control_requests == 0
        runtime._control(orjson.dumps({"model": "pumps", "token": "s3cret"}))
        assert runtime.control_requests == 1 and runtime.bad.counts["unauthorized"] == 2
    finally:
        runtime.release()
