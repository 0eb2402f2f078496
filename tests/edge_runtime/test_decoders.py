"""The pure decoders: every rule at the door, without streams, topics or MQTT."""

import math

import orjson
import pytest

from edge_runtime.contract.tables import find_time_column, read_csv, sniff_delimiter
from edge_runtime.contract.timeparse import to_seconds
from edge_runtime.ingest.decoders import BadSample, FeatureLayout, check_time, decode_chunk, decode_json, decode_tag

LAYOUT = FeatureLayout(["a", "b"])
NOW = 1_700_000_000.0
WINDOW = (86400.0, 60.0)  # sample times from a day behind to a minute ahead of the receive time


def json_sample(payload: dict):
    return decode_json(orjson.dumps(payload), LAYOUT, "ts", NOW, WINDOW)


def test_json_sample_flat_nested_and_with_missing_or_unknown_features():
    assert json_sample({"ts": NOW, "a": 1.0, "b": 2}) == (NOW, [1.0, 2], (), ())
    assert json_sample({"ts": NOW, "values": {"a": 1.0, "b": 2.0}}) == (NOW, [1.0, 2.0], (), ())
    t, row, missing, notes = json_sample({"ts": NOW, "a": 1.0, "b": None, "c": 3.0})
    assert (row, missing) == ([1.0, 0.0], (1,))
    assert notes == (("unknown_feature", "1 key(s) not in the bundle's features"), ("missing_feature", "b"))
    assert json_sample({"a": 1.0, "b": 2.0})[0] == NOW  # no timestamp: the receive time
    assert json_sample({"ts": "2023-11-14T22:13:20Z", "a": 1.0, "b": 2.0})[0] == NOW


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "malformed_json"),
    (b"[1, 2]", "wrong_type"),
    (b'{"ts": 1.7e9, "values": [1, 2]}', "wrong_type"),
    (b'{"ts": 1.7e9, "a": "1.0", "b": 2}', "wrong_type"),
    (b'{"ts": 1.7e9, "a": true, "b": 2}', "wrong_type"),
    (b'{"ts": 1.7e9, "a": 1e999, "b": 2}', "malformed_json"),  # orjson refuses numbers beyond float64
    (b'{"ts": 1.7e9, "a": NaN, "b": 2}', "malformed_json"),
    (b'{"ts": 1.7e9, "c": 1}', "missing_feature"),
    (b'{"ts": "yesterday", "a": 1, "b": 2}', "wrong_type"),
    (b'{"ts": 1.8e9, "a": 1, "b": 2}', "future_timestamp"),
    (b'{"ts": -1e12, "a": 1, "b": 2}', "past_timestamp"),  # once made event encoding fail for a whole batch
    (b'{"ts": 1699900000.0, "a": 1, "b": 2}', "past_timestamp"),
    (b'{"ts": 1.7e9, "a": 1e39, "b": 2}', "out_of_range"),  # inf in the model's float32 input
    (b'{"ts": 1.7e9, "a": 1, "b": -3.5e38}', "out_of_range"),
])
def test_json_refusals_name_their_bad_input_kind(payload, reason):
    with pytest.raises(BadSample) as refused:
        decode_json(payload, LAYOUT, "ts", NOW, WINDOW)
    assert refused.value.reason == reason


def test_tag_and_chunk_decoders():
    assert decode_tag(b"3.5", "ts", NOW, WINDOW) == (NOW, 3.5)
    assert decode_tag(b'{"value": 2, "ts": 1699999999.0}', "ts", NOW, WINDOW) == (1699999999.0, 2.0)
    for tag, reason in ((b'"high"', "wrong_type"), (b"1e39", "out_of_range"), (b'{"value": 1, "ts": -1e12}', "past_timestamp")):
        with pytest.raises(BadSample) as refused:
            decode_tag(tag, "ts", NOW, WINDOW)
        assert refused.value.reason == reason
    t0, dt, rows = decode_chunk(orjson.dumps({"t0": NOW - 10, "dt": 1.0, "values": [[1, 2], [3, 4]]}), 2, 1.0, NOW, WINDOW)
    assert (t0, dt, rows.tolist()) == (NOW - 10, 1.0, [[1.0, 2.0], [3.0, 4.0]])
    for chunk, reason in (({"t0": NOW, "dt": 0.5, "values": [[1, 2]]}, "dt_mismatch"),
                          ({"t0": NOW, "dt": "nan", "values": [[1, 2]]}, "wrong_type"),
                          ({"t0": NOW, "dt": -1.0, "values": [[1, 2]]}, "dt_mismatch"),
                          ({"t0": NOW, "dt": 1.0, "values": []}, "wrong_type"),
                          ({"t0": NOW, "dt": 1.0, "values": [[1, 1e39]]}, "out_of_range"),
                          ({"t0": NOW, "dt": 1.0, "values": [[1, None]]}, "non_finite"),
                          ({"t0": NOW + 59, "dt": 1.0, "values": [[1, 2]] * 5}, "future_timestamp"),
                          ({"t0": -1e12, "dt": 1.0, "values": [[1, 2]]}, "past_timestamp"),
                          ([1, 2], "wrong_type"),
                          ({"t0": NOW, "dt": 1.0, "values": [[1, 2, 3]]}, "wrong_type"),
                          ({"t0": NOW, "dt": 1.0}, "wrong_type")):
        with pytest.raises(BadSample) as refused:
            decode_chunk(orjson.dumps(chunk), 2, 1.0, NOW, WINDOW)
        assert refused.value.reason == reason


def test_one_time_rule_for_payloads_files_and_training():
    assert to_seconds(12) == 12.0 and to_seconds(" 12.5 ") == 12.5
    assert to_seconds("1970-01-01T00:01:00") == 60.0 == to_seconds("1970-01-01 00:01:00Z") == to_seconds("1970-01-01T01:01:00+01:00")
    for bad in ("noon", True, None, [1], float("nan"), "inf"):
        with pytest.raises(ValueError):
            to_seconds(bad)
    assert check_time(None, NOW, WINDOW) == NOW
    assert math.isclose(check_time(NOW + 59, NOW, WINDOW), NOW + 59)


def test_csv_rules_shared_with_training(tmp_path):
    assert sniff_delimiter("datetime;a;b") == ";" and sniff_delimiter("time,a;b,c") == ","
    assert find_time_column(["Value", "DateTime"]) == "DateTime" and find_time_column(["a"]) is None
    path = tmp_path / "m.csv"
    path.write_text("datetime;a;b\n2020-03-09 10:14:35;2;\n2020-03-09 10:14:34;1;5\n")
    [series] = read_csv(path, ["a", "b"])
    assert series.time.tolist() == [to_seconds("2020-03-09 10:14:34"), to_seconds("2020-03-09 10:14:35")]
    assert series.values[0].tolist() == [1.0, 5.0] and math.isnan(series.values[1, 1])
