"""All state of one stream key in one record, and the registry of one model's records.

Reload, eviction and metrics touch this one place: a record holds the stream's ring buffer,
its tag aligner and reorder buffer (when its input needs them) and its alarm state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from edge_runtime.alarms import Alarm
from edge_runtime.alignment import Reorder, TagAligner
from edge_runtime.bundle import Bundle
from edge_runtime.streams import Stream


class StreamState:
    """Everything linewatch keeps for one stream key."""

    __slots__ = ("key", "ring", "aligner", "reorder", "alarm")

    def __init__(self, key: str, ring: Stream, reorder: Reorder | None, alarm: Alarm) -> None:
        self.key, self.ring, self.reorder, self.alarm = key, ring, reorder, alarm
        self.aligner: TagAligner | None = None  # created by the first tag message


class StreamRegistry:
    """The :class:`StreamState` of every stream of one model, created on first use."""

    def __init__(self, bundle: Bundle, new_alarm: Callable[[], Alarm], reorder_s: float = 0.0) -> None:
        self.bundle, self.new_alarm, self.reorder_s = bundle, new_alarm, reorder_s
        self.states: dict[str, StreamState] = {}

    def get(self, key: str) -> StreamState:
        """The record for ``key``, created on first use."""
        state = self.states.get(key)
        if state is None:
            b = self.bundle
            ring = Stream(key, b.window, b.stride, len(b.features), b.max_gap)
            state = self.states[key] = StreamState(key, ring, Reorder(self.reorder_s) if self.reorder_s else None, self.new_alarm())
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
        return iter(list(self.states.values()))  # a snapshot: other threads may add streams meanwhile

    def alarms_active(self) -> int:
        """How many streams are in alarm."""
        return sum(state.alarm.active for state in self)

    def rebind(self, bundle: Bundle, keep: bool) -> None:
        """Switch to a new bundle; every record is dropped unless the input spec is unchanged."""
        self.bundle = bundle
        if not keep:
            self.states.clear()
