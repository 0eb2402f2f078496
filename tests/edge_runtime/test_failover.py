"""Broker failover: when the broker a runtime is connected to dies, it moves to the next one configured."""

import orjson
import pytest

from edge_runtime.contract.bundle import load_bundle
from edge_runtime.runtime import Runtime
from helpers import runtime_config, wait_for
from mqtt_helpers import Collector, Mosquitto, client


@pytest.mark.slow
def test_the_runtime_moves_to_the_next_broker_when_its_broker_dies(mosquitto_path, runtime_bundle, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Mosquitto(tmp_path / "a").start(), Mosquitto(tmp_path / "b").start()
    config = runtime_config(first.port, runtime_bundle, tmp_path, publish_scores=True)
    config.broker.failover = [f"127.0.0.1:{second.port}"]
    runtime = Runtime(config)
    runtime.start()
    collector = publisher = None
    try:
        assert runtime.link.wait_subscribed(10) and runtime.link.endpoint == 0
        first.stop()  # the broker dies
        assert wait_for(lambda: runtime.link.endpoint == 1 and runtime.link.subscribed.is_set(), 30), runtime.link.failures
        collector = Collector(second.port, "linewatch/#")
        publisher = client(second.port)
        features = load_bundle(runtime_bundle).features
        for i in range(40):
            publisher.publish("plant/l1/m1/telemetry", orjson.dumps({"ts": 1.7e9 + i, **dict.fromkeys(features, 1.0)}), qos=1)
        assert collector.wait_for(lambda c: c.events(), 20)  # scored and delivered through the second broker
        assert any(isinstance(b, dict) and b.get("state") == "online" for b in collector.on("linewatch/lw-test/status"))
    finally:
        if publisher is not None:
            publisher.loop_stop()
        if collector is not None:
            collector.close()
        runtime.stop()
        second.stop()
