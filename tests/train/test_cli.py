"""The training commands end to end: simulate, train, evaluate, and their one-line errors."""

import json

import pytest
from click.testing import CliRunner

from linewatch.cli import main


@pytest.mark.slow
def test_simulate_train_evaluate_end_to_end(tmp_path):
    pytest.importorskip("torch")
    runner = CliRunner()
    data = tmp_path / "plant.csv"
    result = runner.invoke(main, ["simulate", "-o", str(data), "--machines", "2", "--rows", "3600", "--normal-rows", "2400"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "run"
    result = runner.invoke(
        main,
        ["train", str(data), "--series-column", "machine", "--model", "dense", "--window", "20", "--stride", "5",
         "--param", "latent=4", "--param", "hidden=[32]", "-o", str(run_dir)],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    history = config["training"]["history"]
    stopped_at_cap = history["best_epoch"] == len(history["val_loss"]) - 1
    assert ("validation loss was still falling at the last epoch (200)" in result.output) == stopped_at_cap
    assert config["model_params"] == {"latent": 4, "hidden": [32]} and config["threshold"]["method"] == "alarms"
    calibration = config["calibration"]
    assert (calibration["source"], calibration["false_alarms_per_day"]) == ("training", 1.0) and calibration["seen_level"] >= 1.0
    windows, days = config["threshold"]["windows"], config["threshold"]["days"]
    assert f"rests on {windows} training calibration windows ({days:.3g} stream-days); it aims at 1 false alarms per stream and day" in result.output
    assert "the threshold is extrapolated from the tail of the scores" in result.output  # 2 x 40 minutes: less than a day
    assert windows > 2 * 2400 * 0.8  # every normal training window of both machines, not a held-out fifth
    result = runner.invoke(main, ["evaluate", str(run_dir), str(data), "--series-column", "machine", "--sweep"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "evaluation" / "evaluation.json").read_text())
    assert "threshold sweep" in result.output and len(metrics["threshold_sweep"]) == 13
    at_own = next(row for row in metrics["threshold_sweep"] if row["multiple"] == 1.0)
    assert at_own["f1"] == metrics["alarm_policy_f1"] and at_own["events_detected"] == metrics["alarm_policy_events_detected"]
    assert at_own["far_after_last_anomaly"] == metrics["alarm_policy_far_after_last_anomaly"]
    split = f"{at_own['far'] * 100:.1f} {at_own['far_before_first_anomaly'] * 100:>6.1f} {at_own['far_after_last_anomaly'] * 100:>6.1f}"
    assert split in result.output  # the sweep table shows where the normal rows it flags lie
    assert metrics["events"] == 4 and metrics["events_detected"] >= 3
    assert [e["detected"] for e in metrics["events_detail"]].count(True) == metrics["events_detected"] and "policy delay" in result.output
    assert metrics["unscored_rows"] == 2 * 19  # each machine's first window - 1 rows
    assert metrics["alarm_policy_false_alarms_per_day"] is not None and metrics["false_alarms_per_day_before_first_anomaly"] is not None
    # what a gateway would raise with the runtime's default alarm policy: never more events than the raw threshold flags
    assert 0 < metrics["alarm_policy_events_detected"] <= metrics["events_detected"]
    assert metrics["alarm_policy_far"] <= metrics["far"] + 0.01 and "alarm_policy_f1" in result.output
    for figure in ("report.html", "score_distribution.png", "scores_0.png", "feature_contributions.png", "loss_curve.png", "threshold_sweep.png",
                   "false_alarm_sweep.png"):
        assert (run_dir / "evaluation" / figure).stat().st_size > 0
    assert (run_dir / "loss_curve.png").stat().st_size > 0 and (run_dir / "loss_curve.csv").exists()
    # a label-based threshold calibrates on labelled data
    result = runner.invoke(
        main,
        ["train", str(data), "--series-column", "machine", "--model", "pca", "--window", "20", "--threshold", "f1",
         "--threshold-data", str(data), "-o", str(tmp_path / "pca")],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "pca" / "config.json").read_text())["threshold"]["method"] == "f1"
    assert "still falling" not in result.output  # a closed-form fit has no epochs for early stopping to decide
    assert "(closed form, val loss" in result.output


def test_train_reports_bad_input_in_one_line(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "short.csv"
    path.write_text("time,a,b\n" + "".join(f"{i},{i % 3},{i % 5}\n" for i in range(10)))
    result = CliRunner().invoke(main, ["train", str(path), "--window", "50", "-o", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: too few rows for one window") and result.output.count("\n") == 1


def test_a_failed_split_names_its_cause_and_ignore_labels_trains_anyway(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "mostly_faulty.csv"
    rows = [f"{i},{(i * 7) % 11 / 10},{(i * 3) % 7 / 10},{int(i >= 60)}" for i in range(300)]  # 240 of 300 rows labelled
    path.write_text("time,a,b,label\n" + "\n".join(rows) + "\n")
    result = CliRunner().invoke(main, ["train", str(path), "--window", "20", "--quiet", "-o", str(tmp_path / "r")])
    assert result.exit_code == 1 and "240 of 300 rows are labelled anomalous" in result.output and "--ignore-labels" in result.output
    result = CliRunner().invoke(main, ["train", str(path), "--window", "20", "--quiet", "--ignore-labels", "--epochs", "3", "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("trained pca on ")  # the default kind; --quiet: the result line (and warnings) only
    assert "(closed form, val loss" in result.output  # no epochs to count


def test_training_warnings_are_said_as_warning_lines(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "short.csv"
    path.write_text("time,a,b\n" + "\n".join(f"{i},{(i * 7) % 11 / 10},{(i * 3) % 7 / 10}" for i in range(400)) + "\n")
    result = CliRunner().invoke(main, ["train", str(path), "--window", "50", "--stride", "10", "--epochs", "3", "--quiet", "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "warning: out-of-fold calibration skipped" in result.output and "--window (such as 25)" in result.output
    assert "UserWarning" not in result.output
