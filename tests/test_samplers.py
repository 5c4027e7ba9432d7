"""Samplers: exact laws by Monte Carlo (z-tests), determinism, chunking, NFE, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

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


# -- run state: a sampler instance holds its settings only ---------------------------------

#: small settings of every registered sampler, so that each runs in well under a second
QUICK = {"jko_flow": {"iterations": 3, "n_train": 64, "batch_size": 32, "width": 4},
         "jko_particle": {"iterations": 3}, "pc_finite_horizon": {"corrector_steps": 3}}
#: two runs that differ in seed, grid, chunking and dtype
RUNS = ({"grid": 5, "seed": 1}, {"grid": "quadratic7", "seed": 2, "chunk_size": 24, "dtype": torch.float64})
GAUSS2 = sb.get_target("gaussian", dim=2, mean=[1.0, -0.5], condition_number=3.0)


def _snapshot(obj: object) -> object:
    """A deep copy of what an instance holds, nested samplers included (compared with :func:`_same`)."""
    import copy

    return {k: _snapshot(v) if isinstance(v, sb.Sampler) else copy.deepcopy(v) for k, v in vars(obj).items()}


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def _run(sampler: sb.Sampler, process: sb.ForwardProcess, score: sb.ScoreModel, run: dict) -> sb.SampleResult:
    grid = sb.time_grid(process, 7, "quadratic") if run["grid"] == "quadratic7" else run["grid"]
    return sampler.sample(score, process, 48, grid, gen(run["seed"]), chunk_size=run.get("chunk_size"),
                          dtype=run.get("dtype", torch.float32))


def _state_on_self(make: Callable[[], sb.Sampler]) -> tuple[bool, bool]:
    """``(mutated, differs)``: whether running one instance twice (different seeds and grids) changed
    what the instance holds, and whether its results (samples, NFE, info) on the runs and on a repeat of
    the first differ from those of a fresh instance per run."""
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(GAUSS2, process)
    reused = make()
    before = _snapshot(reused)
    results = [_run(reused, process, score, run) for run in RUNS]
    mutated = not _same(_snapshot(reused), before)
    results.append(_run(reused, process, score, RUNS[0]))
    fresh = [_run(make(), process, score, run) for run in (*RUNS, RUNS[0])]
    differs = not all(torch.equal(a.samples, b.samples) and a.nfe == b.nfe and _same(a.info, b.info)
                      for a, b in zip(results, fresh, strict=True))
    return mutated, differs


@pytest.mark.parametrize("name", sb.SAMPLERS.names())
def test_no_registered_sampler_keeps_run_state_on_itself(name: str) -> None:
    """One instance runs any number of times: ``vars(sampler)`` is unchanged by runs on two seeds and grids,
    and the reused instance gives bit-identical samples, NFE and info to a fresh instance per run."""
    assert _state_on_self(lambda: sb.get_sampler(name, **QUICK.get(name, {}))) == (False, False)


@pytest.mark.parametrize("name", sb.SAMPLERS.names())
def test_no_registered_sampler_overrides_sample(name: str) -> None:
    """Diagnostics and results leave through the run state, so no sampler needs its own ``sample``."""
    assert type(sb.get_sampler(name, **QUICK.get(name, {}))).sample is sb.Sampler.sample


class _CountsRunsOnSelf(sb.Sampler):
    """Wrong: records each run's seed on the instance (the results do not change)."""

    noise_per_step = 1

    def __init__(self) -> None:
        super().__init__()
        self.seeds: list[int] = []

    def begin(self, score, process, grid, *, seed=0):  # type: ignore[no-untyped-def]
        self.seeds.append(seed)

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        return sb.get_sampler("euler_maruyama").step(score, process, x, t, t_next, noise)


class _CountsRunsOnClass(sb.Sampler):
    """Wrong: a run counter outside the instance scales the output, so a second run differs."""

    noise_per_step = 1
    runs = 0

    def begin(self, score, process, grid):  # type: ignore[no-untyped-def]
        type(self).runs += 1

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        x = sb.get_sampler("euler_maruyama").step(score, process, x, t, t_next, noise)
        return x * (1.0 + type(self).runs) if t_next == process.t_min else x


def test_the_run_state_check_catches_state_kept_elsewhere() -> None:
    """The check above fails a sampler that writes on ``self`` during a run, and one whose runs leak into
    each other through state the instance does not hold."""
    assert _state_on_self(_CountsRunsOnSelf) == (True, False)
    assert _state_on_self(_CountsRunsOnClass) == (False, True)


def test_run_state_reaches_the_steps_and_the_result() -> None:
    """``begin``'s state is passed to each step that names ``state``, with the run's noise seed when
    ``begin`` names ``seed`` (the seed :class:`NoiseSource` draws from the generator) and ``x_init``;
    ``state.info()`` is ``SampleResult.info`` and the state is ``SampleResult.state``."""

    @dataclass
    class Log(sb.samplers.RunState):
        seed: int
        from_prior: bool
        times: list[float] = field(default_factory=list)

        def info(self) -> dict:
            return {"seed": self.seed, "steps_seen": len(self.times)}

    class Logged(sb.Sampler):
        noise_per_step = 1

        def begin(self, score, process, grid, *, seed=0, x_init=None):  # type: ignore[no-untyped-def]
            return Log(seed, x_init is None)

        def step(self, score, process, x, t, t_next, noise, *, state):  # type: ignore[no-untyped-def]
            state.times.append(t)
            return sb.get_sampler("euler_maruyama").step(score, process, x, t, t_next, noise)

    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    out = Logged().sample(score, process, 30, 4, gen(3), chunk_size=20)
    assert isinstance(out.state, Log) and out.state.from_prior
    assert out.state.seed == NoiseSource.from_generator(gen(3)).seed
    assert out.state.times == 2 * sb.time_grid(process, 4)[:-1].tolist()  # two chunks, four steps each
    assert out.info == {"seed": out.state.seed, "steps_seen": 8}
    em = sb.get_sampler("euler_maruyama").sample(score, process, 30, 4, gen(3))
    assert torch.equal(out.samples, em.samples)
    assert not Logged().sample(score, process, 30, 4, gen(3), x_init=em.samples).state.from_prior


def test_samplers_written_against_the_plain_contract_still_run() -> None:
    """A ``step`` without ``state`` and a ``begin`` returning None (the contract before run states) run as
    before, with an empty state and info; a ``begin`` returning anything else is refused by name."""

    class Plain(sb.Sampler):
        noise_per_step = 1

        def begin(self, score, process, grid):  # type: ignore[no-untyped-def]
            return None

        def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
            return sb.get_sampler("euler_maruyama").step(score, process, x, t, t_next, noise)

    class ReturnsADict(Plain):
        def begin(self, score, process, grid):  # type: ignore[no-untyped-def]
            return {"plan": []}

    process = sb.get_process("ou")
    score = sb.get_estimator("oracle").fit(TARGET, process)
    out = Plain().sample(score, process, 30, 4, gen(1))
    assert torch.equal(out.samples, sb.get_sampler("euler_maruyama").sample(score, process, 30, 4, gen(1)).samples)
    assert out.info == {} and type(out.state) is sb.samplers.RunState
    with pytest.raises(ValueError, match=r"sampler 'returnsadict': begin must return a .*RunState or None, got dict"):
        ReturnsADict().sample(score, process, 30, 4, gen(1))


def test_a_planned_step_without_its_state_is_refused() -> None:
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(GAUSS2, process)
    sampler = sb.get_sampler("jko_exact_gaussian")
    x = torch.zeros((5, 2))
    with pytest.raises(ValueError, match=r"needs the JKOExactGaussianState its begin returns \(got no state"):
        sampler.step(score, process, x, process.T, 0.5, None)
    plan = sampler.begin(score, process, sb.time_grid(process, 2))
    assert sampler.step(score, process, x, process.T, 0.5, None, state=plan).shape == (5, 2)
