"""A stream's state handed over on the broker (``handover_topic``): a worker that takes over a stream in alarm does not
raise it again and clears it when the fault ends; one that takes over a commissioned stream uses its learned threshold
at once; states of another bundle, of this process itself or malformed are not taken; against a real mosquitto.
"""

import orjson
import pandas as pd
import pytest
from prometheus_client import generate_latest

from edge_runtime.contract.alarms import Alarm
from edge_runtime.ingest.registry import StreamState
from edge_runtime.ingest.streams import Stream
from edge_runtime.runtime import Runtime
from edge_runtime.scoring.commissioning import Commissioning, ThresholdStore
from edge_runtime.scoring.handover import SCHEMA, Handover
from edge_runtime.status.snapshot import StatusSnapshot
from helpers import FEATURES, feed, flapping_config, wait_for
from mqtt_helpers import Collector

ROOT = "linewatch/handover"
STREAM = "l1/m0"


@pytest.fixture(scope="module")
def rows(plant_csv):
    """``(times, values)`` of one machine's normal rows."""
    frame = pd.read_csv(plant_csv)
    normal = frame[(frame.machine == frame.machine.iloc[0]) & (frame.label == 0)].head(400)
    times = (pd.to_datetime(normal["time"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    return times, normal[FEATURES].to_numpy()


def samples(rows, start: int, stop: int, scale: float) -> list[tuple[str, bytes]]:
    """Rows ``start:stop`` of stream l1/m0 as JSON samples, values times ``scale`` (6: far above the threshold)."""
    times, values = rows
    return [(f"plant/{STREAM}/telemetry", orjson.dumps({"ts": float(t), **{f: float(v) * scale for f, v in zip(FEATURES, row)}}))
            for t, row in zip(times[start:stop], values[start:stop])]


def worker(broker, bundle, folder, name: str, commissioning: dict | None = None) -> Runtime:
    """A started runtime with its own client id, outbox and thresholds file, alarms following every window, states
    handed over; ``commissioning``: its model's commissioning settings.
    """
    folder.mkdir()
    config = flapping_config(broker.port, bundle, folder, handover_topic=ROOT, thresholds_file=str(folder / "thresholds.json"))
    config.broker.client_id = name
    for key, value in (commissioning or {}).items():
        setattr(config.models[0].commissioning, key, value)
    started = Runtime(config)
    started.start()
    assert started.link.wait_subscribed(10)
    return started


def states(collector: Collector) -> list[dict]:
    with collector.lock:
        return [body for topic, body, _ in collector.messages if topic == f"{ROOT}/pumps/{STREAM}"]


def test_a_stream_in_alarm_moves_without_a_second_raise_and_its_new_owner_clears_it(broker, runtime_bundle, tmp_path, rows):
    watcher = Collector(broker.port, f"{ROOT}/#")
    first = worker(broker, runtime_bundle, tmp_path / "a", "lw-a")
    try:
        feed(first, samples(rows, 0, 100, 1.0) + samples(rows, 100, 160, 6.0))  # the fault starts
        assert wait_for(lambda: first.snapshot()["models"]["pumps"]["alarms_active"] == 1)
        assert watcher.wait_for(lambda c: any(s["alarm"] for s in states(c)), 10)
    finally:
        first.stop()
    state = states(watcher)[-1]
    assert state["schema"] == SCHEMA and state["alarm"] is True and state["bundle_id"] == first.models[0].bundle.model_id

    events = Collector(broker.port, "linewatch/events/#")
    second = worker(broker, runtime_bundle, tmp_path / "b", "lw-b")  # the stream's next owner
    try:
        assert wait_for(lambda: STREAM in second.models[0].handover.remembered, 10)  # retained: handed over at subscribe
        feed(second, samples(rows, 160, 220, 6.0) + samples(rows, 220, 320, 1.0))  # the fault goes on, then ends
        assert events.wait_for(lambda c: c.events("alarm_cleared"), 20)
        assert second.snapshot()["models"]["pumps"]["alarms_active"] == 0
        # the history is not handed over: the first full window ends 20 samples after the move, so of the windows one
        # owner would have scored over these 160 samples, the 3 ending in the first 19 are not (window 20, stride 5)
        assert wait_for(lambda: second.snapshot()["models"]["pumps"]["scored"] == (160 - 20) // 5 + 1)
    finally:
        second.stop()
    assert events.events("alarm_raised") == []  # taken over in alarm: not raised a second time
    assert [e["stream"] for e in events.events("alarm_cleared")] == [STREAM]
    assert second.snapshot()["models"]["pumps"]["handover"] == {"alarms_taken": 1, "thresholds_taken": 0, "refused": 0}
    assert StatusSnapshot(second).build()["models"][0]["handover"]["alarms_taken"] == 1  # the status page's too
    scrape = generate_latest(second.metrics.registry).decode()
    assert 'linewatch_stream_states_taken_total{model="pumps",state="alarm"} 1.0' in scrape
    assert watcher.wait_for(lambda c: states(c)[-1]["alarm"] is False, 10)  # and the next owner finds it clear
    watcher.close()
    events.close()


def test_a_commissioned_stream_moves_with_its_threshold(broker, runtime_bundle, tmp_path, rows):
    commissioning = {"enabled": True, "period_s": 0.0, "min_windows": 10}
    watcher = Collector(broker.port, f"{ROOT}/#")
    first = worker(broker, runtime_bundle, tmp_path / "a", "lw-a", commissioning)
    try:
        feed(first, samples(rows, 0, 100, 1.0))
        assert wait_for(lambda: STREAM in first.models[0].commissioning.learned)
        learned = first.models[0].commissioning.learned[STREAM]["threshold"]
        assert watcher.wait_for(lambda c: any(s["threshold"] == learned for s in states(c)), 10)
    finally:
        first.stop()

    second = worker(broker, runtime_bundle, tmp_path / "b", "lw-b", commissioning)
    try:
        assert wait_for(lambda: STREAM in second.models[0].handover.remembered, 10)
        feed(second, samples(rows, 100, 130, 1.0))
        assert wait_for(lambda: second.snapshot()["models"]["pumps"]["scored"] >= 1)
        taken = second.models[0].commissioning.learned[STREAM]
        assert taken["threshold"] == learned and taken["handed_over"]  # no second commissioning, no silent period
        assert STREAM not in second.models[0].commissioning.learning
    finally:
        second.stop()
    watcher.close()


def test_only_states_of_this_bundle_from_another_process_are_taken(tmp_path):
    handover = Handover(ROOT, "pumps", "bundle-1", max_streams=2, instance="me")
    topic = handover.topic(STREAM)

    def state(**changes) -> bytes:
        return orjson.dumps({"schema": SCHEMA, "model": "pumps", "bundle_id": "bundle-1", "stream": STREAM, "alarm": True,
                             "threshold": 3.5, "window_end": 1.0, "writer": "other", **changes})

    assert not handover.remember(topic, state(bundle_id="bundle-0"))  # another model's scale
    assert not handover.remember(topic, b"{not json")
    assert not handover.remember(topic, state(alarm="yes"))
    assert not handover.remember(topic, state(stream="l1/m9"))  # a state filed under another stream's topic
    assert handover.refused == 4
    assert not handover.remember(topic, state(writer="me"))  # its own, coming back
    assert handover.remembered == {}
    assert handover.remember(topic, state())
    assert not handover.remember(topic, b"")  # an empty retained message deletes the state
    assert handover.remembered == {} and handover.refused == 4
    for key in ("l1/a", "l1/b", "l1/c"):
        handover.remember(handover.topic(key), state(stream=key))
    assert list(handover.remembered) == ["l1/b", "l1/c"]  # at most max_streams, the longest unchanged forgotten

    commissioning = Commissioning("pumps", "bundle-1", 2.0, 0.0, 10, 1.0, 5, 1.0, ThresholdStore(None))
    stream = StreamState("l1/c", Stream("l1/c", 20, 5, len(FEATURES), 10.0), None, Alarm(2, 3, 3, 0.1), 0.0)
    handover.take(stream, commissioning)
    assert stream.alarm.active and commissioning.learned["l1/c"]["threshold"] == 3.5
    assert handover.alarms_taken == 1 and handover.thresholds_taken == 1 and "l1/c" not in handover.remembered
    fresh = StreamState("l1/x", Stream("l1/x", 20, 5, len(FEATURES), 10.0), None, Alarm(2, 3, 3, 0.1), 0.0)
    handover.take(fresh, commissioning)  # nothing remembered: starts from nothing
    assert not fresh.alarm.active and "l1/x" not in commissioning.learned
