"""Parity of every artifact against torch eager on real windows, and the effect on calibration scores."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge_runtime.contract.bundle import OUTPUT_NAMES

# Relative tolerance per precision; the absolute tolerance is the same fraction of the median
# reference score (both outputs are in score units), so near-zero values do not dominate.
TOLERANCES = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.25}


class ParityError(RuntimeError):
    """An artifact that misses its tolerance or cannot run."""


def compare(reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray], rtol: float) -> dict:
    """Max absolute and relative error per output, and how far the worst element is from passing."""
    report = {"rtol": rtol}
    worst = 0.0
    atol = rtol * float(np.median(np.abs(reference[0]))) + 1e-12
    for name, ref, got in zip(OUTPUT_NAMES, reference, candidate):
        ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
        error = np.abs(got - ref)
        ratio = float(np.max(error / (atol + rtol * np.abs(ref))))
        nonzero = np.abs(ref) > 0
        report[name] = {
            "max_abs": float(error.max()),
            "max_rel": float(np.max(error[nonzero] / np.abs(ref[nonzero]))) if nonzero.any() else 0.0,
            "atol": atol,
        }
        worst = max(worst, ratio)
    report["worst_over_tolerance"] = worst
    report["passed"] = bool(worst <= 1.0)
    return report


def calibration_effect(reference_scores: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """How a variant moves the calibration score quantiles and the decisions at the threshold."""
    quantiles = (0.5, 0.9, 0.99)
    return {
        "quantiles_reference": {str(q): float(np.quantile(reference_scores, q)) for q in quantiles},
        "quantiles": {str(q): float(np.quantile(scores, q)) for q in quantiles},
        "decision_flips": float(np.mean((scores > threshold) != (reference_scores > threshold))),
    }


@torch.no_grad()
def eager_outputs(scorer: torch.nn.Module, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference outputs from the scoring module in eager mode."""
    score, feature_error = scorer.eval()(torch.from_numpy(windows))
    return score.numpy(), feature_error.numpy()


@torch.no_grad()
def pt2_outputs(path: Path, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of a saved torch.export program on the graph's inputs."""
    module = torch.export.load(str(path)).module()
    score, feature_error = module(*(torch.from_numpy(a) for a in inputs.values()))
    return score.numpy(), feature_error.numpy()


def onnx_outputs(path: Path, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of an ONNX artifact under ONNX Runtime CPU on the graph's inputs, in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "inputs.npz", **inputs)
        out = Path(tmp) / "o.npz"
        done = subprocess.run([sys.executable, "-m", "export.ort_child", str(path), str(Path(tmp) / "inputs.npz"), str(out)],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            reason = f"killed by {signal.Signals(-done.returncode).name}" if done.returncode < 0 else done.stderr.strip().splitlines()[-1:]
            raise ParityError(f"{path.name}: ONNX Runtime (CPU) could not run it ({reason}); leave this variant out")
        with np.load(out, allow_pickle=False) as data:
            return data["score"], data["feature_error"]


def check(name: str, reference: tuple, candidate: tuple, precision: str, threshold: float, tolerances: dict | None = None) -> dict:
    """Compare an artifact's outputs; raise :class:`ParityError` saying by how much it missed.

    ``tolerances`` overrides :data:`TOLERANCES` per precision.
    """
    rtol = {**TOLERANCES, **(tolerances or {})}[precision]
    report = compare(reference, candidate, rtol)
    report["windows"] = int(len(reference[0]))
    report["calibration"] = calibration_effect(reference[0], candidate[0], threshold)
    if not report["passed"]:
        s = report["score"]
        advice = ""
        if precision == "int8":
            needed = rtol * report["worst_over_tolerance"]  # the atol scales with rtol too; rounded up to two digits
            step = 10.0 ** (math.floor(math.log10(needed)) - 1)
            advice = ("; int8 rounding shows most in the sensors the model reconstructs best, each read against its own small "
                      f"normal error: --fp16 keeps parity, or accept these deviations with --tolerance int8={math.ceil(needed / step) * step:g}")
        raise ParityError(
            f"{name}: parity failed: worst error is {report['worst_over_tolerance']:.3g}x the {precision} tolerance "
            f"(rtol {rtol:g}); score max abs {s['max_abs']:.3g}, max rel {s['max_rel']:.3g}{advice}"
        )
    return report
