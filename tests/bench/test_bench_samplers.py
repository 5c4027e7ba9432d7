"""Micro-benchmarks of sampler steps and of a full sampling run, with the accuracy of the timed
output against the exact Gaussian laws it should follow."""

from __future__ import annotations

import functools

import pytest
import torch

import scorebench as sb
from scorebench.samplers import NoiseSource
from scorebench.timing import sync_perf_counter

from .conftest import SEED, gen, record

D, N, DTYPE = 4, 4096, torch.float32
T_FROM = 0.5
#: label -> (registered sampler, parameters)
STEP_SAMPLERS = {
    "euler_maruyama": ("euler_maruyama", {}),
    "exponential_integrator": ("exponential_integrator", {}),
    "pf_ode_heun": ("pf_ode", {"method": "heun"}),
    "ddpm": ("ddpm", {}),
}
BENCH = {"timer": sync_perf_counter, "warmup": True, "warmup_iterations": 3}


@functools.cache
def cell() -> tuple[sb.Target, sb.ForwardProcess, sb.ScoreModel]:
    target = sb.get_target("gaussian", dim=D, mean=[1.0] * D, condition_number=10.0)
    process = sb.get_process("vp")
    return target, process, sb.get_estimator("oracle").fit(target, process)


def bures_to(x: torch.Tensor, law: sb.Target) -> float:
    """Bures W2 between the empirical moments of ``x`` and the exact moments of ``law``."""
    mean, cov = law.moments()
    return sb.get_metric("bures_w2")(x, mean, cov)


@pytest.mark.benchmark(group="sampler-step", **BENCH)
@pytest.mark.parametrize("name", list(STEP_SAMPLERS))
def test_sampler_step(benchmark, device: str, name: str) -> None:
    """One step from t = 0.5 to the next point of a 100-step grid, starting from exact draws of
    ``p_t``; accuracy: Bures W2 of the output's moments to the exact marginal ``p_{t_next}``
    (one step's discretisation error plus the Monte-Carlo error of the moments)."""
    target, process, score = cell()
    registered, params = STEP_SAMPLERS[name]
    sampler = sb.get_sampler(registered, **params)
    grid = sb.time_grid(process, 100)
    t = float(grid[grid >= T_FROM][-1])
    t_next = float(grid[grid < t][0])
    noise = NoiseSource(SEED, device, DTYPE)
    x = target.marginal(process, t).sample(N, gen(device), dtype=DTYPE)
    m = sampler.noise_slots(2)
    z = noise.normal(2, 0, N, (m, D)) if m > 0 else None
    out = benchmark(sampler.step, score, process, x, t, t_next, z)
    assert out.shape == (N, D) and out.device.type == device
    record(benchmark, device=device, n=N, d=D, dtype=DTYPE, t=t, t_next=t_next,
           accuracy=bures_to(out, target.marginal(process, t_next)),
           accuracy_metric="bures_w2(output moments, exact p_{t_next})")


@pytest.mark.benchmark(group="sampling-run", **BENCH)
def test_sampling_run(benchmark, device: str) -> None:
    """A full 50-step exponential-integrator run from the prior; accuracy: Bures W2 of the output's
    moments to the target, beside the exact W2 of the sampler's output law (no Monte Carlo)."""
    target, process, score = cell()
    sampler = sb.get_sampler("exponential_integrator")
    out = benchmark(lambda: sampler.sample(score, process, N, 50, gen(device)).samples)
    exact = sb.get_metric("exact_w2").compute(sampler, score, process, sampler.resolve_grid(process, 50), target)
    record(benchmark, device=device, n=N, d=D, dtype=DTYPE, steps=50,
           accuracy=bures_to(out, target), accuracy_metric="bures_w2(output moments, target)",
           exact_w2_of_output_law=exact)
