"""Latency of one inference backend over a range of batch sizes, measured in a child process.

Each backend runs in its own process (``python -m linewatch.backend_bench``) so that its peak RSS is
its own and a provider that crashes takes only its own row with it. Latencies go into HDR
histograms (nanoseconds, 3 significant digits); the encoded histograms travel with the result
so percentiles can be recomputed or merged later.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np

from edge_runtime.contract.bundle import Bundle, load_bundle
from edge_runtime.contract.errors import BackendError, BundleError
from edge_runtime.scoring.backends import Backend, create_backend

PERCENTILES = (50, 90, 99, 99.9)
HIGHEST_NS = 60 * 10**9


class TorchBackend(Backend):
    """The bundle's ``.pt2`` program under torch (op by op, as torch eager runs it), on the CPU or a CUDA device.

    Only for benchmarks: the gateway runtime never imports torch. On CUDA the batch is copied in
    and the outputs out on every call, as the TensorRT backend does, so the figures compare.
    """

    def __init__(self, bundle: Bundle, device: str = "cpu", max_batch: int = 256) -> None:
        super().__init__(bundle, max_batch)
        self.device = device
        self.name = f"torch-pt2-{device}"

    def activate(self) -> None:
        """Load the exported program onto the device."""
        try:
            import torch
        except ImportError:
            raise BackendError(f"{self.name}: torch is not installed") from None
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"{self.name}: no CUDA device")
        self.torch = torch
        self.module = torch.export.load(str(self.bundle.artifact_path("pt2", "fp32"))).module().to(self.device)
        self.active = True

    def _infer(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.inference_mode():
            score, feature_error = self.module(*(self.torch.from_numpy(a).to(self.device) for a in self.feeds(window).values()))
            return score.cpu().numpy(), feature_error.cpu().numpy()

    def deactivate(self) -> None:
        """Drop the module."""
        self.module = None
        super().deactivate()


def open_backend(bundle: Bundle, name: str, precision: str, max_batch: int) -> Backend:
    """A runtime backend by name, or the torch one (``torch-pt2-cpu`` / ``torch-pt2-cuda``)."""
    if name.startswith("torch-pt2-"):
        return TorchBackend(bundle, name.rsplit("-", 1)[1], max_batch)
    return create_backend(bundle, name, precision, max_batch)


def _summary(histogram, batch: int) -> dict:
    """Per-call and per-window percentiles (µs) of one histogram of call times."""
    per_call = {f"p{p:g}": histogram.get_value_at_percentile(p) / 1e3 for p in PERCENTILES}
    per_call["max"] = histogram.get_max_value() / 1e3
    per_call["mean"] = histogram.get_mean_value() / 1e3
    return {"per_call_us": per_call, "per_window_us": {k: v / batch for k, v in per_call.items()}}


def measure(bundle_path: str, name: str, precision: str, batches: list[int], seconds: float, min_calls: int, warmup: int) -> dict:
    """Time ``name`` on every batch size: activation, first call, warm-up, then calls for ``seconds``."""
    from hdrh.histogram import HdrHistogram

    bundle = load_bundle(bundle_path)
    backend = open_backend(bundle, name, precision, max(batches))
    started = time.perf_counter()
    backend.activate()
    result = {"backend": name, "precision": precision, "activate_s": time.perf_counter() - started, "batches": []}
    rng = np.random.default_rng(0)
    try:
        for batch in batches:
            if batch > backend.max_batch:
                result["batches"].append({"batch": batch, "skipped": f"above the backend's max batch {backend.max_batch}"})
                continue
            window = rng.normal(size=(batch, bundle.window, len(bundle.features))).astype(np.float32)
            started = time.perf_counter()
            backend.infer(window)
            first_call = time.perf_counter() - started
            started = time.perf_counter()
            for _ in range(warmup):
                backend.infer(window)
            warm = time.perf_counter() - started
            histogram = HdrHistogram(1, HIGHEST_NS, 3)
            clock, calls = time.perf_counter_ns, 0
            began = clock()
            deadline = began + int(seconds * 1e9)
            while calls < min_calls or clock() < deadline:
                t0 = clock()
                backend.infer(window)
                histogram.record_value(max(clock() - t0, 1))
                calls += 1
            elapsed = (clock() - began) / 1e9
            row = {"batch": batch, "calls": calls, "first_call_ms": first_call * 1e3, "warmup_ms": warm * 1e3, "warmup_calls": warmup,
                   "windows_per_s": batch * calls / elapsed, **_summary(histogram, batch), "histogram": histogram.encode().decode()}
            result["batches"].append(row)
    finally:
        backend.deactivate()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv: list[str]) -> None:
    """Child entry: ``python -m linewatch.backend_bench SPEC_JSON`` prints one result as JSON on its last line."""
    spec = json.loads(argv[0])
    try:
        result = measure(**spec)
    except (BackendError, BundleError) as error:
        result = {"backend": spec["name"], "precision": spec["precision"], "skipped": str(error)}
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
