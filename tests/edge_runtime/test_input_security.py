"""Failing loudly at the door, against mosquitto: TLS failures logged with their cause, a filtering
ACL on the input seen as a silent subscription, SUBACK refusals, oversized packets kept out, and
``--check`` refusing what ``run`` would break on.
"""

import logging
import socket
import subprocess
import sys

import orjson
import pytest

from edge_runtime.runtime import Runtime
from helpers import FEATURES, runtime_config, wait_for
from mqtt_helpers import Mosquitto, client, make_pki, tls_listener


def tls_case(tmp_path, case: str):
    """(broker, broker config changes for the runtime, expected reason, words the log must hold)."""
    if case == "tls_to_plain":
        pki = make_pki(tmp_path / "pki")
        return Mosquitto(tmp_path).start(), {"tls": True, "ca_file": str(pki / "ca.crt")}, "tls", "does not speak TLS"
    pki = make_pki(tmp_path / "pki", "DNS:broker.invalid" if case == "name_mismatch" else "DNS:localhost,IP:127.0.0.1")
    broker = Mosquitto(tmp_path, extra=tls_listener(pki)).start()
    if case == "plain_to_tls":
        return broker, {}, "closed_before_connack", "set tls = true"
    if case == "wrong_ca":
        other = make_pki(tmp_path / "other", ca="other-ca")
        return broker, {"tls": True, "ca_file": str(other / "other-ca.crt")}, "tls_verify", "does not chain to ca_file"
    return broker, {"tls": True, "ca_file": str(pki / "ca.crt")}, "tls_verify", "does not name '127.0.0.1'"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["wrong_ca", "name_mismatch", "plain_to_tls", "tls_to_plain"])
def test_connection_failures_are_logged_once_with_their_cause(mosquitto_path, runtime_bundle, tmp_path, caplog, case):
    broker, settings, reason, words = tls_case(tmp_path, case)
    config = runtime_config(broker.port, runtime_bundle, tmp_path)
    for key, value in settings.items():
        setattr(config.broker, key, value)
    runtime = Runtime(config)
    try:
        with caplog.at_level(logging.ERROR, "linewatch.mqtt"):
            runtime.start()
            assert wait_for(lambda: runtime.link.failures[reason] >= 3, 20), dict(runtime.link.failures)
        assert not runtime.link.connected.is_set()
        logged = [r.getMessage() for r in caplog.records if r.name == "linewatch.mqtt"]
        assert len(logged) == 1 and words in logged[0] and reason in logged[0], logged  # three failures, one line
        assert runtime.snapshot()["connection_failures"][reason] >= 3
    finally:
        runtime.stop()
        broker.stop()


def test_a_filtering_acl_on_the_input_shows_as_a_silent_subscription(mosquitto_path, runtime_bundle, tmp_path, caplog):
    acl = tmp_path / "acl"
    acl.write_text("topic write plant/#\ntopic readwrite linewatch/#\n")  # the runtime may subscribe, but reads nothing
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}\n").start()
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, silent_after_s=1.0))
    publisher = client(broker.port)
    try:
        with caplog.at_level(logging.WARNING, "linewatch.runtime"):
            runtime.start()
            assert runtime.link.wait_subscribed(5)
            for i in range(50):
                publisher.publish("plant/l1/m1/telemetry", orjson.dumps({"ts": 1.7e9 + i, **{f: 1.0 for f in FEATURES}}), qos=1)
            assert wait_for(lambda: runtime.snapshot()["subscriptions_silent"] == 1, 10)
        assert runtime.snapshot()["accepted"] == 0
        warned = [r.getMessage() for r in caplog.records if "no message on plant/+/+/telemetry" in r.getMessage()]
        assert len(warned) == 1 and "ACL" in warned[0]
    finally:
        publisher.loop_stop()
        runtime.stop()
        broker.stop()


def test_a_suback_failure_is_counted_and_logged_once_per_filter_and_answers_the_subscription(runtime_bundle, tmp_path, caplog):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    runtime = Runtime(runtime_config(1883, runtime_bundle, tmp_path))
    link = runtime._link()  # never connected: the SUBACK is handed over as paho would
    link.pending_subscriptions = {7: ["plant/+/+/telemetry"], 8: ["plant/+/+/telemetry"]}
    link.connected.set()
    with caplog.at_level(logging.ERROR, "linewatch.mqtt"):
        link._on_subscribe(link.client, None, 7, [ReasonCode(PacketTypes.SUBACK, identifier=0x87)], None)
        assert not link.subscribed.is_set()  # SUBSCRIBE 8 still unanswered
        link._on_subscribe(link.client, None, 8, [ReasonCode(PacketTypes.SUBACK, identifier=0x87)], None)
    assert link.wait_subscribed(0)  # answered, if refused: waiting longer would not bring samples
    assert set(link.refused_filters) == {"plant/+/+/telemetry"}
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and "Not authorized" in logged[0] and "ACL" in logged[0]
    runtime.release()


@pytest.mark.parametrize(("protocol", "oversized"), [("5", 0), ("3.1.1", 1)])
def test_an_oversized_packet_never_reaches_an_mqtt5_runtime(broker, runtime_bundle, tmp_path, protocol, oversized):
    runtime = Runtime(runtime_config(broker.port, runtime_bundle, tmp_path, max_payload_bytes=4096))
    runtime.config.broker.protocol = protocol
    publisher = client(broker.port)
    try:
        runtime.start()
        assert runtime.link.wait_subscribed(5)
        good = orjson.dumps({"ts": 1.7e9, **{f: 1.0 for f in FEATURES}})
        publisher.publish("plant/l1/m1/telemetry", b"[" + b"1," * 500_000 + b"1]", qos=1)  # 1 MB
        publisher.publish("plant/l1/m2/telemetry", good, qos=1)
        assert wait_for(lambda: runtime.snapshot()["accepted"] == 1, 10)
        assert wait_for(lambda: runtime.snapshot()["bad_input"].get("oversized", 0) == oversized, 5)
    finally:
        publisher.loop_stop()
        runtime.stop()


def check(config_text: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "gw.toml"
    path.write_text(config_text)
    return subprocess.run([sys.executable, "-m", "linewatch", "run", "-c", str(path), "--check"], capture_output=True, text=True, timeout=120)


def test_check_refuses_what_run_would_break_on(runtime_bundle, tmp_path):
    base = f'[runtime]\noutbox = "{tmp_path}/ob.sqlite"\n[[models]]\nname = "pumps"\nbundle = "{runtime_bundle}"\n'
    assert check(base, tmp_path).returncode == 0
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        busy = check(base.replace("[runtime]\n", f"[runtime]\nmetrics_port = {port}\n"), tmp_path)
    assert busy.returncode != 0 and f"runtime.metrics_port: cannot listen on 127.0.0.1:{port}" in busy.stderr
    natural = check(base + 'event_topic = "linewatch/events/{machine}"\n', tmp_path)
    assert natural.returncode == 0, natural.stderr  # {machine} is a field of the input topic: it works now
    bad = check(base + 'event_topic = "linewatch/events/{site}"\n', tmp_path)
    assert bad.returncode != 0 and "models[0].event_topic: ['site'] cannot be filled in" in bad.stderr
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    junk.chmod(0o600)
    tls = check(base.replace("[runtime]\n", f"[broker]\ntls = true\ncert_file = \"{junk}\"\nkey_file = \"{junk}\"\n[runtime]\n"), tmp_path)
    assert tls.returncode != 0 and "TLS setup failed" in tls.stderr


def test_a_gpu_provider_that_falls_back_to_the_cpu_is_an_error_unless_allowed(runtime_bundle, monkeypatch, caplog):
    import onnxruntime as ort

    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.contract.errors import BackendError
    from edge_runtime.scoring.backends import create_backend

    # the build claims CUDA, as one with CUDA libraries that then fail to initialise does: the session runs on the CPU
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    bundle = load_bundle(runtime_bundle)
    with pytest.raises(BackendError, match="CUDAExecutionProvider did not initialise"):
        create_backend(bundle, "onnxruntime-cuda").activate()
    with caplog.at_level(logging.WARNING, "linewatch.backend"), create_backend(bundle, "onnxruntime-cuda", allow_fallback=True) as backend:
        assert backend.session.get_providers() == ["CPUExecutionProvider"]
    assert "running on CPUExecutionProvider (allow_fallback = true)" in caplog.text
