"""linewatch training stage: data, windows, models, training, thresholds, evaluation.

Imports no ``export``, and only the dependency-free modules of ``edge_runtime``.
"""
