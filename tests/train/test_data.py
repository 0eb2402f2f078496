"""Reading tables, the gap rule and windows."""

import numpy as np
import pytest

pytest.importorskip("pandas")

from train.data import Series, hold_and_split, read_table  # noqa: E402
from train.errors import DataError  # noqa: E402
from train.windows import series_windows, window_view  # noqa: E402

SKAB_LIKE = (
    "datetime;Accelerometer1RMS;Current;anomaly;changepoint\n"
    + "".join(f"2020-03-09 10:14:{i:02d};0.02{i};1.3{i};{int(i > 50)};0.0\n" for i in range(60))
)


def test_semicolon_file_loads_with_labels_and_annotations_skipped(tmp_path):
    path = tmp_path / "1.csv"
    path.write_text(SKAB_LIKE)
    table = read_table(path)
    assert table.features == ["Accelerometer1RMS", "Current"]
    series = table.series[0]
    assert series.values.shape == (60, 2) and series.labels.sum() == 9
    assert np.allclose(np.diff(series.time), 1.0)


def test_parquet_and_series_column(tmp_path, plant_csv):
    import pandas as pd

    frame = pd.read_csv(plant_csv)
    frame.to_parquet(tmp_path / "p.parquet")
    table = read_table(tmp_path / "p.parquet", series_column="machine")
    assert [s.name for s in table.series] == ["m1", "m2"]
    assert table.features == ["current", "speed", "vibration", "bearing_temp", "pressure", "flow"]


@pytest.mark.parametrize(
    "content, kwargs, message",
    [
        ("time,a,b\n1,2,3\n", {"features": ["a", "c"]}, "missing feature column(s) ['c']"),
        ("time,a,b\n1,2,x\n2,3,4\n", {"features": ["a", "b"]}, "column 'b' has non-numeric value 'x' at row 2"),
        ("time,a,b\n1,,3\n2,,4\n", {}, "column 'a' has no values (all NaN)"),
        ("a,b\n1,2\n", {}, "no time column"),
        ("time,a\n1,2\n", {"time_column": "ts"}, "time column 'ts' not found"),
    ],
)
def test_bad_input_names_file_and_column(tmp_path, content, kwargs, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as error:
        read_table(path, **kwargs)
    assert str(path) in str(error.value) and message in str(error.value)


def test_gap_rule_holds_short_gaps_and_splits_long_ones():
    time = np.arange(20.0)
    time[15:] += 10  # a 11 s step before row 15
    values = np.arange(40, dtype=np.float32).reshape(20, 2)
    values[3, 0] = np.nan  # 1 s gap in a column: held
    values[8:12, 1] = np.nan  # 4 s gap in a column: rows 10, 11 too old to hold
    filled, segments = hold_and_split(time, values, max_gap=2.0)
    assert filled[3, 0] == values[2, 0] and filled[9, 1] == values[7, 1]
    assert segments == [slice(0, 10), slice(12, 15), slice(15, 20)]


def test_windows_are_views_and_never_span_gaps_or_labels():
    values = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    view = window_view(values, 5)
    assert view.shape == (26, 5, 3) and np.shares_memory(view, values)
    assert np.array_equal(view[7], values[7:12])
    time = np.arange(30.0)
    time[20:] += 100
    labels = np.zeros(30, np.int8)
    labels[10] = 1
    sw = series_windows(Series("s", time, values, labels), window=5, stride=2, max_gap=3.0, exclude_labelled=True)
    for start in sw.starts:
        rows = np.arange(start, start + 5)
        assert not labels[rows].any() and not ((rows < 20).any() and (rows >= 20).any())
    assert list(sw.starts) == [0, 2, 4, 11, 13, 15, 20, 22, 24]


def test_regime_plant_records_conditions_that_change_the_normal_relationships():
    from train.simulate import FEATURES, RECIPES, simulate_plant

    plain, _ = simulate_plant(machines=2, rows=3000, normal_rows=3000, faults_per_machine=0, seed=4)
    assert list(plain.columns) == ["time", "machine", *FEATURES, "label", "fault"]  # the default plant is unchanged
    frame, faults = simulate_plant(machines=2, rows=40_000, normal_rows=30_000, faults_per_machine=2, seed=4, regimes=True)
    assert list(frame.columns) == ["time", "machine", *FEATURES, "setpoint", "recipe", "label", "fault"] and len(faults) == 4
    normal = frame[frame.label == 0]
    for _, machine in normal.groupby("machine"):
        assert machine.recipe.nunique() >= 2 and set(machine.recipe) <= set(RECIPES)  # products change during normal operation
        assert set(np.round(machine.setpoint.unique().astype(float), 3)) <= {0.2, 0.6, 0.8, 1.0}
    steady = normal[normal.setpoint == 1.0].groupby("recipe")
    pressure, flow = steady.pressure.median(), steady.flow.median()
    assert pressure["B"] > pressure["A"] > pressure["C"]  # a denser product needs more head at the same set-point...
    assert flow["B"] < flow["A"] < flow["C"]  # ...and flows less per rpm
    assert np.array_equal(plain[FEATURES].to_numpy(), simulate_plant(2, 3000, 3000, 0, seed=4)[0][FEATURES].to_numpy())


def test_stream_windows_match_training_windows_under_the_same_gap_rule():
    from edge_runtime.ingest.streams import READY, Stream

    rng = np.random.default_rng(3)
    n, window, stride, max_gap = 400, 8, 3, 2.5
    time = np.cumsum(rng.choice([1.0, 1.0, 1.0, 2.0, 6.0], size=n, p=[0.6, 0.2, 0.1, 0.08, 0.02]))
    values = rng.normal(size=(n, 3)).astype(np.float32)
    values[rng.random((n, 3)) < 0.05] = np.nan
    expected = series_windows(Series("s", time, values), window, stride, max_gap)
    stream = Stream("s", window, stride, 3, max_gap)
    got_ends, got_windows = [], []
    for i in range(n):
        row = values[i].copy()
        missing = tuple(np.flatnonzero(np.isnan(row)).tolist())
        if stream.push(float(time[i]), row, missing) == READY:
            got_ends.append(i)
            got_windows.append(stream.window().copy())
    assert got_ends == expected.ends.tolist()
    np.testing.assert_array_equal(np.array(got_windows), expected.take())


def test_the_committed_test_data_is_the_simulators(tmp_path):
    """tests/data (made by tests/data/regenerate.py, used where there is no torch) still matches the simulator."""
    from helpers import FEATURES, TEST_DATA
    from train.simulate import FEATURES as SIMULATED
    from train.simulate import simulate_plant, write_table

    assert FEATURES == SIMULATED
    frame, _ = simulate_plant(machines=2, rows=3000, normal_rows=1500, faults_per_machine=2, seed=1)
    write_table(frame, str(tmp_path / "plant.csv"))
    assert (tmp_path / "plant.csv").read_bytes() == (TEST_DATA / "plant.csv").read_bytes()
