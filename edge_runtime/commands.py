"""Runtime-side subcommands: ``inspect``, ``score`` and ``run``. No torch here."""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from pathlib import Path

import click

from edge_runtime.contract.bundle import CONDITION_NAME, threshold_notes
from edge_runtime.contract.errors import ConfigError, LinewatchError


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


@click.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
def inspect(bundle_path):
    """Summarise BUNDLE, verify every artifact's hash, and show the parity table."""
    from edge_runtime.contract.bundle import load_bundle

    try:
        bundle = load_bundle(bundle_path)
    except LinewatchError as error:
        raise _fail(error) from None
    m = bundle.manifest
    spec = m["input"]
    click.echo(f"bundle   {bundle.path}  (schema {m['schema_version']}, id {bundle.model_id})")
    click.echo(f"model    {m['name']}: {m['model']['kind']} {m['model']['params']}"
               + (" + residual and operating-point distances" if m["model"].get("distances") else ""))
    features = ", ".join(f"{f['name']}[{f['unit']}]" if f.get("unit") else f["name"] for f in spec["features"])
    click.echo(f"input    window {spec['window']} x {len(spec['features'])} ({features}), stride {spec['stride']}, "
               f"period {spec['sample_period']:g} s, max gap {spec['max_gap']:g} s")
    for c in bundle.conditions:
        unit = f" {c['unit']}" if c.get("unit") else ""
        seen = f"categories {', '.join(c['categories'])}" if c["kind"] == "categorical" else f"trained range {c['min']:g} .. {c['max']:g}{unit}"
        click.echo(f"condition {c['name']}: {c['kind']}, {seen} (graph input '{CONDITION_NAME}', at the window's last sample)")
    t = m["threshold"]
    click.echo(f"threshold {t['value']:.6g} ({t['method']}" + (f", {t['parameter']:g})" if t.get("parameter") is not None else ")"))
    for line in threshold_notes(t, bundle.stride, bundle.sample_period):
        click.echo(line)
    tr = m["training"]
    fit = "closed form" if tr.get("closed_form") else f"{tr['epochs_run']} epochs"
    click.echo(f"training {tr['windows']} windows, {fit} on {tr['device']}, data sha256 {tr['data_fingerprint']['sha256'][:16]}")
    click.echo("artifacts (all hashes verified):")
    click.echo(f"  {'file':<22} {'format':<9} {'prec':<5} {'bytes':>9}  {'score max abs':>13} {'max rel':>9} {'feat max abs':>12}  flips")
    for a in m["artifacts"]:
        p = a["parity"]
        score, fe = p.get("score", {}), p.get("feature_error", {})
        flips = p.get("calibration", {}).get("decision_flips")
        click.echo(f"  {a['file']:<22} {a['format']:<9} {a['precision']:<5} {a['bytes']:>9}  {score.get('max_abs', float('nan')):>13.2e} "
                   f"{score.get('max_rel', float('nan')):>9.2e} {fe.get('max_abs', float('nan')):>12.2e}  {flips if flips is not None else '-'}")
    click.echo("versions " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))


@click.command()
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path(exists=True, file_okay=False))
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="CSV to write (default: standard output).")
@click.option("--series-column", default=None, help="Column that splits the file into series, e.g. machine.")
@click.option("--time-column", default=None, help="Time column (default: time/timestamp/datetime).")
@click.option("--backend", default="onnxruntime", show_default=True, help="onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, tensorrt.")
@click.option("--precision", default="fp32", show_default=True, help="Which artifact: fp32, fp16, int8.")
@click.option("--threshold", type=float, default=None, help="Override the bundle's threshold.")
def score(bundle_path, data, output, series_column, time_column, backend, precision, threshold):
    """Score one or more CSV files DATA offline with BUNDLE.

    Writes file, series, time (as the input wrote it), score and flag (1 above the threshold) per row.
    """
    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.contract.tables import read_csv
    from edge_runtime.scoring.backends import create_backend
    from edge_runtime.scoring.offline import score_series

    try:
        bundle = load_bundle(bundle_path)
        limit = bundle.threshold if threshold is None else threshold
        with create_backend(bundle, backend, precision) as runner:
            results = [(path, s, score_series(s, runner)) for path in data for s in read_csv(path, bundle.features, series_column, time_column,
                                                                                                 conditions=bundle.conditions)]
    except LinewatchError as error:
        raise _fail(error) from None
    with open(output, "w", newline="") if output else contextlib.nullcontext(sys.stdout) as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "series", "time", "score", "flag"])
        flagged = total = 0
        for path, s, rows in results:
            texts = s.time_text or [repr(float(t)) for t in s.time]
            for text, value in zip(texts, rows):
                flag = int(value > limit)
                flagged += flag
                total += 1
                writer.writerow([path, s.name, text, "" if value != value else f"{value:.9g}", flag])
    if output:
        click.echo(f"scored {total} rows of {len(data)} file(s), {len(results)} series, {flagged} flagged (threshold {limit:.6g}) -> {output}")


@click.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False), help="TOML configuration.")
@click.option("--check", is_flag=True, help="Validate the configuration and the bundles, then exit.")
@click.option("--host", default=None, help="Override broker.host.")
@click.option("--port", type=int, default=None, help="Override broker.port.")
@click.option("--client-id", default=None, help="Override broker.client_id.")
@click.option("--bundle", default=None, help="Override the bundle path of every model.")
@click.option("--metrics-port", type=int, default=None, help="Override runtime.metrics_port (0: off).")
@click.option("--latency-budget-ms", type=float, default=None, help="Override runtime.latency_budget_ms.")
@click.option("--outbox", default=None, help="Override runtime.outbox.")
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Start and supervise N worker processes, each with its own share of the input ({worker} in the input topics, "
                   "or a $share/ subscription), client id, outbox and metrics port.")
@click.option("--worker", type=click.IntRange(0, 255), default=None,
              help="Run as worker K of a partitioned runtime (what --workers starts; one per instance of a templated unit).")
def run(config_path, check, host, port, client_id, bundle, metrics_port, latency_budget_ms, outbox, log_level, workers, worker):
    """Run the MQTT edge runtime described by a TOML config (see gateway.example.toml)."""
    import logging

    from edge_runtime.config import for_worker, load_config

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.umask(0o077)  # the outbox holds every alarm, the thresholds file what each machine learned: private to the service's user
    options = {"host": host, "port": port, "client-id": client_id, "bundle": bundle, "metrics-port": metrics_port,
               "latency-budget-ms": latency_budget_ms, "outbox": outbox}
    overrides = {"broker.host": host, "broker.port": port, "broker.client_id": client_id, "models.bundle": bundle,
                 "runtime.metrics_port": metrics_port, "runtime.latency_budget_ms": latency_budget_ms, "runtime.outbox": outbox}
    try:
        config = load_config(config_path, overrides)
        if workers > 1:
            if worker is not None:
                raise click.UsageError("--worker K runs one worker; --workers N starts N of them: give one of the two")
            _supervise(config, config_path, options, log_level, workers, check)
            return
        config = for_worker(config, worker)
        from edge_runtime.runtime import Runtime
        from edge_runtime.state import prepare, state_directory

        state = state_directory(config.runtime.state_dir)
        prepare(state, create=not check)  # --check proves it writable and leaves nothing behind
        runtime = Runtime(config, check=check)  # loads and warms up every bundle and backend, opens the outbox, builds the router
        if check:
            try:
                runtime.preflight()
                for runner in runtime.models:
                    b, m = runner.bundle, runner.config
                    click.echo(f"ok  {m.name}: {b.name} ({b.manifest['model']['kind']}, id {b.model_id}), "
                               f"{len(m.inputs)} input(s), backend {m.backend}/{m.precision}")
            finally:
                runtime.release()
            where = "is writable" if state.exists() else "can be created (it does not exist yet)"
            click.echo(f"state    {state} {where}; outbox {config.runtime.outbox}")
            click.echo(f"configuration {config_path} is valid")
            return
        runtime.serve()
    except LinewatchError as error:
        raise _fail(error) from None


def _supervise(config, config_path: str, options: dict, log_level: str, workers: int, check: bool) -> None:
    """``run --workers N``: check that the input is partitioned, then start and supervise the workers."""
    from edge_runtime.config import for_worker, partitioned
    from edge_runtime.workers import Supervisor

    if not partitioned(config):
        raise ConfigError(f"--workers {workers}: every worker would subscribe to the same topics and score every stream {workers} "
                          "times; put {worker} in the input topics (NATS partitions, static filters) or subscribe with "
                          "$share/<group>/... (MQTT 5 shared subscriptions)")
    derived = [for_worker(config, k) for k in range(workers)]  # every worker's configuration is valid before any starts
    if check:
        for k, each in enumerate(derived):
            click.echo(f"worker {k}: client id {each.broker.client_id}, outbox {each.runtime.outbox}, metrics port "
                       f"{each.runtime.metrics_port or 'off'}, inputs {[i.topic for m in each.models for i in m.inputs]}")
    base = [sys.executable, "-m", "linewatch", "run", "-c", str(config_path), "--log-level", log_level, *(["--check"] if check else [])]
    base += [item for name, value in options.items() if value is not None for item in (f"--{name}", str(value))]
    if check:
        import subprocess

        failed = subprocess.run([*base, "--worker", "0"]).returncode  # bundles, backends and state: the same for every worker
        if failed:
            raise SystemExit(failed)
        return
    raise SystemExit(Supervisor(lambda k: [*base, "--worker", str(k)], workers, config.runtime.shutdown_timeout_s).run())


@click.command()
@click.option("-c", "--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Also check this configuration: state directory, bundles and backends, broker, clock.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object for tools instead of the table.")
def doctor(config_path, as_json):
    """Say what this machine offers (Python, ONNX Runtime providers, CUDA, TensorRT, GPU, SQLite) and what the
    configuration will get from it. Exits 1 when something would stop `linewatch run`.
    """
    import json

    from edge_runtime.doctor import as_dicts, blockers, diagnose

    found = diagnose(config_path)
    if as_json:
        click.echo(json.dumps({"blockers": blockers(found), "findings": as_dicts(found)}, indent=2))
    else:
        for f in found:
            click.echo(f"{f.status:<5} {f.check:<22} {f.detail}")
        click.echo(f"{blockers(found)} blocker(s)")
    if blockers(found):
        sys.exit(1)


SHIPPED = {"gateway": "gateway.example.toml", "unit": "linewatch.service", "mosquitto": "mosquitto.conf"}


@click.group()
def config():
    """The reference files shipped with the runtime."""


@config.command()
@click.argument("which", type=click.Choice(sorted(SHIPPED)), default="gateway")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write it here instead of standard output.")
def example(which, output):
    """Print (or write) a shipped file: the configuration with every key at its default, the systemd unit, or mosquitto's config."""
    from importlib.resources import files

    text = (files("edge_runtime") / SHIPPED[which]).read_text()
    if output is None:
        click.echo(text, nl=False)
        return
    if Path(output).exists():
        raise click.ClickException(f"{output} exists; not overwritten")
    Path(output).write_text(text)
    click.echo(f"wrote {output}")
