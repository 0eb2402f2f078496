"""Soak: the runtime (its own process, as ``linewatch run``) scores live samples for many minutes through three
kinds of fault, and every durable event it stored is accounted for.

- **Broker restarts** (SIGTERM, persistence on) every few minutes: the runtime keeps scoring, its events wait in
  the outbox and go out on reconnect.
- **A full disk for a minute, then a worker kill**: the outbox lives on a small tmpfs (mounted by the soak; root
  only) that is filled to the last byte; events that cannot be stored wait in memory (or are counted as
  ``store_failed``). The broker goes down over the minute's last seconds, the disk is freed (the waiting events are
  stored but cannot be sent), and the runtime is killed with SIGKILL and started again on the same outbox: the events
  it had stored and not delivered must go out from the new process.

A persistent subscriber (clean session off, QoS 1) receives the events. The samples flap between normal and
scaled-up blocks of three windows, so every machine raises and clears its alarm every few seconds. Accounting:
*stored* is the outbox's own sequence (``sqlite_sequence``, across both runtime processes), *lost* is stored minus
the distinct event ids delivered, *duplicates* are deliveries of an id already received (at-least-once after the
kill). Usage::

    python -m benchmarks.soak BUNDLE [--minutes 30] [--restart-every 300]

Writes ``results/soak.{json,md}``. Not a test: it takes as long as it is told to.
"""

from __future__ import annotations

import argparse
import errno
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
from edge_runtime.delivery.outbox import Outbox
from linewatch.localbroker import free_port, start_mosquitto
from train.simulate import simulate_plant

MACHINES = 8
RATE_HZ = 50.0  # samples per second per machine
BLOCKS_PER_WINDOW = 3  # normal / scaled blocks of 3 windows: alarms flap every block
DISK_MB = 32  # the tmpfs the outbox lives on
FULL_DISK_S = 60.0


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


class Disk:
    """The outbox's own small file system (a tmpfs), which can be filled to the last byte and freed again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(folder)], capture_output=True, text=True)
        self.mounted = mounted.returncode == 0
        self.why_not = mounted.stderr.strip()
        self.filler = folder / "filler"

    def fill(self) -> int:
        """Write the filler until the file system has no byte left; returns the bytes written."""
        written = 0
        with self.filler.open("wb", buffering=0) as out:
            for chunk in (1 << 20, 4096, 1):
                try:
                    while True:
                        written += out.write(b"\0" * chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
        return written

    def free(self) -> None:
        """Remove the filler."""
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        """Unmount (the outbox goes with it)."""
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], check=False)


def _disk_full_then_kill(runtime: Runtime, broker: Broker, disk: Disk, outbox: Path, faults: list, now: int) -> tuple[set[str], float]:
    """The compound fault: the outbox's disk full for a minute (events wait in memory), the broker down over its last
    seconds, the disk freed (the waiting events are stored, none can be sent), then the runtime SIGKILLed with them
    undelivered and started again once the broker is back. Returns the ids undelivered at the kill and the peak of
    events kept in memory.
    """
    peak = 0.0
    if disk.mounted:
        written = disk.fill()
        faults.append({"t_s": now, "fault": f"outbox disk full for {FULL_DISK_S:.0f} s (filler {written >> 20} MiB)"})
        filled = time.monotonic()
        while time.monotonic() - filled < FULL_DISK_S - 5:
            time.sleep(1.0)
            runtime.poll()
            peak = max(peak, runtime.last.get("linewatch_events_unstored", 0.0))
    broker.stop()
    time.sleep(5)
    disk.free()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not runtime.poll() or runtime.last.get("linewatch_events_unstored", 1) > 0):
        time.sleep(0.2)
    runtime.kill()
    _, pending = outbox_rows(outbox)
    broker.start()
    runtime.start()
    faults.append({"t_s": now + round(FULL_DISK_S), "fault": f"broker down 5 s; disk freed; runtime SIGKILLed with {len(pending)} stored "
                   "events undelivered, restarted with the broker"})
    return pending, peak


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


def scrape(port: int) -> dict[str, float]:
    """Every sample of the runtime's /metrics, by its full name with labels."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line and not line.startswith("#")}


def rss_mb(pid: int) -> float:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def outbox_rows(path: Path) -> tuple[int, set[str]]:
    """``(stored ever, ids still pending)`` read from the outbox file (the runtime holding it is stopped or dead)."""
    outbox = Outbox(path)
    try:
        return outbox.stored_ever(), {orjson.loads(payload)["id"] for _, _, payload in outbox.pending(limit=outbox.depth())}
    finally:
        outbox.close()


class Runtime:
    """``linewatch run`` as a process, restartable on the same configuration and outbox."""

    def __init__(self, folder: Path, config: Path, metrics_port: int) -> None:
        self.folder, self.config, self.metrics_port = folder, config, metrics_port
        self.process: subprocess.Popen | None = None
        self.lives = 0
        self.last: dict[str, float] = {}  # the latest scrape of the current process
        self.totals: dict[str, float] = {}  # counters summed over the processes that ended

    def start(self) -> None:
        """Start a process and wait for its metrics endpoint."""
        self.lives += 1
        log = (self.folder / f"runtime-{self.lives}.log").open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "linewatch", "run", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=log)
        self.last = {}
        deadline = time.monotonic() + 60
        while not self.poll() and time.monotonic() < deadline:
            time.sleep(0.2)

    def poll(self) -> bool:
        """Scrape the metrics; False when the endpoint does not answer."""
        try:
            self.last = scrape(self.metrics_port)
            return True
        except OSError:
            return False

    def ended(self) -> None:
        """Add the process's last counters to the totals."""
        for name, value in self.last.items():
            if name.endswith(("_total", "_count")):
                self.totals[name] = self.totals.get(name, 0.0) + value
        self.last = {}

    def kill(self) -> None:
        """SIGKILL: no drain, no shutdown; counters since the last scrape are lost with the process."""
        self.process.kill()
        self.process.wait(30)
        self.ended()

    def stop(self) -> None:
        """SIGTERM: the graceful shutdown."""
        self.poll()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        self.ended()

    def total(self, name: str) -> float:
        """A counter summed over every process so far, the current one included."""
        return self.totals.get(name, 0.0) + self.last.get(name, 0.0)


def soak(bundle: str, minutes: float, restart_every: float, backend: str = "onnxruntime", precision: str = "fp32",
         fault_at: float = 60.0) -> dict:
    """Run the soak with the runtime on ``backend``; returns counts, faults, latencies and the memory series."""
    folder = Path(tempfile.mkdtemp(prefix="linewatch-soak-"))
    port, metrics_port = free_port(), free_port()
    disk = Disk(folder / "disk")
    outbox = (disk.folder if disk.mounted else folder) / "outbox.sqlite"
    broker = Broker(folder, port)
    broker.start()
    subscriber = Subscriber(port)
    config = folder / "gateway.toml"
    config.write_text(
        f'[broker]\nport = {port}\nclient_id = "lw-soak"\nreconnect_min_s = 0.5\nreconnect_max_s = 2.0\n'
        f'[runtime]\noutbox = "{outbox}"\nmetrics_port = {metrics_port}\nlatency_budget_ms = 50\n'
        f'[[models]]\nname = "pumps"\nbundle = "{Path(bundle).resolve()}"\nbackend = "{backend}"\nprecision = "{precision}"\n'
        f'[models.alarm]\non_k = 1\non_n = 1\noff_m = 1\ndeadband = 0.0\n'
        f'[[models.inputs]]\ntopic = "plant/{{line}}/{{machine}}/telemetry"\n'
    )
    runtime = Runtime(folder, config, metrics_port)
    runtime.start()
    try:
        return _drive(runtime, broker, subscriber, disk, outbox, bundle, port, minutes, restart_every, fault_at)
    finally:
        disk.unmount()


def _drive(runtime: Runtime, broker: Broker, subscriber: Subscriber, disk: Disk, outbox: Path, bundle: str, port: int, minutes: float,
           restart_every: float, fault_at: float) -> dict:
    stop = threading.Event()
    spec = load_bundle(bundle).manifest["input"]
    block = BLOCKS_PER_WINDOW * spec["window"]
    publisher = threading.Thread(target=publish_samples, args=(port, [f["name"] for f in spec["features"]], spec["sample_period"], block, stop),
                                 daemon=True)
    publisher.start()
    length = minutes * 60
    started = time.monotonic()
    memory, faults, next_restart, next_sample = [], [], restart_every, 10.0
    pending_at_kill: set[str] = set()
    unstored_peak = 0.0
    try:
        while (now := time.monotonic() - started) < length:
            time.sleep(1.0)
            runtime.poll()
            unstored_peak = max(unstored_peak, runtime.last.get("linewatch_events_unstored", 0.0))
            if now >= next_sample:
                next_sample += 10.0
                memory.append({"t_s": round(now), "rss_mb": round(rss_mb(runtime.process.pid), 1), "life": runtime.lives})
                print(f"{memory[-1]['t_s']:>5} s  runtime RSS {memory[-1]['rss_mb']:.1f} MB  durable events received {subscriber.received}",
                      flush=True)
            if now >= next_restart:
                next_restart += restart_every
                broker.stop()
                time.sleep(2)  # the runtime keeps scoring; its events wait in the outbox
                broker.start()
                faults.append({"t_s": round(now), "fault": "broker restart (SIGTERM, 2 s down)"})
            if fault_at and now >= fault_at:
                fault_at = 0
                pending_at_kill, peak = _disk_full_then_kill(runtime, broker, disk, outbox, faults, round(now))
                unstored_peak = max(unstored_peak, peak)
                next_restart = max(next_restart, time.monotonic() - started + restart_every / 2)  # no restart right after it
        stop.set()
        publisher.join(10)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not runtime.poll() or runtime.last.get("linewatch_outbox_depth", 1) > 0
                                               or runtime.last.get("linewatch_events_unstored", 1) > 0):
            time.sleep(0.5)
        time.sleep(2)
        runtime.poll()
        means = {f"mean_{name}_ms": 1e3 * runtime.last[f"linewatch_{name}_seconds_sum"] / max(runtime.last[f"linewatch_{name}_seconds_count"], 1)
                 for name in ("inference", "event_latency")}
    finally:
        stop.set()
        disk.free()
        runtime.stop()
        subscriber.client.disconnect()
        subscriber.client.loop_stop()
        broker.stop()
    stored, left = outbox_rows(outbox)
    store_failures = sum(path.read_text().count("cannot store events") for path in runtime.folder.glob("runtime-*.log"))
    first = [m["rss_mb"] for m in memory[:6]]
    last = [m["rss_mb"] for m in memory[-6:]]
    return {"minutes": minutes, "faults": faults, "broker_restarts": sum("broker" in f["fault"] for f in faults),
            "full_disk": disk.mounted, "full_disk_not_run_because": "" if disk.mounted else disk.why_not,
            "durable_events_stored": stored, "durable_events_delivered": len(subscriber.ids),
            "durable_events_lost": stored - len(subscriber.ids),
            "undelivered_at_kill": len(pending_at_kill), "undelivered_at_kill_delivered_later": len(pending_at_kill & subscriber.ids),
            "duplicates": subscriber.received - len(subscriber.ids), "outbox_rows_at_end": len(left),
            "store_failed": int(runtime.total('linewatch_events_dropped_total{reason="store_failed"}')),
            "dropped_outbox_full": int(runtime.total('linewatch_events_dropped_total{reason="outbox_full"}')),
            "store_errors_logged": store_failures, "unstored_peak": int(unstored_peak),
            "rss_first_minute_mb": round(sum(first) / max(len(first), 1), 1), "rss_last_minute_mb": round(sum(last) / max(len(last), 1), 1),
            "batches_scored": int(runtime.total("linewatch_inference_seconds_count")),
            **{k: round(v, 3) for k, v in means.items()}, "memory": memory}


def main() -> None:
    """Run and write results/soak.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--restart-every", type=float, default=300.0, help="seconds between broker restarts")
    parser.add_argument("--backend", default="onnxruntime", help="the runtime's backend, e.g. onnxruntime-cuda or tensorrt")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--fault-at", type=float, default=60.0,
                        help="seconds into the run of the full disk and the kill: early, while the outbox's write-ahead log is small "
                             "(a log grown by hours of writes holds enough reusable space for SQLite to keep storing on a full disk)")
    parser.add_argument("--results", default=None, help="results sub-folder (e.g. a GPU's name) instead of results/")
    args = parser.parse_args()
    result = {"backend": args.backend, "precision": args.precision, **soak(args.bundle, args.minutes, args.restart_every, args.backend, args.precision,
                                                                                 args.fault_at)}
    rows = [[result["minutes"], result["broker_restarts"], "yes" if result["full_disk"] else "no (" + result["full_disk_not_run_because"] + ")",
             result["durable_events_stored"], result["durable_events_delivered"], result["durable_events_lost"],
             f'{result["undelivered_at_kill_delivered_later"]} of {result["undelivered_at_kill"]}', result["duplicates"],
             result["store_failed"], result["unstored_peak"], result["rss_first_minute_mb"], result["rss_last_minute_mb"],
             f"{args.backend} {args.precision}", result["mean_event_latency_ms"]]]
    faults = "; ".join(f'{f["t_s"]} s: {f["fault"]}' for f in result["faults"])
    write_results("soak", result, ["minutes", "broker restarts", "full disk 1 min", "durable events stored", "delivered", "lost",
                                   "undelivered at the kill, delivered later", "duplicates", "store_failed", "peak kept in memory",
                                   "RSS first minute MB", "RSS last minute MB", "backend", "mean event latency ms"], rows,
                  f"{MACHINES} machines at {RATE_HZ:g} Hz, alarms flapping every {BLOCKS_PER_WINDOW} windows; broker (persistence on) "
                  "restarted with SIGTERM; subscriber: persistent session, QoS 1. Stored = the outbox's sequence over both runtime "
                  f"processes; lost = stored - distinct ids delivered. Faults: {faults}.", folder=args.results)


if __name__ == "__main__":
    main()
