"""Pure payload decoders, one per input format: payload bytes -> sample, or :class:`BadSample`.

They know nothing of streams, topics or MQTT, so every rule at the door is testable alone.
``now`` is the receiver's clock in epoch seconds (passed in, so tests use a fake clock) and
``window = (max_past_s, max_future_s)`` the sample times accepted around it. A decoder raises
:class:`BadSample` with a bad-input kind (see ``edge_runtime.ingest.badinput.KINDS``) when the payload
cannot be used; ``notes`` returned beside a usable sample are kinds worth counting that do not
stop it (missing or unknown features). Whatever passes is finite, within float32 range and
stamped within the window, so it cannot poison a stream's windows or its events.
"""

from __future__ import annotations

import numpy as np
import orjson

from edge_runtime.contract.conditions import category_code, category_codes
from edge_runtime.contract.timeparse import to_seconds
from edge_runtime.delivery.event_schema import F32_MAX  # beyond this a value becomes inf in the model's float32 input

_NUMBER = (int, float)


class BadSample(Exception):
    """A payload refused at the door: ``reason`` is its bad-input kind, ``detail`` says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class FeatureLayout:
    """The bundle's ordered feature names with their positions, built once per bundle.

    A conditional bundle's conditions follow the features (``conditions``: ``(position, name,
    categories or None)``): a numeric one is read like a feature, a categorical one is coded as the
    index of its category, -1 for a category the model does not know.
    """

    __slots__ = ("names", "index", "numbered", "conditions", "positions")

    def __init__(self, names: list[str], conditions: list[dict] | None = None) -> None:
        self.names = list(names)
        self.index = {name: j for j, name in enumerate(self.names)}
        self.numbered = tuple(enumerate(self.names))
        self.conditions = tuple((len(self.names) + j, c["name"], category_codes(c)) for j, c in enumerate(conditions or []))
        self.positions = {**self.index, **{name: j for j, name, _ in self.conditions}}  # features and conditions by name

    def __len__(self) -> int:
        return len(self.names)

    def name_of(self, position: int) -> str:
        """The feature or condition at a row position."""
        return self.names[position] if position < len(self.names) else self.conditions[position - len(self.names)][1]

    def codes_at(self, position: int) -> dict[str, float] | None:
        """The category codes of the categorical condition at a row position; None for a feature or a numeric condition."""
        return self.conditions[position - len(self.names)][2] if position >= len(self.names) else None


def _loads(payload: bytes):
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise BadSample("malformed_json", str(error)) from None


def check_time(value, now: float, window: tuple[float, float]) -> float:
    """A sample time from a payload field (``None``: the receive time ``now``), refused outside ``window`` around now."""
    if value is None:
        return now
    try:
        t = to_seconds(value)
    except ValueError as error:
        raise BadSample("wrong_type", f"timestamp: {error}") from None
    if t - now > window[1]:
        raise BadSample("future_timestamp", f"{t - now:.0f} s ahead of this gateway's clock (runtime.max_future_s = {window[1]:g})")
    if now - t > window[0]:
        raise BadSample("past_timestamp", f"{now - t:.0f} s old (runtime.max_past_s = {window[0]:g}; raise it to replay history)")
    return t


def _beyond(name: str, value: float) -> BadSample:
    """The refusal of a value outside float32's finite range: ``non_finite`` (NaN, inf) or ``out_of_range``."""
    if value - value != 0:
        return BadSample("non_finite", f"{name}: {value}")
    return BadSample("out_of_range", f"{name}: {value} is beyond float32")


def decode_json(payload: bytes, layout: FeatureLayout, time_key: str, now: float, window: tuple[float, float]
                ) -> tuple[float, list, tuple[int, ...], tuple[tuple[str, str], ...]]:
    """One sample as a JSON object ``{"ts": ..., "<feature>": value, ...}`` (or with ``"values": {...}``).

    Returns ``(t, row, missing, notes)``: ``row`` has one float per feature (0.0 where
    missing), ``missing`` the indices without a value (absent or null).
    """
    obj = _loads(payload)
    if type(obj) is not dict:
        raise BadSample("wrong_type", "payload must be a JSON object")
    t = obj.get(time_key)
    if type(t) is not float or not -window[0] <= t - now <= window[1]:  # the common case skips the call
        t = check_time(t, now, window)
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
        if not -F32_MAX <= v <= F32_MAX:  # one comparison refuses NaN, infinities and what float32 cannot hold
            raise _beyond(name, v)
        row.append(v)
    found = len(row) - len(missing)
    given = found  # keys consumed: features, then conditions
    for j, name, categories in layout.conditions:
        v = values.get(name)
        if v is None:
            missing += (j,)  # held from the stream's last value, as a missing feature is
            nulls += name in values
            row.append(0.0)
            continue
        given += 1
        row.append(condition_value(name, v, categories))
    notes = ()
    extra = len(values) - given - nulls - (values is obj and time_key in obj)
    if extra > 0:
        notes = (("unknown_feature", f"{extra} key(s) not in the bundle's features"),)
    if missing:
        if not found:
            raise BadSample("missing_feature", "no known feature in the sample")
        notes += (("missing_feature", ", ".join(layout.name_of(j) for j in missing)),)
    return t, row, missing, notes


def condition_value(name: str, value, codes: dict[str, float] | None) -> float:
    """A condition's coded value: a categorical one's category index (-1 if unknown), a numeric one checked like a feature."""
    if codes is not None:
        return category_code(codes, value)
    if type(value) not in _NUMBER:
        raise BadSample("wrong_type", f"condition {name}: {type(value).__name__} is not a number")
    if not -F32_MAX <= value <= F32_MAX:
        raise _beyond(name, value)
    return float(value)


def decode_condition(payload: bytes, codes: dict[str, float] | None) -> float:
    """An operating condition from its own topic: a bare value (``B``, ``0.8``), a JSON one, or ``{"value": ...}``.

    ``codes`` are a categorical condition's category codes (an unknown category is -1); None for a numeric one.
    """
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        value = payload.decode("utf-8", "replace").strip()  # a bare word such as B
    if type(value) is dict:
        value = value.get("value")
    if value is None:
        raise BadSample("missing_feature", "condition without a value")
    if codes is None and type(value) is str:  # plain-text topics carry numbers as text
        try:
            value = float(value)
        except ValueError:
            raise BadSample("wrong_type", f"condition: {value!r} is not a number") from None
    return condition_value("condition", value, codes)


def decode_tag(payload: bytes, time_key: str, now: float, window: tuple[float, float]) -> tuple[float, float]:
    """One scalar of one tag: a bare number, or ``{"value": x, "ts": ...}``. Returns ``(t, value)``."""
    obj = _loads(payload)
    stamp = None
    if type(obj) is dict:
        stamp, obj = obj.get(time_key), obj.get("value")
    if type(obj) not in _NUMBER:
        raise BadSample("wrong_type", "tag value must be a number")
    if not -F32_MAX <= obj <= F32_MAX:
        raise _beyond("value", obj)
    return check_time(stamp, now, window), float(obj)


def decode_chunk(payload: bytes, n_features: int, period: float, now: float, window: tuple[float, float]
                 ) -> tuple[float, float, np.ndarray]:
    """Many samples ``{"t0": ..., "dt": ..., "values": [[...], ...]}``. Returns ``(t0, dt, rows [n, F])``.

    ``dt`` must be finite and within 1 % of the bundle's period; every sample time must lie in the window.
    """
    obj = _loads(payload)
    if type(obj) is not dict:
        raise BadSample("wrong_type", "chunk must be a JSON object")
    try:
        t0 = to_seconds(obj["t0"])
        dt = obj["dt"]
        if type(dt) not in _NUMBER:
            raise TypeError(f"dt must be a number, got {type(dt).__name__}")
        values = np.asarray(obj["values"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise BadSample("wrong_type", f"chunk needs t0, dt and values [[...]]: {error}") from None
    if not abs(dt - period) <= 0.01 * period:
        raise BadSample("dt_mismatch", f"dt {dt} but the bundle samples every {period}")
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] != n_features:
        raise BadSample("wrong_type", f"values must be [n >= 1, {n_features}], got {list(values.shape)}")
    if not np.isfinite(values).all():
        raise BadSample("non_finite", "chunk holds NaN or inf")
    if np.abs(values).max() > F32_MAX:
        raise BadSample("out_of_range", "chunk holds a value beyond float32")
    check_time(t0, now, window)
    check_time(t0 + dt * (len(values) - 1), now, window)
    return t0, float(dt), values.astype(np.float32)
