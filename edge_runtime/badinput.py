"""Bad input accounting: counted by kind, logged once per kind per minute, published rate-limited."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("linewatch.input")

KINDS = ("malformed_json", "wrong_type", "non_finite", "out_of_range", "unknown_feature", "missing_feature", "oversized",
         "future_timestamp", "past_timestamp", "late", "clock_step", "rate_mismatch", "gap_restart", "unknown_topic",
         "dt_mismatch", "stream_limit", "internal_error")


class BadInput:
    """Counts bad input; ``publish(topic, reason, detail)`` is called at most ``per_second`` times a second."""

    def __init__(self, publish: Callable[[dict], None] | None = None, per_second: float = 5.0, log_every_s: float = 60.0) -> None:
        self.counts: Counter = Counter()
        self.publish = publish
        self.per_second = per_second
        self.log_every_s = log_every_s
        self._last_log: dict[str, float] = {}
        self._tokens = per_second
        self._refilled = time.monotonic()

    def report(self, kind: str, topic: str, detail: str = "") -> None:
        """Count one bad message; log and publish it if the limits allow."""
        self.counts[kind] += 1
        now = time.monotonic()
        if now - self._last_log.get(kind, -1e18) >= self.log_every_s:
            self._last_log[kind] = now
            log.warning("bad input (%s) on %s: %s [%d so far; logged once per minute]", kind, topic, detail, self.counts[kind])
        if self.publish is None:
            return
        self._tokens = min(self.per_second, self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            self.publish({"topic": topic, "reason": kind, "detail": detail[:200], "count": self.counts[kind]})
