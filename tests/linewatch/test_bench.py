import json

import pytest
from click.testing import CliRunner

pytest.importorskip("hdrh", reason="needs hdrhistogram (the bench extra)")

from linewatch.cli import main  # noqa: E402


@pytest.mark.slow
def test_bench_backends_measures_each_backend_in_its_own_process(runtime_bundle, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "backends", str(runtime_bundle), "--backends", "onnxruntime-cpu,torch-pt2-cpu,tensorrt",
                                       "--quick", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "backends.json").read_text())
    rows = {r["backend"]: r for r in data["results"]}
    ort = rows["onnxruntime-cpu"]
    assert [b["batch"] for b in ort["batches"]] == [1, 4]
    for b in ort["batches"]:
        call, window = b["per_call_us"], b["per_window_us"]
        assert 0 < call["p50"] <= call["p90"] <= call["p99"] <= call["p99.9"] <= call["max"]
        assert window["p50"] == pytest.approx(call["p50"] / b["batch"])
        assert b["calls"] >= 20 and b["windows_per_s"] > 0 and b["histogram"]
    assert ort["peak_rss_mb"] > 10 and ort["activate_s"] > 0
    assert rows["torch-pt2-cpu"]["batches"][0]["per_call_us"]["p50"] > 0
    assert "tensorrt" in rows["tensorrt"]["skipped"].lower()  # not in the bundle / not installed: said, not hidden
    table = (out / "backends.md").read_text()
    assert "onnxruntime-cpu fp32 | 4 |" in table and "skipped:" in table
    assert (out / "backends.png").stat().st_size > 10_000
