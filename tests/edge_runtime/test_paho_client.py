"""The runtime's paho client: its read-ahead socket hands paho the bytes in order whatever the read sizes, a client
on it receives every message of a burst intact, small and larger than its buffer, and its ``on_publish`` tells a
QoS 0 write from a QoS 1 acknowledgement; samples without properties go straight to ``on_sample`` and are
acknowledged, the rest through paho's ``on_message``; against a real broker.
"""

import socket
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_runtime.delivery import publish_decoder
from edge_runtime.delivery.paho_client import CHUNK, LinkClient, ReadAheadSocket
from helpers import wait_for
from mqtt_helpers import Mosquitto


def test_small_reads_come_from_one_chunk_in_order_and_an_empty_socket_still_says_so():
    left, right = socket.socketpair()
    right.setblocking(False)
    sock = ReadAheadSocket(right)
    data = bytes(range(256)) * 40
    left.sendall(data)
    assert wait_for(lambda: sock.sock.recv(1, socket.MSG_PEEK) == data[:1], 5)
    got = sock.recv(1)
    assert sock.pending() > 0  # the rest of what one recv took waits in the buffer
    while len(got) < len(data):
        got += sock.recv(7)
    assert got == data and sock.pending() == 0
    with pytest.raises(BlockingIOError):  # nothing buffered, nothing on the socket: as the socket itself answers
        sock.recv(1)
    left.close()
    assert sock.recv(1) == b""  # the peer closed: paho sees the connection lost
    right.close()


def test_a_read_larger_than_the_buffer_is_handed_over_whole():
    left, right = socket.socketpair()
    sock = ReadAheadSocket(right)
    left.sendall(b"xy")
    assert sock.recv(CHUNK * 2) == b"xy"  # what the socket gave fits the read: no copy through the buffer
    assert sock.pending() == 0
    left.close()
    right.close()


def test_a_client_on_it_receives_a_burst_in_order_and_intact(mosquitto_path, tmp_path):
    broker = Mosquitto(tmp_path).start()
    received: list[bytes] = []
    subscribed, done = threading.Event(), threading.Event()
    payloads = [f"{i}:".encode() + b"v" * (i % 300) for i in range(3000)] + [b"L" * (3 * CHUNK)]  # one spans several chunks

    def on_sample(topic: str, payload: bytes) -> None:
        received.append(payload)
        if len(received) == len(payloads):
            done.set()

    publish_decoder.install()
    subscriber = LinkClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscriber.on_sample = on_sample
    subscriber.on_subscribe = lambda *_: subscribed.set()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        subscriber.connect("127.0.0.1", broker.port)
        subscriber.subscribe("burst/#", qos=1)
        subscriber.loop_start()
        assert subscribed.wait(10)
        assert isinstance(subscriber.socket(), ReadAheadSocket)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        infos = [publisher.publish("burst/a", payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(30)
        assert done.wait(60), len(received)
        assert received == payloads  # one topic: MQTT keeps the order
    finally:
        for client in (subscriber, publisher):
            client.disconnect()
            client.loop_stop()
        broker.stop()


def test_on_publish_tells_a_qos0_write_from_a_qos1_acknowledgement(mosquitto_path, tmp_path):
    broker = Mosquitto(tmp_path).start()
    seen: dict[int, bool] = {}
    client = LinkClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_publish = lambda c, userdata, mid, reason_code, properties: seen.__setitem__(mid, c.awaits_acknowledgement(mid))
    try:
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        infos = {qos: [client.publish("acks/a", b"x", qos=qos) for _ in range(50)] for qos in (0, 1)}
        for info in infos[0] + infos[1]:
            info.wait_for_publish(10)
        assert wait_for(lambda: len(seen) == 100, 10)
        assert [seen[info.mid] for info in infos[0]] == [False] * 50  # written: nothing for the sink to settle
        assert [seen[info.mid] for info in infos[1]] == [True] * 50  # the broker's PUBACK
        assert not any(client.awaits_acknowledgement(info.mid) for info in infos[1])  # forgotten once acknowledged
    finally:
        client.disconnect()
        client.loop_stop()
        broker.stop()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
def test_samples_go_to_on_sample_and_are_acknowledged_and_the_rest_to_on_message(mosquitto_path, tmp_path, protocol):
    broker = Mosquitto(tmp_path).start()
    direct: list[tuple[str, bytes]] = []
    through_paho: list[tuple[str, bytes, int]] = []
    publish_decoder.install()

    def subscriber(clean: bool) -> LinkClient:
        """A persistent session (``clean``: a new one): a QoS 1 message it did not acknowledge would come again when
        it reconnects.
        """
        client = LinkClient(CallbackAPIVersion.VERSION2, client_id="direct", protocol=protocol,
                            clean_session=None if protocol == mqtt.MQTTv5 else False)
        client.on_sample = lambda topic, payload: direct.append((topic, payload))
        client.on_message = lambda c, userdata, message: through_paho.append((message.topic, message.payload, message.qos))
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        session = {"clean_start": clean, "properties": expiry()} if protocol == mqtt.MQTTv5 else {}
        client.connect("127.0.0.1", broker.port, **session)
        client.subscribe("direct/#", qos=2)
        client.loop_start()
        assert subscribed.wait(10)
        return client

    def expiry() -> Properties:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 300
        return properties

    def send(topic: str, payload: bytes, qos: int, properties: Properties | None = None) -> None:
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        publisher.publish(topic, payload, qos=qos, properties=properties).wait_for_publish(10)
        publisher.disconnect()
        publisher.loop_stop()

    client = subscriber(clean=True)
    try:
        for i in range(10):
            send("direct/s", f"{i}".encode(), qos=i % 2)
        send("direct/q2", b"two", qos=2)
        if protocol == mqtt.MQTTv5:
            tagged = Properties(PacketTypes.PUBLISH)
            tagged.UserProperty = ("line", "l1")
            send("direct/p", b"tagged", qos=1, properties=tagged)
        assert wait_for(lambda: len(direct) == 10 and len(through_paho) == (2 if protocol == mqtt.MQTTv5 else 1), 10)
        assert direct == [("direct/s", f"{i}".encode()) for i in range(10)]
        assert sorted(through_paho) == sorted([("direct/q2", b"two", 2)] + ([("direct/p", b"tagged", 1)] if protocol == mqtt.MQTTv5 else []))
        client.disconnect()
        client.loop_stop()
        client = subscriber(clean=False)  # the session resumes: every QoS 1 sample was acknowledged, none comes again
        send("direct/s", b"after", qos=1)
        assert wait_for(lambda: len(direct) == 11, 10)
        assert direct[10:] == [("direct/s", b"after")]
    finally:
        client.disconnect()
        client.loop_stop()
        broker.stop()
