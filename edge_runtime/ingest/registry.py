"""All state of one stream key in one record, and the bounded registry of one model's records.

Reload, eviction and metrics touch this one place: a record holds the stream's ring buffer,
its tag aligner and reorder buffer (when its input needs them) and its alarm state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from edge_runtime.contract.alarms import Alarm
from edge_runtime.contract.bundle import Bundle
from edge_runtime.ingest.alignment import Reorder, TagAligner
from edge_runtime.ingest.decoders import BadSample
from edge_runtime.ingest.streams import Stream, stream_for
from edge_runtime.scoring.drift import DriftWatch


class StreamState:
    """Everything linewatch keeps for one stream key."""

    __slots__ = ("key", "ring", "aligner", "reorder", "alarm", "drift", "seen_time", "quiet_since", "labels", "conditions", "view",
                 "refused")

    def __init__(self, key: str, ring: Stream, reorder: Reorder | None, alarm: Alarm, now: float, labels: dict | None = None,
                 conditions: np.ndarray | None = None) -> None:
        """``labels``: the topic fields that make up the key (``{"line": "l1", "machine": "m7"}``), for event topics.
        ``conditions``: a conditional model's latest condition values from their own topics (NaN until one arrives).
        """
        self.key, self.ring, self.reorder, self.alarm = key, ring, reorder, alarm
        self.conditions = conditions
        self.labels = labels or {}
        self.drift = DriftWatch()
        self.aligner: TagAligner | None = None  # created by the first tag message
        self.seen_time, self.quiet_since = ring.last_time, now  # for idle eviction (the sweep's, not the hot path's)
        self.view = None  # what the status page shows of it (edge_runtime.status.view), when the page is on
        self.refused = 0  # its messages refused as bad input (counted on the refusal path only)


class StreamRegistry:
    """The :class:`StreamState` of every stream of one model, created on first use, at most ``max_streams``.

    A new key beyond the limit is refused (:class:`BadSample` ``stream_limit``) rather than
    evicting a live stream; :meth:`evict_idle` frees the records of streams that went quiet.
    """

    def __init__(self, bundle: Bundle, new_alarm: Callable[[], Alarm], reorder_s: float = 0.0, max_streams: int = 10_000,
                 clock: Callable[[], float] | None = None) -> None:
        self.bundle, self.new_alarm, self.reorder_s, self.max_streams = bundle, new_alarm, reorder_s, max_streams
        self.clock = clock or time.monotonic
        self.states: dict[str, StreamState] = {}
        self.evicted = 0
        self.quiet = 0  # streams held that sent nothing for the quiet time, at the last sweep
        self.evicted_gaps = 0  # gaps counted by evicted streams, so the total never goes down
        self.on_new: Callable[[StreamState], None] | None = None  # told of each stream created (its handed-over state)

    def get(self, key: str, key_fields: tuple[str, ...] = ()) -> StreamState:
        """The record for ``key``, created on first use (``key_fields`` name its parts); raises BadSample at the limit."""
        state = self.states.get(key)
        if state is None:
            if len(self.states) >= self.max_streams:
                raise BadSample("stream_limit", f"{self.max_streams} streams already; stream {key!r} refused")
            b = self.bundle
            ring = stream_for(key, b)
            labels = dict(zip(key_fields, key.split("/"))) if key_fields else None
            state = StreamState(key, ring, Reorder(self.reorder_s) if self.reorder_s else None, self.new_alarm(), self.clock(), labels,
                                np.full(len(b.conditions), np.nan, np.float32) if b.conditions else None)
            self.states[key] = state
            if self.on_new is not None:
                self.on_new(state)
        return state

    def aligner(self, state: StreamState, staleness_s: float) -> TagAligner:
        """The stream's tag aligner, created on first use."""
        if state.aligner is None:
            b = self.bundle
            state.aligner = TagAligner(len(b.features), b.sample_period, staleness_s, b.max_gap)
        return state.aligner

    def __getitem__(self, key: str) -> StreamState:
        return self.states[key]

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[StreamState]:
        return iter(list(self.states.values()))  # a snapshot (one C-level copy): other threads may add streams meanwhile

    def alarms_active(self) -> int:
        """How many streams are in alarm."""
        return sum(state.alarm.active for state in self)

    def drifting(self) -> int:
        """How many streams report drift."""
        return sum(state.drift.drifting for state in self)

    def gaps(self) -> int:
        """Gaps in sample time seen by all streams, evicted ones included."""
        return self.evicted_gaps + sum(state.ring.gaps for state in self)

    def evict_idle(self, idle_s: float, quiet_s: float = 0.0) -> list[str]:
        """Forget streams that received no sample for ``idle_s`` seconds (as seen by successive sweeps; 0: never); returns
        their keys. Streams kept but quiet for ``quiet_s`` (0: not counted) are counted in :attr:`quiet`.

        Call it regularly (the runtime does, holding the ingest lock); a stream counts as quiet
        from the first sweep that saw no new sample on it.
        """
        now, gone, quiet = self.clock(), [], 0
        for state in self:
            last = state.ring.last_time
            if last != state.seen_time:
                state.seen_time, state.quiet_since = last, now
            elif idle_s and now - state.quiet_since >= idle_s:
                gone.append(state)
            elif quiet_s and now - state.quiet_since >= quiet_s:
                quiet += 1
        self.quiet = quiet
        for state in gone:
            del self.states[state.key]
            self.evicted_gaps += state.ring.gaps
        self.evicted += len(gone)
        return [state.key for state in gone]

    def rebind(self, bundle: Bundle, keep: bool) -> None:
        """Switch to a new bundle; every record is dropped unless the input spec is unchanged."""
        self.bundle = bundle
        if not keep:
            self.evicted_gaps = self.gaps()
            self.states.clear()
