"""Workers against brokers: `linewatch bench e2e` with 1 and 2 workers (static filters, json), behind mosquitto and
behind a NATS server speaking MQTT, on this machine.

Each configuration is one `linewatch bench e2e` run in its own process (results in ``results/scaling/<broker>-w<N>/``);
the summary (``results/scaling/summary.{json,md}``) gives, per configuration, the highest rate held at p99 within the
budget with nothing lost, and at that rate the runtime's CPU per message, the cores it used, each worker's receive
rate and how busy the machine was. The publisher, the broker and the workers share this machine's cores. Usage::

    python -m benchmarks.scaling BUNDLE [--rates ...] [--seconds 5]

mosquitto runs the runtime's default protocol (MQTT 5); NATS speaks MQTT 3.1.1 only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import RESULTS, bench_e2e, write_results
from linewatch.localbroker import NatsCluster

CONFIGURATIONS = [("mosquitto", 1), ("mosquitto", 2), ("nats", 1), ("nats", 2)]


def run_e2e(bundle: str, broker: str, workers: int, rates: str, seconds: float, machines: int, nats_port: int | None) -> dict:
    """One `linewatch bench e2e` run; returns its JSON."""
    print(f"== {broker}, {workers} worker(s)", flush=True)
    nats = ["--broker", f"127.0.0.1:{nats_port}", "--protocol", "3.1.1"] if broker == "nats" else []
    return bench_e2e(bundle, RESULTS / "scaling" / f"{broker}-w{workers}", rates, seconds, "--machines", str(machines),
                     "--workers", str(workers), *nats)


def summary_row(broker: str, workers: int, run: dict) -> tuple[list, dict]:
    """The table row and JSON entry of one configuration: its highest held rate and that step's cost."""
    held = max(run["highest_held_msg_per_s"].values(), default=0.0)
    step = next((r for r in run["results"] if r["offered_msg_per_s"] == held), None)
    entry = {"broker": broker, "workers": workers, "protocol": "3.1.1" if broker == "nats" else "5", "held_msg_per_s": held,
             "paho_ceiling_msg_per_s": run["paho_ceiling"]["receive_msg_per_s"]}
    if step:
        entry.update({key: step.get(key) for key in ("p99_ms", "runtime_cpu_us_per_msg", "runtime_cores", "machine_busy_pct", "worker_msg_per_s")})
    cells = [broker, workers, entry["protocol"], f"{held:,.0f}"]
    cells += [f"{step['p99_ms']:.2f}", f"{step.get('runtime_cpu_us_per_msg', 0):.0f}", f"{step.get('runtime_cores', 0):.2f}",
              " / ".join(f"{r:,}" for r in step.get("worker_msg_per_s", [])), f"{step.get('machine_busy_pct', 0):.0f}"] if step else ["", "", "", "", ""]
    return cells, entry


def main() -> None:
    """Run every configuration and write the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--rates", default="1000,2000,3000,4000,5000,6000,8000,10000,12000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--machines", type=int, default=50)
    args = parser.parse_args()
    rows, entries = [], []
    with tempfile.TemporaryDirectory(prefix="linewatch-nats-") as folder:
        nats = NatsCluster(Path(folder), nodes=1).start()
        try:
            for broker, workers in CONFIGURATIONS:
                run = run_e2e(args.bundle, broker, workers, args.rates, args.seconds, args.machines, nats.mqtt_ports[0])
                cells, entry = summary_row(broker, workers, run)
                rows.append(cells)
                entries.append(entry)
        finally:
            nats.stop()
    write_results("summary", {"configurations": entries, "rates": args.rates, "seconds": args.seconds, "machines": args.machines},
                  ["broker", "workers", "protocol", "held msg/s", "p99 ms", "runtime CPU µs/msg", "runtime cores", "msg/s per worker",
                   "machine busy %"], rows,
                  f"Highest rate held (p99 ≤ the 20 ms budget, nothing lost) by `linewatch bench e2e` with 1 and 2 workers, {args.machines} "
                  "machines split by static filters, json samples; the cost columns are those of that step. The publisher, the broker and "
                  "the workers share this machine's cores. Command: `python -m benchmarks.scaling BUNDLE`.", folder="scaling")


if __name__ == "__main__":
    main()
