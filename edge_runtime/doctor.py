"""``linewatch doctor``: what this machine offers and what the configuration will get from it.

Each check is a :class:`Finding`: ``ok``, ``warn`` (works, but worth knowing) or ``fail`` (a blocker:
``linewatch run`` would not work as configured). Nothing here writes anything.
"""

from __future__ import annotations

import platform
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_runtime.contract.errors import LinewatchError

MIN_PYTHON = (3, 10)
BACKEND_PROVIDER = {"onnxruntime": "CPUExecutionProvider", "onnxruntime-cpu": "CPUExecutionProvider",
                    "onnxruntime-cuda": "CUDAExecutionProvider", "onnxruntime-tensorrt": "TensorrtExecutionProvider"}


@dataclass
class Finding:
    """One check's result."""

    check: str
    status: str  # ok, warn or fail
    detail: str


def machine_findings() -> list[Finding]:
    """Python, platform, ONNX Runtime and its providers, CUDA, TensorRT, the GPU, SQLite."""
    from edge_runtime.delivery.outbox import MIN_SQLITE

    found = []
    python = ".".join(map(str, sys.version_info[:3]))
    found.append(Finding("python", "ok" if sys.version_info[:2] >= MIN_PYTHON else "fail",
                         f"{platform.python_implementation()} {python} ({sys.executable})"
                         + ("" if sys.version_info[:2] >= MIN_PYTHON else "; linewatch needs 3.10 or newer")))
    jetson = _read("/etc/nv_tegra_release").split(",")[0].strip()
    found.append(Finding("platform", "ok", f"{platform.system()} {platform.release()} {platform.machine()}"
                         + (f"; Jetson {jetson}" if jetson else "")))
    providers = onnxruntime_providers()
    if providers is None:
        found.append(Finding("onnxruntime", "fail", "not installed: pip install linewatch installs it"))
        providers = []
    else:
        import onnxruntime

        found.append(Finding("onnxruntime", "ok", f"{onnxruntime.__version__}, providers {', '.join(providers)}"))
    found.append(Finding("cuda", "ok" if "CUDAExecutionProvider" in providers else "warn",
                         "the CUDA provider is available" if "CUDAExecutionProvider" in providers else
                         "no CUDA provider in this onnxruntime build (onnxruntime-gpu has it; on Jetson, NVIDIA's wheel for your JetPack)"))
    trt = tensorrt_version()
    trt_provider = "TensorrtExecutionProvider" in providers
    found.append(Finding("tensorrt", "ok" if trt or trt_provider else "warn",
                         (f"tensorrt {trt} (native engines)" if trt else "no tensorrt Python bindings (native engines unavailable)")
                         + ("; the ONNX Runtime TensorRT provider is available" if trt_provider else "")))
    found.append(Finding("gpu", "ok", gpu_name() or "none found"))
    found.append(Finding("sqlite", "ok" if sqlite3.sqlite_version_info >= MIN_SQLITE else "fail",
                         f"{sqlite3.sqlite_version}" + ("" if sqlite3.sqlite_version_info >= MIN_SQLITE else
                                                        f"; the outbox needs {'.'.join(map(str, MIN_SQLITE))} or newer")))
    return found


def onnxruntime_providers() -> list[str] | None:
    """ONNX Runtime's available providers, or None when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return list(onnxruntime.get_available_providers())


def tensorrt_version() -> str | None:
    """The TensorRT Python bindings' version, or None."""
    try:
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__)


def gpu_name() -> str:
    """The GPU's name: nvidia-smi on a PC or server, the device-tree model on a Jetson; empty when none."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
            if out:
                return "; ".join(line.replace(", ", " (driver ") + ")" for line in out.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
    return _read("/proc/device-tree/model").strip("\0").strip()


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def config_findings(config_path: str, timeout: float = 3.0) -> list[Finding]:
    """The configuration, the state directory, each bundle and its backend, the broker, and the clock."""
    from edge_runtime.config import load_config
    from edge_runtime.state import prepare, state_directory

    try:
        config = load_config(config_path)
    except LinewatchError as error:
        return [Finding("config", "fail", str(error))]
    found = [Finding("config", "ok", f"{config_path}: {len(config.models)} model(s)")]
    state = state_directory(config.runtime.state_dir)
    try:
        prepare(state, create=False)
        found.append(Finding("state", "ok", f"{state} {'is writable' if state.exists() else 'can be created'}"))
    except LinewatchError as error:
        found.append(Finding("state", "fail", str(error)))
    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.contract.timeparse import to_seconds

    providers = onnxruntime_providers() or []
    newest_bundle = 0.0
    for model in config.models:
        try:
            bundle = load_bundle(model.bundle)
        except LinewatchError as error:
            found.append(Finding(f"model {model.name}", "fail", str(error)))
            continue
        found += bundle_findings(model, bundle, providers)
        if bundle.manifest.get("created"):
            newest_bundle = max(newest_bundle, to_seconds(bundle.manifest["created"]))
    found.append(broker_finding(config.broker, timeout))
    found.append(clock_finding(newest_bundle))
    return found


def bundle_findings(model, bundle, providers: list[str]) -> list[Finding]:
    """A loaded (so verified) bundle's ONNX opset, and whether the configured backend can run here."""
    name = f"model {model.name}"
    try:
        onnx = bundle.artifact_path("onnx", model.precision)
        opsets = onnx_opsets(onnx)
        opset = ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in sorted(opsets.items()))
    except (LinewatchError, OSError, ValueError) as error:
        return [Finding(name, "fail", f"{bundle.name}: {error}")]
    found = [Finding(name, "ok", f"{bundle.name} (id {bundle.model_id}), {onnx.name}, opset {opset}, hashes verified")]
    backend = model.backend
    if backend == "tensorrt":
        engines = [a for a in bundle.manifest["artifacts"] if a["format"] == "tensorrt"]
        ok = bool(engines) and tensorrt_version() is not None
        found.append(Finding(f"{name} backend", "ok" if ok else "fail",
                             f"tensorrt: {len(engines)} engine(s) in the bundle" + ("" if ok else "; needs an engine built on this device "
                             "(linewatch export --tensorrt) and the tensorrt Python bindings")))
        return found
    wanted = BACKEND_PROVIDER[backend]
    if wanted in providers:
        found.append(Finding(f"{name} backend", "ok", f"{backend}: {wanted} available"))
    else:
        status = "warn" if model.allow_fallback else "fail"
        found.append(Finding(f"{name} backend", status, f"{backend}: {wanted} not in this onnxruntime build"
                             + ("; allow_fallback = true: it will run on the CPU" if model.allow_fallback else
                                "; linewatch run would refuse it (set backend = \"onnxruntime\", or allow_fallback = true)")))
    return found


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(data: bytes):
    """``(field number, wire type, value)`` of a protobuf message (length-delimited values as bytes)."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i : i + size], i + size
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"not an ONNX model (protobuf wire type {wire})")
        yield number, wire, value


def onnx_opsets(path: Path) -> dict[str, int]:
    """The operator sets an ONNX model imports (``ModelProto.opset_import``, field 8), read without the onnx package."""
    opsets = {}
    for number, wire, value in _fields(path.read_bytes()):
        if number == 8 and wire == 2:
            entry = dict((n, v) for n, _, v in _fields(value))
            opsets[entry.get(1, b"").decode()] = entry.get(2, 0)
    if not opsets:
        raise ValueError(f"{path.name}: no opset_import (not an ONNX model?)")
    return opsets


def broker_finding(broker, timeout: float) -> Finding:
    """A TCP connection to the broker, and the TLS handshake when ``tls = true``."""
    where = f"{broker.host}:{broker.port}"
    try:
        raw = socket.create_connection((broker.host, broker.port), timeout=timeout)
    except OSError as error:
        return Finding("broker", "fail", f"{where}: {error.strerror or error}; is the broker running and reachable from here?")
    with raw:
        if not broker.tls:
            return Finding("broker", "ok", f"{where} reachable (plain TCP)")
        try:
            context = ssl.create_default_context(cafile=broker.ca_file or None)
            if broker.cert_file:
                context.load_cert_chain(broker.cert_file, broker.key_file)
            with context.wrap_socket(raw, server_hostname=broker.host) as tls:
                return Finding("broker", "ok", f"{where} reachable, TLS {tls.version()} verified")
        except (ssl.SSLError, OSError) as error:
            reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
            return Finding("broker", "fail", f"{where}: TLS handshake failed ({reason}); does the broker speak TLS on this port, "
                           "and does ca_file hold the CA that signed its certificate?")


def clock_finding(newest_bundle: float) -> Finding:
    """The clock must not run behind the bundles it scores with, and should be synchronised (sample times are checked against it)."""
    now = time.time()
    if newest_bundle and now < newest_bundle:
        return Finding("clock", "fail", f"this clock reads {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}, before the bundle was "
                       "made: set the time (NTP) or every sample will look like it came from the future")
    synced = ""
    if shutil.which("timedatectl"):
        try:
            synced = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True,
                                    timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            synced = ""
    if synced == "no":
        return Finding("clock", "warn", "not synchronised by NTP: sample times are refused beyond runtime.max_future_s of this clock")
    return Finding("clock", "ok", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)) + (", NTP synchronised" if synced == "yes" else ""))


def diagnose(config_path: str | None = None) -> list[Finding]:
    """Every finding, the machine's first."""
    found = machine_findings()
    if config_path:
        found += config_findings(config_path)
    return found


def as_dicts(found: list[Finding]) -> list[dict]:
    """For ``--json``."""
    return [asdict(f) for f in found]


def blockers(found: list[Finding]) -> int:
    """How many findings stop ``linewatch run`` as configured."""
    return sum(f.status == "fail" for f in found)



