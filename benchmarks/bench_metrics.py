"""Metric timings: every registered metric at a few sample sizes and dimensions."""

from __future__ import annotations

from ._common import (
    DEVICES,
    DIMS,
    EXACT_METRICS,
    METRIC_SIZES,
    TIMED_METRICS,
    exact_metric_call,
    is_slow,
    metric_call,
    require,
    sync_timer,
)


class Metrics:
    """One evaluation of each sample, moment and score metric (default parameters) on ``n``
    points of a 5-mode Gaussian mixture in ``dim`` dimensions, as a run evaluates it
    (``metric.evaluate(ctx)``, ``_common.metric_call``)."""

    params = (DEVICES, TIMED_METRICS, DIMS, METRIC_SIZES)
    param_names = ("device", "metric", "dim", "n")
    timer = staticmethod(sync_timer)
    version = "2"
    timeout = 600

    def setup(self, device: str, metric: str, dim: int, n: int) -> None:
        require(device, slow=is_slow(dim, n, defaults=(DIMS[0], METRIC_SIZES[0])))
        self.run = metric_call(device, metric, dim, n)

    def time_metric(self, device: str, metric: str, dim: int, n: int) -> None:
        self.run()


class ExactLawMetrics:
    """``exact_w2`` and ``exact_kl`` of a 50-step exponential integrator on a Gaussian target: the
    exact output law is propagated in float64 on the CPU (no device, no sample size)."""

    params = (EXACT_METRICS, DIMS)
    param_names = ("metric", "dim")
    version = "1"

    def setup(self, metric: str, dim: int) -> None:
        require("cpu", slow=is_slow(dim, defaults=(DIMS[0],)))
        self.run = exact_metric_call(metric, dim)

    def time_exact_metric(self, metric: str, dim: int) -> None:
        self.run()
