"""The runtime as a systemd service: the shipped unit verifies, and the runtime speaks the notify protocol."""

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import need

UNIT = Path(__file__).parents[2] / "edge_runtime" / "linewatch.service"
HARDENING = ("StateDirectory=linewatch", "UMask=0077", "ProtectSystem=strict", "ProtectHome=true", "PrivateTmp=true",
             "NoNewPrivileges=true", "CapabilityBoundingSet=", "RestrictAddressFamilies=", "Type=notify", "WatchdogSec=")


def test_the_shipped_unit_is_hardened_and_verifies(tmp_path):
    text = UNIT.read_text()
    missing = [line for line in HARDENING if not any(row.startswith(line) for row in text.splitlines())]
    assert not missing, missing
    need(shutil.which("systemd-analyze") is not None, "needs systemd-analyze (Debian's systemd package)")
    linewatch = Path(sys.executable).with_name("linewatch")  # systemd-analyze checks that ExecStart's program exists
    unit = tmp_path / "linewatch.service"
    unit.write_text(text.replace("/opt/linewatch/venv/bin/linewatch", str(linewatch)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_runtime_says_ready_pings_the_watchdog_and_says_stopping(broker, runtime_bundle, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    config = tmp_path / "gw.toml"
    config.write_text(f'[broker]\nport = {broker.port}\n[runtime]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'[[models]]\nname = "pumps"\nbundle = "{runtime_bundle}"\n')
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}  # a ping at least every 0.2 s
    process = subprocess.Popen([sys.executable, "-m", "linewatch", "run", "--config", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        said = [notify.recv(256).decode() for _ in range(4)]
        assert said[0] == "READY=1" and said[1:] == ["WATCHDOG=1"] * 3, said
        process.send_signal(signal.SIGTERM)
        while (message := notify.recv(256).decode()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert process.wait(30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        notify.close()


@pytest.mark.parametrize("mode,refused", [(0o644, True), (0o640, False), (0o600, False)])
def test_a_password_file_open_to_others_is_refused_with_the_reason(runtime_bundle, tmp_path, mode, refused):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(mode)
    config = tmp_path / "gw.toml"
    config.write_text(f'[broker]\nusername = "lw"\npassword_file = "{secret}"\n[runtime]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'[[models]]\nname = "pumps"\nbundle = "{runtime_bundle}"\n')
    result = subprocess.run([sys.executable, "-m", "linewatch", "run", "--config", str(config), "--check"], capture_output=True, text=True,
                            timeout=120)
    if refused:
        assert result.returncode == 1 and f"{secret} is open to other users (mode 0644)" in result.stderr and "chmod 600" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
