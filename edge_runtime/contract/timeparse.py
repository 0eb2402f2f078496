"""The one rule for sample times (and the one ISO 8601 format events write), shared by the runtime's decoders, CSV reading and training.

A time is a finite number of seconds since the epoch, or an ISO 8601 string (a trailing ``Z``
means UTC; a string without a zone is UTC). In text files a number may also come as text
(``"1700000000.5"``). Anything else is refused with ``ValueError``.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

_NUMBER = (int, float)


def to_seconds(value) -> float:
    """Epoch seconds from a number, a numeric string or an ISO 8601 string; ``ValueError`` otherwise."""
    if type(value) in _NUMBER:
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise ValueError(f"timestamp {value!r} is neither a number nor ISO 8601") from None
            seconds = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    else:
        raise ValueError(f"timestamp must be a number or ISO 8601 string, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp {value!r} is not finite")
    return seconds


_SECONDS: dict[int, str] = {}  # "YYYY-MM-DDTHH:MM:SS" of recent whole seconds: every event formats three times


def iso(t: float) -> str:
    """ISO 8601 UTC with milliseconds, as ``datetime.fromtimestamp(t, utc).isoformat(timespec="milliseconds")`` writes it."""
    fraction, whole = math.modf(t)
    micros = round(fraction * 1e6)  # datetime rounds to the microsecond (half to even), then cuts to the millisecond
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        prefix = _SECONDS[second] = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{micros // 1000:03d}Z"
