"""Runtime configuration: TOML file plus command-line overrides, validated into dataclasses.

Secrets never come from the command line: a broker password is read from a file or an
environment variable named in the config.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from edge_runtime.errors import ConfigError
from edge_runtime.outbox import SYNC_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

PAYLOAD_FORMATS = ("json", "tag", "chunk")


@dataclass
class BrokerConfig:
    """MQTT broker connection."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "linewatch"
    keepalive: int = 30
    protocol: str = "auto"  # auto (MQTT 5, falling back to 3.1.1), 5 or 3.1.1
    username: str = ""
    password_file: str = ""
    password_env: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0

    def password(self) -> str | None:
        """The password from ``password_file`` or ``password_env``, or None."""
        if self.password_file:
            try:
                return Path(self.password_file).read_text().strip()
            except OSError as error:
                raise ConfigError(f"broker.password_file: cannot read {self.password_file}: {error.strerror}") from None
        if self.password_env:
            if self.password_env not in os.environ:
                raise ConfigError(f"broker.password_env: environment variable {self.password_env} is not set")
            return os.environ[self.password_env]
        return None


@dataclass
class InputConfig:
    """One subscription: a topic template and the payload shape it carries."""

    topic: str = "plant/{line}/{machine}/telemetry"
    format: str = "json"
    time_key: str = "ts"
    qos: int = 0  # subscription QoS; sensor streams are usually QoS 0
    staleness_s: float = 5.0  # tag format: last value older than this is missing at a grid tick


@dataclass
class AlarmConfig:
    """Alarm semantics in the spirit of ISA-18.2."""

    on_k: int = 2  # raise when k of the last n windows exceed the threshold (on-delay)
    on_n: int = 3
    off_m: int = 3  # clear after m consecutive windows below threshold * (1 - deadband) (off-delay)
    deadband: float = 0.1


@dataclass
class ModelConfig:
    """One bundle and the inputs that feed it."""

    name: str = "model"
    bundle: str = ""
    backend: str = "onnxruntime"
    precision: str = "fp32"
    threshold: float | None = None
    event_topic: str = "linewatch/events/{stream}"
    inputs: list[InputConfig] = field(default_factory=lambda: [InputConfig()])
    alarm: AlarmConfig = field(default_factory=AlarmConfig)


@dataclass
class RuntimeConfig:
    """Latency budget, batching, health and storage."""

    latency_budget_ms: float = 100.0
    max_batch: int = 64
    queue_windows: int = 1024
    metrics_port: int = 0  # 0: no metrics endpoint
    metrics_host: str = "127.0.0.1"
    outbox: str = "linewatch-outbox.sqlite"
    outbox_max_events: int = 100_000  # beyond this (or outbox_max_mb) the oldest events are dropped, counted
    outbox_max_mb: float = 64.0
    outbox_sync: str = "full"  # full: a stored event survives a power cut; normal: a process crash only
    delivery_queue: int = 256  # scored batches waiting for the sink; beyond, telemetry is dropped and scoring waits
    max_streams: int = 10_000  # per model; a new stream key beyond this is refused and counted
    stream_idle_s: float = 3600.0  # forget a stream that sent no sample for this long (0: never)
    status_topic: str = "linewatch/{client_id}/status"
    error_topic: str = "linewatch/{client_id}/errors"
    errors_per_second: float = 5.0
    max_payload_bytes: int = 65536
    max_future_s: float = 60.0
    reorder_s: float = 0.0  # hold samples this long (sample time) to put out-of-order ones back in order; 0: drop them
    publish_scores: bool = False
    reload_poll_s: float = 2.0
    shutdown_timeout_s: float = 10.0


@dataclass
class Config:
    """The whole configuration."""

    broker: BrokerConfig = field(default_factory=BrokerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    models: list[ModelConfig] = field(default_factory=list)


def _build(cls, data: dict, where: str):
    """Instantiate a dataclass from a dict, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    values = {}
    defaults = cls()
    for key, value in data.items():
        default = getattr(defaults, key)
        if key == "inputs":
            values[key] = [_build(InputConfig, item, f"{where}.inputs[{i}]") for i, item in enumerate(value)]
        elif is_dataclass(default):
            values[key] = _build(type(default), value, f"{where}.{key}")
        elif key == "threshold":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{where}.threshold: expected a number")
            values[key] = float(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
            values[key] = value
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
            values[key] = type(default)(value) if isinstance(default, float) or float(value).is_integer() else value
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
            values[key] = value
        else:
            values[key] = value
    return cls(**values)


def parse_config(data: dict, base: Path | None = None) -> Config:
    """Validate a config dict; relative paths are resolved against ``base`` (the file's folder)."""
    models = data.get("models", [])
    if not isinstance(models, list):
        raise ConfigError("models: expected an array of tables ([[models]])")
    config = Config(
        broker=_build(BrokerConfig, data.get("broker", {}), "broker"),
        runtime=_build(RuntimeConfig, data.get("runtime", {}), "runtime"),
        models=[_build(ModelConfig, m, f"models[{i}]") for i, m in enumerate(models)],
    )
    unknown = sorted(set(data) - {"broker", "runtime", "models"})
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; expected broker, runtime, models")
    validate(config, base)
    return config


def _resolve(path: str, base: Path | None) -> str:
    return str(base / path) if path and base is not None and not Path(path).is_absolute() else path


def validate(config: Config, base: Path | None = None) -> None:
    """Cross-field checks; resolves relative paths in place."""
    if not config.models:
        raise ConfigError("no [[models]] configured")
    names = [m.name for m in config.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}")
    r = config.runtime
    if r.latency_budget_ms <= 0 or r.max_batch < 1 or r.queue_windows < r.max_batch:
        raise ConfigError("runtime: latency_budget_ms > 0, max_batch >= 1 and queue_windows >= max_batch are required")
    if r.outbox_sync not in SYNC_MODES:
        raise ConfigError(f"runtime.outbox_sync: expected one of {SYNC_MODES}, got {r.outbox_sync!r}")
    for key in ("outbox_max_events", "outbox_max_mb", "delivery_queue", "max_streams", "shutdown_timeout_s"):
        if getattr(r, key) <= 0:
            raise ConfigError(f"runtime.{key}: must be > 0, got {getattr(r, key)}")
    if r.stream_idle_s < 0:
        raise ConfigError(f"runtime.stream_idle_s: must be >= 0 (0: never), got {r.stream_idle_s}")
    r.outbox = _resolve(r.outbox, base)
    b = config.broker
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        setattr(b, key, _resolve(getattr(b, key), base))
    if b.protocol not in ("auto", "5", "3.1.1"):
        raise ConfigError(f"broker.protocol: expected auto, 5 or 3.1.1, got {b.protocol!r}")
    if bool(b.cert_file) != bool(b.key_file):
        raise ConfigError("broker: cert_file and key_file go together")
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        path = getattr(b, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"broker.{key}: {path} does not exist")
    if (b.ca_file or b.cert_file) and not b.tls:
        raise ConfigError("broker: ca_file/cert_file are set but tls is false")
    for i, m in enumerate(config.models):
        if not m.bundle:
            raise ConfigError(f"models[{i}] ({m.name}): bundle path is required")
        m.bundle = _resolve(m.bundle, base)
        if not m.inputs:
            raise ConfigError(f"models[{i}] ({m.name}): at least one [[models.inputs]] is required")
        for j, inp in enumerate(m.inputs):
            if inp.format not in PAYLOAD_FORMATS:
                raise ConfigError(f"models[{i}].inputs[{j}].format: expected one of {PAYLOAD_FORMATS}, got {inp.format!r}")
            if inp.format == "tag" and "{tag}" not in inp.topic:
                raise ConfigError(f"models[{i}].inputs[{j}].topic: the tag format needs a {{tag}} field in the template")
        a = m.alarm
        if not (1 <= a.on_k <= a.on_n) or a.off_m < 1 or not (0 <= a.deadband < 1):
            raise ConfigError(f"models[{i}].alarm: need 1 <= on_k <= on_n, off_m >= 1, 0 <= deadband < 1")


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Read a TOML file and apply dotted-key overrides such as ``{"broker.port": 1884}``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section == "models":
            for model in data.get("models", []):
                model[key] = value
        else:
            data.setdefault(section, {})[key] = value
    return parse_config(data, path.parent)
