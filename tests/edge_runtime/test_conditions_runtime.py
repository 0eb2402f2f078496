"""A conditional bundle at the edge: conditions read from JSON payloads, held with the gap rule, fed to the graph's
``condition`` input; windows whose conditions training never saw are counted and not scored (against mosquitto).
"""

import math

import numpy as np
import orjson
import pandas as pd
import pytest

from edge_runtime.contract.errors import BundleError
from edge_runtime.ingest.decoders import BadSample, FeatureLayout, decode_json
from edge_runtime.runtime import Runtime
from helpers import FEATURES, TEST_DATA, committed_bundle, runtime_config, wait_for
from mqtt_helpers import Collector, client

CONDITIONS = [{"name": "setpoint", "kind": "numeric", "categories": [], "min": 0.2, "max": 1.0},
              {"name": "recipe", "kind": "categorical", "categories": ["A", "B", "C"]}]


@pytest.fixture(scope="module")
def regime(tmp_path_factory):
    """A regime plant (the first rows of each machine, committed) and the conditional bundle trained on it."""
    root = tmp_path_factory.mktemp("conditional")
    frame = pd.read_csv(TEST_DATA / "regime.csv")
    frame["ts"] = (pd.to_datetime(frame["time"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return frame, committed_bundle("conditional", root), root


def test_json_payloads_carry_the_conditions_after_the_features():
    layout = FeatureLayout(["a", "b"], CONDITIONS)
    t, row, missing, notes = decode_json(b'{"ts": 10.0, "a": 1.0, "b": 2.0, "setpoint": 0.6, "recipe": "B"}', layout, "ts", 10.0, (1e9, 60.0))
    assert row == [1.0, 2.0, 0.6, 1.0] and missing == () and notes == ()
    _, row, _, _ = decode_json(b'{"ts": 10.0, "a": 1.0, "b": 2.0, "setpoint": 0.6, "recipe": "Z"}', layout, "ts", 10.0, (1e9, 60.0))
    assert row[3] == -1.0  # a product the model never saw: decoded, and refused at scoring
    _, row, missing, notes = decode_json(b'{"ts": 10.0, "a": 1.0, "b": 2.0, "setpoint": 0.6}', layout, "ts", 10.0, (1e9, 60.0))
    assert missing == (3,) and notes == (("missing_feature", "recipe"),)  # held from the stream's last value, like a sensor
    with pytest.raises(BadSample, match="no known feature"):  # conditions alone are no sample
        decode_json(b'{"ts": 10.0, "setpoint": 0.6, "recipe": "B"}', layout, "ts", 10.0, (1e9, 60.0))
    _, _, _, notes = decode_json(b'{"ts": 10.0, "a": 1.0, "b": 2.0, "setpoint": null, "recipe": "A", "x": 1}', layout, "ts", 10.0, (1e9, 60.0))
    assert notes[0] == ("unknown_feature", "1 key(s) not in the bundle's features")  # the conditions are known keys


def test_score_reads_the_conditions_from_the_csv_and_leaves_unseen_ones_unscored(regime, tmp_path):
    from click.testing import CliRunner

    from linewatch.cli import main

    frame, bundle, root = regime
    changed = frame.drop(columns=["ts"]).copy()
    changed.loc[(changed.machine == "m1") & (changed.index < 300), "recipe"] = "D"  # a product the model never met (m1's first rows)
    changed.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(main, ["score", str(bundle), str(tmp_path / "data.csv"), "--series-column", "machine", "-o", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    m1 = scores[scores.series == "m1"].score.to_numpy()
    assert len(m1) == 600 and np.isnan(m1[:290]).all() and np.isfinite(m1[330:]).mean() > 0.9
    assert np.isfinite(scores[scores.series == "m2"].score.to_numpy()[100:]).mean() > 0.9


@pytest.mark.parametrize("score_unseen", [False, True])
def test_runtime_scores_conditional_windows_and_counts_unseen_ones(score_unseen, broker, regime, tmp_path):
    frame, bundle, _ = regime
    config = runtime_config(broker.port, bundle, tmp_path, publish_scores=True)
    config.models[0].score_unseen_conditions = score_unseen
    runtime = Runtime(config)
    runtime.start()
    collector = Collector(broker.port, "linewatch/events/#")
    publisher = client(broker.port)
    m1 = frame[frame.machine == "m1"].iloc[:400]
    try:
        assert runtime.link.wait_subscribed(5)
        for i, row in enumerate(m1.itertuples(index=False)):
            recipe = "D" if i >= 300 else row.recipe  # the last 100 samples under an unknown product
            sample = {"ts": row.ts, **{f: getattr(row, f) for f in FEATURES}, "setpoint": row.setpoint, "recipe": recipe}
            if i in (150, 151):
                del sample["recipe"]  # missing for two samples: held from the last one, as a sensor would be
            publisher.publish("plant/l1/m1/telemetry", orjson.dumps(sample), qos=1)
        model = runtime.models[0]
        assert wait_for(lambda: runtime.snapshot()["accepted"] >= 400 and model.unseen + model.scored >= (400 - 20) // 5 + 1)
        assert wait_for(lambda: len([e for e in collector.events() if e["kind"] == "score"]) >= 1)
    finally:
        runtime.stop()
    windows = (400 - 20) // 5 + 1  # window 20, stride 5
    unseen = math.ceil((400 - 300) / 5)  # every window that ends on a sample with the unknown product
    assert model.unseen == unseen
    decided = [e for e in collector.events() if e["kind"] in ("score", "alarm_raised", "alarm_cleared")]
    # the others were all decided and published (with score_unseen_conditions the unseen ones too)
    assert len({e["window_end"] for e in decided}) == windows - (0 if score_unseen else unseen)
    collector.close()


def test_conditions_from_their_own_retained_topics_feed_tag_streams(broker, regime, tmp_path):
    frame, bundle, _ = regime
    inputs = [{"topic": "plant/{machine}/tags/{tag}", "format": "tag", "qos": 1},
              {"topic": "plant/{machine}/setpoint", "format": "condition", "condition": "setpoint", "qos": 1},
              {"topic": "plant/{machine}/recipe", "format": "condition", "condition": "recipe", "qos": 1}]
    publisher = client(broker.port)
    m1 = frame[frame.machine == "m1"].iloc[:300]
    # retained before the runtime starts: it receives them on subscribing, as it would a plant's current mode
    publisher.publish("plant/m1/setpoint", str(m1.setpoint.iloc[0]).encode(), qos=1, retain=True).wait_for_publish(5)
    publisher.publish("plant/m1/recipe", m1.recipe.iloc[0].encode(), qos=1, retain=True).wait_for_publish(5)
    runtime = Runtime(runtime_config(broker.port, bundle, tmp_path, inputs=inputs, publish_scores=True))
    runtime.start()
    try:
        assert runtime.link.wait_subscribed(5)
        model = runtime.models[0]
        assert wait_for(lambda: runtime.snapshot()["accepted"] >= 2)  # both retained conditions taken
        for i, row in enumerate(m1.itertuples(index=False)):
            if i == 200:  # the plant switches to a product the model never saw
                publisher.publish("plant/m1/recipe", b'{"value": "D"}', qos=1, retain=True)
            for f in FEATURES:
                publisher.publish(f"plant/m1/tags/{f}", orjson.dumps({"ts": row.ts, "value": getattr(row, f)}), qos=1)
        windows = (300 - 20) // 5 + 1
        assert wait_for(lambda: model.scored >= windows, timeout=30)
    finally:
        runtime.stop()
    state = model.streams["m1"]
    assert state.conditions[1] == -1.0  # the unknown product, held for the stream
    assert 15 <= model.unseen <= 21  # the windows that end after the switch (the switch lands among in-flight tags)
    publisher.publish("plant/m1/setpoint", b"", qos=1, retain=True)  # clear the retained messages
    publisher.publish("plant/m1/recipe", b"", qos=1, retain=True)


def test_inputs_without_conditions_need_condition_topics(broker, regime, tmp_path):
    _, bundle, _ = regime
    inputs = [{"topic": "plant/{machine}/tags/{tag}", "format": "tag"},
              {"topic": "plant/{machine}/recipe", "format": "condition", "condition": "recipe"}]
    with pytest.raises(BundleError, match=r"inputs \['plant/\{machine\}/tags/\{tag\} \(tag\)'\] carry none.*missing for \['setpoint'\]"):
        Runtime(runtime_config(broker.port, bundle, tmp_path, inputs=inputs))
    inputs = [{"topic": "plant/{line}/{machine}/telemetry", "format": "json"},
              {"topic": "plant/{machine}/recipe", "format": "condition", "condition": "recipe"}]
    with pytest.raises(BundleError, match="condition topics must name the same stream fields as the data topics"):
        Runtime(runtime_config(broker.port, bundle, tmp_path, inputs=inputs))
    inputs = [{"topic": "plant/{machine}/telemetry", "format": "json"},
              {"topic": "plant/{machine}/speed", "format": "condition", "condition": "speed_stage"}]
    with pytest.raises(BundleError, match=r"condition input\(s\) for \['speed_stage'\], which the model does not take"):
        Runtime(runtime_config(broker.port, bundle, tmp_path, inputs=inputs))


def test_condition_payloads_decode_bare_json_and_object_values():
    from edge_runtime.ingest.decoders import decode_condition

    codes = {"A": 0.0, "B": 1.0}
    assert [decode_condition(p, codes) for p in (b"B", b'"B"', b'{"value": "A"}', b"Z")] == [1.0, 1.0, 0.0, -1.0]
    assert [decode_condition(p, None) for p in (b"0.8", b'{"value": 0.6}', b" 1 ")] == [0.8, 0.6, 1.0]
    with pytest.raises(BadSample, match="is not a number"):
        decode_condition(b"fast", None)
    with pytest.raises(BadSample, match="non_finite|NaN|nan"):
        decode_condition(b"NaN", None)
