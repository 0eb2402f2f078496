"""Per-machine stream assembly: a preallocated ring buffer written twice, so that every window
is a contiguous view, with the gap rule shared with training (``train.data.hold_and_split``).

A missing feature value is held from its last observation for at most ``max_gap`` seconds;
a longer gap in time or in a feature restarts the stream, so no window spans a gap. Within a
run of good samples a window is ready after ``window`` samples and then every ``stride``.

A sample from further back than ``max_gap`` is a straggler (a QoS 1 redelivery, a sensor that
buffered, a second publisher) or the first of a clock that stepped back. It is refused as late
and held aside; only when a window's worth of samples in a row continue on that older time line
(and none on the current one) is it a clock step: the stream restarts there with those samples.
One straggler costs one sample, never the stream's history.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from edge_runtime.contract.bundle import Bundle

GAP_PERIODS = 1.5  # a step of more than this many sample periods counts as a gap
MIN_STEP_PERIODS = 0.5  # a step of less than this many sample periods is refused: the stream runs faster than the bundle


class Push(IntEnum):
    """What :meth:`Stream.push` did with a sample."""

    READY = 1  # accepted, and a window ends at it
    ACCEPTED = 0
    LATE = -1  # not newer than the last sample (by at most max_gap): dropped
    RESTARTED = -2  # the sample could not be used (a feature missing for too long); stream restarted
    TOO_FAST = -3  # closer than ``min_step`` to the last sample: the stream runs faster than the bundle's period; dropped
    CLOCK_STEP = 2  # a window's worth of samples continued an older time line: the clock stepped back; restarted on it
    STEPPED_READY = 3  # the same, and a window ends at this sample


# module-level names for the hot path: a global lookup instead of an attribute lookup per sample
READY, ACCEPTED, LATE, RESTARTED, TOO_FAST, CLOCK_STEP = Push.READY, Push.ACCEPTED, Push.LATE, Push.RESTARTED, Push.TOO_FAST, Push.CLOCK_STEP
STEPPED_READY = Push.STEPPED_READY


def stream_for(key: str, bundle: Bundle) -> Stream:
    """The stream of ``key`` with ``bundle``'s input rules: the one recipe for live streams and offline replay alike,
    so ``run``, ``score`` and ``evaluate`` keep and refuse the same samples.
    """
    period = bundle.sample_period
    return Stream(key, bundle.window, bundle.stride, bundle.channels, bundle.max_gap, GAP_PERIODS * period, MIN_STEP_PERIODS * period)


class Stream:
    """One stream's ring buffer ``[2W, F]``; :meth:`push` writes a sample, :meth:`window` views the latest window."""

    __slots__ = ("key", "window_size", "stride", "max_gap", "gap_s", "min_step", "buffer", "times", "pos", "filled", "last_time",
                 "held", "held_time", "full_time", "last_full", "partial_time", "late", "gaps", "too_fast", "clock_steps", "behind")

    def __init__(self, key: str, window: int, stride: int, n_features: int, max_gap: float, gap_s: float | None = None,
                 min_step: float = 0.0) -> None:
        """``gap_s``: a step in sample time longer than this counts as a gap (samples lost upstream); at most ``max_gap``.
        ``min_step``: a sample closer than this to the last one is refused as ``TOO_FAST`` (0: only equal times are late).
        """
        self.key = key
        self.window_size, self.stride, self.max_gap = window, stride, max_gap
        self.gap_s = max_gap if gap_s is None else min(gap_s, max_gap)
        self.min_step = max(min_step, 1e-9)
        self.buffer = np.zeros((2 * window, n_features), dtype=np.float32)
        self.times = [0.0] * (2 * window)  # a list: item writes cost a fifth of numpy's
        self.held = np.zeros(n_features, dtype=np.float32)  # values held for partial samples
        self.partial_time = np.full(n_features, -np.inf)
        self.pos = self.filled = self.late = self.last_full = self.gaps = self.too_fast = self.clock_steps = 0
        self.last_time = self.full_time = self.held_time = -np.inf
        self.behind: list[tuple[float, np.ndarray, tuple]] = []  # samples on an older time line: stragglers, or a clock step

    def restart(self) -> None:
        """Forget the current run of samples (not the held values: they age out by the rule)."""
        self.filled = 0

    def push(self, t: float, row, missing: tuple[int, ...] = ()) -> Push:
        """Add the sample ``row`` (``F`` floats: a list or an array) taken at ``t`` seconds.

        ``missing`` lists feature indices without a value in this sample. Returns ``READY`` when a
        window ends at this sample, ``ACCEPTED``, ``LATE`` (not newer than the last sample: dropped
        and counted; from further back than ``max_gap`` also held aside in case the clock stepped
        back), ``TOO_FAST`` (newer by less than ``min_step``: dropped), ``CLOCK_STEP`` (the samples
        held aside make a window's worth of an older time line: the clock stepped back, and the
        stream restarted on the new time line with them; ``STEPPED_READY`` when a window also ends
        at this sample) or ``RESTARTED`` (a missing value older than the gap rule allows).
        """
        step = t - self.last_time
        if step < self.min_step:
            if step > 0:
                self.too_fast += 1
                return TOO_FAST
            if step >= -self.max_gap or not self._clock_stepped(t, row, missing):
                self.late += 1
                return LATE
            return STEPPED_READY if self._restart_on(self.behind) == READY else CLOCK_STEP
        if self.behind:
            self.behind = []  # the current time line goes on: what was held aside were stragglers
        if step > self.gap_s:
            if step > self.max_gap:
                self.restart()
            self.gaps += step != float("inf")  # the first sample is no gap
        return self._write(t, row, missing)

    def _clock_stepped(self, t: float, row, missing: tuple) -> bool:
        """Hold a sample from further back than ``max_gap``; True once a window's worth in a row continue its time line."""
        behind = self.behind
        if not behind or not self.min_step <= t - behind[-1][0] <= self.max_gap:
            behind.clear()  # not the time line the held ones were on: start again from this sample
        behind.append((t, np.array(row, dtype=np.float32), missing))
        return len(behind) >= self.window_size

    def _restart_on(self, samples: list) -> int:
        """The clock stepped back: forget the newer time line and write ``samples`` (oldest first); the last one's result."""
        self.clock_steps += 1
        self.late -= len(samples) - 1  # held aside, now used
        self.restart()
        self.full_time = self.held_time = -np.inf  # held values came from the time line that turned out untrusted
        self.partial_time[:] = -np.inf
        self.behind = []
        result = ACCEPTED
        for t, row, missing in samples:
            result = self._write(t, row, missing)
        return result

    def _write(self, t: float, row, missing: tuple) -> int:
        """Write a sample that passed the time rules; ``READY`` when a window ends at it."""
        self.last_time = t
        i = self.pos
        if missing:
            if not self._hold(t, row, missing):
                self.restart()
                return RESTARTED
        else:
            self.full_time = t
            self.last_full = i
        w = self.window_size
        buffer = self.buffer
        buffer[i] = row
        buffer[i + w] = buffer[i]
        self.times[i] = self.times[i + w] = t
        self.pos = i + 1 if i + 1 < w else 0
        self.filled += 1
        if self.filled >= w and (self.filled - w) % self.stride == 0:
            return READY
        return ACCEPTED

    def _hold(self, t: float, row, missing: tuple[int, ...]) -> bool:
        """Fill missing entries from held values; False when one is too old (or never seen).

        Full samples only note where they were written; the held values are brought up to date
        from the latest full sample here, on the rare partial path. That row is still intact:
        every row written after it was partial and passed through here.
        """
        if self.full_time > self.held_time:
            self.held[:] = self.buffer[self.last_full]
            self.held_time = self.full_time
        usable = True
        for j in range(len(row)):
            if j in missing:
                observed_at = max(self.full_time, self.partial_time[j])
                if t - observed_at > self.max_gap:
                    usable = False
                else:
                    row[j] = self.held[j]
            else:
                self.held[j] = row[j]
                self.partial_time[j] = t
        return usable

    def window(self) -> np.ndarray:
        """The latest window ``[W, F]`` as a view into the ring buffer (valid until the next push)."""
        return self.buffer[self.pos : self.pos + self.window_size]

    def window_span(self) -> tuple[float, float]:
        """Times of the first and last sample of the latest window."""
        return self.times[self.pos], self.times[self.pos + self.window_size - 1]
