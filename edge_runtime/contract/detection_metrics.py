"""Evaluation metrics for anomaly detection on labelled time series.

Point-wise metrics pool one confusion matrix over all series (the SKAB protocol):
F1 = TP / (TP + (FN + FP) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP). Event metrics treat
each contiguous run of label 1 as one event. Point-adjusted F1 is reported only beside the
others: it is known to flatter (a random detector reaches 0.82 on SKAB).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edge_runtime.contract.alarms import Alarm
from edge_runtime.contract.episodes import episode_metrics, events
from edge_runtime.contract.rowscores import alarm_rows, spread_to_rows
from edge_runtime.contract.timeparse import iso


def match_alarms(spans: list[tuple[float, float]], alarm_times: np.ndarray, grace: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Match alarms to anomaly events of one series.

    ``spans`` are the events' first and last times, ``alarm_times`` when alarms fired. An event
    is detected by the earliest alarm within ``[first, last + grace]``. Returns, per span, the
    index of that alarm in ``alarm_times`` (-1: missed), and per alarm whether it fell in any
    span (an alarm in none is a false alarm).
    """
    times = np.asarray(alarm_times, dtype=np.float64)
    first_alarm = np.full(len(spans), -1, dtype=np.int64)
    used = np.zeros(len(times), dtype=bool)
    for k, (first, last) in enumerate(spans):
        inside = (times >= first) & (times <= last + grace)
        if inside.any():
            hits = np.flatnonzero(inside)
            first_alarm[k] = hits[np.argmin(times[hits])]
            used |= inside
    return first_alarm, used


def _safe(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count half), via the Mann-Whitney U statistic."""
    y = np.asarray(labels).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: the step-wise area under the precision-recall curve."""
    y = np.asarray(labels).astype(bool)
    if not y.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    s, yy = np.asarray(scores)[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(yy)[distinct]
    fp = np.cumsum(~yy)[distinct]
    precision = tp / (tp + fp)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass
class SeriesResult:
    """Labels, binary predictions and (optionally) scores of one series, with its times."""

    labels: np.ndarray
    predictions: np.ndarray
    scores: np.ndarray | None = None
    time: np.ndarray | None = None
    name: str = ""


DAY = 86_400.0


def evaluate(results: list[SeriesResult]) -> dict:
    """All metrics over several series, as a JSON-ready dict.

    Point-wise, pooled over the rows that have a score: ``precision``, ``recall``, ``f1``,
    ``far``, ``mar``; rows without one (before a series' first window, in a gap) are counted
    apart, ``unscored_rows`` and ``unscored_anomalous_rows`` (a result without scores has every
    row scored). Per event: ``events``, ``events_detected``, ``event_recall``, ``event_f1``
    (point precision with event recall), ``detection_delay_median_rows`` and ``_seconds`` (first
    alarm after an event starts), and ``events_detail``, one entry per event (series, first and
    last time, detected, delay). False alarms: ``series_with_early_false_alarm`` (an alarm before
    the series' first anomaly), ``false_alarms_per_day`` (alarm onsets on normal rows per day of
    scored normal rows, i.e. per machine-day when a series is a machine) and
    ``false_alarms_per_day_before_first_anomaly`` (the same on the rows before each series' first
    anomaly, all of a series without one: normal operation nothing has disturbed yet); both need
    times and are None without. Where the false-alarm rate comes from: ``far_before_first_anomaly``
    and ``far_after_last_anomaly``, the FAR over the scored normal rows before each series' first
    anomaly and after its last one ends (None without such rows): the second holds the alarm that
    lasts while windows still span the fault, and a machine that does not return to the state it
    was trained on. Ranking: ``roc_auc``, ``pr_auc``; and ``point_adjusted_f1``. Episodes (what an operator receives):
    ``alarm_episodes``, ``episode_precision``, ``episodes_per_day``, ``nab_score`` (see :mod:`edge_runtime.contract.episodes`).
    """
    tp = fp = fn = tn = unscored = unscored_anomalous = 0
    n_events = detected = early = 0
    delays_rows: list[int] = []
    delays_seconds: list[float] = []
    detail: list[dict] = []
    adjusted_tp = adjusted_fn = 0
    onsets = onsets_early = 0
    flagged_before = normal_before = flagged_after = normal_after = 0
    normal_seconds = early_seconds = 0.0
    timed = all(r.time is not None for r in results)
    all_scores, all_labels = [], []
    for r in results:
        y = np.asarray(r.labels).astype(bool)
        p = np.asarray(r.predictions).astype(bool)
        scored = np.isfinite(r.scores) if r.scores is not None else np.ones(len(y), bool)
        unscored += int((~scored).sum())
        unscored_anomalous += int((~scored & y).sum())
        ys, ps = y[scored], p[scored]
        tp += int((ys & ps).sum())
        fp += int((~ys & ps).sum())
        fn += int((ys & ~ps).sum())
        tn += int((~ys & ~ps).sum())
        series_events = events(y)
        if series_events and p[: series_events[0][0]].any():
            early += 1
        clock = np.arange(len(y), dtype=np.float64) if r.time is None else np.asarray(r.time, dtype=np.float64)
        before_first = np.arange(len(y)) < (series_events[0][0] if series_events else len(y))
        after_last = np.arange(len(y)) >= (series_events[-1][1] if series_events else len(y))
        normal = scored & ~y
        flagged_before += int((normal & p & before_first).sum())
        normal_before += int((normal & before_first).sum())
        flagged_after += int((normal & p & after_last).sum())
        normal_after += int((normal & after_last).sum())
        false_onsets = p & ~np.r_[False, p[:-1]] & ~y
        onsets += int(false_onsets.sum())
        onsets_early += int((false_onsets & before_first).sum())
        if timed and len(clock) > 1:
            period = float(np.median(np.diff(clock)))
            normal_seconds += period * int(normal.sum())
            early_seconds += period * int((normal & before_first).sum())
        flagged = np.flatnonzero(p)
        spans = [(clock[start], clock[stop - 1]) for start, stop in series_events]
        first_alarm, _ = match_alarms(spans, clock[flagged])
        for (start, stop), k in zip(series_events, first_alarm):
            n_events += 1
            event = {"series": r.name, "first": _when(clock[start], r.time), "last": _when(clock[stop - 1], r.time), "rows": stop - start,
                     "detected": bool(k >= 0), "delay_rows": None, "delay_seconds": None}
            if k >= 0:
                detected += 1
                delays_rows.append(int(flagged[k] - start))
                event["delay_rows"] = delays_rows[-1]
                if r.time is not None:
                    delays_seconds.append(float(clock[flagged[k]] - clock[start]))
                    event["delay_seconds"] = delays_seconds[-1]
                adjusted_tp += stop - start
            else:
                adjusted_fn += stop - start
            detail.append(event)
        if r.scores is not None:
            all_scores.append(np.asarray(r.scores)[scored])
            all_labels.append(y[scored])
    precision = _safe(tp, tp + fp)
    event_recall = _safe(detected, n_events)
    adjusted_precision = _safe(adjusted_tp, adjusted_tp + fp)
    adjusted_recall = _safe(adjusted_tp, adjusted_tp + adjusted_fn)
    metrics = {
        "rows": tp + fp + fn + tn,
        "unscored_rows": unscored,
        "unscored_anomalous_rows": unscored_anomalous,
        "precision": precision,
        "recall": _safe(tp, tp + fn),
        "f1": _safe(tp, tp + (fn + fp) / 2),
        "far": _safe(fp, fp + tn),
        "mar": _safe(fn, fn + tp),
        "far_before_first_anomaly": flagged_before / normal_before if normal_before else None,
        "far_after_last_anomaly": flagged_after / normal_after if normal_after else None,
        "events": n_events,
        "events_detected": detected,
        "event_recall": event_recall,
        "event_f1": _safe(2 * precision * event_recall, precision + event_recall),
        "detection_delay_median_rows": float(np.median(delays_rows)) if delays_rows else None,
        "detection_delay_median_seconds": float(np.median(delays_seconds)) if delays_seconds else None,
        "series": len(results),
        "series_with_early_false_alarm": early,
        "false_alarms_per_day": onsets / (normal_seconds / DAY) if timed and normal_seconds else None,
        "false_alarms_per_day_before_first_anomaly": onsets_early / (early_seconds / DAY) if timed and early_seconds else None,
        "point_adjusted_f1": _safe(2 * adjusted_precision * adjusted_recall, adjusted_precision + adjusted_recall),
    }
    metrics.update(episode_metrics([(r.labels, r.predictions, None if r.time is None else np.asarray(r.time, dtype=np.float64))
                                    for r in results]))
    if all_scores:
        scores, labels = np.concatenate(all_scores), np.concatenate(all_labels)
        metrics["roc_auc"] = roc_auc(scores, labels)
        metrics["pr_auc"] = pr_auc(scores, labels)
    metrics["events_detail"] = detail
    return metrics


def _when(t: float, time: np.ndarray | None):
    """An event's time as ISO 8601 UTC (times are epoch seconds), or its row without times."""
    return iso(float(t)) if time is not None else int(t)


@dataclass
class ScoredSeries:
    """One labelled series scored window by window: each window's last row and score, and each row's run of good samples."""

    name: str
    time: np.ndarray
    labels: np.ndarray
    ends: np.ndarray
    window_scores: np.ndarray
    run_of_row: np.ndarray


ALARM_POLICY_KEYS = ("f1", "far", "far_before_first_anomaly", "far_after_last_anomaly", "mar", "events_detected",
                     "series_with_early_false_alarm", "false_alarms_per_day", "false_alarms_per_day_before_first_anomaly",
                     "alarm_episodes", "episode_precision", "episodes_per_day", "nab_score")


def decisions(parts: list[ScoredSeries], threshold: float, stride: int, policy: tuple[int, int, int, float]
              ) -> tuple[list[SeriesResult], list[SeriesResult]]:
    """Per series, the rows the raw threshold flags and the rows the runtime's alarm ``policy`` (on_k, on_n, off_m,
    deadband) holds in alarm; pool several models' results by evaluating the concatenated lists.
    """
    raw, alarmed = [], []
    for p in parts:
        n = len(p.time)
        rows = spread_to_rows(n, p.ends, p.window_scores, stride, p.run_of_row) if len(p.ends) else np.full(n, np.nan)
        raw.append(SeriesResult(p.labels, (np.nan_to_num(rows, nan=-np.inf) > threshold).astype(np.int8), rows, p.time, p.name))
        flags = alarm_rows(n, p.ends, p.window_scores, stride, p.run_of_row, threshold, Alarm(*policy))
        alarmed.append(SeriesResult(p.labels, flags, rows, p.time, p.name))
    return raw, alarmed


def evaluate_both(raw: list[SeriesResult], alarmed: list[SeriesResult]) -> dict:
    """Every metric for the raw decisions, and ``alarm_policy_*`` for the alarm policy's."""
    metrics = evaluate(raw)
    with_policy = evaluate(alarmed)
    for key in ALARM_POLICY_KEYS:
        metrics[f"alarm_policy_{key}"] = with_policy[key]
    for event, by_policy in zip(metrics["events_detail"], with_policy["events_detail"]):
        event["alarm_policy_detected"], event["alarm_policy_delay_seconds"] = by_policy["detected"], by_policy["delay_seconds"]
    return metrics


# Multiples of a threshold for a sweep: half-octave steps from an eighth to eight times it.
THRESHOLD_MULTIPLES = tuple(float(2.0 ** (k / 2)) for k in range(-6, 7))


def threshold_sweep(models: list[tuple[list[ScoredSeries], float, int]], policy: tuple[int, int, int, float],
                    multiples: tuple[float, ...] = THRESHOLD_MULTIPLES) -> list[dict]:
    """What the alarm ``policy`` would raise with every model's threshold scaled by each multiple.

    ``models`` holds ``(parts, threshold, stride)`` per model; one confusion matrix is pooled over
    all of them per multiple. On labelled data this separates the two limits of a detector: if no
    multiple reaches the wanted F1 at the wanted false-alarm rate, the score's ranking is what
    falls short, not the threshold.
    """
    sweep = []
    for multiple in multiples:
        alarmed = [r for parts, threshold, stride in models for r in decisions(parts, threshold * multiple, stride, policy)[1]]
        metrics = evaluate(alarmed)
        sweep.append({"multiple": multiple, **{key: metrics[key] for key in ALARM_POLICY_KEYS}})
    return sweep


def evaluate_models(models: list[tuple[list[ScoredSeries], float, int]], policy: tuple[int, int, int, float],
                    sweep: bool = False) -> dict:
    """The metrics of one or more models' scored series, ``(parts, threshold, stride)`` per model, one confusion matrix
    pooled over all of them (SKAB's protocol: a model per experiment); one rule for ``evaluate`` on runs and on bundles.

    Several models are first put on one scale, each score divided by its model's threshold (every threshold becomes 1),
    so that ROC and PR AUC rank all rows together; ``models`` says how many were pooled, ``threshold`` is the one
    model's own. ``sweep`` adds ``threshold_sweep``: the alarm policy's metrics at every multiple of the thresholds.
    """
    if len(models) > 1:
        models = [([replace(p, window_scores=np.asarray(p.window_scores) / threshold) for p in parts], 1.0, stride)
                  for parts, threshold, stride in models]
    decided = [decisions(parts, threshold, stride, policy) for parts, threshold, stride in models]
    metrics = evaluate_both([r for raw, _ in decided for r in raw], [r for _, alarmed in decided for r in alarmed])
    metrics["models"] = len(models)
    metrics["threshold"] = models[0][1] if len(models) == 1 else None
    if sweep:
        metrics["threshold_sweep"] = threshold_sweep(models, policy)
    metrics["events_detail"] = metrics.pop("events_detail")  # the long list last
    return metrics


EVENTS_SHOWN = 50  # per-event lines printed; evaluation.json holds them all


def format_metrics(metrics: dict) -> list[str]:
    """The metrics as aligned two-column lines, then the events and the threshold sweep (when there is one) as tables."""
    flat = {key: value for key, value in metrics.items() if not isinstance(value, list)}
    width = max(len(k) for k in flat)
    lines = [f"  {key:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {key:<{width}}  {'-' if value is None else value}"
             for key, value in flat.items()]
    events_detail = metrics.get("events_detail", [])
    if events_detail:
        lines += ["events (delay: first alarm after the event's first row; raw threshold, then the alarm policy):",
                  f"  {'series':<24} {'first':<24} {'rows':>6} {'raw delay':>10} {'policy delay':>12}"]
        for event in events_detail[:EVENTS_SHOWN]:
            lines.append(f"  {str(event['series'])[-24:]:<24} {event['first']!s:<24} {event['rows']:>6} "
                         f"{delay_text(event['detected'], event['delay_seconds'], event['delay_rows']):>10} "
                         f"{delay_text(event.get('alarm_policy_detected'), event.get('alarm_policy_delay_seconds')):>12}")
        if len(events_detail) > EVENTS_SHOWN:
            lines.append(f"  ... {len(events_detail) - EVENTS_SHOWN} more in evaluation.json")
    if "threshold_sweep" in metrics:
        lines += ["threshold sweep (the alarm policy at multiples of the threshold):",
                  f"  {'multiple':>8} {'threshold':>10} {'F1':>6} {'FAR %':>6} {'before':>6} {'after':>6} {'MAR %':>6} {'events':>7} "
                  f"{'early':>5} {'FA/day':>7}"]
        for row in metrics["threshold_sweep"]:
            per_day = row["false_alarms_per_day"]
            threshold = "-" if metrics["threshold"] is None else f"{row['multiple'] * metrics['threshold']:.4g}"  # several models: one each
            before, after = far_split_text(row)
            lines.append(f"  {row['multiple']:>8.3g} {threshold:>10} {row['f1']:>6.3f} {row['far'] * 100:>6.1f} {before:>6} {after:>6} "
                         f"{row['mar'] * 100:>6.1f} {row['events_detected']:>7} {row['series_with_early_false_alarm']:>5} "
                         f"{'-' if per_day is None else f'{per_day:.3g}':>7}")
    return lines


def far_split_text(metrics: dict) -> tuple[str, str]:
    """The FAR before the first anomaly and after the last one, in percent (``-``: no such rows)."""
    return tuple("-" if metrics[key] is None else f"{metrics[key] * 100:.1f}" for key in ("far_before_first_anomaly", "far_after_last_anomaly"))


def delay_text(detected: bool | None, seconds: float | None, rows: int | None = None) -> str:
    """An event's detection as text: its delay in seconds (or rows), ``missed``, or ``-`` when not evaluated."""
    if detected is None:
        return "-"
    if not detected:
        return "missed"
    return f"{seconds:g} s" if seconds is not None else f"{rows} rows" if rows is not None else "detected"
