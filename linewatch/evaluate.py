"""``linewatch evaluate``: score labelled data with exported bundles (no torch) or training runs, pooled metrics.

It chooses the stage by what it is given: bundles go through ONNX Runtime and the runtime's own
stream assembly, runs through training's scorer (with the ``train`` extra).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_runtime.contract.errors import LinewatchError


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


def evaluate_bundles(groups, output, series_column, time_column, label_column, train_rows: int = 0, train_until=None,
                     sweep: bool = False) -> None:
    """``linewatch evaluate`` on bundles, ``(bundle, data files)`` each, without torch: ONNX Runtime and the runtime's own
    stream assembly, one confusion matrix pooled over every series of every file of every bundle, the raw threshold
    and the default alarm policy (and with ``sweep`` that policy at multiples of the thresholds).
    """
    from edge_runtime.contract.alarms import AlarmConfig
    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.contract.detection_metrics import evaluate_models, format_metrics
    from edge_runtime.contract.timeparse import to_seconds
    from edge_runtime.scoring.backends import create_backend
    from edge_runtime.scoring.offline import labelled_parts

    models = []
    try:
        until = None if train_until is None else to_seconds(train_until)
        for target, data in groups:
            bundle = load_bundle(target)
            with create_backend(bundle) as backend:
                parts = labelled_parts(backend, list(data), series_column, time_column, label_column, train_rows, until)
            models.append((parts, bundle.threshold, bundle.stride))
    except (LinewatchError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    metrics = evaluate_models(models, AlarmConfig().policy(), sweep)
    if output:
        Path(output).mkdir(parents=True, exist_ok=True)
        (Path(output) / "evaluation.json").write_text(json.dumps(metrics, indent=2))
    for line in format_metrics(metrics):
        click.echo(line)
