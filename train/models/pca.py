"""PCA with T² and Q statistics, written as a linear model so it exports like the others."""

from __future__ import annotations

import torch
from torch import nn


class PCAModel(nn.Module):
    """Principal components of flattened normalised windows, fitted in closed form.

    Reconstruction is the projection onto the first ``components`` directions, so the
    reconstruction error is the Q statistic (squared prediction error). Hotelling's T² of the
    projection, divided by the number of components, is added to the score with the weight
    ``t2_weight_``, learned at fit time as the mean training Q so that on normal data both
    statistics contribute alike.
    """

    closed_form = True

    def __init__(self, window: int, n_features: int, components: int = 8) -> None:
        super().__init__()
        self.window, self.n_features, self.components = window, n_features, components
        size = window * n_features
        self.register_buffer("mean_", torch.zeros(size))
        self.register_buffer("components_", torch.zeros(components, size))
        self.register_buffer("explained_variance_", torch.ones(components))
        self.register_buffer("t2_weight_", torch.zeros(()))

    @torch.no_grad()
    def fit(self, windows: torch.Tensor) -> PCAModel:
        """Fit on normalised windows ``[N, W, F]`` by SVD."""
        flat = windows.flatten(1).double()
        mean = flat.mean(0)
        _, s, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        k = min(self.components, vh.shape[0])
        self.mean_.copy_(mean.float())
        self.components_.zero_()
        self.components_[:k] = vh[:k].float()
        variance = (s[:k] ** 2 / max(len(flat) - 1, 1)).float().clamp_min(1e-12)
        self.explained_variance_.fill_(1.0)
        self.explained_variance_[:k] = variance
        recon, _, _ = self.forward(windows.float())
        self.t2_weight_.fill_(float(((recon - windows.float()) ** 2).mean()))
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``x [B, W, F]``; the score term is the weighted, per-component T²."""
        centred = x.flatten(1) - self.mean_
        scores = centred @ self.components_.T
        recon = (scores @ self.components_ + self.mean_).view_as(x)
        t2 = (scores.pow(2) / self.explained_variance_).mean(1)
        return recon, self.t2_weight_ * t2, x.new_zeros(())
