"""The edge runtime: one MQTT link, one model runner per bundle, one event sink, metrics, reload."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, timezone

import orjson

from edge_runtime import __version__
from edge_runtime.badinput import BadInput
from edge_runtime.config import Config
from edge_runtime.delivery import Sink
from edge_runtime.metrics import Metrics
from edge_runtime.model_runner import ModelRunner
from edge_runtime.mqtt import Link
from edge_runtime.outbox import Outbox
from edge_runtime.router import Router

log = logging.getLogger("linewatch.runtime")


class Runtime:
    """Wires the pieces together; :meth:`start`, then :meth:`stop` (or :meth:`serve` until a signal)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        r, b = config.runtime, config.broker
        self.status_topic = r.status_topic.format(client_id=b.client_id)
        self.error_topic = r.error_topic.format(client_id=b.client_id)
        self.metrics = Metrics()
        self.outbox = Outbox(r.outbox)
        self.link: Link | None = None
        self.sink = Sink(self.outbox, self._publish_event, self.metrics.event_latency.observe)
        self.bad = BadInput(self._publish_error, r.errors_per_second)
        self.models = [ModelRunner(m, r, self.sink, self.bad, self.metrics) for m in config.models]
        self.router = Router([(cfg, m.ingest) for m in self.models for cfg in m.config.inputs], self.bad, r.max_payload_bytes)
        self.accepting = False
        self.stopped = threading.Event()
        self.shutdown_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.metrics_server = None
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    # -- wiring ----------------------------------------------------------------------------
    def _publish_event(self, topic: str, payload: bytes) -> int | None:
        return self.link.publish(topic, payload) if self.link else None

    def _publish_error(self, report: dict) -> None:
        if self.link is not None:
            self.link.publish(self.error_topic, orjson.dumps(report), qos=0)

    def _on_message(self, topic: str, payload: bytes, arrival: float) -> None:
        if not self.accepting:
            return
        try:
            self.router.dispatch(topic, payload, arrival)
        except Exception as error:  # never let one message take the network thread down
            self.bad.report("internal_error", topic, repr(error))

    def snapshot(self) -> dict:
        """Counters for metrics and tests."""
        return {
            "accepted": sum(m.ingest.accepted for m in self.models),
            "bad_input": dict(self.bad.counts),
            "models": {
                m.config.name: {"scored": m.scored, "deadline_misses": m.deadline_misses, "shed": m.batcher.shed,
                                "failed": m.batcher.failed, "undecided": m.undecided,
                                "alarms_active": m.streams.alarms_active(), "streams": len(m.streams)}
                for m in self.models
            },
            "events_published": self.sink.published,
            "outbox_depth": self.outbox.depth(),
            "connected": bool(self.link and self.link.connected.is_set()),
        }

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start metrics, scoring, the sink and the MQTT link."""
        r, b = self.config.runtime, self.config.broker
        self.metrics.bind(self.snapshot)
        if r.metrics_port:
            from prometheus_client import start_http_server

            self.metrics_server = start_http_server(r.metrics_port, addr=r.metrics_host, registry=self.metrics.registry)
        for runner in self.models:
            runner.start()
        self.sink.start()
        online = {"client_id": b.client_id, "version": __version__, "started": self.started_at, "bundles": self._bundles()}
        self.link = Link(b, self.router.subscriptions(), self.status_topic, online, self._on_message, self.sink.connected, self.sink.acked)
        self.accepting = True
        self.link.start()
        threading.Thread(target=self._watch, name="linewatch-reload", daemon=True).start()

    def _bundles(self) -> list[dict]:
        """The models and bundle ids the retained status announces."""
        return [{"model": m.config.name, "name": m.bundle.name, "id": m.bundle.model_id} for m in self.models]

    def _watch(self) -> None:
        """Reload bundles on request (SIGHUP) or when a manifest changes on disk; re-announce the status."""
        while not self.stopped.is_set():
            requested = self.reload_requested.wait(self.config.runtime.reload_poll_s)
            self.reload_requested.clear()
            reloaded = [runner.reload() for runner in self.models if requested or runner.changed_on_disk()]
            if any(reloaded) and self.link is not None and self.link.connected.is_set():
                self.link.online["bundles"] = self._bundles()
                self.link.publish_status("online")

    def stop(self) -> None:
        """Graceful shutdown: stop taking samples, score what is pending, flush events, go offline."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.accepting = False
        timeout = self.config.runtime.shutdown_timeout_s
        for runner in self.models:
            runner.stop(timeout)
        left = self.sink.drain(timeout)
        if left:
            log.warning("%d event(s) stay in the outbox %s for the next start", left, self.outbox.path)
        if self.link is not None:
            self.link.stop()
        if self.metrics_server is not None:
            server, _ = self.metrics_server
            server.shutdown()
        self.outbox.close()

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the bundles."""
        signal.signal(signal.SIGTERM, lambda *_: self.shutdown_requested.set())
        signal.signal(signal.SIGINT, lambda *_: self.shutdown_requested.set())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())
        self.start()
        try:
            self.shutdown_requested.wait()
        finally:
            self.stop()
