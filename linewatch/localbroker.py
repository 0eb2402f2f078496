"""Throw-away local brokers (the demo, the tests): finding mosquitto, a free port, a config derived
from the shipped mosquitto.conf, and waiting for the broker to listen.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from importlib.resources import files
from pathlib import Path

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
