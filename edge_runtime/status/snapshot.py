"""The runtime's state gathered for the status page (``linewatch.status/1``), at most a few times a second.

Read from the runtime's counters and each stream's :class:`~edge_runtime.status.view.StreamView`, never from the hot
path: one snapshot serves every request that arrives within ``min_interval_s`` of it.
"""

from __future__ import annotations

import os
import threading
import time

import orjson

from edge_runtime import __version__
from edge_runtime.contract.timeparse import iso
from edge_runtime.workers import WORKER_ENV, WORKERS_ENV

SCHEMA = "linewatch.status/1"


def quantiles(histogram, wanted: tuple[float, ...] = (0.5, 0.99)) -> dict[str, float | None]:
    """Quantiles (ms) of a prometheus Histogram, interpolated within its buckets; None before any observation."""
    buckets = [(float(s.labels["le"]), s.value) for metric in histogram.collect() for s in metric.samples if s.name.endswith("_bucket")]
    total = buckets[-1][1] if buckets else 0
    found: dict[str, float | None] = {}
    for q in wanted:
        name = f"p{q * 100:g}"
        if not total:
            found[name] = None
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for upper, count in buckets:
            if count >= rank:
                upper = lower * 2 if upper == float("inf") else upper
                found[name] = round(1000 * (lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)), 3)
                break
            lower, below = upper, count
    return found


def stream_row(runner, state) -> dict:
    """One stream of one model as the page shows it."""
    view = state.view
    last = state.ring.last_time
    commissioning = runner.commissioning.progress(state.key, last) if runner.commissioning is not None else None
    return {"stream": state.key, "alarm": state.alarm.active, "since": iso(view.since) if view and view.since is not None else None,
            "top": view.top if view else [], "drifting": state.drift.drifting, "commissioning": commissioning,
            "last_sample": iso(last) if last == last and last > 0 else None, "threshold": view.threshold if view else None,
            "refused": state.refused, "scores": view.recent() if view is not None else []}


def workers(status_port: int) -> dict | None:
    """Under ``linewatch run --workers N``: this worker's index, how many there are and every worker's status port."""
    if WORKERS_ENV not in os.environ:
        return None
    index, count = int(os.environ[WORKER_ENV]), int(os.environ[WORKERS_ENV])
    return {"index": index, "count": count, "status_ports": [status_port - index + k for k in range(count)]}


def rows(runner, chunk: int = 200) -> list[dict]:
    """Every stream of one model; the interpreter is offered to the scoring and network threads between chunks, so a
    gateway with thousands of machines never holds their windows back for a whole snapshot.
    """
    states = list(runner.streams.states.values())
    found = []
    for first in range(0, len(states), chunk):
        found += [stream_row(runner, state) for state in states[first : first + chunk]]
        time.sleep(0)
    return found


class StatusSnapshot:
    """The status JSON of one runtime, rebuilt when older than ``min_interval_s``."""

    def __init__(self, runtime, min_interval_s: float = 0.5) -> None:
        self.runtime, self.min_interval_s = runtime, min_interval_s
        self.lock = threading.Lock()
        self.built_at = -float("inf")
        self.body = b""
        self.builds = 0

    def json(self) -> bytes:
        """The latest snapshot, encoded."""
        with self.lock:
            if time.monotonic() - self.built_at >= self.min_interval_s:
                self.body = orjson.dumps(self.build())
                self.built_at = time.monotonic()
                self.builds += 1
            return self.body

    def build(self) -> dict:
        """Everything the page shows, as one dict."""
        rt = self.runtime
        snap = rt.snapshot()
        silent = set(rt.silent)
        broker = rt.config.broker
        models = []
        for runner in rt.models:
            counts = snap["models"][runner.config.name]
            models.append({"name": runner.config.name, "bundle": runner.bundle.name, "bundle_id": runner.bundle.model_id,
                           "threshold": runner.threshold, "scored": counts["scored"], "alarms_active": counts["alarms_active"],
                           "deadline_misses": counts["deadline_misses"], "shed": counts["shed"], "drifting": counts["drifting"],
                           "commissioning": counts["commissioning"], "gaps": counts["gaps"], "handover": counts["handover"],
                           "streams": rows(runner)})
        return {
            "schema": SCHEMA, "generated_at": iso(time.time()), "version": __version__, "client_id": broker.client_id,
            "started": rt.started_at, "broker": f"{broker.host}:{broker.port}", "connected": snap["connected"],
            "connection_failures": snap["connection_failures"],
            "subscriptions": [{"topic": topic, "last_message_age_s": None if age is None else round(age, 3), "silent": topic in silent}
                              for topic, age in snap["last_message_age"].items()],
            "accepted": snap["accepted"], "bad_input": snap["bad_input"], "outbox_depth": snap["outbox_depth"],
            "events_unsent": snap["events_unsent"], "events_dropped": snap["events_dropped"],
            "latency_ms": quantiles(rt.metrics.latency), "workers": workers(rt.config.runtime.status_port), "models": models,
        }
