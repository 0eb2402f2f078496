"""LSTM autoencoder: encode the window to the last hidden state, decode it back over time."""

from __future__ import annotations

import torch
from torch import nn


class LSTMAutoencoder(nn.Module):
    """An LSTM encoder whose final hidden state, repeated over the window, drives an LSTM decoder."""

    def __init__(self, window: int, n_features: int, hidden: int = 32, layers: int = 1) -> None:
        super().__init__()
        self.window, self.n_features = window, n_features
        self.encoder = nn.LSTM(n_features, hidden, num_layers=layers, batch_first=True)
        self.decoder = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.output = nn.Linear(hidden, n_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``x [B, W, F]``."""
        # The last step of the top layer's output is h[-1]; h_n itself comes out with an extra dimension under
        # torch.export in some torch releases (pytorch#151200; seen with 2.11 on the H200 machine).
        encoded, _ = self.encoder(x)
        repeated = encoded[:, -1:, :].expand(-1, self.window, -1)
        decoded, _ = self.decoder(repeated)
        return self.output(decoded), x.new_zeros(x.shape[0]), x.new_zeros(())
