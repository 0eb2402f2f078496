"""Fixtures of the reliability suite: a sample stream whose alarms flap, so that one run makes
hundreds of alarm transitions (durable events), and a way to wait until it is all scored.
"""

from __future__ import annotations

import orjson
import pytest

FLAP_ROWS = 25  # rows per block; every other block is scaled up, far from normal


@pytest.fixture(scope="session")
def flapping(plant_csv):
    """``(payloads, windows)``: JSON samples of 8 machines, time-ordered, whose scores cross the threshold
    every ``FLAP_ROWS`` rows, and the number of windows they make.
    """
    import pandas as pd

    from helpers import FEATURES

    frame = pd.read_csv(plant_csv)
    normal = frame[(frame.machine == frame.machine.iloc[0]) & (frame.label == 0)].head(1500)
    values = normal[FEATURES].to_numpy()
    times = (pd.to_datetime(normal["time"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    payloads = []
    for i, (t, row) in enumerate(zip(times, values)):
        scale = 6.0 if (i // FLAP_ROWS) % 2 else 1.0
        for machine in range(8):
            sample = {"ts": float(t), **{f: float(v) * scale for f, v in zip(FEATURES, row)}}
            payloads.append((f"plant/l1/m{machine}/telemetry", orjson.dumps(sample)))
    windows = 8 * ((len(values) - 20) // 5 + 1)
    return payloads, windows
