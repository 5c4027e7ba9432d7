"""Memory: peak resident memory on the CPU (``peakmem_*``) and peak CUDA allocation
(``track_peak_cuda_bytes``) of full sampling runs and of metric evaluations.

asv's ``peakmem_`` is the process's maximum resident set size, *including* the interpreter,
torch, the inputs and setup, and it cannot see GPU memory: compare it across commits, not as
the working set of the call.  On CUDA the tracked number is the peak of the caching
allocator above what was allocated when the call started.
"""

from __future__ import annotations

from ._common import (
    DIMS,
    METRIC_SIZES,
    PARTICLES,
    RUN_SAMPLERS,
    cuda_peak_bytes,
    is_slow,
    metric_call,
    require,
    sampling_run,
)

#: metrics whose memory grows with n^2 (pairwise matrices) or worse
MEMORY_METRICS = ["w2", "sinkhorn", "mmd", "energy"]
#: the same on CUDA (w2 solves on the CPU with POT)
CUDA_MEMORY_METRICS = ["sinkhorn", "mmd", "energy", "sliced_w2"]


class PeakMemSampling:
    """Peak RSS of a full CPU sampling run (50 steps, Gaussian-mixture oracle score)."""

    params = (RUN_SAMPLERS[:1], DIMS, PARTICLES)
    param_names = ("sampler", "dim", "n")
    version = "1"

    def setup(self, sampler: str, dim: int, n: int) -> None:
        require("cpu", slow=is_slow(dim, n))
        self.run = sampling_run("cpu", sampler, dim, n)

    def peakmem_sample(self, sampler: str, dim: int, n: int) -> None:
        self.run()


class PeakMemMetrics:
    """Peak RSS of one CPU metric evaluation in 2 dimensions."""

    params = (MEMORY_METRICS, METRIC_SIZES)
    param_names = ("metric", "n")
    version = "1"

    def setup(self, metric: str, n: int) -> None:
        require("cpu", slow=is_slow(n, defaults=(METRIC_SIZES[0],)))
        self.run = metric_call("cpu", metric, DIMS[0], n)

    def peakmem_metric(self, metric: str, n: int) -> None:
        self.run()


class CudaPeakSampling:
    """Peak CUDA bytes of a full sampling run (skipped without a GPU)."""

    params = (["cuda"], RUN_SAMPLERS, DIMS, PARTICLES)
    param_names = ("device", "sampler", "dim", "n")
    version = "1"

    def setup(self, device: str, sampler: str, dim: int, n: int) -> None:
        require(device, slow=is_slow(dim, n))
        self.run = sampling_run(device, sampler, dim, n)

    def track_peak_cuda_bytes(self, device: str, sampler: str, dim: int, n: int) -> float:
        return cuda_peak_bytes(self.run)

    track_peak_cuda_bytes.unit = "bytes"  # type: ignore[attr-defined]


class CudaPeakMetrics:
    """Peak CUDA bytes of one metric evaluation in 2 dimensions (skipped without a GPU)."""

    params = (["cuda"], CUDA_MEMORY_METRICS, METRIC_SIZES)
    param_names = ("device", "metric", "n")
    version = "1"

    def setup(self, device: str, metric: str, n: int) -> None:
        require(device, slow=is_slow(n, defaults=(METRIC_SIZES[0],)))
        self.run = metric_call(device, metric, DIMS[0], n)

    def track_peak_cuda_bytes(self, device: str, metric: str, n: int) -> float:
        return cuda_peak_bytes(self.run)

    track_peak_cuda_bytes.unit = "bytes"  # type: ignore[attr-defined]
