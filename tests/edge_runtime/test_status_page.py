"""The status page in a real browser (Debian's chromium, driven by Playwright), against a runtime fed through mosquitto
with the simulated plant's normal rows and one injected fault.

``LINEWATCH_SCREENSHOTS=docs/images`` also writes the page's screenshot there (the one the docs show).
"""

import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pandas as pd
import pytest

from edge_runtime.contract.errors import ConfigError
from edge_runtime.runtime import Runtime
from helpers import FEATURES, need, runtime_config, wait_for
from mqtt_helpers import Collector, client, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MACHINES = ["m1", "m2", "m3", "m4"]
FAULTY, SENSOR = "l1/m3", "pressure"


@pytest.fixture
def browser():
    """A headless Chromium from the system, driven by Playwright."""
    import importlib.util

    need(CHROMIUM is not None, "chromium is not installed (apt-get install chromium)")
    need(importlib.util.find_spec("playwright") is not None, "playwright is not installed (pip install '.[test]')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


def normal_rows(plant_csv: Path, rows: int) -> pd.DataFrame:
    """The first ``rows`` samples of m1 (all normal), with epoch-second times."""
    frame = pd.read_csv(plant_csv)
    frame = frame[frame.machine == "m1"].head(rows).copy()
    assert frame.label.sum() == 0
    frame["ts"] = (pd.to_datetime(frame["time"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return frame


def publish(publisher, frame: pd.DataFrame, machines: list[str], fault_from: int | None = None) -> None:
    """Every row for every machine; from row ``fault_from`` on, the faulty machine's pressure far off its range."""
    for i, row in enumerate(frame.itertuples(index=False)):
        for machine in machines:
            sample = {"ts": row.ts, **{f: float(getattr(row, f)) for f in FEATURES}}
            if fault_from is not None and i >= fault_from and f"l1/{machine}" == FAULTY:
                sample[SENSOR] = sample[SENSOR] * 4 + 20
            publisher.publish(f"plant/l1/{machine}/telemetry", orjson.dumps(sample), qos=1)


def test_the_page_lists_every_machine_shows_an_alarm_with_its_sensor_and_a_silent_subscription(broker, runtime_bundle, tmp_path,
                                                                                               plant_csv, browser):
    inputs = [{"topic": "plant/{line}/{machine}/telemetry", "format": "json", "qos": 1},
              {"topic": "hall9/{line}/{machine}/telemetry", "format": "json", "qos": 1}]  # nobody publishes here
    config = runtime_config(broker.port, runtime_bundle, tmp_path, inputs=inputs, status_port=free_port(), silent_after_s=1.0)
    runtime = Runtime(config)
    collector = Collector(broker.port, "linewatch/events/#")
    publisher = client(broker.port)
    frame = normal_rows(plant_csv, 160)
    try:
        runtime.start()
        assert runtime.link.wait_subscribed(10)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{config.runtime.status_port}/")
        publish(publisher, frame, MACHINES, fault_from=100)
        assert collector.wait_for(lambda c: any(e["stream"] == FAULTY for e in c.events("alarm_raised")), 30), collector.events()
        raised_at = time.time()
        page.wait_for_selector(f'tr[data-stream="{FAULTY}"][data-state="alarm"]', timeout=5000)  # within a few seconds
        seen_after = time.time() - raised_at
        for machine in MACHINES:
            page.wait_for_selector(f'tr[data-stream="l1/{machine}"]', timeout=5000)
        assert SENSOR in page.inner_text(f'tr[data-stream="{FAULTY}"] td.top')
        page.wait_for_selector('li[data-topic="hall9/+/+/telemetry"][data-silent="true"]', timeout=10000)
        assert page.locator("tr[data-stream]").first.get_attribute("data-stream") == FAULTY  # alarming first
        page.fill("#filter", "m2")
        assert page.locator("tr[data-stream]").count() == 1
        page.fill("#filter", "")
        shot = tmp_path / "status-page.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("LINEWATCH_SCREENSHOTS"):
            shutil.copy(shot, Path(os.environ["LINEWATCH_SCREENSHOTS"]) / "status-page.png")
        assert seen_after < 5.0
    finally:
        publisher.loop_stop()
        collector.close()
        runtime.stop()


def test_a_token_guards_the_page_and_its_json(broker, runtime_bundle, tmp_path):
    token = tmp_path / "status-token"
    token.write_text("s3cret\n")
    config = runtime_config(broker.port, runtime_bundle, tmp_path, status_port=free_port(), status_token_file=str(token))
    runtime = Runtime(config)
    base = f"http://127.0.0.1:{config.runtime.status_port}"
    try:
        runtime.start()
        for path in ("/", "/status.json", "/status.json?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == 401
        status = orjson.loads(urllib.request.urlopen(base + "/status.json?token=s3cret", timeout=5).read())
        assert status["schema"] == "linewatch.status/1" and status["client_id"] == "lw-test"
        request = urllib.request.Request(base + "/", headers={"Authorization": "Bearer s3cret"})
        page = urllib.request.urlopen(request, timeout=5).read().decode()
        assert "<script>" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched from outside
        assert runtime.status_server.refused == 3
    finally:
        runtime.stop()


def test_the_snapshot_is_built_at_most_twice_a_second_however_often_it_is_read(broker, runtime_bundle, tmp_path):
    config = runtime_config(broker.port, runtime_bundle, tmp_path, status_port=free_port())
    runtime = Runtime(config)
    try:
        runtime.start()
        snapshot = runtime.status_server.snapshot
        first = snapshot.json()
        builds = snapshot.builds
        assert all(snapshot.json() is first for _ in range(100))  # served from the one build
        assert snapshot.builds == builds
        assert wait_for(lambda: snapshot.json() is not first, 5)  # and rebuilt once it is older than half a second
    finally:
        runtime.stop()


def test_a_status_port_in_use_or_an_unreadable_token_is_a_clear_error(broker, runtime_bundle, tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = runtime_config(broker.port, runtime_bundle, tmp_path, status_port=taken.getsockname()[1])
        runtime = Runtime(config)
        with pytest.raises(ConfigError, match="runtime.status_port: cannot listen on 127.0.0.1"):
            runtime.preflight()
        runtime.release()
    config = runtime_config(broker.port, runtime_bundle, tmp_path, status_port=free_port(), status_token_file=str(tmp_path / "none"))
    runtime = Runtime(config)
    with pytest.raises(ConfigError, match="runtime.status_token_file: cannot read"):
        runtime.preflight()
    runtime.release()


def test_a_stream_view_keeps_the_last_scores_in_order_and_its_alarms_story():
    from edge_runtime.status.view import HISTORY, StreamView

    view = StreamView()
    features = ["current", "pressure", "flow"]
    for i in range(HISTORY + 5):
        view.record(1000.0 + i, float(i), 50.0, [], features, [0.1, 0.2, 0.3])
    assert view.recent() == [float(i) for i in range(5, HISTORY + 5)]
    view.record(2000.0, float("inf"), 50.0, ["alarm_raised"], features, [0.1, 9.0, 0.5])
    assert view.since == 2000.0 and [t["name"] for t in view.top] == ["pressure", "flow", "current"]
    assert view.recent()[-1] == pytest.approx(3.4028e38, rel=1e-3)  # infinite, shown as the largest float32
    view.record(2005.0, 1.0, 50.0, ["alarm_cleared"], features, [0.1, 0.2, 0.3])
    assert view.since == 2005.0 and view.top[0]["name"] == "pressure"  # the last alarm's sensors stay on show


def test_each_worker_of_a_supervisor_knows_its_place_and_its_siblings_pages(monkeypatch):
    from edge_runtime.status.snapshot import workers
    from edge_runtime.workers import WORKER_ENV, WORKERS_ENV, Supervisor

    supervisor = Supervisor(lambda k: ["true", str(k)], 3, 5.0)
    try:
        assert [(w.env[WORKER_ENV], w.env[WORKERS_ENV]) for w in supervisor.workers] == [("0", "3"), ("1", "3"), ("2", "3")]
    finally:
        for worker in supervisor.workers:
            worker.sock.close()
        shutil.rmtree(supervisor.folder)
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert workers(8081) is None  # one process: no workers to show
    monkeypatch.setenv(WORKER_ENV, "1")
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert workers(8081) == {"index": 1, "count": 3, "status_ports": [8080, 8081, 8082]}


def test_each_machine_shows_the_messages_refused_for_it(broker, runtime_bundle, tmp_path):
    from helpers import feed

    config = runtime_config(broker.port, runtime_bundle, tmp_path, status_port=free_port())
    runtime = Runtime(config)
    sample = {f: 1.0 for f in FEATURES}
    try:
        runtime.start()
        feed(runtime, [("plant/l1/m1/telemetry", orjson.dumps({"ts": 1.7e9 + i, **sample})) for i in (0, 1)]
             + [("plant/l1/m1/telemetry", orjson.dumps({"ts": 1.7e9, **sample})),  # late: not after the last sample
                ("plant/l1/m2/telemetry", orjson.dumps({"ts": 1.7e9, **sample})),
                ("plant/l1/m2/telemetry", b"{not json"), ("plant/l1/m2/telemetry", b"[1, 2]")])
        streams = {row["stream"]: row for row in runtime.status_server.snapshot.build()["models"][0]["streams"]}
        assert (streams["l1/m1"]["refused"], streams["l1/m2"]["refused"]) == (1, 2)
    finally:
        runtime.stop()


def test_states_taken_over_from_another_worker_show_in_the_model_s_heading(broker, runtime_bundle, tmp_path, browser):
    config = runtime_config(broker.port, runtime_bundle, tmp_path, status_port=free_port(), handover_topic="linewatch/handover")
    runtime = Runtime(config)
    try:
        runtime.start()
        assert runtime.link.wait_subscribed(10)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{config.runtime.status_port}/")
        page.wait_for_selector("section.model h2", timeout=5000)
        assert "taken over" not in page.inner_text("section.model h2")  # nothing taken: nothing said
        handover = runtime.models[0].handover
        handover.alarms_taken, handover.thresholds_taken, handover.refused = 2, 1, 1  # as Handover.take counts them
        page.wait_for_selector("section.model h2:has-text('taken over: 2 alarms, 1 thresholds, 1 states refused')", timeout=5000)
    finally:
        runtime.stop()
