"""Turn a training run directory into a verified bundle."""

from __future__ import annotations

import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from edge_runtime.contract.bundle import CONDITION_NAME, INPUT_NAME, OUTPUT_NAMES, SCHEMA_VERSION, describe_artifact, load_bundle, write_manifest
from edge_runtime.contract.conditions import CONDITION_MARGIN
from export import graphs, parity
from train.detector import AutoencoderDetector

LOG_FILE = "export.log"


def _versions() -> dict:
    import onnx
    import onnxruntime

    from edge_runtime import __version__

    return {"linewatch": __version__, "python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def export_run(run_dir: str | Path, out_dir: str | Path, fp16: bool = False, int8: bool = False, tensorrt: bool = False,
               units: dict[str, str] | None = None, name: str | None = None, max_batch: int = 256,
               tolerances: dict[str, float] | None = None, echo=print) -> Path:
    """Export ``run_dir`` to the bundle folder ``out_dir``; every artifact passes parity or nothing is written.

    The bundle is assembled in a temporary sibling folder and moved into place only when
    complete, so a failed export never leaves a half-written bundle behind.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    detector = AutoencoderDetector.load(run_dir)
    if detector.conditions_ and tensorrt:
        raise ValueError(f"{run_dir}: TensorRT engines for a conditional model (conditions {[c.name for c in detector.conditions_]}) "
                         "are not built yet; export without --tensorrt")
    units = units or {}
    named = [*detector.features_, *(c.name for c in detector.conditions_)]
    unknown = set(units) - set(named)
    if unknown:  # checked before minutes of exporting, not after
        raise ValueError(f"--units names unknown feature(s) {sorted(unknown)}; features and conditions are {named}")
    windows = np.ascontiguousarray(detector.calibration_windows_, dtype=np.float32)
    if len(windows) == 0:
        raise parity.ParityError(f"{run_dir}: no calibration windows to check parity on")
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _build(detector, staging, windows, fp16, int8, tensorrt, units, name or run_dir.name, max_batch, tolerances, echo)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    load_bundle(out_dir)  # the written bundle must load and verify
    return out_dir


def _build(detector, staging: Path, windows: np.ndarray, fp16: bool, int8: bool, tensorrt: bool, units, name: str,
           max_batch: int, tolerances: dict | None, echo) -> None:
    """Write and check every artifact and the manifest into ``staging``."""
    scorer = detector.scorer_
    log = staging / LOG_FILE
    conditional, n = bool(detector.conditions_), len(detector.features_)
    inputs = graphs.graph_inputs(windows, n, conditional)
    example = graphs.graph_inputs(windows[: min(8, len(windows))], n, conditional)
    reference = parity.eager_outputs(scorer, windows)
    threshold = detector.threshold_
    artifacts = []

    def add(file: str, fmt: str, precision: str, make, outputs_of) -> None:
        """Write an artifact with ``make(path)``, run it with ``outputs_of(path)``, check parity, record it."""
        started = time.perf_counter()
        path = staging / file
        make(path)
        report = parity.check(file, reference, outputs_of(path), precision, threshold, tolerances)
        artifacts.append(describe_artifact(staging, file, fmt, precision, report))
        echo(f"  {file:<22} parity ok: score max abs {report['score']['max_abs']:.2e}, max rel {report['score']['max_rel']:.2e} "
             f"({time.perf_counter() - started:.1f} s)")

    echo(f"exporting {detector.kind} (exporter chatter goes to {LOG_FILE} in the bundle)")
    onnx_path = staging / "model.onnx"
    add("model.pt2", "pt2", "fp32", lambda p: graphs.export_pt2(scorer, example, p, log), lambda p: parity.pt2_outputs(p, inputs))
    add("model.onnx", "onnx", "fp32", lambda p: graphs.export_onnx(scorer, example, p, log), lambda p: parity.onnx_outputs(p, inputs))
    if fp16:
        add("model.fp16.onnx", "onnx", "fp16", lambda p: graphs.onnx_fp16(onnx_path, p), lambda p: parity.onnx_outputs(p, inputs))
    if int8:
        add("model.int8.onnx", "onnx", "int8", lambda p: graphs.onnx_int8(onnx_path, p, log), lambda p: parity.onnx_outputs(p, inputs))
    manifest = _manifest(detector, artifacts, name, units)
    write_manifest(staging, manifest)
    if tensorrt:
        _add_engines(staging, manifest, detector, reference, fp16, max_batch, windows, tolerances, echo)
        write_manifest(staging, manifest)


def _add_engines(folder: Path, manifest: dict, detector, reference, fp16: bool, max_batch: int, windows: np.ndarray, tolerances, echo) -> None:
    """Build FP32 (and FP16) engines on this GPU, check their parity through the runtime backend."""
    from edge_runtime.contract.bundle import Bundle
    from edge_runtime.scoring.backends import TensorRTBackend, import_tensorrt
    from export.tensorrt_build import build_engine, tensorrt_major

    major = tensorrt_major(import_tensorrt())
    for precision in ("fp32", "fp16") if fp16 else ("fp32",):
        source = folder / ("model.fp16.onnx" if precision == "fp16" and major >= 11 else "model.onnx")
        file = f"model.{precision}.engine"
        facts = build_engine(source, folder / file, detector.window, len(detector.features_), max_batch, fp16=precision == "fp16",
                             timing_cache=folder / "timing.cache")
        entry = describe_artifact(folder, file, "tensorrt", precision, {}, tensorrt_build=facts)
        manifest["artifacts"].append(entry)
        with TensorRTBackend(Bundle(folder, manifest), precision, max_batch) as backend:
            outputs = [backend.infer(windows[i : i + backend.max_batch]) for i in range(0, len(windows), backend.max_batch)]
        candidate = (np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs]))
        entry["parity"] = parity.check(file, reference, candidate, precision, detector.threshold_, tolerances)
        echo(f"  {file:<22} parity ok on {facts['gpu']} (TensorRT {facts['tensorrt']})")


def _manifest(detector: AutoencoderDetector, artifacts: list, name: str, units: dict[str, str]) -> dict:
    history = detector.history_
    w, f = detector.window, len(detector.features_)
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"kind": detector.kind, "params": detector.model_params, "distances": bool(detector.distances)},
        "input": {
            "window": w,
            "stride": detector.stride,
            "features": [{"name": n, "unit": units.get(n, "")} for n in detector.features_],
            "sample_period": detector.sample_period_,
            "max_gap": detector.max_gap_,
            "gap_rule": "hold the last value up to max_gap seconds; a longer gap restarts the stream",
            **({"conditions": [{**c, "unit": units.get(c["name"], "")} for c in detector.condition_specs()],
                "condition_rule": "the condition at the window's last sample: numeric as it is, categorical as the index of its "
                                  f"category; a missing value, an unknown category or a number more than {CONDITION_MARGIN:.0%} of the "
                                  "trained range outside it is not scored"} if detector.conditions_ else {}),
        },
        "graph": {
            "inputs": [{"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", w, f]},
                       *([{"name": CONDITION_NAME, "dtype": "float32", "shape": ["batch", len(detector.conditions_)]}] if detector.conditions_ else [])],
            "outputs": [{"name": OUTPUT_NAMES[0], "dtype": "float32", "shape": ["batch"]},
                        {"name": OUTPUT_NAMES[1], "dtype": "float32", "shape": ["batch", f]}],
            "score": "the largest channel error: each feature's mean squared reconstruction error over the standardised window "
                     "(and the model term), divided by its mean on normal calibration windows and by its tail factor (how far it "
                     "strays against another stretch's mean, relative to the other channels)"
                     + ("; and the residual and operating-point distances (Mahalanobis, against normal windows), each weighed to "
                        "exceed as often as the errors on held-out windows" if detector.distances else "")
                     + "; feature_error holds the features' errors in those units (1 is typical); higher is more anomalous",
        },
        "threshold": {**detector.threshold_record(), "calibration_quantiles": detector.calibration_quantiles_},
        "artifacts": artifacts,
        "training": {
            "data_fingerprint": detector.data_fingerprint_,
            "windows": detector.training_windows_,
            "epochs_run": len(history.train_loss),
            "closed_form": history.closed_form,
            "best_epoch": history.best_epoch,
            "final_train_loss": history.train_loss[-1],
            "best_val_loss": float(min(history.val_loss)),
            "seconds": history.seconds,
            "device": history.device,
            **({"selection": detector.selection_} if getattr(detector, "selection_", None) else {}),
        },
        "versions": _versions(),
    }
