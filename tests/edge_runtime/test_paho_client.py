"""The runtime's paho client: its read-ahead socket hands paho the bytes in order whatever the read sizes, a client
on it receives every message of a burst intact, small and larger than its buffer, and its ``on_publish`` tells a
QoS 0 write from a QoS 1 acknowledgement; samples without properties go straight to ``on_sample`` and are
acknowledged, the rest through paho's ``on_message``; against a real broker. Whole samples waiting in the buffer are
cut out of it in order, and the first packet that is anything else is left where it is for paho.
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


def test_fill_takes_one_chunk_and_leaves_the_buffer_empty_when_the_socket_has_nothing():
    left, right = socket.socketpair()
    right.setblocking(False)
    sock = ReadAheadSocket(right)
    sock.fill()  # nothing there: no exception, nothing buffered; paho's own read meets the same condition
    assert sock.pending() == 0
    left.sendall(b"abc")
    assert wait_for(lambda: sock.sock.recv(1, socket.MSG_PEEK) == b"a", 5)
    sock.fill()
    assert sock.pending() == 3 and sock.recv(2) == b"ab" and sock.recv(5) == b"c"
    left.close()
    right.close()


def test_a_read_larger_than_the_buffer_is_handed_over_whole():
    left, right = socket.socketpair()
    sock = ReadAheadSocket(right)
    left.sendall(b"xy")
    assert sock.recv(CHUNK * 2) == b"xy"  # what the socket gave fits the read: no copy through the buffer
    assert sock.pending() == 0
    left.close()
    right.close()


def varint(value: int) -> bytes:
    """MQTT's remaining-length encoding."""
    out = bytearray()
    while True:
        value, byte = value >> 7, value & 0x7F
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int = 0, mid: int = 0, properties: bytes | None = b"") -> bytes:
    """A PUBLISH packet as a broker sends it; ``properties`` None: MQTT 3.1.1 (no properties block)."""
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    body += b"" if properties is None else varint(len(properties)) + properties
    return bytes([0x30 | qos << 1]) + varint(len(body) + len(payload)) + body + payload


@pytest.fixture
def parser(monkeypatch):
    """A client that is not connected, its buffer filled by hand: (client, socket, samples, acknowledged ids)."""
    def make(protocol: int = mqtt.MQTTv5):
        client = LinkClient(CallbackAPIVersion.VERSION2, protocol=protocol)
        samples, acks = [], []
        client.on_sample = lambda topic, payload: samples.append((topic, payload))
        monkeypatch.setattr(client, "_send_puback", lambda mid: acks.append(mid))
        return client, ReadAheadSocket(None), samples, acks
    return make


def fill(sock: ReadAheadSocket, data: bytes) -> None:
    sock.buffer, sock.position = data, 0


def test_whole_samples_are_cut_from_the_buffer_up_to_the_first_other_packet(parser):
    client, sock, samples, acks = parser()
    medium, large = b"m" * 200, b"L" * 20_000  # remaining lengths of two and three bytes
    user_property = b"\x26" + (4).to_bytes(2, "big") + b"line" + (2).to_bytes(2, "big") + b"l1"
    head = publish(b"a/1", b"{}") + publish(b"a/2", medium, qos=1, mid=7) + publish(b"a/3", large) + publish(b"a/4", b"")
    fill(sock, head + publish(b"a/p", b"x", qos=1, mid=8, properties=user_property) + publish(b"a/5", b"y"))
    assert client._read_samples(sock, 64) == 4
    assert samples == [("a/1", b"{}"), ("a/2", medium), ("a/3", large), ("a/4", b"")]
    assert acks == [7]  # after its sample; QoS 0 ones need none
    assert sock.position == len(head)  # the packet with properties waits for paho, and so does everything after it

    client, sock, samples, _ = parser()
    fill(sock, publish(b"a/1", b"1") + publish(b"a/2", b"2"))
    assert client._read_samples(sock, 1) == 1 and samples == [("a/1", b"1")]  # no more than asked

    client, sock, samples, _ = parser(mqtt.MQTTv311)  # no properties block at all
    fill(sock, publish(b"a/1", b"1", properties=None) + publish(b"a/2", b"2", qos=1, mid=3, properties=None))
    assert client._read_samples(sock, 64) == 2 and samples == [("a/1", b"1"), ("a/2", b"2")]


@pytest.mark.parametrize("tail", [
    publish(b"a/2", b"more")[:-1],  # the payload not all in yet
    publish(b"a/2", b"L" * 20_000)[:2],  # the remaining length cut between its bytes
    publish(b"a/2", b"x", qos=2, mid=5),  # QoS 2: paho keeps its state
    publish(b"\xff\xfe", b"x"),  # a topic that is not UTF-8
    bytes([0x90, 3, 0, 1, 0]),  # a SUBACK
    bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),  # a remaining length longer than MQTT's four bytes
], ids=["partial payload", "partial length", "qos 2", "not utf-8", "other packet", "malformed length"])
def test_what_is_not_a_whole_sample_is_left_for_paho(parser, tail):
    client, sock, samples, _ = parser()
    first = publish(b"a/1", b"1")
    fill(sock, first + tail)
    assert client._read_samples(sock, 64) == 1
    assert samples == [("a/1", b"1")] and sock.position == len(first)


def test_nothing_is_cut_while_paho_is_inside_a_packet(parser):
    client, sock, samples, _ = parser()
    client._in_packet["command"] = 0x30  # paho has read a packet's first byte and waits for the rest
    fill(sock, publish(b"a/1", b"1"))
    assert client._read_samples(sock, 64) == 0 and samples == [] and sock.position == 0


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
