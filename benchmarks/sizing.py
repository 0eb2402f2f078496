"""A sizing model for gateways and plants, from what `benchmarks.scaling` measured here and published broker figures.

The model: workers share nothing but the broker, so a gateway's capacity is its number of worker cores times what one
worker holds. What one worker holds is the lower of two figures measured here: the highest rate one worker held within
the budget, and what a core gives at the runtime's CPU per message (the steps it held) at a utilisation target that
leaves room for bursts. How much a second worker costs per message against the first, each worker carrying the same
rate (measured here), gives the scaling efficiency per core added: a gateway that adds a core adds a worker at the
rate the first one carries, and a worker's CPU per message falls as its own rate rises (larger batches, more packets
per pass of its network loop), so two workers at the same *total* rate would charge the second worker for running at
half the rate. Jetson cores are
slower than this machine's: their factor is an assumption until `benchmarks.scaling` runs on the device. Usage::

    python -m benchmarks.sizing

Reads ``results/scaling/{mosquitto-w1,mosquitto-w2}/e2e.json``; writes ``results/scaling/sizing.{json,md}``.
"""

from __future__ import annotations

import json
import math
import statistics

from benchmarks.common import RESULTS, write_results

UTILISATION = 0.7  # a worker core kept at most 70 % busy on average leaves room for bursts within the latency budget
OS_CORES = 1  # the operating system, the network stack, metrics and the supervisor
JETSON_CORE_FACTOR = 0.5  # an Arm Cortex-A78AE core against this machine's x86 core for this Python workload (assumed)
GATEWAYS = [("x86, 4 cores", 4, 1.0), ("x86, 8 cores", 8, 1.0), ("x86, 12 cores", 12, 1.0),
            ("Jetson Orin NX, 8 cores", 8, JETSON_CORE_FACTOR), ("Jetson AGX Orin, 12 cores", 12, JETSON_CORE_FACTOR)]
PLANT_MACHINES = 100_000
SPARE_GATEWAYS = 1  # the partitions of a gateway that fails move to the others: they need room for them
SAMPLES_PER_MACHINE_S = 1.0  # one JSON message per sample
# EMQX 4.3 performance test report: a 5-node cluster of 32-core, 64 GB hosts carried 500,000 QoS 1 messages a second
# (50-byte payloads). https://www.emqx.com/en/resources/emqx-v-4-3-0-ten-million-connections-performance-test-report
EMQX_QOS1_MSG_PER_S, EMQX_NODES, EMQX_CORES_PER_NODE = 500_000, 5, 32


def held_steps(run: dict) -> list[dict]:
    """The steps a run held: p99 within its budget, nothing lost, and the cost measured."""
    return [r for r in run["results"] if r["lost"] == 0 and r["p99_ms"] <= run["budget_ms"] and "runtime_cpu_us_per_msg" in r]


def loaded(steps: list[dict]) -> list[dict]:
    """The steps at 2,000 msg/s or more (below, idle threads weigh on the cost per message), or all when none is."""
    return [r for r in steps if r["offered_msg_per_s"] >= 2000] or steps


def cost_ratios(cost_one: dict[float, float], steps_two: list[dict], per_worker_rate: bool) -> list[float]:
    """One worker's CPU per message over two workers', per rate matched at the same rate per worker (one worker at
    ``r`` against two at ``2r``) or at the same total rate.
    """
    ratios = []
    for step in steps_two:
        rate = step["offered_msg_per_s"] / (2 if per_worker_rate else 1)
        if rate in cost_one:
            ratios.append(round(cost_one[rate] / step["runtime_cpu_us_per_msg"], 3))
    return ratios


def efficiency_of(ratios: list[float]) -> float:
    """The median ratio, at most 1: a second worker never counts more than the first."""
    return min(1.0, statistics.median(ratios)) if ratios else float("nan")


def main() -> None:
    """Fit the per-core figures, apply them to the gateways and the plant, and write the tables."""
    one = json.loads((RESULTS / "scaling" / "mosquitto-w1" / "e2e.json").read_text())
    two = json.loads((RESULTS / "scaling" / "mosquitto-w2" / "e2e.json").read_text())
    steps_one, steps_two = loaded(held_steps(one)), loaded(held_steps(two))
    cpu_us = statistics.median(r["runtime_cpu_us_per_msg"] for r in steps_one)
    per_core = 1e6 / cpu_us * UTILISATION
    held = max(one["highest_held_msg_per_s"].values())
    per_worker = min(per_core, held)
    cost_one = {r["offered_msg_per_s"]: r["runtime_cpu_us_per_msg"] for r in steps_one}
    ratios = cost_ratios(cost_one, steps_two, per_worker_rate=True)
    efficiency, same_total = efficiency_of(ratios), efficiency_of(cost_ratios(cost_one, steps_two, per_worker_rate=False))

    rows, gateways = [], []
    for name, cores, factor in GATEWAYS:
        for broker_here in (False, True):
            workers = cores - OS_CORES - (1 if broker_here else 0)
            capacity = per_worker * factor * (1 + (workers - 1) * efficiency)
            gateways.append({"gateway": name, "cores": cores, "broker_on_gateway": broker_here, "workers": workers,
                             "msg_per_s": round(capacity, -2)})
            rows.append([name, "on the gateway" if broker_here else "elsewhere", workers, f"{round(capacity, -2):,.0f}"])
    plant_rate = PLANT_MACHINES * SAMPLES_PER_MACHINE_S
    eight = next(g for g in gateways if g["gateway"] == "x86, 8 cores" and not g["broker_on_gateway"])
    broker_cores = plant_rate / (EMQX_QOS1_MSG_PER_S / (EMQX_NODES * EMQX_CORES_PER_NODE))
    for_the_load = math.ceil(plant_rate / eight["msg_per_s"])
    plant = {"machines": PLANT_MACHINES, "msg_per_s": plant_rate, "gateways_for_the_load": for_the_load,
             "gateways_x86_8_cores": for_the_load + SPARE_GATEWAYS, "broker_cores_at_emqx_published_rate": math.ceil(broker_cores)}
    rows.append([f"plant of {PLANT_MACHINES:,} machines at one sample a second",
                 f"a cluster of {plant['broker_cores_at_emqx_published_rate']} cores at EMQX's published QoS 1 rate",
                 f"{plant['gateways_x86_8_cores']} gateways of 8 cores ({for_the_load} for the load, {SPARE_GATEWAYS} spare)",
                 f"{plant_rate:,.0f}"])
    write_results("sizing", {"cpu_us_per_msg_one_worker": cpu_us, "per_core_msg_per_s": round(per_core), "utilisation": UTILISATION,
                             "one_worker_held_msg_per_s": held, "per_worker_msg_per_s": round(per_worker),
                             "second_worker_efficiency": round(efficiency, 3), "second_worker_ratios": ratios,
                             "second_worker_ratio_at_the_same_total_rate": round(same_total, 3), "jetson_core_factor": JETSON_CORE_FACTOR,
                             "os_cores": OS_CORES, "gateways": gateways, "plant": plant, "emqx_published_qos1_msg_per_s": EMQX_QOS1_MSG_PER_S},
                  ["gateway", "broker", "workers", "msg/s at p99 within budget (model)"], rows,
                  f"Model: one worker per core left after {OS_CORES} for the system (and one for the broker when it runs on the gateway); "
                  f"a worker holds {per_worker:,.0f} msg/s, the lower of what one worker held here within the budget ({held:,.0f}) and "
                  f"what a core gives at {cpu_us:.0f} µs of CPU per message (measured here) and {UTILISATION:.0%} utilisation "
                  f"({per_core:,.0f}); each added worker counts {efficiency:.2f} of the first (one worker's CPU per message over "
                  f"two workers', each carrying the same rate, measured here: {min(ratios):.2f} to {max(ratios):.2f} over {len(ratios)} "
                  f"rates, the median at most 1; {same_total:.2f} at the same total rate, where each of two workers runs at half the "
                  f"rate and batches less); Jetson cores count {JETSON_CORE_FACTOR} of this machine's (assumed until measured). "
                  f"Plant: the gateways the load needs, plus {SPARE_GATEWAYS} spare. "
                  "Broker: EMQX's published 5-node, 32-core cluster carried 500,000 QoS 1 msg/s. Command: `python -m benchmarks.sizing`.",
                  folder="scaling")


if __name__ == "__main__":
    main()
