"""Run an ONNX artifact in a child process: ``python -m export.ort_child MODEL INPUTS OUT``.

Parity runs artifacts here so that a runtime crash (seen: ONNX Runtime 1.32 segfaults creating a
session for an FP16 LSTM graph on CPU) refuses the artifact instead of killing the export.
"""

from __future__ import annotations

import sys

import numpy as np


def main(model: str, inputs: str, out: str) -> None:
    """Run ``model`` on the CPU on ``inputs`` (.npz, one array per graph input) and save the outputs to ``out`` (.npz)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    with np.load(inputs, allow_pickle=False) as arrays:
        feeds = {name: arrays[name] for name in arrays.files}
    score, feature_error = session.run(None, feeds)
    np.savez(out, score=score, feature_error=feature_error)


if __name__ == "__main__":
    main(*sys.argv[1:4])
