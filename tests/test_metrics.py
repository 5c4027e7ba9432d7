"""Metrics against closed forms and their own null distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import scorebench as sb
from scorebench.exact import GaussianLaw

from .conftest import gen

SAMPLE_METRICS = ["w2", "sliced_w2", "sinkhorn", "mmd", "energy"]
MOMENT_METRICS = ["bures_w2", "mean_error", "cov_error"]
RING = sb.get_target("gmm", preset="ring8")


def _metric_value(name: str, x: torch.Tensor, y: torch.Tensor, target: sb.Target, seed: int) -> float:
    metric = sb.get_metric(name)
    if metric.kind == "moment":
        mean, cov = target.moments()
        return metric(x, mean, cov)
    return metric(x, y, gen(seed))


@pytest.mark.parametrize("name", SAMPLE_METRICS + MOMENT_METRICS)
def test_null_values_lie_within_the_floor_spread(name: str) -> None:
    """Same law: the metric between a third independent sample and the reference has the
    distribution of the floor (two reference samples); a shifted law does not."""
    n, reps = 300, 12
    floors, values, shifted = [], [], []
    for r in range(reps):
        g = gen(1000 + r)
        y1, y2, x = (RING.sample(n, g, dtype=torch.float64) for _ in range(3))
        floors.append(_metric_value(name, y2, y1, RING, r))
        values.append(_metric_value(name, x, y1, RING, r))
        moved = 1.5 * x + torch.tensor([2.0, 0.0], dtype=torch.float64)  # changes mean and covariance
        shifted.append(_metric_value(name, moved, y1, RING, r))
    assert stats.mannwhitneyu(values, floors).pvalue > 1e-3
    lo, hi = min(floors), max(floors)
    spread = hi - lo
    assert all(lo - spread <= v <= hi + spread for v in values)
    assert min(shifted) > hi  # and the metric sees a real difference


def test_mmd_is_unbiased_under_the_null() -> None:
    vals = []
    for s in range(40):
        g = gen(s)
        x, y = RING.sample(200, g, dtype=torch.float64), RING.sample(200, g, dtype=torch.float64)
        vals.append(sb.get_metric("mmd")(x, y))
    assert abs(np.mean(vals)) < 3 * np.std(vals, ddof=1) / math.sqrt(len(vals))
    assert min(vals) < 0  # unbiased estimates straddle zero


def test_w2_converges_to_the_gaussian_closed_form() -> None:
    """N(0, 1) vs N(1, 4) in 1-D: W2 = sqrt(1 + (2 - 1)^2); empirical W2 converges as n grows."""
    exact = math.sqrt(2.0)
    errors = []
    for n in (100, 400, 1600):
        errs = []
        for s in range(5):
            g = gen(s)
            x = torch.randn((n, 1), generator=g, dtype=torch.float64)
            y = 1.0 + 2.0 * torch.randn((n, 1), generator=g, dtype=torch.float64)
            errs.append(abs(sb.get_metric("w2")(x, y) - exact))
        errors.append(float(np.mean(errs)))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.05 * exact


def test_w2_in_2d_converges_to_the_bures_formula() -> None:
    p = GaussianLaw(torch.zeros(2, dtype=torch.float64), torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64))
    q = GaussianLaw(torch.tensor([2.0, 0.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64) * 0.5)
    exact = sb.gaussian_w2(p, q)
    errors = []
    for n in (200, 3200):
        errs = []
        for s in range(4):
            g = gen(s)
            x = p.mean + torch.randn((n, 2), generator=g, dtype=torch.float64) @ torch.linalg.cholesky(p.cov).T
            y = q.mean + torch.randn((n, 2), generator=g, dtype=torch.float64) @ torch.linalg.cholesky(q.cov).T
            errs.append(abs(sb.get_metric("w2")(x, y) - exact))
        errors.append(float(np.mean(errs)))
    # separated laws: the n^(-1/2) fluctuation dominates the upward bias
    assert errors[1] < 0.5 * errors[0]
    assert errors[1] < 0.05 * exact


def test_bures_w2_converges_to_the_bures_formula() -> None:
    target = sb.get_target("gaussian", dim=3, mean=[1.0, 0.0, -1.0], condition_number=5.0)
    f64 = torch.float64
    other = GaussianLaw(torch.tensor([0.0, 0.5, 0.0], dtype=f64), torch.diag(torch.tensor([2.0, 1.0, 0.3], dtype=f64)))
    exact = sb.gaussian_w2(other, GaussianLaw.of(target))
    mean, cov = target.moments()
    errs = []
    for n in (1000, 100_000):
        x = other.mean + torch.randn((n, 3), generator=gen(n), dtype=torch.float64) * other.cov.diagonal().sqrt()
        errs.append(abs(sb.get_metric("bures_w2")(x, mean, cov) - exact))
    assert errs[1] < errs[0] and errs[1] < 0.01


def test_sliced_w2_in_one_dimension_is_w2() -> None:
    g = gen(3)
    x = torch.randn((500, 1), generator=g, dtype=torch.float64)
    y = torch.rand((500, 1), generator=g, dtype=torch.float64)
    assert sb.get_metric("sliced_w2")(x, y) == pytest.approx(sb.get_metric("w2")(x, y), rel=1e-9)


def test_sinkhorn_divergence() -> None:
    g = gen(4)
    x = torch.randn((400, 1), generator=g, dtype=torch.float64)
    y = 1.5 + torch.randn((400, 1), generator=g, dtype=torch.float64)
    sink = sb.get_metric("sinkhorn", blur=0.05)
    assert sink(x, x) == pytest.approx(0.0, abs=1e-9)
    # small blur: close to W2^2 (here a pure shift, W2^2 = 1.5^2 up to sampling noise)
    assert sink(x, y) == pytest.approx(sb.get_metric("w2")(x, y) ** 2, rel=0.1)



def test_moment_errors() -> None:
    target = sb.get_target("gaussian", dim=2, mean=[1.0, 2.0], cov=[[1.0, 0.0], [0.0, 4.0]])
    mean, cov = target.moments()
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0], [1.0, 2.0]], dtype=torch.float64)  # mean (1, 2), cov diag(1, 4)
    assert sb.get_metric("mean_error")(x, mean, cov) == pytest.approx(0.0, abs=1e-12)
    assert sb.get_metric("cov_error")(x, mean, cov) == pytest.approx(math.sqrt(0.0 + 2 * 2.0**2), rel=1e-12)


def test_score_mse_of_oracles() -> None:
    process = sb.get_process("vp")
    oracle = sb.get_estimator("oracle").fit(RING, process)
    noisy = sb.get_estimator("noisy_oracle", eps=0.4).fit(RING, process)
    metric = sb.get_metric("score_mse", n_times=4)
    exact = metric.compute(oracle, RING, process, 200, gen(0))
    assert len(exact) == 4 and all(v == 0.0 for _, v in exact)
    assert all(v == pytest.approx(0.16, rel=1e-5) for _, v in metric.compute(noisy, RING, process, 200, gen(0)))
    times = [t for t, _ in exact]
    assert times == sorted(times) and times[-1] == pytest.approx(process.T)


def test_exact_w2_metric_is_the_exact_law() -> None:
    target = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0])
    process = sb.get_process("ou")
    score = sb.get_estimator("oracle").fit(target, process)
    sampler = sb.get_sampler("exponential_integrator")
    grid = sb.time_grid(process, 30)
    law = sb.exact_output_law(sampler, score, process, grid)
    assert sb.get_metric("exact_w2").compute(sampler, score, process, grid, target) == pytest.approx(
        sb.gaussian_w2(law, GaussianLaw.of(target))
    )
    assert sb.get_metric("exact_kl").compute(sampler, score, process, grid, target) == pytest.approx(
        sb.gaussian_kl(law, GaussianLaw.of(target))
    )


@pytest.mark.parametrize("name", ["w2", "sinkhorn"])
def test_capped_metrics_refuse_large_samples_and_name_alternatives(name: str) -> None:
    metric = sb.get_metric(name, max_samples=100)
    x = torch.zeros((101, 2))
    with pytest.raises(ValueError, match=r"capped at 100 samples, got 101; use sliced_w2"):
        metric(x, x)


def test_metric_registry() -> None:
    assert set(sb.list_metrics()) >= {
        "w2", "sliced_w2", "sinkhorn", "bures_w2", "mmd", "energy", "mean_error", "cov_error", "score_mse",
    }
    with pytest.raises(ValueError, match="unknown metric 'fid'; allowed: "):
        sb.get_metric("fid")
    with pytest.raises(ValueError, match="same d"):
        sb.get_metric("mmd")(torch.zeros(5, 2), torch.zeros(5, 3))
