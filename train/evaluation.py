"""Score labelled data with a fitted detector and compute every metric."""

from __future__ import annotations

import numpy as np

from edge_runtime.alarms import Alarm
from edge_runtime.config import AlarmConfig
from edge_runtime.rowscores import alarm_rows
from train.data import SensorTable
from train.detector import AutoencoderDetector, SeriesScores
from train.errors import DataError
from train.metrics import SeriesResult, evaluate


def evaluate_detector(detector: AutoencoderDetector, table: SensorTable) -> tuple[dict, list[SeriesScores]]:
    """Metrics (see :func:`train.metrics.evaluate`) and per-series scores on labelled data."""
    if not table.has_labels:
        raise DataError("evaluation needs a label column (label/anomaly or --label-column)")
    detector._check_features(table)
    scored = [detector.score_series(s) for s in table.series]
    results = [
        SeriesResult(
            labels=s.labels,
            predictions=(np.nan_to_num(sc.row_scores, nan=-np.inf) > detector.threshold_).astype(np.int8),
            scores=sc.row_scores,
            time=s.time,
            name=s.name,
        )
        for s, sc in zip(table.series, scored)
    ]
    metrics = evaluate(results)
    metrics["threshold"] = detector.threshold_
    a = AlarmConfig()  # the runtime's default policy: what a gateway with this bundle would raise
    alarmed = evaluate([
        SeriesResult(labels=s.labels, scores=sc.row_scores, time=s.time, name=s.name,
                     predictions=alarm_rows(len(s), sc.windows.ends, sc.window_scores, detector.stride,
                                            sc.windows.segment_of(np.arange(len(s))), detector.threshold_,
                                            Alarm(a.on_k, a.on_n, a.off_m, a.deadband)))
        for s, sc in zip(table.series, scored)
    ])
    for key in ("f1", "far", "mar", "events_detected", "series_with_early_false_alarm"):
        metrics[f"alarm_policy_{key}"] = alarmed[key]
    return metrics, scored
