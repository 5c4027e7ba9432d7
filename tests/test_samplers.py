"""Samplers: exact laws by Monte Carlo (z-tests), determinism, chunking, NFE, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import scorebench as sb
from scorebench.samplers import NoiseSource
from scorebench.samplers.noise import NOISE_BLOCK

from .conftest import gen

#: every affine configuration of every built-in sampler
AFFINE = {
    "euler_maruyama": {},
    "exponential_integrator": {},
    "pf_ode_euler": {"method": "euler"},
    "pf_ode_heun": {"method": "heun"},
    "ddpm_posterior": {"variance": "posterior"},
    "ddpm_upper": {"variance": "upper"},
    "pc_fixed_step": {"step_size": 2e-3, "corrector_steps": 2},
    "euler_maruyama_noise_removal": {"noise_removal": True},
}
ALL = {**AFFINE, "pc_snr_batch": {}}


def make(key: str) -> sb.Sampler:
    name = key
    for base in ("euler_maruyama", "exponential_integrator", "pf_ode", "ddpm", "pc"):
        if key.startswith(base):
            name = base
    return sb.get_sampler(name, **ALL[key])


TARGET = sb.get_target("gaussian", dim=3, mean=[1.0, -2.0, 0.5], condition_number=8.0)


@pytest.mark.parametrize("key", list(AFFINE))
def test_monte_carlo_agrees_with_exact_law(key: str, process: sb.ForwardProcess) -> None:
    """Empirical mean and covariance of 20k particles against the exact law: z-statistics
    with |z| < 4.5 (Bonferroni over all cells); a coarse grid (8 steps) makes the exact law
    differ clearly from the target, so the test has power (checked below)."""
    sampler = make(key)
    score = sb.get_estimator("oracle").fit(TARGET, process)
    n, steps = 20_000, 8
    x = sampler.sample(score, process, n, steps, gen(11), dtype=torch.float64).samples
    law = sb.exact_output_law(sampler, score, process, steps)
    d = law.dim
    z_mean = (x.mean(0) - law.mean) / (law.cov.diagonal() / n).sqrt()
    emp_cov = torch.cov(x.T)
    se_cov = ((law.cov**2 + torch.outer(law.cov.diagonal(), law.cov.diagonal())) / (n - 1)).sqrt()
    z_cov = (emp_cov - law.cov) / se_cov
    assert z_mean.abs().max() < 4.5, z_mean
    assert z_cov[torch.triu_indices(d, d).unbind()].abs().max() < 4.5, z_cov


def test_z_test_has_power() -> None:
    """The same statistics computed against the *target* reject it: an 8-step EM on VP is
    visibly biased, and the test above would notice a sampler that ignored its own steps."""
    process = sb.get_process("vp")
    sampler = sb.get_sampler("euler_maruyama")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    n = 20_000
    x = sampler.sample(score, process, n, 8, gen(11), dtype=torch.float64).samples
    ref = sb.GaussianLaw.of(TARGET.marginal(process, process.t_min))
    se_cov = ((ref.cov**2 + torch.outer(ref.cov.diagonal(), ref.cov.diagonal())) / (n - 1)).sqrt()
    assert ((torch.cov(x.T) - ref.cov) / se_cov).abs().max() > 10


def test_exact_start_from_p_T() -> None:
    process = sb.get_process("ou")
    sampler = sb.get_sampler("pf_ode", method="euler")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    p_T = TARGET.marginal(process, process.T)
    n = 20_000
    x0 = p_T.sample(n, gen(5), dtype=torch.float64)
    x = sampler.sample(score, process, n, 10, gen(6), x_init=x0).samples
    law = sb.exact_output_law(sampler, score, process, 10, init=sb.GaussianLaw.of(p_T))
    assert ((x.mean(0) - law.mean) / (law.cov.diagonal() / n).sqrt()).abs().max() < 4.5


@pytest.mark.parametrize("key", list(ALL))
def test_shapes_nfe_and_determinism(key: str, process: sb.ForwardProcess) -> None:
    sampler = make(key)
    score = sb.get_estimator("noisy_oracle", eps=0.1).fit(sb.get_target("gmm", preset="ring8"), process)
    out = sampler.sample(score, process, 300, 7, gen(1))
    assert out.samples.shape == (300, 2) and out.samples.dtype == torch.float32
    assert torch.isfinite(out.samples).all()
    assert out.steps == 7
    per_step = {"pf_ode_heun": 2, "pc_fixed_step": 3, "pc_snr_batch": 2}.get(key, 1)
    assert out.nfe == 7 * per_step
    again = sampler.sample(score, process, 300, 7, gen(1))
    assert torch.equal(out.samples, again.samples)
    other = sampler.sample(score, process, 300, 7, gen(2))
    assert not torch.equal(out.samples, other.samples)


@pytest.mark.parametrize("key", [k for k in ALL if k != "pc_snr_batch"])
def test_chunking_does_not_change_the_result(key: str) -> None:
    """Particle j's noise depends only on (seed, step, j): any chunking gives the same output.
    (pc with the SNR rule is excluded by design: its step size averages over the batch.)"""
    process = sb.get_process("vp")
    sampler = make(key)
    score = sb.get_estimator("oracle").fit(sb.get_target("gmm", preset="ring8"), process)
    n = NOISE_BLOCK + 500  # spans two noise blocks
    whole = sampler.sample(score, process, n, 6, gen(3), dtype=torch.float64)
    chunked = sampler.sample(score, process, n, 6, gen(3), dtype=torch.float64, chunk_size=333)
    torch.testing.assert_close(chunked.samples, whole.samples, rtol=1e-12, atol=1e-12)
    assert chunked.nfe == whole.nfe


def test_batch_snr_rule_is_song_et_al() -> None:
    """score_sde's Langevin step: eps = 2 a^2 (snr mean||z|| / mean||s||)^2 over the batch."""
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    sampler = sb.get_sampler("pc", corrector_steps=1)
    x = TARGET.marginal(process, 0.5).sample(400, gen(0), dtype=torch.float64)
    z = torch.randn((400, 2, 3), generator=gen(1), dtype=torch.float64)
    out = sampler.step(score, process, x, 0.5, 0.45, z)
    s = score(x, 0.5)
    a2 = float(process.alpha(0.45) / process.alpha(0.5)) ** -2
    eps = 2 * a2 * (0.16 * z[:, 0].norm(dim=1).mean() / s.norm(dim=1).mean()) ** 2
    x1 = x + eps * s + (2 * eps).sqrt() * z[:, 0]
    a, b2 = (float(v) for v in process.transition(0.45, 0.5))
    torch.testing.assert_close(out, (2 - a) * x1 + b2 * score(x1, 0.5) + math.sqrt(b2) * z[:, 1])


def test_common_random_numbers_across_samplers() -> None:
    """Samplers given the same seed start from the same initial noise."""
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    noise = NoiseSource.from_generator(gen(8), torch.float64)
    x_T = process.prior_std * noise.normal(0, 0, 50, (3,))
    grid = [process.T, process.T - 1e-12]  # one negligible step: the output is the initial state
    for name in ("euler_maruyama", "ddpm", "pf_ode"):
        out = sb.get_sampler(name).sample(score, process, 50, grid, gen(8), dtype=torch.float64)
        torch.testing.assert_close(out.samples, x_T, rtol=0, atol=1e-4)


def test_noise_source_slices_are_consistent() -> None:
    src = NoiseSource(123, dtype=torch.float64)
    full = src.normal(4, 0, 3000, (2, 3))
    assert full.shape == (3000, 2, 3)
    assert torch.equal(src.normal(4, 1000, 2100, (2, 3)), full[1000:2100])
    assert not torch.equal(src.normal(5, 0, 10, (2, 3)), full[:10])
    assert abs(full.mean().item()) < 0.03 and abs(full.std().item() - 1) < 0.03


def test_float_dtype_and_x_init_dtype() -> None:
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    sampler = sb.get_sampler("ddpm")
    x0 = torch.zeros((10, 3), dtype=torch.float64)
    assert sampler.sample(score, process, 10, 3, gen(0), x_init=x0).samples.dtype == torch.float64


# -- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": 10, "grid": -5}, "steps must be a positive integer"),
        ({"n": 10, "grid": 0}, "steps must be a positive integer"),
        ({"n": 10, "grid": True}, "steps must be a positive integer"),
        ({"n": 10, "grid": [0.1, 0.5]}, "strictly decreasing"),
        ({"n": 10, "grid": [1.0, 0.5, 0.0]}, r"outside \[t_min, T\]"),
        ({"n": 10, "grid": [2.0, 0.5]}, r"outside \[t_min, T\]"),
        ({"n": 10, "grid": [1.0]}, "at least 2 times"),
        ({"n": 10, "grid": [0.8, 0.1]}, "needs x_init"),
        ({"n": 10, "x_init": torch.zeros(10, 2)}, r"x_init must have shape \(n, 3\)"),
        ({"n": 10, "x_init": torch.zeros(9, 3)}, "x_init must have 10 rows"),
        ({"n": 10, "chunk_size": 0}, "chunk_size must be a positive integer"),
        ({"n": 10, "generator": 0}, "generator must be a torch.Generator"),
    ],
)
def test_bad_sample_arguments(kwargs: dict, match: str) -> None:
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    args = {"grid": 5, "generator": gen(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        sb.get_sampler("euler_maruyama").sample(score, process, **args)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("pf_ode", {"method": "rk4"}, "pf_ode: method must be one of 'euler', 'heun', got 'rk4'"),
        ("ddpm", {"variance": "learned"}, "ddpm: variance must be one of 'posterior', 'upper', got 'learned'"),
        ("pc", {"corrector_steps": -1}, r"pc: corrector_steps must be an integer in \[0, inf\), got -1"),
        ("pc", {"snr": 0.0}, r"pc: snr must be a number in \(0, inf\), got 0.0"),
        ("pc", {"step_size": -0.1}, r"pc: step_size must be a number in \(0, inf\) or None, got -0.1"),
    ],
)
def test_bad_sampler_parameters(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_sampler(name, **params)


def test_chunking_in_float32_agrees_to_rounding() -> None:
    process = sb.get_process("ve")
    score = sb.get_estimator("oracle").fit(sb.get_target("gmm", preset="gmm40"), process)
    sampler = sb.get_sampler("euler_maruyama")
    whole = sampler.sample(score, process, 1500, 20, gen(3)).samples
    chunked = sampler.sample(score, process, 1500, 20, gen(3), chunk_size=1024).samples
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-4)


def test_numpy_integer_steps_and_float_steps() -> None:
    import numpy as np

    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    assert sb.get_sampler("ddpm").sample(score, process, 5, np.int64(4), gen(0)).steps == 4
    with pytest.raises(ValueError, match=r"steps must be a positive integer, got 4\.0"):
        sb.get_sampler("ddpm").sample(score, process, 5, 4.0, gen(0))
