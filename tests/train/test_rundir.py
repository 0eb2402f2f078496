"""The run directory format: versioned, checked at load, saved without matplotlib."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from train.detector import AutoencoderDetector  # noqa: E402
from train.rundir import RunDirError, load_run  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(kind_bundles, tmp_path_factory):
    return kind_bundles["dense"][0].save(tmp_path_factory.mktemp("rundir") / "run")


def test_config_carries_the_format_and_loads(run_dir):
    assert json.loads((run_dir / "config.json").read_text())["format"] == "linewatch.run/2"
    assert load_run(run_dir).weights and AutoencoderDetector.load(run_dir).kind == "dense"


@pytest.mark.parametrize(("tag", "message"), [
    (None, "no format tag"),
    ("linewatch.bundle/1", "is not a linewatch run directory"),
    ("linewatch.run/3", "version '3' found, this linewatch reads 2 \\(written by a newer linewatch; upgrade\\)"),
    ("linewatch.run/1", "version '1' found, this linewatch reads 2 \\(an older linewatch's run: train it again\\)"),
])
def test_other_formats_and_versions_say_what_was_found(run_dir, tmp_path, tag, message):
    copy = tmp_path / "run"
    copy.mkdir()
    for path in run_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    config = json.loads((copy / "config.json").read_text())
    config["format"] = tag
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunDirError, match=message):
        AutoencoderDetector.load(copy)


def test_missing_pieces_are_named(run_dir, tmp_path):
    with pytest.raises(RunDirError, match="not a run directory"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(RunDirError, match="model.npz is missing"):
        load_run(tmp_path)


@pytest.mark.slow
def test_saving_a_model_does_not_import_matplotlib(kind_bundles, tmp_path):
    code = ("import sys, pickle\nfrom train.detector import AutoencoderDetector\n"
            f"d = AutoencoderDetector.load({str(kind_bundles['pca'][0].save(tmp_path / 'a'))!r})\n"
            f"d.save({str(tmp_path / 'b')!r})\nassert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
