"""The long fuzz run: the property-based tests of ``tests/edge_runtime/test_fuzz.py`` with many
more examples than CI runs (default 100,000 per decoder property; the whole-message property
gets a 25th of that, each example carrying up to 40 messages). Usage:
``python -m benchmarks.fuzz [--examples 100000]``. Writes ``results/fuzz.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import write_results

TESTS = Path(__file__).resolve().parents[1] / "tests" / "edge_runtime" / "test_fuzz.py"


def main() -> None:
    """Run pytest on the fuzz module once per property and record each outcome and duration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    args = parser.parse_args()
    names = re.findall(r"^def (test_\w+)", TESTS.read_text(), flags=re.M)
    env = {**os.environ, "LINEWATCH_FUZZ_EXAMPLES": str(args.examples)}
    runs = []
    for name in names:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{TESTS}::{name}"], env=env,
                              capture_output=True, text=True)
        examples = args.examples if "whole_messages" not in name else max(50, args.examples // 25)
        runs.append({"test": name, "examples": examples, "passed": done.returncode == 0, "seconds": round(time.perf_counter() - started, 1),
                     "output": done.stdout[-2000:] if done.returncode else ""})
        print(f"{name}: {'passed' if done.returncode == 0 else 'FAILED'} ({examples} examples, {runs[-1]['seconds']} s)", flush=True)
    write_results("fuzz", {"runs": runs}, ["property", "examples", "result", "seconds"],
                         [[r["test"], r["examples"], "passed" if r["passed"] else "FAILED", r["seconds"]] for r in runs],
                         "hypothesis, random seeds; the whole-message property feeds up to 40 hostile messages per example "
                         "between 30 good ones.")
    sys.exit(0 if all(r["passed"] for r in runs) else 1)


if __name__ == "__main__":
    main()
