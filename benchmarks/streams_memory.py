"""Runtime memory at scale: RSS with 1,000 and 10,000 streams of one bundle, and after idle eviction.

Each count runs in its own process: a runtime (not connected; samples handed over as paho's thread
would) gets one window's worth of samples for every stream, then every stream goes quiet and is
evicted. Usage: ``python -m benchmarks.streams_memory BUNDLE [--streams 1000 10000]``. Writes
``results/streams_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

from benchmarks.common import write_results

CHILD = """
import gc, json, sys, time
import orjson
from edge_runtime.config import parse_config
from edge_runtime.runtime import Runtime

def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024

bundle, streams, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = parse_config({"runtime": {"outbox": folder + "/outbox.sqlite", "max_streams": max(streams, 1), "max_past_s": 1e10},
                       "models": [{"name": "m", "bundle": bundle, "inputs": [{"topic": "plant/{line}/{machine}/telemetry"}]}]})
runtime = Runtime(config)
runtime.accepting = True
model = runtime.models[0]
features, window = model.bundle.features, model.bundle.window
gc.collect()
base = rss()
start = time.time() - window - 10
for k in range(window):
    for i in range(streams):
        runtime._on_message(f"plant/l1/m{i}/telemetry", orjson.dumps({"ts": start + k, **{f: 1.0 + 0.001 * k for f in features}}), 0.0)
held = rss()
registry = model.streams
registry.evict_idle(0.0)
registry.evict_idle(0.0)
runtime.router.cache.clear()
gc.collect()
after = rss()
print(json.dumps({"streams": streams, "held": len(registry) + registry.evicted, "evicted": registry.evicted,
                  "rss_base_mb": round(base, 1), "rss_streams_mb": round(held, 1), "rss_after_eviction_mb": round(after, 1),
                  "per_stream_kb": round((held - base) * 1024 / max(streams, 1), 2)}))
"""


def main() -> None:
    """Measure each stream count in a fresh process; write results/streams_memory.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    runs = []
    for count in args.streams:
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([sys.executable, "-c", CHILD, args.bundle, str(count), folder], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    write_results("streams_memory", {"runs": runs}, ["streams", "RSS before MB", "RSS with streams MB", "per stream KB",
                                                      "RSS after eviction MB"],
                  [[r["streams"], r["rss_base_mb"], r["rss_streams_mb"], r["per_stream_kb"], r["rss_after_eviction_mb"]] for r in runs],
                  "One window of samples per stream through the runtime's message path (not connected), then every stream "
                  "evicted as idle. Python keeps freed memory for reuse, so RSS after eviction shows what the process holds, not a leak.")


if __name__ == "__main__":
    main()
