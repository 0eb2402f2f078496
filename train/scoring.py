"""The scoring module shared by training and export: raw window in sensor units -> score.

What :meth:`AutoencoderDetector.score_samples` returns during training is exactly what this
module computes, and this module is what the export stage traces into ``.pt2`` and ONNX.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TAIL_QUANTILE = 0.99  # of a channel's errors against another stretch's level: its tail factor (weights_for)


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

    A conditional scorer (``conditions``: ``("numeric", 0)`` or ``("categorical", k)`` per condition)
    takes windows with one more channel per condition, ``[B, W, F + C]``: the condition at the
    window's last sample is standardised (numeric, with ``condition_mean``/``condition_std``) or
    one-hot encoded (categorical) inside the graph and given to the model; it is never part of
    the reconstruction error.
    """

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor, conditions: list[tuple[str, int]] | None = None,
                 condition_mean: torch.Tensor | None = None, condition_std: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.n_features = len(mean)
        self.conditions = [tuple(c) for c in conditions or []]
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("inv_std", 1.0 / std.detach().clone().float())
        self.register_buffer("channel_scale", torch.ones(self.n_features + 1))
        if self.conditions:
            self.register_buffer("condition_mean", condition_mean.detach().clone().float())
            self.register_buffer("condition_inv_std", 1.0 / condition_std.detach().clone().float())

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

    def channel_errors(self, window: torch.Tensor) -> torch.Tensor:
        """``[B, F + 1]``: each feature's mean squared reconstruction error over time, then the model's score term."""
        x = self.normalise(window)
        recon, score_term, _ = self.reconstruct(x, self.encode_conditions(window))
        return torch.cat([(recon - x).pow(2).mean(dim=1), score_term.unsqueeze(1)], dim=1)

    def combine(self, channel_errors: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel errors -> ``(score, feature_error)``, each channel relative to its normal level
        (``channel_scale``, or ``scale`` from :meth:`weights_for` to try other windows' levels).
        """
        relative = channel_errors * (self.channel_scale if scale is None else scale)
        return relative.amax(dim=1), relative[:, : self.n_features]

    @staticmethod
    def scale_for(channel_errors: torch.Tensor) -> torch.Tensor:
        """Each channel's weight from normal windows ``[N, F + 1]``: one over its mean error.

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

    @classmethod
    def weights_for(cls, channel_errors: torch.Tensor) -> torch.Tensor:
        """Each channel's weight in the score from chronological normal windows ``[N, F + 1]``: one over
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
    def set_normal_level(self, channel_errors: torch.Tensor) -> None:
        """Weigh each channel by :meth:`weights_for` the normal windows ``[N, F + 1]`` from now on."""
        self.channel_scale.copy_(self.weights_for(channel_errors))

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch of raw windows."""
        return self.combine(self.channel_errors(window))
