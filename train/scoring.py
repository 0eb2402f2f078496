"""The scoring module shared by training and export: raw window in sensor units -> score.

What :meth:`AutoencoderDetector.score_samples` returns during training is exactly what this
module computes, and this module is what the export stage traces into ``.pt2`` and ONNX.
"""

from __future__ import annotations

import torch
from torch import nn


class WindowScorer(nn.Module):
    """``window [B, W, F]`` (sensor units) -> ``score [B]``, ``feature_error [B, F]``.

    Normalises with the training statistics (stored as buffers), runs the model, and takes the
    mean squared reconstruction error over time per feature (``feature_error``, in normalised
    units) and its mean over features plus the model's score term (``score``). Higher score
    means more anomalous.
    """

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("inv_std", 1.0 / std.detach().clone().float())

    def normalise(self, window: torch.Tensor) -> torch.Tensor:
        """Sensor units -> standardised units."""
        return (window - self.mean) * self.inv_std

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score a batch of raw windows."""
        x = self.normalise(window)
        recon, score_term, _ = self.model(x)
        feature_error = (recon - x).pow(2).mean(dim=1)
        return feature_error.mean(dim=1) + score_term, feature_error
