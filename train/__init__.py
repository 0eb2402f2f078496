"""linewatch training stage: data, windows, models, training, thresholds, evaluation.

Imports neither ``export`` nor ``edge_runtime``.
"""
