"""Exact laws: Gaussian distances against independent formulas, step maps against the
closed-form table of docs/theory.md F.4, Bruno et al.'s example, and convergence orders."""

from __future__ import annotations

import itertools
import math

import numpy as np
import ot
import pytest
import scipy.linalg
import torch
from torch.distributions import MultivariateNormal, kl_divergence

import scorebench as sb
from scorebench.exact import GaussianLaw, affine_step_map

from .conftest import gen


def random_law(d: int, seed: int) -> GaussianLaw:
    g = gen(seed)
    m = torch.randn(d, generator=g, dtype=torch.float64)
    a = torch.randn((d, d), generator=g, dtype=torch.float64)
    return GaussianLaw(m, a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64))


# -- Gaussian distances ----------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 5, 12])
def test_w2_matches_scipy_sqrtm_and_pot(d: int) -> None:
    p, q = random_law(d, 1), random_law(d, 2)
    P, Q = p.cov.numpy(), q.cov.numpy()
    rq = scipy.linalg.sqrtm(Q).real
    w2sq = np.sum((p.mean - q.mean).numpy() ** 2) + np.trace(P + Q - 2 * scipy.linalg.sqrtm(rq @ P @ rq).real)
    assert sb.gaussian_w2(p, q) == pytest.approx(math.sqrt(w2sq), rel=1e-8)
    pot = ot.gaussian.bures_wasserstein_distance(p.mean.numpy(), q.mean.numpy(), P, Q)
    assert sb.gaussian_w2(p, q) == pytest.approx(float(pot), rel=1e-6)


def test_w2_commuting_case_and_metric_properties() -> None:
    lam1 = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    lam2 = torch.tensor([1.0, 1.0, 0.2], dtype=torch.float64)
    p = GaussianLaw(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.diag(lam1))
    q = GaussianLaw(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), torch.diag(lam2))
    expected = math.sqrt(5.0 + float(((lam1.sqrt() - lam2.sqrt()) ** 2).sum()))
    assert sb.gaussian_w2(p, q) == pytest.approx(expected, rel=1e-12)
    assert sb.gaussian_w2(q, p) == pytest.approx(expected, rel=1e-12)
    assert sb.gaussian_w2(p, p) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("d", [1, 3, 8])
def test_kl_matches_torch_distributions(d: int) -> None:
    p, q = random_law(d, 3), random_law(d, 4)
    ref = kl_divergence(MultivariateNormal(p.mean, p.cov), MultivariateNormal(q.mean, q.cov))
    assert sb.gaussian_kl(p, q) == pytest.approx(float(ref), rel=1e-10)
    assert sb.gaussian_kl(p, p) == pytest.approx(0.0, abs=1e-10)


# -- step maps against docs/theory.md F.4 ----------------------------------------------

LAM = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
MU = torch.tensor([1.5, -1.0, 0.5], dtype=torch.float64)
AXES = sb.get_target("gaussian", mean=MU.tolist(), cov=torch.diag(LAM).tolist())


def table_f4(key: str, process: sb.ForwardProcess, t: float, tn: float) -> tuple[torch.Tensor, ...]:
    """Per-direction (A, c, q) of one step, written from docs/theory.md F.4 for the exact score
    s = -a_t (x - b_t), a_t = 1/(alpha_t^2 lambda + sigma_t^2), b_t = alpha_t mu."""
    h = t - tn
    al, s2 = float(process.alpha(t)), float(process.sigma2(t))
    f, g2 = float(process.f(t)), float(process.g2(t))
    a, b = 1.0 / (al**2 * LAM + s2), al * MU
    one = torch.ones_like(LAM)
    beta_i = 1.0 - (float(process.alpha(t)) / float(process.alpha(tn))) ** 2  # discrete VP beta
    if key == "euler_maruyama":
        return 1 - h * f - h * g2 * a, h * g2 * a * b, g2 * h * one
    if key == "pf_ode_euler":
        return 1 - h * f - 0.5 * h * g2 * a, 0.5 * h * g2 * a * b, 0 * one
    if key == "exponential_integrator":  # VP: B = int_{t'}^{t} beta
        eB2 = math.exp(0.5 * float(process.B(t) - process.B(tn)))
        return eB2 - 2 * (eB2 - 1) * a, 2 * (eB2 - 1) * a * b, (eB2**2 - 1) * one
    if key == "reverse_diffusion":  # Song's reverse-diffusion predictor, VP
        return 2 - math.sqrt(1 - beta_i) - beta_i * a, beta_i * a * b, beta_i * one
    if key == "ddpm_upper":  # Song's ancestral predictor, VP
        r = math.sqrt(1 - beta_i)
        return (1 - beta_i * a) / r, beta_i * a * b / r, beta_i * one
    raise KeyError(key)


@pytest.mark.parametrize(
    ("key", "sampler"),
    [
        ("euler_maruyama", ("euler_maruyama", {})),
        ("pf_ode_euler", ("pf_ode", {"method": "euler"})),
        ("exponential_integrator", ("exponential_integrator", {})),
        ("reverse_diffusion", ("pc", {"corrector_steps": 0})),
        ("ddpm_upper", ("ddpm", {"variance": "upper"})),
    ],
)
@pytest.mark.parametrize("pname", ["vp", "ou"])
def test_step_map_matches_table(key: str, sampler: tuple, pname: str) -> None:
    process = sb.get_process(pname)
    smp = sb.get_sampler(sampler[0], **sampler[1])
    score = sb.get_estimator("oracle").fit(AXES, process)
    for t, tn in [(0.9 * process.T, 0.8 * process.T), (0.2 * process.T, 0.15 * process.T)]:
        step = affine_step_map(smp, score, process, t, tn)
        A, c, q = table_f4(key, process, t, tn)
        torch.testing.assert_close(step.A, torch.diag(A), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(step.c, c, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(step.B @ step.B.T, torch.diag(q), rtol=1e-10, atol=1e-12)


def test_langevin_corrector_composes_with_predictor() -> None:
    """pc with a fixed step: corrector map (1 - eps a, eps a b, 2 eps), then the predictor."""
    process, eps = sb.get_process("vp"), 0.01
    score = sb.get_estimator("oracle").fit(AXES, process)
    t, tn = 0.5, 0.45
    step = affine_step_map(sb.get_sampler("pc", step_size=eps), score, process, t, tn)
    al, s2 = float(process.alpha(t)), float(process.sigma2(t))
    a, b = 1.0 / (al**2 * LAM + s2), al * MU
    Ac, cc, qc = 1 - eps * a, eps * a * b, 2 * eps
    Ap, cp, qp = table_f4("reverse_diffusion", process, t, tn)
    torch.testing.assert_close(step.A, torch.diag(Ap * Ac))
    torch.testing.assert_close(step.c, Ap * cc + cp)
    torch.testing.assert_close(step.B @ step.B.T, torch.diag(Ap**2 * qc + qp))


def test_non_affine_steps_are_refused() -> None:
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(AXES, process)
    with pytest.raises(ValueError, match="not affine"):
        sb.exact_output_law(sb.get_sampler("pc"), score, process, 5)
    noisy = sb.get_estimator("noisy_oracle", eps=0.5).fit(AXES, process)
    with pytest.raises(ValueError, match="not affine"):
        sb.exact_output_law(sb.get_sampler("euler_maruyama"), noisy, process, 5)
    gmm_score = sb.get_estimator("oracle").fit(sb.get_target("gmm", preset="ring8"), process)
    with pytest.raises(ValueError, match="not affine"):
        sb.exact_output_law(sb.get_sampler("euler_maruyama"), gmm_score, process, 5)


def test_bias_noise_keeps_exact_laws_and_shifts_the_mean() -> None:
    """A constant score error e shifts the ODE output by an amount linear in e."""
    process = sb.get_process("ou")
    p_T = GaussianLaw.of(AXES.marginal(process, process.T))
    smp = sb.get_sampler("pf_ode", method="heun")
    laws = [
        sb.exact_output_law(
            smp, sb.get_estimator("noisy_oracle", eps=eps, kind="bias", seed=3).fit(AXES, process), process, 50, p_T
        )
        for eps in (0.0, 0.1, 0.2)
    ]
    torch.testing.assert_close(laws[2].mean - laws[0].mean, 2 * (laws[1].mean - laws[0].mean))
    torch.testing.assert_close(laws[1].cov, laws[0].cov)
    assert (laws[1].mean - laws[0].mean).norm() > 0.01


# -- Bruno et al. (docs/theory.md B.3) --------------------------------------------------

def test_bruno_recursion_is_reproduced() -> None:
    """EI on OU with the exact affine score -x + mu e^{-t}: the law follows
    m' = a m + 2(e^g - 1) mu e^{-(T - n g)}, v' = a^2 v + e^{2g} - 1, a = 2 - e^g."""
    d, T, K = 4, 3.0, 30
    mu = torch.tensor([1.0, -0.5, 2.0, 0.0], dtype=torch.float64)
    target = sb.get_target("gaussian_unknown_mean", dim=d, mean=mu.tolist())
    ou = sb.get_process("ou", T=T, t_min=0.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    law = sb.exact_output_law(sb.get_sampler("exponential_integrator"), score, ou, K)
    gam = T / K
    a, m, v = 2 - math.exp(gam), torch.zeros(d, dtype=torch.float64), 1.0
    for n in range(K):
        m = a * m + 2 * (math.exp(gam) - 1) * mu * math.exp(-(T - n * gam))
        v = a * a * v + math.exp(2 * gam) - 1
    torch.testing.assert_close(law.mean, m, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(law.cov, v * torch.eye(d, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_bruno_w2_is_half_gamma_root_d() -> None:
    """With exact theta and T = 10 (initialisation term ~ ||mu|| e^{-20}), W2 -> (gamma/2) sqrt(d)."""
    d = 10
    target = sb.get_target("gaussian_unknown_mean", dim=d)
    ou = sb.get_process("ou", T=10.0, t_min=0.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    ei = sb.get_sampler("exponential_integrator")
    ratios = []
    for gam in (0.1, 0.05, 0.025, 0.0125):
        law = sb.exact_output_law(ei, score, ou, round(10.0 / gam))
        ratios.append(sb.gaussian_w2(law, GaussianLaw.of(target)) / (gam / 2 * math.sqrt(d)))
    assert all(abs(r - 1) < 0.1 for r in ratios), ratios
    assert abs(ratios[-1] - 1) < 0.02
    assert all(abs(r1 - 1) < abs(r0 - 1) for r0, r1 in itertools.pairwise(ratios))


def test_bruno_w2_grows_like_root_d() -> None:
    ou = sb.get_process("ou", T=10.0, t_min=0.0)
    ei = sb.get_sampler("exponential_integrator")
    dims = [2, 4, 8, 16, 32]
    w = []
    for d in dims:
        target = sb.get_target("gaussian_unknown_mean", dim=d)
        law = sb.exact_output_law(ei, sb.get_estimator("oracle").fit(target, ou), ou, 400)
        w.append(sb.gaussian_w2(law, GaussianLaw.of(target)))
    assert np.polyfit(np.log(dims), np.log(w), 1)[0] == pytest.approx(0.5, abs=0.02)


# -- convergence orders -------------------------------------------------------------------

def fitted_slope(steps: list[int], errors: list[float]) -> tuple[float, float]:
    """Least-squares slope of log error on log steps, with its standard error."""
    x, y = np.log(steps), np.log(errors)
    (slope, _icpt), cov = np.polyfit(x, y, 1, cov=True) if len(x) > 3 else (np.polyfit(x, y, 1), None)
    return float(slope), float(np.sqrt(cov[0, 0])) if cov is not None else float("nan")


def w2_curve(sampler: sb.Sampler, process: sb.ForwardProcess, target: sb.Target, steps: list[int],
             exact_start: bool = True) -> list[float]:
    score = sb.get_estimator("oracle").fit(target, process)
    init = GaussianLaw.of(target.marginal(process, process.T)) if exact_start else None
    ref = GaussianLaw.of(target.marginal(process, process.t_min))
    return [sb.gaussian_w2(sb.exact_output_law(sampler, score, process, n, init), ref) for n in steps]


OU_TARGET = sb.get_target("gaussian", dim=10, condition_number=10.0, mean=[1.0] * 10)
STEPS = [100, 200, 400, 800]


@pytest.mark.parametrize("name", ["euler_maruyama", "exponential_integrator"])
def test_first_order_convergence_on_ou(name: str) -> None:
    """d = 10 Gaussian, OU, exact p_T start (no initialisation term): slope in [-1.15, -0.85]."""
    w = w2_curve(sb.get_sampler(name), sb.get_process("ou"), OU_TARGET, STEPS)
    slope, se = fitted_slope(STEPS, w)
    assert -1.15 <= slope <= -0.85, (slope, se, w)


def test_heun_is_steeper_than_euler() -> None:
    ou = sb.get_process("ou")
    euler, _ = fitted_slope(STEPS, w2_curve(sb.get_sampler("pf_ode", method="euler"), ou, OU_TARGET, STEPS))
    heun, _ = fitted_slope(STEPS, w2_curve(sb.get_sampler("pf_ode", method="heun"), ou, OU_TARGET, STEPS))
    assert -1.15 <= euler <= -0.85
    assert -2.2 <= heun <= -1.8
    assert heun < euler - 0.8


def test_science_f4_numbers_on_vp() -> None:
    """docs/theory.md F.4: VP, target N(1.5, 0.3), prior start: EM and EI slopes -1.01 over
    N = 25..1600; PF-ODE Euler plateaus near 5e-3 (the ODE keeps the prior's error)."""
    vp = sb.get_process("vp")
    target = sb.get_target("gaussian", mean=[1.5], cov=[[0.3]])
    steps = [25, 50, 100, 200, 400, 800, 1600]
    for name in ("euler_maruyama", "exponential_integrator"):
        slope, _ = fitted_slope(steps, w2_curve(sb.get_sampler(name), vp, target, steps, exact_start=False))
        assert slope == pytest.approx(-1.01, abs=0.03)
    ode = w2_curve(sb.get_sampler("pf_ode", method="euler"), vp, target, steps, exact_start=False)
    assert 3e-3 < ode[-1] < 7e-3 and abs(ode[-1] - ode[-2]) < 0.1 * ode[-1]


@pytest.mark.parametrize("variance", ["upper", "posterior"])
def test_ddpm_first_order_on_log_grid(variance: str) -> None:
    ou = sb.get_process("ou")
    grids = [sb.time_grid(ou, n, "log") for n in STEPS]
    smp = sb.get_sampler("ddpm", variance=variance)
    score = sb.get_estimator("oracle").fit(OU_TARGET, ou)
    init = GaussianLaw.of(OU_TARGET.marginal(ou, ou.T))
    ref = GaussianLaw.of(OU_TARGET.marginal(ou, ou.t_min))
    w = [sb.gaussian_w2(sb.exact_output_law(smp, score, ou, g, init), ref) for g in grids]
    slope, _ = fitted_slope(STEPS, w)
    assert -1.15 <= slope <= -0.85


def test_kl_vanishes_with_steps() -> None:
    ou = sb.get_process("ou")
    score = sb.get_estimator("oracle").fit(OU_TARGET, ou)
    init = GaussianLaw.of(OU_TARGET.marginal(ou, ou.T))
    ref = GaussianLaw.of(OU_TARGET.marginal(ou, ou.t_min))
    kls = [sb.gaussian_kl(sb.exact_output_law(sb.get_sampler("euler_maruyama"), score, ou, n, init), ref)
           for n in STEPS]
    assert all(k1 < k0 for k0, k1 in itertools.pairwise(kls))
    assert kls[-1] < 0.01


def test_langevin_flow_law_matches_the_matrix_exponential_solution() -> None:
    """Independent closed form of the Ornstein--Uhlenbeck moments for a start that does not commute
    with the target: m_t = mu + e^{-Pt}(m_0 - mu), C_t = e^{-Pt} C_0 e^{-Pt} + P^{-1}(I - e^{-2Pt})."""
    from scorebench.exact import langevin_flow_law

    d = 3
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    S, C0 = a @ a.T + 0.5 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    mu, m0 = rng.standard_normal(d), rng.standard_normal(d)
    target = GaussianLaw(torch.tensor(mu), torch.tensor(S))
    start = GaussianLaw(torch.tensor(m0), torch.tensor(C0))
    P = np.linalg.inv(S)
    for tau in (0.0, 0.3, 2.0, 40.0):
        E = scipy.linalg.expm(-P * tau)
        mean = mu + E @ (m0 - mu)
        cov = E @ C0 @ E.T + np.linalg.solve(P, np.eye(d) - scipy.linalg.expm(-2 * P * tau))
        law = langevin_flow_law(target, start, tau)
        assert np.allclose(law.mean.numpy(), mean, atol=1e-12)
        assert np.allclose(law.cov.numpy(), cov, atol=1e-10)
    # and the exact Gaussian JKO recursion with ever smaller steps tends to it (first order in h)
    pi = sb.get_target("gaussian", dim=d, condition_number=4.0, mean=[1.0, -1.0, 0.5])
    process = sb.get_process("ou")
    law_pi = GaussianLaw.of(pi.marginal(process, process.t_min))
    score = sb.get_estimator("oracle").fit(pi, process)
    flow = langevin_flow_law(law_pi, GaussianLaw.isotropic(d, 1.0), 2.0)
    errors = [sb.gaussian_w2(sb.exact_output_law(sb.get_sampler("jko_exact_gaussian", horizon=2.0), score, process,
                                                 k), flow) for k in (20, 40, 80)]
    assert errors[0] > errors[1] > errors[2]
    assert 1.8 < errors[0] / errors[1] < 2.2 and 1.8 < errors[1] / errors[2] < 2.2


def test_gaussian_law_sample_has_its_moments() -> None:
    law = GaussianLaw(torch.tensor([1.0, -2.0], dtype=torch.float64),
                      torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=torch.float64))
    n = 200_000
    x = law.sample(n, gen(3))
    z = (x.mean(0) - law.mean) / (law.cov.diagonal() / n).sqrt()
    assert float(z.abs().max()) < 4.5
    assert torch.allclose(torch.cov(x.T), law.cov, atol=0.02)
