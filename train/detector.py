"""A scikit-learn-style anomaly detector built on the window autoencoders.

Higher score means more anomalous everywhere in this module.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from edge_runtime.contract.conditions import CONDITION_MARGIN
from edge_runtime.contract.conditions import unseen as unseen_conditions
from edge_runtime.contract.conformal import window_rate
from edge_runtime.contract.rowscores import spread_to_rows
from train import rundir
from train.data import Condition, SensorTable, Series, infer_sample_period
from train.errors import DataError, NotFittedError
from train.models import build_model
from train.scoring import WindowScorer
from train.thresholds import METHODS, Threshold, fit_alarm_threshold, fit_threshold
from train.trainer import TrainingHistory, TrainingOptions, fit_scorer, select_device
from train.windows import SeriesWindows, series_windows

CALIBRATION_KEEP = 512
MIN_LEVEL_WINDOWS = 10  # windows on each side before the trained windows' scores are corrected to the unseen ones' level
LEVEL_QUANTILE = 0.95  # the quantile the two levels are compared at, lowered so that LEVEL_TAIL_WINDOWS lie above it
LEVEL_TAIL_WINDOWS = 5
CALIBRATIONS = ("out-of-fold", "holdout")  # errors each channel's level (and a per-window threshold) rest on (see fit)
QUANTILES = (0.5, 0.9, 0.99, 0.999)
CONDITIONAL_KINDS = ("dense", "vae")  # the models that take operating conditions (conditional AE and VAE)
DEFAULT_KIND = "pca"  # ranks best or level on SKAB, NAB and the simulator (benchmarks/results/score_ranking.md)


def default_kind(conditions: list[str] | None = None) -> str:
    """The kind trained when none is named: PCA, or the first conditional kind (dense) when conditions are given."""
    return CONDITIONAL_KINDS[0] if conditions else DEFAULT_KIND


def seen_level(trained: np.ndarray, unseen: np.ndarray) -> float:
    """How much higher new normal windows score than the windows the model trained on: the ratio of the two scores'
    95th percentiles (a lower quantile where one side has fewer than 100 windows, so that 5 of them lie above it),
    at least 1; 1 where a side has fewer than ``MIN_LEVEL_WINDOWS``.
    """
    fewest = min(len(trained), len(unseen))
    if fewest < MIN_LEVEL_WINDOWS:
        return 1.0
    q = min(LEVEL_QUANTILE, 1 - LEVEL_TAIL_WINDOWS / fewest)
    return max(1.0, float(np.quantile(unseen, q) / np.quantile(trained, q)))


def as_table(X, features: list[str] | None = None, sample_period: float = 1.0) -> SensorTable:
    """Accept a :class:`SensorTable`, a :class:`Series`, or an array ``[T, F]`` (evenly sampled)."""
    if isinstance(X, SensorTable):
        return X
    if isinstance(X, Series):
        return SensorTable(features=features or [f"x{i}" for i in range(X.values.shape[1])], series=[X])
    values = np.asarray(X, dtype=np.float32)
    if values.ndim != 2:
        raise DataError(f"expected data of shape [rows, features], got {values.shape}")
    names = features or [f"x{i}" for i in range(values.shape[1])]
    return SensorTable(features=names, series=[Series("data", np.arange(len(values)) * sample_period, values)])


@dataclass
class SeriesScores:
    """Scores of one series: per window (with its end row) and per row (NaN before a window)."""

    windows: SeriesWindows
    window_scores: np.ndarray
    feature_error: np.ndarray
    row_scores: np.ndarray


class AutoencoderDetector:
    """Window autoencoder anomaly detector with a scikit-learn interface.

    ``fit(X)`` trains on normal data (rows labelled anomalous are left out when labels exist),
    chooses a threshold on held-out normal windows, and sets the learned attributes
    ``features_``, ``sample_period_``, ``max_gap_``, ``scorer_``, ``threshold_``,
    ``threshold_info_``, ``calibration_quantiles_`` and ``history_``. ``score_samples(X)``
    returns one score per row: the score of the latest window ending at or before that row in
    the same gap-free segment (what the runtime would have reported then; NaN before the first
    window). Higher score means more anomalous; ``predict`` flags rows whose score exceeds
    ``threshold_``.
    """

    def __init__(
        self,
        kind: str = DEFAULT_KIND,
        window: int = 50,
        stride: int = 10,
        model_params: dict | None = None,
        sample_period: float | None = None,
        max_gap: float | None = None,
        train_stride: int = 1,
        max_windows: int = 50_000,
        val_fraction: float = 0.2,
        threshold: str = "alarms",
        threshold_param: float | None = None,
        false_alarms_per_day: float = 1.0,
        calibration: str = "out-of-fold",
        epochs: int = 200,
        batch_size: int = 256,
        lr: float = 1e-3,
        patience: int = 5,
        device: str = "auto",
        seed: int = 0,
        progress: bool = True,
        conditions: list[str] | None = None,
        distances: bool = True,
    ) -> None:
        self.kind, self.window, self.stride = kind, window, stride
        self.distances = distances
        self.conditions = list(conditions) if conditions else None
        self.model_params = dict(model_params or {})
        self.sample_period, self.max_gap = sample_period, max_gap
        self.train_stride, self.max_windows, self.val_fraction = train_stride, max_windows, val_fraction
        self.threshold, self.threshold_param = threshold, threshold_param
        self.false_alarms_per_day, self.calibration = false_alarms_per_day, calibration
        self.epochs, self.batch_size, self.lr, self.patience = epochs, batch_size, lr, patience
        self.device, self.seed, self.progress = device, seed, progress

    # -- fitting -------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Refuse bad constructor parameters at ``fit``, naming the parameter and its value."""
        positive_ints = {"window": self.window, "stride": self.stride, "train_stride": self.train_stride,
                         "max_windows": self.max_windows, "epochs": self.epochs, "batch_size": self.batch_size}
        for name, value in positive_ints.items():
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise DataError(f"{name}={value!r}: expected a positive integer")
        if self.window < 2:
            raise DataError(f"window={self.window!r}: a window needs at least 2 samples")
        if not 0 < self.val_fraction < 1:
            raise DataError(f"val_fraction={self.val_fraction!r}: expected a fraction between 0 and 1")
        if not self.lr > 0:
            raise DataError(f"lr={self.lr!r}: expected a positive learning rate")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise DataError(f"patience={self.patience!r}: expected a non-negative integer")
        for name, value in (("sample_period", self.sample_period), ("max_gap", self.max_gap)):
            if value is not None and not value > 0:
                raise DataError(f"{name}={value!r}: expected a positive number of seconds")
        if self.threshold not in METHODS:
            raise DataError(f"threshold={self.threshold!r}: expected one of {METHODS}")
        if not self.false_alarms_per_day > 0:
            raise DataError(f"false_alarms_per_day={self.false_alarms_per_day!r}: expected a positive number")
        if self.calibration not in CALIBRATIONS:
            raise DataError(f"calibration={self.calibration!r}: expected one of {CALIBRATIONS}")
        if not isinstance(self.distances, (bool, np.bool_)):
            raise DataError(f"distances={self.distances!r}: expected True or False")
        if self.conditions and self.kind not in CONDITIONAL_KINDS:
            raise DataError(f"conditions work with the {' and '.join(CONDITIONAL_KINDS)} models, not {self.kind!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "scorer_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(X) or load a run directory first")

    def _windows(self, table: SensorTable, stride: int, exclude_labelled: bool) -> list[SeriesWindows]:
        return [series_windows(s, self.window, stride, self.max_gap_, exclude_labelled) for s in table.series]

    def _split(self, windowed: list[SeriesWindows]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Chronological split per series: the last ``val_fraction`` of windows validate.

        Returns, per series, the indices of its training and of its validation windows;
        validation windows that overlap the last training window are purged.
        """
        train_sel, val_sel = [], []
        for sw in windowed:
            n = len(sw.starts)
            cut = int(round(n * (1 - self.val_fraction))) if n > 1 else n
            last_train_end = sw.starts[cut - 1] + self.window if cut else -1
            train_sel.append(np.arange(cut))
            val_sel.append(np.flatnonzero(sw.starts[cut:] >= last_train_end) + cut)
        return train_sel, val_sel

    def _gather(self, windowed: list[SeriesWindows], selections: list[np.ndarray], limit: int, rng: np.random.Generator) -> np.ndarray:
        """Copy the selected windows (a random ``limit`` of them at most) into one array."""
        sizes = np.array([len(sel) for sel in selections])
        total = int(sizes.sum())
        if total > limit:
            chosen = np.sort(rng.choice(total, limit, replace=False))
            offsets = np.r_[0, np.cumsum(sizes)]
            selections = [sel[chosen[(chosen >= lo) & (chosen < hi)] - lo] for sel, lo, hi in zip(selections, offsets, offsets[1:])]
        parts = [sw.take(sel) for sw, sel in zip(windowed, selections) if len(sel)]
        return np.concatenate(parts) if parts else np.empty((0, self.window, len(self.features_) + len(self.conditions_)), np.float32)

    def fit(self, X, y=None) -> AutoencoderDetector:
        """Train on normal data ``X`` (a SensorTable, or an array ``[T, F]``); ``y`` is ignored."""
        self._check_params()
        table = as_table(X, sample_period=self.sample_period or 1.0)
        self.features_ = list(table.features)
        self.conditions_ = self._table_conditions(table)
        self.sample_period_ = float(self.sample_period or infer_sample_period(table))
        self.max_gap_ = float(self.max_gap if self.max_gap is not None else 3 * self.sample_period_)
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        windowed = self._windows(table, self.train_stride, exclude_labelled=True)
        if sum(len(sw.starts) for sw in windowed) == 0:
            longest = max((len(s) for s in table.series), default=0)
            raise DataError(
                f"too few rows for one window: need {self.window} consecutive gap-free normal rows "
                f"(max gap {self.max_gap_:g} s); the longest series has {longest} rows"
            )
        train_sel, val_sel = self._split(windowed)
        train = self._gather(windowed, train_sel, self.max_windows, rng)
        val = self._gather(windowed, val_sel, max(self.max_windows // 4, CALIBRATION_KEEP), rng)
        if len(val) == 0:
            raise DataError(self._no_validation_windows(table))
        n = len(self.features_)
        mean = train[..., :n].mean(axis=(0, 1), dtype=np.float64)
        std = train[..., :n].std(axis=(0, 1), dtype=np.float64)
        constant = [f for f, s, m in zip(self.features_, std, mean) if s <= 1e-6 * max(1.0, abs(m))]
        if constant:
            raise DataError(f"constant feature(s) {constant} in the training data carry no information; drop them with --features")
        self.condition_ranges_ = self._condition_ranges(train[:, -1, n:])
        self.scorer_ = self._build_scorer(mean, std)
        options = TrainingOptions(self.epochs, self.batch_size, self.lr, patience=self.patience, progress=self.progress)
        self.history_: TrainingHistory = fit_scorer(
            self.scorer_, torch.from_numpy(train), torch.from_numpy(val), options, select_device(self.device), self.seed
        )
        self.scorer_.to("cpu").eval()
        if self.distances:
            self.scorer_.fit_distances(torch.from_numpy(train))
        out_of_fold = self._out_of_fold_errors(table) if self.calibration == "out-of-fold" else None
        self.calibration_source_ = "holdout" if out_of_fold is None else "out-of-fold"
        self.calibration_windows_ = val[:CALIBRATION_KEEP]
        self._calibrate_on_errors(self.channel_errors(val) if out_of_fold is None else out_of_fold, windowed, train_sel)
        self.data_fingerprint_ = fingerprint(table)
        self.training_windows_ = int(len(train))
        return self

    def _table_conditions(self, table: SensorTable) -> list[Condition]:
        """The table's condition columns, which must be the ones asked for (none for an unconditional model)."""
        names = [c.name for c in table.conditions]
        if names != list(self.conditions or []):
            raise DataError(f"the data carries conditions {names}, the detector expects {self.conditions or []}: "
                            "read it with read_table(..., conditions=...)")
        return list(table.conditions)

    def _condition_ranges(self, last: np.ndarray) -> list[dict]:
        """Per condition, what training saw at the windows' last samples: numeric mean, std and range."""
        ranges = []
        for j, condition in enumerate(self.conditions_):
            values = last[:, j][np.isfinite(last[:, j])]
            if condition.kind == "categorical":
                ranges.append({"mean": 0.0, "std": 1.0})  # one-hot: nothing to standardise
            elif not len(values):
                raise DataError(f"condition '{condition.name}' has no value at the end of any training window")
            else:
                std = float(values.std())
                ranges.append({"mean": float(values.mean()), "std": std if std > 1e-9 else 1.0, "min": float(values.min()), "max": float(values.max())})
        return ranges

    def _build_scorer(self, mean: np.ndarray, std: np.ndarray) -> WindowScorer:
        """The scorer for this detector's kind, features and conditions (weights still untrained)."""
        specs = [("numeric", 0) if c.kind == "numeric" else ("categorical", len(c.categories)) for c in self.conditions_]
        extra = {"n_conditions": WindowScorer.encoded_width(specs)} if specs else {}
        try:
            model = build_model(self.kind, self.window, len(self.features_), **self.model_params, **extra)
        except TypeError as error:  # an unknown or ill-typed hyper-parameter
            raise DataError(f"model {self.kind!r}: {error}") from None
        stats = {}
        if specs:
            stats = {"condition_mean": torch.tensor([r["mean"] for r in self.condition_ranges_]),
                     "condition_std": torch.tensor([r["std"] for r in self.condition_ranges_])}
        return WindowScorer(model, torch.as_tensor(mean), torch.as_tensor(std), specs, **stats, distances=self.distances)

    def condition_specs(self) -> list[dict]:
        """The conditions as the bundle records them: name, kind, categories and what training saw."""
        return [{**c.to_dict(), **r} for c, r in zip(self.conditions_, self.condition_ranges_)]

    def _no_validation_windows(self, table: SensorTable) -> str:
        """Why no validation window was left, naming the real causes: labelled rows, gaps, or too little data."""
        causes = []
        rows = sum(len(s) for s in table.series)
        labelled = sum(int(s.labels.sum()) for s in table.series if s.labels is not None)
        if labelled > 0.25 * rows:
            causes.append(f"{labelled} of {rows} rows are labelled anomalous and left out of training (--ignore-labels trains on them)")
        steps = [(float(step), s.name, float(t)) for s in table.series for step, t in zip(np.diff(s.time), s.time[1:]) if step > self.max_gap_]
        if steps:
            longest = max(steps)
            hint = f"; --max-gap {np.ceil(longest[0]):g} would bridge them" if longest[0] <= 10 * self.sample_period_ else ""
            causes.append(f"{len(steps)} gap(s) longer than the max gap of {self.max_gap_:g} s split the data (the longest "
                          f"{longest[0]:g} s, in {longest[1]} before t={longest[2]:.0f}){hint}")
        causes.append(f"the last {self.val_fraction:.0%} of each series' windows, less those overlapping training, hold no window of "
                      f"{self.window} rows: give more data or a smaller --window (such as {max(2, self.window // 2)})")
        return "no validation windows: " + "; ".join(causes)

    def _out_of_fold_errors(self, table: SensorTable) -> np.ndarray | None:
        """Every normal training window's channel errors from a model that did not see it (two chronological folds).

        Each series is cut at its middle row; a model trained on the first halves scores the
        windows of the second halves and the other way round, so the errors include what a model
        meets on normal data it was not trained on (later hours, some drift). None, with a
        warning, when a half is too short to train on.
        """
        errors = []
        for fit_half, score_half in ((0, 1), (1, 0)):
            helper = clone_params(self, calibration="holdout", threshold="conformal", progress=False)  # only its raw errors are used
            try:
                helper.fit(half_table(table, fit_half))
            except DataError as error:
                warnings.warn(f"out-of-fold calibration skipped ({error}); the threshold rests on the held-out windows only", stacklevel=3)
                return None
            errors.append(helper._normal_window_errors(half_table(table, score_half)))
        errors = np.concatenate(errors)
        return errors if len(errors) else None

    def _normal_window_errors(self, table: SensorTable) -> np.ndarray:
        """The channel errors of every normal window of ``table`` (rows labelled anomalous left out), at the training stride."""
        windowed = self._windows(table, self.train_stride, exclude_labelled=True)
        parts = [self.channel_errors(sw.take(np.arange(len(sw.starts)))) for sw in windowed if len(sw.starts)]
        return np.concatenate(parts) if parts else np.empty((0, self.scorer_.n_channels), np.float32)

    def _calibrate_on_errors(self, errors: np.ndarray, windowed: list[SeriesWindows] | None = None,
                             seen: list[np.ndarray] | None = None) -> Threshold:
        """Set each channel's normal level from the channel errors of normal windows, then the threshold.

        The deployed levels come from every window. For ``alarms`` the threshold comes from the deployed model's own
        scores of ``windowed`` in time order (:meth:`_calibrate_on_alarms`). For the other methods it is cross-fitted:
        levels move from one stretch of normal operation to the next, and the score, the largest channel, picks the
        channel whose level came out lowest; so each half of the windows is scored with the levels of the other half
        and the method is applied to the scores of both halves together.
        """
        every = torch.from_numpy(errors)  # plain data, no autograd graph is built on it
        reference = torch.from_numpy(self.channel_errors(self.calibration_windows_))  # the deployed model on windows it did not see
        self.scorer_.set_normal_level(every, reference)
        scores = self.scorer_.combine(every)[0].numpy()
        if self.threshold == "alarms":
            if seen is not None:
                self.calibration_source_ = "training"  # the deployed model's own windows, unlike out-of-fold levels
            return self._calibrate_on_alarms(windowed, seen, baseline=scores)
        halves = self.scorer_.crossed_halves(len(every))
        crossed = scores  # a single window leaves nothing to cross-fit
        if halves:
            crossed = torch.cat([self.scorer_.combine(every[scored], self.scorer_.weights_for(every[levels], reference))[0]
                                 for levels, scored in halves]).numpy()
        return self.calibrate(crossed, baseline=scores)  # drift is measured against the deployed scores

    def _calibrate_on_alarms(self, windowed: list[SeriesWindows], seen: list[np.ndarray] | None, baseline: np.ndarray) -> Threshold:
        """The ``alarms`` threshold from the deployed model's scores of every window of ``windowed``, in time order.

        ``seen`` (per series, the windows the model trained on) are scored lower than new normal data: their scores
        are raised by how much higher the unseen (validation) windows score (:func:`seen_level`). Windows are scored
        at the training stride; every ``stride / train_stride``-th of them from each offset makes one replica of the
        deployed stream, and the alarm policy is replayed on each.
        """
        scores = [self._scores_of(sw) for sw in windowed]
        self.seen_level_ = 1.0
        if seen is not None:
            mask = [np.isin(np.arange(len(sc)), idx) for sc, idx in zip(scores, seen)]
            trained = np.concatenate([sc[m] for sc, m in zip(scores, mask)] or [np.empty(0)])
            unseen = np.concatenate([sc[~m] for sc, m in zip(scores, mask)] or [np.empty(0)])
            self.seen_level_ = seen_level(trained, unseen)
            scores = [np.where(m, sc * self.seen_level_, sc) for sc, m in zip(scores, mask)]
        phases = max(1, round(self.stride / self.train_stride))
        sequences = [run[p::phases] for sw, sc in zip(windowed, scores) for run in _contiguous(sc, sw.starts, self.train_stride)
                     for p in range(phases)]
        days = sum(len(s) for s in sequences) / phases * self.stride * self.sample_period_ / 86_400
        self.alarm_calibration_ = ([s for s in sequences if len(s)], days, phases)
        info = self.threshold_for(self.false_alarms_per_day)
        self.threshold_info_, self.threshold_ = info, info.value
        self.calibration_quantiles_ = quantiles(baseline)
        return info

    def threshold_for(self, false_alarms_per_day: float) -> Threshold:
        """The ``alarms`` threshold this fit's calibration scores give for another target (the detector is unchanged);
        only after a fit or ``calibrate_on`` in this process, with the ``alarms`` method.
        """
        if not hasattr(self, "alarm_calibration_"):
            raise NotFittedError("threshold_for needs the calibration scores of a fit (or calibrate_on) with threshold='alarms'")
        sequences, days, phases = self.alarm_calibration_
        return fit_alarm_threshold(sequences, days, false_alarms_per_day, phases)

    def _scores_of(self, sw: SeriesWindows, chunk: int = 4096) -> np.ndarray:
        """The deployed scores of every window of one series, a chunk of windows copied at a time."""
        parts = [self.score_windows(sw.take(slice(i, i + chunk)))[0] for i in range(0, len(sw.starts), chunk)]
        return np.concatenate(parts) if parts else np.empty(0, np.float32)

    def calibration_rate(self) -> float:
        """The per-window exceedance rate the threshold aims at: ``threshold_param``, or for ``conformal``
        ``false_alarms_per_day`` over the windows a stream makes in a day (one every ``stride`` samples).
        """
        if self.threshold_param is not None or self.threshold != "conformal":
            return self.threshold_param
        return window_rate(self.false_alarms_per_day, self.stride, self.sample_period_)

    def calibrate_on(self, X) -> Threshold:
        """Set each channel's normal level and ``threshold_`` from separate normal data (``--calibration-data``)."""
        self._check_fitted()
        table = as_table(X, self.features_, self.sample_period_)
        self._check_features(table)
        errors = self._normal_window_errors(table)
        if not len(errors):
            raise DataError(f"the calibration data holds no window of {self.window} gap-free normal rows")
        self.calibration_source_ = "calibration data"
        return self._calibrate_on_errors(errors, self._windows(table, self.train_stride, exclude_labelled=True))

    def threshold_record(self) -> dict:
        """The threshold with what it rests on and where its scores came from (the bundle's threshold section)."""
        self._check_fitted()
        return {**self.threshold_info_.to_dict(), "source": self.calibration_source_}

    def calibrate(self, normal_scores: np.ndarray, labels: np.ndarray | None = None, method: str | None = None,
                  baseline: np.ndarray | None = None) -> Threshold:
        """Set ``threshold_`` from scores (normal ones, or labelled for ``f1``/``youden``), and the calibration quantiles
        (the drift baseline) from ``baseline`` when given, else from the normal ones among ``normal_scores``.
        """
        method = method or self.threshold
        info = fit_threshold(method, normal_scores, labels, self.calibration_rate() if method == self.threshold else self.threshold_param)
        self.threshold_info_ = info
        self.threshold_ = info.value
        if baseline is None:
            baseline = normal_scores if labels is None else normal_scores[np.asarray(labels) == 0]
        self.calibration_quantiles_ = quantiles(baseline)
        return info

    # -- scoring -------------------------------------------------------------------------
    @torch.no_grad()
    def channel_errors(self, windows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Raw channel errors ``[N, n_channels]`` (see :meth:`WindowScorer.channel_errors`) of raw windows ``[N, W, F]``."""
        self._check_fitted()
        parts = [self.scorer_.channel_errors(torch.from_numpy(np.ascontiguousarray(windows[i : i + batch_size], dtype=np.float32))).numpy()
                 for i in range(0, len(windows), batch_size)]
        return np.concatenate(parts) if parts else np.empty((0, self.scorer_.n_channels), np.float32)

    @torch.no_grad()
    def score_windows(self, windows: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``[N]`` and per-feature errors relative to their normal level ``[N, F]`` of raw windows ``[N, W, F]``."""
        errors = torch.from_numpy(self.channel_errors(windows, batch_size))
        score, feature_error = self.scorer_.combine(errors)
        return score.numpy(), feature_error.numpy()

    def score_series(self, series: Series) -> SeriesScores:
        """Window one series with the runtime's stride and gap rule and score it."""
        sw = series_windows(series, self.window, self.stride, self.max_gap_)
        chunk = 4096  # copy windows a chunk at a time, not the whole series
        parts = [self.score_windows(sw.take(slice(i, i + chunk))) for i in range(0, len(sw.starts), chunk)]
        if parts:
            window_scores, feature_error = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        else:
            window_scores, feature_error = self.score_windows(np.empty((0, self.window, len(self.features_)), np.float32))
        if self.conditions_ and len(sw.ends):
            unseen = unseen_conditions(sw.values[sw.ends, len(self.features_) :], self.condition_specs())
            if unseen.any():
                warnings.warn(f"{series.name}: {int(unseen.sum())} of {len(unseen)} windows not scored: their operating conditions "
                              f"were not seen in training (a missing value, a new category, or more than {CONDITION_MARGIN:.0%} outside "
                              "the trained range)", stacklevel=3)
                window_scores, feature_error = window_scores.copy(), feature_error.copy()
                window_scores[unseen], feature_error[unseen] = np.nan, np.nan
        rows = spread_to_rows(len(series), sw.ends, window_scores, self.stride, sw.segment_of(np.arange(len(series))))
        return SeriesScores(sw, window_scores, feature_error, rows)

    def score_samples(self, X) -> np.ndarray:
        """One anomaly score per row of ``X`` (higher = more anomalous; NaN before a window)."""
        self._check_fitted()
        table = as_table(X, self.features_, self.sample_period_)
        self._check_features(table)
        return np.concatenate([self.score_series(s).row_scores for s in table.series])

    def predict(self, X) -> np.ndarray:
        """1 where a row's score exceeds ``threshold_``, else 0."""
        self._check_fitted()
        scores = self.score_samples(X)
        return (np.nan_to_num(scores, nan=-np.inf) > self.threshold_).astype(np.int8)

    def _check_features(self, table: SensorTable) -> None:
        if list(table.features) != self.features_:
            raise DataError(f"features {table.features} do not match the trained ones {self.features_}")
        if [c.name for c in table.conditions] != [c.name for c in self.conditions_]:
            raise DataError(f"conditions {[c.name for c in table.conditions]} do not match the trained ones {[c.name for c in self.conditions_]}")

    # -- persistence ---------------------------------------------------------------------
    def config(self) -> dict:
        """Everything needed to rebuild the detector, JSON-ready (no pickled objects)."""
        self._check_fitted()
        return {
            "kind": self.kind,
            "model_params": self.model_params,
            "distances": self.distances,
            "window": self.window,
            "stride": self.stride,
            "features": self.features_,
            "conditions": self.condition_specs(),
            "sample_period": self.sample_period_,
            "max_gap": self.max_gap_,
            "threshold": self.threshold_info_.to_dict(),
            "calibration": {"source": self.calibration_source_, "false_alarms_per_day": self.false_alarms_per_day,
                            "seen_level": getattr(self, "seen_level_", None)},
            "calibration_quantiles": self.calibration_quantiles_,
            **({"selection": self.selection_} if getattr(self, "selection_", None) else {}),
            "training": {
                "seed": self.seed,
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "lr": self.lr,
                "val_fraction": self.val_fraction,
                "train_stride": self.train_stride,
                "windows": self.training_windows_,
                "history": self.history_.to_dict(),
                "data_fingerprint": self.data_fingerprint_,
            },
        }

    def save(self, run_dir: str | Path) -> Path:
        """Write the run directory (see :mod:`train.rundir`); plots are the CLI's job."""
        weights = {k: v.detach().cpu().numpy() for k, v in self.scorer_.state_dict().items()}
        curve = list(zip(self.history_.train_loss, self.history_.val_loss))
        return rundir.save_run(run_dir, self.config(), weights, self.calibration_windows_, curve)

    @classmethod
    def load(cls, run_dir: str | Path) -> AutoencoderDetector:
        """Rebuild a fitted detector from a run directory written by :meth:`save`."""
        run = rundir.load_run(run_dir)
        config, training = run.config, run.config["training"]
        detector = cls(
            kind=config["kind"], window=config["window"], stride=config["stride"], model_params=config["model_params"],
            sample_period=config["sample_period"], max_gap=config["max_gap"], threshold=config["threshold"]["method"],
            threshold_param=config["threshold"]["parameter"], seed=training["seed"], epochs=training["epochs"],
            batch_size=training["batch_size"], lr=training["lr"], val_fraction=training["val_fraction"],
            train_stride=training["train_stride"], distances=config.get("distances", False),  # runs before the distances have none
        )
        detector.features_ = config["features"]
        conditions = config.get("conditions", [])  # runs before conditional models have none
        detector.conditions = [c["name"] for c in conditions] or None
        detector.conditions_ = [Condition(c["name"], c["kind"], c["categories"]) for c in conditions]
        detector.condition_ranges_ = [{k: v for k, v in c.items() if k not in ("name", "kind", "categories")} for c in conditions]
        detector.sample_period_, detector.max_gap_ = config["sample_period"], config["max_gap"]
        nf = len(config["features"])
        detector.scorer_ = detector._build_scorer(np.zeros(nf), np.ones(nf))
        detector.scorer_.load_state_dict({k: torch.from_numpy(v) for k, v in run.weights.items()})
        detector.scorer_.eval()
        detector.threshold_info_ = Threshold(**config["threshold"])
        calibration = config.get("calibration", {"source": "holdout", "false_alarms_per_day": None})  # runs before out-of-fold calibration
        detector.calibration_source_ = calibration["source"]
        detector.false_alarms_per_day = calibration["false_alarms_per_day"]
        detector.threshold_ = detector.threshold_info_.value
        detector.calibration_quantiles_ = config["calibration_quantiles"]
        detector.history_ = TrainingHistory(**training["history"])
        detector.data_fingerprint_ = training["data_fingerprint"]
        detector.training_windows_ = training["windows"]
        detector.calibration_windows_ = run.calibration_windows
        detector.selection_ = config.get("selection")  # the candidates' table of --model auto
        return detector


def quantiles(normal_scores: np.ndarray) -> dict[str, float]:
    """The calibration quantiles of normal scores the bundle records (the drift baseline)."""
    return {str(q): float(np.quantile(normal_scores, q)) for q in QUANTILES}


def fingerprint(table: SensorTable) -> dict:
    """A sha256 over the training values and times, with row and series counts."""
    digest = hashlib.sha256()
    for s in table.series:
        digest.update(np.ascontiguousarray(s.time).tobytes())
        digest.update(np.ascontiguousarray(s.values).tobytes())
    return {
        "sha256": digest.hexdigest(),
        "rows": int(sum(len(s) for s in table.series)),
        "series": len(table.series),
        "features": list(table.features),
        "sources": sorted({s.source for s in table.series if s.source}),
    }


def clone_params(detector: AutoencoderDetector, **changes) -> AutoencoderDetector:
    """A fresh, unfitted detector with the same constructor parameters (scikit-learn's ``clone``), some changed."""
    names = [name for name in inspect.signature(type(detector).__init__).parameters if name != "self"]
    return type(detector)(**{**{name: getattr(detector, name) for name in names}, **changes})


def _contiguous(scores: np.ndarray, starts: np.ndarray, step: int) -> list[np.ndarray]:
    """``scores`` cut where consecutive windows' starts are more than ``step`` rows apart (a gap, a labelled stretch)."""
    cuts = np.flatnonzero(np.diff(starts) != step) + 1
    return np.split(scores, cuts)


def half_table(table: SensorTable, which: int) -> SensorTable:
    """Every series cut at its middle row: the first halves (``which = 0``) or the second ones (1)."""
    halves = []
    for s in table.series:
        cut = len(s) // 2
        part = slice(0, cut) if which == 0 else slice(cut, None)
        halves.append(replace(s, time=s.time[part], values=s.values[part], labels=None if s.labels is None else s.labels[part]))
    return SensorTable(features=table.features, series=halves, conditions=table.conditions)
