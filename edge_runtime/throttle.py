"""The one rule for saying things sparingly: a message about a key is due the first time, then at most once
every ``every_s`` seconds (never again with the default), until the key is forgotten.

Bad input, refused events and subscriptions, connection failures and silent subscriptions all log
through it, so "logged once per ..." means the same everywhere. Thread-safe: the MQTT network
thread and the scoring threads may ask at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator


class Throttle:
    """Which keys are due a message now; :meth:`due` records that it was given."""

    def __init__(self, every_s: float = math.inf, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, key: str) -> bool:
        """True when a message about ``key`` should be given now (and remember that it was)."""
        now = self.clock()
        with self._lock:
            if now - self._last.get(key, -math.inf) < self.every_s:
                return False
            self._last[key] = now
            return True

    def forget(self, key: str | None = None) -> None:
        """Make ``key`` (every key when None) due again."""
        with self._lock:
            if key is None:
                self._last.clear()
            else:
                self._last.pop(key, None)

    def __len__(self) -> int:
        return len(self._last)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._last))
