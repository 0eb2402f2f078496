"""Variational autoencoder over flattened windows."""

from __future__ import annotations

import torch
from torch import nn

from train.models.dense import mlp


class VariationalAutoencoder(nn.Module):
    """Gaussian VAE; the anomaly score is reconstruction error + ``beta`` * KL(q(z|x) || N(0, I)).

    Training samples the latent code; inference decodes the posterior mean, so scores are
    deterministic and export cleanly. The KL is averaged per latent dimension so that ``beta``
    means the same whatever the latent size. ``n_conditions > 0`` makes it a conditional VAE: the
    encoded operating conditions join the window at the encoder and the latent code at the decoder.
    """

    def __init__(self, window: int, n_features: int, hidden: tuple[int, ...] = (64,), latent: int = 8, beta: float = 0.01,
                 n_conditions: int = 0) -> None:
        super().__init__()
        self.window, self.n_features, self.beta = window, n_features, beta
        size = window * n_features
        self.encoder = mlp([size + n_conditions, *hidden], final_activation=True)
        self.to_mean = nn.Linear(hidden[-1], latent)
        self.to_logvar = nn.Linear(hidden[-1], latent)
        self.decoder = mlp([latent + n_conditions, *reversed(hidden), size], final_activation=False)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``x [B, W, F]`` (given ``condition [B, C]`` when conditional); the score term is β·KL per window."""
        flat = x.flatten(1)
        hidden = self.encoder(flat if condition is None else torch.cat([flat, condition], dim=1))
        mean, logvar = self.to_mean(hidden), self.to_logvar(hidden).clamp(-10, 10)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
        recon = self.decoder(z if condition is None else torch.cat([z, condition], dim=1)).view_as(x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean(1)
        return recon, self.beta * kl, x.new_zeros(())
