"""``linewatch demo``: simulate a plant, train, export, start a broker and the runtime, replay a
test period with faults over MQTT, show it live, summarise, report, and clean up.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import orjson

from edge_runtime.contract.errors import BrokerError
from edge_runtime.contract.timeparse import to_seconds
from linewatch.localbroker import find_mosquitto, free_port, loopback_config, stop_process, wait_for_port


@dataclass
class DemoSettings:
    """Sizes and rates of one demo run."""

    machines: int = 4
    train_rows: int = 7200
    test_rows: int = 3600
    normal_test_rows: int = 600
    faults_per_machine: int = 2
    epochs: int = 200  # a cap: early stopping decides
    window: int = 50
    stride: int = 10
    rate: float = 150.0  # samples per second per machine during the replay
    seed: int = 7

    @classmethod
    def quick(cls) -> DemoSettings:
        """A short run for the tests (training capped at 60 epochs)."""
        return cls(machines=3, train_rows=7200, test_rows=2400, normal_test_rows=400, epochs=60, window=30, stride=5, rate=1500.0)


def start_broker(folder: Path, stack: ExitStack, choice: str = "auto") -> tuple[int, str, subprocess.Popen]:
    """Mosquitto when it is installed (``auto``), else amqtt in its own process."""
    port = free_port()
    mosquitto = find_mosquitto() if choice in ("auto", "mosquitto") else None
    if choice == "mosquitto" and mosquitto is None:
        raise click.ClickException("--broker mosquitto: mosquitto is not installed (apt-get install mosquitto)")
    if mosquitto:
        conf = folder / "mosquitto.conf"
        conf.write_text(loopback_config(port))
        command, name = [mosquitto, "-c", str(conf)], f"mosquitto ({mosquitto}, port {port})"
    else:
        conf = folder / "amqtt.yaml"
        conf.write_text(f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\nplugins:\n"
                        "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n")
        amqtt = shutil.which("amqtt") or str(Path(sys.executable).with_name("amqtt"))
        reason = "asked for" if choice == "amqtt" else "mosquitto not found"
        command, name = [amqtt, "-c", str(conf)], f"amqtt, embedded, in its own process (port {port}; {reason})"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stack.callback(stop_process, process, 5.0)
    try:
        wait_for_port(port, process)
    except BrokerError as error:
        raise click.ClickException(f"{name}: {error}") from None
    return port, name, process


@dataclass
class LiveState:
    """What the live view and the summary read, filled from the events topic."""

    threshold: float
    scores: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    active: dict[str, bool] = field(default_factory=dict)
    raised: list[dict] = field(default_factory=list)
    cleared: list[dict] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    events: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: dict) -> None:
        """Record one event from the runtime."""
        with self.lock:
            self.events += 1
            stream, end = event["stream"], to_seconds(event["window_end"])
            self.scores[stream] = event["score"]
            self.history.setdefault(stream, []).append((end, event["score"]))
            self.latencies_ms.append(event["latency_ms"])
            if event["kind"] == "alarm_raised":
                self.active[stream] = True
                self.raised.append(event)
            elif event["kind"] == "alarm_cleared":
                self.active[stream] = False
                self.cleared.append(event)


def render(state: LiveState, progress: float, broker: str):
    """The rich renderable of the live view."""
    from rich.table import Table

    table = Table(title=f"linewatch demo — replay {progress:5.1%} via {broker.split(' (')[0]}", expand=False)
    for column in ("machine", "score", "threshold", "state", "raised", "cleared"):
        table.add_column(column, justify="right" if column not in ("machine", "state") else "left")
    with state.lock:
        for stream in sorted(state.scores):
            score = state.scores[stream]
            alarm = state.active.get(stream, False)
            bar = "█" * min(20, int(10 * score / state.threshold)) if state.threshold > 0 else ""
            table.add_row(stream, f"{score:8.4f} {bar}", f"{state.threshold:.4f}",
                          "[bold red]ALARM[/]" if alarm else "[green]ok[/]",
                          str(sum(e["stream"] == stream for e in state.raised)), str(sum(e["stream"] == stream for e in state.cleared)))
    return table


def match_faults(faults, test_frame, state: LiveState) -> tuple[list[dict], int]:
    """Per injected fault: detected or not, the delay and the top sensors of the alarm raised for it; plus alarms raised
    outside any fault.

    An alarm up to 60 s after a fault's last row still counts for it (the window lags the fault).
    """
    from edge_runtime.contract.detection_metrics import match_alarms

    found: dict[int, tuple[float, float | None]] = {}  # fault index -> (first time, alarm time)
    false_alarms = 0
    for machine in test_frame.machine.unique():
        ts = test_frame[test_frame.machine == machine].ts.to_numpy()
        mine = [i for i, f in enumerate(faults) if f.machine == machine]
        spans = [(ts[faults[i].start], ts[min(faults[i].start + faults[i].length - 1, len(ts) - 1)]) for i in mine]
        raised = [e for e in state.raised if e["stream"] == f"line1/{machine}"]
        alarm_times = np.array([to_seconds(e["window_end"]) for e in raised])
        first_alarm, used = match_alarms(spans, alarm_times, grace=60.0)
        false_alarms += int((~used).sum())
        found.update({i: (span[0], alarm_times[k] if k >= 0 else None, [t["name"] for t in raised[k]["top_features"]] if k >= 0 else [])
                      for i, span, k in zip(mine, spans, first_alarm)})
    rows = [{"machine": f.machine, "kind": f.kind, "feature": f.feature, "detected": found[i][1] is not None,
             "delay_s": None if found[i][1] is None else float(found[i][1] - found[i][0]), "top_sensors": found[i][2]}
            for i, f in enumerate(faults)]
    return rows, false_alarms


def write_report(path: Path, state: LiveState, faults, test_frame, rows, summary: dict) -> None:
    """HTML report with a scores-over-time plot per machine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.report import html_page, html_table

    machines = sorted(test_frame.machine.unique())
    fig, axes = plt.subplots(len(machines), 1, figsize=(10, 2.2 * len(machines)), sharex=True, squeeze=False)
    t0 = test_frame.ts.min()
    for ax, machine in zip(axes[:, 0], machines):
        history = state.history.get(f"line1/{machine}", [])
        if history:
            t, s = np.array(history).T
            ax.plot(t - t0, s, lw=0.8, label="score")
        ax.axhline(state.threshold, color="red", lw=0.8, label="threshold")
        ts = test_frame[test_frame.machine == machine].ts.to_numpy()
        for f in faults:
            if f.machine == machine:
                ax.axvspan(ts[f.start] - t0, ts[min(f.start + f.length - 1, len(ts) - 1)] - t0, color="orange", alpha=0.3)
        for e in state.raised:
            if e["stream"] == f"line1/{machine}":
                ax.axvline(to_seconds(e["window_end"]) - t0, color="black", ls=":", lw=1)
        ax.set(yscale="log", ylabel=machine)
    axes[0, 0].set_title("Scores over the replayed test period (orange: injected faults, dotted: alarms raised)")
    axes[-1, 0].set_xlabel("seconds into the test period")
    fig.tight_layout()
    fig.savefig(path.with_name("demo_scores.png"), dpi=100)
    plt.close(fig)
    faults_table = html_table([(r["machine"], r["kind"], r["feature"], "yes" if r["detected"] else "no", _delay(r), ", ".join(r["top_sensors"]))
                               for r in rows], header=("machine", "fault", "sensor", "detected", "delay", "alarm's top sensors"))
    body = (f"{html_table(list(summary.items()))}<h2>Faults</h2>{faults_table}"
            "<p><img src='demo_scores.png' alt='scores'></p>")
    path.write_text(html_page("linewatch demo", body))


def _delay(row: dict) -> str:
    return "" if row["delay_s"] is None else f"{row['delay_s']:.0f} s"


def run_demo(out: Path, settings: DemoSettings, live: bool, broker: str = "auto", echo=click.echo, sparkplug: bool = False) -> dict:
    """Run the whole demo; return the summary. Everything started is stopped on exit or Ctrl-C.

    ``sparkplug``: the plant publishes as a Sparkplug B edge node (``spBv1.0/plant/.../line1/<machine>``) instead of
    JSON, and linewatch publishes its events as its own edge node too.
    """
    import pandas as pd

    from edge_runtime.config import parse_config
    from edge_runtime.runtime import Runtime
    from export.bundler import export_run
    from train.data import read_table
    from train.detector import AutoencoderDetector
    from train.simulate import UNITS, simulate_plant, write_table

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    s = settings
    echo(f"1/5 simulating a plant: {s.machines} machines, {s.train_rows} s of normal operation for training")
    train_frame, _ = simulate_plant(s.machines, s.train_rows, s.train_rows, 0, seed=s.seed)
    write_table(train_frame, str(out / "train.csv"))
    test_frame, faults = simulate_plant(s.machines, s.test_rows, s.normal_test_rows, s.faults_per_machine, seed=s.seed + 1,
                                        start="2026-02-01T00:00:00Z")
    write_table(test_frame, str(out / "test.csv"))
    test_frame["ts"] = (pd.to_datetime(test_frame["time"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()

    detector = AutoencoderDetector(window=s.window, stride=s.stride, epochs=s.epochs, seed=s.seed, device="cpu")
    echo(f"2/5 training the default model ({detector.kind}) on the CPU")
    detector.fit(read_table(out / "train.csv", series_column="machine"))
    detector.save(out / "run")
    echo(f"    run directory: {out / 'run'} ({detector.history_.seconds:.1f} s, threshold {detector.threshold_:.4g})")
    echo("3/5 exporting the bundle with its parity check")
    bundle = export_run(out / "run", out / "bundle", units=UNITS, name="demo-pumps", echo=lambda m: echo("    " + m.strip()))
    echo(f"    bundle: {bundle}")

    with ExitStack() as stack:
        (out / "broker").mkdir(exist_ok=True)
        port, broker_name, _ = start_broker(out / "broker", stack, broker)
        echo(f"4/5 broker: {broker_name}")
        amqtt = broker_name.startswith("amqtt")
        qos = 0 if amqtt else 1  # amqtt loses QoS 1 messages under load; demo rates only
        data_input = {"topic": "spBv1.0/plant", "format": "sparkplug"} if sparkplug else {"topic": "plant/{line}/{machine}/telemetry", "qos": qos}
        status_port = free_port()
        config = parse_config({
            "broker": {"port": port, "client_id": "linewatch-demo", "reconnect_min_s": 0.5, "reconnect_max_s": 2.0},
            # a replay of simulated history (2026-02-01): sample times older than the default week are accepted
            "runtime": {"outbox": str(out / "outbox.sqlite"), "publish_scores": True, "latency_budget_ms": 100.0, "max_past_s": 1e10,
                        "status_port": status_port},
            "sparkplug": {"enabled": sparkplug, "group": "linewatch"},
            "models": [{"name": "pumps", "bundle": str(bundle), "inputs": [data_input]}],
        })
        runtime = Runtime(config)
        runtime.start()
        stack.callback(runtime.stop)
        if not runtime.link.wait_subscribed(15):  # samples published before the broker took the subscription would be lost
            raise click.ClickException(f"the runtime could not connect and subscribe to the broker: {runtime.link.last_error}")
        state = LiveState(threshold=runtime.models[0].threshold)
        listener = _subscribe(port, state, stack)
        send = _edge_node(port, sorted(test_frame.machine.unique()), stack) if sparkplug else _json_sender(port, qos, stack)
        echo(f"    status page: http://127.0.0.1:{status_port}/ (served while the replay runs)")
        echo(f"5/5 replaying {s.test_rows} s of the test period with {len(faults)} injected faults at {s.rate:.0f}x real time"
             + (" as Sparkplug B edge node plant/line1" if sparkplug else ""))
        _replay(send, test_frame, s, state, broker_name, live)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and runtime.snapshot()["accepted"] + sum(runtime.bad.counts.values()) < len(test_frame):
            _stop_if_requested()
            time.sleep(0.1)
        time.sleep(0.5)
        runtime.stop()
        time.sleep(0.3)
        snapshot = runtime.snapshot()
        listener.loop_stop()

    rows, false_alarms = match_faults(faults, test_frame, state)
    latencies = np.array(state.latencies_ms) if state.latencies_ms else np.array([np.nan])
    summary = {
        "faults injected": len(faults),
        "faults detected": sum(r["detected"] for r in rows),
        "median detection delay (s)": float(np.median([r["delay_s"] for r in rows if r["detected"]])) if any(r["detected"] for r in rows) else None,
        "false alarms": false_alarms,
        "alarms raised / cleared": f"{len(state.raised)} / {len(state.cleared)}",
        "messages accepted": snapshot["accepted"],
        "windows scored": snapshot["models"]["pumps"]["scored"],
        "events published": snapshot["events_published"],
        "latency p50 / p99 (ms)": f"{np.percentile(latencies, 50):.1f} / {np.percentile(latencies, 99):.1f}",
        "deadline misses": snapshot["models"]["pumps"]["deadline_misses"],
        "broker": broker_name,
        "total time (s)": round(time.perf_counter() - started, 1),
    }
    write_report(out / "demo_report.html", state, faults, test_frame, rows, summary)
    echo("")
    echo("summary")
    for r in rows:
        echo(f"  {r['machine']}  {r['kind']:<19} on {r['feature']:<12} "
             + (f"detected after {_delay(r)}, top sensor {r['top_sensors'][0]}" if r["detected"] else "missed"))
    for key, value in summary.items():
        echo(f"  {key:<28} {value}")
    echo(f"report: {out / 'demo_report.html'}")
    summary["faults"] = rows
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def write_demo_results(folder: Path, output: Path, summary: dict) -> None:
    """The summary as a result file the docs can cite (commit, command, bundle, machine), and the scores plot beside it."""
    from edge_runtime.contract.bundle import load_bundle
    from linewatch.results import write_results

    rows = [[r["machine"], r["kind"], r["feature"], _delay(r) if r["detected"] else "missed", ", ".join(r["top_sensors"])]
            for r in summary["faults"]]
    totals = "\n".join(f"- {key}: {value}" for key, value in summary.items() if key != "faults")
    write_results(folder, "demo", summary, ["machine", "fault", "sensor", "detected after", "alarm's top sensors"], rows, totals, quiet=True,
                  bundle_id=load_bundle(output / "bundle").model_id)
    shutil.copyfile(output / "demo_scores.png", folder / "demo_scores.png")


def _client(port: int, client_id: str, stack: ExitStack):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    stack.callback(client.loop_stop)
    stack.callback(client.disconnect)
    return client


def _subscribe(port: int, state: LiveState, stack: ExitStack):
    client = _client(port, "linewatch-demo-view", stack)
    client.on_message = lambda c, u, m: state.on_event(orjson.loads(m.payload))
    client.subscribe("linewatch/events/#", qos=1)
    return client


def _json_sender(port: int, qos: int, stack: ExitStack):
    """``send(machine, ts, values)`` as JSON on ``plant/line1/{machine}/telemetry``."""
    from train.simulate import FEATURES

    publisher = _client(port, "linewatch-demo-replay", stack)
    return lambda machine, ts, values: publisher.publish(f"plant/line1/{machine}/telemetry",
                                                         orjson.dumps({"ts": ts, **dict(zip(FEATURES, values))}), qos=qos)


def _edge_node(port: int, machines: list[str], stack: ExitStack):
    """``send(machine, ts, values)`` as DDATA of Sparkplug B edge node ``plant/line1``, each machine a device."""
    from edge_runtime.sparkplug.node import EdgeNode
    from edge_runtime.sparkplug.sparkplug_b_pb2 import Double
    from train.simulate import FEATURES

    node = EdgeNode("127.0.0.1", port, "plant", "line1", {m: [(f, Double) for f in FEATURES] for m in machines}).start()
    stack.callback(node.stop)
    return lambda machine, ts, values: node.publish(machine, values, round(ts * 1000))


# Set by Ctrl-C or SIGTERM. The handler also raises KeyboardInterrupt at once, but Python drops an exception raised
# while a finaliser or a library's catch-all runs; the replay checks this event so that the stop is never lost.
STOP_REQUESTED = threading.Event()


def _interrupt(signum, frame) -> None:
    STOP_REQUESTED.set()
    raise KeyboardInterrupt


def _stop_if_requested() -> None:
    if STOP_REQUESTED.is_set():
        raise KeyboardInterrupt


def _replay(send, frame, s: DemoSettings, state: LiveState, broker_name: str, live: bool) -> None:
    """Publish the test period in time order at ``s.rate`` samples per second per machine with ``send(machine, ts, values)``."""
    from contextlib import nullcontext

    from train.simulate import FEATURES

    ordered = frame.sort_values(["ts", "machine"], kind="stable")
    values = ordered[FEATURES].to_numpy(dtype=float)
    machines = ordered.machine.tolist()
    stamps = ordered.ts.to_numpy()
    t_first = stamps[0]
    began = time.perf_counter()
    view = None
    if live:
        from rich.live import Live

        view = Live(render(state, 0.0, broker_name), refresh_per_second=8, transient=False)
    with view or nullcontext():
        for i in range(len(ordered)):
            _stop_if_requested()
            due = began + (stamps[i] - t_first) / s.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
                if view is not None:
                    view.update(render(state, i / len(ordered), broker_name))
            send(machines[i], float(stamps[i]), values[i].tolist())
        if view is not None:
            time.sleep(1.0)
            view.update(render(state, 1.0, broker_name))


@click.command()
@click.option("-o", "--output", type=click.Path(file_okay=False), default="demo_out", show_default=True, help="Folder for data, run, bundle, report.")
@click.option("--quick", is_flag=True, help="A small, fast run (used by the tests).")
@click.option("--rate", type=float, default=None, help="Replay speed: samples per second per machine.")
@click.option("--no-live", is_flag=True, help="No live terminal view.")
@click.option("--broker", type=click.Choice(["auto", "mosquitto", "amqtt"]), default="auto", show_default=True,
              help="auto: mosquitto when installed, else the embedded amqtt.")
@click.option("--sparkplug", is_flag=True, help="The plant speaks Sparkplug B (an edge node), and linewatch answers as one too.")
@click.option("--results", type=click.Path(file_okay=False), default=None,
              help="Also write the summary as a result file (demo.json, demo.md, with commit and machine) and the plot here.")
def demo(output, quick, rate, no_live, broker, sparkplug, results):
    """Simulate a plant, train, export, start a broker and the runtime, replay faults live, summarise."""
    settings = DemoSettings.quick() if quick else DemoSettings()
    if rate:
        settings.rate = rate
    previous = {number: signal.signal(number, _interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    STOP_REQUESTED.clear()
    try:
        summary = run_demo(Path(output), settings, live=not no_live and sys.stdout.isatty(), broker=broker, sparkplug=sparkplug)
        if results:
            write_demo_results(Path(results), Path(output), summary)
        _stop_if_requested()  # a stop that came after the last check: the run finished, but the user asked to stop
    except KeyboardInterrupt:
        click.echo("interrupted: everything the demo started has been stopped", err=True)
        sys.exit(130)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
