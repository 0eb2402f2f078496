"""The hot path of one model from a routed message to a ready window: decode, align, push.

Per message it allocates no arrays: decoded values (a short list) are written straight into
the stream's preallocated ring buffer. Routing and the size limit are the router's job, decoding
the decoders', per-stream state the registry's. Handlers raise :class:`BadSample`; the router
counts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edge_runtime.contract.bundle import Bundle
from edge_runtime.ingest.badinput import BadInput
from edge_runtime.ingest.decoders import BadSample, FeatureLayout, decode_chunk, decode_condition, decode_json, decode_tag
from edge_runtime.ingest.registry import StreamRegistry, StreamState
from edge_runtime.ingest.router import Route
from edge_runtime.ingest.streams import ACCEPTED, LATE, READY, RESTARTED, STEPPED_READY, TOO_FAST
from edge_runtime.ingest.topics import parse_sparkplug
from edge_runtime.sparkplug.input import SparkplugInput


class Ingest:
    """Decodes the messages routed to one model and pushes their samples into its streams.

    ``on_ready(state, arrival)`` is called with the stream whose latest window is ready and the
    ``time.perf_counter()`` at which the message carrying its last sample arrived.
    """

    def __init__(self, bundle: Bundle, streams: StreamRegistry, on_ready: Callable[[StreamState, float], None], bad: BadInput,
                 max_future_s: float = 60.0, max_past_s: float = 7 * 86400.0, send: Callable[[str, bytes], None] | None = None) -> None:
        """Sample times are accepted from ``max_past_s`` before to ``max_future_s`` after the receive time; ``send(topic,
        payload)`` publishes a Sparkplug rebirth request.
        """
        self.streams = streams
        self.on_ready = on_ready
        self.bad = bad
        self.window = (max_past_s, max_future_s)
        self.layout = FeatureLayout(bundle.features, bundle.conditions)
        self.accepted = 0
        self.formats = {"json": self._json, "tag": self._tag, "chunk": self._chunk, "condition": self._condition,
                        "sparkplug": self._sparkplug}
        self.send = send
        self.sparkplug: SparkplugInput | None = None  # created by the first Sparkplug message
        self.states = streams.states  # looked up per message: one dict get, not a method call
        # without a reorder tolerance a sample goes straight to its stream (one call less per message)
        self._push = self._reorder if streams.reorder_s else self._commit

    def rebind(self, bundle: Bundle, keep_streams: bool) -> None:
        """Switch to a new bundle; streams survive only when the input spec is unchanged."""
        if not keep_streams:
            self.layout = FeatureLayout(bundle.features, bundle.conditions)
            if self.sparkplug is not None:
                self.sparkplug.bind(self.layout)
        self.streams.rebind(bundle, keep_streams)

    def handler(self, format: str) -> Callable[[Route, bytes, float], None]:
        """The method that takes messages of an input ``format``; it raises :class:`BadSample` for bad input."""
        return self.formats[format]

    def _json(self, route: Route, payload: bytes, arrival: float) -> None:
        t, row, missing, notes = decode_json(payload, self.layout, route.config.time_key, time.time(), self.window)
        state = self.states.get(route.key) or self.streams.get(route.key, route.key_fields)
        if missing and state.conditions is not None:
            missing, notes = self._topic_conditions(state, row, missing, notes)
        if notes:
            for reason, detail in notes:
                self.bad.note(reason, route.topic, detail)
        self._push(state, route.topic, t, row, missing, arrival)

    def _topic_conditions(self, state: StreamState, row: list, missing: tuple, notes: tuple) -> tuple[tuple, tuple]:
        """Fill conditions a JSON sample lacks from their own topics' latest values (those not yet received stay missing)."""
        n = len(self.layout)
        given = tuple(j for j in missing if j >= n and state.conditions[j - n] == state.conditions[j - n])
        if not given:
            return missing, notes
        for j in given:
            row[j] = float(state.conditions[j - n])
        missing = tuple(j for j in missing if j not in given)
        notes = tuple(note for note in notes if note[0] != "missing_feature")
        if missing:
            notes += (("missing_feature", ", ".join(self.layout.name_of(j) for j in missing)),)
        return missing, notes

    def _condition(self, route: Route, payload: bytes, arrival: float) -> None:
        """A condition's own topic (often retained): its value holds for the stream's samples until the next one."""
        position = self.layout.positions.get(route.config.condition, -1)
        if position < len(self.layout):
            raise BadSample("unknown_feature", f"condition {route.config.condition!r} is not one of the bundle's")
        value = decode_condition(payload, self.layout.codes_at(position))
        self.streams.get(route.key, route.key_fields).conditions[position - len(self.layout)] = value
        self.accepted += 1

    def _with_conditions(self, state: StreamState, rows):
        """Tag and chunk samples carry no conditions: append the stream's latest ones from their topics (NaN: none yet)."""
        if state.conditions is None:
            return rows
        if rows.ndim == 1:
            return np.concatenate([rows, state.conditions])
        return np.hstack([rows, np.broadcast_to(state.conditions, (len(rows), len(state.conditions)))])

    def _tag(self, route: Route, payload: bytes, arrival: float) -> None:
        j = self.layout.index.get(route.tag)
        if j is None:
            raise BadSample("unknown_feature", f"tag {route.tag!r}")
        t, value = decode_tag(payload, route.config.time_key, time.time(), self.window)
        state = self.streams.get(route.key, route.key_fields)
        if not self.streams.aligner(state, route.config.staleness_s).update(t, j, value, self._emitter(state, route.topic, arrival)):
            self._straggler(route, t)

    def _emitter(self, state: StreamState, topic: str, arrival: float) -> Callable[[float, np.ndarray, tuple], None]:
        """What the grid aligner calls with each tick it completes (tag and Sparkplug data): the sample, with the
        stream's conditions, into the stream.
        """
        return lambda tick, row, missing: self._push(state, topic, tick, self._with_conditions(state, row), missing, arrival)

    def _chunk(self, route: Route, payload: bytes, arrival: float) -> None:
        t0, dt, rows = decode_chunk(payload, len(self.layout), self.streams.bundle.sample_period, time.time(), self.window)
        state = self.streams.get(route.key, route.key_fields)
        rows = self._with_conditions(state, rows)
        for i in range(len(rows)):
            self._push(state, route.topic, t0 + i * dt, rows[i], (), arrival)

    def _sparkplug(self, route: Route, payload: bytes, arrival: float) -> None:
        """A Sparkplug B message: its metrics go through the stream's grid aligner like tags (conditions are held)."""
        if self.sparkplug is None:
            self.sparkplug = SparkplugInput(self.layout, self.send, self._restart, route.config.rebirth_interval_s,
                                            max_nodes=self.streams.max_streams)
        where = parse_sparkplug(route.topic)
        samples = self.sparkplug.take(where, payload, time.time(), self.window, self.bad)
        if not samples:
            return
        state = self.streams.get(route.key, route.key_fields)
        aligner = self.streams.aligner(state, route.config.staleness_s)
        emit = self._emitter(state, route.topic, arrival)
        n = len(self.layout)
        for t, found in samples:
            if state.conditions is not None:
                for j in [j for j in found if j >= n]:
                    state.conditions[j - n] = found.pop(j)
            if len(found) == n:  # every feature at one time, the usual DATA: one aligner step instead of one per feature
                taken = aligner.update(t, slice(None), [found[j] for j in range(n)], emit)
            else:
                taken = all([aligner.update(t, j, value, emit) for j, value in found.items()])
            if not taken:
                self._straggler(route, t)

    def _straggler(self, route: Route, t: float) -> None:
        """A tag or metric from further back than the gap rule: refused as late, the stream's history kept."""
        self.bad.report("late", route.topic, f"t={t} is more than max_gap before the stream's time line")
        self.refused(route.key)

    def refused(self, key: str) -> None:
        """Count a refused message against its stream, when the stream is held (an id never accepted costs nothing)."""
        state = self.states.get(key)
        if state is not None:
            state.refused += 1

    def _restart(self, key: str) -> None:
        """End a stream's current run (a Sparkplug death or sequence gap): no window spans what may be missing."""
        state = self.states.get(key)
        if state is not None:
            state.ring.restart()
            state.aligner = None

    def _reorder(self, state: StreamState, topic: str, t: float, row, missing: tuple, arrival: float) -> None:
        for sample in state.reorder.add(topic, t, row, missing, arrival):
            self._commit(state, *sample)

    def flush(self) -> None:
        """Release every sample still held for reordering (at shutdown)."""
        for state in self.streams:
            if state.reorder is not None:
                for sample in state.reorder.drain():
                    self._commit(state, *sample)

    def expire_held(self, now: float) -> None:
        """Release the samples of streams that went quiet for the reorder tolerance (``now``: ``time.perf_counter()``)."""
        if self.streams.reorder_s:
            for state in self.streams:
                for sample in state.reorder.expire(now):
                    self._commit(state, *sample)

    def _commit(self, state: StreamState, topic: str, t: float, row, missing: tuple, arrival: float) -> None:
        ring = state.ring
        result = ring.push(t, row, missing)
        if result == READY:
            self.on_ready(state, arrival)
        elif result != ACCEPTED:
            if result in (LATE, RESTARTED, TOO_FAST):
                state.refused += 1
            if result == LATE:
                self.bad.report("late", topic, f"t={t} not after {ring.last_time}")
                return
            if result == RESTARTED:
                self.bad.report("gap_restart", topic, "a feature was missing for longer than the gap rule allows")
                return
            if result == TOO_FAST:
                self.bad.report("rate_mismatch", topic, f"t={t} is {t - ring.last_time:.3g} s after the last sample; "
                                f"the bundle samples every {self.streams.bundle.sample_period:g} s")
                return
            if state.reorder is not None:
                state.reorder.newest = t  # the reorder buffer follows the new time line
            self.bad.note("clock_step", topic, "a window's worth of samples continued an older time line: the clock stepped back; "
                          "stream restarted on it")
            if result == STEPPED_READY:
                self.on_ready(state, arrival)
        self.accepted += 1
