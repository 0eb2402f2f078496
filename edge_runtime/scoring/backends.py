"""Inference backends behind one small interface, after Polygraphy's runner contract.

``activate()`` loads the model and sizes buffers once, ``infer(window)`` checks the batch
against the bundle's metadata and returns ``(score [B], feature_error [B, F])``, and
``deactivate()`` releases everything. Backends are context managers.
"""

from __future__ import annotations

import logging
import platform
from abc import ABC, abstractmethod

import numpy as np

from edge_runtime.config import BACKENDS
from edge_runtime.contract.bundle import CONDITION_NAME, INPUT_NAME, OUTPUT_NAMES, Bundle
from edge_runtime.contract.errors import BackendError

log = logging.getLogger("linewatch.backend")

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class Backend(ABC):
    """Scores raw windows ``float32 [B, W, F]`` (sensor units) with a bundle's model."""

    name = "backend"

    def __init__(self, bundle: Bundle, max_batch: int = 256) -> None:
        self.bundle = bundle
        self.max_batch = max_batch
        self.window_shape = (bundle.window, bundle.channels)  # a conditional bundle's conditions ride as the last channels
        self.n_features = len(bundle.features)
        self.active = False

    def check(self, window: np.ndarray) -> None:
        """Refuse a batch whose dtype, rank, shape or size does not match the bundle."""
        if window.dtype != np.float32:
            raise BackendError(f"{self.name}: input must be float32, got {window.dtype}")
        if window.ndim != 3 or window.shape[1:] != self.window_shape:
            raise BackendError(f"{self.name}: input must be [batch, {self.window_shape[0]}, {self.window_shape[1]}], got {list(window.shape)}")
        if not 1 <= window.shape[0] <= self.max_batch:
            raise BackendError(f"{self.name}: batch {window.shape[0]} outside 1..{self.max_batch}")

    def feeds(self, window: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's inputs from a checked batch: the windows, and a conditional model's conditions at the last sample."""
        if not self.bundle.conditions:
            return {INPUT_NAME: window}
        n = self.n_features
        return {INPUT_NAME: np.ascontiguousarray(window[..., :n]), CONDITION_NAME: np.ascontiguousarray(window[:, -1, n:])}

    @abstractmethod
    def activate(self) -> None:
        """Load the model and allocate what can be allocated once."""

    @abstractmethod
    def _infer(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run a checked batch."""

    def infer(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score a batch of windows: ``(score [B], feature_error [B, F])``."""
        if not self.active:
            raise BackendError(f"{self.name}: infer() before activate()")
        self.check(window)
        return self._infer(window)

    def deactivate(self) -> None:
        """Release the model."""
        self.active = False

    def __enter__(self) -> Backend:
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with the CPU, CUDA or TensorRT execution provider.

    On CPU it uses one intra-op thread and plain ``run`` (IOBinding measured slower on CPU).
    The TensorRT provider caches its engines next to the bundle (``trt_cache/``).
    """

    def __init__(self, bundle: Bundle, device: str = "cpu", precision: str = "fp32", max_batch: int = 256, threads: int = 1,
                 allow_fallback: bool = False) -> None:
        """``allow_fallback``: run on the next provider in line when the requested one fails to initialise."""
        super().__init__(bundle, max_batch)
        if device not in PROVIDERS:
            raise BackendError(f"unknown ONNX Runtime device '{device}'; expected one of {sorted(PROVIDERS)}")
        self.device, self.precision, self.threads, self.allow_fallback = device, precision, threads, allow_fallback
        self.name = f"onnxruntime-{device}-{precision}"
        self.session = None

    def activate(self) -> None:
        """Create the inference session; a missing provider is an error, not a silent CPU fallback."""
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = PROVIDERS[self.device][0]
        if self.device != "cpu" and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* pip packages when they are not on the library path
        if wanted not in available:
            raise BackendError(f"{self.name}: {wanted} not available in this onnxruntime build (has {available})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers: list = list(PROVIDERS[self.device])
        if self.device == "tensorrt":
            cache = self.bundle.path / "trt_cache"
            providers[0] = (providers[0], {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                                           "trt_fp16_enable": self.precision == "fp16"})
        path = self.bundle.artifact_path("onnx", self.precision)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise BackendError(f"{self.name}: cannot load {path}: {error}") from error
        running = self.session.get_providers()[0]
        if running != wanted:  # ORT falls back silently when a provider fails to initialise (CUDA libraries, memory)
            if not self.allow_fallback:
                self.session = None
                raise BackendError(f"{self.name}: {wanted} did not initialise (the session runs on {running}); "
                                   "fix the GPU setup or set allow_fallback = true for this model")
            log.warning("%s: %s did not initialise; running on %s (allow_fallback = true)", self.name, wanted, running)
        names = [i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()]
        inputs = [INPUT_NAME, CONDITION_NAME] if self.bundle.conditions else [INPUT_NAME]
        if names != (inputs, list(OUTPUT_NAMES)):
            raise BackendError(f"{self.name}: graph has inputs/outputs {names}, expected {inputs}/{list(OUTPUT_NAMES)}")
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 3 or any(isinstance(d, int) and d != want for d, want in zip(shape[1:], (self.window_shape[0], self.n_features))):
            self.session = None
            raise BackendError(f"{self.name}: the graph takes windows {shape}, the bundle's input spec says "
                               f"[batch, {self.window_shape[0]}, {self.n_features}]")
        self.active = True

    def _infer(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score, feature_error = self.session.run(None, self.feeds(window))
        return score, feature_error

    def deactivate(self) -> None:
        """Drop the session."""
        self.session = None
        super().deactivate()


def import_cudart():
    """cuda-python's runtime module (``cuda.bindings.runtime`` since 12.6, ``cuda.cudart`` before)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendError("cuda-python is not installed: pip install 'linewatch[tensorrt]'") from None
    return cudart


def local_gpu() -> dict:
    """Name and compute capability of CUDA device 0 and the TensorRT version (needs tensorrt)."""
    trt = import_tensorrt()
    cudart = import_cudart()
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise BackendError(f"no CUDA device: {err}")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}", "tensorrt": trt.__version__, "machine": platform.machine()}


def import_tensorrt():
    """Import tensorrt lazily; without it, say how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise BackendError(
            "TensorRT is not installed: on a GPU machine pip install 'linewatch[tensorrt]' "
            "(or use JetPack's python3-libnvinfer on Jetson)"
        ) from None
    return tensorrt


class TensorRTBackend(Backend):
    """A native TensorRT engine from the bundle, refused unless built for this GPU and version.

    Device buffers for the input and both outputs are allocated once for ``max_batch`` (capped by
    the engine's profile), with host buffers for the outputs; each call copies the batch in,
    enqueues, copies the two outputs out on one CUDA stream and waits for it. Every CUDA call's
    status is checked; an activation that fails part way frees what it had allocated.
    """

    def __init__(self, bundle: Bundle, precision: str = "fp32", max_batch: int = 256) -> None:
        super().__init__(bundle, max_batch)
        self.precision = precision
        self.name = f"tensorrt-{precision}"
        self.cudart = None
        self.stream = None
        self.device_ptrs: dict[str, int] = {}
        self.host: dict[str, np.ndarray] = {}
        self.context = self.engine = None

    def _cuda(self, result, what: str):
        """The values of a cuda-python call after its status (the first item), which must be success."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"{self.name}: {what} failed: {err}")
        return values[0] if len(values) == 1 else values

    def activate(self) -> None:
        """Check the engine against this machine, deserialise it, and allocate buffers."""
        if self.bundle.conditions:
            raise BackendError(f"{self.name}: TensorRT engines of conditional models are not built yet; use onnxruntime-cuda")
        trt = import_tensorrt()
        self.cudart = import_cudart()
        entry = self.bundle.artifact("tensorrt", self.precision)
        built, here = entry.get("tensorrt_build", {}), local_gpu()
        for key in ("gpu", "compute_capability", "tensorrt"):
            if built.get(key) != here[key]:
                raise BackendError(
                    f"{self.name}: engine {entry['file']} was built for {key} {built.get(key)!r}, this machine has {here[key]!r}; "
                    "rebuild it here with 'linewatch export --tensorrt'"
                )
        self.max_batch = min(self.max_batch, int(built.get("max_batch", self.max_batch)))
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine((self.bundle.path / entry["file"]).read_bytes())
        if self.engine is None:
            raise BackendError(f"{self.name}: TensorRT could not deserialise {entry['file']}")
        try:
            self.context = self.engine.create_execution_context()
            self.stream = self._cuda(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
            w, f = self.window_shape
            self.host = {"score": np.empty((self.max_batch,), np.float32), "feature_error": np.empty((self.max_batch, f), np.float32)}
            sizes = {INPUT_NAME: self.max_batch * w * f * 4, **{name: array.nbytes for name, array in self.host.items()}}
            for name, size in sizes.items():
                self.device_ptrs[name] = self._cuda(self.cudart.cudaMalloc(size), f"cudaMalloc of {size} bytes for {name}")
                self.context.set_tensor_address(name, self.device_ptrs[name])
        except BaseException:
            self._free()
            raise
        self.active = True

    def _infer(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cudart, n, stream = self.cudart, window.shape[0], self.stream
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        window = np.ascontiguousarray(window)
        self._cuda(cudart.cudaMemcpyAsync(self.device_ptrs[INPUT_NAME], window.ctypes.data, window.nbytes, h2d, stream), "copy to the GPU")
        self.context.set_input_shape(INPUT_NAME, window.shape)
        if not self.context.execute_async_v3(stream):
            raise BackendError(f"{self.name}: execution failed")
        score, error = self.host["score"][:n], self.host["feature_error"][:n]
        self._cuda(cudart.cudaMemcpyAsync(score.ctypes.data, self.device_ptrs["score"], score.nbytes, d2h, stream), "copy from the GPU")
        self._cuda(cudart.cudaMemcpyAsync(error.ctypes.data, self.device_ptrs["feature_error"], error.nbytes, d2h, stream),
                   "copy from the GPU")
        self._cuda(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return score.copy(), error.copy()

    def _free(self) -> None:
        """Free whatever is allocated (after a full or a partial activation); a failure to free is only logged."""
        for name, ptr in list(self.device_ptrs.items()):
            try:
                self._cuda(self.cudart.cudaFree(ptr), f"cudaFree of {name}")
            except BackendError as error:
                log.warning("%s", error)
        self.device_ptrs = {}
        if self.stream is not None:
            try:
                self._cuda(self.cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            except BackendError as error:
                log.warning("%s", error)
            self.stream = None
        self.context = self.engine = None

    def deactivate(self) -> None:
        """Free device buffers and the stream."""
        self._free()
        super().deactivate()


def create_backend(bundle: Bundle, name: str = "onnxruntime", precision: str = "fp32", max_batch: int = 256,
                   allow_fallback: bool = False) -> Backend:
    """Build a backend by name: ``onnxruntime`` (CPU), ``onnxruntime-cuda``, ``onnxruntime-tensorrt`` or ``tensorrt``."""
    if name == "tensorrt":
        return TensorRTBackend(bundle, precision, max_batch)
    if name in ("onnxruntime", "onnxruntime-cpu"):
        return OnnxRuntimeBackend(bundle, "cpu", precision, max_batch)
    if name.startswith("onnxruntime-"):
        return OnnxRuntimeBackend(bundle, name.split("-", 1)[1], precision, max_batch, allow_fallback=allow_fallback)
    raise BackendError(f"unknown backend '{name}'; expected one of {BACKENDS}")
