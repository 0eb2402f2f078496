"""Build a TensorRT engine from the bundle's ONNX on the target GPU (TensorRT 10 and 11).

TensorRT 10 (JetPack 6) builds FP16 from the FP32 graph with ``BuilderFlag.FP16``. TensorRT 11
removed the precision flags and builds only strongly typed networks, so FP16 there is built from
the FP16 ONNX variant. The optimisation profile covers batch 1..max_batch; a timing cache is
kept next to the bundle and reused by later builds.
"""

from __future__ import annotations

from pathlib import Path

from edge_runtime.contract.bundle import INPUT_NAME
from edge_runtime.contract.errors import BackendError
from edge_runtime.scoring.backends import import_tensorrt, local_gpu


def tensorrt_major(trt) -> int:
    """Major version of the imported tensorrt module."""
    return int(trt.__version__.split(".")[0])


def build_engine(onnx_path: Path, engine_path: Path, window: int, n_features: int, max_batch: int = 256,
                 opt_batch: int = 32, fp16: bool = False, timing_cache: Path | None = None) -> dict:
    """Build and serialise an engine; return the build facts the manifest records."""
    trt = import_tensorrt()
    major = tensorrt_major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch always (10.x); strongly typed always (11.x)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    if fp16 and major == 10:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, window, n_features), (min(opt_batch, max_batch), window, n_features), (max_batch, window, n_features))
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path.name}")
    engine_path.write_bytes(bytes(serialized))
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    facts = local_gpu()
    facts.update({"max_batch": max_batch, "opt_batch": opt_batch, "fp16": fp16, "strongly_typed": major >= 11, "source": onnx_path.name})
    return facts
