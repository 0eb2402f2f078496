"""A publisher for the overload test, run as its own process:
``python flood.py PORT MACHINES FLOOD_S SLOW_S SLOW_RATE FEATURE,FEATURE,...``.

Publishes live samples (``ts`` = wall clock) of MACHINES machines with QoS 0: as fast as it can
for FLOOD_S seconds, then SLOW_RATE messages a second for SLOW_S seconds. Prints one JSON line per
phase with its start, end and message count.
"""

import sys
import threading
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    """Run both phases and report them."""
    port, machines, flood_s, slow_s, slow_rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    features = sys.argv[6].split(",")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)
    topics = [f"plant/l1/m{i}/telemetry" for i in range(machines)]
    last = 0.0

    def send(i: int) -> None:
        nonlocal last
        last = max(time.time(), last + 1e-6)  # strictly increasing sample times
        client.publish(topics[i % machines], orjson.dumps({"ts": last, **{f: 1.0 + 0.01 * ((i + j) % 7) for j, f in enumerate(features)}}),
                       qos=0)

    started = time.time()
    sent = 0
    while time.time() - started < flood_s:
        send(sent)
        sent += 1
    print(orjson.dumps({"phase": "flood", "start": started, "end": time.time(), "messages": sent}).decode(), flush=True)
    started, count = time.time(), 0
    while time.time() - started < slow_s:
        send(sent + count)
        count += 1
        time.sleep(max(0.0, started + count / slow_rate - time.time()))
    print(orjson.dumps({"phase": "slow", "start": started, "end": time.time(), "messages": count}).decode(), flush=True)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
