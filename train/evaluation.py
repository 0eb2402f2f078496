"""Score labelled data with a fitted detector and compute every metric."""

from __future__ import annotations

import numpy as np

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
    return metrics, scored
