"""What the status page costs: `linewatch bench e2e` with the page off and with it on and read every second (as an
open page does), alternating, back to back, on the same bundle and load.

Each run's results go to ``results/status_page/<off|on>-<round>/``; the summary (``results/status_page/summary.{json,md}``)
puts p99 and the runtime's CPU per message side by side per offered rate. Usage::

    python -m benchmarks.status_page BUNDLE [--rounds 2] [--rates 1000,2000,3000,4000,5000]
"""

from __future__ import annotations

import statistics

from benchmarks.common import RESULTS, bench_e2e, rounds_arguments, write_results


def run(bundle: str, page: bool, round_: int, rates: str, seconds: float) -> dict:
    """One `linewatch bench e2e` run, one worker behind mosquitto, the page off or on; returns its JSON."""
    print(f"== page {'on' if page else 'off'}, round {round_}", flush=True)
    return bench_e2e(bundle, RESULTS / "status_page" / f"{'on' if page else 'off'}-{round_}", rates, seconds,
                     *(["--status-page"] if page else []))


def main() -> None:
    """Alternate the page off and on, then write the side-by-side summary (medians over the rounds)."""
    args = rounds_arguments(__doc__.split("\n\n")[0], 2, "1000,2000,3000,4000,5000").parse_args()
    steps: dict[tuple[bool, float], list[dict]] = {}
    polls = []
    for round_ in range(1, args.rounds + 1):
        for page in (False, True):
            data = run(args.bundle, page, round_, args.rates, args.seconds)
            polls += [data["status_page_polls"]] if page else []
            for step in data["results"]:
                steps.setdefault((page, step["offered_msg_per_s"]), []).append(step)
    rows, summary = [], []
    for rate in sorted({rate for _, rate in steps}):
        off, on = steps.get((False, rate), []), steps.get((True, rate), [])
        if not off or not on:
            continue
        entry = {"offered_msg_per_s": rate}
        for name, runs in (("off", off), ("on", on)):
            entry[f"p99_ms_{name}"] = statistics.median(r["p99_ms"] for r in runs)
            entry[f"cpu_us_per_msg_{name}"] = statistics.median(r["runtime_cpu_us_per_msg"] for r in runs)
        summary.append(entry)
        rows.append([f"{rate:,.0f}", f"{entry['p99_ms_off']:.2f}", f"{entry['p99_ms_on']:.2f}", f"{entry['cpu_us_per_msg_off']:.0f}",
                     f"{entry['cpu_us_per_msg_on']:.0f}"])
    write_results("summary", {"rounds": args.rounds, "rates": args.rates, "status_page_polls": polls, "steps": summary},
                  ["offered msg/s", "p99 ms, page off", "p99 ms, page on and read", "runtime CPU µs/msg, off", "runtime CPU µs/msg, on"], rows,
                  f"`linewatch bench e2e` (json, 50 machines, one worker behind mosquitto, 20 ms budget), the status page off and on "
                  f"(its JSON read every second: {sum(polls)} reads in all), alternating over {args.rounds} rounds; medians over the rounds. "
                  "Command: `python -m benchmarks.status_page BUNDLE`.", folder="status_page")


if __name__ == "__main__":
    main()
