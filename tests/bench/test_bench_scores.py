"""Micro-benchmarks of score evaluation, with the error of the timed output against the exact
score computed independently (autograd of the diffused mixture's closed-form log-density)."""

from __future__ import annotations

import functools

import pytest
import torch

import scorebench as sb
from scorebench.timing import sync_perf_counter

from .conftest import gen, record

D, N, DTYPE, T = 4, 4096, torch.float32, 0.5
#: label -> (registered estimator, parameters on top of its declared test parameters)
ESTIMATORS = {
    "oracle": ("oracle", {}),
    "lipschitz_affine": ("lipschitz", {"family": "affine"}),
    "mlp_dsm": ("mlp_dsm", {}),
}


@functools.cache
def cell() -> tuple[sb.Target, sb.ForwardProcess]:
    return sb.get_target("gmm", preset="random", dim=D, n_components=3, seed=0), sb.get_process("vp")


def estimator(label: str) -> sb.Estimator:
    """Estimator ``label`` at its declared test parameters with the table's on top."""
    name, params = ESTIMATORS[label]
    return sb.get_estimator(name, **{**sb.ESTIMATORS.factory(name).test_params_for(params), **params})


@functools.cache
def fitted(device: str, label: str) -> sb.ScoreModel:
    target, process = cell()
    return estimator(label).fit(target, process, gen(device, 100))


def autograd_score(target: sb.Target, process: sb.ForwardProcess, x: torch.Tensor, t: float) -> torch.Tensor:
    """``grad_x log p_t(x)`` by autograd of the marginal's log-density, in float64."""
    xr = x.detach().double().requires_grad_(True)
    (grad,) = torch.autograd.grad(target.marginal(process, t).log_prob(xr).sum(), xr)
    return grad


@pytest.mark.benchmark(group="score-eval", timer=sync_perf_counter, warmup=True, warmup_iterations=5)
@pytest.mark.parametrize("label", list(ESTIMATORS))
def test_score_eval(benchmark, device: str, label: str) -> None:
    """``model(x, t)`` on exact draws of ``p_t`` of a 3-mode mixture; accuracy: relative MSE
    ``E||s(x) - grad log p_t(x)||^2 / E||grad log p_t(x)||^2`` against the autograd truth."""
    target, process = cell()
    model = fitted(device, label)
    x = target.marginal(process, T).sample(N, gen(device, 1), dtype=DTYPE)
    out = benchmark(model, x, T)
    assert out.shape == (N, D) and out.device.type == device
    truth = autograd_score(target, process, x, T)
    rel = float((out.double() - truth).pow(2).sum(1).mean() / truth.pow(2).sum(1).mean())
    record(benchmark, device=device, n=N, d=D, dtype=DTYPE, t=T, estimator=estimator(label).describe(),
           accuracy=rel, accuracy_metric="relative MSE vs autograd score")
