"""linewatch's events the Sparkplug B way: linewatch as an edge node whose devices are the scored streams, so
that a SCADA system shows each stream's score, threshold, alarm and drift as ordinary tags.

The node has its own MQTT connection (its NDEATH is that connection's will, as the specification requires),
births every device it has seen on each (re)connection and on a rebirth command, and sends DDATA when an
alarm or drift changes and, with ``publish_scores``, for every window. Sparkplug DATA is QoS 0: the JSON
alarm events stay the durable record. Encoding and publishing happen on the node's own thread, so that the
scoring threads only queue a tuple; beyond ``MAX_QUEUED`` decisions waiting, further ones are dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from edge_runtime.config import BrokerConfig, SparkplugConfig
from edge_runtime.delivery.event_schema import saturate
from edge_runtime.delivery.link import secure
from edge_runtime.sparkplug import sparkplug_b_pb2 as pb
from edge_runtime.sparkplug.node import EdgeNode

log = logging.getLogger("linewatch.sparkplug")

METRICS = [("score", pb.Double), ("threshold", pb.Double), ("alarm", pb.Boolean), ("drift", pb.Boolean)]
MAX_QUEUED = 10_000


def device_id(model: str, stream: str) -> str:
    """The Sparkplug device of a model's stream: ``model:line:machine`` (ids cannot hold ``/``, ``+`` or ``#``)."""
    return f"{model}:{stream}".replace("/", ":").replace("+", "_").replace("#", "_")


class SparkplugEvents:
    """Publishes window decisions as DDATA of linewatch's edge node (:meth:`publish` is called by the scoring threads)."""

    def __init__(self, broker: BrokerConfig, config: SparkplugConfig) -> None:
        node = config.edge_node.format(client_id=broker.client_id)
        self.node = EdgeNode(broker.host, broker.port, config.group, node, {}, client_id=f"{broker.client_id}-sparkplug",
                             configure=lambda client: secure(client, broker))
        self.published = 0
        self.dropped = 0
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="linewatch-sparkplug", daemon=True)

    def start(self) -> None:
        """Connect in the background (births on every connection) and start publishing."""
        self.node.start(timeout=None)
        self.thread.start()

    def stop(self, deadline: float) -> None:
        """Publish what is queued, then NDEATH and disconnect, all by ``deadline`` (monotonic); what is left then is dropped."""
        self.queue.put(None)
        self.thread.join(max(0.0, deadline - time.monotonic()))
        self.node.stop(deadline=deadline)

    def publish(self, model: str, stream: str, score: float, threshold: float, end_s: float, alarm: bool, drift: bool) -> None:
        """Queue one window's decision (called by the scoring threads; the node's thread publishes it)."""
        if self.queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            return
        self.queue.put((model, stream, score, threshold, end_s, alarm, drift))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                self._send(*item)
            except Exception as error:  # a decision that cannot be published costs only itself
                self.dropped += 1
                log.error("Sparkplug DDATA for %s not published: %r", item[1], error)

    def _send(self, model: str, stream: str, score: float, threshold: float, end_s: float, alarm: bool, drift: bool) -> None:
        """One decision as DDATA (DBIRTH first for a stream not seen before)."""
        device = device_id(model, stream)
        values = [saturate(score), float(threshold), bool(alarm), bool(drift)]
        stamp = int(end_s * 1000)
        if device not in self.node.writer.devices:
            self.node.add_device(device, METRICS, values, stamp)
        else:
            self.node.publish(device, values, stamp)
        self.published += 1
