"""Drift, visible: per stream, how often recent windows score above the calibration scores' 90th
percentile, against the 10 % that normal operation gives.

An exponentially weighted share of exceedances over about ``windows`` windows; a ``drift`` event
when it reaches ``raise_share`` (after at least ``windows`` windows), ``drift_cleared`` when it
falls to ``clear_share``. Drift only reports: no threshold follows the scores, so a machine that
degrades slowly still crosses its threshold and alarms (tested).
"""

from __future__ import annotations

DRIFT, DRIFT_CLEARED = "drift", "drift_cleared"
REFERENCE_QUANTILE = "0.9"  # of the bundle's calibration scores: exceeded by 10 % of normal windows


class DriftWatch:
    """Drift state of one stream."""

    __slots__ = ("share", "seen", "drifting")

    def __init__(self) -> None:
        self.share = 0.1  # starts at what normal operation gives
        self.seen = 0
        self.drifting = False

    def state(self) -> tuple[float, int, bool]:
        """Everything an update changes, for :meth:`restore`."""
        return self.share, self.seen, self.drifting

    def restore(self, state: tuple[float, int, bool]) -> None:
        """Undo updates back to a :meth:`state` (when the window's events could not be made)."""
        self.share, self.seen, self.drifting = state


class DriftRule:
    """The rule of one model: ``reference`` is its calibration scores' 90th percentile."""

    def __init__(self, reference: float, windows: int = 100, raise_share: float = 0.5, clear_share: float = 0.2) -> None:
        self.reference, self.windows = reference, windows
        self.raise_share, self.clear_share = raise_share, clear_share
        self.weight = 1.0 / windows

    def update(self, watch: DriftWatch, score: float) -> str | None:
        """Feed one window's score; returns ``drift``, ``drift_cleared`` or None."""
        watch.share += self.weight * ((score > self.reference) - watch.share)
        watch.seen += 1
        if not watch.drifting and watch.seen >= self.windows and watch.share >= self.raise_share:
            watch.drifting = True
            return DRIFT
        if watch.drifting and watch.share <= self.clear_share:
            watch.drifting = False
            return DRIFT_CLEARED
        return None
