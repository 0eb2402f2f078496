"""The naive peer of ``linewatch bench e2e``: what a textbook MQTT scorer looks like.

A paho callback decodes each JSON sample with the standard library, appends it to the machine's
``deque``, and when a window is due runs the model under torch eager on that one window and
publishes one event. No batching across machines, no preallocation. The model is the bundle's
``.pt2`` program (its graph runs op by op, as eager torch runs the original module). Usage::

    python -m benchmarks.naive_peer BUNDLE --port 1883
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict, deque
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
import torch
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.contract.bundle import load_bundle


def main() -> None:
    """Subscribe to ``plant/+/telemetry`` and publish one score event per window until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    model = torch.export.load(str(bundle.artifact_path("pt2", "fp32"))).module()
    features, window, stride = bundle.features, bundle.window, bundle.stride
    buffers: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))
    counts: dict[str, int] = defaultdict(int)

    def on_message(client, userdata, message) -> None:
        sample = json.loads(message.payload)
        machine = message.topic.split("/")[1]
        buffers[machine].append([sample[f] for f in features])
        counts[machine] += 1
        if counts[machine] >= window and (counts[machine] - window) % stride == 0:
            with torch.no_grad():
                score, _ = model(torch.tensor([list(buffers[machine])], dtype=torch.float32))
            end = datetime.fromtimestamp(sample["ts"], tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            client.publish(f"linewatch/events/{machine}", json.dumps({"kind": "score", "stream": machine, "window_end": end, "score": float(score[0])}))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="naive-peer", protocol=mqtt.MQTTv311)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("plant/+/telemetry")
    client.on_subscribe = lambda *_: print("subscribed", file=sys.stderr, flush=True)  # the harness waits for this line
    client.connect("127.0.0.1", args.port)
    client.loop_forever()


if __name__ == "__main__":
    main()
