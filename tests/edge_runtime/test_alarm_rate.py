"""The alarm-rate threshold: the policy's raises counted at numpy speed, and the promise it makes on new normal data."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.contract import alarm_rate
from edge_runtime.contract.alarm_rate import alarm_raises, alarm_statistic, calibrate_alarm_rate
from edge_runtime.contract.alarms import RAISED, Alarm

WINDOWS_PER_DAY = 8_640  # one window every 10 s


def replayed(scores: np.ndarray, threshold: float, policy: tuple) -> int:
    """Raises of the runtime's own alarm state machine."""
    alarm = Alarm(*policy)
    return sum(alarm.update(float(s), threshold) == RAISED for s in scores)


def normal_scores(rng: np.random.Generator, days: float) -> np.ndarray:
    """Window scores of one stream on normal data: overlapping windows make neighbours alike (AR(1), heavy right tail)."""
    n = int(days * WINDOWS_PER_DAY)
    noise = rng.standard_normal(n)
    ar = np.empty(n)
    ar[0] = noise[0]
    for i in range(1, n):
        ar[i] = 0.8 * ar[i - 1] + 0.6 * noise[i]
    return np.exp(0.5 * ar)


def test_the_raise_count_matches_the_alarm_state_machine():
    rng = np.random.default_rng(7)
    for _ in range(2_000):
        n = int(rng.integers(1, 60))
        scores = rng.exponential(1.0, n) * np.where(rng.random(n) < 0.2, 4.0, 1.0)
        on_k = int(rng.integers(1, 4))
        policy = (on_k, int(rng.integers(on_k, 6)), int(rng.integers(1, 5)), float(rng.choice([0.0, 0.1, 0.5])))
        threshold = float(rng.uniform(0.5, 4.0))
        assert alarm_raises(scores, threshold, policy) == replayed(scores, threshold, policy), (scores, threshold, policy)


def test_the_alarm_statistic_is_the_kth_largest_of_the_last_n():
    scores = np.array([1.0, 5.0, 2.0, 4.0, 3.0])
    assert alarm_statistic(scores, 2, 3).tolist() == [2.0, 4.0, 3.0]
    assert alarm_statistic(scores[:2], 2, 3).size == 0


@pytest.mark.parametrize("target", [1.0, 3.0, 10.0])
def test_new_normal_data_raise_what_was_promised_within_half_to_twice(target):
    rng = np.random.default_rng(int(target * 10))
    calibration = [normal_scores(rng, 10.0) for _ in range(3)]  # 30 stream-days
    found = calibrate_alarm_rate(calibration, days=30.0, target=target)
    assert found.supported and found.raises <= target * 30 - 1
    fresh = [normal_scores(rng, 30.0) for _ in range(3)]  # 90 other stream-days
    realised = sum(alarm_raises(s, found.value) for s in fresh) / 90.0
    assert 0.5 * target <= realised <= 2 * target, (realised, found)


@pytest.mark.parametrize(("target", "days_per_stream"), [(1.0, 2.0), (0.5, 4.0)])
def test_a_few_alarms_of_the_target_rest_on_the_tail_which_keeps_the_promise_closer_than_a_count(target, days_per_stream, monkeypatch):
    # 3 streams: 6 alarms of the target fit in the days, fewer than TAIL_PEAKS; a count rests on the few highest peaks
    rng = np.random.default_rng(int(target * 100) + 1)
    fresh = [normal_scores(rng, 30.0) for _ in range(3)]  # 90 other stream-days
    days = 3 * days_per_stream
    tail, count = [], []
    for _ in range(10):
        calibration = [normal_scores(rng, days_per_stream) for _ in range(3)]
        found = calibrate_alarm_rate(calibration, days=days, target=target)
        with monkeypatch.context() as counted:
            counted.setattr(alarm_rate, "TAIL_PEAKS", 1)  # the count alone, for comparison
            by_count = calibrate_alarm_rate(calibration, days=days, target=target)
        assert found.supported and by_count.supported
        tail.append(sum(alarm_raises(s, found.value) for s in fresh) / 90.0 / target)
        count.append(sum(alarm_raises(s, by_count.value) for s in fresh) / 90.0 / target)
    assert sum(0.5 <= r <= 2 for r in tail) >= 8, tail
    assert np.mean(np.abs(np.log2(tail))) <= np.mean(np.abs(np.log2(count))), (tail, count)


def test_a_target_the_days_cannot_hold_is_extrapolated_and_marked_unsupported():
    rng = np.random.default_rng(3)
    calibration = [normal_scores(rng, 0.5)]
    found = calibrate_alarm_rate(calibration, days=0.5, target=0.1)  # one alarm at 0.1 a day needs 10 days
    assert not found.supported and found.raises == 0
    assert found.value >= alarm_statistic(calibration[0], 2, 3).max()  # never below what the calibration days raised nothing at
    assert found.value > calibrate_alarm_rate(calibration, days=0.5, target=4.0).value  # stricter than a supported one


def test_phases_count_the_same_time_once():
    rng = np.random.default_rng(5)
    every_window = normal_scores(rng, 2.0)
    replicas = [every_window[p::2] for p in range(2)]  # two offsets of one stream: the same two days
    found = calibrate_alarm_rate(replicas, days=1.0, target=5.0, phases=2)
    assert found.days == 1.0
    assert found.raises == pytest.approx(sum(alarm_raises(r, found.value) for r in replicas) / 2)


def test_a_threshold_so_low_the_alarm_never_clears_is_not_taken_for_a_quiet_one():
    # a drifting level: far below its tail, one alarm is raised and never clears (one raise, most of the time flagged)
    rng = np.random.default_rng(11)
    days = 3.0
    scores = normal_scores(rng, days) * np.linspace(1.0, 1.5, int(days * WINDOWS_PER_DAY))
    allowed = 1.0 * days - 1
    found = calibrate_alarm_rate([scores], days=days, target=1.0)
    assert alarm_raises(scores, float(scores.min())) <= allowed  # the trap: a threshold below every score raises once
    assert found.value > np.quantile(scores, 0.99)
    statistic = np.unique(alarm_statistic(scores, 2, 3))
    above = statistic[statistic >= found.value]
    assert all(alarm_raises(scores, value) <= allowed for value in above[:: max(1, len(above) // 400)])
