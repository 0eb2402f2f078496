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
@click.argument("target", metavar="BUNDLE_OR_RUN", type=click.Path(exists=True, file_okay=False))
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None,
              help="Folder for evaluation.json (a run also gets report.html; default RUN/evaluation, nothing for a bundle).")
@click.option("--series-column", default=None, help="Column that splits a file into series, e.g. machine.")
@click.option("--time-column", default=None, help="Time column (default: time/timestamp/datetime).")
@click.option("--label-column", default=None, help="0/1 label column (default: label or anomaly).")
@click.option("--features", default=None, help="Run only: comma-separated feature columns.")
@click.option("--train-rows", type=int, default=0, help="Bundle: evaluate each series after its first N rows (SKAB's protocol: 400).")
@click.option("--train-until", default=None, help="Bundle: evaluate rows after this time (ISO 8601 or epoch seconds).")
@click.option("--sweep", is_flag=True, help="Also show the alarm policy at multiples of the threshold (1/8 .. 8x).")
def evaluate(target, data, output, series_column, time_column, label_column, features, train_rows, train_until, sweep):
    """Score labelled DATA files with BUNDLE_OR_RUN and pool one confusion matrix over them.

    A bundle is evaluated without torch, through ONNX Runtime and the runtime's own stream
    assembly; a run directory through training's scorer, with an HTML report. Both report the raw
    threshold and what the runtime's default alarm policy would raise (``alarm_policy_*``);
    ``--sweep`` adds what that policy would raise at other thresholds.
    """
    if (Path(target) / "bundle.json").exists():
        from edge_runtime.commands import evaluate_bundle

        evaluate_bundle(target, data, output, series_column, time_column, label_column, train_rows, train_until, sweep)
    else:
        from train.cli import evaluate_run

        evaluate_run(target, data, output, time_column, label_column, series_column, features, sweep)
