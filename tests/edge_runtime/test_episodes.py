"""Episode metrics and the NAB standard-profile score, against values worked out by hand."""

import math

import numpy as np
import pytest

from edge_runtime.contract.episodes import episode_metrics, nab_raw, scaled_sigmoid


def labels_with(n: int, *windows: tuple[int, int]) -> np.ndarray:
    y = np.zeros(n, np.int8)
    for start, stop in windows:
        y[start:stop] = 1
    return y


def flags_at(n: int, *rows: int) -> np.ndarray:
    p = np.zeros(n, np.int8)
    p[list(rows)] = 1
    return p


def test_the_sigmoid_is_nabs():
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(0.0) == 0.0 and scaled_sigmoid(-5.0) == 1.0 and scaled_sigmoid(10.0) == pytest.approx(-1.0, abs=1e-6)


def test_a_detection_at_each_window_start_scores_100_and_none_scores_0():
    y = labels_with(100, (10, 20), (50, 70))
    assert episode_metrics([(y, flags_at(100, 10, 50), None)])["nab_score"] == pytest.approx(100.0)
    assert episode_metrics([(y, flags_at(100), None)])["nab_score"] == pytest.approx(0.0)


def test_a_late_detection_earns_less_and_a_false_one_costs_a_little():
    y = labels_with(100, (10, 20))
    late = 2 / (1 + math.exp(-0.5)) - 1  # position -(20 - 19) / 10 = -0.1
    raw, windows = nab_raw(y, [19])
    assert windows == 1 and raw == pytest.approx(late / scaled_sigmoid(-1.0))
    assert episode_metrics([(y, flags_at(100, 19), None)])["nab_score"] == pytest.approx(100 * (late / scaled_sigmoid(-1.0) + 1) / 2)
    raw, _ = nab_raw(y, [5])  # before any window: the whole false-positive weight, and the window is missed
    assert raw == pytest.approx(-0.11 - 1.0)
    raw, _ = nab_raw(y, [10, 12, 29])  # the second detection in the window counts for nothing; one past it costs by distance
    assert raw == pytest.approx(1.0 + 0.11 * scaled_sigmoid((29 - 19) / 9))


def test_episodes_their_precision_and_their_rate():
    y = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    p = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    found = episode_metrics([(y, p, np.arange(8.0) * 3600)])  # one row an hour: 8 hours
    assert found["alarm_episodes"] == 3 and found["episode_precision"] == pytest.approx(1 / 3)
    assert found["episodes_per_day"] == pytest.approx(3 / (8 / 24))
    assert episode_metrics([(y, np.zeros(8), None)]) == {"alarm_episodes": 0, "episode_precision": None, "episodes_per_day": None,
                                                        "nab_score": 0.0}


def test_every_evaluation_reports_the_episodes():
    from edge_runtime.contract.detection_metrics import SeriesResult, evaluate

    y = labels_with(100, (10, 20))
    found = evaluate([SeriesResult(y, flags_at(100, 10, 11, 60), None, None, "m1")])
    assert found["alarm_episodes"] == 2 and found["episode_precision"] == 0.5
    assert found["nab_score"] == pytest.approx(100 * (1.0 + 0.11 * scaled_sigmoid((60 - 19) / 9) + 1) / 2)
