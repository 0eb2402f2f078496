"""The event schemas: ``linewatch.event/1`` (one window, or an alarm or drift change) and
``linewatch.scores/1`` (the score telemetry of several windows of one stream in one message); building and checking them.

Both are flat JSON objects. Consumers should key on ``schema`` (a new major version means
an incompatible change) and drop duplicates by ``id`` (delivery is at least once). An event also
carries ``key``: the same for the same decision whoever makes it (model, stream, window end, kind),
so a window decided twice, by a runtime that restarted or by two runtimes during a move, is one.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid

from edge_runtime.contract.timeparse import iso

SCHEMA = "linewatch.event/1"
SCORES_SCHEMA = "linewatch.scores/1"
F32_MAX = 3.4028234663852886e38  # float32's largest value
KINDS = ("alarm_raised", "alarm_cleared", "drift", "drift_cleared", "score")
# field -> accepted JSON types
FIELDS: dict[str, tuple[type, ...]] = {
    "schema": (str,), "id": (str,), "key": (str,), "kind": (str,), "stream": (str,), "model": (str,), "model_id": (str,),
    "window_start": (str,), "window_end": (str,), "score": (float, int), "threshold": (float, int),
    "top_features": (list,), "latency_ms": (float, int), "emitted_at": (str,),
}
# field -> accepted JSON types of a scores message; the three lists hold one entry per window, oldest first
SCORES_FIELDS: dict[str, tuple[type, ...]] = {
    "schema": (str,), "id": (str,), "stream": (str,), "model": (str,), "model_id": (str,), "threshold": (float, int),
    "window_end": (list,), "score": (list,), "latency_ms": (list,), "emitted_at": (str,),
}


class EventError(ValueError):
    """A payload that is not a valid ``linewatch.event/1`` event."""


# Event ids: 32 hex digits like a UUID's, a random half per process and a counter, so an id costs no system call
# (uuid4 reads os.urandom for every event: 7 % of the runtime's time under load) and stays unique across restarts.
ID_PREFIX = uuid.uuid4().hex[:16]
ID_COUNTER = itertools.count()


def saturate(value: float) -> float:
    """A JSON-safe number: NaN and infinities (a value far outside what the model knows) become float32's largest."""
    value = float(value)
    if math.isfinite(value):
        return value
    return -F32_MAX if value < 0 else F32_MAX


def top_features(features: list[str], feature_error, top: int = 3) -> list[dict]:
    """The ``top`` features with the largest errors, largest first, as ``{"name", "error"}`` (errors saturated)."""
    errors = [saturate(e) for e in feature_error]
    order = sorted(range(len(features)), key=lambda j: -errors[j])[:top]
    return [{"name": features[j], "error": errors[j]} for j in order]


def make_event(kind: str, stream: str, model: str, model_id: str, span: tuple[float, float], score: float, threshold: float,
               features: list[str], feature_error, latency_s: float, top: int = 3, exceeded_since: float | None = None) -> dict:
    """One event: id, kind, stream, model and bundle id, window span, score, threshold,
    the top contributing features with their errors, and end-to-end latency so far. Scores and
    errors beyond float32 (inputs far outside the training range) are saturated, never ``null``.
    ``exceeded_since`` (an alarm raised): the end of the first window above the threshold among those that raised it.
    """
    window_end = iso(span[1])
    event = {
        "schema": SCHEMA,
        "id": f"{ID_PREFIX}{next(ID_COUNTER):016x}",
        "key": f"{model_id}|{stream}|{window_end}|{kind}",
        "kind": kind,
        "stream": stream,
        "model": model,
        "model_id": model_id,
        "window_start": iso(span[0]),
        "window_end": window_end,
        "score": saturate(score),
        "threshold": float(threshold),
        "top_features": top_features(features, feature_error, top),
        "latency_ms": round(float(latency_s) * 1000, 3),
        "emitted_at": iso(time.time()),
    }
    if exceeded_since is not None:
        event["exceeded_since"] = iso(exceeded_since)
    return event


def make_scores(stream: str, model: str, model_id: str, threshold: float, ends: list[float], scores: list[float],
                latencies_s: list[float]) -> dict:
    """The score telemetry of several windows of one stream (``score_events = "grouped"``): window ends, scores and
    latencies as parallel lists, oldest first; scores beyond float32 are saturated as in :func:`make_event`.
    """
    return {
        "schema": SCORES_SCHEMA,
        "id": f"{ID_PREFIX}{next(ID_COUNTER):016x}",
        "stream": stream,
        "model": model,
        "model_id": model_id,
        "threshold": float(threshold),
        "window_end": [iso(t) for t in ends],
        "score": [saturate(s) for s in scores],
        "latency_ms": [round(float(s) * 1000, 3) for s in latencies_s],
        "emitted_at": iso(time.time()),
    }


def _check_fields(message: dict, schema: str, fields: dict[str, tuple[type, ...]]) -> None:
    if not isinstance(message, dict):
        raise EventError(f"an event is a JSON object, got {type(message).__name__}")
    if message.get("schema") != schema:
        raise EventError(f"schema {message.get('schema')!r} is not {schema!r}")
    for name, types in fields.items():
        if name not in message:
            raise EventError(f"field {name!r} is missing")
        value = message[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise EventError(f"field {name!r} is {type(value).__name__}, expected {' or '.join(t.__name__ for t in types)}")


def validate_scores(message: dict) -> dict:
    """Return ``message`` if it is a valid ``linewatch.scores/1`` message; :class:`EventError` naming the field otherwise."""
    _check_fields(message, SCORES_SCHEMA, SCORES_FIELDS)
    n = len(message["window_end"])
    if n == 0 or len(message["score"]) != n or len(message["latency_ms"]) != n:
        raise EventError("window_end, score and latency_ms must be non-empty lists of one length")
    if not all(isinstance(t, str) for t in message["window_end"]):
        raise EventError("window_end holds ISO 8601 strings")
    for name in ("score", "latency_ms"):
        if not all(isinstance(v, (float, int)) and not isinstance(v, bool) for v in message[name]):
            raise EventError(f"{name} holds numbers")
    return message


def validate_event(event: dict) -> dict:
    """Return ``event`` if it is a valid ``linewatch.event/1`` event; :class:`EventError` naming the field otherwise."""
    _check_fields(event, SCHEMA, FIELDS)
    if event["kind"] not in KINDS:
        raise EventError(f"kind {event['kind']!r} is not one of {KINDS}")
    if not isinstance(event.get("exceeded_since", ""), str):
        raise EventError("field 'exceeded_since' is an ISO 8601 string when present")
    for item in event["top_features"]:
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("error"), (float, int))):
            raise EventError(f"top_features entry {item!r} needs a name and an error")
    return event
