"""The Sparkplug B consumer of one model: birth certificates, aliases, sequence numbers and deaths, turned into
per-metric samples for the streams (each ``{edge_node}/{device}``, or ``{edge_node}`` for node metrics).

What the specification asks of a consumer, and what linewatch does:

- **No data before a birth.** NDATA/DDATA of a node (or device) whose birth was not seen since its last death
  or sequence gap are refused (``sparkplug_unborn``) and a rebirth is requested.
- **Sequence numbers.** Every message of an edge node but its death carries ``seq`` (0..255, the NBIRTH 0).
  A message out of sequence (one lost, or reordered) is refused (``sparkplug_sequence``), the node's streams
  restart (no window spans the hole) and a rebirth is requested; data is taken again from the new NBIRTH.
- **Aliases** are rebuilt on every birth: a metric is matched to a bundle feature (or a condition) by name in the
  BIRTH, and by alias (or name) in DATA. Metrics no feature is named after are ignored.
- **Deaths.** NDEATH (whose ``bdSeq`` matches the birth's; a stale one is ignored) and DDEATH end the streams'
  current runs and the births; data counts again after the next birth.
- **Datatypes.** A feature's metric must be numeric (integers, Float, Double, Boolean as 0/1); a metric of another
  datatype is counted (``wrong_type``) and left out of the sample. A null metric is a missing value.
- **Rebirth requests** (NCMD ``Node Control/Rebirth``) go out at most once per ``rebirth_interval_s`` per node.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_runtime.ingest.decoders import BadSample, FeatureLayout, check_time, condition_value
from edge_runtime.ingest.topics import SparkplugTopic as Topic
from edge_runtime.sparkplug import sparkplug_b_pb2 as pb
from edge_runtime.sparkplug.codec import BDSEQ, decode, metric_value, rebirth_request

Sample = tuple[float, dict[int, float]]  # (sample time in s, {row position: value}) of the metrics stamped at that time


class _Node:
    """What is known about one edge node since its last birth."""

    __slots__ = ("born", "bd_seq", "seq", "metrics", "devices", "seen_devices", "asked")

    def __init__(self) -> None:
        self.born = False
        self.bd_seq: int | None = None
        self.seq = 0
        self.metrics: dict[tuple[str | None, object], tuple[int | None, int]] = {}  # (device, name or alias) -> (position, datatype)
        self.devices: set[str] = set()  # devices born since the node's birth
        self.seen_devices: set[str] = set()  # every device that ever published (their streams restart on the node's death)
        self.asked = -float("inf")  # when a rebirth was last requested


class SparkplugInput:
    """Consumes the Sparkplug B messages of the groups one model subscribes to.

    ``send(topic, payload)`` publishes a rebirth request (QoS 0); ``restart(key)`` ends a stream's current run.
    """

    def __init__(self, layout: FeatureLayout, send: Callable[[str, bytes], None] | None, restart: Callable[[str], None],
                 rebirth_interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic, max_nodes: int = 10_000) -> None:
        """``max_nodes``: edge nodes tracked at most, and devices per node (a new one beyond is refused as ``stream_limit``,
        as streams are).
        """
        self.send, self.restart, self.rebirth_interval_s, self.clock = send, restart, rebirth_interval_s, clock
        self.max_nodes = max_nodes
        self.nodes: dict[tuple[str, str], _Node] = {}
        self.rebirths_requested = 0
        self.restarts = 0  # stream runs ended by a death or a sequence gap
        self.bind(layout)

    def bind(self, layout: FeatureLayout) -> None:
        """Match metric names against this layout (a new bundle): every node must be born again to be read."""
        self.layout = layout
        self.nodes.clear()

    def take(self, where: Topic, payload: bytes, now: float, window: tuple[float, float], bad) -> list[Sample]:
        """The samples of one message, for the stream ``where.key`` (``bad``: counts metrics of the wrong datatype);
        :class:`BadSample` refuses the message.
        """
        message = decode(payload)
        node = self.nodes.get((where.group, where.node))
        if node is None:
            if len(self.nodes) >= self.max_nodes:
                raise BadSample("stream_limit", f"{self.max_nodes} Sparkplug edge nodes already; {where.node!r} refused")
            node = self.nodes[(where.group, where.node)] = _Node()
        kind = where.kind
        if kind in ("NCMD", "DCMD"):
            return []
        if kind == "NDEATH":
            self._death(where, node, message)
            return []
        if kind == "NBIRTH":
            node.born, node.seq, node.metrics, node.devices = True, message.seq, {}, set()
            node.bd_seq = next((int(m.long_value) for m in message.metrics if m.name == BDSEQ), None)
        else:
            if not node.born:
                self._ask(where)
                raise BadSample("sparkplug_unborn", f"{kind} before the node's NBIRTH (or since its death or a sequence gap): rebirth requested")
            expected = (node.seq + 1) % 256
            if message.seq != expected:
                self._lost(where, node)
                raise BadSample("sparkplug_sequence", f"seq {message.seq}, expected {expected}: streams restarted, rebirth requested")
            node.seq = message.seq
        device = where.device
        if device is not None:
            if device not in node.seen_devices:
                if len(node.seen_devices) >= self.max_nodes:  # devices are streams too: bounded as they are
                    raise BadSample("stream_limit", f"{self.max_nodes} devices of edge node {where.node!r} already; {device!r} refused")
                node.seen_devices.add(device)
            if kind == "DBIRTH":
                node.devices.add(device)
            elif kind == "DDEATH":
                node.devices.discard(device)
                self.restarts += 1
                self.restart(where.key)
                return []
            elif device not in node.devices:
                self._ask(where)
                raise BadSample("sparkplug_unborn", f"DDATA of {device} before its DBIRTH: rebirth requested")
        return self._samples(where.key, device, node, message, kind.endswith("BIRTH"), now, window, bad)

    def _samples(self, key: str, device: str | None, node: _Node, message: pb.Payload, birth: bool, now: float,
                 window: tuple[float, float], bad) -> list[Sample]:
        default_ms = message.timestamp or None
        stamped: dict[int | None, dict[int, float]] = {}
        metrics = node.metrics
        for metric in message.metrics:
            if birth:
                position, datatype = self.layout.positions.get(metric.name), metric.datatype
                metrics[(device, metric.name)] = (position, datatype)
                if metric.HasField("alias"):
                    metrics[(device, metric.alias)] = (position, datatype)
            else:  # DATA: the birth's datatype, the name or else the alias (few field reads: each costs ~0.2 µs)
                found = metrics.get((device, metric.name or metric.alias))
                if found is None:
                    continue  # a metric the birth did not announce: nothing to match it to
                position, datatype = found
            if position is None:
                continue
            try:
                codes = self.layout.codes_at(position)
                if codes is not None and datatype in (pb.String, pb.Text) and metric.WhichOneof("value") == "string_value":
                    value = condition_value(metric.name, metric.string_value, codes)
                else:
                    value = metric_value(metric, datatype)
            except TypeError as error:
                bad.report("wrong_type", key, f"metric {metric.name or metric.alias}: {error}")
                continue
            if value is None:
                continue  # null: missing, the stream's hold rule applies
            stamp = metric.timestamp or default_ms  # 0: not stamped (no sensor reads at the epoch)
            group = stamped.get(stamp)
            if group is None:
                group = stamped[stamp] = {}
            group[position] = value
        samples = [(check_time(None if stamp is None else stamp / 1000.0, now, window), group) for stamp, group in stamped.items()]
        if len(samples) > 1:
            samples.sort(key=lambda sample: sample[0])
        return samples

    def _death(self, where: Topic, node: _Node, message: pb.Payload) -> None:
        """NDEATH: the node and its devices are offline, unless it is the will of an older session (its bdSeq differs)."""
        bd_seq = next((int(m.long_value) for m in message.metrics if m.name == BDSEQ), None)
        if node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
            return
        node.born, node.devices = False, set()
        self._restart_node(where.node, node)

    def _lost(self, where: Topic, node: _Node) -> None:
        """A sequence gap: what was lost cannot be told, so the node is unborn until it births again."""
        node.born, node.devices = False, set()
        self._restart_node(where.node, node)
        self._ask(where, force=True)

    def _restart_node(self, name: str, node: _Node) -> None:
        for key in (name, *(f"{name}/{device}" for device in node.seen_devices)):
            self.restarts += 1
            self.restart(key)

    def _ask(self, where: Topic, force: bool = False) -> None:
        """Request a rebirth of the node, at most once per ``rebirth_interval_s`` (a sequence gap always asks)."""
        node = self.nodes[(where.group, where.node)]
        now = self.clock()
        if self.send is None or (not force and now - node.asked < self.rebirth_interval_s):
            return
        node.asked = now
        self.rebirths_requested += 1
        self.send(*rebirth_request(where.group, where.node))
