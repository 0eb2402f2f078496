"""The runtime against a real mosquitto: faults in, alarm events out, for every payload shape;
outbox across broker and runtime restarts; bad input; hot reload; shutdown; metrics; TLS and auth.
"""

import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import numpy as np
import orjson
import pandas as pd
import pytest

from edge_runtime.delivery.event_schema import validate_event
from edge_runtime.runtime import Runtime
from helpers import FEATURES, committed_bundle, runtime_config, wait_for
from mqtt_helpers import Collector, Mosquitto, client, free_port, make_pki, tls_listener


@pytest.fixture(scope="module")
def plant(plant_csv):
    """The plant table with epoch-second times."""
    frame = pd.read_csv(plant_csv)
    frame["ts"] = (pd.to_datetime(frame["time"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return frame


def wait_until_quiet(runtime: Runtime, expected: int, timeout: float = 30.0) -> None:
    """Wait until the runtime has taken ``expected`` messages (accepted or refused)."""
    def taken() -> int:
        snap = runtime.snapshot()
        return snap["accepted"] + sum(snap["bad_input"].values())

    assert wait_for(lambda: taken() >= expected, timeout), f"runtime took {runtime.snapshot()} of {expected} messages"


def fault_spans(frame: pd.DataFrame, machine: str) -> list[tuple[float, float]]:
    """(first, last) timestamps of each labelled fault of one machine."""
    part = frame[frame.machine == machine]
    labels = part.label.to_numpy()
    edges = np.flatnonzero(np.diff(np.r_[0, labels, 0]))
    ts = part.ts.to_numpy()
    return [(ts[a], ts[b - 1]) for a, b in zip(edges[::2], edges[1::2])]


def iso_seconds(text: str) -> float:
    return pd.Timestamp(text).timestamp()


def expected_alarms(bundle_dir, frame: pd.DataFrame, machine: str) -> list[tuple[str, str]]:
    """(kind, window_end) of the alarm transitions the runtime must publish, computed offline."""
    from edge_runtime.contract.alarms import Alarm
    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.contract.timeparse import iso
    from edge_runtime.ingest.streams import READY, Stream
    from edge_runtime.scoring.backends import create_backend

    bundle = load_bundle(bundle_dir)
    part = frame[frame.machine == machine]
    stream = Stream(machine, bundle.window, bundle.stride, len(FEATURES), bundle.max_gap)
    windows, ends = [], []
    for row in part.itertuples(index=False):
        if stream.push(row.ts, [getattr(row, f) for f in FEATURES]) == READY:
            windows.append(stream.window().copy())
            ends.append(stream.window_span()[1])
    with create_backend(bundle, max_batch=len(windows)) as backend:
        scores, _ = backend.infer(np.array(windows))
    alarm, transitions = Alarm(2, 3, 3, 0.1), []
    for score, end in zip(scores, ends):
        kind = alarm.update(float(score), bundle.threshold)
        if kind:
            transitions.append((kind, iso(end)))
    return transitions


def assert_alarms_match(events: list[dict], frame: pd.DataFrame, stream_of: dict[str, str], bundle_dir) -> None:
    """The published alarms equal the offline computation, and most injected faults raise one."""
    detected = faults = 0
    for machine, stream in stream_of.items():
        mine = [e for e in events if e["stream"] == stream and e["kind"] in ("alarm_raised", "alarm_cleared")]
        assert [(e["kind"], e["window_end"]) for e in mine] == expected_alarms(bundle_dir, frame, machine)
        raised = [iso_seconds(e["window_end"]) for e in mine if e["kind"] == "alarm_raised"]
        for first, last in fault_spans(frame, machine):
            faults += 1
            detected += any(first <= t <= last + 40 for t in raised)
        for e in mine:
            validate_event(e)
            assert e["model"] == "pumps" and len(e["id"]) == 32
            assert e["top_features"][0]["name"] in FEATURES and e["latency_ms"] >= 0
    assert detected >= faults / 2, f"{detected} of {faults} faults raised an alarm"


def test_json_samples_raise_and_clear_alarms_for_injected_faults(broker, runtime_bundle, tmp_path, plant):
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path))
    runtime.start()
    collector = Collector(broker.port, "linewatch/#")
    publisher = client(broker.port)
    try:
        assert runtime.link.wait_subscribed(5)
        for row in plant.itertuples(index=False):
            payload = {"ts": row.ts, **{f: getattr(row, f) for f in FEATURES}}
            publisher.publish(f"plant/l1/{row.machine}/telemetry", orjson.dumps(payload), qos=1)
        wait_until_quiet(runtime, len(plant))
    finally:
        runtime.stop()
    snap = runtime.snapshot()
    windows_per_machine = (len(plant) // 2 - 20) // 5 + 1
    assert snap["accepted"] == len(plant) and snap["models"]["pumps"]["scored"] == 2 * windows_per_machine
    assert collector.wait_for(lambda c: len(c.events()) >= 4)
    assert_alarms_match(collector.events(), plant, {"m1": "l1/m1", "m2": "l1/m2"}, runtime_bundle)
    statuses = collector.on("linewatch/lw-test/status")
    assert statuses[0]["state"] == "online" and statuses[-1]["state"] == "offline"
    assert statuses[0]["bundles"][0]["id"] == runtime.models[0].bundle.model_id
    collector.close()


@pytest.mark.slow
def test_tag_and_chunk_payloads_raise_alarms(broker, runtime_bundle, tmp_path, plant):
    inputs = [{"topic": "plant/{machine}/tags/{tag}", "format": "tag", "qos": 1, "staleness_s": 1.5},
              {"topic": "plant/{machine}/chunks", "format": "chunk", "qos": 1}]
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, inputs=inputs))
    runtime.start()
    collector = Collector(broker.port, "linewatch/events/#")
    publisher = client(broker.port)
    m1, m2 = plant[plant.machine == "m1"], plant[plant.machine == "m2"]
    try:
        assert runtime.link.wait_subscribed(5)
        for row in m1.itertuples(index=False):
            for f in FEATURES:
                publisher.publish(f"plant/m1/tags/{f}", orjson.dumps({"ts": row.ts, "value": getattr(row, f)}), qos=1)
        chunk = 50
        values = m2[FEATURES].to_numpy()
        for start in range(0, len(m2), chunk):
            payload = {"t0": float(m2.ts.iloc[start]), "dt": 1.0, "values": values[start : start + chunk].tolist()}
            publisher.publish("plant/m2/chunks", orjson.dumps(payload), qos=1)
        wait_until_quiet(runtime, len(m1) - 1 + len(m2))  # one sample per grid tick; the last tick waits
    finally:
        runtime.stop()
    scored = runtime.snapshot()["models"]["pumps"]["scored"]
    windows = (len(m2) - 20) // 5 + 1
    assert windows * 2 - 2 <= scored <= windows * 2  # the tag stream's last tick waits for a newer message
    assert collector.wait_for(lambda c: len(c.events()) >= 4)
    assert_alarms_match(collector.events(), plant, {"m1": "m1", "m2": "m2"}, runtime_bundle)
    collector.close()


def fault_payloads(plant: pd.DataFrame, machine: str = "m1") -> list[tuple[str, bytes]]:
    part = plant[plant.machine == machine]
    return [(f"plant/l1/{machine}/telemetry", orjson.dumps({"ts": r.ts, **{f: getattr(r, f) for f in FEATURES}}))
            for r in part.itertuples(index=False)]


@pytest.mark.slow
def test_outbox_delivers_after_broker_outage_and_runtime_restart(mosquitto_path, runtime_bundle, tmp_path, plant):
    port = free_port()
    broker = Mosquitto(tmp_path, port).start()
    config = runtime_config(port, runtime_bundle, tmp_path)
    runtime = Runtime(config)
    runtime.start()
    assert runtime.link.wait_connected(5)
    broker.stop()
    assert wait_for(lambda: not runtime.link.connected.is_set(), 5)
    assert not runtime.link.subscribed.is_set()  # a new connection must subscribe again before samples can arrive
    for topic, payload in fault_payloads(plant):  # samples reach the runtime while the broker is down
        runtime._on_message(topic, payload, time.perf_counter())
    runtime.stop()  # events stay in the outbox across the restart
    depth = runtime.snapshot()["outbox_depth"]
    assert depth >= 2
    broker = Mosquitto(tmp_path, port).start()
    collector = Collector(port, "linewatch/events/#")
    restarted = Runtime(runtime_config(port, runtime_bundle, tmp_path))
    restarted.start()
    try:
        assert restarted.link.wait_subscribed(10)
        assert collector.wait_for(lambda c: len(c.events()) >= depth, timeout=15)
        assert wait_for(lambda: restarted.snapshot()["outbox_depth"] == 0, 10)
    finally:
        restarted.stop()
        collector.close()
        broker.stop()
    events = collector.events()
    ends = [iso_seconds(e["window_end"]) for e in events]
    assert ends == sorted(ends) and len({e["id"] for e in events}) == len(events)
    alarms = [e["kind"] for e in events if e["kind"].startswith("alarm_")]  # a drift event may come between them
    assert alarms[:2] == ["alarm_raised", "alarm_cleared"]


def test_bad_input_is_counted_reported_and_survived(broker, runtime_bundle, tmp_path, plant):
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, max_payload_bytes=2000, errors_per_second=100.0))
    runtime.start()
    collector = Collector(broker.port, "linewatch/lw-test/errors")
    publisher = client(broker.port)
    now = time.time()
    good = {"ts": now - 100, **{f: 1.0 for f in FEATURES}}
    bad = [
        b"{not json",
        orjson.dumps([1, 2, 3]),
        orjson.dumps({**good, "speed": "fast"}),
        orjson.dumps({**good, "speed": 1e308 * 10 if False else None, "flow": None}),
        orjson.dumps({**good, "colour": 3}),
        orjson.dumps({**good, "ts": now + 3600}),
        orjson.dumps({**good, "padding": "x" * 5000}),
        b'{"ts": 1, "current": NaN}',
    ]
    try:
        assert runtime.link.wait_subscribed(5)
        for payload in bad:
            publisher.publish("plant/l1/m9/telemetry", payload, qos=1)
        for topic, payload in fault_payloads(plant):
            publisher.publish(topic, payload, qos=1)
        wait_until_quiet(runtime, len(bad) + len(plant) // 2)
    finally:
        runtime.stop()
    counts, notes = runtime.snapshot()["bad_input"], runtime.snapshot()["notes"]
    assert counts["malformed_json"] == 2 and counts["wrong_type"] == 2 and counts["future_timestamp"] == 1
    assert counts["oversized"] == 1 and notes["unknown_feature"] == 1 and notes["missing_feature"] == 1
    assert runtime.snapshot()["models"]["pumps"]["scored"] > 500  # alive and scoring after the bad input
    assert collector.wait_for(lambda c: len(c.on("linewatch/lw-test/errors")) >= 7)
    reasons = {r["reason"] for r in collector.on("linewatch/lw-test/errors")}
    assert {"malformed_json", "wrong_type", "future_timestamp", "oversized"} <= reasons
    collector.close()


def test_poison_from_one_stream_never_costs_another_a_window(broker, runtime_bundle, tmp_path, plant):
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path))
    runtime.start()
    collector = Collector(broker.port, "linewatch/events/#")
    publisher = client(broker.port)
    t0, now = float(plant.ts.iloc[0]), time.time()
    sample = {f: 1.0 for f in FEATURES}
    poison = [
        {**sample, "ts": -1e12},  # once made event encoding fail for a whole cross-machine batch
        {**sample, "ts": t0, "current": 1e39},  # inf in float32: once gave "score": null and a stream that never alarmed again
        *({**dict.fromkeys(FEATURES, 1e20), "ts": t0 + i} for i in range(25)),  # within float32: scores saturate, never null
        {**sample, "ts": t0 + 24.3},  # 0.3 s after the last sample of a 1 s bundle
        {**sample, "ts": now + 50},  # 50 s ahead: accepted...
        # ...and once a window's worth of real samples shows the time line goes on there, the stream restarts on them
        # instead of blanking 50 s (a single one could be a straggler)
        *({**sample, "ts": t0 + 26 + i} for i in range(20)),
    ]
    poisoned = len(poison)
    good = fault_payloads(plant, "m1") + fault_payloads(plant, "m2")
    try:
        assert runtime.link.wait_subscribed(5)
        for k, (topic, payload) in enumerate(good):
            publisher.publish(topic, payload, qos=1)
            if k % 100 == 0 and poison:
                publisher.publish("plant/l1/m9/telemetry", orjson.dumps(poison.pop(0)), qos=1)
        assert not poison
        wait_until_quiet(runtime, len(good) + poisoned)
    finally:
        runtime.stop()
    snap = runtime.snapshot()
    counts, notes = snap["bad_input"], snap["notes"]
    assert (counts["past_timestamp"], counts["out_of_range"], counts["rate_mismatch"], notes["clock_step"]) == (1, 1, 1, 1)
    assert snap["models"]["pumps"]["undecided"] == 0 and snap["models"]["pumps"]["failed"] == 0
    assert collector.wait_for(lambda c: len(c.events()) >= 5)
    events = collector.events()
    assert_alarms_match([e for e in events if e["stream"] != "l1/m9"], plant, {"m1": "l1/m1", "m2": "l1/m2"}, runtime_bundle)
    raised = [e for e in events if e["stream"] == "l1/m9" and e["kind"] == "alarm_raised"]
    assert raised and all(validate_event(e)["score"] > 1e30 for e in raised)  # saturated, a number
    collector.close()


def test_hot_reload_keeps_stream_state_and_swaps_the_model(broker, runtime_bundle, tmp_path, plant):
    bundle = tmp_path / "bundle"
    shutil.copytree(runtime_bundle, bundle)
    runtime = Runtime(runtime_config(broker.port, bundle, tmp_path))
    runtime.start()
    publisher = client(broker.port)
    status = Collector(broker.port, "linewatch/lw-test/status")
    payloads = fault_payloads(plant)
    try:
        assert runtime.link.wait_subscribed(5)
        for topic, payload in payloads[:500]:
            publisher.publish(topic, payload, qos=1)
        wait_until_quiet(runtime, 500)
        runner = runtime.models[0]
        stream = runner.streams["l1/m1"].ring
        before_id, filled = runner.bundle.model_id, stream.filled
        manifest = json.loads((bundle / "bundle.json").read_text())
        manifest["threshold"]["value"] *= 2  # a recalibrated bundle with the same input spec
        (bundle / "bundle.json").write_text(json.dumps(manifest))
        assert wait_for(lambda: runner.bundle.model_id != before_id, 5)
        assert runner.streams["l1/m1"].ring is stream and stream.filled == filled
        assert status.wait_for(lambda c: c.on("linewatch/lw-test/status")[-1]["bundles"][0]["id"] == runner.bundle.model_id, 5)
        assert runner.threshold == pytest.approx(2 * json.loads((runtime_bundle / "bundle.json").read_text())["threshold"]["value"])
        for topic, payload in payloads[500:600]:
            publisher.publish(topic, payload, qos=1)
        wait_until_quiet(runtime, 600)
        (bundle / "model.onnx").write_bytes(b"tampered")  # a broken bundle is refused, the old one keeps running
        (bundle / "bundle.json").touch()
        assert wait_for(lambda: runner.reloads_refused == 1, 10)
        assert runner.bundle.threshold == pytest.approx(runner.threshold)
        assert runner.streams["l1/m1"].ring is stream
        # a bundle with another input spec (window 10): streams restart, scoring goes on
        shutil.rmtree(bundle)
        shutil.copytree(committed_bundle("window10", tmp_path), bundle)
        assert wait_for(lambda: runner.bundle.window == 10, 5)
        assert len(runner.streams) == 0
        scored = runner.scored
        for topic, payload in payloads[600:700]:
            publisher.publish(topic, payload, qos=1)
        assert wait_for(lambda: runner.scored >= scored + (100 - 10) // 5 + 1, 10)
    finally:
        runtime.stop()
        status.close()


def test_graceful_shutdown_scores_pending_windows_and_exposes_metrics(broker, runtime_bundle, tmp_path, plant):
    port = free_port()
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, max_queue_delay_ms=5000.0, max_batch=256,
                                     metrics_port=port))
    runtime.start()
    publisher = client(broker.port)
    try:
        assert runtime.link.wait_subscribed(5)
        for topic, payload in fault_payloads(plant)[:1000]:
            publisher.publish(topic, payload, qos=1)
        wait_until_quiet(runtime, 1000)
        assert runtime.models[0].batcher.pending.count > 0  # a long queue delay leaves windows waiting for a fuller batch
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        runtime.stop()
    assert runtime.snapshot()["models"]["pumps"]["scored"] == (1000 - 20) // 5 + 1
    for name in ("linewatch_messages_total", "linewatch_windows_scored_total", "linewatch_batch_size_bucket",
                 "linewatch_inference_seconds_bucket", "linewatch_end_to_end_latency_seconds_bucket", "linewatch_event_latency_seconds_bucket",
                 "linewatch_deadline_misses_total", "linewatch_windows_dropped_total", "linewatch_outbox_depth", "linewatch_connected 1.0"):
        assert name in body, name


def test_run_command_serves_until_sigterm(broker, runtime_bundle, tmp_path):
    import sys

    config = tmp_path / "gw.toml"
    config.write_text(
        f'[broker]\nport = {broker.port}\nclient_id = "lw-cli"\n[runtime]\noutbox = "ob.sqlite"\n'
        f'[[models]]\nname = "pumps"\nbundle = "{runtime_bundle}"\n[[models.inputs]]\ntopic = "plant/{{line}}/{{machine}}/telemetry"\n'
    )
    check = subprocess.run([sys.executable, "-m", "linewatch", "run", "-c", str(config), "--check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "is valid" in check.stdout, check.stderr
    collector = Collector(broker.port, "linewatch/lw-cli/status")
    process = subprocess.Popen([sys.executable, "-m", "linewatch", "run", "-c", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    logged: list[str] = []
    threading.Thread(target=lambda: logged.extend(process.stdout), daemon=True).start()  # lines as they come
    try:
        assert collector.wait_for(lambda c: any(s["state"] == "online" for s in c.on("linewatch/lw-cli/status")), 20)
        process.send_signal(signal.SIGHUP)  # reload: same bundle, stream state kept
        assert wait_for(lambda: any("reloaded pumps" in line for line in logged), 20), "".join(logged)
    finally:
        process.terminate()
        assert process.wait(15) == 0
    assert collector.wait_for(lambda c: c.on("linewatch/lw-cli/status")[-1]["state"] == "offline", 5)
    # killed without a chance to say goodbye: the broker publishes the last will
    process = subprocess.Popen([sys.executable, "-m", "linewatch", "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert collector.wait_for(lambda c: c.on("linewatch/lw-cli/status")[-1]["state"] == "online", 20)
    finally:
        process.kill()
        process.wait(10)
    assert collector.wait_for(lambda c: c.on("linewatch/lw-cli/status")[-1]["state"] == "offline", 5)
    collector.close()


@pytest.fixture
def tls_broker(mosquitto_path, tmp_path):
    """Mosquitto with mutual TLS (a CA, server and client certificates made by the test) and passwords."""
    pki = make_pki(tmp_path / "pki")
    passwords = pki / "passwd"
    passwords.write_text("")
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", str(passwords), "gateway", "s3cret"], check=True)
    broker = Mosquitto(tmp_path, extra=tls_listener(pki) + f"password_file {passwords}\nrequire_certificate true\n", anonymous=False).start()
    yield broker, pki
    broker.stop()


def test_mutual_tls_and_password_authentication(tls_broker, runtime_bundle, tmp_path):
    broker, pki = tls_broker
    (tmp_path / "pw").write_text("s3cret\n")
    config = runtime_config(broker.port, runtime_bundle, tmp_path)
    config.broker.tls, config.broker.ca_file = True, str(pki / "ca.crt")
    config.broker.cert_file, config.broker.key_file = str(pki / "client.crt"), str(pki / "client.key")
    config.broker.username, config.broker.password_file = "gateway", str(tmp_path / "pw")
    runtime = Runtime(config)
    runtime.start()
    try:
        assert runtime.link.wait_connected(10), runtime.link.last_error
    finally:
        runtime.stop()
    config.broker.password_file = ""
    config.broker.password_env = "LW_WRONG"
    import os

    os.environ["LW_WRONG"] = "nope"
    refused = Runtime(config)
    refused.start()
    try:
        assert not refused.link.wait_connected(2)
        assert refused.link.failures["refused_by_broker"] >= 1
        assert "Not authorized" in refused.link.last_error or "Bad user name or password" in refused.link.last_error
    finally:
        refused.stop()


@pytest.mark.slow
def test_runtime_started_before_its_broker_connects_with_mqtt5_when_it_comes_up(mosquitto_path, runtime_bundle, tmp_path):
    import paho.mqtt.client as mqtt

    port = free_port()
    runtime = Runtime(runtime_config(port, runtime_bundle, tmp_path))
    runtime.start()
    try:
        # retried while the broker is down (reconnect_max_s = 1 here: four tries outlast the 3 s CONNACK timeout), not downgraded
        assert wait_for(lambda: sum(runtime.link.failures.values()) >= 4, 30), runtime.link.failures
        assert not runtime.link.connected.is_set() and runtime.link.protocol == mqtt.MQTTv5
        broker = Mosquitto(tmp_path, port).start()
        try:
            assert runtime.link.wait_connected(10)
            assert runtime.link.protocol == mqtt.MQTTv5
        finally:
            runtime.stop()
            broker.stop()
    finally:
        runtime.stop()
