"""Model registry: every model maps a normalised window ``[B, W, F]`` to its reconstruction.

Each model's ``forward`` returns ``(reconstruction, score_term, train_penalty)``:
``score_term [B]`` is added to the reconstruction error in the anomaly score (the VAE's β·KL,
PCA's scaled T²; zeros elsewhere) and ``train_penalty`` is a scalar added to the loss in
training only (the sparse AE's activity penalty). All share the constructor style
``Model(window, n_features, **hyper_parameters)``.
"""

from __future__ import annotations

from torch import nn

from train.models.conv import ConvAutoencoder
from train.models.dense import DenseAutoencoder
from train.models.lstm import LSTMAutoencoder
from train.models.pca import PCAModel
from train.models.vae import VariationalAutoencoder

MODELS: dict[str, type[nn.Module]] = {
    "dense": DenseAutoencoder,
    "vae": VariationalAutoencoder,
    "conv": ConvAutoencoder,
    "lstm": LSTMAutoencoder,
    "pca": PCAModel,
}


def build_model(kind: str, window: int, n_features: int, **hyper_parameters) -> nn.Module:
    """Construct a registered model by name; unknown names list the known ones."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind '{kind}'; expected one of {sorted(MODELS)}")
    return MODELS[kind](window, n_features, **hyper_parameters)
