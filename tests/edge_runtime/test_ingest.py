"""Ingest of one model: routing, per-stream records, reordering and rebinding, without a broker."""

import math

import numpy as np
import orjson
import pytest

from edge_runtime.config import InputConfig
from edge_runtime.contract.alarms import Alarm
from edge_runtime.contract.bundle import Bundle
from edge_runtime.ingest.badinput import BadInput
from edge_runtime.ingest.pipeline import Ingest
from edge_runtime.ingest.registry import StreamRegistry
from edge_runtime.ingest.router import Router


def bundle_of(features: list[str], window: int = 2) -> Bundle:
    """A bundle manifest with just the input spec (no artifacts)."""
    return Bundle(path=None, manifest={"input": {"window": window, "stride": 1, "features": [{"name": f} for f in features],
                                                 "sample_period": 1.0, "max_gap": 3.0}, "threshold": {"value": 1.0}})


def wire(bundle: Bundle, on_ready, bad: BadInput, reorder_s: float = 0.0, topic: str = "p/{m}", fmt: str = "json"):
    """A router in front of one model's ingest, as the runtime wires them."""
    streams = StreamRegistry(bundle, lambda: Alarm(2, 3, 3, 0.1), reorder_s)
    ingest = Ingest(bundle, streams, on_ready, bad, max_past_s=math.inf)  # the tests' sample times start at 1970
    return Router([(InputConfig(topic=topic, format=fmt), ingest)], bad), ingest


def test_reorder_tolerance_puts_late_samples_back_in_order():
    bundle = bundle_of(["a"], window=3)

    def run(reorder_s: float, times: list[float]) -> tuple[BadInput, list]:
        bad, windows = BadInput(), []
        router, ingest = wire(bundle, lambda s, a: windows.append(s.ring.window()[:, 0].tolist()), bad, reorder_s)
        for t in times:
            router.dispatch("p/m1", orjson.dumps({"ts": t, "a": t}), 0.0)
        ingest.flush()
        return bad, windows

    arrival_order = [1.0, 2.0, 4.0, 3.0, 5.0, 6.0, 3.5]
    bad, got = run(0.0, arrival_order)
    assert bad.counts["late"] == 2 and got == [[1.0, 2.0, 4.0], [2.0, 4.0, 5.0], [4.0, 5.0, 6.0]]
    bad, got = run(1.5, arrival_order)
    assert bad.counts["late"] == 1  # 3.5 arrives after 4.0 was released
    assert got == [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0], [4.0, 5.0, 6.0]]


def test_rebind_to_another_input_spec_drops_rows_held_for_reordering():
    windows = []
    router, ingest = wire(bundle_of(["a"]), lambda s, a: windows.append(s.ring.window().copy()), BadInput(), reorder_s=5.0)
    for t in (1.0, 2.0):
        router.dispatch("p/m1", orjson.dumps({"ts": t, "a": t}), 0.0)
    ingest.rebind(bundle_of(["a", "b"]), keep_streams=False)
    ingest.flush()  # nothing of the old layout may reach the new streams
    assert windows == [] and len(ingest.streams) == 0


def test_samples_held_for_reordering_are_released_when_their_stream_goes_quiet():
    windows = []
    router, ingest = wire(bundle_of(["a"], window=3), lambda s, a: windows.append(s.ring.window()[:, 0].tolist()), BadInput(), reorder_s=5.0)
    for t in (1.0, 2.0, 3.0):  # a machine trips after its third sample: nothing newer will push these out
        router.dispatch("p/m1", orjson.dumps({"ts": t, "a": t}), 100.0 + t)
    ingest.expire_held(105.9)
    assert windows == []  # the oldest has waited 4.9 s of the 5 s tolerance
    ingest.expire_held(106.0)
    assert windows == [[1.0, 2.0, 3.0]]


def test_a_tick_is_emitted_once_all_its_tags_are_in_not_a_period_later():
    from edge_runtime.ingest.alignment import TagAligner

    ticks = []
    aligner = TagAligner(3, 0.1, staleness=1.0, max_gap=1.0)
    start = 1_767_225_600.0  # 10 Hz, every tag stamped on the grid as a PLC publishes them
    for k in range(3):
        for feature in range(3):
            aligner.update(start + k * 0.1, feature, 10.0 * k + feature, lambda at, row, missing: ticks.append((at, row.tolist(), missing)))
            assert len(ticks) == (k + 1 if feature == 2 else k)  # the third tag completes the tick at once
    assert [t for t, _, _ in ticks] == pytest.approx([start, start + 0.1, start + 0.2])
    assert ticks[-1][1] == [20.0, 21.0, 22.0] and ticks[-1][2] == ()
    for feature in (0, 1):  # one tag of the next tick never comes: the tick waits for a newer message
        aligner.update(start + 0.3, feature, 1.0, lambda at, row, missing: ticks.append((at, row.tolist(), missing)))
    assert len(ticks) == 3
    aligner.update(start + 0.4, 0, 2.0, lambda at, row, missing: ticks.append((at, row.tolist(), missing)))
    assert ticks[-1][0] == pytest.approx(start + 0.3) and ticks[-1][1] == [1.0, 1.0, 22.0]  # the third tag held from the tick before


def test_tag_grid_steps_on_an_integer_index_and_jumps_over_silences():
    from edge_runtime.ingest.alignment import TagAligner

    ticks = []
    aligner = TagAligner(1, 0.001, staleness=0.01, max_gap=0.005)  # 1 kHz, epoch timestamps
    start = 1_767_225_600.0
    for k in range(20_000):  # 20 s of a tag at 1 kHz
        aligner.update(start + k * 0.001 + 0.0004, 0, float(k), lambda at, row, missing: ticks.append(at))
    # every tick between the first and the last message, on the grid to the microsecond: no drift
    assert len(ticks) == 19_999 and all(abs(at - (start + (k + 1) * 0.001)) < 1e-6 for k, at in enumerate(ticks))
    ticks.clear()
    aligner.update(start + 86_400.0, 0, 1.0, lambda at, row, missing: ticks.append(at))  # a day of silence
    assert len(ticks) == aligner.max_ticks + 1  # not 86 million iterations; + the message's own tick, complete (one tag)
    assert ticks[-1] == start + 86_400.0
    ticks.clear()
    ahead = aligner.tick
    # one message from a day back is a straggler: refused, the grid where it was
    assert not aligner.update(start + 20.0005, 0, 1.0, lambda at, row, missing: ticks.append(at))
    assert ticks == [] and aligner.tick == ahead
    # messages that keep to that older time line for longer than max_gap: the clock stepped back, the grid restarts there
    taken = [aligner.update(start + 20.0005 + k * 0.001, 0, 1.0, lambda at, row, missing: ticks.append(at)) for k in range(1, 8)]
    assert taken[:4] == [False] * 4 and taken[-2:] == [True, True]  # 5 ms of the older line is max_gap; 6 ms is more
    assert aligner.tick == math.ceil((start + 20.0005 + 7 * 0.001) / 0.001)


class SumBackend:
    """Inference stand-in for offline replay: a window's score is the sum of its values, so equal windows score equal."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    def infer(self, windows):
        """``(scores, None)``."""
        return windows.sum(axis=(1, 2)), None


def test_live_and_offline_scoring_keep_and_refuse_the_same_samples():
    """`run` (router and ingest) and `score`/`evaluate` (offline replay) build their streams by one recipe:
    too-fast and late samples are refused by both, and both see the same windows.
    """
    from edge_runtime.contract.tables import FileSeries
    from edge_runtime.scoring.offline import window_scores

    bundle = bundle_of(["a"], window=4)
    times = [float(t) for t in range(20)]
    times.insert(times.index(5.0) + 1, 5.2)  # 0.2 periods after 5.0: the sensor runs faster than the bundle's period
    times.insert(times.index(12.0) + 1, 12.4)  # too fast again
    times.insert(times.index(15.0) + 1, 13.5)  # late, within max_gap
    values = [t * 10 for t in times]

    bad, live = BadInput(), []
    router, _ = wire(bundle, lambda s, a: live.append(float(s.ring.window().sum())), bad)
    for t, v in zip(times, values):
        router.dispatch("p/m1", orjson.dumps({"ts": t, "a": v}), 0.0)

    series = FileSeries("m1", np.asarray(times), np.asarray(values, np.float32)[:, None])
    ends, offline, _ = window_scores(series, SumBackend(bundle))

    assert bad.counts["rate_mismatch"] == 2 and bad.counts["late"] == 1
    assert live == offline.tolist()
    assert len(offline) == 20 - 4 + 1  # the refused rows cost a sample each, never a window
    assert not {times.index(5.2), times.index(12.4), times.index(13.5)} & set(ends.tolist())
