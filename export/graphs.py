"""Writing the scoring graph: torch.export ``.pt2`` and ONNX (dynamo exporter), plus ONNX variants.

Both take ``window: float32[batch, W, F]`` in sensor units and return ``score: float32[batch]``
and ``feature_error: float32[batch, F]``, with a dynamic batch dimension.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_runtime.contract.bundle import CONDITION_NAME, INPUT_NAME, OUTPUT_NAMES
from export.quiet import captured_output

MAX_BATCH = 4096


def graph_inputs(windows: np.ndarray, n_features: int, conditional: bool) -> dict[str, np.ndarray]:
    """The graph's inputs from combined windows ``[N, W, F (+ C)]``: the sensors, and the conditions at the last sample."""
    if not conditional:
        return {INPUT_NAME: np.ascontiguousarray(windows)}
    return {INPUT_NAME: np.ascontiguousarray(windows[..., :n_features]), CONDITION_NAME: np.ascontiguousarray(windows[:, -1, n_features:])}


class _Exportable(torch.nn.Module):
    """Names the inputs ``window`` (and ``condition``) so that dynamic shapes can refer to them."""

    def __init__(self, scorer: torch.nn.Module) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Delegate to the scorer."""
        return self.scorer(window)


class _ConditionalExportable(_Exportable):
    """``window [B, W, F]`` and ``condition [B, C]`` in: the condition becomes the scorer's extra channels."""

    def forward(self, window: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Delegate to the scorer with the condition repeated over the window (it reads the last sample's)."""
        return self.scorer(torch.cat([window, condition.unsqueeze(1).expand(-1, window.shape[1], -1)], dim=2))


def _wrap(scorer, examples: dict[str, np.ndarray]) -> tuple[torch.nn.Module, tuple, dict]:
    """The module to trace, its example arguments and their dynamic batch dimension (shared by all inputs)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    module = (_ConditionalExportable if CONDITION_NAME in examples else _Exportable)(scorer).eval()
    return module, tuple(torch.from_numpy(a) for a in examples.values()), {name: {0: batch} for name in examples}


def export_pt2(scorer: torch.nn.Module, examples: dict[str, np.ndarray], path: Path, log: Path) -> None:
    """Save a torch.export program with a dynamic batch dimension."""
    module, args, dynamic = _wrap(scorer, examples)
    with captured_output(log), torch.no_grad():
        program = torch.export.export(module, args, dynamic_shapes=dynamic)
        torch.export.save(program, str(path))


def export_onnx(scorer: torch.nn.Module, examples: dict[str, np.ndarray], path: Path, log: Path) -> None:
    """Export ONNX with the dynamo exporter (dynamic batch) and check it with ``onnx.checker``."""
    import onnx

    module, args, dynamic = _wrap(scorer, examples)
    with captured_output(log), torch.no_grad():
        torch.onnx.export(
            module, args, str(path), dynamo=True, input_names=list(examples), output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic, optimize=True, external_data=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


FP32_OPS = ("Sub", "Mul")  # the scoring arithmetic around the network: standardising, residuals, distances


def onnx_fp16(source: Path, path: Path) -> None:
    """An FP16 copy of the graph that keeps float32 inputs and outputs.

    The network runs in FP16; subtractions and products (``FP32_OPS``) stay in FP32: a residual is a small
    difference of two large numbers, and the distances divide it by its small normal spread, so in FP16 their
    rounding alone reached the tolerance.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS])
    _topological_sort(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def onnx_int8(source: Path, path: Path, log: Path) -> None:
    """INT8 weights through ONNX Runtime dynamic quantisation (activations quantised at run time).

    Weights get one scale per output channel: a sensor the model reconstructs almost perfectly is
    read against its own small normal error, so a tensor-wide scale's rounding shows up there first
    (per channel, the LSTM and PCA graphs of the default plant pass the int8 tolerance; per tensor none did). The
    distances' nodes are left in float32 (:func:`distance_nodes`).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with captured_output(log):
        quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=distance_nodes(onnx.load(str(source)).graph))


def distance_nodes(graph) -> list[str]:
    """The nodes that read the distances' centres and whiteners: statistics of normal data, not learned weights, and
    multiplied into residuals far smaller than the weights' scale, so they stay in float32.
    """
    return [node.name for node in graph.node if any(name.endswith(("_centre", "_whitener")) for name in node.input)]


def _topological_sort(graph) -> None:
    """Reorder nodes so each comes after its inputs' producers.

    The float16 converter appends the casts of graph inputs at the end of the node list, which
    ``onnx.checker`` rejects and which crashed ONNX Runtime's session creation.
    """
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or an input no node produces")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)
