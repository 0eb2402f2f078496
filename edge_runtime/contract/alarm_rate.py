"""Thresholds calibrated on the thing promised: alarm raises per stream and day, with the alarm policy replayed.

A per-window exceedance rate is not what an operator counts. Windows overlap, so exceedances come in clusters, and
the alarm policy (``on_k`` of ``on_n`` windows above the threshold) raises once per cluster, or not at all for a
single spike: on the simulator a threshold set for one exceeding window a day raised one alarm every 4 to 90 days.
Here the policy itself is replayed on time-ordered normal scores and the threshold is the lowest value from which
up the alarm count, plus one, stays within the target over the days the scores cover: the ``+ 1`` plays the part of
split conformal's ``n + 1``, so a finite sample errs towards fewer alarms.

An alarm counts again for every interval of the promise (``1 / target`` days) it stays up (:func:`standing_count`):
a raise count alone falls again far below the normal scores' tail, where alarms merge and finally one alarm is
raised and never clears, so the lowest threshold "within the count" would flag most of the time. An alarm that
stands through the time the promise allows between two alarms is what the operator sees as another false alarm;
one shorter than that, the usual kind, counts once. And because merging can still lower the count a little, the
search comes down from the top and stops where the count first exceeds the target.

A count of a few alarms is a noisy estimate of a rate: where the days hold fewer than ``TAIL_PEAKS`` alarms of the
target, the count would put the threshold at one of the few highest peaks, whose level varies most from one
stretch of normal operation to the next. There the raise rate comes from an exponential tail fitted to the peaks
of the alarm statistic's clusters (the ``on_k``-th largest of the last ``on_n`` scores) over a level about
``TAIL_PEAKS`` of them per sequence exceed, the peaks-over-threshold estimate that rests on all of those peaks.
Where the scores cover too few days for even one alarm of the target (``target * days < 1``), the same tail
extrapolates, never below the statistic's largest value (no alarm on the calibration scores themselves, split
conformal's fallback), and the result is marked unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_POLICY = (2, 3, 3, 0.1)  # AlarmConfig's defaults: on_k, on_n, off_m, deadband
TAIL_PEAKS = 20  # cluster peaks per sequence the tail is fitted to; below this many alarms of the target, the tail decides


@dataclass(frozen=True)
class AlarmRateThreshold:
    """A threshold calibrated to alarm raises per stream and day, with what it rests on.

    ``days``: stream-days the calibration scores cover; ``supported``: whether they hold at least one alarm of the
    target (else ``value`` is extrapolated); ``raises``: the raises the policy makes on them at ``value``;
    ``estimate``: ``"count"`` (the raises counted) or ``"tail"`` (the tail of the alarm statistic's peaks).
    """

    value: float
    target: float
    days: float
    supported: bool
    raises: float
    estimate: str


def alarm_statistic(scores: np.ndarray, on_k: int, on_n: int) -> np.ndarray:
    """Per window (from the ``on_n``-th on), the ``on_k``-th largest of the last ``on_n`` scores: the policy raises
    when it exceeds the threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < on_n:
        return np.empty(0)
    recent = np.lib.stride_tricks.sliding_window_view(scores, on_n)
    return np.partition(recent, on_n - on_k, axis=1)[:, on_n - on_k]


def alarm_raises(scores: np.ndarray, threshold: float, policy: tuple[int, int, int, float] = DEFAULT_POLICY) -> int:
    """How many alarms :class:`edge_runtime.contract.alarms.Alarm` raises on one stream's time-ordered window scores.

    The same count as feeding every score to ``Alarm(*policy).update`` (tested against it), at numpy speed.
    """
    return len(alarm_spans(scores, threshold, policy))


def standing_count(scores: np.ndarray, threshold: float, policy: tuple[int, int, int, float] = DEFAULT_POLICY,
                   interval: int = 1) -> int:
    """The alarms on one stream with an alarm counted once for every ``interval`` windows it stays up (begun ones
    included): what the calibration holds to the target, so that one alarm that never clears is not taken for a
    quiet stream.
    """
    return sum(-(-(end - start + 1) // interval) for start, end in alarm_spans(scores, threshold, policy))


def alarm_spans(scores: np.ndarray, threshold: float, policy: tuple[int, int, int, float] = DEFAULT_POLICY) -> list[tuple[int, int]]:
    """``(raised at, cleared at)`` window indices of every alarm the policy raises on one stream's time-ordered scores
    (an alarm still up at the end clears at the last window).

    Raises are found from the alarm statistic, and each raise's alarm lasts until ``off_m`` windows in a row score
    below ``threshold * (1 - deadband)``.
    """
    on_k, on_n, off_m, deadband = policy
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return []
    above = scores > threshold
    padded = np.r_[np.zeros(on_n - 1, bool), above]
    counts = np.convolve(padded, np.ones(on_n, int), mode="valid")  # exceedances among the last on_n windows (fewer at the start)
    hot = np.flatnonzero(counts >= on_k)
    if not len(hot):
        return []
    cool = scores < threshold * (1 - deadband)
    run = np.zeros(n + 1, np.int64)  # run[i + 1]: cool windows in a row ending at window i
    for_cool = np.flatnonzero(cool)
    if len(for_cool):
        starts = np.r_[True, np.diff(for_cool) > 1]
        group = np.cumsum(starts) - 1
        first = for_cool[starts][group]
        run[for_cool + 1] = for_cool - first + 1
    clears = np.flatnonzero(run[1:] >= off_m)  # windows at which an active alarm clears
    spans, i = [], 0
    while i < len(hot):
        start = int(hot[i])
        k = np.searchsorted(clears, start, side="right")
        if k == len(clears):
            spans.append((start, n - 1))
            break
        end = int(clears[k])
        spans.append((start, end))
        # after a clear the policy starts its count afresh: exceedances up to the clear no longer count
        i = _next_hot_after(above, hot, end, on_k, on_n, i)
    return spans


def _next_hot_after(above: np.ndarray, hot: np.ndarray, end: int, on_k: int, on_n: int, i: int) -> int:
    """Index into ``hot`` of the first window after ``end`` at which ``on_k`` exceedances after ``end`` lie among the
    last ``on_n`` windows.
    """
    j = np.searchsorted(hot, end, side="right")
    while j < len(hot):
        t = hot[j]
        if int(above[max(end + 1, t - on_n + 1):t + 1].sum()) >= on_k:
            return j
        j += 1
    return len(hot)


def raise_count(sequences: list[np.ndarray], threshold: float, policy: tuple[int, int, int, float], phases: int = 1) -> float:
    """Raises of the policy over ``sequences`` at ``threshold``, averaged over ``phases`` replicas of the same time."""
    return float(sum(alarm_raises(s, threshold, policy) for s in sequences)) / phases


def calibrate_alarm_rate(sequences: list[np.ndarray], days: float, target: float,
                         policy: tuple[int, int, int, float] = DEFAULT_POLICY, phases: int = 1) -> AlarmRateThreshold:
    """The lowest threshold at which the policy, replayed on ``sequences`` (time-ordered normal scores at the deployed
    stride, one per stream stretch), raises at most ``target * days - 1`` alarms; from the tail of the alarm
    statistic's peaks where the ``days`` they cover hold fewer than ``TAIL_PEAKS`` alarms of the target, and marked
    unsupported (never below the statistic's largest value) where they hold less than one.

    ``phases``: the sequences hold that many replicas of the same stretches of time (windows scored at every sample,
    taken every ``stride``-th from each offset): raises are averaged over them and ``days`` counts the time once.
    """
    sequences = [np.asarray(s, dtype=np.float64) for s in sequences if len(s)]
    if not sequences or days <= 0:
        raise ValueError("alarm-rate calibration needs time-ordered normal scores")
    statistic = np.concatenate([alarm_statistic(s, policy[0], policy[1]) for s in sequences] or [np.empty(0)])
    if not len(statistic):
        statistic = np.concatenate(sequences)
    expected = target * days  # alarms of the target the days hold
    if expected >= TAIL_PEAKS:
        allowed = expected - 1
        interval = max(1, round(sum(len(s) for s in sequences) / phases / days / target))  # windows in 1 / target days

        def within(value: float) -> bool:
            return sum(standing_count(s, value, policy, interval) for s in sequences) / phases <= allowed

        candidates = np.unique(statistic)
        value = float(candidates[_lowest_within(candidates, within)])
        return AlarmRateThreshold(value, target, days, True, raise_count(sequences, value, policy, phases), "count")
    value = _exponential_tail(sequences, days * phases, target, policy)
    supported = expected >= 1
    if not supported:
        value = max(value, float(statistic.max()))
    return AlarmRateThreshold(value, target, days, supported, raise_count(sequences, value, policy, phases), "tail")


def _lowest_within(candidates: np.ndarray, within) -> int:
    """Index of the lowest of the ascending ``candidates`` reached from the top before ``within`` first fails.

    The highest candidate (the statistic's maximum) raises nothing. Steps down double while ``within`` holds; the
    first step that fails is then bisected, so the search never jumps past the counts above the target into the
    region far below where one alarm that never clears makes the count small again.
    """
    good, step = len(candidates) - 1, 1
    while good > 0:
        probe = max(0, good - step)
        if not within(candidates[probe]):
            bad = probe
            break
        good, step = probe, step * 2
    else:
        return 0
    while good - bad > 1:
        middle = (good + bad) // 2
        if within(candidates[middle]):
            good = middle
        else:
            bad = middle
    return good


def _exponential_tail(sequences: list[np.ndarray], days: float, target: float, policy: tuple[int, int, int, float]) -> float:
    """The threshold the exponential tail of the alarm statistic's cluster peaks puts at ``target`` raises a day.

    The peaks over a level ``u0`` (exceeded by about ``TAIL_PEAKS`` windows per sequence) are taken as exponential,
    the Gumbel domain of attraction: ``rate(u) = rate(u0) * exp(-(u - u0) / mean excess)``.
    """
    statistic = [alarm_statistic(s, policy[0], policy[1]) for s in sequences]
    pooled = np.concatenate(statistic)
    u0 = float(np.quantile(pooled, max(0.0, 1 - TAIL_PEAKS * len(sequences) / len(pooled))))
    peaks = np.concatenate([_cluster_peaks(a, u0, policy[2]) for a in statistic])
    if not len(peaks):
        return float(pooled.max())
    rate0 = len(peaks) / days
    return float(u0 + np.mean(peaks - u0) * np.log(max(rate0 / target, 1.0)))


def _cluster_peaks(statistic: np.ndarray, level: float, gap: int) -> np.ndarray:
    """The maximum of each run of ``statistic`` above ``level`` (runs less than ``gap`` windows apart are one cluster)."""
    over = np.flatnonzero(statistic > level)
    if not len(over):
        return np.empty(0)
    cut = np.flatnonzero(np.diff(over) > gap) + 1
    return np.array([statistic[run].max() for run in np.split(over, cut)])
