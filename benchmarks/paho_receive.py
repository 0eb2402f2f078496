"""What a subscriber's receive costs in paho: MQTT 3.1.1 against MQTT 5 (paho builds a ``Properties`` object for every
PUBLISH), and MQTT 5 with the runtime's own PUBLISH decoder (:mod:`edge_runtime.delivery.publish_decoder`), which
skips that object when a message carries no properties.

A publisher process sends JSON samples as fast as it can through mosquitto on loopback; a subscriber process counts
them; the rate is messages over the span they arrived in. Variants alternate, ``--rounds`` each. Usage::

    python -m benchmarks.paho_receive [--messages 100000] [--rounds 3]

Writes ``results/paho_receive.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.common import write_results
from edge_runtime.delivery import publish_decoder
from linewatch import e2e

FEATURES = ["current", "speed", "vibration", "bearing_temp", "pressure", "flow"]
VARIANTS = {"3.1.1": ("3.1.1", False), "5": ("5", False), "5 linewatch decoder": ("5", True)}


def client_with_decoder(protocol: int) -> mqtt.Client:
    """For :func:`linewatch.e2e.count_received`: a paho client in a process that decodes PUBLISH as the runtime does."""
    publish_decoder.install()
    return mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)


def measure(port: int, protocol: str, decoder: bool, messages: list) -> dict:
    """One round: messages received per second by one subscriber variant."""
    result = e2e.receive_rate(port, messages, protocol=protocol, make_client=client_with_decoder if decoder else None)
    return {"received": result["received"], "msg_per_s": result["receive_msg_per_s"], "published_msg_per_s": result["publish_msg_per_s"]}


def main() -> None:
    """Alternate the variants and write the median rate of each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    step = e2e.Step("paho", "json", 10_000, 50, args.messages / 10_000)
    messages = e2e.payloads(step, FEATURES, 1.0, 1.7e9, e2e.sample_values(len(FEATURES)))
    runs: dict = {name: [] for name in VARIANTS}
    with e2e.LocalBroker() as broker:
        for _ in range(args.rounds):
            for name, (protocol, decoder) in VARIANTS.items():
                runs[name].append(measure(broker.port, protocol, decoder, messages))
    rows, summary = [], {}
    for name, results in runs.items():
        rates = [r["msg_per_s"] for r in results]
        summary[name] = {"median_msg_per_s": statistics.median(rates), "runs": results}
        rows.append([f"MQTT {VARIANTS[name][0]}", "linewatch's" if VARIANTS[name][1] else "paho's",
                     f"{statistics.median(rates):,.0f}", ", ".join(f"{r:,.0f}" for r in rates),
                     f"{1e6 / statistics.median(rates):.1f}"])
    write_results("paho_receive", {"messages": args.messages, "rounds": args.rounds, "variants": summary},
                  ["protocol", "PUBLISH decoder", "msg/s (median)", "rounds", "µs per message"], rows,
                  f"One paho subscriber process counting {args.messages:,} JSON samples a publisher process sends as fast as it can "
                  "through mosquitto on loopback (shipped config); variants alternate. Command: `python -m benchmarks.paho_receive`.")


if __name__ == "__main__":
    main()
