"""Everything that grows is bounded: streams (with idle eviction), routes, and memory under a
publisher that mints a new machine id for every message.
"""

import tracemalloc

import orjson
import pytest

pytest.importorskip("torch")  # the bundle is trained here

from edge_runtime.contract.alarms import Alarm  # noqa: E402
from edge_runtime.contract.bundle import load_bundle  # noqa: E402
from edge_runtime.ingest.decoders import BadSample  # noqa: E402
from edge_runtime.ingest.registry import StreamRegistry  # noqa: E402
from edge_runtime.runtime import Runtime  # noqa: E402
from helpers import runtime_config  # noqa: E402
from train.simulate import FEATURES  # noqa: E402


def test_ten_thousand_stream_ids_stay_within_max_streams_memory(runtime_bundle, tmp_path):
    runtime = Runtime(runtime_config(1883, runtime_bundle, tmp_path, max_streams=1000))  # never started: no broker needed
    runtime.accepting = True
    sample = orjson.dumps({"ts": 1.7e9, **{f: 1.0 for f in FEATURES}})

    def mint(first: int, last: int) -> None:
        for i in range(first, last):
            runtime._on_message(f"plant/l1/m{i}/telemetry", sample, 0.0)

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        mint(0, 1000)
        at_limit = tracemalloc.get_traced_memory()[0]
        mint(1000, 10_000)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    snap = runtime.snapshot()
    assert snap["models"]["pumps"]["streams"] == 1000
    assert snap["bad_input"]["stream_limit"] == 9000 and snap["accepted"] == 1000
    per_stream = (at_limit - base) / 1000
    assert after - at_limit < 64 * 1024, f"9,000 refused ids grew memory by {after - at_limit} bytes ({per_stream:.0f} bytes per held stream)"
    assert len(runtime.router.cache) == 1000  # routes of refused streams are not cached
    for model in runtime.models:
        model.backend.deactivate()
    runtime.outbox.close()


def test_idle_streams_are_evicted_and_make_room(runtime_bundle):
    now = [0.0]
    registry = StreamRegistry(load_bundle(runtime_bundle), lambda: Alarm(2, 3, 3, 0.1), max_streams=3, clock=lambda: now[0])
    for key in ("a", "b", "c"):
        registry.get(key).ring.push(1.0, [0.0] * len(FEATURES))
    with pytest.raises(BadSample, match="3 streams already"):
        registry.get("d")
    assert registry.evict_idle(60) == 0  # the first sweep only notes what it saw
    now[0] = 30
    registry["a"].ring.push(2.0, [0.0] * len(FEATURES))  # a stays alive
    assert registry.evict_idle(60) == 0
    now[0] = 61
    assert registry.evict_idle(60) == 2  # b and c: quiet since the sweep at t=0
    assert sorted(state.key for state in registry) == ["a"] and registry.evicted == 2
    registry.get("d")  # room again
    now[0] = 200
    assert registry.evict_idle(60) == 2 and len(registry) == 0


def test_samples_lost_upstream_show_as_counted_gaps(runtime_bundle):
    bundle = load_bundle(runtime_bundle)
    registry = StreamRegistry(bundle, lambda: Alarm(2, 3, 3, 0.1), clock=lambda: 0.0)
    ring, period = registry.get("a").ring, bundle.sample_period
    for k in (0, 1, 2, 5, 6, 7, 9):  # samples 3, 4 and 8 never arrived
        ring.push(1.7e9 + k * period, [0.0] * len(FEATURES))
    assert registry.gaps() == 2
    registry.evict_idle(0)  # the first sweep notes the stream's last sample, the next finds it quiet
    registry.evict_idle(0)
    assert len(registry) == 0 and registry.gaps() == 2  # the count outlives the stream
