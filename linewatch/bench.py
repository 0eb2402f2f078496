"""``linewatch bench``: measured latency of what the machine can run, written as JSON, Markdown and a plot.

``bench backends BUNDLE`` times every inference backend this machine has for the bundle (ONNX
Runtime CPU per precision; the CUDA and TensorRT providers and native TensorRT engines on a GPU;
the ``.pt2`` program under torch where torch is installed), each in its own process.
``bench e2e BUNDLE`` drives the runtime through a broker with an open-loop load (``linewatch.e2e``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import click

from edge_runtime.contract.bundle import load_bundle
from linewatch.results import write_results

DEFAULT_BATCHES = "1,2,4,8,16,32,64,128,256"


def candidate_backends(bundle) -> list[tuple[str, str]]:
    """``(backend, precision)`` pairs worth trying for this bundle on this machine."""
    import onnxruntime as ort

    onnx = [a["precision"] for a in bundle.manifest["artifacts"] if a["format"] == "onnx"]
    engines = [a["precision"] for a in bundle.manifest["artifacts"] if a["format"] == "tensorrt"]
    providers = ort.get_available_providers()
    pairs = [("onnxruntime-cpu", p) for p in onnx]
    if "CUDAExecutionProvider" in providers:
        pairs += [("onnxruntime-cuda", p) for p in onnx if p != "int8"]
    if "TensorrtExecutionProvider" in providers:
        pairs += [("onnxruntime-tensorrt", p) for p in onnx if p != "int8"]
    if engines and importlib.util.find_spec("tensorrt") is not None:
        pairs += [("tensorrt", p) for p in engines]
    if importlib.util.find_spec("torch") is not None and any(a["format"] == "pt2" for a in bundle.manifest["artifacts"]):
        pairs += [("torch-pt2-cpu", "fp32"), ("torch-pt2-cuda", "fp32")]
    return pairs


def run_child(spec: dict, timeout: float) -> dict:
    """Measure one backend in a child process; a crash or a timeout becomes a skipped row with the reason."""
    try:
        done = subprocess.run([sys.executable, "-m", "linewatch.backend_bench", json.dumps(spec)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"backend": spec["name"], "precision": spec["precision"], "skipped": f"did not finish within {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"backend": spec["name"], "precision": spec["precision"], "skipped": f"crashed: {reason}"}
    return json.loads(lines[-1])


def table_rows(results: list[dict]) -> list[list]:
    """One Markdown row per backend and batch (µs); skipped backends say why."""
    rows = []
    for r in results:
        label = f"{r['backend']} {r['precision']}"
        if "skipped" in r:
            rows.append([label, "-", "-", "-", "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"])
            continue
        for b in r["batches"]:
            if "skipped" in b:
                continue
            c, w = b["per_call_us"], b["per_window_us"]
            rows.append([label, b["batch"], f"{c['p50']:.1f}", f"{c['p90']:.1f}", f"{c['p99']:.1f}", f"{c['p99.9']:.1f}", f"{c['max']:.0f}",
                         f"{w['p50']:.2f}", f"{b['windows_per_s']:,.0f}",
                         f"first call {b['first_call_ms']:.1f} ms; activate {r['activate_s']:.2f} s; peak RSS {r['peak_rss_mb']:.0f} MB"])
    return rows


def _pyplot():
    """Matplotlib's pyplot without a display, or None where matplotlib is not installed (a gateway)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot(results: list[dict], path: Path, title: str) -> Path | None:
    """Per-window p50 and per-call p99 against batch size, one line per backend (needs matplotlib)."""
    plt = _pyplot()
    if plt is None:
        return None
    figure, (per_window, per_call) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        rows = [b for b in r.get("batches", []) if "skipped" not in b]
        if not rows:
            continue
        batches = [b["batch"] for b in rows]
        label = f"{r['backend']} {r['precision']}"
        per_window.plot(batches, [b["per_window_us"]["p50"] for b in rows], marker="o", label=label)
        per_call.plot(batches, [b["per_call_us"]["p99"] for b in rows], marker="o", label=label)
    for axis, ylabel in ((per_window, "µs per window (p50)"), (per_call, "µs per call (p99)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("batch")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    per_call.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


@click.group()
def bench() -> None:
    """Measure what this machine can do with a bundle: inference backends, and the runtime end to end."""


def quick(ctx: click.Context, **short) -> tuple:
    """``--quick``: the short run's value of each named option, in order, unless the command line gave one (a short run
    for checks and tests; its report has every field of a full one).
    """
    from click.core import ParameterSource

    return tuple(value if ctx.get_parameter_source(name) == ParameterSource.DEFAULT else ctx.params[name] for name, value in short.items())


QUICK_HELP = "A short run (seconds) with the full report, for checks; options given explicitly still apply."


@bench.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option("--backends", default="", help="Comma-separated backends (default: every one this machine has), e.g. onnxruntime-cpu,tensorrt.")
@click.option("--precisions", default="", help="Comma-separated precisions to keep (default: all the bundle has).")
@click.option("--batches", default=DEFAULT_BATCHES, show_default=True, help="Batch sizes.")
@click.option("--seconds", default=0.5, show_default=True, help="Timed seconds per batch size (at least --min-calls calls).")
@click.option("--min-calls", default=200, show_default=True)
@click.option("--warmup", default=50, show_default=True, help="Untimed calls per batch size after the first call.")
@click.option("-o", "--output", type=click.Path(file_okay=False), default="bench-results", show_default=True,
              help="Folder for backends.json, backends.md and backends.png.")
@click.option("--quick", "is_quick", is_flag=True, help=QUICK_HELP + " Batches 1,4; 0.05 s, 20 calls, 5 warm-up.")
@click.pass_context
def backends(ctx, bundle_path, backends, precisions, batches, seconds, min_calls, warmup, output, is_quick):
    """Latency per call and per window of every inference backend, batch 1..256 (HDR histograms, one process each)."""
    if is_quick:
        batches, seconds, min_calls, warmup = quick(ctx, batches="1,4", seconds=0.05, min_calls=20, warmup=5)
    bundle = load_bundle(bundle_path)
    pairs = candidate_backends(bundle)
    if backends:
        wanted = backends.split(",")
        pairs = [p for p in pairs if p[0] in wanted] + [(b, "fp32") for b in wanted if b not in {p[0] for p in pairs}]
    if precisions:
        pairs = [p for p in pairs if p[1] in precisions.split(",")]
    sizes = [int(b) for b in batches.split(",")]
    results = []
    budget = 120 + len(sizes) * (seconds + 30)
    with click.progressbar(pairs, label="backends", item_show_func=lambda p: p and f"{p[0]} {p[1]}", file=sys.stderr) as bar:
        for name, precision in bar:
            spec = {"bundle_path": str(Path(bundle_path).resolve()), "name": name, "precision": precision, "batches": sizes,
                    "seconds": seconds, "min_calls": min_calls, "warmup": warmup}
            results.append(run_child(spec, budget))
    folder = Path(output)
    notes = ("Per call: the backend's `infer` on a ready float32 batch, host to host (copies to and from a GPU included). "
             "Percentiles from HDR histograms (3 significant digits); the encoded histograms are in backends.json. "
             f"Command: `linewatch bench backends {bundle_path} --batches {batches} --seconds {seconds}`.")
    write_results(folder, "backends", {"bundle": bundle.name, "model": bundle.manifest["model"]["kind"], "results": results},
                  ["backend", "batch", "call p50", "p90", "p99", "p99.9", "max", "window p50", "windows/s", "notes"], table_rows(results), notes,
                  bundle_id=bundle.model_id)
    figure = plot(results, folder / "backends.png", f"{bundle.name} ({bundle.manifest['model']['kind']}): inference latency by backend")
    click.echo(f"wrote {folder / 'backends.json'}, {folder / 'backends.md'}" + (f", {figure}" if figure else " (no plot: matplotlib missing)"))


def plot_e2e(results: list[dict], ceiling: float, budget_ms: float, path: Path) -> Path | None:
    """p99 latency against offered rate, one line per system and format, the budget and the paho ceiling marked."""
    plt = _pyplot()
    if plt is None:
        return None
    figure, axis = plt.subplots(figsize=(8, 5))
    for key in dict.fromkeys((r["system"], r["format"]) for r in results):
        rows = [r for r in results if (r["system"], r["format"]) == key and r["windows_received"]]
        axis.plot([r["offered_msg_per_s"] for r in rows], [r["p99_ms"] for r in rows], marker="o", label=f"{key[0]} ({key[1]})")
    axis.axhline(budget_ms, color="grey", linestyle="--", label=f"budget {budget_ms:g} ms")
    if ceiling:
        axis.axvline(ceiling, color="black", linestyle=":", label=f"bare paho receive {ceiling:,.0f} msg/s")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("offered load (MQTT messages per second)")
    axis.set_ylabel("p99 latency, intended send to event (ms)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


COST_COLUMNS = ["runtime CPU µs/msg", "runtime cores", "machine busy %", "msg/s per worker"]


def cost_cells(result: dict) -> list[str]:
    """A step's cost (:func:`linewatch.probe.usage`) as table cells; blank where it was not measured (the naive peer)."""
    if "runtime_cores" not in result:
        return [""] * len(COST_COLUMNS)
    return [f"{result['runtime_cpu_us_per_msg']:.0f}", f"{result['runtime_cores']:.2f}", f"{result['machine_busy_pct']:.0f}",
            " / ".join(f"{rate:,}" for rate in result["worker_msg_per_s"])]


@bench.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.option("--rates", default="500,1000,2000,4000,8000,12000,16000", show_default=True, help="Offered MQTT messages per second.")
@click.option("--formats", default="json,tag,chunk", show_default=True, help="Payload formats to sweep.")
@click.option("--machines", default=50, show_default=True)
@click.option("--seconds", default=5.0, show_default=True, help="Length of each step.")
@click.option("--chunk", default=10, show_default=True, help="Samples per message in the chunk format.")
@click.option("--budget-ms", default=20.0, show_default=True, help="The runtime's latency_budget_ms; a window later than this is late.")
@click.option("--peer/--no-peer", default=True, show_default=True, help="Also drive benchmarks/naive_peer.py (JSON; needs torch and a checkout).")
@click.option("--broker", default=None, help="HOST:PORT of a broker to use instead of starting mosquitto on loopback.")
@click.option("--protocol", type=click.Choice(["auto", "5", "3.1.1"]), default="auto", show_default=True,
              help="The runtime's MQTT protocol.")
@click.option("--score-events", type=click.Choice(["window", "grouped"]), default="window", show_default=True,
              help="The runtime's score_events: one event per window, or one linewatch.scores/1 message per stream per batch.")
@click.option("--ceiling-seconds", default=3.0, show_default=True, help="Length of the bare paho receive measurement (20,000 msg/s offered).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Run the runtime as N workers (run --workers N), the machines split between them by static filters (json only).")
@click.option("--status-page", is_flag=True, help="Turn the runtime's status page on and read its JSON every second, as an open page does.")
@click.option("-o", "--output", type=click.Path(file_okay=False), default="bench-results", show_default=True)
@click.option("--quick", "is_quick", is_flag=True, help=QUICK_HELP + " Rates 600,1200; 4 machines; 0.5 s steps and ceiling.")
@click.pass_context
def e2e(ctx, bundle_path, rates, formats, machines, seconds, chunk, budget_ms, peer, broker, protocol, score_events, ceiling_seconds, workers,
        status_page, output, is_quick):
    """Open-loop end-to-end latency (intended send to event at a subscriber) of the runtime, its paho ceiling and a naive peer."""
    if is_quick:
        rates, machines, seconds, ceiling_seconds = quick(ctx, rates="600,1200", machines=4, seconds=0.5, ceiling_seconds=0.5)
    import tempfile
    import time

    from linewatch import e2e as harness
    from linewatch.localbroker import free_port, stop_process
    from linewatch.probe import RuntimeProbe

    bundle = load_bundle(bundle_path)
    rate_list = [float(r) for r in rates.split(",")]
    format_list = formats.split(",")
    unknown = set(format_list) - set(harness.TOPICS)
    if unknown:
        raise click.BadParameter(f"unknown formats {sorted(unknown)}; expected some of {sorted(harness.TOPICS)}", param_hint="--formats")
    if workers > 1 and format_list != ["json"]:
        raise click.BadParameter("several workers are measured on json only: add --formats json", param_hint="--workers")
    values = harness.sample_values(len(bundle.features))
    period = bundle.sample_period
    planned = sum(r * seconds / machines * chunk for r in rate_list) * (len(format_list) + 1)
    t0 = math.floor((time.time() - planned * period - 3600) / period) * period  # every stamp in the past, on the grid
    budget_s = budget_ms / 1e3
    results: list[dict] = []
    cursor: dict = {}
    with contextlib.ExitStack() as stack:
        if broker:
            host, port = broker.rsplit(":", 1)
            port = int(port)
        else:
            port = stack.enter_context(harness.LocalBroker()).port
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="linewatch-e2e-")))
        click.echo("bare paho receive rate (publisher as fast as it can)")
        ceiling = harness.paho_ceiling(port, machines, bundle, t0, values, ceiling_seconds)
        click.echo(f"  published {ceiling['publish_msg_per_s']:,.0f} msg/s, received {ceiling['receive_msg_per_s']:,.0f} msg/s")
        collector = harness.EventCollector(port)
        stack.callback(collector.close)
        metrics_port = free_port()
        status_port = free_port() if status_page else 0
        config = harness.runtime_config(folder, port, bundle, budget_ms, metrics_port, protocol, score_events, format_list, workers, status_port)
        command = [sys.executable, "-m", "linewatch", "run", "-c", str(config), *(["--workers", str(workers)] if workers > 1 else [])]
        urls = [f"http://127.0.0.1:{metrics_port + k}/metrics" for k in range(workers)]
        runtime = harness.start_process(command, urls, folder / "runtime.log")
        probe = RuntimeProbe(runtime.pid, urls)
        system = f"linewatch x{workers}" if workers > 1 else "linewatch"
        poller = harness.StatusPoller(f"http://127.0.0.1:{status_port}/status.json") if status_page else None
        try:
            for fmt in format_list:
                results += harness.sweep(system, fmt, rate_list, machines, seconds, chunk, bundle, t0, values, port, budget_s, collector, cursor,
                                         click.echo, groups=workers, probe=probe)
        finally:
            if poller is not None:
                poller.stop()
            stop_process(runtime)
        found = harness.peer_command(bundle, port) if peer else None
        if peer and found is None:
            click.echo("naive peer skipped: needs torch and a source checkout (benchmarks/naive_peer.py)")
        if found:
            process = harness.start_process(found[0], None, folder / "peer.log", cwd=found[1])
            try:
                results += harness.sweep("naive", "json", rate_list, machines, seconds, 1, bundle, t0, values, port, budget_s, collector, cursor,
                                         click.echo)
            finally:
                stop_process(process)
    held = {f"{s} {f}": harness.highest_held([r for r in results if (r["system"], r["format"]) == (s, f)], budget_ms)
            for s, f in dict.fromkeys((r["system"], r["format"]) for r in results)}
    rows = [[r["system"], r["format"], f"{r['offered_msg_per_s']:,.0f}", f"{r['offered_samples_per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
             f"{r['max_ms']:.1f}", f"{r['lost']} / {r['windows_expected']}", r["late"], f"{r['publisher_worst_lag_ms']:.0f}",
             *cost_cells(r)] for r in results]
    notes = (f"{machines} machines, {seconds:g} s per step, budget {budget_ms:g} ms, chunk {chunk} samples per message, score events "
             f"{score_events}; bare paho receive rate "
             f"{ceiling['receive_msg_per_s']:,.0f} msg/s (publisher {ceiling['publish_msg_per_s']:,.0f} msg/s). Highest rate held (p99 within the "
             "budget, nothing lost): " + ", ".join(f"{k} {v:,.0f} msg/s" for k, v in held.items()) + ". Latency from the intended send time of the "
             "message that completed a window to its score event at a subscriber (open loop: a late publisher counts). "
             f"Command: `linewatch bench e2e {bundle_path} --rates {rates} --formats {formats} --machines {machines} --seconds {seconds:g}"
             + (f" --chunk {chunk}" if chunk != 10 else "") + (f" --score-events {score_events}" if score_events != "window" else "")
             + (f" --protocol {protocol}" if protocol != "auto" else "") + (f" --workers {workers}" if workers > 1 else "")
             + (" --status-page`" if status_page else "`") + (f"; status page read {poller.polls} times, {poller.failures} failed." if poller else "."))
    folder = Path(output)
    write_results(folder, "e2e", {"bundle": bundle.name, "budget_ms": budget_ms, "protocol": protocol, "score_events": score_events, "workers": workers,
                                  "status_page_polls": poller.polls if poller else None,
                                  "chunk": chunk, "paho_ceiling": ceiling, "highest_held_msg_per_s": held,
                                  "results": results},
                  ["system", "format", "offered msg/s", "samples/s", "p50 ms", "p99 ms", "max ms", "lost / expected", "late", "publisher lag ms",
                   *COST_COLUMNS], rows, notes, bundle_id=bundle.model_id)
    figure = plot_e2e(results, ceiling["receive_msg_per_s"], budget_ms, folder / "e2e.png")
    click.echo(f"wrote {folder / 'e2e.json'}, {folder / 'e2e.md'}" + (f", {figure}" if figure else ""))
