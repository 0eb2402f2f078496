import json

import pytest
from click.testing import CliRunner

pytest.importorskip("hdrh", reason="needs hdrhistogram (the bench extra)")
pytestmark = pytest.mark.slow  # each drives a whole benchmark through mosquitto

from linewatch.cli import main  # noqa: E402


def test_bench_e2e_accounts_for_every_window_of_every_format(mosquitto_path, runtime_bundle, tmp_path):
    out = tmp_path / "e2e"
    result = CliRunner().invoke(main, ["bench", "e2e", str(runtime_bundle), "--quick", "--formats", "json,tag,chunk,sparkplug",
                                       "--no-peer", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "e2e.json").read_text())
    assert data["paho_ceiling"]["received"] > 0 and data["paho_ceiling"]["receive_msg_per_s"] > 0  # how fast: the benchmark's job
    rows = data["results"]
    formats = ("json", "tag", "chunk", "sparkplug")
    assert {(r["format"], r["offered_msg_per_s"]) for r in rows} == {(f, r) for f in formats for r in (600.0, 1200.0)}
    for r in rows:  # light load on loopback: every window arrives, the latency is positive and ordered
        assert r["windows_expected"] >= 4 * 5 and r["lost"] == 0, r
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] < 1000
        assert r["sent"] == pytest.approx(r["offered_msg_per_s"] * r["seconds"], rel=0.05)
        assert r["runtime_cpu_us_per_msg"] > 0 and r["runtime_cores"] > 0 and r["worker_msg_per_s"][0] > 0  # what it cost, from /proc
    assert data["highest_held_msg_per_s"]["linewatch json"] in (600.0, 1200.0)  # light load is held
    assert "linewatch | chunk | 1,200" in (out / "e2e.md").read_text()
    assert (out / "e2e.png").stat().st_size > 10_000


def test_grouped_score_messages_account_for_every_window(mosquitto_path, runtime_bundle, tmp_path):
    out = tmp_path / "e2e"
    result = CliRunner().invoke(main, ["bench", "e2e", str(runtime_bundle), "--quick", "--rates", "200", "--formats", "chunk,json",
                                       "--chunk", "40", "--score-events", "grouped", "--seconds", "1", "--no-peer", "--status-page", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "e2e.json").read_text())
    assert data["score_events"] == "grouped" and data["chunk"] == 40
    assert data["status_page_polls"] >= 1  # the page was on and read while the load ran
    assert {(r["machines"], r["offered_msg_per_s"], r["seconds"]) for r in data["results"]} == {(4, 200.0, 1.0)}  # --quick, explicit options win
    for r in data["results"]:  # a chunk of 40 completes several windows of a stream: all arrive, grouped in one message
        assert r["windows_expected"] >= 4 * 5 and r["lost"] == 0, r
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    chunk = next(r for r in data["results"] if r["format"] == "chunk")
    assert chunk["event_messages"] < chunk["windows_received"]
    assert "--score-events grouped" in (out / "e2e.md").read_text()


def test_two_workers_split_the_machines_and_every_window_arrives(mosquitto_path, runtime_bundle, tmp_path):
    out = tmp_path / "e2e"
    result = CliRunner().invoke(main, ["bench", "e2e", str(runtime_bundle), "--quick", "--formats", "json", "--workers", "2", "--no-peer",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "e2e.json").read_text())
    assert data["workers"] == 2 and {r["system"] for r in data["results"]} == {"linewatch x2"}
    for r in data["results"]:  # machines under plant/g0/ and plant/g1/, one worker each: every window scored once
        assert r["windows_expected"] >= 4 * 5 and r["lost"] == 0, r
    assert "--workers 2" in (out / "e2e.md").read_text()
    refused = CliRunner().invoke(main, ["bench", "e2e", str(runtime_bundle), "--quick", "--formats", "json,tag", "--workers", "2"])
    assert refused.exit_code == 2 and "json only" in refused.output
