"""The split-conformal threshold for a per-window exceedance rate: `--threshold conformal` and the runtime's commissioning."""

from __future__ import annotations

import numpy as np


def conformal(scores: np.ndarray, rate: float) -> tuple[float, bool]:
    """The split-conformal threshold for a per-window exceedance ``rate``, and whether the sample supports it.

    With ``n`` exchangeable normal scores, the ``ceil((n + 1)(1 - rate))``-th smallest is exceeded
    by a new normal score with probability at most ``rate``: a guarantee that holds for any
    ``n``, no distribution assumed. When ``rate < 1 / (n + 1)`` no order statistic gives it; the
    largest score is returned (the strictest the sample supports) and ``False``.
    """
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(ordered)
    k = int(np.ceil((n + 1) * (1 - rate)))
    if k <= n:
        return float(ordered[k - 1]), True
    return float(ordered[-1]), False


def window_rate(false_alarms_per_day: float, stride: int, sample_period: float) -> float:
    """A target of false alarms per stream and day as a per-window exceedance rate (one window every ``stride`` samples)."""
    return false_alarms_per_day * stride * sample_period / 86_400
