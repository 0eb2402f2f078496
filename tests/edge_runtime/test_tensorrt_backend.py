"""The native TensorRT backend against a stand-in CUDA runtime and TensorRT: buffers, status codes, clean-up.

No GPU is needed: the stand-in keeps "device" memory in byte arrays and its "engine" scores a window as
the sum of its values (and each feature's error as its mean), so what reaches the output proves that the
input was copied to the device, the engine ran on it, and the outputs were copied back. On a GPU machine
``pytest -m gpu`` runs the real thing (``tests/export/test_gpu.py``).
"""

import ctypes
from enum import Enum
from types import SimpleNamespace

import numpy as np
import pytest

from edge_runtime.contract.bundle import Bundle
from edge_runtime.contract.errors import BackendError
from edge_runtime.scoring import backends

GPU = {"gpu": "Stand-in GPU", "compute_capability": "8.7", "tensorrt": "10.3.0", "machine": "aarch64"}


class Memcpy(Enum):
    """cudaMemcpyKind."""

    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class FakeCudart:
    """cuda-python's runtime calls the backend makes, returning ``(status, value...)`` as cuda-python does."""

    cudaMemcpyKind = Memcpy

    def __init__(self, fail: dict | None = None) -> None:
        self.memory: dict[int, bytearray] = {}
        self.streams: set[int] = set()
        self.fail = fail or {}  # call name -> on which call (1-based) it returns an error
        self.calls: dict[str, int] = {}
        self.next = 0x1000

    def _status(self, call: str) -> int:
        self.calls[call] = self.calls.get(call, 0) + 1
        return 2 if self.fail.get(call) == self.calls[call] else 0  # 2: cudaErrorMemoryAllocation

    def cudaStreamCreate(self):
        """A stream."""
        status = self._status("cudaStreamCreate")
        if status:
            return status, None
        self.streams.add(7)
        return 0, 7

    def cudaStreamDestroy(self, stream):
        """Forget the stream."""
        self.streams.discard(stream)
        return (self._status("cudaStreamDestroy"),)

    def cudaMalloc(self, size):
        """Device memory of ``size`` bytes."""
        status = self._status("cudaMalloc")
        if status:
            return status, None
        self.next += 0x1000
        self.memory[self.next] = bytearray(size)
        return 0, self.next

    def cudaFree(self, ptr):
        """Free device memory."""
        del self.memory[ptr]
        return (self._status("cudaFree"),)

    def cudaMemcpyAsync(self, dst, src, size, kind, stream):
        """Copy between host addresses and device memory."""
        status = self._status("cudaMemcpyAsync")
        if not status:
            if kind is Memcpy.cudaMemcpyHostToDevice:
                self.memory[dst][:size] = ctypes.string_at(src, size)
            else:
                ctypes.memmove(dst, bytes(self.memory[src][:size]), size)
        return (status,)

    def cudaStreamSynchronize(self, stream):
        """Nothing is asynchronous here."""
        return (self._status("cudaStreamSynchronize"),)


class FakeContext:
    """A TensorRT execution context whose engine sums each window (score) and averages each feature (feature error)."""

    def __init__(self, cudart: FakeCudart, window: int, features: int) -> None:
        self.cudart, self.window, self.features = cudart, window, features
        self.addresses: dict[str, int] = {}
        self.shape = None

    def set_tensor_address(self, name, ptr):
        """Bind a tensor to device memory."""
        self.addresses[name] = ptr

    def set_input_shape(self, name, shape):
        """The batch's shape."""
        self.shape = shape

    def execute_async_v3(self, stream):
        """Run the stand-in engine on the device buffers."""
        memory = self.cudart.memory
        n = self.shape[0]
        windows = np.frombuffer(bytes(memory[self.addresses["window"]]), np.float32)[: n * self.window * self.features]
        windows = windows.reshape(n, self.window, self.features)
        memory[self.addresses["score"]][: n * 4] = windows.sum(axis=(1, 2)).astype(np.float32).tobytes()
        memory[self.addresses["feature_error"]][: n * self.features * 4] = windows.mean(axis=1).astype(np.float32).tobytes()
        return True


def fake_tensorrt(cudart: FakeCudart, window: int, features: int):
    engine = SimpleNamespace(create_execution_context=lambda: FakeContext(cudart, window, features))

    class Logger:
        WARNING = 2

        def __init__(self, level) -> None:
            self.level = level

    return SimpleNamespace(Logger=Logger, Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: engine),
                           __version__=GPU["tensorrt"])


@pytest.fixture
def engine_bundle(tmp_path) -> Bundle:
    (tmp_path / "model.fp32.engine").write_bytes(b"stand-in engine")
    return Bundle(path=tmp_path, manifest={
        "input": {"window": 4, "stride": 1, "features": [{"name": "a"}, {"name": "b"}], "sample_period": 1.0, "max_gap": 3.0},
        "threshold": {"value": 1.0},
        "artifacts": [{"file": "model.fp32.engine", "format": "tensorrt", "precision": "fp32",
                       "tensorrt_build": {**GPU, "max_batch": 8}}]})


def use(monkeypatch, cudart: FakeCudart, bundle: Bundle) -> None:
    monkeypatch.setattr(backends, "import_cudart", lambda: cudart)
    monkeypatch.setattr(backends, "import_tensorrt", lambda: fake_tensorrt(cudart, bundle.window, bundle.channels))
    monkeypatch.setattr(backends, "local_gpu", lambda: dict(GPU))


def test_the_window_goes_to_the_device_and_both_outputs_come_back(monkeypatch, engine_bundle):
    cudart = FakeCudart()
    use(monkeypatch, cudart, engine_bundle)
    backend = backends.create_backend(engine_bundle, "tensorrt")
    backend.activate()
    assert backend.max_batch == 8 and len(cudart.memory) == 3  # the input and two outputs, on the device
    windows = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    score, error = backend.infer(windows)
    np.testing.assert_array_equal(score, windows.sum(axis=(1, 2)))
    np.testing.assert_array_equal(error, windows.mean(axis=1))
    backend.deactivate()
    assert cudart.memory == {} and cudart.streams == set()
    backend.deactivate()  # twice is harmless


@pytest.mark.parametrize("call", ["cudaMemcpyAsync", "cudaStreamSynchronize"])
def test_a_failing_cuda_call_is_an_error_naming_it(monkeypatch, engine_bundle, call):
    cudart = FakeCudart(fail={call: 1})
    use(monkeypatch, cudart, engine_bundle)
    backend = backends.create_backend(engine_bundle, "tensorrt")
    backend.activate()
    with pytest.raises(BackendError, match=r"tensorrt-fp32: .* failed: 2"):
        backend.infer(np.zeros((1, 4, 2), np.float32))
    backend.deactivate()


@pytest.mark.parametrize("fail", [{"cudaMalloc": 2}, {"cudaMalloc": 3}, {"cudaStreamCreate": 1}])
def test_an_activation_that_fails_part_way_frees_what_it_took(monkeypatch, engine_bundle, fail):
    cudart = FakeCudart(fail=fail)
    use(monkeypatch, cudart, engine_bundle)
    backend = backends.create_backend(engine_bundle, "tensorrt")
    with pytest.raises(BackendError, match="failed: 2"):
        backend.activate()
    assert cudart.memory == {} and cudart.streams == set() and not backend.active


def test_an_engine_built_for_another_gpu_is_refused(monkeypatch, engine_bundle):
    cudart = FakeCudart()
    use(monkeypatch, cudart, engine_bundle)
    monkeypatch.setattr(backends, "local_gpu", lambda: {**GPU, "compute_capability": "9.0"})
    with pytest.raises(BackendError, match="built for compute_capability '8.7', this machine has '9.0'"):
        backends.create_backend(engine_bundle, "tensorrt").activate()
    assert cudart.memory == {}
