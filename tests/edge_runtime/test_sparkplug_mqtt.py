"""Sparkplug B input against a real mosquitto: an edge node (births, alias-only data, a lost message) feeds the
runtime, whose alarms equal those of the same data sent as JSON.
"""

import re

import orjson
import pandas as pd
import pytest

from edge_runtime.runtime import Runtime
from edge_runtime.sparkplug import sparkplug_b_pb2 as pb
from edge_runtime.sparkplug.codec import EdgeNodeWriter
from edge_runtime.sparkplug.node import EdgeNode
from helpers import FEATURES, runtime_config, wait_for
from mqtt_helpers import Collector, client

INPUTS = [{"topic": "plant/{line}/{machine}/telemetry", "format": "json", "qos": 1},
          {"topic": "spBv1.0/plant", "format": "sparkplug", "qos": 0, "rebirth_interval_s": 0.2}]
METRICS = [(f, pb.Double) for f in FEATURES]


@pytest.fixture(scope="module")
def machine(plant_csv):
    """One machine's rows (with faults), epoch-second times."""
    frame = pd.read_csv(plant_csv)
    frame = frame[frame.machine == "m1"]
    frame["ts"] = (pd.to_datetime(frame["time"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return frame


def alarms(events, stream):
    return [(e["kind"], e["window_end"]) for e in events if e["stream"] == stream and e["kind"] in ("alarm_raised", "alarm_cleared")]


def taken(runtime) -> int:
    snap = runtime.snapshot()
    return snap["accepted"] + sum(snap["bad_input"].values())


def test_alarms_from_a_sparkplug_stream_equal_those_from_json(broker, runtime_bundle, tmp_path, machine):
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, inputs=INPUTS))
    runtime.start()
    collector = Collector(broker.port, "linewatch/#")
    publisher = client(broker.port)
    node = None
    try:
        assert runtime.link.wait_subscribed(5)
        node = EdgeNode("127.0.0.1", broker.port, "plant", "sp", {"m1": METRICS}).start()
        for k, row in enumerate(machine.itertuples(index=False)):
            values = [getattr(row, f) for f in FEATURES]
            publisher.publish("plant/l1/m1/telemetry", orjson.dumps({"ts": row.ts, **dict(zip(FEATURES, values))}), qos=1)
            node.publish("m1", values, int(round(row.ts * 1000)))
            if k % 200 == 199:  # let QoS 0 data drain rather than fill the broker's queue
                assert wait_for(lambda k=k: runtime.snapshot()["models"]["pumps"]["scored"] >= 2 * ((k + 1 - 40) // 5), 30)
        scored = 2 * ((len(machine) - 20) // 5 + 1)
        assert wait_for(lambda: runtime.snapshot()["models"]["pumps"]["scored"] >= scored, 30), runtime.snapshot()
    finally:
        if node:
            node.stop()
        runtime.stop()
    snap = runtime.snapshot()
    assert snap["bad_input"] == {} and snap["models"]["pumps"]["scored"] == scored
    events = collector.events()
    from_json, from_sparkplug = alarms(events, "l1/m1"), alarms(events, "sp/m1")
    assert len(from_json) >= 2 and from_sparkplug == from_json
    assert node.births == 1 and node.rebirth_requests == 0


def publish_rows(node, machine, rows) -> None:
    for row in machine.iloc[rows].itertuples(index=False):
        node.publish("m1", [getattr(row, f) for f in FEATURES], int(round(row.ts * 1000)))


def test_a_sequence_gap_asks_for_a_rebirth_and_restarts_the_stream(broker, runtime_bundle, tmp_path, machine):
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, inputs=INPUTS[1:]))
    runtime.start()
    commands = Collector(broker.port, "spBv1.0/plant/NCMD/#")
    node = None
    try:
        assert runtime.link.wait_subscribed(5)
        node = EdgeNode("127.0.0.1", broker.port, "plant", "sp", {"m1": METRICS}).start()
        publish_rows(node, machine, slice(0, 30))  # window 20, stride 5: windows end at samples 20, 25, 30
        assert wait_for(lambda: runtime.snapshot()["models"]["pumps"]["scored"] == 3)
        node.skip()  # a DDATA lost on the way
        publish_rows(node, machine, slice(31, 32))
        assert wait_for(lambda: node.births == 2), "the node was not asked to rebirth"
        assert len(commands.on("spBv1.0/plant/NCMD/sp")) == 1
        publish_rows(node, machine, slice(32, 70))
        # 30 samples, the refused one, the rebirth's (row 31's values, its time: the new run starts there), 38 more
        assert wait_for(lambda: taken(runtime) >= 30 + 1 + 1 + 38), runtime.snapshot()
        assert runtime.models[0].ingest.sparkplug.restarts == 2  # the node's stream and its device's
    finally:
        if node:
            node.stop()
        runtime.stop()
    snap = runtime.snapshot()
    assert snap["bad_input"] == {"sparkplug_sequence": 1}
    # the run restarts at row 31, so its first window ends 20 samples later: rows 50, 55, 60, 65 (none spans the gap)
    assert snap["models"]["pumps"]["scored"] == 3 + 4


def test_data_before_birth_is_never_scored_and_malformed_protobuf_is_survived(broker, runtime_bundle, tmp_path, machine):
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, inputs=INPUTS[1:]))
    runtime.start()
    commands = Collector(broker.port, "spBv1.0/plant/NCMD/#")
    raw = client(broker.port)
    try:
        assert runtime.link.wait_subscribed(5)
        stranger = EdgeNodeWriter("plant", "ghost")  # never births
        stranger.define("m1", METRICS)
        for row in machine.iloc[:30].itertuples(index=False):
            raw.publish(*stranger.data("m1", [getattr(row, f) for f in FEATURES], int(row.ts * 1000)), qos=1)
        raw.publish("spBv1.0/plant/DDATA/ghost/m2", b"\x0a\xff\xff garbage", qos=1)
        assert wait_for(lambda: taken(runtime) == 31)
        assert runtime.snapshot()["bad_input"] == {"sparkplug_unborn": 30, "malformed_protobuf": 1}
        assert runtime.snapshot()["models"]["pumps"]["scored"] == 0
        assert commands.wait_for(lambda c: len(c.on("spBv1.0/plant/NCMD/ghost")) >= 1)
        assert len(commands.on("spBv1.0/plant/NCMD/ghost")) <= 3  # rate-limited (0.2 s here), not one per message
        node = EdgeNode("127.0.0.1", broker.port, "plant", "sp", {"m1": METRICS}).start()  # the runtime lives on
        publish_rows(node, machine, slice(0, 25))
        assert wait_for(lambda: runtime.snapshot()["models"]["pumps"]["scored"] == 2)
        node.stop()
    finally:
        runtime.stop()


def test_events_are_published_as_a_sparkplug_edge_node(broker, runtime_bundle, tmp_path, machine):
    from edge_runtime.config import SparkplugConfig
    from edge_runtime.sparkplug.codec import decode, rebirth_request

    config = runtime_config(broker.port, runtime_bundle, tmp_path, inputs=INPUTS[:1])
    config.sparkplug = SparkplugConfig(enabled=True, group="lw")
    scada = Collector(broker.port, "spBv1.0/lw/#", "linewatch/events/#")
    runtime = Runtime(config)
    runtime.start()
    publisher = client(broker.port)
    try:
        assert runtime.link.wait_subscribed(5) and runtime.sparkplug.node.connected.wait(5)
        for row in machine.itertuples(index=False):
            publisher.publish("plant/l1/m1/telemetry", orjson.dumps({"ts": row.ts, **{f: getattr(row, f) for f in FEATURES}}), qos=1)
        assert scada.wait_for(lambda c: len(c.events("alarm_raised")) >= 1, 30)
        assert wait_for(lambda: runtime.snapshot()["sparkplug"]["data_published"] >= 2)
        publisher.publish(*rebirth_request("lw", "lw-test"), qos=0)  # a SCADA host asks linewatch's node to rebirth
        assert scada.wait_for(lambda c: len(c.on("spBv1.0/lw/NBIRTH/lw-test")) == 2)
    finally:
        runtime.stop()
    assert scada.wait_for(lambda c: len(c.on("spBv1.0/lw/NDEATH/lw-test")) == 1)
    births = [decode(p) for p in scada.on("spBv1.0/lw/DBIRTH/lw-test/pumps:l1:m1")]
    assert len(births) == 2 and [m.name for m in births[0].metrics] == ["score", "threshold", "alarm", "drift"]
    data = [decode(p) for p in scada.on("spBv1.0/lw/DDATA/lw-test/pumps:l1:m1")]
    raised = [e for e in scada.events() if e["kind"] == "alarm_raised"]
    # the DBIRTH carries the first transition, DDATA the rest: every transition is there, alarm metric and time included
    sparkplug = [(m.metrics[2].boolean_value, m.metrics[2].timestamp) for m in [births[0], *data]]
    assert (True, round(iso_ms(raised[0]["window_end"]))) in sparkplug
    assert all(not m.metrics[0].name and m.metrics[0].alias for m in data)  # DATA by alias


def iso_ms(text: str) -> float:
    return pd.Timestamp(text).timestamp() * 1000


@pytest.mark.slow
def test_sparkplug_node_replays_a_csv_with_gaps_and_answers_rebirths(broker, runtime_bundle, tmp_path, plant_csv):
    from click.testing import CliRunner

    from linewatch.cli import main

    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, inputs=INPUTS[1:]))
    runtime.start()
    try:
        assert runtime.link.wait_subscribed(5)
        result = CliRunner().invoke(main, ["sparkplug-node", str(plant_csv), "--broker", f"127.0.0.1:{broker.port}", "--group", "plant",
                                           "--node", "sim", "--bundle", str(runtime_bundle), "--rate", "2000", "--gap-every", "2000"])
        assert result.exit_code == 0, result.output
        assert "published 5997 DDATA messages for 2 device(s)" in result.output  # 6,000 rows, 3 left out
        # the third gap is the last message: nothing follows to show it
        assert wait_for(lambda: runtime.snapshot()["bad_input"].get("sparkplug_sequence") == 2)
        assert wait_for(lambda: runtime.snapshot()["models"]["pumps"]["scored"] > 1000), runtime.snapshot()
    finally:
        runtime.stop()
    answered = int(re.search(r"(\d+) rebirth request\(s\) answered", result.output).group(1))
    assert 2 <= answered <= runtime.snapshot()["sparkplug"]["rebirths_requested"]
    assert {s.key for s in runtime.models[0].streams} == {"sim/m1", "sim/m2"}


def test_a_refused_edge_node_says_so(mosquitto_path, tmp_path, caplog):
    from mqtt_helpers import Mosquitto

    closed = Mosquitto(tmp_path, anonymous=False).start()  # no anonymous clients, and this node has no password
    node = EdgeNode("127.0.0.1", closed.port, "lw", "refused", {"m1": METRICS})
    try:
        with caplog.at_level("ERROR", logger="linewatch.sparkplug"):
            node.start(timeout=None)
            assert wait_for(lambda: "refused the connection" in caplog.text, 10)
        assert not node.connected.is_set()
    finally:
        node.stop()
        closed.stop()
