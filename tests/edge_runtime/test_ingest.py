"""Ingest of one model: routing, per-stream records, reordering and rebinding, without a broker."""

import orjson

from edge_runtime.alarms import Alarm
from edge_runtime.badinput import BadInput
from edge_runtime.bundle import Bundle
from edge_runtime.config import InputConfig
from edge_runtime.ingest import Ingest
from edge_runtime.registry import StreamRegistry
from edge_runtime.router import Router


def bundle_of(features: list[str], window: int = 2) -> Bundle:
    """A bundle manifest with just the input spec (no artifacts)."""
    return Bundle(path=None, manifest={"input": {"window": window, "stride": 1, "features": [{"name": f} for f in features],
                                                 "sample_period": 1.0, "max_gap": 3.0}, "threshold": {"value": 1.0}})


def wire(bundle: Bundle, on_ready, bad: BadInput, reorder_s: float = 0.0, topic: str = "p/{m}", fmt: str = "json"):
    """A router in front of one model's ingest, as the runtime wires them."""
    streams = StreamRegistry(bundle, lambda: Alarm(2, 3, 3, 0.1), reorder_s)
    ingest = Ingest(bundle, streams, on_ready, bad)
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

    arrival_order = [1.0, 2.0, 4.0, 3.0, 5.0, 6.0, 2.5]
    bad, got = run(0.0, arrival_order)
    assert bad.counts["late"] == 2 and got == [[1.0, 2.0, 4.0], [2.0, 4.0, 5.0], [4.0, 5.0, 6.0]]
    bad, got = run(1.5, arrival_order)
    assert bad.counts["late"] == 1  # 2.5 arrives after 3.0 was released
    assert got == [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0], [4.0, 5.0, 6.0]]


def test_rebind_to_another_input_spec_drops_rows_held_for_reordering():
    windows = []
    router, ingest = wire(bundle_of(["a"]), lambda s, a: windows.append(s.ring.window().copy()), BadInput(), reorder_s=5.0)
    for t in (1.0, 2.0):
        router.dispatch("p/m1", orjson.dumps({"ts": t, "a": t}), 0.0)
    ingest.rebind(bundle_of(["a", "b"]), keep_streams=False)
    ingest.flush()  # nothing of the old layout may reach the new streams
    assert windows == [] and len(ingest.streams) == 0
