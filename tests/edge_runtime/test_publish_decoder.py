"""The runtime's MQTT 5 PUBLISH decoder gives what paho's gives, for packets with and without properties."""

import struct

import orjson
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_runtime.delivery import publish_decoder
from edge_runtime.runtime import Runtime
from helpers import FEATURES, runtime_config, wait_for
from mqtt_helpers import Mosquitto

PAYLOAD = orjson.dumps({"ts": 1.7e9, "temp": 1.5})


def packet(topic: bytes, qos: int, properties: Properties | None, payload: bytes = PAYLOAD) -> tuple[int, bytes]:
    """A PUBLISH's first header byte and the bytes after its remaining length, as paho reads them off the socket."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", 4711) if qos else b"")
    body += properties.pack() if properties is not None else b"\x00"
    return 0x30 | (qos << 1) | 0x01, body + payload  # retain set, to see the flag come through


def with_properties() -> Properties:
    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = "application/json"
    properties.UserProperty = ("line", "l1")
    properties.MessageExpiryInterval = 60
    return properties


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("properties", [None, "some"], ids=["none", "some"])
@pytest.mark.parametrize("payload", [PAYLOAD, b""], ids=["payload", "empty"])
def test_the_decoder_gives_what_pahos_gives(qos, properties, payload):
    header, body = packet(b"plant/l1/m1/telemetry", qos, with_properties() if properties else None, payload)
    for raw in (body, bytearray(body)):
        ours = publish_decoder.decode_publish(header, raw, MQTTProtocolVersion.MQTTv5)
        theirs = publish_decoder.paho_decode_publish(header, raw, MQTTProtocolVersion.MQTTv5)
        assert ours._replace(properties=None) == theirs._replace(properties=None)
        assert ours.properties.json() == theirs.properties.json()
        assert type(ours.topic) is bytes and type(ours.payload) is bytes
    assert (ours.properties is publish_decoder.NO_PROPERTIES) == (properties is None)


def test_a_packet_too_short_fails_as_it_does_in_paho():
    with pytest.raises(Exception) as ours:
        publish_decoder.decode_publish(0x32, b"\x00\x05ab", MQTTProtocolVersion.MQTTv5)
    with pytest.raises(Exception) as theirs:
        publish_decoder.paho_decode_publish(0x32, b"\x00\x05ab", MQTTProtocolVersion.MQTTv5)
    assert type(ours.value) is type(theirs.value)


def test_shared_empty_properties_cannot_be_changed():
    with pytest.raises(AttributeError, match="read-only"):
        publish_decoder.NO_PROPERTIES.ContentType = "text/plain"
    assert publish_decoder.NO_PROPERTIES.json() == {}


def test_an_mqtt5_runtime_decodes_with_it_and_takes_samples_with_and_without_properties(mosquitto_path, runtime_bundle, tmp_path):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    broker = Mosquitto(tmp_path).start()
    config = runtime_config(broker.port, runtime_bundle, tmp_path)
    config.broker.protocol = "5"
    runtime = Runtime(config)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        runtime.start()
        assert runtime.link.wait_subscribed(10)
        assert _packet.decode_publish is publish_decoder.decode_publish
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        for i in range(20):
            sample = orjson.dumps({"ts": 1.7e9 + i, **{f: 1.0 for f in FEATURES}})
            publisher.publish("plant/l1/m1/telemetry", sample, qos=1, properties=with_properties() if i % 2 else None)
        assert wait_for(lambda: runtime.snapshot()["accepted"] == 20, 10), runtime.snapshot()
    finally:
        publisher.loop_stop()
        runtime.stop()
        broker.stop()
