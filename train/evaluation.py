"""Score labelled data with a fitted detector and compute every metric."""

from __future__ import annotations

import numpy as np

from edge_runtime.contract.alarms import AlarmConfig
from edge_runtime.contract.detection_metrics import ScoredSeries, evaluate_models
from train.data import SensorTable
from train.detector import AutoencoderDetector, SeriesScores
from train.errors import DataError


def scored_parts(detector: AutoencoderDetector, table: SensorTable) -> tuple[list[ScoredSeries], list[SeriesScores]]:
    """Every labelled series of ``table`` scored window by window with training's scorer, and its per-row scores."""
    if not table.has_labels:
        raise DataError("evaluation needs a label column (label/anomaly or --label-column)")
    detector._check_features(table)
    scored = [detector.score_series(s) for s in table.series]
    parts = [ScoredSeries(s.name, s.time, s.labels, sc.windows.ends, sc.window_scores, sc.windows.segment_of(np.arange(len(s))))
             for s, sc in zip(table.series, scored)]
    return parts, scored


def evaluate_detector(detector: AutoencoderDetector, table: SensorTable, sweep: bool = False) -> tuple[dict, list[SeriesScores]]:
    """Metrics (see :func:`edge_runtime.contract.detection_metrics.evaluate_models`; ``sweep`` adds the threshold sweep) and
    per-series scores on labelled data, with the runtime's default alarm policy: what a gateway would raise.
    """
    parts, scored = scored_parts(detector, table)
    return evaluate_models([(parts, detector.threshold_, detector.stride)], AlarmConfig().policy(), sweep), scored
