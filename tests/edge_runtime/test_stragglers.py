"""A late sample costs one sample, never the stream; a clock that really stepped back restarts it, confirmed.

The scenario: two streams of the same 300 samples at a 1 s period (historical times). On the second,
every 40th sample arrives 10 samples late (QoS 1 redelivery, a buffering sensor, a second publisher);
the rest in order. A third stream's clock is reset halfway and stays on the new time line.
"""

from __future__ import annotations

import math
from collections import Counter

import orjson
import pytest

from edge_runtime.config import InputConfig
from edge_runtime.contract.alarms import Alarm
from edge_runtime.contract.bundle import Bundle
from edge_runtime.ingest.badinput import BadInput
from edge_runtime.ingest.pipeline import Ingest
from edge_runtime.ingest.registry import StreamRegistry
from edge_runtime.ingest.router import Router
from helpers import runtime_config, wait_for
from mqtt_helpers import Collector, client

T0 = 1_767_225_600.0  # 2026-01-01: historical sample times
N = 300


def in_order() -> list[float]:
    return [T0 + i for i in range(N)]


def with_stragglers() -> list[float]:
    """Every 40th sample 10 samples late."""
    times, late = [], []
    for i in range(N):
        if i % 40 == 39:
            late.append((i + 10, T0 + i))
        else:
            times.append(T0 + i)
        times += [t for due, t in late if due == i]
        late = [(due, t) for due, t in late if due != i]
    return times + [t for _, t in late]


def clock_reset() -> list[float]:
    """Halfway the sensor's clock goes back an hour and stays on the new time line."""
    return [T0 + i if i < N // 2 else T0 - 3600 + i for i in range(N)]


def bundle_of(window: int = 50, stride: int = 10) -> Bundle:
    return Bundle(path=None, manifest={"input": {"window": window, "stride": stride, "features": [{"name": "a"}, {"name": "b"}],
                                                 "sample_period": 1.0, "max_gap": 3.0}, "threshold": {"value": 1.0}})


def payloads(fmt: str, machine: str, times: list[float]) -> list[tuple[str, bytes]]:
    if fmt == "json":
        return [(f"p/{machine}", orjson.dumps({"ts": t, "a": 1.0, "b": 2.0})) for t in times]
    if fmt == "tag":
        return [(f"p/{machine}/{tag}", orjson.dumps({"ts": t, "value": 1.0})) for t in times for tag in ("a", "b")]
    return [(f"p/{machine}", orjson.dumps({"t0": t, "dt": 1.0, "values": [[1.0, 2.0]]})) for t in times]  # chunks of one sample


@pytest.mark.parametrize("reorder_s", [0.0, 5.0])
@pytest.mark.parametrize("fmt", ["json", "tag", "chunk"])
def test_stragglers_cost_a_sample_and_a_reset_clock_is_followed(fmt, reorder_s):
    bundle, bad, windows = bundle_of(), BadInput(), Counter()
    streams = StreamRegistry(bundle, lambda: Alarm(2, 3, 3, 0.1), reorder_s)
    ingest = Ingest(bundle, streams, lambda state, arrival: windows.update([state.key]), bad, max_past_s=math.inf)
    topic = "p/{machine}/{tag}" if fmt == "tag" else "p/{machine}"
    router = Router([(InputConfig(topic=topic, format=fmt), ingest)], bad)
    for machine, times in (("steady", in_order()), ("straggling", with_stragglers()), ("reset", clock_reset())):
        for topic_, payload in payloads(fmt, machine, times):
            router.dispatch(topic_, payload, 0.0)
    ingest.flush()
    expected = (N - 50) // 10 + 1
    assert windows["steady"] == expected
    # the stragglers are refused, each costing its one sample (and the windows that sample would have completed)
    assert windows["straggling"] >= expected - 2 and bad.counts["late"] >= 1
    assert streams["straggling"].ring.clock_steps == 0 and streams["steady"].ring.clock_steps == 0
    if fmt != "tag":  # a tag stream's grid restarts itself; the samples it emits never step back
        assert streams["reset"].ring.clock_steps == 1 and bad.notes["clock_step"] >= 1
    # after the reset the stream restarts on the new time line: windows on both sides of it
    assert windows["reset"] >= 2 * ((N // 2 - 50) // 10 + 1) - 2


@pytest.mark.parametrize("reorder_s", [0.0, pytest.param(5.0, marks=pytest.mark.slow)])
def test_stragglers_through_mosquitto(broker, runtime_bundle, tmp_path, reorder_s):
    """The scenario end to end: a straggling stream keeps its windows, a reset clock is followed."""
    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.runtime import Runtime

    bundle = load_bundle(runtime_bundle)
    config = runtime_config(broker.port, runtime_bundle, tmp_path, reorder_s=reorder_s, publish_scores=True)
    runtime = Runtime(config)
    collector = Collector(broker.port, "linewatch/events/#")
    publisher = client(broker.port)
    runtime.start()
    try:
        assert runtime.link.wait_subscribed(10)
        sent = 0
        for machine, times in (("steady", in_order()), ("straggling", with_stragglers()), ("reset", clock_reset())):
            for t in times:
                sample = {"ts": t, **{f: 1.0 for f in bundle.features}}
                publisher.publish(f"plant/l1/{machine}/telemetry", orjson.dumps(sample), qos=1)
                sent += 1
        taken = lambda: runtime.snapshot()["accepted"] + sum(runtime.snapshot()["bad_input"].values())  # noqa: E731
        assert wait_for(lambda: taken() >= sent, 30), runtime.snapshot()
        runtime.models[0].ingest.flush()
        scored = runtime.snapshot()["models"]["pumps"]["scored"]
        # every scored window publishes an event: its score, or the alarm or drift transition it made
        windows = lambda: {(e["stream"], e["window_end"]) for e in collector.events()}  # noqa: E731
        assert wait_for(lambda: len(windows()) >= scored, 20), (scored, len(windows()), runtime.snapshot())
    finally:
        publisher.loop_stop()
        runtime.stop()
        collector.close()
    per_stream = Counter(stream for stream, _ in windows())
    steady = per_stream["l1/steady"]
    assert steady == (N - bundle.window) // bundle.stride + 1
    assert per_stream["l1/straggling"] >= steady - 2
    assert per_stream["l1/reset"] >= 2 * ((N // 2 - bundle.window) // bundle.stride + 1) - 2
    assert runtime.snapshot()["notes"].get("clock_step") == 1
