"""Soak: the runtime (its own process) scores live samples for many minutes while the broker is
restarted every few minutes; counts durable events (alarm transitions and drift) stored against delivered, and
samples the runtime's memory.

A persistent subscriber (clean session off, QoS 1, broker persistence on) receives the events, so
a broker restart loses nothing on the subscriber's side; every alarm event linewatch stored must
arrive. The samples flap between normal and scaled-up blocks of three windows, so every
machine raises and clears its alarm every few seconds. Usage::

    python -m benchmarks.soak BUNDLE [--minutes 10] [--restart-every 120]

Writes ``results/soak.{json,md}``. Not a test: it takes as long as it is told to.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.common import write_results
from edge_runtime.contract.bundle import load_bundle
from linewatch.localbroker import free_port, start_mosquitto
from train.simulate import simulate_plant

MACHINES = 8
RATE_HZ = 50.0  # samples per second per machine
BLOCKS_PER_WINDOW = 3  # normal / scaled blocks of 3 windows: alarms flap every block


class Broker:
    """mosquitto with persistence, restartable on the same port."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.extra = f"persistence true\npersistence_location {folder}/\n" + ("user root\n" if os.geteuid() == 0 else "")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start and wait for the port."""
        _, self.process = start_mosquitto(self.folder, self.port, self.extra)

    def stop(self) -> None:
        """Stop gracefully (the persistence file is written)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(15)


class Subscriber:
    """A persistent session that keeps the id of every durable event (duplicates counted)."""

    def __init__(self, port: int) -> None:
        self.ids: set[str] = set()
        self.received = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-subscriber", clean_session=False, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda client, *_: client.subscribe("linewatch/events/#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        event = orjson.loads(message.payload)
        if event.get("kind") != "score":  # every durable event: alarm transitions and drift, as the outbox stores them
            with self.lock:
                self.received += 1
                self.ids.add(event["id"])


def publish_samples(port: int, features: list[str], period: float, block: int, stop: threading.Event) -> None:
    """MACHINES machines at RATE_HZ, flapping every ``block`` samples; reconnects by itself.

    Sample times step by the bundle's ``period`` from five days ago (a replay faster than real time,
    within the runtime's default ``max_past_s``), so the stream runs at the bundle's own rate.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.reconnect_delay_set(0.2, 1.0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    frame, _ = simulate_plant(machines=1, rows=2000, normal_rows=2000, faults_per_machine=0, seed=3)
    rows = frame[features].to_numpy()
    k, started, first = 0, time.monotonic(), time.time() - 5 * 86400
    while not stop.is_set():
        scale = 6.0 if (k // block) % 2 else 1.0
        row = rows[k % len(rows)]
        stamp = first + k * period
        for m in range(MACHINES):
            client.publish(f"plant/l1/m{m}/telemetry", orjson.dumps({"ts": stamp, **{f: float(v) * scale for f, v in zip(features, row)}}))
        k += 1
        time.sleep(max(0.0, started + k / RATE_HZ - time.monotonic()))
    client.disconnect()
    client.loop_stop()


def metric(port: int, name: str) -> float:
    """One sample value from the runtime's /metrics."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def rss_mb(pid: int) -> float:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def soak(bundle: str, minutes: float, restart_every: float, backend: str = "onnxruntime", precision: str = "fp32") -> dict:
    """Run the soak with the runtime on ``backend``; returns counts, latencies and the memory series."""
    folder = Path(tempfile.mkdtemp(prefix="linewatch-soak-"))
    port, metrics_port = free_port(), free_port()
    broker = Broker(folder, port)
    broker.start()
    subscriber = Subscriber(port)
    config = folder / "gateway.toml"
    config.write_text(
        f'[broker]\nport = {port}\nclient_id = "lw-soak"\nreconnect_min_s = 0.5\nreconnect_max_s = 2.0\n'
        f'[runtime]\noutbox = "{folder}/outbox.sqlite"\nmetrics_port = {metrics_port}\nlatency_budget_ms = 50\n'
        f'[[models]]\nname = "pumps"\nbundle = "{Path(bundle).resolve()}"\nbackend = "{backend}"\nprecision = "{precision}"\n'
        f'[models.alarm]\non_k = 1\non_n = 1\noff_m = 1\ndeadband = 0.0\n'
        f'[[models.inputs]]\ntopic = "plant/{{line}}/{{machine}}/telemetry"\n'
    )
    with (folder / "runtime.log").open("w") as log:
        runtime = subprocess.Popen([sys.executable, "-m", "linewatch", "run", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=log)
        return _drive(runtime, broker, subscriber, bundle, port, metrics_port, minutes, restart_every)


def _drive(runtime: subprocess.Popen, broker: Broker, subscriber: Subscriber, bundle: str, port: int, metrics_port: int,
           minutes: float, restart_every: float) -> dict:
    time.sleep(3)
    stop = threading.Event()
    spec = load_bundle(bundle).manifest["input"]
    block = BLOCKS_PER_WINDOW * spec["window"]
    publisher = threading.Thread(target=publish_samples, args=(port, [f["name"] for f in spec["features"]], spec["sample_period"], block, stop),
                                 daemon=True)
    publisher.start()
    started = time.monotonic()
    memory, restarts, next_restart = [], 0, started + restart_every
    try:
        while time.monotonic() - started < minutes * 60:
            time.sleep(10)
            memory.append({"t_s": round(time.monotonic() - started), "rss_mb": round(rss_mb(runtime.pid), 1)})
            print(f"{memory[-1]['t_s']:>5} s  runtime RSS {memory[-1]['rss_mb']:.1f} MB  durable events received {subscriber.received}", flush=True)
            if time.monotonic() >= next_restart:
                broker.stop()
                time.sleep(2)  # the runtime keeps scoring; its events wait in the outbox
                broker.start()
                restarts += 1
                next_restart += restart_every
        stop.set()
        publisher.join(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and metric(metrics_port, "linewatch_outbox_depth") > 0:
            time.sleep(0.5)
        time.sleep(2)
        stored = metric(metrics_port, "linewatch_events_stored_total")
        depth = metric(metrics_port, "linewatch_outbox_depth")
        means = {f"mean_{name}_ms": 1e3 * metric(metrics_port, f"linewatch_{name}_seconds_sum")
                 / max(metric(metrics_port, f"linewatch_{name}_seconds_count"), 1) for name in ("inference", "event_latency")}
        batches = metric(metrics_port, "linewatch_inference_seconds_count")
    finally:
        runtime.send_signal(signal.SIGTERM)
        runtime.wait(30)
        subscriber.client.disconnect()
        subscriber.client.loop_stop()
        broker.stop()
    first = [m["rss_mb"] for m in memory[:6]]
    last = [m["rss_mb"] for m in memory[-6:]]
    return {"minutes": minutes, "broker_restarts": restarts, "alarm_events_stored": int(stored), "alarm_events_delivered": len(subscriber.ids),
            "alarm_events_lost": int(stored) - len(subscriber.ids), "duplicates": subscriber.received - len(subscriber.ids),
            "outbox_depth_at_end": int(depth), "rss_first_minute_mb": round(sum(first) / len(first), 1),
            "rss_last_minute_mb": round(sum(last) / len(last), 1), "batches_scored": int(batches),
            **{k: round(v, 3) for k, v in means.items()}, "memory": memory}


def main() -> None:
    """Run and write results/soak.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--restart-every", type=float, default=120.0, help="seconds between broker restarts")
    parser.add_argument("--backend", default="onnxruntime", help="the runtime's backend, e.g. onnxruntime-cuda or tensorrt")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--results", default=None, help="results sub-folder (e.g. a GPU's name) instead of results/")
    args = parser.parse_args()
    result = {"backend": args.backend, "precision": args.precision, **soak(args.bundle, args.minutes, args.restart_every, args.backend, args.precision)}
    rows = [[result["minutes"], result["broker_restarts"], result["alarm_events_stored"], result["alarm_events_delivered"],
             result["alarm_events_lost"], result["duplicates"], result["rss_first_minute_mb"], result["rss_last_minute_mb"],
             f"{args.backend} {args.precision}", result["mean_inference_ms"], result["mean_event_latency_ms"]]]
    write_results("soak", result, ["minutes", "broker restarts", "durable events stored", "delivered", "lost", "duplicates",
                                   "RSS first minute MB", "RSS last minute MB", "backend", "mean inference ms/batch", "mean event latency ms"], rows,
                         f"{MACHINES} machines at {RATE_HZ:g} Hz, alarms flapping every {BLOCKS_PER_WINDOW} windows; broker (persistence on) "
                         "restarted with SIGTERM; subscriber: persistent session, QoS 1. Lost = stored - distinct ids delivered.", folder=args.results)


if __name__ == "__main__":
    main()
