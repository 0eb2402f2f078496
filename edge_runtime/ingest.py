"""The hot path from an MQTT message to a ready window: route, decode, push into the stream.

Per message it allocates no arrays: decoded values (a short list) are written straight into
the stream's preallocated ring buffer. Routes are cached per topic string.
"""

from __future__ import annotations

import heapq
import math
import time
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import orjson

from edge_runtime.badinput import BadInput
from edge_runtime.bundle import Bundle
from edge_runtime.config import InputConfig
from edge_runtime.streams import LATE, READY, RESTARTED, Stream
from edge_runtime.topics import TopicTemplate

_NUMBER = (int, float)
MALFORMED = object()  # what _loads returns for a payload that is not JSON


def to_seconds(value) -> float:
    """Epoch seconds from a number or an ISO 8601 string (naive means UTC); ValueError otherwise."""
    if type(value) in _NUMBER:
        return float(value)
    if isinstance(value, str):
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    raise ValueError(f"timestamp must be a number or ISO 8601 string, got {type(value).__name__}")


class TagAligner:
    """Aligns one-scalar-per-tag messages onto the bundle's sample grid for one stream.

    Grid ticks are multiples of the sample period. A tick is emitted once a message newer than it
    arrives; each feature takes its latest value at or before the tick if that value is no older
    than ``staleness_s``, and is missing otherwise (then the stream's hold rule applies).
    """

    __slots__ = ("values", "times", "next_tick", "period", "staleness", "max_ticks")

    def __init__(self, n_features: int, period: float, staleness: float, max_gap: float) -> None:
        self.values = np.zeros(n_features, np.float32)
        self.times = np.full(n_features, -math.inf)
        self.next_tick = None
        self.period, self.staleness = period, staleness
        self.max_ticks = int(max_gap / period) + 2

    def update(self, t: float, feature: int, value: float, emit: Callable[[float, np.ndarray, tuple], None]) -> None:
        """Emit every grid tick before ``t``, then record the new value."""
        if self.next_tick is None:
            self.next_tick = math.ceil(t / self.period) * self.period
        emitted = 0
        while self.next_tick < t:
            if emitted < self.max_ticks:
                ages = self.next_tick - self.times
                missing = tuple(np.flatnonzero((ages > self.staleness) | (ages < 0)).tolist())
                emit(self.next_tick, self.values.copy(), missing)
                emitted += 1
            self.next_tick += self.period
        self.values[feature] = value
        self.times[feature] = t


class Reorder:
    """Holds a stream's samples for ``tolerance`` seconds of sample time and releases them in time order.

    A sample that arrives after newer ones but within the tolerance takes its place; one older than
    what was already released is passed through and dropped by the stream as late. Costs the
    tolerance in latency, so it is off (0) unless configured.
    """

    __slots__ = ("tolerance", "heap", "newest", "count")

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.heap: list = []
        self.newest = -math.inf
        self.count = 0

    def add(self, topic: str, t: float, row, missing: tuple, arrival: float) -> list[tuple]:
        """Queue one sample; return the samples now old enough to release, oldest first."""
        self.count += 1
        heapq.heappush(self.heap, (t, self.count, topic, row, missing, arrival))
        self.newest = max(self.newest, t)
        released = []
        while self.heap and self.heap[0][0] <= self.newest - self.tolerance:
            t0, _, topic0, row0, missing0, arrival0 = heapq.heappop(self.heap)
            released.append((topic0, t0, row0, missing0, arrival0))
        return released

    def drain(self) -> list[tuple]:
        """Everything still held, oldest first."""
        released = [(topic, t, row, missing, arrival) for t, _, topic, row, missing, arrival in sorted(self.heap)]
        self.heap.clear()
        return released


class Ingest:
    """Routes messages for one bundle to per-stream ring buffers and reports ready windows.

    ``on_ready(stream, arrival)`` is called with the stream whose latest window is ready and the
    ``time.perf_counter()`` at which the message carrying its last sample arrived.
    """

    def __init__(self, bundle: Bundle, inputs: list[InputConfig], on_ready: Callable[[Stream, float], None], bad: BadInput,
                 max_payload: int = 65536, max_future_s: float = 60.0, reorder_s: float = 0.0) -> None:
        self.bundle = bundle
        self.on_ready = on_ready
        self.bad = bad
        self.max_payload, self.max_future_s = max_payload, max_future_s
        self.templates = [(TopicTemplate(i.topic), i) for i in inputs]
        self.features = bundle.features
        self.index = {name: j for j, name in enumerate(self.features)}
        self.numbered = tuple(enumerate(self.features))
        self.streams: dict[str, Stream] = {}
        self.aligners: dict[str, TagAligner] = {}
        self.routes: dict[str, tuple] = {}
        self.accepted = 0
        self.reorder_s = reorder_s
        self.reorders: dict[str, Reorder] = {}

    def subscriptions(self) -> set[tuple[str, int]]:
        """Topic filters to subscribe to, with their QoS."""
        return {(t.subscription, cfg.qos) for t, cfg in self.templates}

    def stream(self, key: str) -> Stream:
        """The stream for ``key``, created on first use."""
        s = self.streams.get(key)
        if s is None:
            b = self.bundle
            s = self.streams[key] = Stream(key, b.window, b.stride, len(b.features), b.max_gap)
        return s

    def rebind(self, bundle: Bundle, keep_streams: bool) -> None:
        """Switch to a new bundle; streams survive only when the input spec is unchanged."""
        self.bundle = bundle
        if not keep_streams:
            self.features = bundle.features
            self.index = {name: j for j, name in enumerate(self.features)}
            self.numbered = tuple(enumerate(self.features))
            self.streams.clear()
            self.aligners.clear()
            self.reorders.clear()  # held rows have the old feature layout
            self.routes.clear()

    def route(self, topic: str):
        """The cached ``(handler, stream key, tag, input config)`` for a topic, or None if no template matches."""
        return self.routes.get(topic) or self._route(topic)

    def _route(self, topic: str):
        for template, cfg in self.templates:
            matched = template.match(topic)
            if matched is not None:
                key, tag = matched
                handler = {"json": self._json, "tag": self._tag, "chunk": self._chunk}[cfg.format]
                route = (handler, key, tag, cfg)
                self.routes[topic] = route
                return route
        return None

    def handle(self, topic: str, payload: bytes, arrival: float) -> None:
        """Process one message (the MQTT callback calls this)."""
        route = self.route(topic)
        if route is None:
            self.bad.report("unknown_topic", topic)
            return
        if len(payload) > self.max_payload:
            self.bad.report("oversized", topic, f"{len(payload)} bytes > {self.max_payload}")
            return
        handler, key, tag, cfg = route
        handler(topic, payload, arrival, key, tag, cfg)

    def _time(self, topic: str, value, now: float) -> float | None:
        if value is None:
            return now
        try:
            t = to_seconds(value)
        except (ValueError, TypeError) as error:
            self.bad.report("wrong_type", topic, f"timestamp: {error}")
            return None
        if t - now > self.max_future_s:
            self.bad.report("future_timestamp", topic, f"{t - now:.0f} s ahead")
            return None
        return t

    def _push(self, topic: str, stream: Stream, t: float, row, missing: tuple, arrival: float) -> None:
        if self.reorder_s:
            reorder = self.reorders.get(stream.key)
            if reorder is None:
                reorder = self.reorders[stream.key] = Reorder(self.reorder_s)
            for sample in reorder.add(topic, t, row, missing, arrival):
                self._commit(stream, *sample)
            return
        self._commit(stream, topic, t, row, missing, arrival)

    def flush(self) -> None:
        """Release every sample still held for reordering (at shutdown)."""
        for key, reorder in self.reorders.items():
            for sample in reorder.drain():
                self._commit(self.streams[key], *sample)

    def _commit(self, stream: Stream, topic: str, t: float, row, missing: tuple, arrival: float) -> None:
        result = stream.push(t, row, missing)
        if result == READY:
            self.on_ready(stream, arrival)
        elif result == LATE:
            self.bad.report("late", topic, f"t={t} not after {stream.last_time}")
            return
        elif result == RESTARTED:
            self.bad.report("gap_restart", topic, "a feature was missing for longer than the gap rule allows")
            return
        self.accepted += 1

    def _loads(self, topic: str, payload: bytes):
        """The decoded payload, or ``MALFORMED`` (counted) when it is not JSON."""
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            self.bad.report("malformed_json", topic, str(error))
            return MALFORMED

    def _json(self, topic, payload, arrival, key, tag, cfg) -> None:
        obj = self._loads(topic, payload)
        if obj is MALFORMED:
            return
        if type(obj) is not dict:
            self.bad.report("wrong_type", topic, "payload must be a JSON object")
            return
        t = obj.get(cfg.time_key)
        now = time.time()
        if type(t) is not float or t - now > self.max_future_s:  # the common case skips the call
            t = self._time(topic, t, now)
            if t is None:
                return
        values = obj.get("values", obj)
        if type(values) is not dict:
            self.bad.report("wrong_type", topic, "'values' must be an object")
            return
        row = []
        missing = ()
        nulls = 0  # features sent as null: present keys, but missing values
        for j, name in self.numbered:
            v = values.get(name)
            if v is None:
                missing += (j,)
                nulls += name in values
                row.append(0.0)
                continue
            if type(v) not in _NUMBER:
                self.bad.report("wrong_type", topic, f"{name}: {type(v).__name__} is not a number")
                return
            if v - v != 0:
                self.bad.report("non_finite", topic, f"{name}: {v}")
                return
            row.append(v)
        found = len(row) - len(missing)
        extra = len(values) - found - nulls - (values is obj and cfg.time_key in obj)
        if extra > 0:
            self.bad.report("unknown_feature", topic, f"{extra} key(s) not in the bundle's features")
        if missing:
            if not found:
                self.bad.report("missing_feature", topic, "no known feature in the sample")
                return
            self.bad.report("missing_feature", topic, ", ".join(self.features[j] for j in missing))
        self._push(topic, self.stream(key), t, row, missing, arrival)

    def _tag(self, topic, payload, arrival, key, tag, cfg) -> None:
        j = self.index.get(tag)
        if j is None:
            self.bad.report("unknown_feature", topic, f"tag {tag!r}")
            return
        obj = self._loads(topic, payload)
        if obj is MALFORMED:
            return
        now = time.time()
        stamp = None
        if type(obj) is dict:
            stamp, obj = obj.get(cfg.time_key), obj.get("value")
        if type(obj) not in _NUMBER:
            self.bad.report("wrong_type", topic, "tag value must be a number")
            return
        if obj - obj != 0:
            self.bad.report("non_finite", topic, str(obj))
            return
        t = self._time(topic, stamp, now)
        if t is None:
            return
        aligner = self.aligners.get(key)
        if aligner is None:
            b = self.bundle
            aligner = self.aligners[key] = TagAligner(len(self.features), b.sample_period, cfg.staleness_s, b.max_gap)
        stream = self.stream(key)
        aligner.update(t, j, float(obj), lambda tick, row, missing: self._push(topic, stream, tick, row, missing, arrival))

    def _chunk(self, topic, payload, arrival, key, tag, cfg) -> None:
        obj = self._loads(topic, payload)
        if obj is MALFORMED:
            return
        try:
            t0 = to_seconds(obj["t0"])
            dt = float(obj["dt"])
            rows = np.asarray(obj["values"], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as error:
            self.bad.report("wrong_type", topic, f"chunk needs t0, dt and values [[...]]: {error}")
            return
        period = self.bundle.sample_period
        if abs(dt - period) > 0.01 * period:
            self.bad.report("dt_mismatch", topic, f"dt {dt} but the bundle samples every {period}")
            return
        if rows.ndim != 2 or rows.shape[1] != len(self.features):
            self.bad.report("wrong_type", topic, f"values must be [n, {len(self.features)}], got {list(rows.shape)}")
            return
        if not np.isfinite(rows).all():
            self.bad.report("non_finite", topic, "chunk holds NaN or inf")
            return
        if self._time(topic, t0 + dt * (len(rows) - 1), time.time()) is None:
            return
        stream = self.stream(key)
        for i in range(len(rows)):
            self._push(topic, stream, t0 + i * dt, rows[i], (), arrival)
