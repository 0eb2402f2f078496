"""Runtime configuration: TOML file plus command-line overrides, validated into dataclasses.

Validation is declarative: each field's type comes from its annotation (``int`` refuses 2.5,
``float`` refuses NaN and inf, ``bool`` refuses 1), and its choices or bounds from the field's
metadata (:func:`setting`). Cross-field rules (topic templates and their placeholders, paths,
alarm counts) follow in :func:`validate`. Secrets never come from the command line: a broker
password is read from a file or an environment variable named in the config.
"""

from __future__ import annotations

import copy
import math
import os
import string
import sys
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path

from edge_runtime.contract.alarms import AlarmConfig
from edge_runtime.contract.errors import ConfigError
from edge_runtime.contract.settings import setting
from edge_runtime.delivery.outbox import SYNC_MODES
from edge_runtime.ingest.topics import SHARED_PREFIX, template_for
from edge_runtime.state import state_directory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

PAYLOAD_FORMATS = ("json", "tag", "chunk", "condition", "sparkplug")
PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")


@dataclass
class BrokerConfig:
    """MQTT broker connection."""

    host: str = setting("127.0.0.1", help="MQTT broker address")
    port: int = setting(1883, lo=1, hi=65535, help="8883 for TLS by convention")
    client_id: str = setting("linewatch", help="also names the status and error topics")
    keepalive: int = setting(30, lo=0, hi=65535, help="seconds between keep-alive pings")
    protocol: str = setting("auto", choices=("auto", "5", "3.1.1"), help="auto: MQTT 5, falling back to 3.1.1")
    username: str = setting("", help="empty: no authentication")
    password_file: str = setting("", help="file holding the password (never put it on the command line)")
    password_env: str = setting("", help="or: name of an environment variable holding it")
    tls: bool = setting(False, help="TLS on; needs ca_file unless the system store trusts the broker")
    ca_file: str = setting("", help="CA certificate (PEM) that signed the broker's certificate")
    cert_file: str = setting("", help="client certificate (PEM), with key_file, for mutual TLS")
    key_file: str = setting("", help="the client certificate's private key (PEM), with cert_file")
    reconnect_min_s: float = setting(0.5, above=0, help="reconnect backoff starts here (rounded up to 1 s by paho)")
    reconnect_max_s: float = setting(30.0, above=0, help="...and doubles up to this")
    write_stall_s: float = setting(10.0, lo=0, help="a connection whose bytes waited this long with none acknowledged is closed "
                                   "and opened again (a broker that stopped reading, a TCP connection stuck); 0: never")
    session_expiry_s: int = setting(0, lo=0, hi=4_294_967_295, help="0: a clean session at every connect; > 0: a persistent "
                                    "session the broker keeps this long while the runtime is away, holding its QoS 1 samples "
                                    "(workers that must not lose samples while they restart; MQTT 3.1.1 brokers keep it by their own rule)")
    failover: list[str] = setting([], help="more brokers as \"host:port\", tried in turn after host:port when a connection "
                                          "fails (a broker cluster's other nodes); the same credentials and TLS settings")

    def endpoints(self) -> list[tuple[str, int]]:
        """``(host, port)`` of the broker, then of each failover broker, in the order they are tried."""
        found = [(self.host, self.port)]
        for entry in self.failover:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ConfigError(f"broker.failover: {entry!r} is not host:port")
            found.append((host, int(port)))
        return found

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

    topic: str = setting("plant/{line}/{machine}/telemetry", help="topic template; its {fields} become the stream key ({tag} names a feature in tag topics)")
    format: str = setting("json", choices=PAYLOAD_FORMATS, help="payload shape: json, tag (one scalar per topic), chunk (many samples), condition, sparkplug")
    time_key: str = setting("ts", help="JSON key of the sample time (epoch seconds or ISO 8601)")
    qos: int = setting(0, lo=0, hi=2, help="subscription QoS; sensor streams are usually QoS 0")
    staleness_s: float = setting(5.0, above=0, help="tag and sparkplug formats: last value older than this is missing at a grid tick")
    rebirth_interval_s: float = setting(10.0, above=0, help="sparkplug format: at most one rebirth request per node this often")
    condition: str = setting("", help="condition format: the conditional model's condition this topic carries (its value holds until changed)")


@dataclass
class CommissioningConfig:
    """Per-stream thresholds learned at the edge (see edge_runtime.scoring.commissioning)."""

    enabled: bool = setting(False, help="each stream learns its own threshold from its first scores, without alarming")
    period_s: float = setting(3600.0, lo=0, help="of each stream's sample time, without alarms, before its threshold is set")
    min_windows: int = setting(200, lo=10, help="...and at least this many windows")
    false_alarms_per_day: float = setting(1.0, above=0, help="the target, as in training")


@dataclass
class DriftConfig:
    """Drift events (see edge_runtime.scoring.drift)."""

    enabled: bool = setting(True, help="publish a drift event when recent scores depart from the calibration ones")
    windows: int = setting(100, lo=10, help="recent windows the share of high scores is taken over")
    raise_share: float = setting(0.5, above=0.1, hi=1, help="drift is raised at this share above the calibration 90th percentile (normal: 0.1)")
    clear_share: float = setting(0.2, above=0, hi=1, help="drift is cleared when the share falls to this")


@dataclass
class ModelConfig:
    """One bundle and the inputs that feed it."""

    name: str = setting("model", help="required when several models are configured; must be unique")
    bundle: str = setting("", help="required: bundle folder written by `linewatch export`")
    backend: str = setting("onnxruntime", choices=BACKENDS, help="onnxruntime | onnxruntime-cuda | onnxruntime-tensorrt | tensorrt")
    precision: str = setting("fp32", choices=PRECISIONS, help="which artifact: fp32 | fp16 | int8")
    allow_fallback: bool = setting(False, help="a GPU provider that fails to initialise may run on the next one (CPU) instead of failing")
    score_unseen_conditions: bool = setting(False, help="a conditional model decides windows whose conditions it never saw too (still counted)")
    threshold: float | None = setting(None, lo=0, help="override the bundle's calibrated threshold (absent: the bundle's)")
    event_topic: str = setting("linewatch/events/{stream}", help="{stream} and {model} are filled in")
    inputs: list[InputConfig] = field(default_factory=lambda: [InputConfig()])
    alarm: AlarmConfig = field(default_factory=AlarmConfig)
    commissioning: CommissioningConfig = field(default_factory=CommissioningConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)


@dataclass
class RuntimeConfig:
    """Latency budget, batching, health and storage."""

    latency_budget_ms: float = setting(100.0, above=0, help="a ceiling: windows decided later are counted as deadline misses")
    max_queue_delay_ms: float = setting(0.0, lo=0, hi=10_000, help="wait up to this long for a fuller batch (0: score at once)")
    max_batch: int = setting(64, lo=1, help="most windows per inference call")
    queue_windows: int = setting(1024, lo=1, help="pending windows per model before the stalest are shed")
    metrics_port: int = setting(0, lo=0, hi=65535, help="0: no metrics endpoint")
    metrics_host: str = setting("127.0.0.1", help="address the metrics endpoint listens on (loopback by default)")
    status_port: int = setting(0, lo=0, hi=65535, help="0: no status page; else the live status page and /status.json on this port")
    status_host: str = setting("127.0.0.1", help="address the status page listens on (loopback by default)")
    status_token_file: str = setting("", help="file holding a token the status page asks for (?token=... or a Bearer header; "
                                              "empty: none)")
    state_dir: str = setting("", help="absolute folder for what the runtime writes (outbox, learned thresholds); empty: "
                                      "$STATE_DIRECTORY from systemd, else /var/lib/linewatch for root, ~/.local/state/linewatch for others")
    outbox: str = setting("linewatch-outbox.sqlite", help="durable event outbox (SQLite): alarm transitions wait here for their "
                                                                "PUBACK; relative to state_dir")
    thresholds_file: str = setting("linewatch-thresholds.json", help="thresholds learned by commissioning, kept across restarts; "
                                                                           "relative to state_dir")
    control_topic: str = setting("linewatch/{client_id}/commission", help="{'model': ..., 'stream': ...}: commission again")
    control_token_file: str = setting("", help="file holding a shared token every commissioning request must carry as "
                                               "\"token\" (empty: none; the broker's ACL decides who may publish there)")
    outbox_max_events: int = setting(100_000, lo=1, help="beyond this (or outbox_max_mb) the oldest events are dropped, counted")
    outbox_max_mb: float = setting(64.0, above=0, help="size limit of the outbox in MB; beyond it the oldest events are dropped, counted")
    outbox_sync: str = setting("full", choices=SYNC_MODES, help="full: a stored event survives a power cut; normal: a crash only")
    delivery_queue: int = setting(256, lo=1, help="scored batches waiting for the sink; beyond, telemetry is dropped and scoring waits")
    max_streams: int = setting(10_000, lo=1, help="per model; a new stream key beyond this is refused and counted")
    stream_idle_s: float = setting(3600.0, lo=0, help="forget a stream that sent no sample for this long (0: never)")
    status_topic: str = setting("linewatch/{client_id}/status", help="retained online/offline status, with last will")
    handover_topic: str = setting("", help="retained per-stream state (in alarm, learned threshold) under <this>/<model>/<stream>, "
                                           "so a stream's next owner (a restarted or another worker) carries on; empty: off")
    error_topic: str = setting("linewatch/{client_id}/errors", help="bad input reports (rate-limited)")
    errors_per_second: float = setting(5.0, lo=0, help="most bad-input reports published per second")
    max_payload_bytes: int = setting(65536, lo=1, hi=268_435_455, help="MQTT's largest packet")
    max_future_s: float = setting(60.0, lo=0, help="sample times further ahead of the gateway's clock are refused")
    max_past_s: float = setting(604800.0, above=0, help="...and further behind it (7 days: sensors that buffer through an outage)")
    reorder_s: float = setting(0.0, lo=0, help="hold samples this long (sample time) to put out-of-order ones back in order "
                                                "(adds that much latency); 0: a sample not newer than the last is dropped")
    publish_scores: bool = setting(False, help="true: publish a 'score' event for every window too (QoS 0, not stored)")
    score_events: str = setting("window", choices=("window", "grouped"),
                                help="with publish_scores: 'window' publishes one score event per window; 'grouped' one "
                                     "linewatch.scores/1 message per stream per scored batch (chunks complete many windows at once)")
    reload_poll_s: float = setting(2.0, above=0, help="how often the bundle's files are checked for changes (SIGHUP reloads at once)")
    shutdown_timeout_s: float = setting(10.0, above=0, help="the whole shutdown (scoring, flushing, going offline) ends within this")
    silent_after_s: float = setting(300.0, lo=0, help="warn when a subscription delivered nothing for this long (0: never)")


@dataclass
class SparkplugConfig:
    """linewatch's events also as a Sparkplug B edge node (see edge_runtime.sparkplug.events)."""

    enabled: bool = setting(False, help="publish events also as a Sparkplug B edge node (its own connection; JSON events stay the record)")
    group: str = setting("linewatch", help="Sparkplug group id of linewatch's edge node")
    edge_node: str = setting("{client_id}", help="devices: one per model and stream, metrics score, threshold, alarm, drift")


@dataclass
class Config:
    """The whole configuration."""

    broker: BrokerConfig = field(default_factory=BrokerConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    sparkplug: SparkplugConfig = field(default_factory=SparkplugConfig)
    models: list[ModelConfig] = field(default_factory=list)


def _value(hint, value, where: str):
    """``value`` checked against a field's type ``hint``."""
    if hint is bool:
        if type(value) is not bool:
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if type(value) is not int:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float or hint == (float | None):
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if type(value) is not str:
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        if item is str:
            if not isinstance(value, list) or not all(type(entry) is str for entry in value):
                raise ConfigError(f"{where}: expected an array of strings, got {value!r}")
            return list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected an array of tables")
        return [_build(item, entry, f"{where}[{k}]") for k, entry in enumerate(value)]
    if is_dataclass(hint):
        return _build(hint, value, where)
    raise ConfigError(f"{where}: unsupported setting type {hint}")  # pragma: no cover - a programming error


def _check_rule(spec, value, where: str) -> None:
    rule = spec.metadata
    if rule.get("choices") is not None and value not in rule["choices"]:
        raise ConfigError(f"{where}: expected one of {list(rule['choices'])}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if rule.get("lo") is not None and value < rule["lo"]:
            raise ConfigError(f"{where}: must be >= {rule['lo']}, got {value}")
        if rule.get("hi") is not None and value > rule["hi"]:
            raise ConfigError(f"{where}: must be <= {rule['hi']}, got {value}")
        if rule.get("above") is not None and value <= rule["above"]:
            raise ConfigError(f"{where}: must be > {rule['above']}, got {value}")


def _build(cls, data: dict, where: str):
    """Instantiate a dataclass from a dict: unknown keys, wrong types and values outside a field's rule are refused."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        values[key] = _value(hints[key], value, f"{where}.{key}")
        _check_rule(known[key], values[key], f"{where}.{key}")
    return cls(**values)


def defaults_follow_rules() -> None:
    """Check every default against its own rule (a test calls this, so a default can never be refused)."""
    for cls in (BrokerConfig, InputConfig, AlarmConfig, CommissioningConfig, DriftConfig, ModelConfig, RuntimeConfig):
        for spec in fields(cls):
            if spec.default is not MISSING and spec.default is not None:
                _check_rule(spec, spec.default, f"{cls.__name__}.{spec.name}")


def parse_config(data: dict, base: Path | None = None) -> Config:
    """Validate a config dict; relative paths are resolved against ``base`` (the file's folder)."""
    models = data.get("models", [])
    if not isinstance(models, list):
        raise ConfigError("models: expected an array of tables ([[models]])")
    config = Config(
        broker=_build(BrokerConfig, data.get("broker", {}), "broker"),
        runtime=_build(RuntimeConfig, data.get("runtime", {}), "runtime"),
        sparkplug=_build(SparkplugConfig, data.get("sparkplug", {}), "sparkplug"),
        models=[_build(ModelConfig, m, f"models[{i}]") for i, m in enumerate(models)],
    )
    unknown = sorted(set(data) - {"broker", "runtime", "sparkplug", "models"})
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; expected broker, runtime, sparkplug, models")
    validate(config, base)
    return config


def _resolve(path: str, base: Path | None) -> str:
    return str(base / path) if path and base is not None and not Path(path).is_absolute() else path


def _check_private(path: str, where: str) -> None:
    """A secret's file must not be readable or writable by others (its group may read it)."""
    if not path:
        return
    mode = Path(path).stat().st_mode & 0o777
    if mode & 0o007:
        raise ConfigError(f"{where}: {path} is open to other users (mode {mode:04o}); it holds a secret: "
                          f"chmod 600 {path} (or 640 with the service's group)")


def _placeholders(template: str, where: str) -> set[str]:
    """The ``{name}`` fields of a publish topic template; positional fields, formats and wildcards are refused."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ConfigError(f"{where}: {error} in {template!r}") from None
    names = set()
    for literal, name, spec, conversion in parsed:
        if "+" in literal or "#" in literal:
            raise ConfigError(f"{where}: {template!r} holds an MQTT wildcard; events go to one topic")
        if name is not None:
            if not name.isidentifier() or spec or conversion:
                raise ConfigError(f"{where}: {{{name}}} is not a plain {{field}} in {template!r}")
            names.add(name)
    if not template or template.startswith("$"):
        raise ConfigError(f"{where}: {template!r} is not a topic linewatch may publish to")
    return names


def _check_topics(config: Config) -> None:
    """Every topic template against what will fill it, so that ``run`` never fails to format one."""
    r = config.runtime
    for key in ("status_topic", "error_topic", "control_topic"):
        extra = _placeholders(getattr(r, key), f"runtime.{key}") - {"client_id"}
        if extra:
            raise ConfigError(f"runtime.{key}: only {{client_id}} can be filled in, not {sorted(extra)}")
    handover = r.handover_topic
    if handover and (_placeholders(handover, "runtime.handover_topic") or handover.startswith("/") or handover.endswith("/")):
        raise ConfigError(f"runtime.handover_topic: {handover!r} is a topic prefix: no fields, no leading or trailing '/'")
    client_id = config.broker.client_id
    if not client_id or any(c in client_id for c in "/+#"):
        raise ConfigError(f"broker.client_id: {client_id!r} must be non-empty without '/', '+' or '#' (it goes into topics)")
    extra = _placeholders(config.sparkplug.edge_node, "sparkplug.edge_node") - {"client_id"}
    if extra:
        raise ConfigError(f"sparkplug.edge_node: only {{client_id}} can be filled in, not {sorted(extra)}")
    for key, value in (("group", config.sparkplug.group), ("edge_node", config.sparkplug.edge_node.format(client_id=client_id))):
        if not value or any(c in value for c in "/+#"):
            raise ConfigError(f"sparkplug.{key}: {value!r} must be a non-empty Sparkplug id without '/', '+' or '#'")
    for i, m in enumerate(config.models):
        common = None
        for j, inp in enumerate(m.inputs):
            where = f"models[{i}].inputs[{j}].topic"
            try:
                template = template_for(inp.topic.replace(WORKER_FIELD, "0"), inp.format)  # as any worker will see it
            except ValueError as error:
                raise ConfigError(f"{where}: {error}") from None
            if (inp.format == "tag") != ("tag" in template.fields):
                raise ConfigError(f"{where}: a {{tag}} field goes with format = \"tag\" and only with it")
            if (inp.format == "condition") != bool(inp.condition):
                raise ConfigError(f"models[{i}].inputs[{j}]: condition = \"<name>\" goes with format = \"condition\" and only with it")
            common = set(template.key_fields) if common is None else common & set(template.key_fields)
        allowed = {"stream", "model"} | (common or set())
        extra = _placeholders(m.event_topic, f"models[{i}].event_topic") - allowed
        if extra:
            raise ConfigError(f"models[{i}].event_topic: {sorted(extra)} cannot be filled in; use {sorted(allowed)} "
                              "(fields present in every input topic of this model)")


def validate(config: Config, base: Path | None = None) -> None:
    """Cross-field checks; resolves relative paths in place."""
    if not config.models:
        raise ConfigError("no [[models]] configured")
    names = [m.name for m in config.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be unique, got {names}")
    r = config.runtime
    if r.queue_windows < r.max_batch:
        raise ConfigError(f"runtime.queue_windows ({r.queue_windows}) must be at least max_batch ({r.max_batch})")
    if r.state_dir and not Path(r.state_dir).is_absolute():
        raise ConfigError(f"runtime.state_dir: {r.state_dir!r} must be an absolute path")
    state = state_directory(r.state_dir)
    r.outbox = _resolve(r.outbox, state)  # state lives in the state directory, never beside a read-only configuration
    r.thresholds_file = _resolve(r.thresholds_file, state)
    b = config.broker
    b.endpoints()  # refuses a failover entry that is not host:port
    if b.reconnect_max_s < b.reconnect_min_s:
        raise ConfigError("broker: reconnect_max_s must be at least reconnect_min_s")
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        setattr(b, key, _resolve(getattr(b, key), base))
    if bool(b.cert_file) != bool(b.key_file):
        raise ConfigError("broker: cert_file and key_file go together")
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        path = getattr(b, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"broker.{key}: {path} does not exist")
    for key in ("password_file", "key_file"):
        _check_private(getattr(b, key), f"broker.{key}")
    r.control_token_file = _resolve(r.control_token_file, base)
    if r.control_token_file:
        if not Path(r.control_token_file).is_file():
            raise ConfigError(f"runtime.control_token_file: {r.control_token_file} does not exist")
        _check_private(r.control_token_file, "runtime.control_token_file")
    if (b.ca_file or b.cert_file) and not b.tls:
        raise ConfigError("broker: ca_file/cert_file are set but tls is false")
    for i, m in enumerate(config.models):
        if not m.bundle:
            raise ConfigError(f"models[{i}] ({m.name}): bundle path is required")
        m.bundle = _resolve(m.bundle, base)
        if not m.inputs:
            raise ConfigError(f"models[{i}] ({m.name}): at least one [[models.inputs]] is required")
        if not m.drift.clear_share < m.drift.raise_share:
            raise ConfigError(f"models[{i}].drift: clear_share must be below raise_share")
        if not m.alarm.on_k <= m.alarm.on_n:
            raise ConfigError(f"models[{i}].alarm: on_k ({m.alarm.on_k}) cannot exceed on_n ({m.alarm.on_n})")
    _check_topics(config)


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


SECTIONS = (("broker", BrokerConfig), ("runtime", RuntimeConfig), ("sparkplug", SparkplugConfig), ("models", ModelConfig),
            ("models.alarm", AlarmConfig), ("models.commissioning", CommissioningConfig), ("models.drift", DriftConfig),
            ("models.inputs", InputConfig))


WORKER_FIELD = "{worker}"  # in an input topic: the worker's index (NATS partitions, static filters per worker)


def partitioned(config: Config) -> bool:
    """Whether the input topics split the streams between workers (``{worker}`` or a shared subscription)."""
    return any(WORKER_FIELD in i.topic or i.topic.startswith(SHARED_PREFIX) for m in config.models for i in m.inputs)


def for_worker(config: Config, worker: int | None) -> Config:
    """The configuration of worker ``worker`` (0, 1, ...) of a partitioned runtime, or ``config`` itself for None.

    A worker has its own client id (``<client_id>-w<k>``: its own session, status topic and Sparkplug node),
    its own outbox and learned-thresholds file (``-w<k>`` before the suffix), its own metrics and status ports (the
    configured ones plus ``k``), and its own share of the input: ``{worker}`` in an input topic becomes ``k``.
    """
    templated = [f"models[{i}].inputs[{j}]" for i, m in enumerate(config.models) for j, inp in enumerate(m.inputs) if WORKER_FIELD in inp.topic]
    if worker is None:
        if templated:
            raise ConfigError(f"{templated[0]}: {WORKER_FIELD} in the topic names a worker's partition; "
                              "run with --workers N (or --worker K, one per templated unit)")
        return config
    derived = copy.deepcopy(config)
    derived.broker.client_id = f"{config.broker.client_id}-w{worker}"
    r = derived.runtime
    r.outbox, r.thresholds_file = (_for_worker_file(path, worker) for path in (r.outbox, r.thresholds_file))
    for name in ("metrics_port", "status_port"):  # each worker serves its own, on the configured port plus its index
        port = getattr(r, name)
        if port:
            if port + worker > 65535:
                raise ConfigError(f"runtime.{name}: {port} + worker {worker} is not a port")
            setattr(r, name, port + worker)
    for model in derived.models:
        for entry in model.inputs:
            entry.topic = entry.topic.replace(WORKER_FIELD, str(worker))
    return derived


def _for_worker_file(path: str, worker: int) -> str:
    if path == ":memory:":
        return path
    where = Path(path)
    return str(where.with_name(f"{where.stem}-w{worker}{where.suffix}"))


def reference() -> list[tuple[str, str, str, object, str, str]]:
    """Every setting as ``(section, key, type, default, rule, help)``, from the dataclasses' own fields and metadata:
    the one source of the configuration reference and of the keys ``gateway.example.toml`` must show.
    """
    rows = []
    for section, cls in SECTIONS:
        hints = typing.get_type_hints(cls)
        for spec in fields(cls):
            if "help" not in spec.metadata:
                continue  # a nested table: it has its own section
            rule = spec.metadata
            parts = []
            if rule.get("choices"):
                parts.append(" | ".join(map(str, rule["choices"])))
            parts += [f"≥ {rule['lo']:g}"] if rule.get("lo") is not None else []
            parts += [f"≤ {rule['hi']:g}"] if rule.get("hi") is not None else []
            parts += [f"> {rule['above']:g}"] if rule.get("above") is not None else []
            type_name = getattr(hints[spec.name], "__name__", str(hints[spec.name]))
            default = spec.default_factory() if spec.default is MISSING else spec.default
            rows.append((section, spec.name, type_name, default, ", ".join(parts), rule["help"]))
    return rows
