"""Throw-away local brokers (the demo, the tests, the benchmarks): finding mosquitto, a free port, a config derived
from the shipped mosquitto.conf, and waiting for the broker to listen; a NATS cluster speaking MQTT on loopback.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from importlib.resources import files
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.contract.errors import BrokerError

SHIPPED = files("edge_runtime") / "mosquitto.conf"
TUNING_KEYS = ("set_tcp_nodelay", "max_queued_messages", "max_inflight_messages")


def tuning_lines() -> list[str]:
    """The performance settings of the shipped config (no listener, security or storage lines)."""
    return [line for line in SHIPPED.read_text().splitlines() if line.split(" ", 1)[0] in TUNING_KEYS]


def loopback_config(port: int, anonymous: bool = True, extra: str = "") -> str:
    """A config for a throw-away broker on 127.0.0.1:``port`` with the shipped tuning."""
    lines = [f"listener {port} 127.0.0.1", f"allow_anonymous {'true' if anonymous else 'false'}", *tuning_lines(),
             "persistence false", "log_dest stderr", "log_type error"]
    return "\n".join(lines) + "\n" + extra


def find_mosquitto() -> str | None:
    """The mosquitto binary on the PATH (or Debian's /usr/sbin), if installed."""
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def find_nats_server() -> str | None:
    """The nats-server binary on the PATH (or Debian's /usr/sbin), if installed."""
    return shutil.which("nats-server") or next((p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Wait until ``port`` accepts connections; raise :class:`BrokerError` if ``process`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None:
                raise BrokerError(f"the broker exited with code {process.returncode}") from None
            time.sleep(0.05)
    raise BrokerError(f"the broker did not open port {port} within {timeout:.0f} s")


def start_mosquitto(folder: Path, port: int | None = None, extra: str = "") -> tuple[int, subprocess.Popen]:
    """Mosquitto on 127.0.0.1 (a free port unless ``port``) with the shipped tuning, config in ``folder``; returns once it listens."""
    binary = find_mosquitto()
    if binary is None:
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    port = port or free_port()
    config = folder / "mosquitto.conf"
    config.write_text(loopback_config(port, True, extra))
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_port(port, process)
    return port, process


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a child process (a broker, a runtime under test), killing it if it does not stop within ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class NatsCluster:
    """``nodes`` nats-server processes clustered on loopback, each with JetStream and an MQTT listener (MQTT 3.1.1 only).

    ``partitions`` > 0 adds a subject mapping that sends ``plant/<line>/<machine>/telemetry`` to
    ``part/<k>/plant/<line>/<machine>/telemetry``, k = partition(partitions, line, machine): the broker decides which
    worker owns each machine. MQTT sessions and retained messages are replicated on every node.
    """

    def __init__(self, folder: Path, nodes: int = 3, partitions: int = 0, replicas: int = 1) -> None:
        self.folder = folder
        self.mqtt_ports = [free_port() for _ in range(nodes)]
        self.client_ports = [free_port() for _ in range(nodes)]
        self.route_ports = [free_port() for _ in range(nodes)]
        self.processes: list[subprocess.Popen | None] = [None] * nodes
        mapping = ('mappings = { "plant.*.*.telemetry": '
                   f'"part.{{{{partition({partitions},1,2)}}}}.plant.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.telemetry" }}\n') if partitions else ""
        replicas_line = f", stream_replicas: {replicas}" if replicas > 1 else ""
        for k in range(nodes):
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != k)
            (folder / f"nats-{k}.conf").write_text(
                f"server_name: n{k}\nlisten: 127.0.0.1:{self.client_ports[k]}\n"
                f'jetstream {{ store_dir: "{folder}/js-{k}" }}\n'
                + (f"cluster {{ name: linewatch, listen: 127.0.0.1:{self.route_ports[k]}, routes: [{routes}] }}\n" if nodes > 1 else "")
                + f"mqtt {{ listen: 127.0.0.1:{self.mqtt_ports[k]}{replicas_line} }}\n" + mapping)

    def start(self, k: int | None = None) -> NatsCluster:
        """Start every node (or node ``k``), then wait until each accepts MQTT connections with its JetStream ready."""
        binary = find_nats_server()
        if binary is None:
            raise BrokerError("nats-server is not installed (apt-get install nats-server)")
        for j in range(len(self.processes)) if k is None else [k]:
            log = (self.folder / f"nats-{j}.log").open("ab")
            self.processes[j] = subprocess.Popen([binary, "-c", str(self.folder / f"nats-{j}.conf")], stdout=log, stderr=log)
        for j in range(len(self.processes)) if k is None else [k]:
            wait_for_port(self.mqtt_ports[j], self.processes[j], timeout=30)
        deadline = time.monotonic() + 60
        while not self._mqtt_ready():
            if time.monotonic() > deadline:
                raise BrokerError("the NATS cluster's MQTT did not become ready within 60 s (JetStream meta leader, streams)")
            time.sleep(0.2)
        return self

    def _mqtt_ready(self) -> bool:
        """Every running node takes an MQTT session (the first ones wait for JetStream's meta leader and MQTT streams)."""
        for port, process in zip(self.mqtt_ports, self.processes):
            if process is None or process.poll() is not None:
                continue
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{port}", protocol=mqtt.MQTTv311)
            connected = threading.Event()
            c.on_connect = lambda client, userdata, flags, code, properties, done=connected: code == 0 and done.set()
            try:
                c.connect("127.0.0.1", port, keepalive=5)
            except OSError:
                return False
            c.loop_start()
            ok = connected.wait(5)
            c.disconnect()
            c.loop_stop()
            if not ok:
                return False
        return True

    def kill(self, k: int) -> None:
        """SIGKILL node ``k``: a crash, not a shutdown."""
        self.processes[k].kill()
        self.processes[k].wait(10)

    def stop(self) -> None:
        """Stop every node."""
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
