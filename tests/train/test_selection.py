"""``--model auto``: synthetic faults on the user's own sensors, the criterion, and the choice recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from train.selection import SYNTHETIC_FAULTS, with_faults


def test_each_synthetic_fault_changes_one_sensor_from_the_window_s_middle_on_by_its_spread():
    rng = np.random.default_rng(0)
    windows = rng.normal(0.0, 1.0, (200, 20, 4)).astype(np.float32) * np.array([1.0, 10.0, 0.1, 5.0], np.float32)
    spread = windows.reshape(-1, 4).std(axis=0)
    for fault in SYNTHETIC_FAULTS:
        faulted = with_faults(windows, spread, fault, np.random.default_rng(1))
        changed = faulted != windows
        assert not changed[:, :10].any(), fault  # the first half is the normal context
        per_window = changed.any(axis=1)  # [N, F]
        assert (per_window.sum(axis=1) <= 1).all() and per_window.any(axis=1).mean() > 0.9, fault  # one sensor each
        sensor = per_window.argmax(axis=1)
        shift = np.abs(faulted - windows).max(axis=1)[np.arange(len(windows)), sensor] / spread[sensor]
        assert np.median(shift) > 1.0, fault  # in each sensor's own units, well beyond its spread
    with pytest.raises(ValueError, match="unknown synthetic fault"):
        with_faults(windows, spread, "meteor", rng)


@pytest.mark.slow
def test_auto_tries_the_kinds_records_the_evidence_and_trains_the_best(plant_csv, tmp_path):
    pytest.importorskip("torch")
    from linewatch.cli import main

    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(plant_csv), "--series-column", "machine", "--model", "auto", "--window", "20",
                                       "--stride", "5", "--epochs", "3", "--max-windows", "1500", "--quiet", "-o", str(run_dir)])
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    selection = config["selection"]
    kinds = [c["kind"] for c in selection["candidates"]]
    assert sorted(kinds) == ["conv", "dense", "lstm", "pca", "vae"]
    scores = [c["score"] for c in selection["candidates"]]
    assert scores == sorted(scores, reverse=True) and config["kind"] == selection["chosen"] == kinds[0]  # best first, and trained
    for candidate in selection["candidates"]:
        assert set(candidate["detected"]) == set(SYNTHETIC_FAULTS) and candidate["seconds"] >= 0
        assert candidate["score"] == pytest.approx(np.mean(list(candidate["detected"].values())), abs=1e-4)
    assert f"chosen: {selection['chosen']}" in result.output
    bundle = tmp_path / "bundle"
    assert CliRunner().invoke(main, ["export", str(run_dir), "-o", str(bundle)]).exit_code == 0
    assert json.loads((bundle / "bundle.json").read_text())["training"]["selection"] == selection
    assert CliRunner().invoke(main, ["evaluate", str(run_dir), str(plant_csv), "--series-column", "machine"]).exit_code == 0
    assert f"Model chosen by --model auto: {selection['chosen']}" in (run_dir / "evaluation" / "report.html").read_text()
    refused = CliRunner().invoke(main, ["train", str(plant_csv), "--series-column", "machine", "--model", "auto", "--param", "latent=4",
                                        "-o", str(tmp_path / "other")])
    assert refused.exit_code != 0 and "name the --model, not auto" in refused.output
