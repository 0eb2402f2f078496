"""``linewatch evaluate``: a bundle scored without torch agrees with the run it was exported from; models pooled."""

import pytest

from helpers import run_without_torch


def test_a_bundle_is_evaluated_without_torch_and_agrees_with_its_run(runtime_bundle, runtime_run, plant_csv, tmp_path):
    import json

    blocked = ("torch", "train", "pandas", "scipy", "matplotlib", "onnx")  # a gateway: the runtime's dependencies only
    result = run_without_torch(
        "from click.testing import CliRunner\nimport linewatch.cli, json\n"
        f"r = CliRunner().invoke(linewatch.cli.main, ['evaluate', {str(runtime_bundle)!r}, {str(plant_csv)!r}, '--series-column', "
        f"'machine', '-o', {str(tmp_path / 'bundle_eval')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(linewatch.cli.main, ['evaluate', {str(runtime_bundle)!r}, {str(plant_csv)!r}, '--series-column', "
        f"'machine', '--train-rows', '1500', '--sweep', '-o', {str(tmp_path / 'protocol')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'threshold sweep' in r.output\n"
        "assert 'torch' not in sys.modules and 'train' not in sys.modules\n", blocked)
    assert result.returncode == 0, result.stderr + result.stdout
    whole = json.loads((tmp_path / "bundle_eval" / "evaluation.json").read_text())
    protocol = json.loads((tmp_path / "protocol" / "evaluation.json").read_text())
    # the first 1500 rows of each machine left out, no file split; rows before a machine's first window are counted apart
    assert whole["rows"] + whole["unscored_rows"] == 6000 and protocol["rows"] + protocol["unscored_rows"] == 3000
    assert whole["unscored_rows"] == protocol["unscored_rows"] > 0
    assert len(protocol["threshold_sweep"]) == 13 and "threshold_sweep" not in whole  # only asked for
    from click.testing import CliRunner

    from linewatch.cli import main

    run_dir = runtime_run
    result = CliRunner().invoke(main, ["evaluate", str(run_dir), str(plant_csv), "--series-column", "machine", "-o", str(tmp_path / "run_eval")])
    assert result.exit_code == 0, result.output
    by_run = json.loads((tmp_path / "run_eval" / "evaluation.json").read_text())
    for key in ("f1", "far", "events_detected", "alarm_policy_f1", "alarm_policy_events_detected", "alarm_policy_false_alarms_per_day",
                "unscored_rows"):
        assert by_run[key] == pytest.approx(whole[key], abs=0.002), key  # ONNX through the runtime's streams = training's scorer


def test_several_models_pool_into_one_confusion_matrix_each_scoring_the_files_after_it(runtime_bundle, runtime_run, plant_csv, tmp_path):
    import json

    from click.testing import CliRunner

    from linewatch.cli import main

    header, *lines = plant_csv.read_text().splitlines()
    machine = header.split(",").index("machine")
    halves = []
    for name in ("m1", "m2"):
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join([header, *(line for line in lines if line.split(",")[machine] == name)]) + "\n")
        halves.append(str(path))
    run_dir = str(runtime_run)
    results = {}
    for label, items in (("one", [str(runtime_bundle), *halves]), ("pooled", [str(runtime_bundle), halves[0], str(runtime_bundle), halves[1]]),
                         ("runs", [run_dir, halves[0], run_dir, halves[1]])):
        result = CliRunner().invoke(main, ["evaluate", *items, "--series-column", "machine", "--sweep", "-o", str(tmp_path / label)])
        assert result.exit_code == 0, result.output
        results[label] = json.loads((tmp_path / label / "evaluation.json").read_text())
    one, pooled, runs = results["one"], results["pooled"], results["runs"]
    assert (one["models"], pooled["models"], runs["models"]) == (1, 2, 2) and pooled["threshold"] is None
    # the same model twice, pooled on the threshold's scale: the very decisions of one call over both files
    for key in ("rows", "unscored_rows", "f1", "far", "events", "events_detected", "alarm_policy_f1", "alarm_policy_false_alarms_per_day"):
        assert pooled[key] == pytest.approx(one[key]), key
    assert runs["alarm_policy_events_detected"] == pooled["alarm_policy_events_detected"] and runs["rows"] == pooled["rows"]
    assert [r["f1"] for r in pooled["threshold_sweep"]] == pytest.approx([r["f1"] for r in one["threshold_sweep"]])
    for items, message in (([halves[0], str(runtime_bundle)], "a data file before any bundle or run"),
                           ([str(runtime_bundle), halves[0], str(runtime_bundle)], "no data file follows it"),
                           ([str(runtime_bundle), halves[0], run_dir, halves[1]], "pool bundles with bundles and runs with runs")):
        result = CliRunner().invoke(main, ["evaluate", *items])
        assert result.exit_code == 2 and message in result.output, result.output
