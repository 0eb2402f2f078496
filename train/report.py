"""Plots and the HTML evaluation report (PNG figures, no JavaScript)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from edge_runtime.contract.bundle import threshold_notes  # noqa: E402
from edge_runtime.contract.detection_metrics import delay_text  # noqa: E402
from train.trainer import TrainingHistory  # noqa: E402

LOSS_CURVE_PNG = "loss_curve.png"
STYLE = "body{font-family:sans-serif;max-width:1000px;margin:auto}td{padding:2px 12px}"


def html_page(title: str, body: str) -> str:
    """A complete report page (no JavaScript) around ``body``, which must already be escaped HTML."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def html_table(rows: list[tuple], header: tuple | None = None) -> str:
    """An HTML table of already formatted cells (escaped here)."""
    head = "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def write_loss_curve(history: TrainingHistory, run_dir: Path) -> Path:
    """``loss_curve.png`` in the run directory (the CSV is part of the run directory itself)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(history.train_loss, label="train", marker=".")
    ax.plot(history.val_loss, label="validation", marker=".")
    ax.axvline(history.best_epoch, color="grey", ls=":", label="best epoch")
    ax.set(xlabel="epoch", ylabel="loss (mean score)", yscale="log", title="Loss curves")
    ax.legend()
    fig.tight_layout()
    path = run_dir / LOSS_CURVE_PNG
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _score_distribution(normal: np.ndarray, anomalous: np.ndarray, threshold: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    finite = np.concatenate([normal, anomalous])
    bins = np.logspace(np.log10(max(finite.min(), 1e-6)), np.log10(finite.max() + 1e-6), 60)
    ax.hist(normal, bins=bins, alpha=0.6, label="normal rows", density=True)
    if len(anomalous):
        ax.hist(anomalous, bins=bins, alpha=0.6, label="anomalous rows", density=True)
    ax.axvline(threshold, color="red", label=f"threshold {threshold:.3g}")
    ax.set(xscale="log", xlabel="score", ylabel="density", title="Score distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _scores_over_time(name: str, scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3))
    x = np.arange(len(scores))
    ax.plot(x, scores, lw=0.8, label="score")
    ax.axhline(threshold, color="red", lw=0.8, label="threshold")
    ymax = np.nanmax(scores) if np.isfinite(scores).any() else 1.0
    ax.fill_between(x, 0, ymax, where=labels.astype(bool), color="orange", alpha=0.25, label="labelled anomaly")
    ax.set(yscale="log", xlabel="row", ylabel="score", title=f"Scores over time: {name}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _feature_contributions(features: list[str], normal: np.ndarray, anomalous: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(features))
    ax.bar(x - 0.2, normal, width=0.4, label="normal windows")
    if anomalous is not None:
        ax.bar(x + 0.2, anomalous, width=0.4, label="windows ending in an anomaly")
    ax.set_xticks(x, features, rotation=30, ha="right")
    ax.set(ylabel="mean feature error (x its normal level)", title="Per-feature contributions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _threshold_sweep(sweep: list[dict], threshold: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [row["multiple"] * threshold for row in sweep]
    ax.plot(x, [row["f1"] for row in sweep], marker=".", label="F1")
    ax.plot(x, [row["far"] for row in sweep], marker=".", label="false-alarm rate")
    ax.plot(x, [1 - row["mar"] for row in sweep], marker=".", label="recall")
    ax.axvline(threshold, color="red", lw=0.8, label=f"threshold {threshold:.3g}")
    ax.set(xscale="log", xlabel="threshold", ylim=(0, 1), title="Alarm policy at other thresholds")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _false_alarm_sweep(sweep: list[dict], threshold: float, promised: float, path: Path) -> None:
    """False alarms per machine-day the alarm policy raised on the labelled data's normal rows at each threshold,
    against the promise the threshold was calibrated for (none raised sits on the axis).
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [row["multiple"] * threshold for row in sweep]
    realised = [row["false_alarms_per_day"] for row in sweep]
    before = [row["false_alarms_per_day_before_first_anomaly"] for row in sweep]
    positive = [v for v in realised + before if v]
    floor = min(positive + [promised]) / 4
    ax.plot(x, [max(v, floor) for v in realised], marker=".", label="all normal rows")
    if any(v is not None for v in before):
        ax.plot(x, [floor if v is None else max(v, floor) for v in before], marker=".", label="before each series' first anomaly")
    ax.axhline(promised, color="tab:green", lw=0.8, label=f"promised: {promised:g} a day")
    ax.axvline(threshold, color="red", lw=0.8, label=f"threshold {threshold:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="threshold", ylabel="false alarms per machine-day",
           title="Promised against realised (alarm policy; bottom: none)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_evaluation_report(out_dir: Path, metrics: dict, series_scores: list, detector, run_dir: Path) -> Path:
    """Write ``report.html`` with PNG plots into ``out_dir``; return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    threshold = detector.threshold_
    labels = [s.windows.series.labels if s.windows.series.labels is not None else np.zeros(len(s.row_scores)) for s in series_scores]
    rows = np.concatenate([s.row_scores for s in series_scores])
    y = np.concatenate(labels).astype(bool)
    ok = np.isfinite(rows)
    _score_distribution(rows[ok & ~y], rows[ok & y], threshold, out_dir / "score_distribution.png")
    figures = ["score_distribution.png"]
    for i, (s, lab) in enumerate(zip(series_scores, labels)):
        name = f"scores_{i}.png"
        _scores_over_time(s.windows.series.name, s.row_scores, lab, threshold, out_dir / name)
        figures.append(name)
    normal_err, anomalous_err = [], []
    for s, lab in zip(series_scores, labels):
        at_end = lab[s.windows.ends].astype(bool) if len(s.windows.starts) else np.zeros(0, bool)
        normal_err.append(s.feature_error[~at_end])
        anomalous_err.append(s.feature_error[at_end])
    normal = np.concatenate(normal_err).mean(0)
    anomalous = np.concatenate(anomalous_err)
    _feature_contributions(detector.features_, normal, anomalous.mean(0) if len(anomalous) else None, out_dir / "feature_contributions.png")
    figures.append("feature_contributions.png")
    if (run_dir / LOSS_CURVE_PNG).exists():
        (out_dir / LOSS_CURVE_PNG).write_bytes((run_dir / LOSS_CURVE_PNG).read_bytes())
        figures.insert(0, LOSS_CURVE_PNG)
    if "threshold_sweep" in metrics:
        _threshold_sweep(metrics["threshold_sweep"], threshold, out_dir / "threshold_sweep.png")
        figures.append("threshold_sweep.png")
        promised = detector.false_alarms_per_day if detector.threshold_info_.method in ("alarms", "conformal") else None
        if promised:
            _false_alarm_sweep(metrics["threshold_sweep"], threshold, promised, out_dir / "false_alarm_sweep.png")
            figures.append("false_alarm_sweep.png")
    table = html_table([(k, _fmt(v)) for k, v in metrics.items() if not isinstance(v, list)])
    events = html_table([(e["series"], e["first"], e["last"], e["rows"], delay_text(e["detected"], e["delay_seconds"], e["delay_rows"]),
                          delay_text(e["alarm_policy_detected"], e["alarm_policy_delay_seconds"])) for e in metrics["events_detail"]],
                        ("series", "first", "last", "rows", "delay (raw threshold)", "delay (alarm policy)"))
    images = "".join(f'<p><img src="{f}" alt="{f}"></p>' for f in figures)
    notes = threshold_notes(detector.threshold_record(), detector.stride, detector.sample_period_)
    selection = getattr(detector, "selection_", None)
    chosen = ""
    if selection:  # --model auto: the candidates' evidence, best first
        faults = list(selection["candidates"][0]["detected"])
        chosen = (f"<h2>Model chosen by --model auto: {html.escape(selection['chosen'])}</h2><p>{html.escape(selection['criterion'])}</p>"
                  + html_table([(c["kind"], f"{c['score']:.3f}", *(f"{c['detected'][f]:.2f}" for f in faults), f"{c['seconds']:.1f}")
                                for c in selection["candidates"]], ("kind", "criterion", *faults, "training s")))
    body = (
        f"<p>Run: {html.escape(str(run_dir))}; model {html.escape(detector.kind)}, "
        f"window {detector.window}, stride {detector.stride}, threshold {threshold:.4g} ({html.escape(detector.threshold_info_.method)}).</p>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in notes) + chosen +
        f"<h2>Metrics</h2>{table}<p>Point-adjusted F1 flatters; read it beside the others, never alone.</p>"
        f"<h2>Events</h2>{events}"
        f"<h2>Plots</h2>{images}<h2>Raw</h2><pre>{html.escape(json.dumps(metrics, indent=1))}</pre>"
    )
    path = out_dir / "report.html"
    path.write_text(html_page("linewatch evaluation", body))
    return path


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
