"""The model bundle: the one contract between the export stage and the runtime.

A bundle is a folder holding ``bundle.json`` (the manifest) and its artifacts. This module
owns the schema: export writes manifests with :func:`write_manifest`, the runtime reads them
with :func:`load_bundle`, which validates the schema and verifies every artifact's sha256 and
size. Nothing here unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contract.alarm_rate import TAIL_PEAKS
from edge_runtime.contract.errors import BundleError

MANIFEST = "bundle.json"
SCHEMA_VERSION = 1
READABLE_VERSIONS = (1,)
INPUT_NAME = "window"
CONDITION_NAME = "condition"  # a conditional model's second graph input: the operating conditions at the window's last sample
OUTPUT_NAMES = ("score", "feature_error")

# key -> expected type(s) for the top level and the nested sections the runtime relies on
_REQUIRED = {
    "schema_version": int,
    "name": str,
    "model": dict,
    "input": dict,
    "graph": dict,
    "threshold": dict,
    "artifacts": list,
    "training": dict,
    "versions": dict,
}
_REQUIRED_INPUT = {"window": int, "stride": int, "features": list, "sample_period": (int, float), "max_gap": (int, float)}
_REQUIRED_THRESHOLD = {"method": str, "value": (int, float), "calibration_quantiles": dict}
_REQUIRED_ARTIFACT = {"file": str, "format": str, "precision": str, "sha256": str, "bytes": int, "parity": dict}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_types(section: dict, required: dict, where: str) -> None:
    for key, expected in required.items():
        if key not in section:
            raise BundleError(f"{where}: missing key '{key}'")
        if not isinstance(section[key], expected) or isinstance(section[key], bool):
            raise BundleError(f"{where}: '{key}' should be {expected}, got {type(section[key]).__name__}")


def validate_manifest(manifest: dict, where: str = MANIFEST) -> None:
    """Raise :class:`BundleError` unless ``manifest`` follows the schema this build reads."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object")
    version = manifest.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{where}: schema_version {version!r} is not supported; this build reads {list(READABLE_VERSIONS)}")
    _check_types(manifest, _REQUIRED, where)
    _check_types(manifest["input"], _REQUIRED_INPUT, f"{where} input")
    _check_types(manifest["threshold"], _REQUIRED_THRESHOLD, f"{where} threshold")
    spec = manifest["input"]
    if spec["window"] < 1 or spec["stride"] < 1:
        raise BundleError(f"{where} input: window and stride must be positive")
    if not (math.isfinite(spec["sample_period"]) and spec["sample_period"] > 0):
        raise BundleError(f"{where} input: sample_period must be a positive number of seconds, got {spec['sample_period']}")
    if not (math.isfinite(spec["max_gap"]) and spec["max_gap"] >= spec["sample_period"]):
        raise BundleError(f"{where} input: max_gap must be at least sample_period, got {spec['max_gap']}")
    if not spec["features"]:
        raise BundleError(f"{where} input: no features")
    for i, feature in enumerate(spec["features"]):
        if not isinstance(feature, dict) or not isinstance(feature.get("name"), str):
            raise BundleError(f"{where} input: features[{i}] must be an object with a 'name'")
    names = [f["name"] for f in spec["features"]]
    if len(set(names)) != len(names):
        raise BundleError(f"{where} input: feature names repeat: {names}")
    threshold = manifest["threshold"]["value"]
    if not (math.isfinite(threshold) and threshold >= 0):
        raise BundleError(f"{where} threshold: value must be a finite number >= 0, got {threshold} (a NaN threshold never alarms)")
    for entry in manifest["graph"].get("inputs", [])[:1]:
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if isinstance(shape, list) and len(shape) == 3 and shape[1:] != [spec["window"], len(names)]:
            raise BundleError(f"{where} graph: input shape {shape} does not match window {spec['window']} x {len(names)} features")
    if not manifest["artifacts"]:
        raise BundleError(f"{where}: no artifacts")
    for i, artifact in enumerate(manifest["artifacts"]):
        _check_types(artifact, _REQUIRED_ARTIFACT, f"{where} artifacts[{i}]")
        if Path(artifact["file"]).name != artifact["file"]:
            raise BundleError(f"{where} artifacts[{i}]: file must be a plain name inside the bundle, got {artifact['file']!r}")


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle: its folder and manifest, with typed accessors."""

    path: Path
    manifest: dict
    model_id: str = ""  # sha256 of the manifest file, first 16 hex digits: the identity events carry

    @property
    def name(self) -> str:
        """The model's name."""
        return self.manifest["name"]

    @property
    def features(self) -> list[str]:
        """Ordered feature names of the input window."""
        return [f["name"] for f in self.manifest["input"]["features"]]

    @property
    def window(self) -> int:
        """Samples per window."""
        return self.manifest["input"]["window"]

    @property
    def stride(self) -> int:
        """Samples between scored windows."""
        return self.manifest["input"]["stride"]

    @property
    def sample_period(self) -> float:
        """Seconds between samples on the model's grid."""
        return float(self.manifest["input"]["sample_period"])

    @property
    def max_gap(self) -> float:
        """Longest gap in seconds that is held over; longer gaps restart a stream."""
        return float(self.manifest["input"]["max_gap"])

    @property
    def conditions(self) -> list[dict]:
        """A conditional model's conditions (name, kind, categories, trained range), in the graph's order; [] otherwise."""
        return self.manifest["input"].get("conditions", [])

    @property
    def channels(self) -> int:
        """Values per sample in a stream: the features, then one per condition."""
        return len(self.features) + len(self.conditions)

    @property
    def threshold(self) -> float:
        """The calibrated threshold (score above it is anomalous)."""
        return float(self.manifest["threshold"]["value"])

    @property
    def input_spec(self) -> dict:
        """The input section; two bundles with equal specs can swap without losing stream state."""
        return self.manifest["input"]

    def artifact(self, fmt: str = "onnx", precision: str = "fp32") -> dict:
        """The artifact entry of a format and precision; the error lists what the bundle has."""
        for entry in self.manifest["artifacts"]:
            if entry["format"] == fmt and entry["precision"] == precision:
                return entry
        have = [f"{a['format']}/{a['precision']}" for a in self.manifest["artifacts"]]
        raise BundleError(f"{self.path}: no {fmt}/{precision} artifact; the bundle has {have}")

    def artifact_path(self, fmt: str = "onnx", precision: str = "fp32") -> Path:
        """Path of an artifact file."""
        return self.path / self.artifact(fmt, precision)["file"]


def read_json_object(path: Path, error: type[Exception], missing: str) -> dict:
    """The JSON object in ``path``; ``error`` says what is wrong: no file (``missing``), not JSON, or not an object.

    One reader for the bundle's manifest and the run directory's config.
    """
    if not path.is_file():
        raise error(missing)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise error(f"{path}: not valid JSON ({problem})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and validate a bundle; with ``verify`` every artifact's size and sha256 are checked."""
    folder = Path(path)
    manifest_path = folder / MANIFEST
    manifest = read_json_object(manifest_path, BundleError, f"{folder}: not a bundle (no {MANIFEST})")
    validate_manifest(manifest, str(manifest_path))
    if verify:
        for artifact in manifest["artifacts"]:
            verify_artifact(folder, artifact)
    return Bundle(folder, manifest, sha256_file(manifest_path)[:16])


def verify_artifact(folder: Path, artifact: dict) -> None:
    """Refuse a missing or altered artifact, naming the file and the expected and actual hash."""
    file = folder / artifact["file"]
    if not file.is_file():
        raise BundleError(f"{file}: artifact missing (expected sha256 {artifact['sha256']})")
    actual = sha256_file(file)
    if actual != artifact["sha256"] or file.stat().st_size != artifact["bytes"]:
        raise BundleError(f"{file}: artifact altered: expected sha256 {artifact['sha256']}, actual {actual}")


def describe_artifact(folder: Path, file: str, fmt: str, precision: str, parity: dict, **extra) -> dict:
    """A manifest entry for an artifact file already written into ``folder``."""
    path = folder / file
    return {"file": file, "format": fmt, "precision": precision, "sha256": sha256_file(path), "bytes": path.stat().st_size, "parity": parity, **extra}


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Validate and write ``bundle.json``; the schema check runs before anything is written."""
    folder = Path(folder)
    validate_manifest(manifest)
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def threshold_notes(threshold: dict, stride: int, sample_period: float) -> list[str]:
    """What a threshold rests on and what it can promise, in words (``train``, ``inspect``, the report).

    ``threshold`` is the manifest's (or a run's) threshold section; runs older than out-of-fold
    calibration lack ``windows`` and get no notes.
    """
    n = threshold.get("windows")
    if not n:
        return []
    per_day = 86_400 / (stride * sample_period)  # windows one stream makes in a day
    source = threshold.get("source", "held-out")
    lines = [f"threshold {threshold['value']:.4g} ({threshold['method']}) rests on {n} {source} calibration windows"]
    rate = threshold.get("parameter")
    if threshold["method"] == "alarms":
        return _alarm_rate_notes(threshold, lines[0])
    if threshold["method"] == "conformal" and rate:
        lines[0] += f"; it aims at {rate * per_day:.3g} false alarms per stream and day (per window {rate:.3g})"
    if threshold.get("supported") is False or (threshold["method"] == "pot" and rate and rate < threshold["supported_rate"]):
        best = threshold["supported_rate"] * per_day
        needed = int(1 / rate) if rate else 0
        lines.append(f"warning: {n} calibration windows can vouch for at best {best:.3g} false alarms per stream and day "
                     f"(1 in {n + 1} windows); the threshold goes beyond what they support. Give more normal data "
                     f"(about {needed} windows) or --calibration-data")
    return lines


def _alarm_rate_notes(threshold: dict, first: str) -> list[str]:
    """:func:`threshold_notes` for the ``alarms`` method: the target, the days it rests on, and when they fall short."""
    target, days = threshold["parameter"], threshold["days"]
    on_k, on_n, off_m, deadband = threshold["policy"]
    lines = [f"{first} ({days:.3g} stream-days); it aims at {target:g} false alarms per stream and day under the alarm "
             f"policy {on_k} of {on_n} windows, off after {off_m}, deadband {deadband:g} (the runtime's default)"]
    if threshold.get("supported") is False:
        lines.append(f"warning: {days:.3g} stream-days of normal data hold less than one false alarm at {target:g} a day "
                     f"(that takes {1 / target:.3g} stream-days): the threshold is extrapolated from the tail of the scores "
                     "and its rate is not vouched for. Give more normal data or --calibration-data")
    elif threshold.get("estimate") == "tail":
        lines.append(f"{days:.3g} stream-days hold about {target * days:.3g} false alarms at the target, fewer than {TAIL_PEAKS}: "
                     "the threshold comes from the tail fitted to the alarm statistic's peaks rather than from a count")
    return lines
