"""Benchmark results as files: the commit, command, bundle and machine, JSON for tools, a Markdown table for people.

Used by ``linewatch bench`` and by the scripts in ``benchmarks/``, so every result file says
where it was measured in the same way.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "paho-mqtt")


def _gpus() -> list[str]:
    """NVIDIA GPUs as ``name (driver X)`` from nvidia-smi, or none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [f"{name.strip()} (driver {driver.strip()}, {memory.strip()})" for name, driver, memory in
            (line.split(",") for line in out.strip().splitlines() if line.count(",") == 2)]


def machine() -> dict:
    """CPU model, core count, memory, GPUs, OS, Python and the versions of the packages that matter."""
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
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory, "gpus": _gpus(), "os": platform.platform(),
            "python": platform.python_version(), "packages": versions}


def describe(m: dict) -> str:
    """One line naming the machine a result was measured on."""
    gpus = f", GPU {'; '.join(m['gpus'])}" if m.get("gpus") else ", no GPU"
    packages = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())
    return f"{m['cpu']} ({m['cores']} cores, {m['memory']}){gpus}; {m['os']}, Python {m['python']}; {packages}"


def commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when tracked files other than results differ from it), or None outside a
    git checkout. Result files are left out: a benchmark rewrites them as it runs.
    """
    where = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(top,exclude)benchmarks/results"],
                               cwd=where, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def provenance(bundle_id: str | None = None) -> dict:
    """What a result was measured with: the commit, the command line, the bundle and the machine."""
    command = " ".join(shlex.quote(arg) for arg in [Path(sys.argv[0]).name, *sys.argv[1:]])
    return {"commit": commit(), "command": command, "bundle_id": bundle_id, "machine": machine()}


def write_results(folder: Path, name: str, results: dict, table_header: list[str], table_rows: list[list], notes: str = "",
                  quiet: bool = False, bundle_id: str | None = None) -> Path:
    """Write ``folder/<name>.json`` and ``folder/<name>.md`` (a table with its provenance); print the table."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **provenance(bundle_id), **results}
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    measured_with = f"commit `{payload['commit'] or 'unknown'}`" + (f", bundle `{bundle_id}`" if bundle_id else "")
    lines = [f"# {name}", "", f"{payload['date']} on {describe(payload['machine'])}", "",
             f"{measured_with}; command `{payload['command']}`", ""]
    lines.append("| " + " | ".join(table_header) + " |")
    lines.append("|" + "---|" * len(table_header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table_rows]
    if notes:
        lines += ["", notes]
    path = folder / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    if not quiet:
        print(path.read_text())
    return path
