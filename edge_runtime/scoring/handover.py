"""A stream's state on the broker, so that whichever worker owns it next carries on where the last one stopped.

When a stream moves (its worker restarted, its partition moved to another worker, a new worker took over) its new
owner knows nothing of it: a stream in alarm would be raised again, and a commissioned stream would commission again,
silent meanwhile. With ``handover_topic`` set, each model publishes, retained and with QoS 1, one small message per
stream to ``<handover_topic>/<model>/<stream>`` whenever the stream's alarm is raised or cleared or its commissioning
finishes (schema ``linewatch.stream_state/1``: whether it is in alarm, its learned threshold). Every worker subscribes
to its models' handover topics before its inputs, so the broker hands it every stream's latest state first; a
stream met for the first time starts from its remembered state (in alarm or not, its learned threshold) instead of
from nothing. A state written with another bundle is not taken (its scores are on another scale), nor one this
process wrote itself; the window history is not handed over (the new owner decides nothing before a full window).
"""

from __future__ import annotations

import uuid

import orjson

from edge_runtime.ingest.registry import StreamState
from edge_runtime.scoring.commissioning import Commissioning

SCHEMA = "linewatch.stream_state/1"
NOTHING_TAKEN = {"alarms_taken": 0, "thresholds_taken": 0, "refused": 0}  # the counts of a model without a handover


class Handover:
    """One model's stream states on the broker: the messages it publishes and the states it remembers from others."""

    def __init__(self, prefix: str, model: str, bundle_id: str, max_streams: int, instance: str | None = None) -> None:
        """``prefix``: the runtime's ``handover_topic``; ``max_streams``: the most states remembered (the oldest go)."""
        self.root = f"{prefix}/{model}/"
        self.model, self.bundle_id, self.max_streams = model, bundle_id, max_streams
        self.instance = instance or uuid.uuid4().hex  # this process: its own messages coming back are not states to take
        self.remembered: dict[str, dict] = {}
        self.alarms_taken = 0
        self.thresholds_taken = 0
        self.refused = 0  # messages on the handover topic that were not a state of this model and bundle

    def counts(self) -> dict[str, int]:
        """What was taken and refused, as the snapshot reports it (keys as :data:`NOTHING_TAKEN`)."""
        return {"alarms_taken": self.alarms_taken, "thresholds_taken": self.thresholds_taken, "refused": self.refused}

    @property
    def subscription(self) -> str:
        """The topic filter of every stream state of this model."""
        return self.root + "#"

    def topic(self, key: str) -> str:
        """Where the state of stream ``key`` is kept."""
        return self.root + key

    def message(self, key: str, in_alarm: bool, threshold: float | None, window_end: float | None) -> bytes:
        """The retained state of stream ``key`` after a decision on the window ending at ``window_end`` (epoch seconds;
        None: its commissioning finished).
        """
        return orjson.dumps({"schema": SCHEMA, "model": self.model, "bundle_id": self.bundle_id, "stream": key, "alarm": in_alarm,
                             "threshold": threshold, "window_end": window_end, "writer": self.instance})

    def remember(self, topic: str, payload: bytes) -> bool:
        """Keep the state a message on :attr:`subscription` carries (network thread); False when it is not one to take."""
        key = topic[len(self.root):]
        try:
            state = orjson.loads(payload) if payload else None  # an empty retained message deletes a state
        except orjson.JSONDecodeError:
            state = None
        if state is None:
            self.remembered.pop(key, None)
            self.refused += bool(payload)
            return False
        if (not isinstance(state, dict) or state.get("schema") != SCHEMA or state.get("bundle_id") != self.bundle_id
                or state.get("stream") != key or not isinstance(state.get("alarm"), bool)):
            self.refused += 1
            return False
        if state.get("writer") == self.instance:
            return False
        self.remembered.pop(key, None)
        self.remembered[key] = state
        while len(self.remembered) > self.max_streams:  # insertion order: the longest-unchanged first
            del self.remembered[next(iter(self.remembered))]
        return True

    def take(self, stream: StreamState, commissioning: Commissioning | None) -> None:
        """A stream met for the first time: start it from its remembered state, if there is one."""
        state = self.remembered.pop(stream.key, None)
        if state is None:
            return
        if state["alarm"]:
            stream.alarm.active = True
            self.alarms_taken += 1
        threshold = state.get("threshold")
        taken = commissioning is not None and isinstance(threshold, (int, float)) and threshold > 0 and commissioning.adopt(stream.key, float(threshold))
        self.thresholds_taken += taken
