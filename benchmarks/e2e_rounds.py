"""One worker, several rounds: `linewatch bench e2e` (json, one worker behind mosquitto) run ``--rounds`` times, and per
offered rate how many rounds held the budget, the median and range of the p99, and the runtime's CPU per message.

On a machine whose cores the publisher, the broker and the runtime share, one run's highest held rate moves by a step
or two from run to run; rounds say how often a rate holds. Usage::

    python -m benchmarks.e2e_rounds BUNDLE [--rounds 5] [--rates 8000,10000,12000,14000,16000] [--protocol 5]

Writes ``results/e2e_rounds.{json,md}`` (every round's figures in the JSON).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.common import bench_e2e, rounds_arguments, write_results
from linewatch.e2e import highest_held


def main() -> None:
    """Run the rounds and write the per-rate summary."""
    parser = rounds_arguments(__doc__.split("\n\n")[0], 5, "8000,10000,12000,14000,16000")
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument("--budget-ms", type=float, default=20.0)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        for k in range(args.rounds):
            print(f"== round {k + 1} of {args.rounds}", flush=True)
            run = bench_e2e(args.bundle, Path(folder) / f"round-{k}", args.rates, args.seconds, "--protocol", args.protocol,
                            "--budget-ms", str(args.budget_ms))
            rounds.append([r for r in run["results"] if r["system"] == "linewatch"])
    rows, per_rate = [], []
    for rate in [float(r) for r in args.rates.split(",")]:
        steps = [step for run in rounds for step in run if step["offered_msg_per_s"] == rate]
        held = sum(highest_held([step], args.budget_ms) > 0 for step in steps)
        p99 = [step["p99_ms"] for step in steps]
        cpu = [step["runtime_cpu_us_per_msg"] for step in steps]
        cores = [step["runtime_cores"] for step in steps]
        per_rate.append({"offered_msg_per_s": rate, "rounds": len(steps), "rounds_held": held, "p99_ms": p99, "runtime_cpu_us_per_msg": cpu,
                         "runtime_cores": cores, "machine_busy_pct": [step["machine_busy_pct"] for step in steps]})
        rows.append([f"{rate:,.0f}", f"{held} of {len(steps)}", f"{statistics.median(p99):.2f}", f"{min(p99):.2f} - {max(p99):.2f}",
                     f"{statistics.median(cpu):.0f}", f"{statistics.median(cores):.2f}"])
    write_results("e2e_rounds", {"rounds": args.rounds, "rates": args.rates, "seconds": args.seconds, "protocol": args.protocol,
                                 "budget_ms": args.budget_ms, "per_rate": per_rate},
                  ["offered msg/s", "rounds within budget", "p99 ms (median)", "p99 ms (range)", "runtime CPU µs/msg (median)",
                   "runtime cores (median)"], rows,
                  f"`linewatch bench e2e` {args.rounds} times: one worker behind mosquitto (MQTT {args.protocol}), 50 machines, json, "
                  f"{args.seconds:g} s per step, budget {args.budget_ms:g} ms; a round holds a rate when its p99 is within the budget and "
                  "nothing is lost. The publisher, the broker, the event subscriber and the runtime share this machine's two cores. "
                  "Command: `python -m benchmarks.e2e_rounds BUNDLE`.")


if __name__ == "__main__":
    main()
