"""Runtime pieces without a broker: streams, the gap rule's agreement with training, alarms, batching, config."""

import time

import numpy as np
import pytest

from edge_runtime.config import parse_config
from edge_runtime.contract.alarms import CLEARED, RAISED, Alarm
from edge_runtime.contract.errors import ConfigError
from edge_runtime.ingest.streams import ACCEPTED, LATE, READY, RESTARTED, STEPPED_READY, TOO_FAST, Stream
from edge_runtime.ingest.topics import TopicTemplate


def test_ring_buffer_windows_are_contiguous_views_in_order():
    stream = Stream("m1", window=4, stride=2, n_features=2, max_gap=1.5)
    results = [stream.push(float(t), np.array([t, -t], np.float32)) for t in range(11)]
    assert results == [ACCEPTED] * 3 + [READY, ACCEPTED] * 4
    window = stream.window()
    assert np.shares_memory(window, stream.buffer) and window.flags["C_CONTIGUOUS"]
    assert window[:, 0].tolist() == [7, 8, 9, 10] and stream.window_span() == (7.0, 10.0)


def test_gap_late_and_missing_rules():
    stream = Stream("m1", window=3, stride=1, n_features=2, max_gap=2.0)
    for t in range(3):
        stream.push(float(t), [1.0, 2.0])
    assert stream.push(1.5, [0.0, 0.0]) == LATE and stream.late == 1
    assert stream.push(3.0, [5.0, 0.0], missing=(1,)) == READY  # held for 1 s
    assert stream.window()[-1].tolist() == [5.0, 2.0]
    assert stream.push(10.0, [1.0, 1.0]) == ACCEPTED and stream.filled == 1  # 7 s gap restarted the run
    assert stream.push(11.0, [1.0, 0.0], missing=(1,)) == ACCEPTED
    assert stream.push(14.0, [1.0, 0.0], missing=(1,)) == RESTARTED  # feature 1 last seen 4 s ago


def test_clock_steps_restart_and_too_fast_samples_are_refused():
    stream = Stream("m1", window=3, stride=1, n_features=1, max_gap=2.0, gap_s=1.5, min_step=0.5)
    for t in (100.0, 101.0, 102.0):
        stream.push(t, [1.0])
    assert stream.push(102.3, [9.0]) == TOO_FAST and stream.too_fast == 1  # twice the bundle's rate: refused, not windowed
    assert stream.push(101.5, [9.0]) == LATE  # a small step back: late, as before
    # one message stamped far ahead, then the real clock again: the samples on the real clock are held aside until a
    # window's worth of them shows the time line goes on there, then the stream restarts on it with them: no data lost
    assert stream.push(150.0, [9.0]) == ACCEPTED and stream.filled == 1
    assert [stream.push(t, [1.0]) for t in (103.0, 104.0)] == [LATE, LATE] and stream.clock_steps == 0
    assert stream.push(105.0, [1.0]) == STEPPED_READY and stream.clock_steps == 1 and stream.late == 1  # 101.5 only: the held ones used
    assert stream.window()[:, 0].tolist() == [1.0, 1.0, 1.0] and stream.window_span() == (103.0, 105.0)
    assert stream.push(107.0, [1.0]) == READY and stream.gaps == 2  # 150 - 102 and 107 - 105 were gaps


def test_a_straggler_costs_one_sample_never_the_stream():
    stream = Stream("m1", window=4, stride=1, n_features=1, max_gap=3.0, gap_s=1.5, min_step=0.5)
    results = [stream.push(float(t), [float(t)]) for t in range(100, 110)]
    assert stream.push(90.0, [0.0]) == LATE and stream.push(91.0, [0.0]) == LATE  # ten seconds back, twice: held aside
    assert stream.push(110.0, [110.0]) == READY  # the time line goes on: they were stragglers, the history is intact
    assert stream.window()[:, 0].tolist() == [107.0, 108.0, 109.0, 110.0] and stream.clock_steps == 0 and stream.late == 2
    assert results.count(READY) == 7 and stream.filled == 11


def test_alarm_on_delay_off_delay_and_deadband():
    alarm = Alarm(on_k=2, on_n=3, off_m=2, deadband=0.2)
    threshold = 1.0
    scores = [0.5, 1.5, 0.5, 0.5, 1.2, 1.3, 1.4, 0.9, 0.7, 1.1, 0.7, 0.7, 0.7]
    events = [(i, alarm.update(s, threshold)) for i, s in enumerate(scores)]
    fired = [(i, e) for i, e in events if e]
    # one isolated exceedance does not raise; 0.9 is inside the deadband and does not count towards clearing
    assert fired == [(5, RAISED), (11, CLEARED)]


def test_topic_templates():
    template = TopicTemplate("plant/{line}/{machine}/telemetry")
    assert template.subscription == "plant/+/+/telemetry"
    assert template.match("plant/l1/m7/telemetry") == ("l1/m7", None)
    assert template.match("plant/l1/m7/other") is None
    assert TopicTemplate("plant/{machine}/tags/{tag}").match("plant/m1/tags/speed") == ("m1", "speed")


@pytest.mark.parametrize(
    "data, message",
    [
        ({}, "no [[models]] configured"),
        ({"models": [{"bundle": "b", "colour": 1}]}, "models[0]: unknown key(s) ['colour']"),
        ({"models": [{"bundle": "b"}], "broker": {"port": "1883"}}, "broker.port: expected an integer"),
        ({"models": [{"bundle": "b", "inputs": [{"format": "xml"}]}]}, "models[0].inputs[0].format: expected one of"),
        ({"models": [{"bundle": "b", "inputs": [{"topic": "a/{m}", "format": "tag"}]}]}, "a {tag} field goes with format"),
        ({"models": [{"bundle": "b", "inputs": [{"topic": "a/{m}/{tag}"}]}]}, "a {tag} field goes with format"),
        ({"models": [{"bundle": "b", "alarm": {"on_k": 4, "on_n": 3}}]}, "on_k (4) cannot exceed on_n (3)"),
        # everything below once passed --check and then broke `run` (issue 11)
        ({"models": [{"bundle": "b", "event_topic": "linewatch/events/{site}"}]}, "models[0].event_topic: ['site'] cannot be filled in"),
        ({"models": [{"bundle": "b", "event_topic": "linewatch/events/#"}]}, "holds an MQTT wildcard"),
        ({"models": [{"bundle": "b", "event_topic": "linewatch/{0}"}]}, "is not a plain {field}"),
        ({"models": [{"bundle": "b", "inputs": [{"qos": 3}]}]}, "models[0].inputs[0].qos: must be <= 2, got 3"),
        ({"models": [{"bundle": "b"}], "runtime": {"status_topic": "lw/{gateway}/status"}}, "runtime.status_topic: only {client_id}"),
        ({"models": [{"bundle": "b", "inputs": [{"topic": "plant/telemetry"}]}]}, "has no {field} naming the stream"),
        ({"models": [{"bundle": "b", "inputs": [{"topic": "plant/{line}-{machine}"}]}]}, "is not one whole {field} per level"),
        ({"models": [{"bundle": "b", "inputs": [{"topic": "plant/#/{machine}"}]}]}, "+ for a level that is not part of it; no #"),
        ({"models": [{"bundle": "b", "inputs": [{"topic": "plant/l+/{machine}"}]}]}, "+ for a level that is not part of it; no #"),
        ({"models": [{"bundle": "b", "inputs": [{"topic": "$share//plant/{machine}"}]}]}, "a shared subscription is $share/<group>/<topic>"),
        ({"models": [{"bundle": "b"}], "runtime": {"latency_budget_ms": float("nan")}}, "runtime.latency_budget_ms: expected a finite number"),
        ({"models": [{"bundle": "b"}], "runtime": {"reorder_s": float("inf")}}, "runtime.reorder_s: expected a finite number"),
        ({"models": [{"bundle": "b"}], "runtime": {"max_batch": 2.5}}, "runtime.max_batch: expected an integer, got 2.5"),
        ({"models": [{"bundle": "b", "backend": "onnx"}]}, "models[0].backend: expected one of"),
        ({"models": [{"bundle": "b", "precision": "fp8"}]}, "models[0].precision: expected one of"),
        ({"models": [{"bundle": "b"}], "runtime": {"outbox_sync": "off"}}, "runtime.outbox_sync: expected one of ['full', 'normal']"),
        ({"models": [{"bundle": "b"}], "broker": {"client_id": "gw/1"}}, "broker.client_id: 'gw/1' must be non-empty"),
        ({"models": [{"bundle": "b"}], "runtime": {"metrics_port": 70000}}, "runtime.metrics_port: must be <= 65535"),
        ({"models": [{"bundle": "b"}], "broker": {"cert_file": "c.pem"}}, "cert_file and key_file go together"),
        ({"models": [{"bundle": "b"}], "broker": {"tls": True, "ca_file": "/no/ca.pem"}}, "broker.ca_file: /no/ca.pem does not exist"),
    ],
)
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert message in str(error.value)


def test_every_default_follows_its_own_rule_and_event_topics_may_use_stream_fields():
    from edge_runtime.config import defaults_follow_rules

    defaults_follow_rules()
    config = parse_config({"models": [{"bundle": "b", "event_topic": "linewatch/{line}/{machine}/{model}/events"}]})
    assert config.models[0].event_topic == "linewatch/{line}/{machine}/{model}/events"


def test_password_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    config = parse_config({"models": [{"bundle": "b"}], "broker": {"username": "u", "password_file": str(secret)}})
    assert config.broker.password() == "s3cret"
    monkeypatch.setenv("LW_PW", "from-env")
    config = parse_config({"models": [{"bundle": "b"}], "broker": {"username": "u", "password_env": "LW_PW"}})
    assert config.broker.password() == "from-env"
    config = parse_config({"models": [{"bundle": "b"}], "broker": {"password_env": "LW_MISSING"}})
    with pytest.raises(ConfigError, match="LW_MISSING is not set"):
        config.broker.password()


def test_reference_config_parses():
    from pathlib import Path

    from edge_runtime.config import load_config

    config = load_config(Path(__file__).parents[2] / "edge_runtime" / "gateway.example.toml")
    assert [i.format for i in config.models[0].inputs] == ["json", "tag", "chunk", "sparkplug"]
    assert config.sparkplug.group == "linewatch" and not config.sparkplug.enabled


def test_batcher_sheds_the_stalest_window_under_overload():
    from edge_runtime.ingest.registry import StreamState
    from edge_runtime.scoring.batcher import Batcher

    batcher = Batcher(window=2, n_features=1, max_batch=2, capacity=3, score=lambda batch, n: None)
    for i in range(5):  # the scoring thread is not running: nothing drains the pending batch
        state = StreamState(f"m{i}", Stream(f"m{i}", window=2, stride=1, n_features=1, max_gap=10.0), None, None, now=0.0)
        state.ring.push(0.0, [float(i)])
        state.ring.push(1.0, [float(i)])
        batcher.add(state, arrival=100.0 + i)
    pending = batcher.pending
    assert batcher.shed == 2 and pending.count == 3
    assert sorted(pending.arrivals[:3].tolist()) == [102.0, 103.0, 104.0]
    assert sorted(s.key for s in pending.streams[:3]) == ["m2", "m3", "m4"]
    assert sorted(pending.windows[:3, 0, 0].tolist()) == [2.0, 3.0, 4.0]


def test_error_reports_keep_their_rate_in_any_second_and_count_what_they_drop():
    from edge_runtime.ingest.badinput import BadInput

    now, sent = [0.0], []
    bad = BadInput(sent.append, per_second=5.0, clock=lambda: now[0])
    for k in range(200):  # 100 a second for 2 s
        now[0] = k * 0.01
        bad.report("malformed_json", "t")
    assert len(sent) == 10 and bad.unpublished == 190 and bad.counts["malformed_json"] == 200
    assert all(report["refused"] for report in sent)
    bad.note("missing_feature", "t")
    assert bad.notes["missing_feature"] == 1 and sum(bad.counts.values()) == 200  # notes are not refusals


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["threshold"].update(value=float("nan")), "a NaN threshold never alarms"),
    (lambda m: m["input"].update(sample_period=0), "sample_period must be a positive number"),
    (lambda m: m["input"].update(max_gap=0.5), "max_gap must be at least sample_period"),
    (lambda m: m["input"]["features"].append(dict(m["input"]["features"][0])), "feature names repeat"),
    (lambda m: m["input"].update(window=m["input"]["window"] + 1), "does not match window"),
])
def test_manifest_values_are_range_checked(runtime_bundle, change, message):
    import json

    from edge_runtime.contract.bundle import validate_manifest
    from edge_runtime.contract.errors import BundleError

    manifest = json.loads((runtime_bundle / "bundle.json").read_text())
    validate_manifest(manifest)
    change(manifest)
    with pytest.raises(BundleError, match=message):
        validate_manifest(manifest)


def test_the_batcher_never_waits_when_it_need_not_and_batches_grow_with_the_load():
    import threading

    from edge_runtime.ingest.registry import StreamState
    from edge_runtime.scoring.batcher import Batcher

    sizes, busy, release = [], threading.Event(), threading.Event()

    def score(batch, n):
        sizes.append(n)
        busy.set()
        release.wait(10)  # the first batch keeps the scorer busy while more windows arrive

    batcher = Batcher(window=2, n_features=1, max_batch=64, capacity=128, score=score)
    batcher.start()
    states = []
    for i in range(11):
        state = StreamState(f"m{i}", Stream(f"m{i}", window=2, stride=1, n_features=1, max_gap=10.0), None, None, now=0.0)
        state.ring.push(0.0, [1.0])
        state.ring.push(1.0, [1.0])
        states.append(state)
    batcher.add(states[0], arrival=0.0)
    assert busy.wait(5)  # scored alone and at once: no waiting for a batch to fill or a deadline to near
    for state in states[1:]:  # ten windows pile up while the scorer is busy
        batcher.add(state, arrival=0.0)
    release.set()
    assert batcher.stop(5)
    assert sizes == [1, 10]


def test_a_queue_delay_waits_for_a_fuller_batch_but_never_past_a_full_one():
    import threading

    from edge_runtime.ingest.registry import StreamState
    from edge_runtime.scoring.batcher import Batcher

    sizes, scored = [], threading.Event()
    batcher = Batcher(window=2, n_features=1, max_batch=4, capacity=8, score=lambda batch, n: (sizes.append(n), scored.set()),
                      max_queue_delay_s=30.0)
    batcher.start()
    for i in range(4):
        state = StreamState(f"m{i}", Stream(f"m{i}", window=2, stride=1, n_features=1, max_gap=10.0), None, None, now=0.0)
        state.ring.push(0.0, [1.0])
        state.ring.push(1.0, [1.0])
        batcher.add(state, arrival=time.perf_counter())
    assert scored.wait(5) and sizes == [4]  # a full batch goes at once, long before the 30 s delay
    assert batcher.stop(5)


def test_drift_is_reported_once_cleared_once_and_a_slow_degradation_still_alarms():
    from edge_runtime.scoring.drift import DRIFT, DRIFT_CLEARED, DriftRule, DriftWatch

    rng = np.random.default_rng(1)
    rule, watch = DriftRule(reference=1.0, windows=50, raise_share=0.5, clear_share=0.2), DriftWatch()
    normal = rng.uniform(0.0, 1.0 / 0.9, 300)  # 10 % above the reference, as calibration had it
    assert [rule.update(watch, s) for s in normal].count(DRIFT) == 0
    shifted = [rule.update(watch, s) for s in rng.uniform(0.9, 1.6, 300)]  # a new normal, mostly above the 90th percentile
    assert shifted.count(DRIFT) == 1 and shifted.count(DRIFT_CLEARED) == 0
    back = [rule.update(watch, s) for s in normal]
    assert back.count(DRIFT_CLEARED) == 1 and not watch.drifting
    # a machine degrading slowly: drift first, and the alarm still comes, because no threshold follows the scores
    watch, alarm, threshold, seen = DriftWatch(), Alarm(2, 3, 3, 0.1), 3.0, []
    for k, score in enumerate(np.linspace(0.5, 6.0, 600)):
        seen += [(k, rule.update(watch, score)), (k, alarm.update(score, threshold))]
    drift_at = next(k for k, kind in seen if kind == DRIFT)
    raised_at = next(k for k, kind in seen if kind == RAISED)
    assert drift_at < raised_at and alarm.active


def test_iso_writes_what_datetime_writes_for_any_time():
    from datetime import datetime, timezone

    from edge_runtime.contract.timeparse import iso

    rng = np.random.default_rng(0)
    times = [0.0, -0.0005, -1.9999996, 1.9999996, 1.0005, 1767225599.9995, 1767225599.9999996, 253402300799.999]
    times += rng.uniform(-2e9, 4e9, 20_000).tolist() + (1.7e9 + rng.integers(0, 10**6, 5_000) / 1e6).tolist()
    for t in times:
        assert iso(t) == datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"), t


def test_an_event_key_names_the_decision_so_duplicates_from_two_runtimes_are_one():
    from edge_runtime.delivery.event_schema import make_event, validate_event

    args = ("alarm_raised", "l1/m2", "pumps", "c1848063cd103ab9", (100.0, 149.0), 9.4, 4.1, ["a", "b"], [9.4, 1.0], 0.003)
    first, again = make_event(*args), make_event(*args)  # the same window decided twice (a restart, a move)
    assert validate_event(first) and first["id"] != again["id"] and first["key"] == again["key"]
    assert first["key"] == "c1848063cd103ab9|l1/m2|1970-01-01T00:02:29.000Z|alarm_raised"
    assert make_event("alarm_cleared", *args[1:])["key"] != first["key"]


def test_plus_levels_and_shared_subscriptions_match_without_entering_the_key():
    partitioned = TopicTemplate("part/+/plant/{line}/{machine}/telemetry")
    assert partitioned.subscription == "part/+/plant/+/+/telemetry"
    assert partitioned.match("part/3/plant/l1/m2/telemetry") == ("l1/m2", None) and partitioned.match("part/3/x/l1/m2/telemetry") is None
    shared = TopicTemplate("$share/linewatch/plant/{line}/{machine}/{tag}")
    assert shared.subscription == "$share/linewatch/plant/+/+/+"
    assert shared.match("plant/l1/m2/temp") == ("l1/m2", "temp")  # messages arrive on the topic without the share prefix


def test_each_worker_gets_its_own_identity_state_port_and_partition(tmp_path):
    from edge_runtime.config import for_worker, partitioned

    config = parse_config({"broker": {"client_id": "gw"}, "runtime": {"state_dir": str(tmp_path), "metrics_port": 9100},
                           "models": [{"bundle": "b", "inputs": [{"topic": "part/{worker}/plant/{line}/{machine}/telemetry"}]}]})
    assert partitioned(config)
    with pytest.raises(ConfigError, match="run with --workers N"):
        for_worker(config, None)
    third = for_worker(config, 2)
    assert third.broker.client_id == "gw-w2" and third.runtime.metrics_port == 9102
    assert third.runtime.outbox == str(tmp_path / "linewatch-outbox-w2.sqlite")
    assert third.runtime.thresholds_file == str(tmp_path / "linewatch-thresholds-w2.json")
    assert third.models[0].inputs[0].topic == "part/2/plant/{line}/{machine}/telemetry"
    assert config.broker.client_id == "gw" and "{worker}" in config.models[0].inputs[0].topic  # the original is untouched
    plain = parse_config({"models": [{"bundle": "b"}]})
    assert not partitioned(plain) and for_worker(plain, None) is plain
    assert partitioned(parse_config({"models": [{"bundle": "b", "inputs": [{"topic": "$share/g/plant/{line}/{machine}/telemetry"}]}]}))


def test_several_workers_on_topics_that_do_not_split_the_streams_are_refused(runtime_bundle, tmp_path):
    from click.testing import CliRunner

    from linewatch.cli import main

    config = tmp_path / "gateway.toml"
    config.write_text(f'[runtime]\nstate_dir = "{tmp_path}"\n[[models]]\nname = "pumps"\nbundle = "{runtime_bundle}"\n')
    result = CliRunner().invoke(main, ["run", "-c", str(config), "--workers", "2"])
    assert result.exit_code == 1 and "and score every stream 2 times" in result.output
    config.write_text(f'[runtime]\nstate_dir = "{tmp_path}"\nmetrics_port = 9100\n[[models]]\nname = "pumps"\nbundle = "{runtime_bundle}"\n'
                      '[[models.inputs]]\ntopic = "plant/line{worker}/{machine}/telemetry"\n')
    result = CliRunner().invoke(main, ["run", "-c", str(config), "--workers", "2", "--check"])
    assert result.exit_code == 0, result.output
    assert "worker 1: client id linewatch-w1" in result.output and "metrics port 9101" in result.output
    assert "plant/line1/{machine}/telemetry" in result.output
