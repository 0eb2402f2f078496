"""The scoring module shared by training and export: raw window in sensor units -> score.

What :meth:`AutoencoderDetector.score_samples` returns during training is exactly what this
module computes, and this module is what the export stage traces into ``.pt2`` and ONNX.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TAIL_QUANTILE = 0.99  # of a channel's errors against another stretch's level: its tail factor (weights_for)
DISTANCE_SHRINKAGE = 0.1  # of each distance's covariance toward its diagonal: a few hundred windows estimate the pairs poorly
RECENT_SHARE = 4  # the residual distance also reads the mean residual over the window's last quarter (an onset, sooner)


class WindowScorer(nn.Module):
    """``window [B, W, F]`` (sensor units) -> ``score [B]``, ``feature_error [B, F]``.

    Normalises with the training statistics (stored as buffers), runs the model, and takes the
    mean squared reconstruction error over time per feature and the model's score term (the
    VAE's KL, PCA's T²): one error per *channel*. Each channel is divided by its level on normal
    data the model did not train on and by its tail factor (``channel_scale``, set by
    :meth:`set_normal_level` at calibration, see :meth:`weights_for`), so ``feature_error`` reads
    "times this sensor's normal error" (1 is typical; an unsteady sensor's reads less), and
    ``score`` is the largest channel: a window is as anomalous as its most departed sensor. Each sensor is
    measured against its own normal error, so a sensor the model reconstructs well is not
    drowned by a noisy one, and a fault in a few sensors is not diluted by the others (README,
    "Scoring"). Higher score means more anomalous.

    With ``distances`` two more channels follow, each a Mahalanobis distance against normal windows
    (set by :meth:`fit_distances`, per dimension): the **residual distance** of the window's signed mean
    reconstruction residual per sensor, over the whole window and over its last quarter (a pattern of
    small errors that normal operation never combines: a broken correlation, an offset the model
    half-follows, MSET's residual test), and the **operating-point distance**, Hotelling's T² of the
    window's mean per sensor (a window whose sensors sit, together, where normal operation never
    put them). They are weighed like the others, so ``feature_error`` still names sensors.

    A conditional scorer (``conditions``: ``("numeric", 0)`` or ``("categorical", k)`` per condition)
    takes windows with one more channel per condition, ``[B, W, F + C]``: the condition at the
    window's last sample is standardised (numeric, with ``condition_mean``/``condition_std``) or
    one-hot encoded (categorical) inside the graph and given to the model; it is never part of
    the reconstruction error.
    """

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor, conditions: list[tuple[str, int]] | None = None,
                 condition_mean: torch.Tensor | None = None, condition_std: torch.Tensor | None = None, distances: bool = False) -> None:
        super().__init__()
        self.model = model
        self.n_features = f = len(mean)
        self.conditions = [tuple(c) for c in conditions or []]
        self.distances = distances
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("inv_std", 1.0 / std.detach().clone().float())
        self.register_buffer("channel_scale", torch.ones(self.n_channels))
        if distances:
            self.register_buffer("residual_centre", torch.zeros(2 * f))
            self.register_buffer("residual_whitener", torch.eye(2 * f))
            self.register_buffer("point_centre", torch.zeros(f))
            self.register_buffer("point_whitener", torch.eye(f))
        if self.conditions:
            self.register_buffer("condition_mean", condition_mean.detach().clone().float())
            self.register_buffer("condition_inv_std", 1.0 / condition_std.detach().clone().float())

    @property
    def n_channels(self) -> int:
        """Channels per window: one per feature, the model's score term, and the two distances when on."""
        return self.n_features + 1 + (2 if self.distances else 0)

    @staticmethod
    def encoded_width(conditions: list[tuple[str, int]]) -> int:
        """Width of the encoded condition vector: one per numeric condition, one per category."""
        return sum(1 if kind == "numeric" else categories for kind, categories in conditions)

    def normalise(self, window: torch.Tensor) -> torch.Tensor:
        """Sensor units -> standardised units (the feature channels only)."""
        return (window[..., : self.n_features] - self.mean) * self.inv_std

    def encode_conditions(self, window: torch.Tensor) -> torch.Tensor | None:
        """The model's condition input ``[B, C']`` from the condition channels at the last sample, or None."""
        if not self.conditions:
            return None
        raw = window[:, -1, self.n_features :]
        parts = []
        for j, (kind, categories) in enumerate(self.conditions):
            value = raw[:, j : j + 1]
            if kind == "numeric":
                parts.append((value - self.condition_mean[j]) * self.condition_inv_std[j])
            else:
                parts.append((value == torch.arange(categories, device=value.device, dtype=value.dtype)).to(value.dtype))
        return torch.cat(parts, dim=1)

    def reconstruct(self, x: torch.Tensor, condition: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model on standardised windows (and encoded conditions): ``(reconstruction, score_term, penalty)``."""
        return self.model(x) if condition is None else self.model(x, condition)

    def channel_errors(self, window: torch.Tensor, with_distances: bool = True) -> torch.Tensor:
        """``[B, n_channels]``: each feature's mean squared reconstruction error over time, the model's score term,
        then (with ``distances``) the residual and the operating-point distance; ``with_distances=False``: the
        error channels alone ``[B, F + 1]``.
        """
        x, residual, score_term = self.residuals(window)
        channels = [residual.pow(2).mean(dim=1), score_term.unsqueeze(1)]
        if self.distances and with_distances:
            summary, point = self.distance_inputs(x, residual)
            channels += [self.distance(summary, self.residual_centre, self.residual_whitener).unsqueeze(1),
                         self.distance(point, self.point_centre, self.point_whitener).unsqueeze(1)]
        return torch.cat(channels, dim=1)

    def residuals(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, residual, score_term)``: the standardised window, the model's reconstruction minus it, and its score term."""
        x = self.normalise(window)
        recon, score_term, _ = self.reconstruct(x, self.encode_conditions(window))
        return x, recon - x, score_term

    @staticmethod
    def distance_inputs(x: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the two distances measure, from standardised windows and their residuals ``[B, W, F]``: the mean
        residual over the window and over its last quarter ``[B, 2F]``, and the window's mean ``[B, F]``.
        """
        recent = max(1, x.shape[1] // RECENT_SHARE)
        return torch.cat([residual.mean(dim=1), residual[:, -recent:].mean(dim=1)], dim=1), x.mean(dim=1)

    @staticmethod
    def distance(z: torch.Tensor, centre: torch.Tensor, whitener: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance per dimension: ``|(z - centre) @ whitener|² / d``."""
        return ((z - centre) @ whitener).pow(2).mean(dim=1)

    @torch.no_grad()
    def fit_distances(self, windows: torch.Tensor, batch_size: int = 1024) -> None:
        """Centre and whitener of both distances from normal raw windows ``[N, W, F (+ C)]``."""
        summaries, points = [], []
        for i in range(0, len(windows), batch_size):
            x, residual, _ = self.residuals(windows[i : i + batch_size])
            summary, point = self.distance_inputs(x, residual)
            summaries.append(summary)
            points.append(point)
        for z, centre, whitener in ((torch.cat(summaries), self.residual_centre, self.residual_whitener),
                                    (torch.cat(points), self.point_centre, self.point_whitener)):
            mean, root = whitening(z.double().numpy())
            centre.copy_(torch.from_numpy(mean))
            whitener.copy_(torch.from_numpy(root))

    def combine(self, channel_errors: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel errors -> ``(score, feature_error)``, each channel relative to its normal level
        (``channel_scale``, or ``scale`` from :meth:`weights_for` to try other windows' levels).
        """
        relative = channel_errors * (self.channel_scale if scale is None else scale)
        return relative.amax(dim=1), relative[:, : self.n_features]

    @staticmethod
    def scale_for(channel_errors: torch.Tensor) -> torch.Tensor:
        """Each channel's weight from normal windows ``[N, n_channels]``: one over its mean error.

        A level is floored at a thousandth of the largest one, so that a channel the model
        reconstructs almost perfectly is not blown up into an alarm on noise; a channel that
        is zero on normal data (the score term of a plain autoencoder) keeps weight 0.
        """
        level = channel_errors.double().mean(dim=0)
        floor = 1e-3 * level.max().clamp_min(1e-12)
        return torch.where(level > 0, 1.0 / torch.maximum(level, floor), torch.zeros_like(level)).float()

    @staticmethod
    def crossed_halves(n_windows: int) -> tuple[tuple[slice, slice], ...]:
        """``(levels, scored)`` slice pairs that measure each half of ``n_windows`` chronological windows against the
        other half's statistics (none for a single window): the one split the tail factor and the cross-fitted
        threshold share.
        """
        half = n_windows // 2
        return ((slice(half, None), slice(0, half)), (slice(0, half), slice(half, None))) if half else ()

    def weights_for(self, channel_errors: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Each channel's weight in the score from chronological normal windows ``[N, n_channels]``.

        The error channels are weighed by :meth:`error_weights_for`. Each distance is weighed so that its
        ``TAIL_QUANTILE`` on the ``reference`` windows (the deployed model's own channels on normal windows
        it did not train on; by default ``channel_errors``) is the error channels' score's: on normal data the
        distances raise the score as often as the errors do, and outrank them only where they depart further.
        """
        errors = self.n_features + 1
        weights = self.error_weights_for(channel_errors[:, :errors])
        if not self.distances:
            return weights
        reference = channel_errors if reference is None else reference
        score = (reference[:, :errors] * weights).amax(dim=1)
        tails = np.quantile(torch.cat([score.unsqueeze(1), reference[:, errors:]], dim=1).double().numpy(), TAIL_QUANTILE, axis=0)
        balance = torch.from_numpy(np.where(tails[1:] > 0, tails[0] / np.maximum(tails[1:], 1e-300), 0.0)).float()
        return torch.cat([weights, balance])

    @classmethod
    def error_weights_for(cls, channel_errors: torch.Tensor) -> torch.Tensor:
        """Each error channel's weight from chronological normal windows ``[N, F + 1]``: one over
        its level (:meth:`scale_for`) and over its tail factor.

        The tail factor compares how far each channel strays when its level was learned on another
        stretch of normal operation: the ``TAIL_QUANTILE`` of its errors when each half of the windows
        is measured against the other half's level, relative to the median of that over the channels.
        A sensor whose normal level moves from one stretch to the next (a slow temperature) then counts
        for less, instead of setting a threshold that blinds every other sensor; a steady sensor keeps
        its sensitivity, a typical one its plain level, and a single channel is left as it is.
        """
        weights = cls.scale_for(channel_errors)
        halves = cls.crossed_halves(len(channel_errors))
        if not halves:
            return weights
        strayed = torch.cat([channel_errors[scored] * cls.scale_for(channel_errors[levels]) for levels, scored in halves])
        tail = torch.from_numpy(np.quantile(strayed.double().numpy(), TAIL_QUANTILE, axis=0)).float()  # torch.quantile caps at 2**24 values
        active = (weights > 0) & (tail > 0)
        if not active.any():
            return weights
        relative = tail / tail[active].median()
        return torch.where(active, weights / relative, weights)

    @torch.no_grad()
    def set_normal_level(self, channel_errors: torch.Tensor, reference: torch.Tensor | None = None) -> None:
        """Weigh each channel by :meth:`weights_for` the normal windows ``[N, n_channels]`` from now on."""
        self.channel_scale.copy_(self.weights_for(channel_errors, reference))

    def error_score(self, window: torch.Tensor) -> torch.Tensor:
        """``[B]``: the score of the error channels alone, what training's validation loss follows (the distances are
        fitted after training and measure no reconstruction).
        """
        return (self.channel_errors(window, with_distances=False) * self.channel_scale[: self.n_features + 1]).amax(dim=1)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch of raw windows."""
        return self.combine(self.channel_errors(window))


def whitening(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, root)`` of samples ``[N, d]``: ``root`` is the Cholesky factor of the inverse of their covariance,
    shrunk by ``DISTANCE_SHRINKAGE`` toward its diagonal and each variance floored at a thousandth of the largest,
    so that ``|(z - mean) @ root|²`` is the squared Mahalanobis distance (the identity below two samples).
    """
    mean = z.mean(axis=0)
    if len(z) < 2:
        return mean, np.eye(z.shape[1])
    covariance = np.atleast_2d(np.cov(z, rowvar=False))
    variance = np.diag(covariance)
    floor = 1e-3 * max(float(variance.max()), 1e-12)
    covariance = (1 - DISTANCE_SHRINKAGE) * covariance + DISTANCE_SHRINKAGE * np.diag(variance)
    covariance[np.diag_indices_from(covariance)] = np.maximum(np.diag(covariance), floor)
    return mean, np.linalg.cholesky(np.linalg.inv(covariance))
