"""The Grafana dashboard in deploy/ queries only metrics the runtime exports, with labels those metrics carry."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from edge_runtime.runtime import Runtime
from helpers import runtime_config

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "linewatch.json"


def exported(runtime_bundle, tmp_path) -> dict[str, set[str]]:
    """Every series name a runtime's metrics endpoint exports, with the label names its families declare."""
    runtime = Runtime(runtime_config(1883, runtime_bundle, tmp_path))
    try:
        runtime.metrics.bind(runtime.snapshot)
        text = generate_latest(runtime.metrics.registry).decode()
    finally:
        runtime.release()
    names: dict[str, set[str]] = {}
    for name, labels in re.findall(r"^(linewatch_\w+)(?:\{([^}]*)\})? ", text, re.M):
        names.setdefault(name, set()).update(re.findall(r"(\w+)=", labels))
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):  # a labelled family without series yet
        if not any(name.startswith(family) for name in names):
            names[family if kind != "counter" or family.endswith("_total") else family + "_total"] = set()
    return names


def queries() -> list[str]:
    """Every PromQL expression of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_metric_the_dashboard_queries_is_exported_with_its_labels(runtime_bundle, tmp_path):
    names = exported(runtime_bundle, tmp_path)
    exprs = queries()
    assert len(exprs) >= 12
    used = set()
    for expr in exprs:
        for metric in re.findall(r"\b(linewatch_\w+)", expr):
            used.add(metric)
            assert metric in names, f"{metric} (in {expr!r}) is not exported; exported: {sorted(names)}"
        by = re.findall(r"by \(([^)]*)\)", expr)
        selectors = re.findall(r"\{([^}]*)\}", expr)
        wanted = {label.strip() for group in by for label in group.split(",")} | {m for s in selectors for m in re.findall(r"(\w+)\s*!?=", s)}
        carried = set().union(*(names[m] for m in re.findall(r"\b(linewatch_\w+)", expr))) | {"le"}
        assert wanted <= carried, f"{expr!r} groups by labels its metrics do not carry: {wanted - carried}"
    # the panels the operations page names: throughput, latency, alarms, drift, outbox, bad input
    for needed in ("linewatch_messages_total", "linewatch_end_to_end_latency_seconds_bucket", "linewatch_alarms_active",
                   "linewatch_streams_drifting", "linewatch_outbox_depth"):
        assert needed in used


def test_the_provisioning_files_are_valid_and_point_at_the_dashboard():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "linewatch.yaml").read_text())
    assert provider["providers"][0]["type"] == "file" and provider["providers"][0]["options"]["path"].endswith("linewatch")
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
    assert json.loads(DASHBOARD.read_text())["uid"] == "linewatch"
