"""What a subscriber's receive costs in paho, and what would lower it: MQTT 3.1.1 against MQTT 5 (paho parses a
properties block on every PUBLISH), each with paho's own socket reads and with a buffered socket (one large
``recv`` serving many packets; paho reads every packet in three ``recv`` calls and waits in ``select`` for each).

A publisher process sends JSON samples as fast as it can through mosquitto on loopback; a subscriber process counts
them; the rate is messages over the span they arrived in. Variants alternate, ``--rounds`` each. Usage::

    python -m benchmarks.paho_receive [--messages 100000] [--rounds 3]

Writes ``results/paho_receive.{json,md}``. The buffered socket is an experiment kept here, not in the runtime: it
depends on paho internals (``Client._create_socket`` and the ``pending()`` check of its loop).
"""

from __future__ import annotations

import argparse
import statistics

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.common import write_results
from linewatch import e2e

FEATURES = ["current", "speed", "vibration", "bearing_temp", "pressure", "flow"]


class BufferedSocket:
    """``recv`` served from a buffer filled by reads of 64 KiB; ``pending()`` makes paho's loop skip waiting in select."""

    def __init__(self, sock) -> None:
        self._sock, self._buf, self._pos = sock, b"", 0

    def recv(self, n: int) -> bytes:
        """Up to ``n`` bytes, from the buffer when it holds any."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(max(n, 65536))
            if not buf:
                return buf
            self._buf, pos = buf, 0
        self._pos = min(pos + n, len(buf))
        return buf[pos : pos + n]

    def pending(self) -> int:
        """Bytes read but not yet taken (and what a TLS socket holds decrypted)."""
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner else 0)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """paho's client reading through a :class:`BufferedSocket`."""

    def _create_socket(self):
        return BufferedSocket(super()._create_socket())


def buffered_client(protocol: int) -> mqtt.Client:
    """For :func:`linewatch.e2e.count_received`: a client on a buffered socket."""
    return BufferedClient(CallbackAPIVersion.VERSION2, protocol=protocol)


def measure(port: int, protocol: str, buffered: bool, messages: list) -> dict:
    """One round: messages received per second by one subscriber variant."""
    result = e2e.receive_rate(port, messages, protocol=protocol, make_client=buffered_client if buffered else None)
    return {"received": result["received"], "msg_per_s": result["receive_msg_per_s"], "published_msg_per_s": result["publish_msg_per_s"]}


def main() -> None:
    """Alternate the four variants and write the median rate of each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    step = e2e.Step("paho", "json", 10_000, 50, args.messages / 10_000)
    messages = e2e.payloads(step, FEATURES, 1.0, 1.7e9, e2e.sample_values(len(FEATURES)))
    variants = [(p, b) for p in ("3.1.1", "5") for b in (False, True)]
    runs: dict = {f"{p} {'buffered' if b else 'paho'}": [] for p, b in variants}
    with e2e.LocalBroker() as broker:
        for _ in range(args.rounds):
            for protocol, buffered in variants:
                runs[f"{protocol} {'buffered' if buffered else 'paho'}"].append(measure(broker.port, protocol, buffered, messages))
    rows, summary = [], {}
    for name, results in runs.items():
        rates = [r["msg_per_s"] for r in results]
        summary[name] = {"median_msg_per_s": statistics.median(rates), "runs": results}
        rows.append([f"MQTT {name.split()[0]}", "buffered socket" if name.endswith("buffered") else "paho's reads",
                     f"{statistics.median(rates):,.0f}", ", ".join(f"{r:,.0f}" for r in rates),
                     f"{1e6 / statistics.median(rates):.1f}"])
    write_results("paho_receive", {"messages": args.messages, "rounds": args.rounds, "variants": summary},
                  ["protocol", "reads", "msg/s (median)", "rounds", "µs per message"], rows,
                  f"One paho subscriber process counting {args.messages:,} JSON samples a publisher process sends as fast as it can "
                  "through mosquitto on loopback (shipped config); variants alternate. Command: `python -m benchmarks.paho_receive`.")


if __name__ == "__main__":
    main()
