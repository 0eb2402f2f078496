"""State apart from configuration: where the runtime writes, and one clear line when it cannot."""

import os
import resource
import sqlite3
import subprocess
import sys

import pytest

from edge_runtime.contract.errors import StorageError
from edge_runtime.delivery.outbox import Outbox
from edge_runtime.state import prepare, state_directory


def unprivileged() -> list[str]:
    """A command prefix under which file permissions bind: root without the capabilities that override them
    (``setpriv``, util-linux), or nothing when the tests do not run as root.
    """
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def linewatch(*args) -> list[str]:
    """The command line of ``linewatch ARGS`` from this interpreter."""
    return [sys.executable, "-m", "linewatch", *map(str, args)]


def check(config, env: dict | None = None) -> subprocess.CompletedProcess:
    """``linewatch run --config CONFIG --check`` in its own process, file permissions binding."""
    return subprocess.run([*unprivileged(), *linewatch("run", "--config", config, "--check")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def gateway_config(folder, bundle, state_dir: str = "") -> object:
    path = folder / "gateway.toml"
    state = f'state_dir = "{state_dir}"\n' if state_dir else ""
    path.write_text(f'[runtime]\n{state}[[models]]\nname = "pumps"\nbundle = "{bundle}"\n')
    return path


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_state_directory_follows_the_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert state_directory() == tmp_path / "a"
    assert str(state_directory("/srv/lw")) == "/srv/lw"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    expected = "/var/lib/linewatch" if os.geteuid() == 0 else f"{tmp_path}/xdg/linewatch"
    assert str(state_directory()) == expected


def test_relative_state_paths_resolve_in_the_state_directory_not_beside_the_config(runtime_bundle, tmp_path, monkeypatch):
    from edge_runtime.config import load_config

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    config = load_config(gateway_config(tmp_path, runtime_bundle))
    assert config.runtime.outbox == str(tmp_path / "state" / "linewatch-outbox.sqlite")
    assert config.runtime.thresholds_file == str(tmp_path / "state" / "linewatch-thresholds.json")


def test_check_proves_the_state_directory_writable_and_leaves_nothing_behind(runtime_bundle, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    result = check(gateway_config(tmp_path, runtime_bundle, str(state)))
    assert result.returncode == 0, result.stderr
    assert f"state    {state} is writable" in result.stdout
    assert list(state.iterdir()) == []
    missing = tmp_path / "not-yet"
    result = check(gateway_config(tmp_path, runtime_bundle, str(missing)))
    assert result.returncode == 0 and "can be created" in result.stdout and not missing.exists()


@pytest.mark.parametrize("case", ["read-only folder", "missing folder under a read-only one", "a file where the folder should be"])
def test_a_state_directory_that_cannot_be_used_is_one_line_naming_path_cause_and_fix(runtime_bundle, tmp_path, case):
    if case == "read-only folder":
        state = tmp_path / "ro"
        state.mkdir(mode=0o555)
        want = "is not writable by user"
    elif case == "missing folder under a read-only one":
        (tmp_path / "ro-parent").mkdir(mode=0o555)
        state = tmp_path / "ro-parent" / "state"
        want = "is not writable by user"
    else:
        state = tmp_path / "file"
        state.write_text("not a folder")
        want = "is a file, not a folder"
    config = gateway_config(tmp_path, runtime_bundle, str(state))
    for command in (["--check"], []):  # the check says what the run would meet, and so does the run itself
        result = subprocess.run([*unprivileged(), *linewatch("run", "--config", config, *command)], capture_output=True, text=True,
                                timeout=120)
        line = one_error_line(result)
        assert str(state) in line and want in line and "runtime.state_dir" in line, line


def test_a_full_disk_at_start_up_is_one_line(runtime_bundle, tmp_path):
    state = tmp_path / "state"
    state.mkdir()

    def no_room() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write to a file fails as on a full disk (EFBIG)

    result = subprocess.run(linewatch("run", "--config", gateway_config(tmp_path, runtime_bundle, str(state))), capture_output=True,
                            text=True, timeout=120, preexec_fn=no_room)
    line = one_error_line(result)
    assert str(state) in line and "no space left" in line and "runtime.state_dir" in line, line


def test_an_outbox_that_cannot_be_opened_is_a_storage_error_with_the_path(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(StorageError, match=r"outbox .*taken/outbox.sqlite: .*taken is a file, not a folder"):
        Outbox(tmp_path / "taken" / "outbox.sqlite")
    with pytest.raises(StorageError, match="must be an absolute path"):
        prepare(state_directory("relative/state"))


def test_the_outbox_uses_nothing_newer_than_sqlite_3_31(tmp_path):
    """Ubuntu 20.04 and JetPack 5 ship SQLite 3.31: every statement the outbox runs is checked against what came later."""
    newer = ("RETURNING", "STRICT", "->", "UNIXEPOCH", "IS NOT DISTINCT", "RIGHT JOIN", "FULL JOIN", "MATERIALIZED", "IIF(",
             "DROP COLUMN", "GENERATED ALWAYS", "NULLS FIRST", "NULLS LAST")
    statements = []
    outbox = Outbox(tmp_path / "o.sqlite", max_rows=50)
    outbox.db.set_trace_callback(statements.append)
    seqs = outbox.add_many([("t", b"x" * 10)] * 80)  # over max_rows: the oldest are dropped
    outbox.remove_many(seqs[-10:])
    outbox.pending(after=0)
    outbox.close()
    assert statements and not [s for s in statements if any(word in s.upper() for word in newer)]
    assert outbox.depth() == 40 and outbox.dropped == 30


def test_a_failed_store_is_rolled_back_and_the_next_one_succeeds(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite")
    outbox.add_many([("t", b"kept")])
    pages = outbox.db.execute("PRAGMA page_count").fetchone()[0]
    outbox.db.execute(f"PRAGMA max_page_count = {pages + 1}")  # a database that is full
    with pytest.raises(sqlite3.OperationalError, match="full"):
        outbox.add_many([("t", b"x" * 20_000)] * 10)
    assert not outbox.db.in_transaction and outbox.depth() == 1
    outbox.db.execute("PRAGMA max_page_count = 1000000")
    assert len(outbox.add_many([("t", b"after")])) == 1 and outbox.depth() == 2
    assert [payload for _, _, payload in outbox.pending()] == [b"kept", b"after"]
