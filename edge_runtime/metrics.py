"""Prometheus metrics. Counters kept by the hot path as plain integers are read at scrape time,
so ingest pays nothing per message for metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edge_runtime.delivery.linkerrors import REASONS
from edge_runtime.ingest.badinput import KINDS, NOTES

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """Histograms observed per batch, plus a collector that reads the runtime's counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("linewatch_end_to_end_latency_seconds",
                                 "Arrival of a window's last sample to its decision (scored, alarm state updated, events queued)",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.event_latency = Histogram("linewatch_event_latency_seconds",
                                       "Arrival of a window's last sample to its event handed to the broker (outbox write included)",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.sample_age = Histogram("linewatch_sample_to_decision_seconds",
                                    "Wall clock at a window's decision minus its last sample's own timestamp: includes the broker's "
                                    "queue and transport, subject to clock skew between sensor and gateway",
                                    buckets=LATENCY_BUCKETS + (10.0, 30.0, 60.0, 300.0), registry=self.registry)
        self.inference = Histogram("linewatch_inference_seconds", "Backend inference time per batch",
                                   buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("linewatch_batch_size", "Windows per inference batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self._source: Callable[[], dict] | None = None

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one inference."""
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def bind(self, source: Callable[[], dict]) -> None:
        """Register ``source() -> snapshot`` read at every scrape (see ``Runtime.snapshot``)."""
        self._source = source
        self.registry.register(self)

    def collect(self):
        """Yield the counter and gauge families from the runtime's snapshot."""
        snap = self._source()
        yield _labelled("linewatch_messages", "MQTT messages received by result", "result", ("accepted", *KINDS),
                        {"accepted": snap["accepted"], **snap["bad_input"]})
        yield _labelled("linewatch_sample_notes", "Accepted samples with a remark, by kind", "kind", NOTES, snap["notes"])
        yield CounterMetricFamily("linewatch_error_reports_dropped", "Bad-input reports not published (over runtime.errors_per_second)",
                                  value=snap["error_reports_dropped"])
        windows = CounterMetricFamily("linewatch_windows_scored", "Windows scored", labels=["model"])
        misses = CounterMetricFamily("linewatch_deadline_misses", "Windows whose result came later than the latency budget", labels=["model"])
        drops = CounterMetricFamily("linewatch_windows_dropped", "Windows not scored, by reason", labels=["model", "reason"])
        alarms = GaugeMetricFamily("linewatch_alarms_active", "Streams in alarm", labels=["model"])
        drifting = GaugeMetricFamily("linewatch_streams_drifting", "Streams whose recent scores departed from the calibration ones",
                                     labels=["model"])
        streams = GaugeMetricFamily("linewatch_streams", "Streams held (at most runtime.max_streams)", labels=["model"])
        evicted = CounterMetricFamily("linewatch_streams_evicted", "Streams forgotten after runtime.stream_idle_s without samples",
                                      labels=["model"])
        quiet = GaugeMetricFamily("linewatch_streams_quiet", "Streams held without a sample for runtime.silent_after_s: a machine "
                                  "that stopped, or a stream now owned by another worker", labels=["model"])
        gaps = CounterMetricFamily("linewatch_sample_gaps", "Steps in a stream's sample times longer than 1.5 sample periods "
                                   "(samples lost before linewatch, e.g. dropped by the broker)", labels=["model"])
        refused = CounterMetricFamily("linewatch_reloads_refused", "Bundle reloads refused (the old bundle kept running)", labels=["model"])
        commissioning = GaugeMetricFamily("linewatch_streams_commissioning", "Streams by commissioning state: learning their "
                                          "threshold (no alarms) or with a learned one", labels=["model", "state"])
        handed = CounterMetricFamily("linewatch_stream_states_taken", "Streams that started from the state another owner "
                                     "handed over on the broker (runtime.handover_topic), by what was taken", labels=["model", "state"])
        for name, m in snap["models"].items():
            windows.add_metric([name], m["scored"])
            misses.add_metric([name], m["deadline_misses"])
            drops.add_metric([name, "overload"], m["shed"])
            drops.add_metric([name, "inference_error"], m["failed"])
            drops.add_metric([name, "undecidable"], m["undecided"])
            drops.add_metric([name, "unseen_condition"], m["unseen"])
            alarms.add_metric([name], m["alarms_active"])
            drifting.add_metric([name], m["drifting"])
            streams.add_metric([name], m["streams"])
            evicted.add_metric([name], m["streams_evicted"])
            quiet.add_metric([name], m["streams_quiet"])
            gaps.add_metric([name], m["gaps"])
            refused.add_metric([name], m["reloads_refused"])
            commissioning.add_metric([name, "learning"], m["commissioning"])
            commissioning.add_metric([name, "learned"], m["commissioned"])
            handed.add_metric([name, "alarm"], m["handover"]["alarms_taken"])
            handed.add_metric([name, "threshold"], m["handover"]["thresholds_taken"])
        yield from (windows, misses, drops, alarms, drifting, streams, evicted, quiet, gaps, refused, commissioning, handed)
        yield CounterMetricFamily("linewatch_events_stored", "Durable events (alarm transitions) written to the outbox",
                                  value=snap["events_stored"])
        yield CounterMetricFamily("linewatch_events_published", "Durable events (alarm transitions) handed to the broker, each once",
                                  value=snap["events_published"])
        yield CounterMetricFamily("linewatch_events_refused", "Durable events the broker refused (MQTT 5 PUBACK failure reason code)",
                                  value=snap["events_refused"])
        yield CounterMetricFamily("linewatch_telemetry_published", "Score telemetry events sent (QoS 0)", value=snap["telemetry_sent"])
        yield CounterMetricFamily("linewatch_sparkplug_rebirths_requested", "Sparkplug B rebirth requests sent (NCMD)",
                                  value=snap["sparkplug"]["rebirths_requested"])
        yield CounterMetricFamily("linewatch_sparkplug_data_published", "Window decisions published as Sparkplug B DDATA",
                                  value=snap["sparkplug"]["data_published"])
        yield CounterMetricFamily("linewatch_sparkplug_data_dropped", "Window decisions not published as Sparkplug B DDATA "
                                  "(queue full, or encoding failed)", value=snap["sparkplug"]["data_dropped"])
        dropped = CounterMetricFamily("linewatch_events_dropped", "Events dropped, by reason", labels=["reason"])
        for reason, count in snap["events_dropped"].items():
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily("linewatch_events_unsent", "Durable events in the outbox not in flight: not yet handed to the broker, "
                                "or refused and kept", value=snap["events_unsent"])
        yield GaugeMetricFamily("linewatch_events_inflight", "Durable events handed to the broker, not yet acknowledged",
                                value=snap["events_inflight"])
        yield GaugeMetricFamily("linewatch_outbox_depth", "Events waiting for broker acknowledgement", value=snap["outbox_depth"])
        yield GaugeMetricFamily("linewatch_events_unstored", "Durable events kept in memory because the outbox could not store them",
                                value=snap["events_unstored"])
        yield GaugeMetricFamily("linewatch_outbox_bytes", "Payload bytes in the outbox", value=snap["outbox_bytes"])
        yield GaugeMetricFamily("linewatch_connected", "1 while connected to the broker", value=1 if snap["connected"] else 0)
        yield _labelled("linewatch_connection_failures", "Failed connection attempts, and connections closed because writes stalled, by cause",
                        "reason", REASONS, snap["connection_failures"])
        yield GaugeMetricFamily("linewatch_subscriptions_refused", "Subscription filters the broker refused (SUBACK failure)",
                                value=snap["subscriptions_refused"])
        yield GaugeMetricFamily("linewatch_subscriptions_silent", "Subscriptions without a message for runtime.silent_after_s",
                                value=snap["subscriptions_silent"])
        ages = GaugeMetricFamily("linewatch_subscription_last_message_age_seconds", "Seconds since a subscription's latest message "
                                 "(absent until its first)", labels=["filter"])
        for topic, age in snap["last_message_age"].items():
            if age is not None:
                ages.add_metric([topic], age)
        yield ages


def _labelled(name: str, documentation: str, label: str, values: tuple[str, ...], counts: dict) -> CounterMetricFamily:
    """A counter with every known label value from the start (0 until counted), so rates work from the first scrape."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value in values:
        family.add_metric([value], counts.get(value, 0))
    return family
