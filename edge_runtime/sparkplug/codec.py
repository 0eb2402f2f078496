"""Sparkplug B 3.0 on the wire: topics, payload decoding, metric values, and the payloads an edge node writes.

Payloads are the protobuf classes protoc generates from the specification's schema
(``sparkplug_b.proto`` -> ``sparkplug_b_pb2.py``); this module adds the rules the schema leaves to
prose: signed integers travel as two's complement in unsigned fields, ``seq`` runs 0..255 over all
of an edge node's messages but its death, and the death certificate carries the ``bdSeq`` of its birth.
"""

from __future__ import annotations

import time

from google.protobuf.message import DecodeError

from edge_runtime.ingest.decoders import BadSample
from edge_runtime.ingest.topics import SPARKPLUG_NAMESPACE
from edge_runtime.sparkplug import sparkplug_b_pb2 as pb

REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"

_SIGNED_BITS = {pb.Int8: 8, pb.Int16: 16, pb.Int32: 32, pb.Int64: 64}
_INT_FIELD = {pb.Int8, pb.Int16, pb.Int32, pb.UInt8, pb.UInt16, pb.UInt32}  # int_value (uint32 on the wire)
_LONG_FIELD = {pb.Int64, pb.UInt64}  # long_value (uint64 on the wire)
NUMERIC = frozenset({*_INT_FIELD, *_LONG_FIELD, pb.Float, pb.Double, pb.Boolean})  # what a feature may be


def topic(group: str, kind: str, node: str, device: str | None = None) -> str:
    """The topic of a message of ``kind`` from an edge node (and one of its devices)."""
    return f"{SPARKPLUG_NAMESPACE}/{group}/{kind}/{node}" + (f"/{device}" if device is not None else "")


def decode(payload: bytes) -> pb.Payload:
    """A Sparkplug B payload; :class:`BadSample` ``malformed_protobuf`` when the bytes are not one."""
    message = pb.Payload()
    try:
        message.ParseFromString(payload)
    except DecodeError as error:
        raise BadSample("malformed_protobuf", f"not a Sparkplug B payload: {error}") from None
    return message


def metric_value(metric: pb.Payload.Metric, datatype: int) -> float | None:
    """A numeric metric's value as a float (Boolean as 0/1), None when the metric is null or carries no value.

    Raises ``TypeError`` for a datatype a feature cannot be (strings, data sets, arrays...) or a value in
    another field than its datatype names.
    """
    field = metric.WhichOneof("value")  # each field read costs ~0.2 µs in upb: the common cases first, few reads
    if field == "double_value" and datatype == pb.Double:
        return metric.double_value
    if field == "float_value" and datatype == pb.Float:
        return metric.float_value
    if field is None:  # is_null, or no value at all: missing either way
        return None
    if datatype not in NUMERIC:
        raise TypeError(f"datatype {pb.DataType.Name(datatype) if datatype in pb.DataType.values() else datatype} is not numeric")
    if datatype in _INT_FIELD and field == "int_value":
        value = metric.int_value
    elif datatype in _LONG_FIELD and field == "long_value":
        value = metric.long_value
    elif datatype == pb.Boolean and field == "boolean_value":
        return float(metric.boolean_value)
    else:
        raise TypeError(f"a {pb.DataType.Name(datatype)} metric carries {field or 'no value'}")
    bits = _SIGNED_BITS.get(datatype)
    if bits is not None:
        value &= (1 << bits) - 1
        if value >= 1 << (bits - 1):
            value -= 1 << bits
    return float(value)


def set_value(metric: pb.Payload.Metric, datatype: int, value) -> None:
    """Write ``value`` into the field ``datatype`` uses (signed integers as two's complement in their own width, as
    other implementations write them: Int8 -5 as 251); None writes a null.
    """
    if value is None:
        metric.is_null = True
    elif datatype in _INT_FIELD or datatype in _LONG_FIELD:
        bits = _SIGNED_BITS.get(datatype, 64)
        if datatype in _INT_FIELD:
            metric.int_value = int(value) & ((1 << bits) - 1)
        else:
            metric.long_value = int(value) & ((1 << bits) - 1)
    elif datatype == pb.Float:
        metric.float_value = value
    elif datatype == pb.Double:
        metric.double_value = value
    elif datatype == pb.Boolean:
        metric.boolean_value = bool(value)
    elif datatype == pb.String:
        metric.string_value = value
    else:
        raise TypeError(f"linewatch writes no {pb.DataType.Name(datatype)} metrics")


def now_ms() -> int:
    """Epoch milliseconds, Sparkplug's timestamps."""
    return int(time.time() * 1000)


class EdgeNodeWriter:
    """The payloads of one edge node: births that announce each metric's name, alias and datatype, data by alias
    only, and the death certificate, with ``seq`` and ``bdSeq`` kept as the specification requires.

    ``metrics``: per device (None: the node itself), the ordered ``(name, datatype)`` of its metrics; aliases
    are their positions, counted over the node so that they are unique within it. ``bd_seq`` is the
    birth/death sequence of the MQTT session about to start (see :meth:`next_session`).
    """

    def __init__(self, group: str, node: str, bd_seq: int = 0) -> None:
        self.group, self.node = group, node
        self.bd_seq = bd_seq % 256
        self.seq = 0
        self.devices: dict[str | None, list[tuple[str, int, int]]] = {None: []}  # device -> [(name, datatype, alias)]
        self.next_alias = 1

    def define(self, device: str | None, metrics: list[tuple[str, int]]) -> None:
        """Declare a device's metrics (or the node's, with None) before its birth."""
        known = self.devices.setdefault(device, [])
        for name, datatype in metrics:
            known.append((name, datatype, self.next_alias))
            self.next_alias += 1

    def next_session(self) -> None:
        """A new MQTT session: the next ``bdSeq`` (its death certificate is the new will)."""
        self.bd_seq = (self.bd_seq + 1) % 256

    def death(self) -> tuple[str, bytes]:
        """NDEATH: the will of the session (only ``bdSeq``; no ``seq``)."""
        payload = pb.Payload(timestamp=now_ms())
        payload.metrics.add(name=BDSEQ, datatype=pb.Int64, long_value=self.bd_seq)
        return topic(self.group, "NDEATH", self.node), payload.SerializeToString()

    def _next_seq(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    def birth(self, values: dict[str | None, list], timestamp_ms: int | None = None) -> list[tuple[str, bytes]]:
        """NBIRTH (seq 0, ``bdSeq``, the rebirth control) and a DBIRTH per device, with current ``values`` per device."""
        stamp = now_ms() if timestamp_ms is None else timestamp_ms
        self.seq = 0
        node = pb.Payload(timestamp=stamp, seq=self._next_seq())
        node.metrics.add(name=BDSEQ, datatype=pb.Int64, long_value=self.bd_seq, timestamp=stamp)
        node.metrics.add(name=REBIRTH, datatype=pb.Boolean, boolean_value=False, timestamp=stamp)
        self._fill(node, None, values.get(None), stamp, named=True)
        out = [(topic(self.group, "NBIRTH", self.node), node.SerializeToString())]
        for device in self.devices:
            if device is not None:
                out.append(self.device_birth(device, values.get(device), stamp))
        return out

    def device_birth(self, device: str, values: list | None, timestamp_ms: int) -> tuple[str, bytes]:
        """DBIRTH of one device: every metric with its name, alias, datatype and current value."""
        payload = pb.Payload(timestamp=timestamp_ms, seq=self._next_seq())
        self._fill(payload, device, values, timestamp_ms, named=True)
        return topic(self.group, "DBIRTH", self.node, device), payload.SerializeToString()

    def data(self, device: str | None, values: list, timestamp_ms: int | None = None) -> tuple[str, bytes]:
        """NDATA or DDATA: the metrics by alias only (entries of ``values`` that are ``...`` are left out)."""
        stamp = now_ms() if timestamp_ms is None else timestamp_ms
        payload = pb.Payload(timestamp=stamp, seq=self._next_seq())
        self._fill(payload, device, values, stamp, named=False)
        return topic(self.group, "NDATA" if device is None else "DDATA", self.node, device), payload.SerializeToString()

    def device_death(self, device: str) -> tuple[str, bytes]:
        """DDEATH of one device."""
        payload = pb.Payload(timestamp=now_ms(), seq=self._next_seq())
        return topic(self.group, "DDEATH", self.node, device), payload.SerializeToString()

    def _fill(self, payload: pb.Payload, device: str | None, values: list | None, stamp: int, named: bool) -> None:
        for k, (name, datatype, alias) in enumerate(self.devices.get(device, [])):
            value = values[k] if values is not None else None
            if value is ...:
                continue
            metric = payload.metrics.add(alias=alias, timestamp=stamp)
            if named:
                metric.name, metric.datatype = name, datatype
            set_value(metric, datatype, value)


def rebirth_request(group: str, node: str) -> tuple[str, bytes]:
    """The NCMD that asks an edge node to publish its births again (``Node Control/Rebirth = true``)."""
    payload = pb.Payload(timestamp=now_ms())
    payload.metrics.add(name=REBIRTH, datatype=pb.Boolean, boolean_value=True)
    return topic(group, "NCMD", node), payload.SerializeToString()


def is_rebirth_request(payload: pb.Payload) -> bool:
    """True when an NCMD payload asks for a rebirth."""
    return any(m.name == REBIRTH and m.boolean_value for m in payload.metrics)
