"""Dense (fully connected) autoencoder, optionally denoising and/or sparse."""

from __future__ import annotations

import torch
from torch import nn


def mlp(sizes: list[int], final_activation: bool) -> nn.Sequential:
    """A stack of Linear layers with ReLU between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DenseAutoencoder(nn.Module):
    """Flattened window -> hidden layers -> latent code -> mirrored decoder.

    ``noise_std > 0`` makes it a denoising AE: the training loop corrupts the input with Gaussian
    noise of that standard deviation (in normalised units) and asks for the clean window.
    ``sparsity_weight > 0`` makes it a sparse AE: a KL divergence between the mean sigmoid
    activation of each latent unit and ``sparsity_target`` is added to the training loss.
    Neither changes inference. ``n_conditions > 0`` makes it a conditional AE: the encoded operating
    conditions join the flattened window at the encoder's input and the code at the decoder's.
    """

    def __init__(
        self,
        window: int,
        n_features: int,
        hidden: tuple[int, ...] = (64,),
        latent: int = 8,
        noise_std: float = 0.0,
        sparsity_weight: float = 0.0,
        sparsity_target: float = 0.05,
        n_conditions: int = 0,
    ) -> None:
        super().__init__()
        self.window, self.n_features = window, n_features
        self.noise_std = noise_std
        self.sparsity_weight, self.sparsity_target = sparsity_weight, sparsity_target
        size = window * n_features
        self.encoder = mlp([size + n_conditions, *hidden, latent], final_activation=False)
        self.decoder = mlp([latent + n_conditions, *reversed(hidden), size], final_activation=False)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``x [B, W, F]`` (given ``condition [B, C]`` when conditional); see the registry for the returned triple."""
        flat = x.flatten(1)
        code = self.encoder(flat if condition is None else torch.cat([flat, condition], dim=1))
        recon = self.decoder(code if condition is None else torch.cat([code, condition], dim=1)).view_as(x)
        score_term = x.new_zeros(x.shape[0])
        penalty = x.new_zeros(())
        if self.training and self.sparsity_weight > 0:
            rho_hat = torch.sigmoid(code).mean(0).clamp(1e-6, 1 - 1e-6)
            rho = self.sparsity_target
            kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
            penalty = self.sparsity_weight * kl.sum()
        return recon, score_term, penalty
