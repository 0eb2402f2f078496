"""Broker failover: when the broker a runtime is connected to dies, it moves to the next one configured; a failed
attempt's advice names the broker it tried.
"""

import logging
import re

import orjson
import pytest

from edge_runtime.config import BrokerConfig
from edge_runtime.contract.bundle import load_bundle
from edge_runtime.delivery.link import Link
from edge_runtime.runtime import Runtime
from helpers import runtime_config, wait_for
from mqtt_helpers import Collector, Mosquitto, client, free_port


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


def test_each_failed_attempt_names_the_broker_it_tried(caplog):
    first, second = free_port(), free_port()  # nothing listens on either
    config = BrokerConfig(port=first, client_id="lw-nowhere", failover=[f"127.0.0.1:{second}"], reconnect_min_s=0.5, reconnect_max_s=1.0)
    link = Link(config, [], "linewatch/lw-nowhere/status", {"state": "online"}, lambda *a: None, lambda: None, lambda *a: None)
    with caplog.at_level(logging.ERROR, logger="linewatch.mqtt"):
        link.start()
        try:
            assert wait_for(lambda: link.failures["connection_refused"] >= 2, 20), link.failures
        finally:
            link.stop()
    attempts = [re.match(r"cannot connect to (\S+): nothing accepts connections on (\S+):", r.getMessage()) for r in caplog.records]
    named = [(m.group(1), m.group(2)) for m in attempts if m]
    assert {tried for tried, _ in named} == {f"127.0.0.1:{first}", f"127.0.0.1:{second}"}
    assert all(tried == advised for tried, advised in named), named
