"""Thresholds on anomaly scores (higher score = more anomalous).

Unsupervised methods use scores of normal data only; ``f1`` and ``youden`` need labels; ``alarms`` needs the scores
in time order (see :func:`fit_alarm_threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.contract.alarm_rate import DEFAULT_POLICY, calibrate_alarm_rate
from edge_runtime.contract.conformal import conformal

UNSUPERVISED = ("conformal", "pot", "percentile", "sigma", "fpr")
SUPERVISED = ("f1", "youden")
METHODS = ("alarms",) + UNSUPERVISED + SUPERVISED


@dataclass
class Threshold:
    """A threshold value with the method and parameter that produced it.

    ``windows`` is how many calibration scores it rests on; ``supported_rate`` the lowest
    per-window exceedance rate those scores can vouch for (``1 / (windows + 1)``), and
    ``supported`` whether the requested rate is at or above it (conformal and alarms; None for the others).
    For ``alarms``, ``parameter`` is the target in false alarms per stream and day, ``days`` the stream-days the
    scores cover, ``supported_rate`` the lowest target they hold one alarm of (``1 / days``, per day) and ``policy``
    the alarm policy replayed on them (``on_k, on_n, off_m, deadband``) and ``estimate`` whether the value counts their
    raises (``count``) or comes from the tail of their peaks (``tail``: fewer than 20 alarms of the target in the days).
    """

    method: str
    value: float
    parameter: float | None = None
    windows: int = 0
    supported_rate: float | None = None
    supported: bool | None = None
    days: float | None = None
    policy: list | None = None
    estimate: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (``days``, ``policy`` and ``estimate`` only where set)."""
        record = {"method": self.method, "value": self.value, "parameter": self.parameter, "windows": self.windows,
                  "supported_rate": self.supported_rate, "supported": self.supported}
        return record | {k: v for k, v in (("days", self.days), ("policy", self.policy), ("estimate", self.estimate)) if v is not None}


def percentile(scores: np.ndarray, q: float = 99.0) -> float:
    """The ``q``-th percentile of normal scores."""
    return float(np.percentile(scores, q))


def mean_k_sigma(scores: np.ndarray, k: float = 3.0) -> float:
    """Mean plus ``k`` standard deviations of normal scores."""
    return float(np.mean(scores) + k * np.std(scores))


def target_fpr(scores: np.ndarray, fpr: float = 0.01) -> float:
    """The smallest threshold whose false-positive rate on normal scores is at most ``fpr``."""
    ordered = np.sort(scores)
    allowed = int(np.floor(fpr * len(ordered)))
    return float(ordered[-allowed - 1]) if allowed < len(ordered) else float(ordered[0])


MIN_PEAKS = 20


def peaks_over_threshold(scores: np.ndarray, risk: float = 1e-3, initial_quantile: float = 0.98) -> float:
    """Extreme-value threshold (SPOT, Siffer et al. 2017) with exceedance probability ``risk``.

    Fits a generalised Pareto distribution to the excesses over the ``initial_quantile`` of
    normal scores (lowered on small calibration sets so that at least ``MIN_PEAKS`` peaks are
    fitted) and returns the score exceeded with probability ``risk``. With fewer than 10 peaks
    no fit is possible and the threshold is 1.5x the way from the initial quantile to the maximum.
    """
    from scipy.stats import genpareto

    scores = np.asarray(scores, dtype=np.float64)
    initial_quantile = min(initial_quantile, max(0.5, 1 - MIN_PEAKS / max(len(scores), 1)))
    t = float(np.quantile(scores, initial_quantile))
    excesses = scores[scores > t] - t
    n, n_t = len(scores), len(excesses)
    if n_t < 10 or np.ptp(excesses) == 0:
        return float(t + (np.max(scores) - t) * 1.5) if n_t else t
    gamma, _, sigma = genpareto.fit(excesses, floc=0.0)
    ratio = risk * n / n_t
    if abs(gamma) < 1e-8:
        return float(t - sigma * np.log(ratio))
    return float(t + sigma / gamma * (ratio ** (-gamma) - 1.0))


def _sweep(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds (descending) with TP, FP counts at each, and totals."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    return s[distinct], tp, fp, np.array([y.sum(), (~y).sum()])


def best_f1(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises point-wise F1 on labelled data (flag when score >= value)."""
    thresholds, tp, fp, (pos, _) = _sweep(np.asarray(scores, float), np.asarray(labels))
    f1 = 2 * tp / np.maximum(tp + fp + pos, 1)
    return float(thresholds[int(np.argmax(f1))])


def youden(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises Youden's J = TPR - FPR on labelled data."""
    thresholds, tp, fp, (pos, neg) = _sweep(np.asarray(scores, float), np.asarray(labels))
    j = tp / max(pos, 1) - fp / max(neg, 1)
    return float(thresholds[int(np.argmax(j))])


DEFAULT_PARAMETERS = {"conformal": 1e-3, "pot": 1e-3, "percentile": 99.0, "sigma": 3.0, "fpr": 0.01}


def fit_threshold(method: str, scores: np.ndarray, labels: np.ndarray | None = None, parameter: float | None = None) -> Threshold:
    """Compute a threshold by method name.

    ``parameter`` is the per-window exceedance rate for ``conformal``, the risk for ``pot``, the
    percentile for ``percentile``, k for ``sigma``, the target rate for ``fpr``; ignored by ``f1``
    and ``youden``, which need ``labels``.
    For the supervised methods an alarm fires when the score is >= the value; the runtime uses
    ``>``, so the value is nudged down by one float step to keep both the same.
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    scores = scores[finite]
    if method in SUPERVISED:
        if labels is None:
            raise ValueError(f"threshold method '{method}' needs labelled data")
        labels = np.asarray(labels)[finite]
        value = (best_f1 if method == "f1" else youden)(scores, labels)
        return Threshold(method, float(np.nextafter(np.float32(value), np.float32(-np.inf))), None)
    if method == "alarms":
        raise ValueError("threshold method 'alarms' needs time-ordered scores: use fit_alarm_threshold")
    if method not in UNSUPERVISED:
        raise ValueError(f"unknown threshold method '{method}'; expected one of {METHODS}")
    p = DEFAULT_PARAMETERS[method] if parameter is None else parameter
    n = len(scores)
    if method == "conformal":
        value, supported = conformal(scores, p)
        return Threshold(method, value, p, n, 1 / (n + 1), supported)
    fn = {"pot": peaks_over_threshold, "percentile": percentile, "sigma": mean_k_sigma, "fpr": target_fpr}[method]
    return Threshold(method, fn(scores, p), p, n, 1 / (n + 1))


def fit_alarm_threshold(sequences: list[np.ndarray], days: float, false_alarms_per_day: float, phases: int = 1,
                        policy: tuple[int, int, int, float] = DEFAULT_POLICY) -> Threshold:
    """The ``alarms`` threshold: the alarm policy replayed on time-ordered normal scores (one sequence per stretch of a
    stream, ``phases`` replicas of the same ``days``) raises at most ``false_alarms_per_day`` a day (see
    :func:`edge_runtime.contract.alarm_rate.calibrate_alarm_rate`).
    """
    found = calibrate_alarm_rate(sequences, days, false_alarms_per_day, policy, phases)
    windows = sum(len(s) for s in sequences)
    return Threshold("alarms", found.value, false_alarms_per_day, windows, 1 / days, found.supported, round(days, 4), list(policy),
                     found.estimate)
