"""Pure payload decoders, one per input format: payload bytes -> sample, or :class:`BadSample`.

They know nothing of streams, topics or MQTT, so every rule at the door is testable alone.
``now`` is the receiver's clock in epoch seconds (passed in, so tests use a fake clock). A
decoder raises :class:`BadSample` with a bad-input kind (see ``edge_runtime.badinput.KINDS``)
when the payload cannot be used; ``notes`` returned beside a usable sample are kinds worth
counting that do not stop it (missing or unknown features).
"""

from __future__ import annotations

import numpy as np
import orjson

from edge_runtime.timeparse import to_seconds

_NUMBER = (int, float)


class BadSample(Exception):
    """A payload refused at the door: ``reason`` is its bad-input kind, ``detail`` says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class FeatureLayout:
    """The bundle's ordered feature names with their positions, built once per bundle."""

    __slots__ = ("names", "index", "numbered")

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.index = {name: j for j, name in enumerate(self.names)}
        self.numbered = tuple(enumerate(self.names))

    def __len__(self) -> int:
        return len(self.names)


def _loads(payload: bytes):
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise BadSample("malformed_json", str(error)) from None


def check_time(value, now: float, max_future_s: float) -> float:
    """A sample time from a payload field (``None``: the receive time ``now``), refused if too far ahead."""
    if value is None:
        return now
    try:
        t = to_seconds(value)
    except ValueError as error:
        raise BadSample("wrong_type", f"timestamp: {error}") from None
    if t - now > max_future_s:
        raise BadSample("future_timestamp", f"{t - now:.0f} s ahead")
    return t


def decode_json(payload: bytes, layout: FeatureLayout, time_key: str, now: float, max_future_s: float
                ) -> tuple[float, list, tuple[int, ...], tuple[tuple[str, str], ...]]:
    """One sample as a JSON object ``{"ts": ..., "<feature>": value, ...}`` (or with ``"values": {...}``).

    Returns ``(t, row, missing, notes)``: ``row`` has one float per feature (0.0 where
    missing), ``missing`` the indices without a value (absent or null).
    """
    obj = _loads(payload)
    if type(obj) is not dict:
        raise BadSample("wrong_type", "payload must be a JSON object")
    t = obj.get(time_key)
    if type(t) is not float or t - now > max_future_s:  # the common case skips the call
        t = check_time(t, now, max_future_s)
    values = obj.get("values", obj)
    if type(values) is not dict:
        raise BadSample("wrong_type", "'values' must be an object")
    row = []
    missing = ()
    nulls = 0  # features sent as null: present keys, but missing values
    for j, name in layout.numbered:
        v = values.get(name)
        if v is None:
            missing += (j,)
            nulls += name in values
            row.append(0.0)
            continue
        if type(v) not in _NUMBER:
            raise BadSample("wrong_type", f"{name}: {type(v).__name__} is not a number")
        if v - v != 0:
            raise BadSample("non_finite", f"{name}: {v}")
        row.append(v)
    found = len(row) - len(missing)
    notes = ()
    extra = len(values) - found - nulls - (values is obj and time_key in obj)
    if extra > 0:
        notes = (("unknown_feature", f"{extra} key(s) not in the bundle's features"),)
    if missing:
        if not found:
            raise BadSample("missing_feature", "no known feature in the sample")
        notes += (("missing_feature", ", ".join(layout.names[j] for j in missing)),)
    return t, row, missing, notes


def decode_tag(payload: bytes, time_key: str, now: float, max_future_s: float) -> tuple[float, float]:
    """One scalar of one tag: a bare number, or ``{"value": x, "ts": ...}``. Returns ``(t, value)``."""
    obj = _loads(payload)
    stamp = None
    if type(obj) is dict:
        stamp, obj = obj.get(time_key), obj.get("value")
    if type(obj) not in _NUMBER:
        raise BadSample("wrong_type", "tag value must be a number")
    if obj - obj != 0:
        raise BadSample("non_finite", str(obj))
    return check_time(stamp, now, max_future_s), float(obj)


def decode_chunk(payload: bytes, n_features: int, period: float, now: float, max_future_s: float
                 ) -> tuple[float, float, np.ndarray]:
    """Many samples ``{"t0": ..., "dt": ..., "values": [[...], ...]}``. Returns ``(t0, dt, rows [n, F])``."""
    obj = _loads(payload)
    try:
        t0 = to_seconds(obj["t0"])
        dt = float(obj["dt"])
        rows = np.asarray(obj["values"], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as error:
        raise BadSample("wrong_type", f"chunk needs t0, dt and values [[...]]: {error}") from None
    if not abs(dt - period) <= 0.01 * period:  # also refuses a NaN dt
        raise BadSample("dt_mismatch", f"dt {dt} but the bundle samples every {period}")
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise BadSample("wrong_type", f"values must be [n, {n_features}], got {list(rows.shape)}")
    if not np.isfinite(rows).all():
        raise BadSample("non_finite", "chunk holds NaN or inf")
    check_time(t0 + dt * (len(rows) - 1), now, max_future_s)
    return t0, dt, rows
