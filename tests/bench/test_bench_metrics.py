"""Micro-benchmarks of the metrics on two isotropic Gaussians, whose distances are known in
closed form (tests/bench/truths.py): the accuracy figure is ``|metric - exact value|``."""

from __future__ import annotations

import math

import pytest
import torch

import scorebench as sb
from scorebench.timing import sync_perf_counter

from . import truths
from .conftest import gen, record

D, N, DTYPE = 3, 1000, torch.float32
#: P = N(0, S1^2 I), Q = N(SHIFT e_1, S2^2 I)
S1, S2, SHIFT = 1.0, 1.3, 0.8
MMD_BANDWIDTH = 2.0 * D
SINKHORN_N, SINKHORN_BLUR = 400, 0.3
EPS_NOISY = 0.3


def samples(device: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = S1 * torch.randn((n, D), generator=gen(device, 1), device=device, dtype=DTYPE)
    y = S2 * torch.randn((n, D), generator=gen(device, 2), device=device, dtype=DTYPE)
    y[:, 0] += SHIFT
    return x, y


def exact(name: str, y: torch.Tensor) -> tuple[float, dict]:
    """The exact value of metric ``name`` between P and Q and the metric's parameters (``y``: the
    reference sample, whose spread sets the Sinkhorn divergence's entropic ``eps``)."""
    if name == "w2":
        return truths.w2(SHIFT, S1, S2, D), {}
    if name == "sliced_w2":
        return truths.sliced_w2(SHIFT, S1, S2, D), {"n_projections": 512}
    if name == "mmd":
        return truths.mmd2(SHIFT, S1, S2, D, MMD_BANDWIDTH), {"bandwidth": MMD_BANDWIDTH}
    if name == "energy":
        return truths.energy(SHIFT, S1, S2, D), {}
    if name == "sinkhorn":
        # the metric's eps: (blur * root-mean-square spread of the reference sample)^2
        yd = y.double()
        eps = SINKHORN_BLUR**2 * float((yd - yd.mean(0)).pow(2).sum(1).mean())
        return truths.sinkhorn(SHIFT, S1, S2, D, eps), {"blur": SINKHORN_BLUR}
    raise ValueError(name)


@pytest.mark.benchmark(group="metric", timer=sync_perf_counter, warmup=True, warmup_iterations=1)
@pytest.mark.parametrize("name", ["w2", "sliced_w2", "sinkhorn", "mmd", "energy"])
def test_sample_metric(benchmark, device: str, name: str) -> None:
    """Sample metrics between n draws of P and of Q; accuracy ``|value - exact|`` (estimation error
    of the finite samples, and the empirical-W2 bias)."""
    n = SINKHORN_N if name == "sinkhorn" else N
    x, y = samples(device, n)
    value_exact, params = exact(name, y)
    metric = sb.get_metric(name, **params)
    value = benchmark(metric, x, y, gen(device, 3))
    record(benchmark, device=device, n=n, d=D, dtype=DTYPE, metric=name, value=value, exact=value_exact,
           accuracy=abs(value - value_exact), accuracy_metric=f"|{name} - closed form|")


@pytest.mark.benchmark(group="metric", timer=sync_perf_counter, warmup=True, warmup_iterations=5)
def test_bures_w2(benchmark, device: str) -> None:
    """Bures W2 between the moments of n draws of P and the exact moments of Q; accuracy
    ``|value - W2(P, Q)|`` (Monte-Carlo error of the moments)."""
    x, _ = samples(device, N)
    mean = torch.zeros(D, dtype=torch.float64)
    mean[0] = SHIFT
    cov = S2**2 * torch.eye(D, dtype=torch.float64)
    value = benchmark(sb.get_metric("bures_w2"), x, mean, cov)
    value_exact = truths.w2(SHIFT, S1, S2, D)
    record(benchmark, device=device, n=N, d=D, dtype=DTYPE, metric="bures_w2", value=value, exact=value_exact,
           accuracy=abs(value - value_exact), accuracy_metric="|bures_w2 - closed form|")


@pytest.mark.benchmark(group="metric", timer=sync_perf_counter, warmup=True, warmup_iterations=2)
def test_score_mse(benchmark, device: str) -> None:
    """``score_mse`` of ``noisy_oracle(eps)``, whose error has norm ``eps`` at every point, so the
    exact value is ``eps^2`` at every time; accuracy: the largest ``|value - eps^2|`` over the times."""
    target = sb.get_target("gaussian", dim=D, mean=[1.0] * D, condition_number=10.0)
    process = sb.get_process("vp")
    score = sb.get_estimator("noisy_oracle", eps=EPS_NOISY).fit(target, process)
    metric = sb.get_metric("score_mse")
    values = benchmark(lambda: metric.compute(score, target, process, N, gen(device, 4)))
    err = max(abs(v - EPS_NOISY**2) for _, v in values)
    assert math.isfinite(err)
    record(benchmark, device=device, n=N, d=D, dtype=DTYPE, metric="score_mse", times=[t for t, _ in values],
           accuracy=err, accuracy_metric="max_t |score_mse - eps^2|")
