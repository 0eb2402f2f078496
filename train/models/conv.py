"""1-D convolutional autoencoder over time."""

from __future__ import annotations

import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    """Strided Conv1d encoder, ConvTranspose1d decoder; features are channels.

    The decoder output is cropped or padded back to exactly ``window`` steps, so any window
    length works.
    """

    def __init__(self, window: int, n_features: int, channels: tuple[int, ...] = (32, 16), kernel: int = 5) -> None:
        super().__init__()
        self.window, self.n_features = window, n_features
        pad = kernel // 2
        enc: list[nn.Module] = []
        dec: list[nn.Module] = []
        sizes = [n_features, *channels]
        for a, b in zip(sizes, sizes[1:]):
            enc += [nn.Conv1d(a, b, kernel, stride=2, padding=pad), nn.ReLU()]
        for a, b in zip(reversed(sizes), list(reversed(sizes))[1:]):
            dec += [nn.ConvTranspose1d(a, b, kernel, stride=2, padding=pad, output_padding=1), nn.ReLU()]
        dec[-1] = nn.Conv1d(n_features, n_features, 1)  # linear output layer instead of the last ReLU
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.out_length = self._decoded_length(window, len(channels), kernel)

    @staticmethod
    def _decoded_length(window: int, depth: int, kernel: int) -> int:
        length = window
        for _ in range(depth):
            length = (length + 2 * (kernel // 2) - kernel) // 2 + 1
        for _ in range(depth):
            length = (length - 1) * 2 - 2 * (kernel // 2) + kernel + 1
        return length

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``x [B, W, F]``."""
        decoded = self.decoder(self.encoder(x.transpose(1, 2)))
        if self.out_length >= self.window:
            decoded = decoded[:, :, : self.window]
        else:
            decoded = nn.functional.pad(decoded, (0, self.window - self.out_length), mode="replicate")
        return decoded.transpose(1, 2), x.new_zeros(x.shape[0]), x.new_zeros(())
