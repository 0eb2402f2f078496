"""Bad input accounting: refusals and notes counted by kind, logged once per kind per minute,
published at most ``per_second`` a second (reports over the limit are counted, not sent).

A message is either accepted or refused under exactly one kind (:data:`KINDS`); an accepted
sample may also carry notes (:data:`NOTES`: features missing or unknown, a clock step), counted apart.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from edge_runtime.throttle import Throttle

log = logging.getLogger("linewatch.input")

KINDS = ("malformed_json", "wrong_type", "non_finite", "out_of_range", "missing_feature", "oversized",
         "future_timestamp", "past_timestamp", "late", "rate_mismatch", "gap_restart", "unknown_topic",
         "unknown_feature", "dt_mismatch", "stream_limit", "internal_error", "malformed_protobuf", "sparkplug_unborn",
         "sparkplug_sequence", "unauthorized")
NOTES = ("missing_feature", "unknown_feature", "clock_step")


class BadInput:
    """Counts refusals (:meth:`report`) and notes (:meth:`note`); ``publish(report)`` is called at most ``per_second`` a second."""

    def __init__(self, publish: Callable[[dict], None] | None = None, per_second: float = 5.0, log_every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: Counter = Counter()
        self.notes: Counter = Counter()
        self.publish = publish
        self.clock = clock
        self.unpublished = 0  # reports over the rate limit
        self.burst = max(1, math.floor(per_second)) if per_second > 0 else 0
        self.span = self.burst / per_second if per_second > 0 else math.inf  # at most `burst` reports in any `span` seconds
        self._sent: deque[float] = deque()
        self._logs = Throttle(log_every_s, clock)
        self._lock = threading.Lock()  # paho's network thread reports, and the housekeeping thread when it releases held samples

    def report(self, kind: str, topic: str, detail: str = "") -> None:
        """Count one refused message; log and publish it if the limits allow."""
        with self._lock:
            self.counts[kind] += 1
            self._tell(kind, topic, detail, self.counts[kind], refused=True)

    def note(self, kind: str, topic: str, detail: str = "") -> None:
        """Count a remark on an accepted sample (a feature missing or unknown, a clock step)."""
        with self._lock:
            self.notes[kind] += 1
            self._tell(kind, topic, detail, self.notes[kind], refused=False)

    def _tell(self, kind: str, topic: str, detail: str, count: int, refused: bool) -> None:
        now = self.clock()
        if self._logs.due(kind):
            log.warning("%s (%s) on %s: %s [%d so far; logged once per minute]", "bad input" if refused else "note", kind, topic, detail, count)
        if self.publish is None:
            return
        while self._sent and now - self._sent[0] >= self.span:
            self._sent.popleft()
        if len(self._sent) >= self.burst:
            self.unpublished += 1
            return
        self._sent.append(now)
        self.publish({"topic": topic, "reason": kind, "detail": detail[:200], "count": count, "refused": refused})
