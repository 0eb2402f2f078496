"""``linewatch export``: a training run to a verified model bundle."""

from __future__ import annotations

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
    from edge_runtime.contract.errors import LinewatchError
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
