"""The edge runtime: one MQTT link, one model runner per bundle, one event sink, metrics, reload."""

from __future__ import annotations

import hmac
import logging
import signal
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

from edge_runtime import __version__, systemd
from edge_runtime.config import Config
from edge_runtime.contract.errors import ConfigError
from edge_runtime.delivery.link import Link
from edge_runtime.delivery.outbox import Outbox
from edge_runtime.delivery.sink import Sink
from edge_runtime.ingest.badinput import BadInput
from edge_runtime.ingest.router import Router
from edge_runtime.metrics import Metrics
from edge_runtime.scoring.commissioning import ThresholdStore
from edge_runtime.scoring.handover import NOTHING_TAKEN
from edge_runtime.scoring.model_runner import ModelRunner
from edge_runtime.sparkplug.events import SparkplugEvents
from edge_runtime.throttle import Throttle

log = logging.getLogger("linewatch.runtime")


class Runtime:
    """Wires the pieces together; :meth:`start`, then :meth:`stop` (or :meth:`serve` until a signal)."""

    def __init__(self, config: Config, check: bool = False) -> None:
        """``check``: built to be verified (``run --check``), never started: the outbox stays in memory, so nothing is written."""
        self.config = config
        r, b = config.runtime, config.broker
        self.status_topic = r.status_topic.format(client_id=b.client_id)
        self.error_topic = r.error_topic.format(client_id=b.client_id)
        self.control_topic = r.control_topic.format(client_id=b.client_id)
        self.control_token = Path(r.control_token_file).read_text().strip() if r.control_token_file else None
        self.handover_root = f"{r.handover_topic}/" if r.handover_topic else ""
        self.metrics = Metrics()
        self.outbox = Outbox(":memory:" if check else r.outbox, r.outbox_max_events, int(r.outbox_max_mb * 2**20), r.outbox_sync)
        self.link: Link | None = None
        self.sink = Sink(self.outbox, self._publish, self.metrics.event_latency.observe, r.delivery_queue)
        self.bad = BadInput(self._publish_error, r.errors_per_second)
        self.ingest_lock = threading.Lock()  # the router feeds ingest under it; reload and eviction change ingest under it
        self.sparkplug = SparkplugEvents(config.broker, config.sparkplug) if config.sparkplug.enabled else None
        observer = self.sparkplug.publish if self.sparkplug else None
        self.thresholds = ThresholdStore(Path(r.thresholds_file) if r.thresholds_file and not check else None)
        self.models = [ModelRunner(m, r, self.sink, self.bad, self.metrics, self.ingest_lock, observer, self.thresholds)
                       for m in config.models]
        max_routes = sum(r.max_streams * (len(m.bundle.features) + 1) for m in self.models)
        self.router = Router([(cfg, m.ingest) for m in self.models for cfg in m.config.inputs], self.bad, r.max_payload_bytes, max_routes,
                             self.ingest_lock)
        self.accepting = False
        self.watch_errors = 0
        self.silent = Throttle()  # subscriptions warned about as silent
        self.status_changed = threading.Event()  # the retained status needs publishing again (commissioning)
        self.commissioned = 0
        self.control_requests = 0
        self.stopped = threading.Event()
        self.shutdown_requested = threading.Event()
        self.reload_requested = threading.Event()
        self.metrics_server = None
        self.status_server = None
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    # -- wiring ----------------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        return self.link.publish(topic, payload, qos, retain) if self.link else None

    def _publish_error(self, report: dict) -> None:
        self.sink.post(self.error_topic, orjson.dumps(report))

    def _on_message(self, topic: str, payload: bytes, arrival: float) -> None:
        if not self.accepting:
            return
        if topic == self.control_topic:
            self._control(payload)
            return
        if self.handover_root and topic.startswith(self.handover_root):
            self._handed_over(topic, payload)
            return
        try:
            self.router.dispatch(topic, payload, arrival)
        except Exception as error:  # never let one message take the network thread down
            self.bad.report("internal_error", topic, repr(error))

    def _handed_over(self, topic: str, payload: bytes) -> None:
        """A stream state on the handover topic: remembered by the model it belongs to (under the ingest lock, as the
        streams it starts are created under it).
        """
        with self.ingest_lock:
            for m in self.models:
                if m.handover is not None and topic.startswith(m.handover.root):
                    m.handover.remember(topic, payload)
                    return

    def _control(self, payload: bytes) -> None:
        """A commissioning request: ``{"model": name, "stream": key}``, either left out meaning all."""
        try:
            request = orjson.loads(payload)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            if self.control_token is not None and not hmac.compare_digest(str(request.get("token", "")), self.control_token):
                self.bad.report("unauthorized", self.control_topic, "commissioning request without the right token: refused")
                return
            models = [m for m in self.models if request.get("model") in (None, m.config.name)]
            if not models:
                raise ValueError(f"no model {request.get('model')!r}")
        except ValueError as error:
            self.bad.report("wrong_type", self.control_topic, f"commissioning request: {error}")
            return
        stream = request.get("stream")
        for runner in models:
            restarted = runner.recommission(None if stream is None else [str(stream)])
            log.info("commissioning %s again for %d stream(s) on request (streams in alarm or rising to one are kept)", runner.config.name, len(restarted))
        self.thresholds.flush()  # a rare request: written at once, so it survives a restart right after
        self.control_requests += 1  # counted once carried out (and saved), so a watcher of the count sees the result
        self.status_changed.set()

    def snapshot(self) -> dict:
        """Counters for metrics and tests."""
        return {
            "accepted": sum(m.ingest.accepted for m in self.models),
            "bad_input": dict(self.bad.counts),
            "notes": dict(self.bad.notes),
            "error_reports_dropped": self.bad.unpublished,
            "models": {
                m.config.name: {"scored": m.scored, "deadline_misses": m.deadline_misses, "shed": m.batcher.shed,
                                "failed": m.batcher.failed, "undecided": m.undecided, "unseen": m.unseen,
                                "alarms_active": m.streams.alarms_active(), "drifting": m.streams.drifting(), "streams": len(m.streams),
                                "streams_evicted": m.streams.evicted, "streams_quiet": m.streams.quiet, "gaps": m.streams.gaps(),
                                "reloads_refused": m.reloads_refused,
                                "commissioning": len(m.commissioning.learning) if m.commissioning else 0,
                                "commissioned": len(m.commissioning.learned) if m.commissioning else 0,
                                "handover": m.handover.counts() if m.handover else dict(NOTHING_TAKEN)}
                for m in self.models
            },
            "events_stored": self.sink.stored,
            "events_published": self.sink.published,
            "events_refused": self.sink.refused,
            "events_dropped": {"outbox_full": self.outbox.dropped, "telemetry": self.sink.telemetry_dropped,
                               "store_failed": self.sink.store_failed},
            "events_unstored": len(self.sink.unstored),
            "telemetry_sent": self.sink.telemetry_sent,
            "sparkplug": {"rebirths_requested": sum(m.ingest.sparkplug.rebirths_requested for m in self.models if m.ingest.sparkplug),
                          "data_published": self.sparkplug.published if self.sparkplug else 0,
                          "data_dropped": self.sparkplug.dropped if self.sparkplug else 0},
            "events_unsent": self.sink.queued,
            "events_inflight": self.sink.inflight_count,
            "outbox_depth": self.outbox.depth(),
            "outbox_bytes": self.outbox.bytes,
            "connected": bool(self.link and self.link.connected.is_set()),
            "connection_failures": dict(self.link.failures) if self.link else {},
            "subscriptions_refused": len(self.link.refused_filters) if self.link else 0,
            "subscriptions_silent": len(self.silent),
            "last_message_age": {topic: None if at is None else time.perf_counter() - at
                                 for topic, at in self.router.latest_by_subscription().items()},
        }

    # -- lifecycle -------------------------------------------------------------------------
    def _link(self) -> Link:
        """The MQTT link (not connected yet); TLS files and the password are read here."""
        r, b = self.config.runtime, self.config.broker
        online = {"client_id": b.client_id, "version": __version__, "started": self.started_at, "bundles": self._bundles()}
        max_packet = r.max_payload_bytes + 65_535 + 16  # a payload at the limit, the longest topic, the fixed header
        # the stream states first: the broker hands over every retained one before the samples of the streams they start
        subscriptions = [(m.handover.subscription, 1) for m in self.models if m.handover is not None] + self.router.subscriptions()
        if any(m.commissioning is not None for m in self.models):
            subscriptions.append((self.control_topic, 1))
        return Link(b, subscriptions, self.status_topic, online, self._on_message, self.sink.wake, self.sink.acked, max_packet)

    def _status_token(self) -> str | None:
        """The token the status page asks for, read from ``status_token_file`` (None without one)."""
        path = self.config.runtime.status_token_file
        if not path:
            return None
        try:
            token = Path(path).read_text().strip()
        except OSError as error:
            raise ConfigError(f"runtime.status_token_file: cannot read {path}: {error.strerror}") from None
        if not token:
            raise ConfigError(f"runtime.status_token_file: {path} is empty")
        return token

    def preflight(self) -> None:
        """Everything ``start`` would do short of connecting (bundles and backends are already loaded by now):
        the metrics and status ports can be bound, TLS files, the password and the status token can be read. Raises a :class:`LinewatchError`.
        """
        r = self.config.runtime
        for name, host, port in (("metrics_port", r.metrics_host, r.metrics_port), ("status_port", r.status_host, r.status_port)):
            if port:
                try:
                    with socket.create_server((host, port)):
                        pass
                except OSError as error:
                    raise ConfigError(f"runtime.{name}: cannot listen on {host}:{port}: {error.strerror}") from None
        if r.status_port:
            self._status_token()
        self._link()

    def release(self) -> None:
        """Free what the constructor took (backends, the outbox) when the runtime is not started, as after ``--check``."""
        for runner in self.models:
            runner.backend.deactivate()
        self.outbox.close()

    def start(self) -> None:
        """Start metrics, scoring, the sink and the MQTT link."""
        r = self.config.runtime
        self.link = self._link()
        self.metrics.bind(self.snapshot)
        if r.metrics_port:
            from prometheus_client import start_http_server

            try:
                self.metrics_server = start_http_server(r.metrics_port, addr=r.metrics_host, registry=self.metrics.registry)
            except OSError as error:
                raise ConfigError(f"runtime.metrics_port: cannot listen on {r.metrics_host}:{r.metrics_port}: {error.strerror}") from None
        if r.status_port:
            from edge_runtime.status.server import StatusServer
            from edge_runtime.status.snapshot import StatusSnapshot

            self.status_server = StatusServer(StatusSnapshot(self), r.status_host, r.status_port, self._status_token())
            self.status_server.start()
        for runner in self.models:
            runner.start()
        self.sink.start()
        self.accepting = True
        if self.sparkplug is not None:
            self.sparkplug.start()
        self.link.start()
        threading.Thread(target=self._watch, name="linewatch-reload", daemon=True).start()
        systemd.notify("READY=1")

    def _bundles(self) -> list[dict]:
        """The models and bundle ids the retained status announces."""
        return [{"model": m.config.name, "name": m.bundle.name, "id": m.bundle.model_id,
                 **({"commissioning": m.commissioning.summary()} if m.commissioning is not None else {})} for m in self.models]

    def _watch(self) -> None:
        """Reload bundles on request (SIGHUP) or when their files change; release samples held for reordering on
        streams that went quiet; evict idle streams; reopen a broker connection whose writes stalled. Survives any error.
        """
        r = self.config.runtime
        sweep_every = min(60.0, *(limit / 2 for limit in (r.stream_idle_s, r.silent_after_s) if limit)) \
            if r.stream_idle_s or r.silent_after_s else float("inf")
        last_sweep = time.monotonic()
        poll = min(r.reload_poll_s, r.reorder_s) if r.reorder_s else r.reload_poll_s
        watchdog = systemd.watchdog_interval()
        if watchdog is not None:
            poll = min(poll, watchdog)
        while not self.stopped.is_set():
            requested = self.reload_requested.wait(poll)
            self.reload_requested.clear()
            if watchdog is not None:
                systemd.notify("WATCHDOG=1")  # this loop turning is what proves the runtime alive
            try:
                reloaded = [runner.reload() for runner in self.models if requested or runner.changed_on_disk()]
                completed = sum(m.commissioning.completed for m in self.models if m.commissioning is not None)
                if completed != self.commissioned:  # a stream finished learning: announce its threshold
                    self.commissioned = completed
                    self.status_changed.set()
                if (any(reloaded) or self.status_changed.is_set()) and self.link is not None and self.link.connected.is_set():
                    self.status_changed.clear()
                    self.link.online["bundles"] = self._bundles()
                    self.link.publish_status("online")
                self._check_silence()
                if self.link is not None:
                    self.link.reopen_if_stalled(time.monotonic())
                if r.reorder_s:
                    with self.ingest_lock:
                        for runner in self.models:
                            runner.ingest.expire_held(time.perf_counter())
                if time.monotonic() - last_sweep >= sweep_every:
                    last_sweep = time.monotonic()
                    with self.ingest_lock:
                        for runner in self.models:
                            runner.evict_idle(r.stream_idle_s, r.silent_after_s)
                self.thresholds.flush()  # what commissioning learned since the last turn, in one write
            except Exception:  # the watcher must outlive anything a bundle or the disk does to it
                self.watch_errors += 1
                log.exception("reload/eviction step failed; trying again in %.1f s", r.reload_poll_s)

    def _check_silence(self) -> None:
        """Warn once per subscription that delivered nothing for ``silent_after_s`` while connected (a filtering ACL
        grants the SUBACK and drops the messages: this is its only sign).
        """
        limit, link = self.config.runtime.silent_after_s, self.link
        if not limit or link is None or link.connected_since is None:
            return
        now = time.perf_counter()
        if now - link.connected_since < limit:
            return
        for topic, latest in self.router.latest_by_subscription().items():
            silent = latest is None or now - latest >= limit
            if silent and self.silent.due(topic):
                log.warning("no message on %s for %.0f s while connected: check the broker's ACL for client %s (a denied "
                            "subscription is granted and then filtered) and that publishers use this topic",
                            topic, limit, self.config.broker.client_id)
            elif not silent:
                self.silent.forget(topic)

    def stop(self) -> None:
        """Graceful shutdown within ``shutdown_timeout_s`` in total: stop taking samples, score what is
        pending, flush events, go offline. What is not flushed in time stays in the outbox.
        """
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.accepting = False
        systemd.notify("STOPPING=1")
        deadline = time.monotonic() + self.config.runtime.shutdown_timeout_s
        link_share = min(2.0, self.config.runtime.shutdown_timeout_s / 5)  # kept back to publish "offline"
        stoppers = []  # the HTTP servers' loops notice a shutdown only every half second: stopped meanwhile
        if self.metrics_server is not None:
            stoppers.append(self.metrics_server[0].shutdown)
        if self.status_server is not None:
            stoppers.append(self.status_server.stop)
        servers_stopping = [threading.Thread(target=stop, name="linewatch-http-stop", daemon=True) for stop in stoppers]
        for thread in servers_stopping:
            thread.start()
        for runner in self.models:
            runner.stop(deadline - link_share)
        self.thresholds.flush()
        left = self.sink.drain(deadline - link_share)
        if left:
            log.warning("%d event(s) stay in the outbox %s for the next start", left, self.outbox.path)
        if self.sparkplug is not None:
            self.sparkplug.stop(deadline - link_share / 2)  # its NDEATH, then the link's "offline" in what is left
        if self.link is not None:
            self.link.stop(max(0.1, deadline - time.monotonic()))
        for thread in servers_stopping:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not self.sink.thread.is_alive():
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
