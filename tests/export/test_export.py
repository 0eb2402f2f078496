"""Export round trips, parity, and the bundle contract (hashes, schema version)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from click.testing import CliRunner  # noqa: E402

from edge_runtime.contract.bundle import load_bundle  # noqa: E402
from edge_runtime.contract.errors import BundleError  # noqa: E402
from export.bundler import export_run  # noqa: E402
from export.parity import ParityError, compare  # noqa: E402
from helpers import FP16_KINDS  # noqa: E402
from linewatch.cli import main  # noqa: E402
from train.models import MODELS  # noqa: E402


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_round_trip_train_export_score(kind, kind_bundles, plant_csv, plant_table, tmp_path):
    detector, bundle_dir = kind_bundles[kind]
    bundle = load_bundle(bundle_dir)
    expected = {("pt2", "fp32"), ("onnx", "fp32")} | ({("onnx", "fp16")} if kind in FP16_KINDS else set())
    assert {(a["format"], a["precision"]) for a in bundle.manifest["artifacts"]} == expected
    for artifact in bundle.manifest["artifacts"]:
        assert artifact["parity"]["passed"]
        if artifact["precision"] == "fp32":
            assert artifact["parity"]["score"]["max_rel"] < 1e-4
    assert bundle.features == detector.features_ and bundle.threshold == detector.threshold_
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(main, ["score", str(bundle_dir), str(plant_csv), "--series-column", "machine", "-o", str(out)])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    expected = detector.score_samples(plant_table)
    np.testing.assert_array_equal(np.isnan(scored["score"].to_numpy()), np.isnan(expected))
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=1e-4, atol=1e-7)
    assert (scored["flag"].to_numpy() == (np.nan_to_num(expected, nan=-1) > detector.threshold_)).mean() > 0.999
    assert scored["time"].iloc[0] == pd.read_csv(plant_csv)["time"].iloc[0]  # the input's own time format
    assert set(scored["file"]) == {str(plant_csv)}


@pytest.mark.slow
def test_variants_record_parity_and_calibration_effect(kind_bundles, tmp_path):
    run_dir = kind_bundles["conv"][1].parent / "run_conv"
    bundle = load_bundle(export_run(run_dir, tmp_path / "b", fp16=True, int8=True, echo=lambda *_: None))
    for precision in ("fp16", "int8"):
        artifact = bundle.artifact("onnx", precision)
        assert artifact["parity"]["passed"]
        assert set(artifact["parity"]["calibration"]) == {"quantiles_reference", "quantiles", "decision_flips"}


@pytest.mark.slow
def test_a_variant_that_misses_its_tolerance_is_refused_by_name(kind_bundles, tmp_path):
    run_dir = kind_bundles["pca"][1].parent / "run_pca"  # its FP16 reconstruction is too coarse for the residual distance
    with pytest.raises(ParityError, match=r"model\.fp16\.onnx: parity failed: worst error is [\d.]+x the fp16 tolerance"):
        export_run(run_dir, tmp_path / "b", fp16=True, echo=lambda *_: None)
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_failed_parity_says_by_how_much_and_writes_nothing(kind_bundles, tmp_path):
    run_dir = kind_bundles["dense"][1].parent / "run_dense"
    with pytest.raises(ParityError, match=r"parity failed: worst error is [\d.e+]+x the fp32 tolerance \(rtol 1e-12\)"):
        export_run(run_dir, tmp_path / "strict", tolerances={"fp32": 1e-12}, echo=lambda *_: None)
    assert not (tmp_path / "strict").exists() and not (tmp_path / "strict.partial").exists()


@pytest.mark.slow
def test_a_failed_int8_artifact_says_which_tolerance_would_pass(kind_bundles, tmp_path):
    import re

    run_dir = kind_bundles["conv"][1].parent / "run_conv"
    with pytest.raises(ParityError, match="--fp16 keeps parity") as failure:
        export_run(run_dir, tmp_path / "strict", int8=True, tolerances={"int8": 1e-5}, echo=lambda *_: None)
    needed = float(re.search(r"--tolerance int8=([\d.e-]+)", str(failure.value)).group(1))
    bundle = load_bundle(export_run(run_dir, tmp_path / "b", int8=True, tolerances={"int8": needed}, echo=lambda *_: None))
    assert bundle.artifact("onnx", "int8")["parity"]["passed"]


def test_compare_reports_max_errors():
    ref = (np.array([1.0, 2.0]), np.array([[1.0], [2.0]]))
    got = (np.array([1.0, 2.2]), np.array([[1.0], [2.0]]))
    report = compare(ref, got, rtol=0.01)
    assert report["score"]["max_abs"] == pytest.approx(0.2) and report["score"]["max_rel"] == pytest.approx(0.1)
    assert not report["passed"]


def test_tampered_missing_and_unknown_version_are_refused(kind_bundles, tmp_path):
    source = kind_bundles["pca"][1]
    bundle_dir = tmp_path / "b"
    shutil.copytree(source, bundle_dir)
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    expected = manifest["artifacts"][1]["sha256"]
    onnx_file = bundle_dir / "model.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"model.onnx: artifact altered: expected sha256 {expected}, actual [0-9a-f]{{64}}"):
        load_bundle(bundle_dir)
    onnx_file.unlink()
    with pytest.raises(BundleError, match="model.onnx: artifact missing"):
        load_bundle(bundle_dir)
    shutil.copy(source / "model.onnx", onnx_file)
    load_bundle(bundle_dir)
    manifest["schema_version"] = 99
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"schema_version 99 is not supported; this build reads \[1\]"):
        load_bundle(bundle_dir)
    manifest["schema_version"] = 1
    del manifest["input"]["stride"]
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="input: missing key 'stride'"):
        load_bundle(bundle_dir)


def test_inspect_shows_summary_and_parity(kind_bundles):
    result = CliRunner().invoke(main, ["inspect", str(kind_bundles["lstm"][1])])
    assert result.exit_code == 0, result.output
    assert "all hashes verified" in result.output and "model.onnx" in result.output and "lstm" in result.output
    assert "lstm {'hidden': 16} + residual and operating-point distances" in result.output  # what the score is made of
    assert " epochs on cpu" in result.output
    result = CliRunner().invoke(main, ["inspect", str(kind_bundles["pca"][1])])
    assert result.exit_code == 0 and "closed form on cpu" in result.output  # PCA has no epochs


def test_runtime_loads_and_scores_a_bundle_without_torch(kind_bundles, plant_csv):
    from helpers import run_without_torch

    result = run_without_torch(
        f"from edge_runtime.contract.bundle import load_bundle\n"
        f"from edge_runtime.scoring.backends import create_backend\n"
        f"from edge_runtime.scoring.offline import score_series\n"
        f"from edge_runtime.contract.tables import read_csv\n"
        f"import numpy as np\n"
        f"b = load_bundle({str(kind_bundles['lstm'][1])!r})\n"
        f"series = read_csv({str(plant_csv)!r}, b.features, 'machine')\n"
        f"with create_backend(b) as runner:\n"
        f"    rows = score_series(series[0], runner)\n"
        f"assert np.isfinite(rows).sum() > 1000\n"
        f"assert 'torch' not in sys.modules\n"
        f"print('scored', np.isfinite(rows).sum())\n"
    )
    assert result.returncode == 0, result.stderr
    assert "scored" in result.stdout


def test_tensorrt_without_tensorrt_says_how_to_get_it(kind_bundles, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; the GPU tests cover it")
    run_dir = kind_bundles["dense"][1].parent / "run_dense"
    result = CliRunner().invoke(main, ["export", str(run_dir), "-o", str(tmp_path / "t"), "--tensorrt"])
    assert result.exit_code == 1 and "TensorRT is not installed" in result.output and "linewatch[tensorrt]" in result.output


def test_the_opsets_are_read_as_onnx_reads_them(runtime_bundle):
    import onnx

    from edge_runtime import doctor
    from edge_runtime.contract.bundle import load_bundle

    path = load_bundle(runtime_bundle).artifact_path("onnx", "fp32")
    assert doctor.onnx_opsets(path) == {o.domain: o.version for o in onnx.load(str(path)).opset_import}
