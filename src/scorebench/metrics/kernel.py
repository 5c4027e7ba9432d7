"""Kernel two-sample distances: MMD with an RBF kernel and the energy distance.

Both are U-statistics over all pairs, accumulated in row blocks so that memory stays
``O(block * n)`` rather than ``O(n^2)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from ..params import Interval, NoneMeans
from .base import METRICS, SampleMetric

_BLOCK = 2048


def pair_mean(x: Tensor, y: Tensor, kernel: Callable[[Tensor], Tensor], same: bool) -> Tensor:
    """Mean of ``kernel(||x_i - y_j||)`` over pairs; ``same`` drops the diagonal ``i = j``.
    ``kernel`` may work in place on the distance block it is given."""
    total = x.new_zeros(())
    for lo in range(0, x.shape[0], _BLOCK):
        block = kernel(torch.cdist(x[lo : lo + _BLOCK], y))
        if same:
            idx = torch.arange(block.shape[0], device=x.device)
            block[idx, lo + idx] = 0.0
        total = total + block.sum()
    pairs = x.shape[0] * (y.shape[0] - 1) if same else x.shape[0] * y.shape[0]
    return total / pairs


def median_sq_distance(y: Tensor, generator: torch.Generator, max_points: int = 500) -> float:
    """Median squared pairwise distance of ``y`` (a random subset of ``max_points``)."""
    pooled = y
    if pooled.shape[0] > max_points:
        idx = torch.randperm(pooled.shape[0], generator=generator, device=generator.device)[:max_points]
        pooled = pooled[idx.to(pooled.device)]
    d2 = torch.cdist(pooled, pooled).pow(2)
    iu = torch.triu_indices(d2.shape[0], d2.shape[0], 1, device=d2.device)
    return float(d2[iu[0], iu[1]].median())


@METRICS.register("mmd")
class MMD(SampleMetric):
    r"""Unbiased squared maximum mean discrepancy with the RBF kernel ``exp(-||u - v||^2 / l)``
    (Gretton et al. 2012):

        MMD^2_u = mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j).

    ``l`` is the median squared pairwise distance of the reference sample ``y`` (median
    heuristic) unless ``bandwidth`` is given: the kernel then depends on the target only, so
    a value, its noise floor and every sampler of a cell are measured with the same kernel.
    Unbiased, so it can be slightly negative when the laws agree.
    """

    param_constraints: ClassVar[dict] = {
        "bandwidth": [Interval(float, 0, None, closed="neither", cast=False), NoneMeans("median heuristic")],
    }

    def __init__(self, bandwidth: float | None = None) -> None:
        self.set_params_from(bandwidth=bandwidth)

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        x, y = x.double(), y.double().to(x.device)
        ell = self.bandwidth if self.bandwidth is not None else median_sq_distance(y, generator)
        ell = max(ell, 1e-12)

        def k(dist: Tensor) -> Tensor:
            return dist.square_().mul_(-1.0 / ell).exp_()

        return float(pair_mean(x, x, k, True) + pair_mean(y, y, k, True) - 2 * pair_mean(x, y, k, False))


@METRICS.register("energy")
class EnergyDistance(SampleMetric):
    r"""Energy distance (Székely & Rizzo 2013), unbiased:
    ``2 mean ||x_i - y_j|| - mean_{i != j} ||x_i - x_j|| - mean_{i != j} ||y_i - y_j||``."""

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        x, y = x.double(), y.double().to(x.device)
        def dist(d: Tensor) -> Tensor:
            return d

        return float(2 * pair_mean(x, y, dist, False) - pair_mean(x, x, dist, True) - pair_mean(y, y, dist, True))
