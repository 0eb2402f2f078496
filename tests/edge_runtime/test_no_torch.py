"""The gateway has no torch: every runtime module imports, and the CLI explains the missing extra."""

import pkgutil

import edge_runtime
from helpers import run_without_torch

MODULES = sorted(m.name for m in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime."))


def test_every_edge_runtime_module_imports_with_torch_blocked():
    assert len(MODULES) >= 40 and "edge_runtime.ingest.streams" in MODULES  # every room really was listed
    result = run_without_torch(
        f"import importlib\nfor name in {MODULES!r}:\n    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'train', 'export', 'pandas', 'scipy'))\n"
        f"assert not leaked, leaked\nprint(len({MODULES!r}), 'modules')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{len(MODULES)} modules"


def test_runtime_side_needs_no_torch():
    result = run_without_torch(
        "import edge_runtime, linewatch.cli\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(linewatch.cli.main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'run' in r.output and 'train' in r.output\n"
        "r = CliRunner().invoke(linewatch.cli.main, ['run', '--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for command in (['train', 'x.csv', '-o', 'y'], ['export', 'run', '-o', 'b'], ['demo'], ['simulate', '-o', 'p.csv']):\n"
        "    r = CliRunner().invoke(linewatch.cli.main, command)\n"
        "    assert r.exit_code == 1, r.output\n"
        "    print(r.output)\n"
        "assert 'torch' not in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("needs the 'train' extra (not installed: torch") == 4 and "pip install 'linewatch[train]'" in result.stdout
