"""Outbox throughput by durability mode: events per second stored (one transaction per scoring
batch) and settled (acknowledged rows deleted), with ``synchronous=FULL`` (survives a power cut)
and ``NORMAL`` (survives a process crash). Usage: ``python -m benchmarks.outbox [--events 3000]``.

Runs on the disk that holds the temporary folder (``TMPDIR``); a gateway's eMMC or SD card is slower.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.common import write_results
from edge_runtime.delivery.outbox import SYNC_MODES, Outbox

PAYLOAD = orjson.dumps({"schema": "linewatch.event/1", "kind": "alarm_raised", "pad": "x" * 560})  # about an event's size


def measure(sync: str, batch: int, events: int) -> dict:
    """Store ``events`` in batches of ``batch`` and settle them in acknowledgement batches of 50."""
    with tempfile.TemporaryDirectory() as folder:
        outbox = Outbox(Path(folder) / "outbox.sqlite", sync=sync)
        rows = [("linewatch/events/l1/m1", PAYLOAD)] * batch
        started = time.perf_counter()
        seqs = []
        for _ in range(events // batch):
            seqs += outbox.add_many(rows)
        stored = time.perf_counter() - started
        started = time.perf_counter()
        for first in range(0, len(seqs), 50):
            outbox.remove_many(seqs[first : first + 50])
        settled = time.perf_counter() - started
        outbox.close()
    return {"sync": sync, "batch": batch, "events": len(seqs), "stored_per_s": round(len(seqs) / stored),
            "settled_per_s": round(len(seqs) / settled)}


def main() -> None:
    """Measure every mode and batch size; write results/outbox.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    runs = [measure(sync, batch, args.events) for sync in SYNC_MODES for batch in (1, 16)]
    write_results("outbox", {"runs": runs}, ["synchronous", "events per transaction", "stored events/s", "settled events/s"],
                         [[r["sync"].upper(), r["batch"], r["stored_per_s"], r["settled_per_s"]] for r in runs],
                         "Only alarm transitions are stored (score telemetry is not durable); one transaction per scoring batch.")


if __name__ == "__main__":
    main()
