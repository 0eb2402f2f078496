"""GPU paths: CUDA training with mixed precision, ONNX Runtime CUDA/TensorRT providers, TensorRT engines.

These need an NVIDIA GPU (and tensorrt for the engine tests); CI has none, so they skip there
with the reason. Run them on a lent GPU machine with ``pytest -m gpu``.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA not available)"),
]

from helpers import tiny_detector  # noqa: E402
from train.models import MODELS  # noqa: E402


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_cuda_training_with_mixed_precision_scores_like_cpu(kind, plant_table):
    gpu = tiny_detector(kind, device="cuda").fit(plant_table)
    assert gpu.history_.device.startswith("cuda") and gpu.history_.mixed_precision
    cpu = tiny_detector(kind, device="cpu").fit(plant_table)
    labels = np.concatenate([s.labels for s in plant_table.series]).astype(bool)
    for detector in (gpu, cpu):
        scores = detector.score_samples(plant_table)
        ok = np.isfinite(scores)
        assert np.median(scores[ok & labels]) > np.median(scores[ok & ~labels])


def test_onnxruntime_cuda_provider_matches_cpu(runtime_bundle):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.scoring.backends import create_backend

    bundle = load_bundle(runtime_bundle)
    windows = np.random.default_rng(0).normal(size=(64, bundle.window, len(bundle.features))).astype(np.float32) + 1.0
    with create_backend(bundle, "onnxruntime") as cpu, create_backend(bundle, "onnxruntime-cuda") as cuda:
        np.testing.assert_allclose(cuda.infer(windows)[0], cpu.infer(windows)[0], rtol=1e-3)


def test_tensorrt_engines_build_match_and_refuse_another_gpu(runtime_bundle, runtime_run, tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT")
    import json
    import shutil

    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.contract.errors import BackendError
    from edge_runtime.scoring.backends import create_backend
    from export.bundler import export_run

    run_dir = runtime_run
    bundle = load_bundle(export_run(run_dir, tmp_path / "trt", fp16=True, tensorrt=True, max_batch=64, echo=lambda *_: None))
    for precision in ("fp32", "fp16"):
        entry = bundle.artifact("tensorrt", precision)
        assert entry["parity"]["passed"] and entry["tensorrt_build"]["gpu"]
    with create_backend(bundle, "tensorrt") as engine:
        assert engine.infer(np.zeros((4, bundle.window, len(bundle.features)), np.float32))[0].shape == (4,)
    moved = tmp_path / "moved"
    shutil.copytree(bundle.path, moved)
    manifest = json.loads((moved / "bundle.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["format"] == "tensorrt":
            entry["tensorrt_build"]["gpu"] = "Some Other GPU"
    (moved / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BackendError, match="was built for gpu 'Some Other GPU'"):
        create_backend(load_bundle(moved), "tensorrt").activate()
