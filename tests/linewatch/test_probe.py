"""The load probe reads a process tree's CPU time, a worker's accepted messages and the machine's load from /proc."""

import subprocess
import sys
from pathlib import Path

import pytest

from linewatch.probe import Reading, accepted_messages, machine_cpu_seconds, session_cpu_seconds, usage

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="the probe reads Linux's /proc")


def test_the_cpu_of_a_session_counts_its_children_and_nothing_else():
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nprint('spun', flush=True)\ninput()"
    leader = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {spin!r}])"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert leader.stdout.readline() == "spun\n"  # the grandchild has spent 0.3 s of CPU and is still alive
        assert session_cpu_seconds(leader.pid) >= 0.3
        assert session_cpu_seconds(leader.pid + 10**7) == 0.0  # no such session
    finally:
        leader.communicate("\n", timeout=30)


def test_the_machine_is_never_busier_than_its_cores():
    busy, total = machine_cpu_seconds()
    assert 0 < busy < total


def test_accepted_messages_are_read_from_the_exposition(tmp_path):
    page = tmp_path / "metrics"
    page.write_text('# TYPE linewatch_messages counter\nlinewatch_messages_total{result="accepted"} 1234.0\n'
                    'linewatch_messages_total{result="bad_json"} 7.0\n')
    assert accepted_messages(page.as_uri()) == 1234.0
    page.write_text("linewatch_connected 1.0\n")
    assert accepted_messages(page.as_uri()) == 0.0


def test_usage_per_message_covers_the_drain_and_rates_cover_the_load():
    start = Reading(at=10.0, cpu_s=1.0, accepted=[0, 0], machine_busy=100.0, machine_total=200.0)
    loaded = Reading(at=12.0, cpu_s=2.0, accepted=[900, 1000], machine_busy=103.0, machine_total=204.0)
    done = Reading(at=13.0, cpu_s=2.2, accepted=[1000, 1000], machine_busy=103.5, machine_total=206.0)
    assert usage(start, loaded, done) == {"runtime_cpu_us_per_msg": 600.0, "runtime_cores": 0.5, "machine_busy_pct": 75.0,
                                          "worker_msg_per_s": [450, 500]}
    assert usage(None, loaded, done) == {}
