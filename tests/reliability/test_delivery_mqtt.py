"""Delivery against a real mosquitto: the link dies with events in flight, acknowledgements are
lost, the runtime is SIGKILLed mid-burst, the broker's ACL refuses events, shutdown meets a
broker that never acknowledges. Every assertion counts events raised against events delivered.
"""

import collections
import signal
import sqlite3
import subprocess
import sys
import time

import orjson
import pytest

from edge_runtime.delivery.event_schema import validate_event
from edge_runtime.delivery.sink import MAX_INFLIGHT
from edge_runtime.runtime import Runtime
from helpers import FLAP_THRESHOLD, all_stored, feed, flapping_config, wait_for
from linewatch.localbroker import free_port
from mqtt_helpers import Collector, FaultProxy, Mosquitto


def check_order_and_ids(events: list[dict], stored: int) -> int:
    """Every stored event arrived, per stream in window order; returns the duplicates (same id, same payload)."""
    by_id = {}
    for event in events:
        validate_event(event)
        assert by_id.setdefault(event["id"], event) == event, "a duplicate must be the same event"
    assert len(by_id) == stored, f"{len(by_id)} distinct events delivered of {stored} stored"
    first_seen = collections.defaultdict(list)
    seen = set()
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            first_seen[event["stream"]].append(event["window_end"])
    for stream, ends in first_seen.items():
        assert ends == sorted(ends), f"{stream}: events out of order"
    return len(events) - len(by_id)


@pytest.mark.parametrize("lost", ["publishes", "acknowledgements"])
def test_events_in_flight_when_the_link_dies_arrive_after_it_returns(broker, runtime_bundle, tmp_path, flapping, lost):
    payloads, windows = flapping
    proxy = FaultProxy(broker.port)
    collector = Collector(broker.port, "linewatch/events/#")
    runtime = Runtime(flapping_config(proxy.port, runtime_bundle, tmp_path))
    runtime.start()
    try:
        assert runtime.link.wait_connected(5)
        proxy.freeze(up=lost == "publishes", down=lost == "acknowledgements")
        feed(runtime, payloads)
        assert wait_for(lambda: all_stored(runtime, windows))
        stored = runtime.snapshot()["events_stored"]
        assert stored > 2 * MAX_INFLIGHT  # enough to fill the in-flight window and queue behind it
        assert wait_for(lambda: runtime.snapshot()["events_inflight"] == MAX_INFLIGHT)
        assert runtime.snapshot()["outbox_depth"] == stored  # nothing acknowledged, nothing deleted
        proxy.cut()  # the connection dies with MAX_INFLIGHT events unacknowledged
        proxy.thaw()
        assert collector.wait_for(lambda c: len({e["id"] for e in c.events()}) >= stored, 30)
        assert wait_for(lambda: runtime.snapshot()["outbox_depth"] == 0, 10)
        duplicates = check_order_and_ids(collector.events(), stored)
        if lost == "publishes":
            assert duplicates == 0  # the broker never saw them: each arrives once
        else:
            assert duplicates <= MAX_INFLIGHT  # only what the broker got but could not acknowledge, with the same id
        assert runtime.snapshot()["events_published"] == stored  # linewatch handed each event to the link once
    finally:
        runtime.stop()
        collector.close()
        proxy.close()


def outbox_ids(path) -> list[str]:
    """Event ids in an outbox file, in order (read while or after its writer runs)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [orjson.loads(p)["id"] for (p,) in db.execute("SELECT payload FROM events ORDER BY seq")]


def run_config(path, port: int, bundle, outbox) -> None:
    path.write_text(
        f'[broker]\nport = {port}\nclient_id = "lw-kill"\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n'
        f'[runtime]\noutbox = "{outbox}"\nlatency_budget_ms = 50\nmax_past_s = 1e10\n'
        f'[[models]]\nname = "pumps"\nbundle = "{bundle}"\nthreshold = {FLAP_THRESHOLD}\n[models.alarm]\non_k = 1\non_n = 1\noff_m = 1\ndeadband = 0.0\n'
        f'[[models.inputs]]\ntopic = "plant/{{line}}/{{machine}}/telemetry"\nqos = 0\n'  # QoS 0: no PUBACK from a frozen link
    )


def test_sigkill_mid_burst_loses_no_stored_event(broker, runtime_bundle, tmp_path, flapping):
    payloads, _ = flapping
    proxy = FaultProxy(broker.port)
    outbox = tmp_path / "outbox.sqlite"
    config = tmp_path / "gw.toml"
    run_config(config, proxy.port, runtime_bundle, outbox)
    collector = Collector(broker.port, "linewatch/events/#", "linewatch/lw-kill/status")
    process = subprocess.Popen([sys.executable, "-m", "linewatch", "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    publisher = Collector(broker.port)
    try:
        assert collector.wait_for(lambda c: any(s["state"] == "online" for s in c.on("linewatch/lw-kill/status")), 30)
        proxy.freeze(up=True, down=False)  # events go nowhere: the outbox is their only copy
        for topic, payload in payloads:
            publisher.client.publish(topic, payload, qos=0)
        assert wait_for(lambda: outbox.exists() and len(outbox_ids(outbox)) >= 150, 60)
        process.send_signal(signal.SIGKILL)  # mid-burst: samples still arriving, windows being scored
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        publisher.close()
    stored = outbox_ids(outbox)
    assert len(stored) >= 150 and collector.events() == []
    proxy.close()
    run_config(config, broker.port, runtime_bundle, outbox)  # restarted, on a healthy link
    process = subprocess.Popen([sys.executable, "-m", "linewatch", "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert collector.wait_for(lambda c: len(c.events()) >= len(stored), 30)
        assert wait_for(lambda: outbox_ids(outbox) == [], 10)
    finally:
        process.terminate()
        process.wait(15)
        collector.close()
    delivered = [e["id"] for e in collector.events()]
    assert delivered == stored  # every stored event, once, in order


def test_events_the_broker_refuses_stay_in_the_outbox_counted_and_logged(mosquitto_path, runtime_bundle, tmp_path, flapping, caplog):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite plant/#\ntopic readwrite linewatch/+/status\ntopic readwrite linewatch/+/errors\n"
                   "topic read linewatch/events/#\n")  # anonymous clients may not publish events
    broker = Mosquitto(tmp_path, extra=f"acl_file {acl}\n").start()
    payloads, windows = flapping
    config = flapping_config(broker.port, runtime_bundle, tmp_path)
    config.broker.protocol = "5"  # only MQTT 5 PUBACKs carry a reason code
    runtime = Runtime(config)
    try:
        with caplog.at_level("ERROR", "linewatch.delivery"):
            runtime.start()
            assert runtime.link.wait_connected(5)
            feed(runtime, payloads)
            assert wait_for(lambda: all_stored(runtime, windows))
            stored = runtime.snapshot()["events_stored"]
            assert stored > 0
            assert wait_for(lambda: runtime.snapshot()["events_refused"] == stored)
        snap = runtime.snapshot()
        assert snap["outbox_depth"] == stored and snap["events_inflight"] == 0
        refusals = [r.getMessage() for r in caplog.records if "refused an event" in r.getMessage()]
        assert len(refusals) == 8  # once per topic: one per machine's event topic
        assert all("Not authorized" in text for text in refusals)
    finally:
        runtime.stop()
        broker.stop()


@pytest.mark.slow
@pytest.mark.parametrize("everything", [False, True], ids=["events", "every-feature"])
def test_shutdown_keeps_its_timeout_when_the_broker_never_acknowledges(broker, runtime_bundle, tmp_path, flapping, everything):
    payloads, windows = flapping
    proxy = FaultProxy(broker.port)
    extra = {"publish_scores": True, "reorder_s": 1.0, "metrics_port": free_port()}
    config = flapping_config(proxy.port, runtime_bundle, tmp_path, shutdown_timeout_s=2.0, **(extra if everything else {}))
    if everything:  # Sparkplug B events as an edge node of its own, drift, metrics, score telemetry, reordering
        config.sparkplug.enabled = True
    runtime = Runtime(config)
    runtime.start()
    try:
        assert runtime.link.wait_connected(5)
        if everything:
            assert runtime.sparkplug.node.connected.wait(5)
        proxy.freeze(up=True, down=True)  # a broker that takes everything and answers nothing
        feed(runtime, payloads)
        assert wait_for(lambda: runtime.snapshot()["events_stored"] > MAX_INFLIGHT)
        started = time.monotonic()
        runtime.stop()
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert took <= 2.0 + 0.3, f"shutdown took {took:.2f} s with shutdown_timeout_s = 2"
    assert runtime.snapshot()["outbox_depth"] == runtime.snapshot()["events_stored"]  # kept for the next start


def test_the_shipped_unit_gives_shutdown_more_time_than_it_takes():
    from pathlib import Path

    from edge_runtime.config import RuntimeConfig

    unit = (Path(__file__).parents[2] / "edge_runtime" / "linewatch.service").read_text()
    stop_timeout = float(next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("TimeoutStopSec=")))
    assert stop_timeout >= RuntimeConfig().shutdown_timeout_s + 5
