"""Property-based fuzzing (hypothesis) of the door: each decoder alone, and whole messages through
the runtime's message path. ``LINEWATCH_FUZZ_EXAMPLES`` sets the examples per property (CI runs
the default; ``python -m benchmarks.fuzz`` runs 100,000).

What must hold for any input: a decoder either refuses with a known kind or returns a sample that
is finite, within float32 and stamped inside the window; the runtime stays up; every message is
either accepted or refused under exactly one kind; and good messages interleaved with bad ones
make exactly the windows they make alone.
"""

import math
import os

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.config import InputConfig
from edge_runtime.contract.alarms import Alarm
from edge_runtime.contract.bundle import Bundle
from edge_runtime.delivery.event_schema import F32_MAX
from edge_runtime.ingest.badinput import KINDS, NOTES, BadInput
from edge_runtime.ingest.decoders import BadSample, FeatureLayout, decode_chunk, decode_json, decode_tag
from edge_runtime.ingest.pipeline import Ingest
from edge_runtime.ingest.registry import StreamRegistry
from edge_runtime.ingest.router import Router
from helpers import IN_CI

EXAMPLES = int(os.environ.get("LINEWATCH_FUZZ_EXAMPLES", "3400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=IN_CI, suppress_health_check=[HealthCheck.too_slow])
FEATURES = ["a", "b", "c"]
LAYOUT = FeatureLayout(FEATURES)
NOW = 1_767_225_600.0
WINDOW = (86_400.0, 60.0)

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                    st.sampled_from([0.0, -0.0, 1e20, 1e39, -1e39, F32_MAX, 3.5e38, 5e-324]))
times = st.one_of(st.none(), numbers, st.floats(min_value=NOW - 2 * 86400, max_value=NOW + 120),
                  st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01 00:00:00", "noon", "", "1767225600", "nan", "inf"]),
                  st.booleans(), st.lists(st.integers(min_value=-9, max_value=9), max_size=2))
values = st.one_of(numbers, st.none(), st.booleans(), st.text(max_size=5), st.lists(numbers, max_size=3),
                   st.dictionaries(st.text(max_size=3), numbers, max_size=2))
json_objects = st.fixed_dictionaries({}, optional={"ts": times, "a": values, "b": values, "c": values, "values": values, "x": values})
beyond_float64 = st.sampled_from([b'{"ts": 1767225600, "a": 123456789012345678901234567890}', b'{"a": 1e999}'])
payloads = st.one_of(json_objects.map(orjson.dumps), st.binary(max_size=40), beyond_float64,
                     st.recursive(st.none() | st.booleans() | numbers.filter(math.isfinite) | st.text(max_size=4),
                                  lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                                  max_leaves=8).map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)))


def check_time_in_window(t: float) -> None:
    assert math.isfinite(t) and -WINDOW[0] <= t - NOW <= WINDOW[1]


@pytest.mark.slow
@FUZZ
@given(payloads)
def test_json_decoder_refuses_by_kind_or_returns_a_clean_sample(payload):
    try:
        t, row, missing, notes = decode_json(payload, LAYOUT, "ts", NOW, WINDOW)
    except BadSample as refused:
        assert refused.reason in KINDS
        return
    check_time_in_window(t)
    assert len(row) == len(FEATURES) and all(type(v) in (int, float) and abs(v) <= F32_MAX for v in row)
    assert all(0 <= j < len(FEATURES) for j in missing) and len(missing) < len(FEATURES)
    assert all(kind in NOTES for kind, _ in notes)


@pytest.mark.slow
@FUZZ
@given(st.one_of(payloads, st.fixed_dictionaries({"value": values}, optional={"ts": times}).map(orjson.dumps), numbers.map(orjson.dumps)))
def test_tag_decoder_refuses_by_kind_or_returns_a_clean_value(payload):
    try:
        t, value = decode_tag(payload, "ts", NOW, WINDOW)
    except BadSample as refused:
        assert refused.reason in KINDS
        return
    check_time_in_window(t)
    assert math.isfinite(value) and abs(value) <= F32_MAX


chunks = st.fixed_dictionaries({}, optional={"t0": times, "dt": st.one_of(numbers, st.just(1.0), st.text(max_size=3)),
                                             "values": st.one_of(values, st.lists(st.lists(numbers, min_size=0, max_size=4), max_size=4))})


@pytest.mark.slow
@FUZZ
@given(st.one_of(payloads, chunks.map(lambda c: orjson.dumps(c, option=orjson.OPT_SERIALIZE_NUMPY))))
def test_chunk_decoder_refuses_by_kind_or_returns_clean_rows(payload):
    try:
        t0, dt, rows = decode_chunk(payload, len(FEATURES), 1.0, NOW, WINDOW)
    except BadSample as refused:
        assert refused.reason in KINDS
        return
    check_time_in_window(t0)
    check_time_in_window(t0 + dt * (len(rows) - 1))
    assert abs(dt - 1.0) <= 0.01 and rows.shape[1] == len(FEATURES) and len(rows) >= 1
    assert bool((abs(rows) <= F32_MAX).all())


def bundle() -> Bundle:
    return Bundle(path=None, manifest={"input": {"window": 4, "stride": 2, "features": [{"name": f} for f in FEATURES],
                                                 "sample_period": 1.0, "max_gap": 3.0}, "threshold": {"value": 1.0}})


def run(messages: list[tuple[str, bytes]]):
    """Feed messages through the router and ingest; per message: did it count exactly once? And the windows made."""
    bad, windows = BadInput(), []
    b = bundle()
    ingest = Ingest(b, StreamRegistry(b, lambda: Alarm(2, 3, 3, 0.1), max_streams=50),
                    lambda state, arrival: windows.append((state.key, state.ring.window().tolist())), bad, max_past_s=math.inf)
    router = Router([(InputConfig(topic="plant/{line}/{machine}/telemetry"), ingest)], bad)
    once = []
    for topic, payload in messages:
        before = ingest.accepted + sum(bad.counts.values())
        router.dispatch(topic, payload, 0.0)
        once.append(ingest.accepted + sum(bad.counts.values()) - before)
    return once, windows


GOOD = [("plant/l1/m1/telemetry", orjson.dumps({"ts": 1000.0 + i, "a": float(i), "b": 1.0, "c": -1.0})) for i in range(30)]
topics = st.one_of(st.sampled_from(["plant/l1/m2/telemetry", "plant/l2/m3/telemetry", "plant/x/telemetry", "other", "plant/l1/m1/status"]),
                   st.text(max_size=12))


@settings(max_examples=max(50, EXAMPLES // 25), deadline=None, derandomize=IN_CI, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(GOOD)), topics, payloads), max_size=40))
def test_whole_messages_count_once_and_never_cost_another_stream_a_window(bad_messages):
    messages = list(GOOD)
    for position, topic, payload in sorted(bad_messages, key=lambda m: -m[0]):
        messages.insert(position, (topic, payload))
    once, windows = run(messages)
    assert once == [1] * len(messages)  # accepted, or refused under exactly one kind
    alone = run(GOOD)[1]
    assert [w for w in windows if w[0] == "l1/m1"] == alone  # the good stream made exactly the windows it makes alone
