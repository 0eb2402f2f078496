"""Everything that grows is bounded: streams (with idle eviction), routes, and memory under a
publisher that mints a new machine id for every message.
"""

import tracemalloc

import orjson
import pytest

from edge_runtime.contract.alarms import Alarm
from edge_runtime.contract.bundle import load_bundle
from edge_runtime.ingest.decoders import BadSample
from edge_runtime.ingest.registry import StreamRegistry
from edge_runtime.runtime import Runtime
from helpers import FEATURES, runtime_config


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
    assert registry.evict_idle(60) == []  # the first sweep only notes what it saw
    now[0] = 30
    registry["a"].ring.push(2.0, [0.0] * len(FEATURES))  # a stays alive
    assert registry.evict_idle(60) == []
    now[0] = 61
    assert sorted(registry.evict_idle(60)) == ["b", "c"]  # b and c: quiet since the sweep at t=0
    assert sorted(state.key for state in registry) == ["a"] and registry.evicted == 2
    registry.get("d")  # room again
    now[0] = 200
    assert len(registry.evict_idle(60)) == 2 and len(registry) == 0


def test_quiet_streams_are_counted_until_they_are_evicted_and_never_evicted_at_zero(runtime_bundle):
    now = [0.0]
    registry = StreamRegistry(load_bundle(runtime_bundle), lambda: Alarm(2, 3, 3, 0.1), clock=lambda: now[0])
    for key in ("a", "b"):
        registry.get(key).ring.push(1.0, [0.0] * len(FEATURES))
    assert registry.evict_idle(0, quiet_s=10) == [] and registry.quiet == 0  # the first sweep notes what it saw
    now[0] = 5
    registry["a"].ring.push(2.0, [0.0] * len(FEATURES))
    registry.evict_idle(0, quiet_s=10)
    now[0] = 12
    assert registry.evict_idle(0, quiet_s=10) == [] and registry.quiet == 1  # b went quiet (moved away, or stopped); 0: kept
    now[0] = 16
    assert registry.evict_idle(0, quiet_s=10) == [] and registry.quiet == 2
    registry["b"].ring.push(2.0, [0.0] * len(FEATURES))  # b is back
    assert registry.evict_idle(30, quiet_s=10) == [] and registry.quiet == 1
    now[0] = 40
    assert registry.evict_idle(30, quiet_s=10) == ["a"] and registry.quiet == 1  # a evicted, no longer counted; b quiet


def test_samples_lost_upstream_show_as_counted_gaps(runtime_bundle):
    bundle = load_bundle(runtime_bundle)
    now = [0.0]
    registry = StreamRegistry(bundle, lambda: Alarm(2, 3, 3, 0.1), clock=lambda: now[0])
    ring, period = registry.get("a").ring, bundle.sample_period
    for k in (0, 1, 2, 5, 6, 7, 9):  # samples 3, 4 and 8 never arrived
        ring.push(1.7e9 + k * period, [0.0] * len(FEATURES))
    assert registry.gaps() == 2
    registry.evict_idle(1.0)  # the first sweep notes the stream's last sample, the next finds it quiet
    now[0] = 1.0
    registry.evict_idle(1.0)
    assert len(registry) == 0 and registry.gaps() == 2  # the count outlives the stream


@pytest.mark.slow
def test_commissioning_memory_stays_flat_as_stream_ids_churn(runtime_bundle, tmp_path):
    """100,000 stream ids, each scored while commissioning and then gone quiet: evicted streams take their learning
    (16 KB of scores each) with them.
    """
    from edge_runtime.ingest.badinput import BadInput
    from edge_runtime.metrics import Metrics
    from edge_runtime.scoring.model_runner import ModelRunner

    config = runtime_config(1883, runtime_bundle, tmp_path, max_streams=2000)
    config.models[0].commissioning.enabled = True
    runner = ModelRunner(config.models[0], config.runtime, sink=None, bad=BadInput(), metrics=Metrics())
    now = [0.0]
    runner.streams.clock = lambda: now[0]
    tracemalloc.start()
    try:
        for round_ in range(100):
            for k in range(1000):
                key = f"l1/m{round_}-{k}"
                runner.streams.get(key)
                assert runner.commissioning.threshold(key, 1.0, float(round_)) is None  # learning
            if round_ == 9:
                early, _ = tracemalloc.get_traced_memory()
            now[0] += 120.0
            assert runner.evict_idle(60.0) == 1000  # no sample for two minutes: gone
            assert len(runner.commissioning.learning) == 0 and len(runner.streams) == 0
        late, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        runner.backend.deactivate()
    assert late - early < 1_000_000, f"grew by {late - early} bytes over 90,000 more stream ids"


def test_learned_thresholds_stay_bounded_as_commissioned_stream_ids_churn(runtime_bundle, tmp_path):
    """Streams that finish commissioning keep what they learned, for at most max_streams of them: the longest-learned go."""
    from edge_runtime.ingest.badinput import BadInput
    from edge_runtime.metrics import Metrics
    from edge_runtime.scoring.model_runner import ModelRunner

    config = runtime_config(1883, runtime_bundle, tmp_path, max_streams=500)
    config.models[0].commissioning.enabled = True
    config.models[0].commissioning.min_windows = 2
    config.models[0].commissioning.period_s = 0.0
    runner = ModelRunner(config.models[0], config.runtime, sink=None, bad=BadInput(), metrics=Metrics())
    try:
        for k in range(2000):
            key = f"l1/m{k}"
            assert runner.commissioning.threshold(key, 1.0, 0.0) is None
            assert runner.commissioning.threshold(key, 2.0, 1.0) is not None  # learned
        learned = runner.commissioning.learned
        assert len(learned) == 500 and list(learned)[0] == "l1/m1500" and "l1/m1999" in learned
        assert runner.commissioning.completed == 2000 and not runner.commissioning.learning
    finally:
        runner.backend.deactivate()
