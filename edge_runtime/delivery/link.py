"""The MQTT link (paho-mqtt 2, callback API v2): connect, TLS and authentication, reconnect with
backoff, resubscribe on every connect, a retained status topic with a last will, QoS 1 publishing.

paho's errors are translated into :class:`edge_runtime.contract.errors.BrokerError` here, at the boundary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_runtime.config import BrokerConfig
from edge_runtime.contract.errors import BrokerError
from edge_runtime.delivery import publish_decoder
from edge_runtime.delivery.linkerrors import classify, closed_before_connack, refused_by_broker
from edge_runtime.delivery.paho_client import LinkClient, ReadAheadSocket
from edge_runtime.delivery.tcp_progress import tcp_progress
from edge_runtime.throttle import Throttle

log = logging.getLogger("linewatch.mqtt")
MAX_QOS0_WAITING = 10_000  # QoS 0 messages handed to paho and not yet written to the socket; beyond, publish refuses
UNSUPPORTED_PROTOCOL = (1, 132)  # MQTT 3.1.1 and MQTT 5 reason codes for "unsupported protocol version"
CONNACK_TIMEOUT_S = 3.0  # with protocol "auto", no CONNACK to an MQTT 5 CONNECT this soon means 3.1.1 only


def no_delay(client, userdata, sock) -> None:
    """For paho's ``on_socket_open``: send small packets at once. paho leaves Nagle's algorithm on, so a small event
    waits up to a delayed ACK (40 ms) behind the previous one.
    """
    with contextlib.suppress(AttributeError, OSError):  # a websocket wrapper has no socket options
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def secure(client: mqtt.Client, c: BrokerConfig) -> None:
    """Credentials, TLS and reconnect backoff from the broker config (every connection linewatch opens)."""
    if c.username:
        client.username_pw_set(c.username, c.password())
    if c.tls:
        try:
            client.tls_set(ca_certs=c.ca_file or None, certfile=c.cert_file or None, keyfile=c.key_file or None,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise BrokerError(f"TLS setup failed: {error}") from None
    client.reconnect_delay_set(min_delay=max(1, int(c.reconnect_min_s)), max_delay=max(1, int(c.reconnect_max_s)))


class Link:
    """One client connection that both receives samples and publishes events.

    ``on_message(topic, payload, arrival)`` is called on paho's network thread.
    ``on_connected()`` runs after each successful (re)connect and resubscription.
    ``on_acked(mid, failure)`` gets every acknowledgement (QoS 1 PUBACK, QoS 0 written), with the
    MQTT 5 reason code's text when the broker refused the message, else None.
    """

    def __init__(self, config: BrokerConfig, subscriptions: list[tuple[str, int]], status_topic: str, online: dict,
                 on_message: Callable[[str, bytes, float], None], on_connected: Callable[[], None],
                 on_acked: Callable[[int, str | None], None], max_packet: int = 0) -> None:
        """``max_packet``: with MQTT 5, the broker is told not to send larger packets (0: no limit)."""
        self.config = config
        self.max_packet = max_packet
        self.subscriptions = subscriptions
        self.status_topic = status_topic
        self.online = online
        self.on_message_cb, self.on_connected_cb, self.on_acked_cb = on_message, on_connected, on_acked
        self.protocol = mqtt.MQTTv311 if config.protocol == "3.1.1" else mqtt.MQTTv5
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # connected, and the broker answered every subscription (SUBACK)
        self.last_error = ""
        self.ever_connected = False
        self.stopping = False
        self.socket_opened_at: float | None = None
        self.connack: str | None = None  # on the current socket: None (not yet), "accepted" or "refused"
        self.failures: Counter = Counter()  # connection failures by reason (linkerrors.REASONS)
        self.causes_logged = Throttle()  # connection failures logged since the last connection
        self.refused_filters = Throttle()
        self.qos0_waiting: set[int] = set()  # ids of QoS 0 messages paho holds (the sink's telemetry, reports)
        self.pending_subscriptions: dict[int, list[str]] = {}
        self.connected_since: float | None = None  # time.perf_counter() of the last successful connection
        self.write_progress: tuple[object, int, float] | None = None  # (socket, bytes out, since when) while bytes wait
        self.fallback_lock = threading.Lock()
        # host:port, then the failover brokers: a failed connection moves on to the next, in turn
        self.endpoints = config.endpoints()
        self.endpoint = 0
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        c = self.config
        persistent = c.session_expiry_s > 0
        publish_decoder.install()
        client = LinkClient(CallbackAPIVersion.VERSION2, client_id=c.client_id, protocol=self.protocol,
                             clean_session=None if self.protocol == mqtt.MQTTv5 else not persistent)
        secure(client, c)
        client.will_set(self.status_topic, orjson.dumps({**self.online, "state": "offline"}), qos=1, retain=True)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_sample = self._on_sample
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        reconnect = client.reconnect

        def reconnect_saying_why():  # paho's loop swallows these and retries in silence
            host, port = self.endpoints[self.endpoint]
            if (client.host, client.port) != (host, port):
                try:
                    client.host, client.port = host, port
                except RuntimeError:  # paho's setters refuse between connections in some of its states
                    client._host, client._port = host, port
            try:
                return reconnect()
            except OSError as error:
                self._failed(*classify(error, self._tried()), error)
                self.endpoint = (self.endpoint + 1) % len(self.endpoints)  # the next broker, at the next try
                raise

        client.reconnect = reconnect_saying_why
        return client

    def _tried(self) -> BrokerConfig:
        """The broker config with the host and port of the endpoint tried now, so that advice names that broker."""
        host, port = self.endpoints[self.endpoint]
        return dataclasses.replace(self.config, host=host, port=port)

    def _failed(self, reason: str, advice: str, error: BaseException | None = None) -> None:
        """Count a connection failure; log it once per cause."""
        self.failures[reason] += 1
        self.last_error = advice
        host, port = self.endpoints[self.endpoint]
        if self.causes_logged.due(f"{host}:{port} {advice}"):
            log.error("cannot connect to %s:%d: %s [%s; logged once per cause, retrying with backoff%s]", host, port, advice, reason,
                      ", then the next broker" if len(self.endpoints) > 1 else "")

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff after any loss."""
        try:
            clean_start = (self.config.session_expiry_s == 0) if self.protocol == mqtt.MQTTv5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY
            self.client.connect_async(self.config.host, self.config.port, self.config.keepalive, clean_start=clean_start,
                                      properties=self._connect_properties())
        except (OSError, ValueError) as error:
            raise BrokerError(f"cannot connect to {self.config.host}:{self.config.port}: {error}") from None
        self.client.loop_start()
        if self.config.protocol == "auto" and self.protocol == mqtt.MQTTv5:
            self._watch_connack()

    def _connect_properties(self) -> Properties | None:
        """MQTT 5 CONNECT properties: Maximum Packet Size, so an oversized message never reaches this process, and the
        Session Expiry Interval of a persistent session.
        """
        if self.protocol != mqtt.MQTTv5 or not (self.max_packet or self.config.session_expiry_s):
            return None
        properties = Properties(PacketTypes.CONNECT)
        if self.max_packet:
            properties.MaximumPacketSize = self.max_packet
        if self.config.session_expiry_s:
            properties.SessionExpiryInterval = self.config.session_expiry_s
        return properties

    def _watch_connack(self) -> None:
        timer = threading.Timer(0.5, self._fall_back_unless_connected)
        timer.daemon = True
        timer.start()

    def _fall_back_unless_connected(self) -> None:
        # amqtt neither answers nor closes an MQTT 5 CONNECT: it just waits. Only a socket that is
        # open without a CONNACK counts; a broker that is down is simply retried.
        if self.ever_connected or self.stopping or self.protocol != mqtt.MQTTv5:
            return
        opened = self.socket_opened_at
        if opened is not None and time.monotonic() - opened >= CONNACK_TIMEOUT_S:
            self.last_error = f"no CONNACK to MQTT 5 within {CONNACK_TIMEOUT_S:g} s"
            self._fall_back()
        else:
            self._watch_connack()

    def _on_socket_open(self, client, userdata, sock) -> None:
        self.socket_opened_at = time.monotonic()
        self.connack = None
        no_delay(client, userdata, sock)

    def _on_socket_close(self, client, userdata, sock) -> None:
        self.socket_opened_at = None

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected or ``timeout`` seconds pass."""
        return self.connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until connected and every subscription answered by the broker, or ``timeout`` seconds pass.

        Only then does a message published by another client surely reach this one: the broker may
        handle a publish that arrives before the SUBSCRIBE without delivering it here.
        """
        return self.subscribed.wait(timeout)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = "refused" if reason_code.is_failure else "accepted"
        if reason_code.is_failure:
            if self.config.protocol == "auto" and self.protocol == mqtt.MQTTv5 and reason_code.value in UNSUPPORTED_PROTOCOL:
                log.warning("broker %s:%d refused MQTT 5 (%s)", self.config.host, self.config.port, reason_code)
                threading.Thread(target=self._fall_back, daemon=True).start()
                return
            self._failed(*refused_by_broker(reason_code, self._tried()))
            return
        self.causes_logged.forget()
        self.subscribed.clear()
        self.pending_subscriptions.clear()  # a SUBACK the last connection never got will not come on this one
        if self.subscriptions:
            result, mid = client.subscribe(list(self.subscriptions))
            if result == mqtt.MQTT_ERR_SUCCESS:
                self.pending_subscriptions[mid] = [topic for topic, _ in self.subscriptions]
        if not self.pending_subscriptions:
            self.subscribed.set()
        self.publish_status("online", retain=True)
        self.ever_connected = True
        self.connected_since = time.perf_counter()
        self.connected.set()
        log.info("connected to %s:%d (MQTT %s)", *self.endpoints[self.endpoint], "5" if self.protocol == mqtt.MQTTv5 else "3.1.1")
        self.on_connected_cb()

    def _fall_back(self) -> None:
        """The broker speaks only MQTT 3.1.1: reconnect with it."""
        with self.fallback_lock:
            if self.protocol == mqtt.MQTTv311 or self.stopping:
                return
            log.warning("broker does not speak MQTT 5; falling back to 3.1.1")
            old = self.client
            self.protocol = mqtt.MQTTv311
            self.client = self._client()
            old.disconnect()
            old.loop_stop()
            self.start()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        """A SUBACK: a failure code for a filter (an ACL, a broker limit) is counted and logged once per filter."""
        for topic, code in zip(self.pending_subscriptions.pop(mid, []), reason_codes):
            if code.is_failure and self.refused_filters.due(topic):
                log.error("the broker refused the subscription to %s (%s): no samples will arrive on it; check the broker's "
                          "ACL for client %s (logged once per filter)", topic, code, self.config.client_id)
        if not self.pending_subscriptions and self.connected.is_set():
            self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if client is not self.client:
            return  # the MQTT 5 client replaced by a fallback
        self.subscribed.clear()  # first: whoever sees the link disconnected also sees it unsubscribed
        self.connected.clear()
        self.connected_since = None
        self.qos0_waiting.clear()  # paho does not send QoS 0 messages of a dropped connection again
        if self.connack is None and not self.stopping:
            self._failed(*closed_before_connack(self._tried()))
        elif self.connack == "accepted" and reason_code.value != 0:
            self.last_error = str(reason_code)
            log.warning("disconnected from broker: %s; reconnecting with backoff", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self._on_sample(message.topic, message.payload)

    def _on_sample(self, topic: str, payload: bytes) -> None:
        self.on_message_cb(topic, payload, time.perf_counter())

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.qos0_waiting.discard(mid)  # written to the socket
        if client is self.client and client.awaits_acknowledgement(mid):  # a QoS 0 write leaves nothing to settle
            self.on_acked_cb(mid, str(reason_code) if reason_code.is_failure else None)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Publish; returns the message id once paho holds the message, else None (the caller keeps it).

        A QoS 1 message paho queued while the connection was dropping counts as held: paho resends
        it with the same id after the reconnect.
        """
        if not self.connected.is_set():
            return None
        if not qos and len(self.qos0_waiting) >= MAX_QOS0_WAITING:
            return None  # paho queues QoS 0 without a bound while the socket is slow: the caller drops and counts it
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or (qos and info.rc == mqtt.MQTT_ERR_NO_CONN):
            if not qos:
                self.qos0_waiting.add(info.mid)
            return info.mid
        return None

    def reopen_if_stalled(self, now: float) -> bool:
        """Close the connection when bytes have waited ``write_stall_s`` seconds and none went out: a broker that
        stopped reading, a TCP connection stuck in the kernel. Samples keep arriving on such a connection, so paho's
        keep-alive never sees it stuck; the broker's would only after 1.5 keep-alive periods. paho then connects again
        with backoff and the outbox resends what was not acknowledged. Progress is the bytes the broker acknowledged
        where the kernel tells (Linux), else the bytes the socket took. Call it periodically (``now``:
        ``time.monotonic()``); True when it closed the connection.
        """
        limit, client = self.config.write_stall_s, self.client
        sock = client._sock
        if not limit or not isinstance(sock, ReadAheadSocket):
            self.write_progress = None
            return False
        kernel = tcp_progress(sock)
        done, waiting = kernel if kernel is not None else (sock.written, False)
        if not (waiting or client.want_write()):
            self.write_progress = None
            return False
        progress = self.write_progress
        if progress is None or progress[0] is not sock or progress[1] != done:
            self.write_progress = (sock, done, now)
            return False
        if now - progress[2] < limit:
            return False
        self.write_progress = None
        self.failures["write_stalled"] += 1
        host, port = self.endpoints[self.endpoint]
        log.warning("nothing written to %s:%d went out for %.0f s (%d packet(s) waiting in paho): closing the connection "
                    "to open it again", host, port, now - progress[2], len(client._out_packet))
        with contextlib.suppress(OSError, AttributeError):  # already closed; a websocket wrapper without shutdown
            sock.shutdown(socket.SHUT_RDWR)  # paho's loop reads the end of the stream and reconnects
        return True

    def publish_status(self, state: str, retain: bool = True) -> mqtt.MQTTMessageInfo:
        """Publish the retained status (``online`` / ``offline``); its acknowledgement is nobody's business."""
        return self.client.publish(self.status_topic, orjson.dumps({**self.online, "state": state}), qos=1, retain=retain)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` (waiting up to ``timeout`` s for it), disconnect and stop the network thread."""
        self.stopping = True
        if self.connected.is_set():
            info = self.publish_status("offline")
            with contextlib.suppress(RuntimeError, ValueError):  # not sent in time, or the link is already down
                info.wait_for_publish(timeout=max(0.1, timeout))
        self.client.disconnect()
        self.client.loop_stop()
