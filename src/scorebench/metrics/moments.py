"""Distances between the empirical moments of a sample and the target's exact moments.

Called as metrics, they refuse (``MetricInputError``) samples with NaN or inf entries, entries
above ``MAX_ABS_VALUE`` in absolute value, or fewer than two points (no sample covariance), and
non-finite target moments: see :class:`~scorebench.metrics.base.MomentMetric`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..exact import GaussianLaw, gaussian_w2
from .base import METRICS, MomentMetric


def empirical_moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Sample mean and unbiased covariance in float64, shapes ``(d,)`` and ``(d, d)``."""
    x = x.double()
    mean = x.mean(0)
    centred = x - mean
    return mean, centred.T @ centred / max(x.shape[0] - 1, 1)


@METRICS.register("bures_w2")
class BuresW2(MomentMetric):
    r"""2-Wasserstein distance between the Gaussians with the sample's and the target's
    means and covariances (Bures formula).  By Gelbrich's bound it is a lower bound on the
    W2 between the two laws; it is exact when both are Gaussian."""

    def compute(self, x: Tensor, mean: Tensor, cov: Tensor) -> float:
        m, c = empirical_moments(x)
        return gaussian_w2(GaussianLaw(m.cpu(), c.cpu()), GaussianLaw(mean.cpu(), cov.cpu()))


@METRICS.register("mean_error")
class MeanError(MomentMetric):
    """Euclidean norm of the error of the sample mean, ``||mean(x) - mu||``."""

    def compute(self, x: Tensor, mean: Tensor, cov: Tensor) -> float:
        return float(torch.linalg.vector_norm(empirical_moments(x)[0] - mean))


@METRICS.register("cov_error")
class CovError(MomentMetric):
    """Frobenius norm of the error of the sample covariance, ``||Cov(x) - Sigma||_F``."""

    def compute(self, x: Tensor, mean: Tensor, cov: Tensor) -> float:
        err = empirical_moments(x)[1] - cov
        value = float(torch.linalg.matrix_norm(err))
        if math.isinf(value) and bool(torch.isfinite(err).all()):  # squares overflowed: rescale
            scale = err.abs().max()
            value = float(scale * torch.linalg.matrix_norm(err / scale))
        return value
