"""One conformance suite over every model kind: the contract the exporter and the runtime rely on.

Shapes and dtypes, eval-mode determinism, batch invariance (the cross-machine batcher puts
windows of different machines in one batch), torch <-> ONNX parity for FP32 and FP16 where the
kind has an FP16 variant, save/load round trips, and the errors of misuse.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_runtime.contract.bundle import load_bundle  # noqa: E402
from edge_runtime.scoring.backends import create_backend  # noqa: E402
from helpers import FP16_KINDS, tiny_detector  # noqa: E402
from train.detector import AutoencoderDetector  # noqa: E402
from train.errors import DataError, NotFittedError  # noqa: E402
from train.models import MODELS, build_model  # noqa: E402
from train.scoring import WindowScorer  # noqa: E402

KINDS = sorted(MODELS)


def windows_of(detector, n: int = 64) -> np.ndarray:
    """Real windows of the plant (the detector's calibration windows)."""
    return np.ascontiguousarray(detector.calibration_windows_[:n], dtype=np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_output_shapes_and_dtypes(kind, kind_bundles):
    detector, _ = kind_bundles[kind]
    windows = windows_of(detector, 7)
    score, feature_error = detector.scorer_(torch.from_numpy(windows))
    assert score.shape == (7,) and feature_error.shape == (7, len(detector.features_))
    assert score.dtype == feature_error.dtype == torch.float32
    assert torch.isfinite(score).all() and (feature_error >= 0).all()
    assert torch.all(score >= feature_error.amax(1) - 1e-6)  # the most departed channel; the score term (KL, T²) one of them


@pytest.mark.parametrize("kind", KINDS)
def test_eval_mode_is_deterministic(kind, kind_bundles):
    detector, _ = kind_bundles[kind]
    windows = windows_of(detector)
    assert not detector.scorer_.training
    first, second = detector.score_windows(windows), detector.score_windows(windows)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


@pytest.mark.parametrize("kind", KINDS)
def test_a_windows_score_does_not_depend_on_its_batch(kind, kind_bundles):
    detector, _ = kind_bundles[kind]
    windows = windows_of(detector)
    together, _ = detector.score_windows(windows)
    alone = np.array([detector.score_windows(windows[i : i + 1])[0][0] for i in range(len(windows))])
    shuffled = np.random.default_rng(0).permutation(len(windows))
    in_other_order, _ = detector.score_windows(windows[shuffled])
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(in_other_order, together[shuffled], rtol=1e-5, atol=1e-7)


# FP16 only where the kind has the variant (see helpers.FP16_KINDS)
@pytest.mark.parametrize(("kind", "precision"), [(k, "fp32") for k in KINDS] + [(k, "fp16") for k in FP16_KINDS])
def test_onnx_artifact_matches_torch(kind, precision, kind_bundles):
    detector, bundle_dir = kind_bundles[kind]
    windows = windows_of(detector)
    reference, reference_error = detector.score_windows(windows)
    with create_backend(load_bundle(bundle_dir), "onnxruntime", precision, max_batch=len(windows)) as backend:
        score, feature_error = backend.infer(windows)
    if precision == "fp32":
        np.testing.assert_allclose(score, reference, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(feature_error, reference_error, rtol=1e-3, atol=1e-5)
    else:  # half precision: within a few percent of the score, relative to the typical score
        assert np.max(np.abs(score - reference)) <= 0.02 * np.max(np.abs(reference)) + 0.02 * np.median(reference)


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip(kind, kind_bundles, plant_table, tmp_path):
    detector, _ = kind_bundles[kind]
    run_dir = detector.save(tmp_path / kind)
    assert (run_dir / "loss_curve.csv").read_text().startswith("epoch,train_loss,val_loss")
    reloaded = AutoencoderDetector.load(run_dir)
    np.testing.assert_allclose(reloaded.score_samples(plant_table), detector.score_samples(plant_table), rtol=1e-6, atol=1e-7)
    assert reloaded.threshold_ == detector.threshold_ and reloaded.features_ == detector.features_


@pytest.mark.parametrize("kind", KINDS)
def test_scoring_before_fit_is_a_clear_error(kind):
    detector = tiny_detector(kind)
    for call in (lambda: detector.score_samples(np.zeros((30, 2), np.float32)), lambda: detector.predict(np.zeros((30, 2))),
                 lambda: detector.score_windows(np.zeros((1, 20, 2), np.float32))):
        with pytest.raises(NotFittedError, match="not fitted yet: call fit"):
            call()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("overrides", "named"), [
    ({"window": 1}, "window=1"), ({"stride": 0}, "stride=0"), ({"epochs": -3}, "epochs=-3"), ({"lr": 0.0}, "lr=0.0"),
    ({"val_fraction": 1.5}, "val_fraction=1.5"), ({"batch_size": 2.5}, "batch_size=2.5"), ({"threshold": "magic"}, "threshold='magic'"),
    ({"max_gap": -1.0}, "max_gap=-1.0"),
])
def test_bad_parameters_are_refused_at_fit_with_the_value_named(kind, overrides, named, rng):
    with pytest.raises(DataError, match=named.replace("(", r"\(").replace(".", r"\.")):
        tiny_detector(kind, **overrides).fit(rng.normal(size=(300, 3)).astype(np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_hyper_parameter_is_named(kind, rng):
    with pytest.raises(DataError, match=f"model '{kind}'.*bogus"):
        tiny_detector(kind, model_params={"bogus": 1}).fit(rng.normal(size=(300, 3)).astype(np.float32))


def test_every_kind_ranks_faults_above_normal_rows(kind_bundles, plant_table):
    labels = np.concatenate([s.labels for s in plant_table.series]).astype(bool)
    for kind in KINDS:
        scores = kind_bundles[kind][0].score_samples(plant_table)
        ok = np.isfinite(scores)
        assert np.median(scores[ok & labels]) > np.median(scores[ok & ~labels]), kind


def test_row_scores_follow_the_runtime_stride(kind_bundles, plant_table):
    detector = kind_bundles["pca"][0]
    scored = detector.score_series(plant_table.series[0])
    rows = scored.row_scores
    assert np.isnan(rows[: detector.window - 1]).all()
    first_end = scored.windows.ends[0]
    assert (rows[first_end : first_end + detector.stride] == scored.window_scores[0]).all()
    assert rows[first_end + detector.stride] == scored.window_scores[1]


def test_fit_is_seeded_and_reproducible(plant_table):
    a = tiny_detector("dense").fit(plant_table).score_samples(plant_table)
    b = tiny_detector("dense").fit(plant_table).score_samples(plant_table)
    np.testing.assert_array_equal(a, b)


def test_vae_score_includes_its_kl_term():
    scorer = WindowScorer(build_model("vae", 10, 3), torch.zeros(3), torch.ones(3)).eval()
    assert torch.all(scorer.channel_errors(torch.randn(7, 10, 3))[:, -1] > 0)  # the KL term is a channel of its own
    scorer.set_normal_level(torch.tensor([[1.0, 1.0, 1.0, 0.5]]))
    score, feature_error = scorer.combine(torch.tensor([[0.1, 0.1, 0.1, 1.0]]))  # the KL at twice its normal level
    torch.testing.assert_close(score, torch.tensor([2.0]))
    assert torch.all(feature_error < 0.2)


def test_score_is_the_channel_most_above_its_normal_level():
    scorer = WindowScorer(build_model("dense", 10, 2), torch.zeros(2), torch.ones(2))
    scorer.set_normal_level(torch.tensor([[2.0, 20.0, 0.0]]))  # normal levels 2 and 20; no score term
    score, feature_error = scorer.combine(torch.tensor([[4.0, 20.0, 5.0], [1.0, 50.0, 0.0]]))
    torch.testing.assert_close(feature_error, torch.tensor([[2.0, 1.0], [0.5, 2.5]]))
    torch.testing.assert_close(score, torch.tensor([2.0, 2.5]))  # a quiet sensor doubling outranks a noisy one at its usual error


def test_a_channel_whose_level_moves_between_stretches_of_normal_operation_counts_for_less():
    from train.scoring import TAIL_QUANTILE

    steady = torch.full((200,), 2.0) * torch.linspace(0.5, 1.5, 200)[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    moving = torch.cat([torch.full((100,), 1.0), torch.full((100,), 10.0)])  # its level rises tenfold halfway
    errors = torch.stack([steady, steady.flip(0), moving, torch.zeros(200)], dim=1)
    weights, level = WindowScorer.error_weights_for(errors), WindowScorer.scale_for(errors)
    strayed = torch.cat([errors[:100] * WindowScorer.scale_for(errors[100:]), errors[100:] * WindowScorer.scale_for(errors[:100])])
    tail = torch.quantile(strayed[:, :3].double(), TAIL_QUANTILE, dim=0).float()
    torch.testing.assert_close(weights[:3], level[:3] / (tail / tail.median()))
    torch.testing.assert_close(weights[:2], level[:2], rtol=0.05, atol=0)  # the steady sensors keep their plain levels
    assert 5 < float(level[2] / weights[2]) < 9 and weights[3] == 0  # the moving one counts several times less; no score term
    one = errors[:, 2:3]
    assert torch.equal(WindowScorer.error_weights_for(one), WindowScorer.scale_for(one))  # a single channel is left as it is
    assert torch.equal(WindowScorer.error_weights_for(errors[:1]), WindowScorer.scale_for(errors[:1]))  # one window: no halves


def test_a_channel_reconstructed_almost_perfectly_is_not_blown_up():
    scorer = WindowScorer(build_model("dense", 10, 2), torch.zeros(2), torch.ones(2))
    scorer.set_normal_level(torch.tensor([[1e-9, 1.0, 0.0]]))
    torch.testing.assert_close(scorer.channel_scale, torch.tensor([1000.0, 1.0, 0.0]))  # floored at a thousandth of the largest


def test_whitening_gives_the_mahalanobis_distance_of_the_shrunk_covariance(rng):
    from train.scoring import DISTANCE_SHRINKAGE, whitening

    z = rng.multivariate_normal([1.0, -2.0, 0.5], [[1.0, 0.9, 0.2], [0.9, 1.0, 0.1], [0.2, 0.1, 4.0]], 500)
    mean, root = whitening(z)
    covariance = np.cov(z, rowvar=False)
    shrunk = (1 - DISTANCE_SHRINKAGE) * covariance + DISTANCE_SHRINKAGE * np.diag(np.diag(covariance))
    x = rng.normal(size=(20, 3)) * 3
    expected = np.einsum("ij,jk,ik->i", x - z.mean(0), np.linalg.inv(shrunk), x - z.mean(0))
    np.testing.assert_allclose((((x - mean) @ root) ** 2).sum(axis=1), expected, rtol=1e-9)
    assert np.array_equal(whitening(z[:1])[1], np.eye(3))  # one sample has no covariance


def test_the_operating_point_distance_sees_sensors_together_where_normal_operation_never_put_them(rng):
    scorer = WindowScorer(build_model("dense", 10, 2), torch.zeros(2), torch.ones(2), distances=True).eval()
    level = rng.uniform(-1, 1, (300, 1, 1))  # the two sensors move together across the windows
    normal = torch.from_numpy((np.repeat(level, 2, axis=2) + 0.05 * rng.normal(size=(300, 10, 2))).astype(np.float32))
    scorer.fit_distances(normal)
    point = scorer.n_features + 2  # after the sensors, the model's term and the residual distance
    seen = scorer.channel_errors(normal)[:, point]
    apart = torch.tensor([[[0.8, -0.8]] * 10])  # each sensor within its normal range, the pair never so
    together = torch.tensor([[[0.8, 0.8]] * 10])
    assert scorer.channel_errors(apart)[0, point] > 10 * seen.max()
    assert scorer.channel_errors(together)[0, point] <= seen.max()
    assert scorer.n_channels == 5  # two sensors, the model's term, the residual and the operating-point distance


def test_each_distance_is_weighed_to_raise_the_score_as_often_as_the_errors_do(rng):
    from train.scoring import TAIL_QUANTILE

    scorer = WindowScorer(build_model("dense", 10, 2), torch.zeros(2), torch.ones(2), distances=True)
    errors = torch.from_numpy(rng.gamma(2.0, 1.0, (400, 5)).astype(np.float32)) * torch.tensor([1.0, 3.0, 0.0, 50.0, 0.2])
    reference = errors[:200] * 2  # the deployed model on windows it did not train on
    weights = scorer.weights_for(errors, reference)
    torch.testing.assert_close(weights[:3], WindowScorer.error_weights_for(errors[:, :3]))
    error_score = (reference[:, :3] * weights[:3]).amax(dim=1)
    for channel in (3, 4):
        torch.testing.assert_close(torch.quantile(reference[:, channel] * weights[channel], TAIL_QUANTILE),
                                   torch.quantile(error_score, TAIL_QUANTILE), rtol=1e-4, atol=0)


def test_denoising_and_sparse_options_train(plant_table):
    for params in ({"noise_std": 0.1}, {"sparsity_weight": 0.1, "latent": 4}):
        assert np.isfinite(tiny_detector("dense", model_params=params).fit(plant_table).threshold_)


def test_constant_feature_and_short_data_are_refused():
    values = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    values[:, 1] = 5.0
    with pytest.raises(DataError, match=r"constant feature\(s\) \['x1'\]"):
        tiny_detector("pca").fit(values)
    with pytest.raises(DataError, match="too few rows for one window"):
        tiny_detector("pca", window=500).fit(values)


def test_unknown_kind_lists_known_ones():
    with pytest.raises(ValueError, match="expected one of"):
        build_model("transformer", 10, 2)


def test_a_loss_that_turns_nan_stops_training_with_a_clear_error(plant_table):
    from train.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"training diverged at epoch \d+: loss .*lower --lr"):
        tiny_detector("dense", lr=1e30, epochs=5).fit(plant_table)


def test_early_stopping_follows_the_reconstruction_not_the_distances_fitted_after_it(plant_table):
    with_distances, without = (tiny_detector("dense", epochs=8, distances=d).fit(plant_table) for d in (True, False))
    assert with_distances.history_.val_loss == pytest.approx(without.history_.val_loss, rel=1e-6)
    assert with_distances.history_.best_epoch == without.history_.best_epoch
