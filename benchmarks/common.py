"""Shared helpers for the benchmarks: machine description and result writing (JSON + Markdown)."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """CPU model, core count, memory, OS and Python of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory, "os": platform.platform(), "python": platform.python_version()}


def write_results(name: str, results: dict, table_header: list[str], table_rows: list[list], notes: str = "") -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md`` (a table with the machine described), and print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(), **results}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    m = payload["machine"]
    lines = [f"# {name}", "", f"{payload['date']} on {m['cpu']} ({m['cores']} cores, {m['memory']}), {m['os']}, Python {m['python']}", ""]
    lines.append("| " + " | ".join(table_header) + " |")
    lines.append("|" + "---|" * len(table_header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table_rows]
    if notes:
        lines += ["", notes]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path


def train_with_defaults(table, seed: int, work: Path, **params) -> tuple:
    """``(detector, bundle, warnings)``: train on ``table`` as ``linewatch train`` does by default (window and stride
    from the data's length), save the run, export and load the bundle, all under ``work``.
    """
    import warnings

    from edge_runtime.bundle import load_bundle
    from export.bundler import export_run
    from train.detector import AutoencoderDetector
    from train.windows import default_window

    window, stride = default_window([len(s) for s in table.series])
    detector = AutoencoderDetector(window=window, stride=stride, seed=seed, progress=False, device="cpu", **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector.fit(table)
    detector.save(work / "run")
    bundle = load_bundle(export_run(work / "run", work / "bundle", echo=lambda *_: None))
    return detector, bundle, [str(w.message) for w in caught]
