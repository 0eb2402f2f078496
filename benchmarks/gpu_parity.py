"""GPU backends against ONNX Runtime CPU on real windows: score agreement and decision flips at the threshold.

For each bundle, windows are cut from a CSV (the synthetic plant, faults included, so scores fall
on both sides of the threshold) and scored by every GPU backend this machine has and by ONNX
Runtime CPU FP32, the reference the export's own parity check uses. Usage::

    python -m benchmarks.gpu_parity DATA.csv BUNDLE [BUNDLE ...] [--series-column machine] [--results nvidia-h200]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import write_results
from edge_runtime.contract.bundle import load_bundle
from edge_runtime.contract.errors import BackendError, BundleError
from linewatch.backend_bench import open_backend
from linewatch.bench import candidate_backends
from train.data import read_table
from train.windows import window_view


def windows_of(table, window: int, stride: int, limit: int = 4096) -> np.ndarray:
    """Sliding windows ``[N, W, F]`` (float32) over every series, at most ``limit``."""
    return np.concatenate([window_view(s.values, window)[::stride] for s in table.series])[:limit].astype(np.float32)


def scores(bundle, name: str, precision: str, windows: np.ndarray) -> np.ndarray:
    """Scores of all windows through one backend, in batches its profile allows."""
    with open_backend(bundle, name, precision, 256) as backend:
        step = backend.max_batch
        return np.concatenate([backend.infer(windows[i : i + step])[0] for i in range(0, len(windows), step)])


def compare(bundle, windows: np.ndarray) -> list[dict]:
    """One row per GPU backend: max relative score difference and decision flips against ONNX Runtime CPU FP32."""
    reference = scores(bundle, "onnxruntime-cpu", "fp32", windows)
    threshold = bundle.threshold
    rows = []
    for name, precision in candidate_backends(bundle):
        if name.endswith("cpu"):
            continue
        try:
            candidate = scores(bundle, name, precision, windows)
        except (BackendError, BundleError, RuntimeError) as error:  # RuntimeError: torch refusing the program on this device
            rows.append({"backend": name, "precision": precision, "skipped": str(error).strip().splitlines()[-1]})
            continue
        rel = np.abs(candidate - reference) / np.maximum(np.abs(reference), 1e-6)
        flips = int(np.sum((candidate > threshold) != (reference > threshold)))
        rows.append({"backend": name, "precision": precision, "windows": len(windows), "max_rel": float(rel.max()),
                     "p99_rel": float(np.quantile(rel, 0.99)), "decision_flips": flips, "above_threshold": int(np.sum(reference > threshold))})
    return rows


def main() -> None:
    """Run and write results/[folder/]gpu_parity.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--series-column", default="machine")
    parser.add_argument("--results", default=None, help="results sub-folder, e.g. the GPU's name")
    args = parser.parse_args()
    results, table_rows = [], []
    for path in args.bundles:
        bundle = load_bundle(path)
        table = read_table(args.data, features=bundle.features, series_column=args.series_column)
        export_parity = {f"{a['format']}/{a['precision']}": a["parity"]["passed"] for a in bundle.manifest["artifacts"]}
        rows = compare(bundle, windows_of(table, bundle.window, bundle.stride))
        results.append({"bundle": path, "model": bundle.manifest["model"]["kind"], "export_parity_passed": export_parity, "gpu": rows})
        for row in rows:
            if "skipped" in row:
                table_rows.append([bundle.manifest["model"]["kind"], f"{row['backend']} {row['precision']}", "-", "-", "-", f"skipped: {row['skipped']}"])
            else:
                table_rows.append([bundle.manifest["model"]["kind"], f"{row['backend']} {row['precision']}", f"{row['max_rel']:.2e}", f"{row['p99_rel']:.2e}",
                                   f"{row['decision_flips']} of {row['windows']} ({row['above_threshold']} above)",
                                   "export parity: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in export_parity.items())])
    write_results("gpu_parity", {"data": args.data, "results": results},
                  ["model", "backend", "max rel. score diff", "p99 rel.", "decision flips", "notes"], table_rows,
                  "Reference: ONNX Runtime CPU FP32 on the same windows. Command: `python -m benchmarks.gpu_parity "
                  f"{args.data} ...`.", folder=args.results)


if __name__ == "__main__":
    main()
