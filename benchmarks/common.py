"""Shared helpers for the benchmarks: machine description and result writing (JSON + Markdown), training with the
defaults, and `linewatch bench e2e` runs of json samples.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import linewatch.results

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, results: dict, table_header: list[str], table_rows: list[list], notes: str = "", folder: str | None = None,
                  bundle_id: str | None = None) -> Path:
    """Write ``results/[folder/]<name>.json`` and ``.md`` (a table with its commit, command, bundle and machine), and print it.

    ``folder`` names a device's own results (``nvidia-h200``) apart from this CPU machine's.
    """
    return linewatch.results.write_results(RESULTS / folder if folder else RESULTS, name, results, table_header, table_rows, notes,
                                           bundle_id=bundle_id)


def train_with_defaults(table, seed: int, work: Path, **params) -> tuple:
    """``(detector, bundle, warnings)``: train on ``table`` as ``linewatch train`` does by default (window and stride
    from the data's length), save the run, export and load the bundle, all under ``work``.
    """
    import warnings

    from edge_runtime.contract.bundle import load_bundle
    from export.bundler import export_run
    from train.detector import AutoencoderDetector
    from train.windows import default_window

    window, stride = default_window([len(s) for s in table.series])
    detector = AutoencoderDetector(window=window, stride=stride, seed=seed, progress=False, device="cpu", **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector.fit(table)
    detector.save(work / "run")
    bundle = load_bundle(export_run(work / "run", work / "bundle", echo=lambda *_: None))
    return detector, bundle, [str(w.message) for w in caught]


def rounds_arguments(description: str, rounds: int, rates: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark that repeats `linewatch bench e2e`: the bundle, ``--rounds``, ``--rates`` (offered
    msg/s) and ``--seconds`` per step.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("bundle")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--rates", default=rates)
    parser.add_argument("--seconds", type=float, default=5.0)
    return parser


def bench_e2e(bundle: str, folder: Path, rates: str, seconds: float, *options: str) -> dict:
    """One `linewatch bench e2e` run of json samples in its own process, results in ``folder``; returns its JSON."""
    subprocess.run([sys.executable, "-m", "linewatch", "bench", "e2e", bundle, "--formats", "json", "--no-peer", "--rates", rates,
                    "--seconds", str(seconds), "-o", str(folder), *options], check=True)
    return json.loads((folder / "e2e.json").read_text())
