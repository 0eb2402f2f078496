"""A Sparkplug B edge node on its own MQTT connection: the plant simulator's Sparkplug dialect (tests, the demo,
``linewatch simulate --sparkplug``), and the node linewatch publishes its events as (``[sparkplug]``).

The node connects with its NDEATH as the MQTT will, publishes NBIRTH and a DBIRTH per device on every
connection, answers ``Node Control/Rebirth`` commands with fresh births, and sends DATA by alias. For tests it
can also leave sequence numbers out (:meth:`EdgeNode.skip`), as a lost message would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.delivery.link import no_delay
from edge_runtime.sparkplug.codec import EdgeNodeWriter, decode, is_rebirth_request, topic

log = logging.getLogger("linewatch.sparkplug")


class EdgeNode:
    """One edge node and its devices: ``devices`` maps each device id to its ``[(metric name, datatype)]``."""

    def __init__(self, host: str, port: int, group: str, node: str, devices: dict[str, list[tuple[str, int]]], bd_seq: int = 0,
                 client_id: str | None = None, configure: Callable[[mqtt.Client], None] | None = None) -> None:
        """``bd_seq``: the birth/death sequence of the first session; ``configure(client)`` sets credentials and TLS."""
        self.host, self.port = host, port
        self.writer = EdgeNodeWriter(group, node, bd_seq)
        for device, metrics in devices.items():
            self.writer.define(device, metrics)
        self.current: dict[str | None, list | None] = dict.fromkeys(self.writer.devices)  # the values the next birth carries...
        self.current_ms: int | None = None  # ...stamped with the time of the latest data (None: now)
        self.lock = threading.Lock()  # births (network thread, on a rebirth command) and data (the caller) share seq
        self.connected = threading.Event()
        self.births = 0
        self.rebirth_requests = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{group}-{node}", protocol=mqtt.MQTTv311)
        if configure is not None:
            configure(self.client)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_socket_open = no_delay
        self._will()

    def _will(self) -> None:
        will_topic, will_payload = self.writer.death()
        self.client.will_set(will_topic, will_payload, qos=1, retain=False)

    def start(self, timeout: float | None = 10.0) -> EdgeNode:
        """Connect, subscribe to the node's commands and publish the births; returns once born (``timeout`` None: at
        once, connecting in the background and again after every loss, births each time).
        """
        if timeout is None:
            self.client.connect_async(self.host, self.port)
            self.client.loop_start()
            return self
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.client.loop_stop()
            raise ConnectionError(f"edge node {self.writer.node}: no connection to {self.host}:{self.port} within {timeout:g} s")
        return self

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:  # said, not silent: an ACL or credentials problem would otherwise look like a quiet node
            log.error("Sparkplug edge node %s/%s: the broker refused the connection (%s); retrying", self.writer.group,
                      self.writer.node, reason)
            return
        client.subscribe(topic(self.writer.group, "NCMD", self.writer.node), qos=0)
        self.birth(connected=True)

    def _on_disconnect(self, *args) -> None:
        """The session ended: the next one (paho reconnects) gets the next bdSeq, in its will and its birth."""
        self.connected.clear()
        with self.lock:
            self.writer.next_session()
            self._will()

    def _on_message(self, client, userdata, message) -> None:
        try:
            asked = is_rebirth_request(decode(message.payload))
        except Exception:  # a malformed command is not ours to act on
            return
        if asked:
            self.rebirth_requests += 1
            self.birth()

    def birth(self, connected: bool = False) -> None:
        """Publish NBIRTH and every DBIRTH with the latest values (seq starts again at 0); ``connected``: a new session,
        marked connected only once born, so that no device births before its node.
        """
        with self.lock:
            for birth_topic, payload in self.writer.birth(self.current, self.current_ms):
                self.client.publish(birth_topic, payload, qos=0)
            self.births += 1
            if connected:
                self.connected.set()

    def publish(self, device: str | None, values: list, timestamp_ms: int | None = None) -> mqtt.MQTTMessageInfo:
        """DATA of a device (None: the node's own metrics) by alias; ``...`` leaves a metric out (report by exception)."""
        with self.lock:
            self.current[device] = [v if v is not ... else old for v, old in zip(values, self.current[device] or values)]
            self.current_ms = timestamp_ms
            data_topic, payload = self.writer.data(device, values, timestamp_ms)
            return self.client.publish(data_topic, payload, qos=0)

    def add_device(self, device: str, metrics: list[tuple[str, int]], values: list, timestamp_ms: int) -> None:
        """A device that appears while the node runs: defined, and born with ``values`` (its births follow every rebirth)."""
        with self.lock:
            self.writer.define(device, metrics)
            self.current[device] = list(values)
            self.current_ms = timestamp_ms
            if self.connected.is_set():
                self.client.publish(*self.writer.device_birth(device, values, timestamp_ms), qos=0)

    def skip(self, count: int = 1) -> None:
        """Use up ``count`` sequence numbers without publishing, as if those messages were lost."""
        with self.lock:
            self.writer.seq = (self.writer.seq + count) % 256

    def stop(self, death: bool = True, deadline: float | None = None) -> None:
        """Publish NDEATH (a clean stop; the broker sends it as the will otherwise) and disconnect, by ``deadline``
        (monotonic; default five seconds from now).
        """
        if death and self.connected.is_set():
            left = 5.0 if deadline is None else max(0.05, deadline - time.monotonic())
            try:
                self.client.publish(*self.writer.death(), qos=1).wait_for_publish(left)
            except (RuntimeError, ValueError) as error:  # the connection went while it was sent: the will says the same
                log.warning("Sparkplug NDEATH not confirmed (%s); the broker publishes the will instead", error)
        self.client.disconnect()
        self.client.loop_stop()
