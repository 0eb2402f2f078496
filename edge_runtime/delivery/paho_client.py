"""paho's client as the runtime's link uses it: reading its socket in large chunks, handing samples straight to the
runtime, and telling a QoS 0 message written from an acknowledgement.

paho reads each packet with at least three ``recv`` calls (the command byte, each byte of the remaining length, the
rest) and runs one ``select`` per packet. Every one of those calls gives up the interpreter lock, and in the runtime
the scoring and delivery threads are waiting for it: each message then pays for the lock changing hands several
times, a large share of what the network thread spends. :class:`ReadAheadSocket` fills a buffer with one ``recv`` of
up to :data:`CHUNK` bytes and serves paho's small reads from it; its ``pending()`` (the hook paho has for TLS
sockets) tells paho's loop that bytes wait, and :class:`LinkClient` handles up to :data:`PACKETS_PER_READ`
buffered packets per pass of the loop before it returns to writing.

For every PUBLISH paho builds an ``MQTTMessage``, matches its topic against the per-filter callbacks and takes two
locks before it calls ``on_message``. The runtime uses none of that: :attr:`LinkClient.on_sample` receives the topic
and payload of a QoS 0 or 1 PUBLISH without properties (a *sample*) directly, and the PUBACK is sent after it
returns, as paho does. Complete samples already in the buffer are cut out of it in place, without paho's per-packet
reading state; anything else (QoS 2, MQTT 5 properties such as a topic alias, a topic that is not UTF-8, a packet
that is not whole in the buffer) takes paho's own path, ``on_message`` included.

paho calls ``on_publish`` both when a QoS 0 message has been written and when a QoS 1 message is acknowledged;
:meth:`LinkClient.awaits_acknowledgement` tells the two apart, so the score telemetry's writes are not handed to the
delivery thread as acknowledgements to settle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTErrorCode

from edge_runtime.delivery.publish_decoder import NO_PROPERTIES

CHUNK = 65536  # bytes asked of the socket per recv
PACKETS_PER_READ = 64  # packets handled per pass of paho's loop: outgoing events and acks wait no longer than that


class ReadAheadSocket:
    """Wraps the socket paho created (TCP, TLS or paho's websocket wrapper); everything but reading goes to it."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.buffer = b""
        self.position = 0
        self.written = 0  # bytes the socket took: whether writes progress where the kernel does not tell

    def send(self, data) -> int:
        """Write as the socket's own ``send`` does, counting the bytes it took."""
        sent = self.sock.send(data)
        self.written += sent
        return sent

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes: from the buffer, else from one recv of up to :data:`CHUNK` (which may raise as
        the socket's own would: ``BlockingIOError``, TLS's want-read).
        """
        if self.position >= len(self.buffer):
            data = self.sock.recv(CHUNK)
            if len(data) <= size:
                return data
            self.buffer, self.position = data, 0
        start = self.position
        self.position = min(start + size, len(self.buffer))
        return self.buffer[start : self.position]

    def fill(self) -> None:
        """Read one chunk into the empty buffer. Where the socket has nothing or fails, the buffer stays empty and
        paho's own read meets the same condition and handles it as it does.
        """
        with contextlib.suppress(OSError):  # BlockingIOError, TLS's want-read, a reset: paho's next read says which
            self.buffer, self.position = self.sock.recv(CHUNK), 0

    def pending(self) -> int:
        """Bytes read but not yet handed to paho, and what a TLS socket holds decrypted."""
        inner = self.sock.pending() if hasattr(self.sock, "pending") else 0
        return len(self.buffer) - self.position + inner

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


class LinkClient(mqtt.Client):
    """paho's client on a :class:`ReadAheadSocket`, handling the packets already buffered in one pass of its loop;
    samples go to :attr:`on_sample` when it is set.
    """

    on_sample: Callable[[str, bytes], None] | None = None  # (topic, payload) of a QoS 0 or 1 PUBLISH without properties

    def _create_socket(self):
        return ReadAheadSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """One chunk read into the empty buffer, then the packets in it: samples cut out of it, others read by
        paho (at most :data:`PACKETS_PER_READ` packets in all).
        """
        sock = self._sock
        if not isinstance(sock, ReadAheadSocket):
            return super().loop_read(max_packets)
        if not sock.pending():
            sock.fill()  # the loop's select said bytes wait
        rc, handled = MQTTErrorCode.MQTT_ERR_SUCCESS, 0
        while handled < PACKETS_PER_READ and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            samples = self._read_samples(sock, PACKETS_PER_READ - handled)
            if not samples:
                rc = super().loop_read(max_packets)
            handled += samples or 1
            sock = self._sock
            if not isinstance(sock, ReadAheadSocket) or not sock.pending():
                break
        return rc

    def _read_samples(self, sock: ReadAheadSocket, limit: int) -> int:
        """Hand up to ``limit`` whole samples at the head of ``sock``'s buffer to :attr:`on_sample` (each QoS 1 one
        acknowledged after it) and take them out of the buffer; stop at the first packet that is not a whole sample,
        which paho then reads. Returns how many were handed over.
        """
        on_sample = self.on_sample
        if on_sample is None or self._manual_ack or self._in_packet["command"]:  # paho is inside a packet
            return 0
        buffer, position, end = sock.buffer, sock.position, len(sock.buffer)
        mqtt5 = self._protocol == mqtt.MQTTv5
        handled = 0
        while handled < limit and position < end:
            command = buffer[position]
            if command & 0xF0 != 0x30 or command & 0x04:  # not a PUBLISH, or QoS 2 (or the reserved QoS 3)
                break
            length, shift, at = 0, 0, position + 1
            while at < end and shift < 28:
                byte = buffer[at]
                at += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            else:  # the remaining length runs past the buffer, or is malformed: paho's to read or to refuse
                break
            packet_end = at + length
            if packet_end > end or at + 2 > packet_end:
                break
            topic_end = at + 2 + ((buffer[at] << 8) | buffer[at + 1])
            body = topic_end + 2 if command & 0x02 else topic_end
            if mqtt5:
                if body >= packet_end or buffer[body]:  # MQTT 5 properties, or no room for their length
                    break
                body += 1
            if body > packet_end:
                break
            try:
                topic = buffer[at + 2 : topic_end].decode("utf-8")
            except UnicodeDecodeError:
                break
            sock.position = position = packet_end
            handled += 1
            self._deliver_sample(on_sample, topic, buffer[body:packet_end],
                                 (buffer[topic_end] << 8) | buffer[topic_end + 1] if command & 0x02 else 0)
        if handled:
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()
        return handled

    def _handle_publish(self) -> MQTTErrorCode:
        """A sample to :attr:`on_sample` and its PUBACK; any other PUBLISH to paho's own handling."""
        on_sample, command = self.on_sample, self._in_packet["command"]
        if on_sample is None or command & 0x06 == 0x04 or self._manual_ack:  # QoS 2: paho keeps its state
            return super()._handle_publish()
        result = _packet.decode_publish(command, self._in_packet["packet"], self._protocol)
        if result.properties is not None and result.properties is not NO_PROPERTIES:
            return super()._handle_publish()
        try:
            topic = result.topic.decode("utf-8")
        except UnicodeDecodeError:
            return super()._handle_publish()
        return self._deliver_sample(on_sample, topic, result.payload, result.mid if result.qos else 0)

    def _deliver_sample(self, on_sample: Callable[[str, bytes], None], topic: str, payload: bytes, mid: int) -> MQTTErrorCode:
        """Call ``on_sample`` as paho calls ``on_message`` (an exception logged, raised unless suppressed), then
        acknowledge a QoS 1 sample (``mid`` non-zero).
        """
        try:
            on_sample(topic, payload)
        except Exception as error:
            self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_sample: %s", error)
            if not self.suppress_exceptions:
                raise
        return self._send_puback(mid) if mid else MQTTErrorCode.MQTT_ERR_SUCCESS

    def awaits_acknowledgement(self, mid: int) -> bool:
        """Whether ``mid`` is a QoS 1 or 2 message not yet acknowledged; inside ``on_publish``, whether the call is
        its acknowledgement (paho forgets the message after the callback) rather than a QoS 0 message's write.
        """
        return mid in self._out_messages
