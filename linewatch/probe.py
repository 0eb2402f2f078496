"""What a process under load costs, read from outside: the CPU time of a process and everything it started (its
session), the messages each runtime worker accepted (from its metrics endpoint), and how busy the whole machine was.

Linux only (``/proc``); elsewhere :meth:`RuntimeProbe.read` returns None and the benchmarks leave these figures out.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ACCEPTED = re.compile(rb'^linewatch_messages_total\{result="accepted"\} ([0-9.e+]+)$', re.M)


@dataclass
class Reading:
    """One look at the runtime and the machine."""

    at: float  # time.monotonic()
    cpu_s: float  # user + system time of every process in the runtime's session
    accepted: list[float]  # messages accepted so far, per worker
    machine_busy: float  # seconds of CPU the whole machine spent busy (all cores), since boot
    machine_total: float  # seconds of CPU the whole machine had (all cores), since boot


def session_cpu_seconds(session: int, proc: Path = Path("/proc")) -> float:
    """User plus system CPU seconds of every live process whose session id is ``session``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == session:  # fields from the state on: state ppid pgrp session ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def machine_cpu_seconds(proc: Path = Path("/proc")) -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine, all cores, since boot; idle and I/O wait count as not busy."""
    values = [int(v) for v in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    tick = os.sysconf("SC_CLK_TCK")
    return (total - values[3] - values[4]) / tick, total / tick


def accepted_messages(url: str) -> float:
    """``linewatch_messages_total{result="accepted"}`` from one worker's metrics endpoint."""
    found = ACCEPTED.search(urllib.request.urlopen(url, timeout=5).read())
    return float(found.group(1)) if found else 0.0


class RuntimeProbe:
    """Readings of a runtime started as a session leader (``start_new_session=True``) with these metrics endpoints."""

    def __init__(self, session: int, metrics_urls: list[str]) -> None:
        """``session``: the runtime's pid; ``metrics_urls``: one per worker."""
        self.session, self.metrics_urls = session, metrics_urls
        self.available = Path("/proc/stat").exists()

    def read(self) -> Reading | None:
        """A reading now, or None where there is no /proc."""
        if not self.available:
            return None
        busy, total = machine_cpu_seconds()
        return Reading(time.monotonic(), session_cpu_seconds(self.session), [accepted_messages(u) for u in self.metrics_urls], busy, total)


def usage(start: Reading | None, loaded: Reading | None, done: Reading | None) -> dict:
    """The figures of one load step: ``start`` as the load began, ``loaded`` as it ended, ``done`` once the runtime had
    processed everything. CPU per message covers all the work (to ``done``); rates, cores and the machine's load cover
    the time under load (to ``loaded``).
    """
    if start is None or loaded is None or done is None:
        return {}
    span = max(loaded.at - start.at, 1e-9)
    accepted = [b - a for a, b in zip(start.accepted, done.accepted)]
    machine = (loaded.machine_busy - start.machine_busy) / max(loaded.machine_total - start.machine_total, 1e-9)
    return {"runtime_cpu_us_per_msg": round((done.cpu_s - start.cpu_s) / max(sum(accepted), 1) * 1e6, 1),
            "runtime_cores": round((loaded.cpu_s - start.cpu_s) / span, 2),
            "machine_busy_pct": round(100 * machine, 1),
            "worker_msg_per_s": [round((b - a) / span) for a, b in zip(start.accepted, loaded.accepted)]}
