"""Conditional models on the training side: condition columns read, encoded in the scorer, never reconstructed,
unseen values reported and not scored, runs saved and loaded, export refused until the runtime carries conditions.
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import tiny_detector  # noqa: E402
from train.data import Condition, read_table  # noqa: E402
from train.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def regime_csv(tmp_path_factory):
    from train.simulate import simulate_plant, write_table

    frame, _ = simulate_plant(machines=2, rows=9000, normal_rows=9000, faults_per_machine=0, seed=5, regimes=True)
    path = tmp_path_factory.mktemp("regimes") / "plant.csv"
    write_table(frame, str(path))
    return path


def test_conditions_are_read_apart_from_the_features(regime_csv):
    table = read_table(regime_csv, series_column="machine", conditions=["setpoint", "recipe"])
    assert "setpoint" not in table.features and len(table.features) == 6
    assert [c.to_dict() for c in table.conditions] == [{"name": "setpoint", "kind": "numeric", "categories": []},
                                                       {"name": "recipe", "kind": "categorical", "categories": ["A", "B", "C"]}]
    values = table.series[0].values
    assert values.shape[1] == 8 and set(np.unique(values[:, 7])) <= {0.0, 1.0, 2.0}
    trained = [Condition("setpoint", "numeric"), Condition("recipe", "categorical", ["A", "C"])]  # a model that never saw B
    codes = read_table(regime_csv, series_column="machine", conditions=trained).series[0].values[:, 7]
    assert set(np.unique(codes)) <= {0.0, 1.0, -1.0} and (codes == -1).any()  # B reads as unseen
    with pytest.raises(DataError, match=r"condition column\(s\) \['speed_stage'\] not found"):
        read_table(regime_csv, series_column="machine", conditions=["speed_stage"])


def test_categories_come_from_every_file_not_the_first(regime_csv, tmp_path):
    import pandas as pd

    frame = pd.read_csv(regime_csv)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    frame[frame.recipe == "B"].to_csv(first, index=False)  # the first file knows only B
    frame[frame.recipe != "B"].to_csv(second, index=False)
    table = read_table([first, second], series_column="machine", conditions=["recipe"])
    assert table.conditions[0].categories == ["A", "B", "C"]
    codes = np.concatenate([s.values[:, -1] for s in table.series])
    assert set(np.unique(codes)) == {0.0, 1.0, 2.0}  # none read as unseen


def test_conditional_model_scores_saves_loads_and_refuses_what_it_never_saw(regime_csv, tmp_path):
    table = read_table(regime_csv, series_column="machine", conditions=["setpoint", "recipe"])
    detector = tiny_detector("dense", conditions=["setpoint", "recipe"], calibration="holdout").fit(table)
    scorer = detector.scorer_
    assert scorer.model.encoder[0].in_features == 20 * 6 + 1 + 3  # the window, the set-point, a one-hot of three recipes
    assert scorer.model.decoder[0].in_features == 4 + 1 + 3
    scores = detector.score_samples(table)
    assert np.isfinite(scores).mean() > 0.9
    window = np.ascontiguousarray(detector.calibration_windows_[:1])
    recipe = window.copy()
    recipe[:, -1, 7] = (recipe[0, -1, 7] + 1) % 3  # the same sensors under another product: another score
    assert detector.score_windows(recipe)[0][0] != pytest.approx(detector.score_windows(window)[0][0])
    early = window.copy()
    early[:, :-1, 6:] = 0.0  # only the last sample's conditions count
    assert detector.score_windows(early)[0][0] == pytest.approx(detector.score_windows(window)[0][0])
    detector.save(tmp_path / "run")
    loaded = type(detector).load(tmp_path / "run")
    np.testing.assert_allclose(loaded.score_samples(table), scores, rtol=1e-5)
    narrow = [Condition("setpoint", "numeric"), Condition("recipe", "categorical", ["A", "B", "C"])]
    unseen = read_table(regime_csv, series_column="machine", conditions=narrow)
    unseen.series[0].values[:3000, 6] = 5.0  # a set-point far outside the trained 0.2 .. 1.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = loaded.score_samples(unseen)
    assert any("not scored: their operating conditions were not seen in training" in str(w.message) for w in caught)
    assert np.isnan(rows[100:3000]).all() and np.isfinite(rows[3100:9000]).mean() > 0.9


def test_conditions_only_with_the_conditional_kinds(regime_csv):
    table = read_table(regime_csv, series_column="machine", conditions=["recipe"])
    with pytest.raises(DataError, match="conditions work with the dense and vae models, not 'conv'"):
        tiny_detector("conv", conditions=["recipe"]).fit(table)
    with pytest.raises(DataError, match=r"the data carries conditions \[\], the detector expects \['recipe'\]"):
        tiny_detector("vae", conditions=["recipe"]).fit(read_table(regime_csv, series_column="machine"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "vae"])
def test_conditional_export_takes_window_and_condition_with_parity(kind, regime_csv, tmp_path):
    import onnxruntime as ort

    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.contract.errors import BackendError
    from edge_runtime.scoring.backends import create_backend
    from export.bundler import export_run

    table = read_table(regime_csv, series_column="machine", conditions=["setpoint", "recipe"])
    detector = tiny_detector(kind, conditions=["setpoint", "recipe"], calibration="holdout").fit(table)
    detector.save(tmp_path / "run")
    bundle = load_bundle(export_run(tmp_path / "run", tmp_path / "bundle", fp16=True, echo=lambda *_: None))
    assert [i["name"] for i in bundle.manifest["graph"]["inputs"]] == ["window", "condition"]
    assert bundle.manifest["graph"]["inputs"][1]["shape"] == ["batch", 2]
    assert [c["name"] for c in bundle.conditions] == ["setpoint", "recipe"] and bundle.conditions[1]["categories"] == ["A", "B", "C"]
    assert all(a["parity"]["passed"] for a in bundle.manifest["artifacts"])
    windows = np.ascontiguousarray(detector.calibration_windows_[:64])
    session = ort.InferenceSession(str(bundle.artifact_path("onnx")), providers=["CPUExecutionProvider"])
    score, _ = session.run(None, {"window": windows[..., :6], "condition": np.ascontiguousarray(windows[:, -1, 6:])})
    np.testing.assert_allclose(score, detector.score_windows(windows)[0], rtol=1e-4, atol=1e-6)  # what training scored
    with create_backend(bundle) as backend:  # the runtime's backend feeds both inputs from windows with condition channels
        np.testing.assert_allclose(backend.infer(windows)[0], score, rtol=1e-6)
    with pytest.raises(BackendError, match="TensorRT engines of conditional models are not built yet"):
        create_backend(bundle, "tensorrt").activate()
    with pytest.raises(ValueError, match="TensorRT engines for a conditional model"):
        export_run(tmp_path / "run", tmp_path / "trt", tensorrt=True)


@pytest.mark.slow
def test_train_and_evaluate_take_conditions_on_the_command_line(regime_csv, tmp_path):
    import json

    from click.testing import CliRunner

    from linewatch.cli import main

    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(regime_csv), "--series-column", "machine", "--conditions", "setpoint,recipe",
                                       "--window", "20", "--epochs", "2", "--max-windows", "1500", "--quiet", "-o", str(run)])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "dense"  # with conditions and no --model, the default is a conditional kind, not PCA
    assert [c["name"] for c in config["conditions"]] == ["setpoint", "recipe"] and config["conditions"][1]["categories"] == ["A", "B", "C"]
    assert config["conditions"][0]["min"] == pytest.approx(0.2) and config["conditions"][0]["max"] == pytest.approx(1.0)
    result = CliRunner().invoke(main, ["evaluate", str(run), str(regime_csv), "--series-column", "machine", "-o", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "alarm_policy_far" in result.output
    result = CliRunner().invoke(main, ["export", str(run), "-o", str(tmp_path / "bundle"), "--units", "setpoint=load fraction,current=A"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "bundle")])
    assert "condition recipe: categorical, categories A, B, C (graph input 'condition'" in result.output
    assert "condition setpoint: numeric, trained range 0.2 .. 1 load fraction" in result.output
