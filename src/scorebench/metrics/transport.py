"""Optimal-transport distances between samples (POT for exact OT, torch for the rest)."""

from __future__ import annotations

import math
from typing import Any

import ot
import torch
from torch import Tensor

from ..validation import is_int_at_least, is_positive_real
from .base import METRICS, SampleMetric


@METRICS.register("w2")
class W2(SampleMetric):
    r"""Exact 2-Wasserstein distance between the empirical laws of ``x`` and ``y``.

    ``W2 = (min_P sum_ij P_ij ||x_i - y_j||^2)^{1/2}`` solved by POT's network simplex
    (``ot.emd2``, uniform weights, float64).  Biased upwards by roughly ``n^{-1/d}`` (compare
    with its noise floor).  Cost ``O(n^3)``: refused above ``max_samples``.
    """

    alternatives = ("sliced_w2", "sinkhorn")

    def __init__(self, max_samples: int = 5000) -> None:
        if not is_int_at_least(max_samples, 2):
            raise ValueError(f"w2: max_samples must be an integer >= 2, got {max_samples!r}")
        self.max_samples = max_samples

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        xs, ys = x.detach().cpu().double(), y.detach().cpu().double()
        a = torch.full((xs.shape[0],), 1.0 / xs.shape[0], dtype=torch.float64)
        b = torch.full((ys.shape[0],), 1.0 / ys.shape[0], dtype=torch.float64)
        cost = ot.emd2(a, b, ot.dist(xs, ys), numItermax=10_000_000)
        return math.sqrt(max(float(cost), 0.0))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_samples": self.max_samples}


@METRICS.register("sliced_w2")
class SlicedW2(SampleMetric):
    r"""Sliced 2-Wasserstein distance ``(E_theta W2^2(theta^T x, theta^T y))^{1/2}`` over
    ``n_projections`` directions uniform on the sphere, drawn from the metric's generator.

    Each one-dimensional W2 is exact: for equal sample sizes the mean squared difference of
    the sorted projections (batched torch, any device); otherwise POT's
    ``sliced_wasserstein_distance`` with the same explicit projections.
    """

    def __init__(self, n_projections: int = 128) -> None:
        if not is_int_at_least(n_projections, 1):
            raise ValueError(f"sliced_w2: n_projections must be a positive integer, got {n_projections!r}")
        self.n_projections = n_projections

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        d = x.shape[1]
        theta = torch.randn((d, self.n_projections), generator=generator, device=generator.device, dtype=torch.float64)
        theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)
        x, y = x.double(), y.double().to(x.device)
        if x.shape[0] != y.shape[0]:
            return float(ot.sliced_wasserstein_distance(x, y, projections=theta, p=2))
        px = torch.sort(x @ theta, dim=0).values
        py = torch.sort(y @ theta, dim=0).values
        return math.sqrt(float((px - py).pow(2).mean()))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_projections": self.n_projections}


def _entropic_ot(cost: Tensor, eps_schedule: list[float], max_iterations: int, tol: float) -> Tensor:
    """Entropic OT cost ``<a, f> + <b, g>`` (uniform weights) by log-domain Sinkhorn with
    epsilon-scaling and symmetric, averaged updates (Feydy et al. 2019, geomloss), ending
    with one plain update.  The same arithmetic for ``OT(x, y)`` and ``OT(x, x)`` makes the
    debiased divergence of a sample with itself exactly zero."""
    n, m = cost.shape
    log_a = torch.full((n,), -math.log(n), dtype=cost.dtype, device=cost.device)
    log_b = torch.full((m,), -math.log(m), dtype=cost.dtype, device=cost.device)

    def softmin_f(g: Tensor, eps: float) -> Tensor:
        return -eps * torch.logsumexp(log_b[None, :] + (g[None, :] - cost) / eps, dim=1)

    def softmin_g(f: Tensor, eps: float) -> Tensor:
        return -eps * torch.logsumexp(log_a[:, None] + (f[:, None] - cost) / eps, dim=0)

    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    for eps in eps_schedule:
        f, g = 0.5 * (f + softmin_f(g, eps)), 0.5 * (g + softmin_g(f, eps))
    eps = eps_schedule[-1]
    for _ in range(max_iterations):  # at the target epsilon, until the potentials settle
        f_new, g_new = 0.5 * (f + softmin_f(g, eps)), 0.5 * (g + softmin_g(f, eps))
        change = max(float((f_new - f).abs().max()), float((g_new - g).abs().max()))
        f, g = f_new, g_new
        if change < tol * eps:
            break
    f, g = softmin_f(g, eps), softmin_g(f, eps)
    return f.mean() + g.mean()


@METRICS.register("sinkhorn")
class SinkhornDivergence(SampleMetric):
    r"""Debiased Sinkhorn divergence (Feydy et al. 2019) on the squared Euclidean cost:

        S_eps(x, y) = OT_eps(x, y) - OT_eps(x, x)/2 - OT_eps(y, y)/2,

    non-negative and zero iff the laws agree, with ``eps = (blur * s)^2`` where ``s`` is the
    root-mean-square spread of ``y`` about its mean (so it is not symmetric in ``x, y``
    unless ``y`` is the reference).  Log-domain iterations with epsilon-scaling from the
    squared diameter down to ``eps`` (factor ``scaling`` per iteration), then at ``eps``
    until no potential moves by more than ``tol * eps`` (at most ``max_iterations``).  Memory ``O(n^2)``: refused above
    ``max_samples``.  Units: squared distance.
    """

    alternatives = ("sliced_w2",)

    def __init__(
        self, blur: float = 0.3, scaling: float = 0.5, max_iterations: int = 500, tol: float = 1e-4,
        max_samples: int = 5000,
    ) -> None:
        if not is_positive_real(blur):
            raise ValueError(f"sinkhorn: blur must be a positive finite number, got {blur!r}")
        if not (is_positive_real(scaling) and scaling < 1):
            raise ValueError(f"sinkhorn: scaling must lie in (0, 1), got {scaling!r}")
        if not is_int_at_least(max_iterations, 1):
            raise ValueError(f"sinkhorn: max_iterations must be a positive integer, got {max_iterations!r}")
        if not is_positive_real(tol):
            raise ValueError(f"sinkhorn: tol must be a positive finite number, got {tol!r}")
        if not is_int_at_least(max_samples, 2):
            raise ValueError(f"sinkhorn: max_samples must be an integer >= 2, got {max_samples!r}")
        self.blur, self.scaling, self.tol = float(blur), float(scaling), float(tol)
        self.max_iterations = max_iterations
        self.max_samples = max_samples

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        x, y = x.double(), y.double().to(x.device)
        spread2 = float((y - y.mean(0)).pow(2).sum(1).mean())
        eps = max(self.blur**2 * spread2, 1e-12)
        both = torch.cat([x, y])
        diam2 = float((both.max(0).values - both.min(0).values).pow(2).sum())
        schedule = []
        e = max(diam2, eps)
        while e > eps:
            schedule.append(e)
            e *= self.scaling
        schedule.append(eps)
        args = (schedule, self.max_iterations, self.tol)
        value = (
            _entropic_ot(torch.cdist(x, y).pow(2), *args)
            - 0.5 * _entropic_ot(torch.cdist(x, x).pow(2), *args)
            - 0.5 * _entropic_ot(torch.cdist(y, y).pow(2), *args)
        )
        return float(value)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "blur": self.blur, "scaling": self.scaling,
            "max_iterations": self.max_iterations, "tol": self.tol, "max_samples": self.max_samples,
        }
