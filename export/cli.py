"""``linewatch export``, and ``linewatch evaluate``, which takes an exported bundle (no torch) or a run directory."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--fp16", is_flag=True, help="Add an FP16 ONNX variant (and an FP16 engine with --tensorrt).")
@click.option("--int8", is_flag=True, help="Add an INT8 ONNX variant (ONNX Runtime dynamic quantisation).")
@click.option("--tensorrt", is_flag=True, help="Build TensorRT engines on this machine's GPU.")
@click.option("--max-batch", default=256, show_default=True, help="Largest batch of the TensorRT profile.")
@click.option("--units", default="", help="Feature units, e.g. current=A,speed=rpm.")
@click.option("--name", default=None, help="Model name (default: the run directory's name).")
@click.option("--tolerance", "tolerances", multiple=True, help="Parity rtol per precision, e.g. int8=0.5 (defaults fp32=1e-4, fp16=0.02, int8=0.25).")
def export(run_dir, output, fp16, int8, tensorrt, max_batch, units, name, tolerances):
    """Export RUN_DIR to a bundle: model.pt2, model.onnx (+ variants), bundle.json; parity-checked."""
    from edge_runtime.errors import LinewatchError
    from export.bundler import export_run
    from export.parity import ParityError
    from train.errors import DataError

    unit_map = dict(item.split("=", 1) for item in units.split(",") if "=" in item)
    try:
        rtols = {key: float(value) for key, _, value in (item.partition("=") for item in tolerances)}
    except ValueError:
        raise click.BadParameter("expected PRECISION=RTOL, e.g. int8=0.5", param_hint="--tolerance") from None
    unknown = set(rtols) - {"fp32", "fp16", "int8"}
    if unknown:
        raise click.BadParameter(f"unknown precision(s) {sorted(unknown)}; expected fp32, fp16, int8", param_hint="--tolerance")
    try:
        path = export_run(run_dir, output, fp16, int8, tensorrt, unit_map, name, max_batch, rtols, echo=click.echo)
    except (ParityError, LinewatchError, DataError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"bundle written: {path}")


@click.command()
@click.argument("items", metavar="BUNDLE_OR_RUN DATA... [BUNDLE_OR_RUN DATA...]...", nargs=-1, required=True,
                type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None,
              help="Folder for evaluation.json (one run also gets report.html; default: the first run's evaluation/, "
                   "nothing for bundles).")
@click.option("--series-column", default=None, help="Column that splits a file into series, e.g. machine.")
@click.option("--time-column", default=None, help="Time column (default: time/timestamp/datetime).")
@click.option("--label-column", default=None, help="0/1 label column (default: label or anomaly).")
@click.option("--features", default=None, help="Runs only: comma-separated feature columns.")
@click.option("--train-rows", type=int, default=0, help="Bundles: evaluate each series after its first N rows (SKAB's protocol: 400).")
@click.option("--train-until", default=None, help="Bundles: evaluate rows after this time (ISO 8601 or epoch seconds).")
@click.option("--sweep", is_flag=True, help="Also show the alarm policy at multiples of the threshold (1/8 .. 8x).")
def evaluate(items, output, series_column, time_column, label_column, features, train_rows, train_until, sweep):
    """Score labelled DATA files with each BUNDLE_OR_RUN before them and pool one confusion matrix over all.

    Each folder (a bundle or a run) scores the files that follow it, so a model per experiment
    (SKAB's protocol) is ``evaluate b1 1.csv b2 2.csv ...``; pooled models' scores are divided by
    their thresholds. Bundles are evaluated without torch, through ONNX Runtime and the runtime's
    own stream assembly; runs through training's scorer, one run with an HTML report. Both report
    the raw threshold and what the runtime's default alarm policy would raise
    (``alarm_policy_*``); ``--sweep`` adds what that policy would raise at other thresholds.
    """
    groups = model_groups(items)
    bundles = [(Path(target) / "bundle.json").exists() for target, _ in groups]
    if all(bundles):
        from edge_runtime.commands import evaluate_bundles

        evaluate_bundles(groups, output, series_column, time_column, label_column, train_rows, train_until, sweep)
    elif not any(bundles):
        from train.cli import evaluate_runs

        evaluate_runs(groups, output, time_column, label_column, series_column, features, sweep)
    else:
        raise click.UsageError("pool bundles with bundles and runs with runs (export the runs to evaluate them with the bundles)")


def model_groups(items: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """``BUNDLE_OR_RUN DATA... [BUNDLE_OR_RUN DATA...]`` as ``(folder, files)`` pairs: each folder scores the files after it."""
    groups: list[tuple[str, list[str]]] = []
    for item in items:
        if Path(item).is_dir():
            groups.append((item, []))
        elif not groups:
            raise click.UsageError(f"{item}: a data file before any bundle or run; give the folder that scores it first")
        else:
            groups[-1][1].append(item)
    for folder, files in groups:
        if not files:
            raise click.UsageError(f"{folder}: no data file follows it")
    return groups
