"""The exact Gaussian JKO scheme against direct minimisation, contraction and KL decay."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import scorebench as sb
from scorebench.exact import GaussianLaw
from scorebench.samplers.jko_exact_gaussian import jko_gaussian_step
from scorebench.testing import check_sampler

from .conftest import gen


def _jko_objective(params: np.ndarray, pi: GaussianLaw, prev: GaussianLaw, h: float) -> float:
    m = torch.tensor(params[:2], dtype=torch.float64)
    L = torch.tensor([[math.exp(params[2]), 0.0], [params[3], math.exp(params[4])]], dtype=torch.float64)
    rho = GaussianLaw(m, L @ L.T)
    return sb.gaussian_kl(rho, pi) + sb.gaussian_w2(rho, prev) ** 2 / (2 * h)


@pytest.mark.parametrize("h", [0.1, 0.7])
def test_one_step_is_the_minimiser_of_the_jko_objective(h: float) -> None:
    """Direct numerical minimisation over all Gaussians (mean and full covariance) in 2-D."""
    lam = torch.tensor([0.5, 3.0], dtype=torch.float64)
    pi = GaussianLaw(torch.zeros(2, dtype=torch.float64), torch.diag(lam))
    m0, u0 = torch.tensor([1.5, -2.0], dtype=torch.float64), torch.tensor([2.0, 0.4], dtype=torch.float64)
    prev = GaussianLaw(m0, torch.diag(u0**2))
    res = minimize(_jko_objective, x0=np.array([0.0, 0.0, 0.0, 0.1, 0.0]), args=(pi, prev, h),
                   method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 40_000})
    m1, u1 = jko_gaussian_step(m0, u0, lam, h)
    L = np.array([[math.exp(res.x[2]), 0.0], [res.x[3], math.exp(res.x[4])]])
    np.testing.assert_allclose(res.x[:2], m1.numpy(), atol=1e-5)
    np.testing.assert_allclose(L @ L.T, torch.diag(u1**2).numpy(), atol=1e-5)


def _laws(sampler: sb.Sampler, score: sb.ScoreModel, process: sb.ForwardProcess, steps: int) -> list[GaussianLaw]:
    plan = sampler.begin(score, process, sb.time_grid(process, steps))
    mu, U = plan.mu, plan.U
    return [GaussianLaw(mu + U @ m, U @ torch.diag(u**2) @ U.T) for m, u in plan.laws]


def test_contraction_and_linear_log_kl() -> None:
    ou = sb.get_process("ou", T=20.0)
    target = sb.get_target("gaussian", dim=3, mean=[1.0, -1.0, 2.0], condition_number=4.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    pi = GaussianLaw.of(target.marginal(ou, ou.t_min))
    laws = _laws(sb.get_sampler("jko_exact_gaussian", horizon=None), score, ou, 40)
    h = (ou.T - ou.t_min) / 40
    lam_max = float(torch.linalg.eigvalsh(pi.cov).max())
    w2 = [sb.gaussian_w2(law, pi) for law in laws]
    factor = 1.0 / (1.0 + h / lam_max)
    resolved = [(a, b) for a, b in itertools.pairwise(w2) if b > 1e-5]  # above float64 Bures precision
    assert len(resolved) > 15
    assert all(b <= a * factor for a, b in resolved)
    kl = np.array([sb.gaussian_kl(law, pi) for law in laws])
    k = np.arange(len(kl))
    late = (k >= 8) & (kl > 1e-10)
    slope = np.polyfit(k[late], np.log(kl[late]), 1)[0]
    # KL ~ W2^2 falls like (1 + h / lam_max)^(-2k) once the slowest direction dominates
    assert slope == pytest.approx(-2 * math.log(1 + h / lam_max), rel=0.1)


def test_horizon_rescales_the_grid_into_step_sizes() -> None:
    """With ``horizon = H`` the steps are the grid spacings times ``H / span``: the recursion
    equals the closed form (E3 per eigen-direction) run with those step sizes."""
    vp = sb.get_process("vp")
    target = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0], condition_number=3.0)
    score = sb.get_estimator("oracle").fit(target, vp)
    grid = sb.time_grid(vp, 12, "quadratic")
    sampler = sb.get_sampler("jko_exact_gaussian", horizon=7.0)
    plan = sampler.begin(score, vp, grid)
    lam = plan.lam
    m = -(plan.mu @ plan.U)
    u = torch.full_like(lam, sampler.initial_std(vp))
    h = (grid[:-1] - grid[1:]) * 7.0 / float(grid[0] - grid[-1])
    assert float(h.sum()) == pytest.approx(7.0)
    for hk in h.tolist():
        m, u = m / (1 + hk / lam), (lam * u + torch.sqrt(lam**2 * u**2 + 4 * hk * lam * (hk + lam))) / (2 * (hk + lam))
    m_end, u_end = plan.laws[-1]
    torch.testing.assert_close(m_end, m)
    torch.testing.assert_close(u_end, u)
    for bad in (0.0, -1.0, True, "long"):
        with pytest.raises(ValueError, match=r"jko_particle: horizon must be a number in \(0, inf\) "
                           r"\(total JKO flow time\) or None \(the time grid's own spacings\), got "):
            sb.get_sampler("jko_particle", horizon=bad)


def test_passes_the_conformance_kit_and_matches_monte_carlo() -> None:
    assert check_sampler(sb.get_sampler("jko_exact_gaussian", horizon=None)).passed


def test_needs_a_gaussian_target_and_its_own_start() -> None:
    vp = sb.get_process("vp")
    gmm = sb.get_estimator("oracle").fit(sb.get_target("gmm", preset="ring8"), vp)
    with pytest.raises(ValueError, match="needs an affine score"):
        sb.get_sampler("jko_exact_gaussian", horizon=None).sample(gmm, vp, 10, 5, gen(0))
    gauss = sb.get_estimator("oracle").fit(sb.get_target("gaussian"), vp)
    with pytest.raises(ValueError, match="x_init is not allowed"):
        sb.get_sampler("jko_exact_gaussian", horizon=None).sample(gauss, vp, 10, 5, gen(0), x_init=torch.zeros(10, 2))


def _exact_and_particle_w2(bandwidth: float, debias: bool = False) -> tuple[list[float], list[float], float]:
    from scorebench.metrics.moments import empirical_moments

    ou = sb.get_process("ou", T=3.0)
    target = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0], condition_number=4.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    steps = 12
    laws = _laws(sb.get_sampler("jko_exact_gaussian", horizon=None), score, ou, steps)
    particle = sb.get_sampler("jko_particle", bandwidth=bandwidth, debias=debias, horizon=None)
    states: dict[int, torch.Tensor] = {}
    out = particle.sample(score, ou, 1000, steps, gen(0), dtype=torch.float64,
                          callback=lambda i, t, x, lo: states.__setitem__(i, x.clone()))
    w2 = [sb.gaussian_w2(GaussianLaw(*empirical_moments(states[i])), laws[i]) for i in range(1, steps + 1)]
    # the same statistic for exact draws of the final law: the Monte-Carlo floor
    g = gen(1)
    chol = torch.linalg.cholesky(laws[-1].cov)
    exact = laws[-1].mean + torch.randn((1000, 2), generator=g, dtype=torch.float64) @ chol.T
    floor = sb.gaussian_w2(GaussianLaw(*empirical_moments(exact)), laws[-1])
    assert out.nfe == steps * 51
    return w2, out.info["residuals"], floor


def test_particle_jko_tracks_the_exact_recursion() -> None:
    w2, residuals, floor = _exact_and_particle_w2(bandwidth=0.15)
    # tolerance: Monte-Carlo floor + the KDE smoothing bias (the fixed point has variance
    # lambda - b^2 per direction, a W2 gap of about b^2 / (2 sqrt(lambda)) <= 0.045 here)
    lam_min = 0.25
    bias = math.sqrt(lam_min) - math.sqrt(lam_min - 0.15**2)
    assert max(w2) < floor + bias + 0.02, (w2, floor, bias)
    assert max(residuals) < 1e-3  # the first-order condition is solved: Cheng et al.'s eps


def test_particle_jko_kde_bias_shrinks_with_the_bandwidth() -> None:
    """The KDE score is the score of rho smoothed by the kernel, so the fixed point has
    variance lambda - b^2: a wider kernel leaves a larger gap to the exact law."""
    wide, _, _ = _exact_and_particle_w2(bandwidth=0.35)
    narrow, _, _ = _exact_and_particle_w2(bandwidth=0.15)
    assert narrow[-1] < wide[-1]


def test_smoothed_target_score_is_the_score_of_pi_convolved_with_the_kernel() -> None:
    """For a Gaussian pi = N(m, C) the smoothed target is N(m, C + b^2 I), under every process."""
    from scorebench.samplers.jko_particle import smoothed_target_score

    target = sb.get_target("gaussian", dim=3, mean=[1.0, -2.0, 0.5], condition_number=5.0)
    x = torch.randn((50, 3), generator=gen(3), dtype=torch.float64)
    for name in ("vp", "ou", "ve", "subvp"):
        process = sb.get_process(name)
        pi = GaussianLaw.of(target.marginal(process, process.t_min))
        score = sb.get_estimator("oracle").fit(target, process)
        for b in (0.1, 0.7):
            cov = pi.cov + b**2 * torch.eye(3, dtype=torch.float64)
            expected = -torch.linalg.solve(cov, (x - pi.mean).T).T
            torch.testing.assert_close(smoothed_target_score(score, process, b)(x), expected, rtol=1e-6, atol=1e-8)


def test_debiased_particle_jko_removes_the_kde_bias() -> None:
    """Matching the KDE of the particles to pi smoothed by the same kernel puts the fixed point
    at pi itself: with a wide kernel the gap to the exact recursion falls to the Monte-Carlo
    floor, where the plain scheme keeps its b^2 bias."""
    plain, _, floor = _exact_and_particle_w2(bandwidth=0.35)
    debiased, residuals, _ = _exact_and_particle_w2(bandwidth=0.35, debias=True)
    assert debiased[-1] < floor + 0.02 < plain[-1], (debiased, plain, floor)
    assert max(residuals) < 1e-3


def test_particle_jko_declares_its_nature() -> None:
    sampler = sb.get_sampler("jko_particle")
    assert not sampler.affine and not sampler.batch_invariant
    with pytest.raises(ValueError,
                       match=r"jko_particle: damping must be a number in \(0, 1\] or None \(automatic\), got 0.0"):
        sb.get_sampler("jko_particle", damping=0.0)


_RUN_SUITE = """
[suite]
name = "jko_state"
seed = 3
device = "cpu"

[targets.gauss2]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]

[processes.ou]

[estimators.oracle]

[samplers.particle]
name = "jko_particle"
iterations = 3

[metrics]
bures_w2 = {}

[[grid]]
steps = [3, 4]
n_samples = [60]
seeds = SEEDS
metrics = ["bures_w2"]
"""


def test_a_suite_run_records_each_seeds_own_residuals(tmp_path: Path) -> None:
    """The runner reuses one sampler instance for every cell and seed: each seed's ``samples.jsonl`` record
    holds that run's residuals only (one per step), the same as in a run of that seed alone."""
    from scorebench.results import read_sample_records
    from scorebench.runner import run_suite
    from scorebench.suite import load_suite

    records = {}
    for label, seeds in (("both", "[0, 1]"), ("alone", "[1]")):
        path = tmp_path / f"{label}.toml"
        path.write_text(_RUN_SUITE.replace("SEEDS", seeds))
        run_suite(load_suite(path), tmp_path / label, progress=False)
        records[label] = {(r["steps"], r["seed"]): r["info"] for r in read_sample_records(tmp_path / label)}
    assert sorted(records["both"]) == [(3, 0), (3, 1), (4, 0), (4, 1)]
    for (steps, seed), info in records["both"].items():
        assert len(info["residuals"]) == steps and all(0 <= r < 1 for r in info["residuals"])
        if seed == 1:
            assert info == records["alone"][(steps, 1)]
    assert records["both"][(3, 0)] != records["both"][(3, 1)]
