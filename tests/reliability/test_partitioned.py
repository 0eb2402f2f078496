"""Partitioned workers on a real 3-node NATS cluster (MQTT 3.1.1 with JetStream, the broker's own partition mapping):
``linewatch run --workers N`` against one process on the same input, then a node crash and a worker SIGKILL.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.contract.timeparse import iso
from edge_runtime.delivery.outbox import Outbox
from helpers import FEATURES, FLAP_THRESHOLD, TEST_DATA, need, wait_for
from linewatch.localbroker import free_port
from mqtt_helpers import NATS_SERVER, Collector, NatsCluster

pytestmark = pytest.mark.slow
MACHINES = 200  # streams: 4 lines x 50 machines
ROWS = 60  # samples per machine: (60 - 20) / 5 + 1 = 9 windows each
WINDOWS = (ROWS - 20) // 5 + 1  # per machine: window 20, stride 5
FLAP_ROWS = 25  # every other block of rows scaled far from normal: alarm transitions on every machine
START = 1_767_225_600.0  # 2026-01-01, one sample a second, as the bundle expects


@pytest.fixture
def cluster(tmp_path):
    """Three NATS nodes on loopback, MQTT state replicated on all three; the broker maps each machine's topic to one of 4 partitions."""
    need(NATS_SERVER is not None, "nats-server is not installed (apt-get install nats-server)")
    nodes = NatsCluster(tmp_path, nodes=3, partitions=4, replicas=3).start()  # sessions and held samples outlive a node
    yield nodes
    nodes.stop()


def samples(rows: range, machines=range(MACHINES)) -> list[tuple[str, bytes]]:
    """JSON samples of ``machines`` for ``rows`` of the plant's normal period, flapping, time-ordered."""
    header, *lines = (TEST_DATA / "plant.csv").read_text().splitlines()
    names = header.split(",")
    normal = [dict(zip(names, line.split(","))) for line in lines if line.split(",")[names.index("machine")] == "m1"][:ROWS]
    out = []
    for i in rows:
        scale = 6.0 if (i // FLAP_ROWS) % 2 else 1.0
        stamp = START + i
        for m in machines:
            body = {"ts": stamp, **{f: float(normal[i][f]) * scale for f in FEATURES}}
            out.append((f"plant/l{m % 4}/m{m}/telemetry", orjson.dumps(body)))
    return out


def accepted(port: int) -> float:
    """Messages a runtime accepted."""
    return counters(port, 'linewatch_messages_total{result="accepted"}').get('linewatch_messages_total{result="accepted"}', 0.0)


def warm_up(cluster: NatsCluster, *ports: int) -> bool:
    """Publish samples of throw-away machines until every runtime took one: the cluster's routes carry every
    subscription's interest from here on (right after SUBACK a node may not know of a subscriber on another node yet).
    """
    def taken() -> bool:
        publish(cluster.mqtt_ports[2], [(f"plant/warm/w{k}/telemetry", orjson.dumps({"ts": 1_767_000_000.0, **dict.fromkeys(FEATURES, 0.0)}))
                                        for k in range(32)])
        return all(accepted(port) > 0 for port in ports)

    return wait_for(taken, 60)


def publish(port: int, payloads: list[tuple[str, bytes]]) -> None:
    """QoS 1, every PUBACK awaited: the cluster holds every sample before this returns."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"plant-{port}", protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(500)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for start in range(0, len(payloads), MACHINES):  # one row of every machine at a time
        infos = [c.publish(topic, payload, qos=1) for topic, payload in payloads[start:start + MACHINES]]
        for info in infos:
            info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def stream_of(m: int) -> str:
    """Machine ``m``'s stream, as the runtimes key it."""
    return f"l{m % 4}/m{m}"


def hold_row(port: int, row: int, *sides: range) -> bool:
    """Publish ``row`` again to the machines whose stream some side (the runtimes at those status ports) does not hold
    at that row yet, until every side holds every machine there: the broker drops a few QoS 1 samples on a loaded
    machine (in its MQTT layer, as a bare paho subscriber sees too), and a stream's first or last sample lost leaves
    no later sample to count a gap by. A side that already holds the row drops the copy as late.
    """
    stamp, polls = iso(START + row), itertools.count(1)

    def held() -> bool:
        at = [{r["stream"] for page in side for r in streams(page) if r["last_sample"] == stamp} for side in sides]
        lacking = [m for m in range(MACHINES) if any(stream_of(m) not in found for found in at)]
        if lacking and next(polls) % 100 == 0:  # every few seconds: what is merely in flight arrives first
            publish(port, samples(range(row, row + 1), lacking))
        return not lacking

    return wait_for(held, 120)


def gateway(tmp_path: Path, name: str, cluster: NatsCluster, topic: str, events: str, metrics_port: int, bundle: Path,
            node: int = 0, session_expiry_s: int = 0, status_port: int = 0) -> Path:
    """A runtime configuration on the cluster (node ``node`` first, the others as failover), flapping alarm rule, its
    status page on ``status_port`` (each worker's on the port plus its index).
    """
    others = ", ".join(f'"127.0.0.1:{p}"' for j, p in enumerate(cluster.mqtt_ports) if j != node)
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[broker]\nport = {cluster.mqtt_ports[node]}\nclient_id = "{name}"\nprotocol = "3.1.1"\nreconnect_min_s = 0.2\n'
        f"reconnect_max_s = 1.0\nsession_expiry_s = {session_expiry_s}\nfailover = [{others}]\n"
        f'[runtime]\nstate_dir = "{tmp_path / name}"\nmetrics_port = {metrics_port}\nstatus_port = {status_port}\nmax_past_s = 1e10\n'
        'queue_windows = 4096\n'
        'publish_scores = true\nshutdown_timeout_s = 5.0\n'
        f'[[models]]\nname = "pumps"\nbundle = "{bundle}"\nthreshold = {FLAP_THRESHOLD}\nevent_topic = "{events}/{{stream}}"\n'
        "[models.alarm]\non_k = 1\non_n = 1\noff_m = 1\ndeadband = 0.0\n"
        f'[[models.inputs]]\ntopic = "{topic}"\nqos = 1\n')
    return path


def counters(port: int, name: str) -> dict[str, float]:
    """The samples of one metric family from a runtime's metrics endpoint, by labels (empty while it is not answering)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name)}


def scored(port: int) -> float:
    """Windows a runtime scored."""
    return sum(counters(port, "linewatch_windows_scored_total").values())


def streams(port: int) -> list[dict]:
    """Every stream a runtime holds, as its status page lists them (empty while it is not answering)."""
    try:
        body = orjson.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2).read())
    except OSError:
        return []
    return [row for model in body["models"] for row in model["streams"] if row["stream"].startswith("l")]  # not the warm-up's


def whole_streams(*ports: int) -> set[str]:
    """Streams with every window scored on the runtimes at ``ports``: every one of their samples arrived."""
    return {row["stream"] for port in ports for row in streams(port) if len(row["scores"]) == WINDOWS}


def refusals(*ports: int) -> dict:
    """What the runtimes refused or dropped, for a failure's message."""
    names = ("linewatch_messages_total", "linewatch_windows_dropped_total", "linewatch_sample_notes_total", "linewatch_sample_gaps_total")
    return {port: {k: v for name in names for k, v in counters(port, name).items() if v} for port in ports}


def start(config: Path, *extra: str) -> subprocess.Popen:
    """``linewatch run`` as its own process (a supervisor with ``--workers``)."""
    return subprocess.Popen([sys.executable, "-m", "linewatch", "run", "-c", str(config), "--log-level", "WARNING", *extra])


def online(collector: Collector, *client_ids: str) -> bool:
    """Every runtime announced itself online (after subscribing: the broker has its subscriptions)."""
    states = {topic.split("/")[1]: body.get("state") for topic, body, _ in list(collector.messages) if topic.endswith("/status")}
    return all(states.get(client_id) == "online" for client_id in client_ids)


def transitions(collector: Collector, prefix: str, streams: set[str]) -> Counter:
    """(stream, kind, window end) of every alarm transition of ``streams`` published under ``prefix``."""
    return Counter((b["stream"], b["kind"], b["window_end"]) for t, b, _ in list(collector.messages)
                   if t.startswith(prefix + "/") and is_event(b) and b["kind"] != "score" and b["stream"] in streams)


def is_event(body) -> bool:
    """A linewatch event (alarm transition, drift, or with publish_scores a window's score)."""
    return isinstance(body, dict) and body.get("schema") == "linewatch.event/1"


def stored(path: Path) -> int:
    """Durable events an outbox ever stored."""
    outbox = Outbox(path)
    try:
        return outbox.stored_ever()
    finally:
        outbox.close()


def worker_pid(supervisor: subprocess.Popen, k: int) -> int:
    """The process id of a supervisor's worker ``k``."""
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
    found = [pid for pid in children if Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")[-2:] == [b"--worker", str(k).encode()]]
    assert len(found) == 1, found
    return int(found[0])


def stop(process: subprocess.Popen) -> int:
    """SIGTERM, and the exit status."""
    process.send_signal(signal.SIGTERM)
    return process.wait(60)


def test_four_partitioned_workers_raise_the_alarms_one_process_raises(cluster, runtime_bundle, tmp_path):
    windows = MACHINES * WINDOWS
    base, single_port, status, single_status = free_port(), free_port(), free_port(), free_port()
    workers = gateway(tmp_path, "lw", cluster, "part/{worker}/plant/{line}/{machine}/telemetry", "partitioned", base, runtime_bundle,
                      status_port=status)
    # the mapping moves every sample to its partition: one process takes them all with a + level for the partition
    single = gateway(tmp_path, "single", cluster, "part/+/plant/{line}/{machine}/telemetry", "single", single_port, runtime_bundle, node=1,
                     status_port=single_status)
    collector = Collector(cluster.mqtt_ports[2], "partitioned/#", "single/#", "linewatch/+/status", protocol=mqtt.MQTTv311)
    supervisor, one = start(workers, "--workers", "4", "--metrics-port", str(base)), start(single)
    pages = range(status, status + 4)
    try:
        assert collector.wait_for(lambda c: online(c, "lw-w0", "lw-w1", "lw-w2", "lw-w3", "single"), 120), collector.messages[-5:]
        assert warm_up(cluster, single_port, *range(base, base + 4))
        publish(cluster.mqtt_ports[2], samples(range(1)))
        assert hold_row(cluster.mqtt_ports[2], 0, pages, range(single_status, single_status + 1))
        publish(cluster.mqtt_ports[2], samples(range(1, ROWS)))
        assert hold_row(cluster.mqtt_ports[2], ROWS - 1, pages, range(single_status, single_status + 1))
        per_worker = lambda: [scored(base + k) for k in range(4)]  # noqa: E731
        gaps = lambda: [sum(counters(port, "linewatch_sample_gaps_total").values()) for port in (single_port, *range(base, base + 4))]  # noqa: E731
        # every window of every sample that arrived is scored (a sample the broker did not deliver is a counted gap)
        assert wait_for(lambda: windows - sum(per_worker()) <= 5 * sum(gaps()[1:]) and windows - scored(single_port) <= 5 * gaps()[0],
                        120), (per_worker(), scored(single_port), refusals(single_port, *range(base, base + 4)))
        # compared on the streams whose every sample both sides got: with its first and last samples held, a stream falls
        # out only for a sample its side counted as a gap
        assert wait_for(lambda: MACHINES - len(whole_streams(*pages)) <= sum(gaps()[1:])
                        and MACHINES - len(whole_streams(single_status)) <= gaps()[0], 30), gaps()
        complete = whole_streams(*pages) & whole_streams(single_status)
        assert len(complete) >= MACHINES // 2, (len(complete), gaps())
        for prefix in ("partitioned", "single"):  # the events settle after the last window
            assert collector.wait_for(lambda c, p=prefix: {s for s, kind, _ in transitions(c, p, complete) if kind == "alarm_raised"} == complete
                                      and sum(transitions(c, p, complete).values()) == sum(transitions(c, "single", complete).values()), 30)
        expected = transitions(collector, "single", complete)
        assert transitions(collector, "partitioned", complete) == expected  # transition for transition, on the same samples
        assert set(expected.values()) == {1}  # each stream raised, and each transition made once
        assert all(n > 0 for n in per_worker())  # the broker spread the machines over the four workers
        held = [{row["stream"] for row in streams(page)} for page in pages]
        assert sum(len(h) for h in held) == len(set().union(*held)) == MACHINES  # each stream held by one worker alone
    finally:
        assert stop(supervisor) == 0 and stop(one) == 0
        collector.close()


def test_a_node_crash_and_a_worker_kill_lose_no_durable_event_and_leave_no_stream_dark(cluster, runtime_bundle, tmp_path):
    base, status = free_port(), free_port()
    config = gateway(tmp_path, "lw", cluster, "part/{worker}/plant/{line}/{machine}/telemetry", "events", base, runtime_bundle,
                     session_expiry_s=600, status_port=status)
    collector = Collector(cluster.mqtt_ports[2], "events/#", "linewatch/+/status", protocol=mqtt.MQTTv311)
    supervisor = start(config, "--workers", "4", "--metrics-port", str(base))
    try:
        assert collector.wait_for(lambda c: online(c, "lw-w0", "lw-w1", "lw-w2", "lw-w3"), 120)
        assert warm_up(cluster, *range(base, base + 4))
        publish(cluster.mqtt_ports[2], samples(range(0, 20)))
        cluster.kill(0)  # every worker was connected to node 0: each moves on to the next node, its session kept by the cluster
        publish(cluster.mqtt_ports[2], samples(range(20, 40)))
        os.kill(worker_pid(supervisor, 1), signal.SIGKILL)  # worker 1 dies mid-stream; the supervisor starts it again
        publish(cluster.mqtt_ports[2], samples(range(40, ROWS)))
        # every stream went on to its last sample on some worker, the restarted one's included
        assert hold_row(cluster.mqtt_ports[2], ROWS - 1, range(status, status + 4))
    finally:
        assert stop(supervisor) == 0
    outboxes = sorted((tmp_path / "lw").glob("linewatch-outbox-w*.sqlite"))
    assert len(outboxes) == 4
    durable = sum(stored(path) for path in outboxes)
    durable_events = [b for b in collector.events() if b["kind"] != "score"]
    delivered = {b["id"] for b in durable_events}
    assert durable > 0 and len(delivered) == durable  # every durable event any worker stored reached the subscriber
    keys = Counter(b["key"] for b in durable_events)
    assert all(n <= 2 for n in keys.values())  # a decision made twice (the restarted worker replaying) is recognisable by its key
