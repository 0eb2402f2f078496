"""``linewatch bench``: measured latency of what the machine can run, written as JSON, Markdown and a plot.

``bench backends BUNDLE`` times every inference backend this machine has for the bundle (ONNX
Runtime CPU per precision; the CUDA and TensorRT providers and native TensorRT engines on a GPU;
the ``.pt2`` program under torch where torch is installed), each in its own process.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import click

from edge_runtime.bundle import load_bundle
from export.results import write_results

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
        done = subprocess.run([sys.executable, "-m", "export.backend_bench", json.dumps(spec)], capture_output=True, text=True, timeout=timeout)
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


def plot(results: list[dict], path: Path, title: str) -> Path | None:
    """Per-window p50 and per-call p99 against batch size, one line per backend (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
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
    """Measure what this machine can do with a bundle: inference backends."""


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
def backends(bundle_path, backends, precisions, batches, seconds, min_calls, warmup, output):
    """Latency per call and per window of every inference backend, batch 1..256 (HDR histograms, one process each)."""
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
                  ["backend", "batch", "call p50", "p90", "p99", "p99.9", "max", "window p50", "windows/s", "notes"], table_rows(results), notes)
    figure = plot(results, folder / "backends.png", f"{bundle.name} ({bundle.manifest['model']['kind']}): inference latency by backend")
    click.echo(f"wrote {folder / 'backends.json'}, {folder / 'backends.md'}" + (f", {figure}" if figure else " (no plot: matplotlib missing)"))
