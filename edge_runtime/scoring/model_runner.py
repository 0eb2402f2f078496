"""One configured model: bundle, backend, ingest, batcher, alarms, and its events."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from edge_runtime.config import ModelConfig, RuntimeConfig
from edge_runtime.contract.alarms import RAISED, Alarm
from edge_runtime.contract.bundle import Bundle, load_bundle
from edge_runtime.contract.conditions import CONDITION_MARGIN
from edge_runtime.contract.conditions import unseen as unseen_conditions
from edge_runtime.contract.errors import BundleError
from edge_runtime.delivery.event_schema import make_event, make_scores
from edge_runtime.delivery.sink import Outgoing, Sink
from edge_runtime.ingest.badinput import BadInput
from edge_runtime.ingest.pipeline import Ingest
from edge_runtime.ingest.registry import StreamRegistry, StreamState
from edge_runtime.ingest.topics import template_for
from edge_runtime.metrics import Metrics
from edge_runtime.scoring.backends import create_backend
from edge_runtime.scoring.batcher import Batcher, WindowBatch
from edge_runtime.scoring.commissioning import Commissioning, ThresholdStore
from edge_runtime.scoring.drift import REFERENCE_QUANTILE, DriftRule
from edge_runtime.scoring.handover import Handover
from edge_runtime.status.view import StreamView

log = logging.getLogger("linewatch.model")


@dataclass(slots=True)
class ScoreGroup:
    """The score telemetry of one stream's windows in one scored batch (``score_events = "grouped"``)."""

    stream: StreamState
    threshold: float
    arrival: float  # of the first window
    ends: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)


class ModelRunner:
    """Scores the streams of one bundle and turns scores into alarm events."""

    def __init__(self, config: ModelConfig, runtime: RuntimeConfig, sink: Sink, bad: BadInput, metrics: Metrics,
                 ingest_lock: threading.Lock | None = None, observer: Callable | None = None,
                 thresholds: ThresholdStore | None = None) -> None:
        """``ingest_lock``: held by whoever feeds messages to :attr:`ingest`; a reload swaps the bundle under it.
        ``thresholds``: the runtime's one store of learned thresholds (commissioning), shared by its models.
        ``observer(model, stream, score, threshold, window end, alarm active, drifting)`` hears of every window that
        changed an alarm or drift (and with ``publish_scores`` of every window), after its events were made.
        """
        self.observer = observer
        self.config, self.runtime = config, runtime
        self.status_page = runtime.status_port > 0  # keep each stream's recent scores for the page
        self.thresholds = thresholds or ThresholdStore(Path(runtime.thresholds_file) if runtime.thresholds_file else None)
        self.sink, self.metrics = sink, metrics
        self.ingest_lock = ingest_lock or threading.Lock()
        self.bundle = load_bundle(config.bundle)
        self._check_policy(self.bundle)
        self.backend = self._backend(self.bundle)
        self.scored = 0
        self.deadline_misses = 0
        self.undecided = 0  # windows whose event could not be built or encoded
        self.unseen = 0  # windows whose operating conditions the model never saw in training (not scored)
        self.reloads_refused = 0
        self.lock = threading.Lock()  # held while scoring and while swapping bundles
        a = config.alarm
        self.streams = StreamRegistry(self.bundle, lambda: Alarm(*a.policy()), runtime.reorder_s,
                                      runtime.max_streams)
        self.ingest = Ingest(self.bundle, self.streams, self._ready, bad, runtime.max_future_s, runtime.max_past_s,
                             sink.post if sink is not None else None)
        self.commissioning = self._commissioning(self.bundle)
        self.handover = self._handover(self.bundle)
        self.drift = self._drift(self.bundle)
        self.batcher = self._batcher(self.bundle)
        self.fingerprint = bundle_fingerprint(config.bundle)

    def _commissioning(self, bundle: Bundle) -> Commissioning | None:
        c = self.config.commissioning
        if not c.enabled:
            return None
        return Commissioning(self.config.name, bundle.model_id, self.threshold, c.period_s, c.min_windows, c.false_alarms_per_day,
                             bundle.stride, bundle.sample_period, self.thresholds, max_learned=self.runtime.max_streams)

    def _handover(self, bundle: Bundle) -> Handover | None:
        """The stream states kept on the broker (``handover_topic``), or None; a new stream starts from its remembered
        state, and a stream that finishes commissioning publishes its own.
        """
        if not self.runtime.handover_topic:
            self.streams.on_new = None
            return None
        handover = Handover(self.runtime.handover_topic, self.config.name, bundle.model_id, self.runtime.max_streams)
        if self.commissioning is not None:
            self.commissioning.on_learned = lambda key: self._hand_over(self.streams.states.get(key), None)
        self.streams.on_new = lambda stream: handover.take(stream, self.commissioning)
        return handover

    def _hand_over(self, stream: StreamState | None, end: float | None) -> None:
        """Publish the state of a stream whose alarm changed at the window ending at ``end`` or whose commissioning
        finished (``end`` None); a state that cannot be made is logged and skipped (the stream's next change makes it
        again), and a stream evicted meanwhile (None) has none.
        """
        if stream is None:
            return
        commissioning = self.commissioning
        try:
            learned = commissioning.learned.get(stream.key) if commissioning is not None else None
            message = self.handover.message(stream.key, stream.alarm.active, learned and float(learned["threshold"]),
                                            None if end is None else float(end))
        except Exception as error:
            log.error("the handover state of %s could not be made: %r", stream.key, error)
            return
        self.sink.post_retained(self.handover.topic(stream.key), message)

    def _drift(self, bundle: Bundle) -> DriftRule | None:
        d = self.config.drift
        reference = bundle.manifest["threshold"]["calibration_quantiles"].get(REFERENCE_QUANTILE)
        if not d.enabled or reference is None:
            return None
        return DriftRule(float(reference), d.windows, d.raise_share, d.clear_share)

    def evict_idle(self, idle_s: float, quiet_s: float = 0.0) -> int:
        """Forget streams that sent nothing for ``idle_s`` (call it holding the ingest lock), with their commissioning in
        progress; returns how many. Those quiet for ``quiet_s`` are counted (``streams.quiet``).
        """
        gone = self.streams.evict_idle(idle_s, quiet_s)
        if gone and self.commissioning is not None:
            self.commissioning.forget(gone)
        return len(gone)

    def recommission(self, keys: list[str] | None) -> list[str]:
        """Commission these streams again (every stream when None); a stream in alarm or rising to one is refused, so that
        a threshold never follows a fault's scores up. Returns those restarted.
        """
        if self.commissioning is None:
            return []
        with self.lock:
            candidates = keys if keys is not None else [state.key for state in self.streams] + list(self.commissioning.learned)
            chosen = [k for k in dict.fromkeys(candidates)
                      if not (k in self.streams.states and (self.streams[k].alarm.active or self.streams[k].alarm.rising))]
            self.commissioning.restart(chosen)
        return chosen

    def _check_policy(self, bundle: Bundle) -> None:
        """Warn when the bundle's threshold was calibrated for another alarm policy than this model's: its false-alarm
        rate then holds for that policy, not this one.
        """
        calibrated = bundle.manifest["threshold"].get("policy")
        if calibrated is not None and self.config.threshold is None and list(self.config.alarm.policy()) != list(calibrated):
            on_k, on_n, off_m, deadband = calibrated
            log.warning("%s: the bundle's threshold was calibrated for the alarm policy %d of %d, off after %d, deadband %g, "
                        "and [models.alarm] sets (on_k, on_n, off_m, deadband) = %s: the false alarms a day it promises hold "
                        "for the bundle's policy, not this one", self.config.name, on_k, on_n, off_m, deadband, self.config.alarm.policy())

    @property
    def threshold(self) -> float:
        """The configured override, else the bundle's threshold."""
        return self.config.threshold if self.config.threshold is not None else self.bundle.threshold

    def _backend(self, bundle: Bundle):
        """The bundle's backend, activated and warmed up; a conditional bundle only where every input carries its conditions."""
        self._check_condition_inputs(bundle)
        backend = create_backend(bundle, self.config.backend, self.config.precision, self.runtime.max_batch, self.config.allow_fallback)
        backend.activate()
        try:
            self._warm_up(backend)
        except Exception:
            backend.deactivate()
            raise
        return backend

    def _check_condition_inputs(self, bundle: Bundle) -> None:
        """Every condition needs a source: JSON payloads, or a ``condition`` input on the same stream key for tag and chunk data."""
        inputs, names = self.config.inputs, [c["name"] for c in bundle.conditions]
        topics = {i.condition: i for i in inputs if i.format == "condition"}
        unknown = sorted(set(topics) - set(names))
        if unknown:
            raise BundleError(f"{bundle.name}: condition input(s) for {unknown}, which the model does not take (it takes {names})")
        data = [i for i in inputs if i.format != "condition"]
        keys = {tuple(template_for(i.topic, i.format).key_fields) for i in inputs}
        if topics and len(keys) > 1:
            raise BundleError(f"{bundle.name}: condition topics must name the same stream fields as the data topics; found {sorted(keys)}")
        lacking = [n for n in names if n not in topics]
        without = [f"{i.topic} ({i.format})" for i in data if i.format not in ("json", "sparkplug")]
        if lacking and without:
            raise BundleError(f"{bundle.name} takes operating conditions {names}; inputs {without} carry none, so each needs "
                              f"a condition input (format = \"condition\"); missing for {lacking}")

    def _batcher(self, bundle: Bundle) -> Batcher:
        return Batcher(bundle.window, bundle.channels, self.runtime.max_batch, self.runtime.queue_windows, self._score,
                       self.runtime.max_queue_delay_ms / 1000)

    def _warm_up(self, backend) -> None:
        """Run the backend at a few batch sizes before it serves (first calls allocate), which also proves it works."""
        windows = np.zeros((self.runtime.max_batch, *backend.window_shape), np.float32)
        for size in sorted({1, max(1, self.runtime.max_batch // 4), self.runtime.max_batch}):
            for _ in range(2):
                backend.infer(windows[:size])

    def _ready(self, stream: StreamState, arrival: float) -> None:
        self.batcher.add(stream, arrival)

    def start(self) -> None:
        """Start scoring."""
        self.batcher.start()

    def stop(self, deadline: float) -> None:
        """Release samples held for reordering, score what is pending until ``deadline`` (monotonic), and stop.

        The backend is freed only once the scoring thread has finished with it.
        """
        with self.ingest_lock:
            self.ingest.flush()
        if self.batcher.stop(max(0.0, deadline - time.monotonic())):
            self.backend.deactivate()
        else:
            log.warning("%s: scoring did not finish before the shutdown deadline; pending windows are dropped", self.config.name)

    def _score(self, batch: WindowBatch, n: int) -> None:
        """Score ``n`` pending windows in backend-sized chunks, decide, and hand events to the sink."""
        with self.lock:
            if batch.windows.shape[1:] != self.backend.window_shape:
                log.warning("dropped %d window(s) of the previous input spec after a reload", n)
                return
            step = self.backend.max_batch
            for first in range(0, n, step):
                last = min(n, first + step)
                started = time.perf_counter()
                scores, errors = self.backend.infer(batch.windows[first:last])
                self.metrics.observe_batch(last - first, time.perf_counter() - started)
                skip = self._unseen(batch, first, last) if self.bundle.conditions else None
                self.sink.submit(self._decide(batch, first, scores, errors, skip))
                self._account(batch, first, last)

    def _unseen(self, batch: WindowBatch, first: int, last: int) -> np.ndarray | None:
        """The windows whose conditions training never saw, counted and logged (the first and every thousandth); the mask
        of those not to decide, or None with ``score_unseen_conditions`` (then they are decided with the conditions as they came).
        """
        mask = unseen_conditions(batch.windows[first:last, -1, len(self.bundle.features) :], self.bundle.conditions)
        n = int(mask.sum())
        if n:
            before, self.unseen = self.unseen, self.unseen + n
            if before == 0 or before // 1000 != self.unseen // 1000:
                log.warning("%d window(s) %s: operating conditions not seen in training (a missing value, an unknown category, or "
                            "more than %.0f%% outside the trained range) [%d so far]", n,
                            "scored anyway (score_unseen_conditions)" if self.config.score_unseen_conditions else "not scored",
                            100 * CONDITION_MARGIN, self.unseen)
        return None if self.config.score_unseen_conditions else mask

    def _decide(self, batch: WindowBatch, first: int, scores, errors, skip: np.ndarray | None = None) -> list[Outgoing]:
        """Update each stream's alarm; the encoded events ``(topic, payload, arrival, durable)`` to publish.

        Alarm transitions are durable (outbox); per-window score telemetry is not.

        Each window is decided alone: one whose event cannot be built or encoded is counted in
        ``undecided`` and dropped, its alarm state left as it was, and the other windows go on.
        Windows marked in ``skip`` (unseen operating conditions) are not decided at all. With
        ``score_events = "grouped"`` the score telemetry of a stream's windows goes out as one message.
        """
        default, features, commissioning = self.threshold, self.bundle.features, self.commissioning
        stride_s = self.bundle.stride * self.bundle.sample_period  # between two windows of a stream without a gap
        grouped = self.runtime.publish_scores and self.runtime.score_events == "grouped"
        groups: dict[str, ScoreGroup] = {}
        events = []
        handed: list[tuple[StreamState, float | None]] = []  # streams whose alarm changed, for the handover topic
        for k, score in enumerate(scores.tolist()):
            if skip is not None and skip[k]:
                continue
            if score != score:  # NaN: the model overflowed on values far outside its training range
                score = math.inf
            i = first + k
            stream = batch.streams[i]
            alarm = stream.alarm
            before, drift_before = alarm.state(), stream.drift.state()
            try:
                threshold = default if commissioning is None else commissioning.threshold(stream.key, score, batch.ends[i])
                if threshold is None:  # still commissioning: scored and published as telemetry, no alarm
                    kind, threshold = None, default
                else:
                    kind = alarm.update(score, threshold)
                kinds = [kind] if kind is not None else []
                if kind is not None and self.handover is not None:
                    handed.append((stream, batch.ends[i]))
                if self.drift is not None:
                    drifted = self.drift.update(stream.drift, score)
                    if drifted is not None:
                        kinds.append(drifted)
                if not kinds and grouped:
                    group = groups.get(stream.key)
                    if group is None:
                        group = groups[stream.key] = ScoreGroup(stream, threshold, batch.arrivals[i])
                    group.threshold = threshold
                    group.ends.append(batch.ends[i])
                    group.scores.append(score)
                    group.arrivals.append(batch.arrivals[i])
                elif not kinds and self.runtime.publish_scores:
                    kinds.append("score")
                for kind in kinds:
                    since = batch.ends[i] - alarm.windows_since_first_exceeded() * stride_s if kind == RAISED else None
                    event = make_event(kind, stream.key, self.config.name, self.bundle.model_id, (batch.starts[i], batch.ends[i]),
                                       score, threshold, features, errors[k], time.perf_counter() - batch.arrivals[i],
                                       exceeded_since=since)
                    topic = self.config.event_topic.format(stream=stream.key, model=self.config.name, **stream.labels)
                    events.append(Outgoing(topic, orjson.dumps(event), batch.arrivals[i], kind != "score"))
                if self.observer is not None and (kinds or grouped):
                    self._observe(stream, score, threshold, batch.ends[i])
                if self.status_page:
                    if stream.view is None:
                        stream.view = StreamView()
                    stream.view.record(batch.ends[i], score, threshold, kinds, features, errors[k])
            except Exception as error:  # one window's bad data must not cost the other machines their events
                alarm.restore(before)
                stream.drift.restore(drift_before)
                self.undecided += 1
                if self.undecided == 1 or self.undecided % 1000 == 0:
                    log.error("window of %s could not be decided (%r); dropped alone [%d so far]", stream.key, error, self.undecided)
        if groups:
            events.extend(self._score_messages(groups.values()))
        for stream, end in handed:
            self._hand_over(stream, end)
        return events

    def _observe(self, stream: StreamState, score: float, threshold: float, end: float) -> None:
        """Tell the observer (Sparkplug events); its failure costs the window nothing but a log line."""
        try:
            self.observer(self.config.name, stream.key, score, threshold, end, stream.alarm.active, stream.drift.drifting)
        except Exception as error:
            log.error("event observer failed for %s: %r", stream.key, error)

    def _score_messages(self, groups) -> list[Outgoing]:
        """One ``linewatch.scores/1`` message per stream (telemetry: not durable)."""
        messages, now = [], time.perf_counter()
        for group in groups:
            stream = group.stream
            try:
                message = make_scores(stream.key, self.config.name, self.bundle.model_id, group.threshold, group.ends, group.scores,
                                      [now - a for a in group.arrivals])
                topic = self.config.event_topic.format(stream=stream.key, model=self.config.name, **stream.labels)
                messages.append(Outgoing(topic, orjson.dumps(message), group.arrival, False))
            except Exception as error:  # telemetry only: the alarm decisions of these windows stand
                self.undecided += len(group.ends)
                log.error("score telemetry of %s could not be encoded (%r); %d window(s) unpublished", stream.key, error, len(group.ends))
        return messages

    def _account(self, batch: WindowBatch, first: int, last: int) -> None:
        """Decision latency per window (from arrival and from sample time), deadline misses and the scored count."""
        done, wall = time.perf_counter(), time.time()
        budget = self.runtime.latency_budget_ms / 1000
        for arrival, end in zip(batch.arrivals[first:last].tolist(), batch.ends[first:last].tolist()):
            latency = done - arrival
            self.metrics.latency.observe(latency)
            self.metrics.sample_age.observe(wall - end)
            self.deadline_misses += latency > budget
        self.scored += last - first

    # -- hot reload ------------------------------------------------------------------------
    def changed_on_disk(self) -> bool:
        """True when any file of the bundle (or the folder a symlink points to) changed since the last (re)load attempt."""
        return bundle_fingerprint(self.config.bundle) != self.fingerprint

    def reload(self) -> bool:
        """Load the bundle again; keep stream state when the input spec is unchanged. False if refused.

        Everything that can fail (loading, activating, warming up) happens before the swap; a refused
        bundle is tried again when its files change again. The swap holds the ingest lock, so no
        message is decoded against a half-swapped bundle.
        """
        fingerprint = bundle_fingerprint(self.config.bundle)
        try:
            bundle = load_bundle(self.config.bundle)
            self._check_policy(bundle)
            backend = self._backend(bundle)
            keep = bundle.input_spec == self.bundle.input_spec
            batcher = None if keep else self._batcher(bundle)
        except Exception as error:  # keep running on the old bundle whatever went wrong
            self.reloads_refused += 1
            self.fingerprint = fingerprint
            log.error("reload of %s refused, still running %s: %s", self.config.bundle, self.bundle.model_id, error)
            return False
        with self.ingest_lock, self.lock, self.batcher.cond:
            old = self.backend
            self.bundle, self.backend = bundle, backend
            self.commissioning = self._commissioning(bundle)  # thresholds learned with another model do not carry over
            self.handover = self._handover(bundle)  # nor states handed over with it
            self.drift = self._drift(bundle)
            self.ingest.rebind(bundle, keep_streams=keep)
            if not keep:
                self.batcher.pending.count = 0  # windows of the old spec cannot run on the new model
                old_batcher, self.batcher = self.batcher, batcher
            self.fingerprint = fingerprint
        if not keep:
            old_batcher.stop()
            self.batcher.start()
        old.deactivate()
        log.info("reloaded %s: model %s, stream state %s", self.config.name, bundle.model_id, "kept" if keep else "reset")
        return True


def bundle_fingerprint(path: str) -> tuple:
    """Name, size and modification time of every file in the bundle folder (symlinks followed)."""
    try:
        folder = Path(path).resolve()
        return (str(folder), *sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()))
    except OSError:
        return ()
