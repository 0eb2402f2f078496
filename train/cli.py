"""``linewatch simulate``, ``linewatch train``, and ``linewatch evaluate`` on a run directory."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import click
import numpy as np

from train.errors import DataError
from train.models import MODELS
from train.thresholds import METHODS

DATA_OPTIONS = [
    click.option("--time-column", default=None, help="Time column (default: time/timestamp/datetime)."),
    click.option("--label-column", default=None, help="0/1 label column (default: label/anomaly)."),
    click.option("--series-column", default=None, help="Column that splits the file into series, e.g. machine."),
    click.option("--features", default=None, help="Comma-separated feature columns (default: all numeric)."),
]


def data_options(function):
    """Attach the shared data-reading options."""
    for option in reversed(DATA_OPTIONS):
        function = option(function)
    return function


def read(paths, time_column, label_column, series_column, features, conditions=None):
    """Read data files with the shared options, turning data errors into one-line CLI errors.

    ``conditions``: condition column names, or a trained detector's :class:`~train.data.Condition` list.
    """
    from train.data import read_table

    try:
        return read_table(list(paths), features.split(",") if features else None, time_column, label_column, series_column, conditions or None)
    except DataError as error:
        raise click.ClickException(str(error)) from None


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="CSV or .parquet file to write.")
@click.option("--machines", default=3, show_default=True)
@click.option("--rows", default=6000, show_default=True, help="Samples per machine.")
@click.option("--normal-rows", default=2000, show_default=True, help="Fault-free rows at the start.")
@click.option("--faults", "faults_per_machine", default=2, show_default=True, help="Faults per machine (0: normal only).")
@click.option("--period", default=1.0, show_default=True, help="Sample period in seconds.")
@click.option("--seed", default=0, show_default=True)
@click.option("--regimes", is_flag=True, help="Operating conditions that change during normal operation: setpoint and recipe columns.")
def simulate(output, machines, rows, normal_rows, faults_per_machine, period, seed, regimes):
    """Write a synthetic plant with labelled faults (columns time, machine, sensors, label, fault)."""
    from train.simulate import simulate_plant, write_table

    frame, faults = simulate_plant(machines, rows, normal_rows, faults_per_machine, period, seed, regimes=regimes)
    write_table(frame, output)
    click.echo(f"wrote {len(frame)} rows for {machines} machines to {output}")
    for fault in faults:
        click.echo(f"  {fault.machine}: {fault.kind:<19} on {fault.feature:<12} rows {fault.start}-{fault.start + fault.length - 1}")


@click.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "run_dir", type=click.Path(file_okay=False), required=True, help="Run directory to write.")
@click.option("--model", "kind", type=click.Choice(["auto", *sorted(MODELS)]), default=None,
              help="Model kind (default: pca, or dense with --conditions). auto: try every kind and keep the one that best detects "
                   "synthetic faults written into held-out normal windows.")
@click.option("--window", type=int, default=None, help="Samples per window (default: a twentieth of the shortest series, 10 to 50).")
@click.option("--stride", type=int, default=None, help="Samples between scored windows at runtime (default: a fifth of the window).")
@click.option("--train-stride", default=1, show_default=True, help="Samples between training windows.")
@click.option("--max-gap", type=float, default=None, help="Longest gap in seconds to hold over (default 3 periods).")
@click.option("--epochs", default=200, show_default=True, help="Cap on epochs; early stopping (--patience) decides.")
@click.option("--batch-size", default=256, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--patience", default=5, show_default=True, help="Early-stopping patience in epochs.")
@click.option("--param", "params", multiple=True, help="Model hyper-parameter KEY=VALUE (JSON value), e.g. latent=16.")
@click.option("--threshold", type=click.Choice(METHODS), default="alarms", show_default=True,
              help="alarms: the alarm policy replayed on the model's normal scores in time order, to the false alarms a day "
                   "asked for; conformal: the same target as a per-window exceedance rate; the others per window, or labelled.")
@click.option("--false-alarms-per-day", type=float, default=1.0, show_default=True,
              help="alarms and conformal: the false alarms per machine and day the threshold aims at.")
@click.option("--threshold-param", type=float, default=None,
              help="Per-window rate (conformal, instead of --false-alarms-per-day), risk (pot), percentile, k (sigma) or rate (fpr).")
@click.option("--distances/--no-distances", default=True, show_default=True,
              help="Score with the residual and operating-point distances besides each sensor's reconstruction error "
                   "(Mahalanobis distances against normal windows, inside the exported graph).")
@click.option("--calibration", type=click.Choice(["out-of-fold", "holdout"]), default="out-of-fold", show_default=True,
              help="Where each channel's normal level (and, except for alarms, the threshold's scores) come from: every training "
                   "window scored by a model that did not see it, or the held-out tail.")
@click.option("--calibration-data", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Separate normal data to calibrate the threshold on (any unsupervised method).")
@click.option("--threshold-data", type=click.Path(exists=True, dir_okay=False), default=None, help="Labelled data for f1/youden.")
@click.option("--ignore-labels", is_flag=True, help="Train on rows labelled anomalous too (by default they are left out).")
@click.option("--quiet", is_flag=True, help="No progress bar; only the result line and warnings.")
@click.option("--max-windows", default=50_000, show_default=True, help="Cap on training windows (random subset).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--seed", default=0, show_default=True)
@click.option("--conditions", default=None,
              help="Operating-condition columns the model is given (dense and vae), e.g. setpoint,recipe: numeric ones as they are, "
                   "others as categories. They are inputs, never reconstructed.")
@data_options
def train(data, run_dir, kind, window, stride, train_stride, max_gap, epochs, batch_size, lr, patience, params, threshold,
          false_alarms_per_day, threshold_param, distances, calibration, calibration_data, threshold_data, ignore_labels, quiet, max_windows,
          device, seed, conditions, time_column, label_column, series_column, features):
    """Train an anomaly detector on normal sensor data DATA (CSV or Parquet).

    Rows labelled anomalous are left out of training. The run directory receives config.json,
    model.npz, calibration windows and the loss curve (CSV and PNG).
    """
    from train.detector import AutoencoderDetector, default_kind

    condition_names = [c for c in (conditions or "").split(",") if c]
    table = read(data, time_column, label_column, series_column, features, condition_names)
    if ignore_labels:
        for series in table.series:
            series.labels = None
    model_params = {}
    for item in params:
        key, _, value = item.partition("=")
        try:
            model_params[key] = json.loads(value)
        except json.JSONDecodeError:
            raise click.ClickException(f"--param {item}: value must be JSON (e.g. latent=16, hidden=[64,32])") from None
    if window is None or stride is None:
        from train.windows import default_window

        chosen = window is None
        window, auto_stride = default_window([len(s) for s in table.series], window)
        stride = stride or auto_stride
        if chosen and not quiet:
            click.echo(f"window {window}, stride {stride} (from the shortest series, {min(len(s) for s in table.series)} rows; "
                       "--window/--stride to choose)")
    supervised = threshold in ("f1", "youden")
    if supervised and threshold_data is None:
        raise click.ClickException(f"--threshold {threshold} needs --threshold-data with labels")
    selection = None
    kind = kind or default_kind(condition_names)
    if kind == "auto":
        kind, selection = _choose_kind(table, model_params, condition_names, quiet, window=window, stride=stride, max_gap=max_gap,
                                       train_stride=train_stride, max_windows=max_windows, epochs=epochs, batch_size=batch_size,
                                       lr=lr, patience=patience, device=device, seed=seed, distances=distances)
    detector = AutoencoderDetector(
        kind=kind, window=window, stride=stride, model_params=model_params, max_gap=max_gap, train_stride=train_stride,
        max_windows=max_windows, threshold="alarms" if supervised else threshold, threshold_param=threshold_param,
        false_alarms_per_day=false_alarms_per_day, calibration=calibration, distances=distances,
        epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, device=device, seed=seed, progress=not quiet,
        conditions=condition_names or None,
    )
    detector.selection_ = selection
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:  # said as "warning: ..." lines, not with Python's file and line
            warnings.simplefilter("always", UserWarning)
            detector.fit(table)
        for warning in caught:
            click.echo(f"warning: {warning.message}", err=True)
        if calibration_data is not None and not supervised:
            detector.calibrate_on(read([calibration_data], time_column, label_column, series_column, ",".join(detector.features_),
                                       detector.conditions_))
        if supervised:
            labelled = read([threshold_data], time_column, label_column, series_column, ",".join(detector.features_), detector.conditions_)
            scores = detector.score_samples(labelled)
            labels = np.concatenate([s.labels for s in labelled.series])
            detector.calibrate(scores, labels, method=threshold)
    except (DataError, TypeError) as error:
        raise click.ClickException(str(error)) from None
    from train.report import write_loss_curve

    write_loss_curve(detector.history_, detector.save(run_dir))
    h = detector.history_
    fit = "closed form" if h.closed_form else f"{len(h.train_loss)} epochs, best {h.best_epoch}"
    click.echo(
        f"trained {kind} on {detector.training_windows_} windows x {len(detector.features_)} features in "
        f"{time.perf_counter() - started:.1f} s on {h.device} ({fit}, val loss {min(h.val_loss):.4g}); "
        f"threshold {detector.threshold_:.4g} ({threshold}) -> {run_dir}"
    )
    from edge_runtime.contract.bundle import threshold_notes

    for line in threshold_notes(detector.threshold_record(), detector.stride, detector.sample_period_):
        if line.startswith("warning") or not quiet:
            click.echo(line, err=line.startswith("warning"))
    if h.stopped_at_cap:
        click.echo(f"warning: the validation loss was still falling at the last epoch ({len(h.val_loss)}): early stopping "
                   f"did not decide the epoch count; train again with a larger --epochs", err=True)


def _choose_kind(table, model_params: dict, conditions: list[str], quiet: bool, **options) -> tuple[str, dict]:
    """``--model auto``: the kind that best detects synthetic faults in held-out normal windows, with the evidence."""
    from train.detector import CONDITIONAL_KINDS
    from train.selection import CANDIDATES, SYNTHETIC_FAULTS, choose_kind

    if model_params:
        raise click.ClickException("--param sets one kind's hyper-parameters: name the --model, not auto")
    candidates = tuple(k for k in CANDIDATES if k in CONDITIONAL_KINDS) if conditions else CANDIDATES
    click.echo(f"--model auto: {', '.join(candidates)} in turn, each on the first part of every series; detection of "
               f"synthetic faults in the held-out tail above its every clean window ({', '.join(SYNTHETIC_FAULTS)})")

    seed = options.pop("seed")
    try:
        chosen, tried = choose_kind(table, seed, candidates, echo=click.echo if not quiet else lambda *_: None,
                                    conditions=conditions or None, **options)
    except DataError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"chosen: {chosen} (detects {tried[0].score:.0%} of the synthetic faults; the table is in the run and the bundle)")
    return chosen, {"chosen": chosen, "criterion": "share of synthetic faults in held-out normal windows scored above every clean one",
                    "candidates": [c.to_dict() for c in tried]}


def evaluate_runs(groups, output, time_column, label_column, series_column, features, sweep: bool = False) -> None:
    """``linewatch evaluate`` on run directories, ``(run_dir, data files)`` each: metrics pooled over all of them,
    ``evaluation.json``, and for one run an HTML report.
    """
    from edge_runtime.contract.alarms import AlarmConfig
    from edge_runtime.contract.detection_metrics import evaluate_models, format_metrics
    from train.detector import AutoencoderDetector
    from train.evaluation import scored_parts
    from train.report import write_evaluation_report

    models = []
    try:
        for run_dir, data in groups:
            detector = AutoencoderDetector.load(run_dir)
            table = read(data, time_column, label_column, series_column, features or ",".join(detector.features_), detector.conditions_)
            parts, scored = scored_parts(detector, table)
            models.append((parts, detector.threshold_, detector.stride))
    except DataError as error:
        raise click.ClickException(str(error)) from None
    metrics = evaluate_models(models, AlarmConfig().policy(), sweep)
    out = Path(output or Path(groups[0][0]) / "evaluation")
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(metrics, indent=2))
    for line in format_metrics(metrics):
        click.echo(line)
    if len(groups) == 1:  # ``detector`` and ``scored`` are the one run's
        click.echo(f"report: {write_evaluation_report(out, metrics, scored, detector, Path(groups[0][0]))}")
    else:
        click.echo(f"{len(groups)} runs pooled (scores over each run's threshold); no HTML report: evaluate a run alone for one; {out / 'evaluation.json'}")
