"""Where the time goes between paho and the event: the cost of each stage of the runtime, measured alone.

Each stage is the runtime's own code on realistic inputs, timed in blocks (the median block's
mean per operation is reported, the blocks' spread beside it): paho receive and publish through
a mosquitto on loopback, JSON decode, the stream's ring buffer, the window copy into the pending
batch, ONNX Runtime per window (batch 1 and 64), the alarm decision, the event encode, and the
outbox write (one event per transaction and 16). Usage::

    python -m benchmarks.stages BUNDLE [--name stages]

Writes ``results/<name>.{json,md}`` (``--name`` keeps a second bundle's figures beside the first's).
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from benchmarks.common import write_results
from edge_runtime.contract.alarms import Alarm
from edge_runtime.contract.bundle import load_bundle
from edge_runtime.delivery.event_schema import make_event
from edge_runtime.delivery.link import no_delay
from edge_runtime.delivery.outbox import Outbox
from edge_runtime.ingest.decoders import FeatureLayout, decode_json
from edge_runtime.ingest.registry import StreamState
from edge_runtime.ingest.streams import Stream
from edge_runtime.scoring.backends import create_backend
from edge_runtime.scoring.batcher import Batcher
from linewatch import e2e


def per_op(run: Callable[[int], None], ops: int, blocks: int = 15) -> dict:
    """Microseconds per operation: ``run(n)`` does n operations; median and range over ``blocks`` blocks (after one warm-up)."""
    run(max(ops // 10, 1))
    means = []
    for _ in range(blocks):
        started = time.perf_counter_ns()
        run(ops)
        means.append((time.perf_counter_ns() - started) / ops / 1e3)
    return {"us": float(np.median(means)), "min_us": float(min(means)), "max_us": float(max(means))}


def paho_costs(bundle, messages: int = 20_000) -> dict:
    """Publish (caller side) and receive (a bare subscriber process) per message through mosquitto on loopback."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    values = e2e.sample_values(len(bundle.features))
    outgoing = e2e.payloads(e2e.Step("paho", "json", 10_000, 10, messages / 10_000), bundle.features, 1.0, 1.7e9, values)
    with e2e.LocalBroker() as broker:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.on_socket_open = no_delay
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        queue = iter(outgoing * 20)
        publish = per_op(lambda n: [client.publish(*next(queue)) for _ in range(n)], 1000, 10)
        client.disconnect()
        client.loop_stop()
        seen = e2e.receive_rate(broker.port, outgoing)
    rate = seen["receive_msg_per_s"]
    return {"publish": publish, "receive": {"us": 1e6 / rate, "min_us": 1e6 / rate, "max_us": 1e6 / rate, "received": seen["received"]}}


def sparkplug_costs(bundle, now: float) -> dict:
    """A Sparkplug B NDATA with every feature by alias: protobuf parse alone, the consumer (sequence, aliases, values,
    times), and the stream's aligner taking the sample.
    """
    from edge_runtime.ingest.alignment import TagAligner
    from edge_runtime.ingest.badinput import BadInput
    from edge_runtime.ingest.topics import parse_sparkplug
    from edge_runtime.sparkplug.codec import decode
    from edge_runtime.sparkplug.input import SparkplugInput

    step = e2e.Step("stages", "sparkplug", 1.0, 1, 256, 1, 0, len(bundle.features))
    nodes = e2e.edge_nodes(step, bundle.features)
    births = e2e.preamble(step, nodes)
    t0 = math.floor((now - 1e5) / bundle.sample_period) * bundle.sample_period
    data = e2e.payloads(step, bundle.features, bundle.sample_period, t0, e2e.sample_values(len(bundle.features)), nodes)  # seq 1..255, 0
    consumer, bad = SparkplugInput(FeatureLayout(bundle.features), None, lambda key: None), BadInput()
    for topic, body in births:
        consumer.take(parse_sparkplug(topic), body, now, (1e9, 60.0), bad)
    where = parse_sparkplug(data[0][0])
    bodies = [body for _, body in data]
    cycle = itertools.cycle(bodies)  # seq wraps 255 -> 0 as on the wire
    aligner = TagAligner(len(bundle.features), bundle.sample_period, 5.0, bundle.max_gap)
    clock = itertools.count()
    row = [0.5] * len(bundle.features)

    def align(n: int) -> None:
        for _ in range(n):
            aligner.update(t0 + next(clock) * bundle.sample_period, slice(None), row, lambda *sample: None)

    return {"decode (Sparkplug B NDATA, protobuf parse only)": per_op(lambda n: [decode(bodies[i & 255]) for i in range(n)], 20_000),
            "decode (Sparkplug B NDATA: parse, sequence, aliases, values)": per_op(
                lambda n: [consumer.take(where, next(cycle), now, (1e9, 60.0), bad) for _ in range(n)], 255 * 40),
            "grid aligner, a whole Sparkplug sample": per_op(align, 20_000)}


def measure(bundle_path: str) -> dict:
    """Every stage's cost per operation."""
    bundle = load_bundle(bundle_path)
    w, f = bundle.window, len(bundle.features)
    rng = np.random.default_rng(0)
    now = time.time()
    layout = FeatureLayout(bundle.features)
    payload = orjson.dumps({"ts": now - 10, **{name: float(v) for name, v in zip(bundle.features, rng.normal(size=f))}})
    stages = {}
    stages["decode (JSON sample)"] = per_op(lambda n: [decode_json(payload, layout, "ts", now, (1e9, 60.0)) for _ in range(n)], 20_000)
    stages.update(sparkplug_costs(bundle, now))

    stream = Stream("m1", w, bundle.stride, f, bundle.max_gap)
    row = rng.normal(size=f).astype(np.float32)
    clock = {"t": now - 1e6}

    def push(n: int) -> None:
        t = clock["t"]
        for i in range(n):
            stream.push(t + i * bundle.sample_period, row, ())
        clock["t"] = t + n * bundle.sample_period

    stages["stream push (ring buffer, readiness)"] = per_op(push, 20_000)
    batcher = Batcher(w, f, 64, 1_000_000, score=lambda batch, n: None)
    state = StreamState("m1", stream, None, Alarm(2, 3, 3, 0.1), now)

    def copy(n: int) -> None:
        batcher.pending.count = 0
        for _ in range(n):
            batcher.add(state, 0.0)

    stages["window copy into the pending batch"] = per_op(copy, 5_000)
    with create_backend(bundle, "onnxruntime") as backend:
        one = rng.normal(size=(1, w, f)).astype(np.float32)
        many = rng.normal(size=(64, w, f)).astype(np.float32)
        stages["inference per window, batch 1"] = per_op(lambda n: [backend.infer(one) for _ in range(n)], 2_000)
        per_batch = per_op(lambda n: [backend.infer(many) for _ in range(n)], 200)
        stages["inference per window, batch 64"] = {k: v / 64 for k, v in per_batch.items()}
    alarm = Alarm(2, 3, 3, 0.1)
    scores = rng.normal(size=4096).tolist()
    stages["alarm decision"] = per_op(lambda n: [alarm.update(scores[i & 4095], 0.5) for i in range(n)], 50_000)
    errors = rng.random(f).astype(np.float32)

    def encode(n: int) -> None:
        for _ in range(n):
            orjson.dumps(make_event("score", "m1", "model", "0123456789abcdef", (now - 50, now), 0.3, 0.5, bundle.features, errors, 0.001))

    stages["event encode (make_event + orjson)"] = per_op(encode, 5_000)
    event = orjson.dumps(make_event("alarm_raised", "m1", "model", "0123456789abcdef", (now - 50, now), 0.9, 0.5, bundle.features, errors, 0.001))
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.sqlite", max_rows=10_000_000, max_bytes=1 << 34)
        stages["outbox write, 1 event per transaction (FULL sync)"] = per_op(lambda n: [outbox.add_many([("t", event)]) for _ in range(n)], 200, 5)
        stages["outbox write, 16 per transaction, per event"] = {
            k: v / 16 for k, v in per_op(lambda n: [outbox.add_many([("t", event)] * 16) for _ in range(n)], 100, 5).items()}
        outbox.close()
    paho = paho_costs(bundle)
    stages["paho receive (bare subscriber, 1 / its rate)"] = paho["receive"]
    stages["paho publish QoS 0 (caller side)"] = paho["publish"]
    return {"bundle": bundle.name, "window": w, "features": f, "stages": stages}


def main() -> None:
    """Run and write results/<name>.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--name", default="stages", help="results file name")
    args = parser.parse_args()
    result = measure(args.bundle)
    rows = [[name, f"{s['us']:.2f}", f"{s['min_us']:.2f} - {s['max_us']:.2f}"] for name, s in result["stages"].items()]
    write_results(args.name, result, ["stage", "µs per operation (median block)", "blocks' range"], rows,
                  f"Bundle {result['bundle']}, window {result['window']} x {result['features']} features; the runtime's own functions timed alone, "
                  "one thread, nothing else loaded. Per message the runtime pays paho receive + decode + stream push; per window the "
                  "copy, inference, decision, encode and publish (alarm transitions also the outbox write). Command: "
                  f"`python -m benchmarks.stages BUNDLE --name {args.name}`.",
                  bundle_id=load_bundle(args.bundle).model_id)


if __name__ == "__main__":
    main()
