"""The broker-facing tests, run again and again: a flaky test shows here before it shows in CI.

Usage: ``python -m benchmarks.repeat_tests [--runs 20] [PYTEST_ARGS...]`` runs the tests that talk to a
real mosquitto (and the reliability suite) ``--runs`` times under ``CI=true`` (nothing may skip), one
JUnit report per run, and writes ``results/repeat_tests.{json,md}``: every test that failed at least
once, how often, and its first failure's message. It exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parents[1]
BROKER_FACING = ["tests/edge_runtime/test_runtime_mqtt.py", "tests/edge_runtime/test_input_security.py",
                 "tests/edge_runtime/test_sparkplug_mqtt.py", "tests/edge_runtime/test_commissioning.py",
                 "tests/edge_runtime/test_conditions_runtime.py", "tests/edge_runtime/test_stragglers.py",
                 "tests/edge_runtime/test_service.py", "tests/edge_runtime/test_doctor.py", "tests/reliability"]


def failures(report: Path) -> dict[str, str]:
    """``test id -> first line of its failure`` from a JUnit report."""
    found = {}
    for case in ElementTree.parse(report).iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            found[f"{case.get('classname')}::{case.get('name')}"] = (problem.get("message") or "").splitlines()[0][:300]
    return found


def main() -> None:
    """Run the broker-facing tests ``--runs`` times and record every failure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args, extra = parser.parse_known_args()
    counts, first_message, runs = Counter(), {}, []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(1, args.runs + 1):
            report = Path(folder) / f"run{run}.xml"
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *BROKER_FACING,
                                   *extra], cwd=ROOT, env={**os.environ, "CI": "true"}, capture_output=True, text=True)
            failed = failures(report) if report.exists() else {"(no report)": done.stdout[-300:]}
            for test, message in failed.items():
                counts[test] += 1
                first_message.setdefault(test, message)
            seconds = round(time.perf_counter() - started, 1)
            runs.append({"run": run, "returncode": done.returncode, "failed": sorted(failed), "seconds": seconds})
            print(f"run {run}/{args.runs}: {'passed' if not failed else f'{len(failed)} failed'} ({seconds} s)", flush=True)
    rows = [[test, count, first_message[test]] for test, count in counts.most_common()] or [["(none)", 0, ""]]
    write_results("repeat_tests", {"runs": runs, "tests": BROKER_FACING, "failures": dict(counts)},
                  ["test", "runs failed", "first failure"], rows,
                  f"{args.runs} runs of the broker-facing tests under CI=true; {sum(1 for r in runs if not r['failed'])} passed completely.")
    sys.exit(1 if counts else 0)


if __name__ == "__main__":
    main()
