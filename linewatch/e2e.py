"""End-to-end latency under an open-loop load: intended send time of a window's last sample to its event.

The harness starts mosquitto on loopback with the shipped tuning (or uses ``--broker``), runs the
runtime as its own process with ``publish_scores = true``, and for each offered rate runs a
publisher process that sends every message at its *intended* time ``start + i / rate``: a
publisher that falls behind sends late, and the lateness counts in the measured latency instead
of being hidden (coordinated omission). A subscriber in this process receives the score events
and maps each one's ``window_end`` back to the intended send time of the message that completed
that window. Every expected window is accounted for: received in time, late (over the budget),
or lost. The same harness measures the bare paho receive rate (the ceiling) and drives the naive
peer (``benchmarks/naive_peer.py``) when this is a source checkout with torch.
"""

from __future__ import annotations

import math
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from edge_runtime.contract.bundle import Bundle
from edge_runtime.contract.timeparse import to_seconds
from edge_runtime.delivery.link import no_delay
from linewatch.localbroker import start_mosquitto, stop_process
from linewatch.probe import RuntimeProbe, usage

TOPICS = {"json": "plant/{machine}/telemetry", "tag": "plant/{machine}/tags/{tag}", "chunk": "plant/{machine}/chunks",
          "sparkplug": "spBv1.0/e2e"}
PREFIX = {"json": "j", "tag": "t", "chunk": "c", "sparkplug": "s"}  # machine names per format: one runtime serves every format at once
EVENT_FILTER = "linewatch/events/#"


@dataclass
class Step:
    """One offered load: ``rate`` messages per second over ``machines`` machines for ``seconds``."""

    system: str
    fmt: str
    rate: float
    machines: int
    seconds: float
    chunk: int = 1  # samples per message (chunk format)
    first_sample: int = 0  # index of each machine's first sample in this step (streams continue across steps)
    features: int = 1
    groups: int = 1  # json with several workers: machine m publishes under plant/g<m % groups>/, worker k subscribes to g<k>

    @property
    def messages_per_sample(self) -> int:
        """Messages that carry one sample of one machine (tag: one per feature)."""
        return self.features if self.fmt == "tag" else 1

    @property
    def samples_per_machine(self) -> int:
        """Samples each machine sends in this step."""
        if self.fmt == "chunk":
            return int(self.rate * self.seconds / self.machines) * self.chunk
        return int(self.rate * self.seconds / self.machines / self.messages_per_sample)

    def seconds_for(self, samples: int) -> float:
        """Step length that sends at least ``samples`` samples per machine."""
        per_sample = 1 / self.chunk if self.fmt == "chunk" else self.messages_per_sample
        return math.ceil(samples * per_sample + 1) * self.machines / self.rate

    def intended(self, start: float, sample: np.ndarray, machine: np.ndarray) -> np.ndarray:
        """Intended send time of the message that completes ``sample`` (index within the step) of ``machine``."""
        if self.fmt == "chunk":
            index = (sample // self.chunk) * self.machines + machine
        elif self.fmt == "tag":
            index = (sample * self.machines + machine) * self.messages_per_sample + self.messages_per_sample - 1
        else:
            index = sample * self.machines + machine
        return start + index / self.rate


def edge_nodes(step: Step, bundle_features: list[str]) -> list:
    """Sparkplug format: one edge node per machine (its own metrics are the features), born afresh for every step."""
    from edge_runtime.sparkplug.codec import EdgeNodeWriter
    from edge_runtime.sparkplug.sparkplug_b_pb2 import Double

    nodes = []
    for m in range(step.machines):
        node = EdgeNodeWriter("e2e", f"{PREFIX['sparkplug']}{m}")
        node.define(None, [(f, Double) for f in bundle_features])
        nodes.append(node)
    return nodes


def preamble(step: Step, nodes: list) -> list[tuple[str, bytes]]:
    """What is sent before a step's timed messages: the Sparkplug births (their metrics null: they add no sample)."""
    return [message for node in nodes for message in node.birth({})] if step.fmt == "sparkplug" else []


def payloads(step: Step, bundle_features: list[str], period: float, t0: float, values: np.ndarray, nodes: list | None = None
             ) -> list[tuple[str, bytes]]:
    """Every message of a step, in send order, encoded ahead so the publisher spends its time publishing
    (Sparkplug: DATA by alias from ``nodes``, after their births).
    """
    names = [f"{PREFIX[step.fmt]}{m}" for m in range(step.machines)]
    out = []
    n = step.samples_per_machine
    if step.fmt == "chunk":
        for j in range(0, n, step.chunk):
            for m, name in enumerate(names):
                k = step.first_sample + j
                rows = values[(k + np.arange(step.chunk) + 7 * m) % len(values)]
                out.append((f"plant/{name}/chunks", orjson.dumps({"t0": t0 + k * period, "dt": period, "values": rows.tolist()})))
        return out
    for j in range(n):
        k = step.first_sample + j
        stamp = t0 + k * period
        for m, name in enumerate(names):
            row = values[(k + 7 * m) % len(values)]
            if step.fmt == "tag":
                out += [(f"plant/{name}/tags/{f}", orjson.dumps({"ts": stamp, "value": float(v)})) for f, v in zip(bundle_features, row)]
            elif step.fmt == "sparkplug":
                out.append(nodes[m].data(None, row.tolist(), round(stamp * 1000)))
            else:
                group = f"g{m % step.groups}/" if step.groups > 1 else ""
                out.append((f"plant/{group}{name}/telemetry", orjson.dumps({"ts": stamp, **{f: float(v) for f, v in zip(bundle_features, row)}})))
    return out


def publish_open_loop(port: int, messages: list[tuple[str, bytes]], rate: float, start: float, report,
                      first: list[tuple[str, bytes]] = ()) -> None:
    """Send ``first`` at once, then message ``i`` at ``start + i / rate`` (as fast as possible when ``rate`` is infinite);
    report the lag.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_socket_open = no_delay
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload in first:
        client.publish(topic, payload)
    worst = 0.0
    delay = time.time() - start
    if delay < 0:
        time.sleep(-delay)
    began = time.time()
    for i, (topic, payload) in enumerate(messages):
        if math.isfinite(rate):
            lag = time.time() - (start + i / rate)
            if lag < -0.0005:
                time.sleep(-lag)
            worst = max(worst, lag)
        client.publish(topic, payload)
    ended = time.time()
    client.disconnect()
    client.loop_stop()
    report.put({"sent": len(messages), "seconds": ended - began, "worst_lag_s": worst})


def count_received(port: int, timeout: float, report, protocol: str = "3.1.1", make_client=None) -> None:
    """A bare paho subscriber on ``plant/#``: says ``subscribed``, then reports the messages received and the span they
    arrived over (until a second of quiet). ``make_client(protocol)`` builds another client (a module-level function).
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen = {"n": 0, "first": 0.0, "last": 0.0}

    def on_message(client, userdata, message) -> None:
        now = time.time()
        if not seen["n"]:
            seen["first"] = now
        seen["n"] += 1
        seen["last"] = now

    version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    client = make_client(version) if make_client else mqtt.Client(CallbackAPIVersion.VERSION2, protocol=version)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("plant/#")
    client.on_subscribe = lambda *_: report.put("subscribed")
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.time() + timeout
    while time.time() < deadline and not (seen["n"] and time.time() - seen["last"] > 1.0):
        time.sleep(0.05)
    client.loop_stop()
    report.put(dict(seen))


def receive_rate(port: int, messages: list[tuple[str, bytes]], timeout: float = 120.0, protocol: str = "3.1.1", make_client=None) -> dict:
    """A publisher process sends ``messages`` as fast as it can; a subscriber process (:func:`count_received`) counts them.
    Returns what was sent and received, and both rates.
    """
    context = multiprocessing.get_context("spawn")
    counted, published = context.Queue(), context.Queue()
    counter = context.Process(target=count_received, args=(port, timeout, counted, protocol, make_client))
    counter.start()
    if counted.get(timeout=30) != "subscribed":
        raise RuntimeError("the counting subscriber did not subscribe")
    publisher = context.Process(target=publish_open_loop, args=(port, messages, math.inf, time.time(), published))
    publisher.start()
    sent = published.get(timeout=timeout)
    seen = counted.get(timeout=timeout + 30)
    publisher.join(10)
    counter.join(10)
    return {"sent": sent["sent"], "publish_msg_per_s": sent["sent"] / max(sent["seconds"], 1e-9), "received": seen["n"],
            "receive_msg_per_s": seen["n"] / max(seen["last"] - seen["first"], 1e-9)}


class EventCollector:
    """Receives score events and keeps ``(stream, window_end, arrival)`` for the step in progress."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.lock = threading.Lock()
        self.rows: list[tuple[str, str, float]] = []
        self.messages = 0  # event messages received since the last take (a scores message carries several windows)
        self.last_arrival = 0.0
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        self.client.on_socket_open = no_delay
        self.client.on_connect = lambda c, *_: c.subscribe(EVENT_FILTER)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the event subscriber could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        now = time.time()
        event = orjson.loads(message.payload)
        ends = event.get("window_end")  # a window is published as its score, or as the alarm or drift change it caused
        if ends is None:
            return
        with self.lock:
            self.messages += 1
            if isinstance(ends, list):  # linewatch.scores/1: several windows of one stream
                self.rows.extend((event["stream"], end, now) for end in ends)
            else:
                self.rows.append((event["stream"], ends, now))
            self.last_arrival = now

    def take(self) -> tuple[list[tuple[str, str, float]], int]:
        """The windows ``(stream, window_end, arrival)`` received since the last call, and the number of messages they came in."""
        with self.lock:
            rows, self.rows, messages, self.messages = self.rows, [], self.messages, 0
        return rows, messages

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def expected_windows(first: int, count: int, window: int, stride: int) -> np.ndarray:
    """Step-relative indices of the samples that end a window (stream sample ``k`` ends one when ``k + 1 >= window`` and
    ``(k + 1 - window) % stride == 0``), for a step holding stream samples ``first .. first + count - 1``.
    """
    k = np.arange(first, first + count)
    return (k[(k + 1 >= window) & ((k + 1 - window) % stride == 0)] - first).astype(np.int64)


def measure_step(step: Step, collector: EventCollector, bundle: Bundle, t0: float, values: np.ndarray, port: int, budget_s: float,
                 probe: RuntimeProbe | None = None) -> dict:
    """Run one step and account for every window it should produce; with a ``probe``, also what the step cost the runtime
    and the machine (:func:`linewatch.probe.usage`).
    """
    from hdrh.histogram import HdrHistogram

    nodes = edge_nodes(step, bundle.features) if step.fmt == "sparkplug" else None
    first = preamble(step, nodes)  # births reset the nodes' seq: before the data is encoded
    messages = payloads(step, bundle.features, bundle.sample_period, t0, values, nodes)
    context = multiprocessing.get_context("spawn")
    report = context.Queue()
    start = time.time() + 1.0
    collector.take()
    publisher = context.Process(target=publish_open_loop, args=(port, messages, step.rate, start, report, first))
    publisher.start()
    time.sleep(max(0.0, start - time.time()))
    begun = probe.read() if probe else None
    sent = report.get(timeout=step.seconds * 20 + 60)
    loaded = probe.read() if probe else None
    publisher.join(10)
    quiet_since = time.time()
    deadline = quiet_since + max(5.0, 20 * budget_s)
    while time.time() < deadline:  # drain: stop once no event arrived for a second
        time.sleep(0.1)
        if time.time() - max(collector.last_arrival, quiet_since) > 1.0:
            break
    rows, messages = collector.take()
    cost = usage(begun, loaded, probe.read()) if probe else {}
    n = step.samples_per_machine
    ends = expected_windows(step.first_sample, n, bundle.window, bundle.stride)
    prefix = PREFIX[step.fmt]
    latencies, seen = [], set()
    for stream, window_end, arrival in rows:
        if not stream.startswith(prefix):
            continue
        machine = int(stream[len(prefix):])
        k = round((to_seconds(window_end) - t0) / bundle.sample_period) - step.first_sample
        if not 0 <= k < n or (machine, k) in seen:
            continue
        seen.add((machine, k))
        latencies.append(arrival - float(step.intended(start, np.int64(k), np.int64(machine))))
    histogram = HdrHistogram(1, 600 * 10**6, 3)  # microseconds
    for value in latencies:
        histogram.record_value(max(int(value * 1e6), 1))
    expected = len(ends) * step.machines
    missing = [(m, int(k)) for m in range(step.machines) for k in ends if (m, int(k)) not in seen][:10]
    late = sum(1 for v in latencies if v > budget_s)
    samples = n * step.machines
    return {"system": step.system, "format": step.fmt, "offered_msg_per_s": step.rate, "machines": step.machines, "seconds": step.seconds,
            "offered_samples_per_s": samples / step.seconds, "sent": sent["sent"], "publish_seconds": round(sent["seconds"], 3),
            "publisher_worst_lag_ms": round(sent["worst_lag_s"] * 1e3, 2), "windows_expected": expected, "windows_received": len(latencies),
            "event_messages": messages,
            "lost": expected - len(latencies), "lost_examples": missing, "late": late, "p50_ms": histogram.get_value_at_percentile(50) / 1e3,
            "p99_ms": histogram.get_value_at_percentile(99) / 1e3, "max_ms": histogram.get_max_value() / 1e3,
            "histogram": histogram.encode().decode() if latencies else "", **cost}


class LocalBroker:
    """mosquitto on a free loopback port with the shipped tuning, for the length of a ``with`` block."""

    def __enter__(self) -> LocalBroker:
        self.folder = tempfile.TemporaryDirectory(prefix="linewatch-e2e-")
        self.port, self.process = start_mosquitto(Path(self.folder.name))
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.process)
        self.folder.cleanup()


def runtime_config(folder: Path, port: int, bundle: Bundle, budget_ms: float, metrics_port: int, protocol: str = "auto",
                   score_events: str = "window", formats: list[str] | None = None, workers: int = 1, status_port: int = 0) -> Path:
    """A gateway config: an input per swept payload format (machine names differ per format), score events on; only
    the settings a step needs, so that an older runtime takes it for back-to-back comparisons. With several workers
    (json only) worker k subscribes to the machines published under ``plant/g<k>/`` (static filters).
    """
    topics = {**TOPICS, "json": "plant/g{worker}/{machine}/telemetry"} if workers > 1 else TOPICS
    inputs = "".join(f'[[models.inputs]]\ntopic = "{topics[f]}"\nformat = "{f}"\n' for f in formats or TOPICS)
    grouped = f'score_events = "{score_events}"\n' if score_events != "window" else ""
    grouped += f"status_port = {status_port}\n" if status_port else ""
    path = folder / "gateway.toml"
    path.write_text(f'[broker]\nport = {port}\nclient_id = "lw-e2e"\nprotocol = "{protocol}"\n'
                    f'[runtime]\nlatency_budget_ms = {budget_ms}\npublish_scores = true\n{grouped}metrics_port = {metrics_port}\n'
                    f'outbox = "{folder}/outbox.sqlite"\nmax_past_s = 1e9\n'
                    f'[[models]]\nname = "e2e"\nbundle = "{bundle.path.resolve()}"\n{inputs}')
    return path


def _ready(ready_url: str | list[str] | None, log: Path) -> bool:
    """The runtime (every worker) reports itself connected on its metrics endpoint; the peer prints ``subscribed``."""
    if ready_url is None:
        return "subscribed" in log.read_text()
    try:
        return all("linewatch_connected 1.0" in urllib.request.urlopen(url, timeout=1).read().decode()
                   for url in ([ready_url] if isinstance(ready_url, str) else ready_url))
    except OSError:
        return False


def start_process(command: list[str], ready_url: str | list[str] | None, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start the system under test and wait until it is connected and subscribed (60 s at most); ``ready_url``: the
    metrics endpoint (of each worker) that says so.
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True, cwd=cwd)
    deadline = time.time() + 60
    while time.time() < deadline and not _ready(ready_url, log):
        if process.poll() is not None:
            raise RuntimeError(f"{command[2]} exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    time.sleep(1.0)  # subscriptions settle
    if process.poll() is not None:
        raise RuntimeError(f"{command[2]} exited: {log.read_text()[-2000:]}")
    return process


def sweep(system: str, fmt: str, rates: list[float], machines: int, seconds: float, chunk: int, bundle: Bundle, t0: float,
          values: np.ndarray, port: int, budget_s: float, collector: EventCollector, cursor: dict, echo, groups: int = 1,
          probe: RuntimeProbe | None = None) -> list[dict]:
    """Steps at rising rates until one loses more than half its windows or its p99 exceeds 20 budgets."""
    results = []
    if (system, fmt) not in cursor:  # fill every stream's first window before anything is measured
        warm = Step(system, fmt, max(rates[0], 2000.0), machines, 0, chunk, 0, len(bundle.features), groups)
        warm.seconds = warm.seconds_for(bundle.window + bundle.stride)
        measure_step(warm, collector, bundle, t0, values, port, budget_s)
        cursor[(system, fmt)] = warm.samples_per_machine
    for rate in rates:
        step = Step(system, fmt, rate, machines, seconds, chunk, cursor.get((system, fmt), 0), len(bundle.features), groups)
        step.seconds = max(seconds, step.seconds_for(5 * bundle.stride))  # at least five windows per machine, at slow rates too
        result = measure_step(step, collector, bundle, t0, values, port, budget_s, probe)
        cursor[(system, fmt)] = step.first_sample + step.samples_per_machine
        results.append(result)
        echo(f"  {system:<9} {fmt:<5} {rate:>8,.0f} msg/s  p50 {result['p50_ms']:7.2f}  p99 {result['p99_ms']:8.2f}  max {result['max_ms']:8.1f} ms  "
             f"lost {result['lost']}/{result['windows_expected']}  late {result['late']}  publisher lag {result['publisher_worst_lag_ms']:.0f} ms"
             + (f"  runtime {result['runtime_cpu_us_per_msg']:.0f} µs/msg, {result['runtime_cores']:.2f} cores; machine {result['machine_busy_pct']:.0f}% busy"
                if "runtime_cores" in result else ""))
        if result["lost"] > result["windows_expected"] / 2 or result["p99_ms"] > 20 * budget_s * 1e3:
            break
    return results


class StatusPoller:
    """Reads a runtime's /status.json every ``every_s`` seconds on a thread, as an open status page does."""

    def __init__(self, url: str, every_s: float = 1.0) -> None:
        self.url, self.every_s = url, every_s
        self.polls = self.failures = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="status-poller", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.every_s):
            try:
                urllib.request.urlopen(self.url, timeout=5).read()
                self.polls += 1
            except OSError:
                self.failures += 1

    def stop(self) -> None:
        """Stop polling."""
        self.stopping.set()
        self.thread.join(10)


def highest_held(results: list[dict], budget_ms: float) -> float:
    """The highest offered rate whose p99 is within the budget with nothing lost (0 when none)."""
    held = [r["offered_msg_per_s"] for r in results if r["lost"] == 0 and r["windows_received"] and r["p99_ms"] <= budget_ms]
    return max(held, default=0.0)


def paho_ceiling(port: int, machines: int, bundle: Bundle, t0: float, values: np.ndarray, seconds: float = 3.0) -> dict:
    """Messages per second a bare paho subscriber receives from a publisher sending as fast as it can."""
    step = Step("paho", "json", 20_000, machines, seconds)
    return receive_rate(port, payloads(step, bundle.features, bundle.sample_period, t0, values), seconds * 4 + 3)


def sample_values(n_features: int, rows: int = 4096, seed: int = 0) -> np.ndarray:
    """Smooth, bounded sensor-like rows (a sine per feature plus noise); the latency does not depend on them."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)[:, None]
    return (np.sin(t / (20 + 5 * np.arange(n_features))) + 0.05 * rng.normal(size=(rows, n_features))).astype(np.float32)


def peer_command(bundle: Bundle, port: int) -> tuple[list[str], Path] | None:
    """How to start the naive peer and from where (a source checkout's root), or None without a checkout or torch."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "naive_peer.py").is_file() or importlib.util.find_spec("torch") is None:
        return None
    return [sys.executable, "-m", "benchmarks.naive_peer", str(bundle.path.resolve()), "--port", str(port)], root
