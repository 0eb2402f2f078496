"""Every model kind trains, scores, saves and loads on the CPU in seconds."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_detector  # noqa: E402
from train.detector import AutoencoderDetector  # noqa: E402
from train.errors import DataError  # noqa: E402
from train.models import MODELS  # noqa: E402
from train.scoring import WindowScorer  # noqa: E402


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_kind_trains_scores_and_round_trips(kind, plant_table, tmp_path):
    detector = tiny_detector(kind).fit(plant_table)
    assert detector.threshold_ > 0 and np.isfinite(detector.threshold_)
    assert detector.features_ == plant_table.features
    scores = detector.score_samples(plant_table)
    assert scores.shape == (sum(len(s) for s in plant_table.series),)
    labels = np.concatenate([s.labels for s in plant_table.series]).astype(bool)
    ok = np.isfinite(scores)
    # faults score higher than normal rows on average, for every kind
    assert np.median(scores[ok & labels]) > np.median(scores[ok & ~labels])
    detector.save(tmp_path / kind)
    assert (tmp_path / kind / "loss_curve.png").stat().st_size > 0
    reloaded = AutoencoderDetector.load(tmp_path / kind)
    np.testing.assert_allclose(reloaded.score_samples(plant_table), scores, rtol=1e-6, atol=1e-7)
    assert reloaded.threshold_ == detector.threshold_


def test_row_scores_follow_the_runtime_stride(plant_table):
    detector = tiny_detector("pca").fit(plant_table)
    series = plant_table.series[0]
    scored = detector.score_series(series)
    rows = scored.row_scores
    assert np.isnan(rows[: detector.window - 1]).all()
    first_end = scored.windows.ends[0]
    assert (rows[first_end : first_end + detector.stride] == scored.window_scores[0]).all()
    assert rows[first_end + detector.stride] == scored.window_scores[1]


def test_fit_is_seeded_and_reproducible(plant_table):
    a = tiny_detector("dense").fit(plant_table).score_samples(plant_table)
    b = tiny_detector("dense").fit(plant_table).score_samples(plant_table)
    np.testing.assert_array_equal(a, b)


def test_scorer_output_contract():
    from train.models import build_model

    scorer = WindowScorer(build_model("vae", 10, 3), torch.zeros(3), torch.ones(3)).eval()
    score, feature_error = scorer(torch.randn(7, 10, 3))
    assert score.shape == (7,) and feature_error.shape == (7, 3)
    assert torch.all(score >= feature_error.mean(1))  # VAE adds beta*KL >= 0


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
    from train.models import build_model

    with pytest.raises(ValueError, match="expected one of"):
        build_model("transformer", 10, 2)
