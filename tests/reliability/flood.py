"""A publisher for the overload test, run as its own process:
``python flood.py PORT FLOOD_MACHINES FLOOD_S SLOW_MACHINES MAX_SLOW_S RATE_HZ FEATURE,FEATURE,...``.

Publishes live samples (``ts`` = wall clock) with QoS 0: FLOOD_MACHINES machines in turn as fast
as it can for FLOOD_S seconds (each machine's samples then come at about the bundle's rate, the
offered total far above what the runtime takes), then SLOW_MACHINES machines at RATE_HZ each until
its standard input closes (the test has seen what it waits for) or MAX_SLOW_S seconds pass.
Prints one JSON line per phase with its start, end and message count.
"""

import sys
import threading
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    """Run both phases and report them."""
    port, flood_machines, flood_s, slow_machines, max_slow_s, rate_hz = (int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                                                                    int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
    features = sys.argv[7].split(",")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)

    def send(machine: int, i: int) -> None:
        sample = {"ts": time.time(), **{f: 1.0 + 0.01 * ((i + j) % 7) for j, f in enumerate(features)}}
        client.publish(f"plant/l1/m{machine}/telemetry", orjson.dumps(sample), qos=0)

    started, sent = time.time(), 0
    while time.time() - started < flood_s:
        send(sent % flood_machines, sent // flood_machines)
        sent += 1
    print(orjson.dumps({"phase": "flood", "start": started, "end": time.time(), "messages": sent}).decode(), flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    started, ticks = time.time(), 0
    while not stop.is_set() and time.time() - started < max_slow_s:
        for machine in range(slow_machines):
            send(machine, ticks)
        ticks += 1
        time.sleep(max(0.0, started + ticks / rate_hz - time.time()))
    print(orjson.dumps({"phase": "slow", "start": started, "end": time.time(), "messages": ticks * slow_machines}).decode(), flush=True)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
