"""Forward processes against quadrature, autograd and the published defaults."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.integrate import quad

import scorebench as sb
from scorebench.processes import time_grid

from .conftest import gen

TIMES = [0.02, 0.3, 0.7, 0.95]


def _times(p: sb.ForwardProcess) -> list[float]:
    return [p.t_min + u * (p.T - p.t_min) for u in TIMES]


def test_defaults_match_score_sde() -> None:
    vp = sb.get_process("vp")
    assert (vp.beta_min, vp.beta_max, vp.T) == (0.1, 20.0, 1.0)
    # log alpha_t = -t^2 (beta_max - beta_min)/4 - t beta_min/2  (score_sde VPSDE.marginal_prob)
    assert float(vp.log_alpha(1.0)) == pytest.approx(-0.25 * 19.9 - 0.05, rel=1e-14)
    ve = sb.get_process("ve")
    assert (ve.sigma_min, ve.sigma_max) == (0.01, 50.0)
    assert float(ve.g2(0.3)) == pytest.approx((0.01 * 5000**0.3) ** 2 * 2 * math.log(5000), rel=1e-12)
    ou = sb.get_process("ou")
    assert float(ou.alpha(1.3)) == pytest.approx(math.exp(-1.3), rel=1e-14)
    assert float(ou.sigma2(1.3)) == pytest.approx(1 - math.exp(-2.6), rel=1e-14)
    assert (float(ou.f(0.4)), float(ou.g2(0.4))) == (-1.0, 2.0)


def test_drift_is_derivative_of_log_alpha(process: sb.ForwardProcess) -> None:
    t = torch.tensor(_times(process), dtype=torch.float64, requires_grad=True)
    (dlog,) = torch.autograd.grad(process.log_alpha(t).sum(), t)
    torch.testing.assert_close(dlog, process.f(t.detach()), rtol=1e-12, atol=1e-12)


def test_sigma2_solves_the_variance_ode(process: sb.ForwardProcess) -> None:
    """sigma_t^2 = alpha_t^2 int_0^t g^2/alpha^2 (docs/theory.md §0.2), by quadrature."""
    for t in _times(process):
        integral, _ = quad(
            lambda u: float(process.g2(u) / process.alpha(u) ** 2), 0.0, t, epsabs=0, epsrel=1e-12, limit=200
        )
        assert float(process.sigma2(t)) == pytest.approx(float(process.alpha(t)) ** 2 * integral, rel=1e-9)


def test_ei_integral_by_quadrature(process: sb.ForwardProcess) -> None:
    for t in _times(process):
        integral, _ = quad(lambda u: float(process.g2(u) / process.alpha(u)), 0.0, t,
                           epsabs=0, epsrel=1e-12, limit=200)
        assert float(process.G(t)) == pytest.approx(integral, rel=1e-9)


def test_exponential_integrator_coefficients_by_quadrature(process: sb.ForwardProcess) -> None:
    """Reverse linear SDE with frozen score: c = int (alpha_s/alpha_u) g^2, q = int (alpha_s/alpha_u)^2 g^2."""
    ts = _times(process)
    for s, t in itertools.pairwise(ts):
        A, c, q = (float(v) for v in process.exponential_integrator(t, s))
        a_s = float(process.alpha(s))
        def kernel(u: float, power: int, a_s: float = a_s) -> float:
            return (a_s / float(process.alpha(u))) ** power * float(process.g2(u))

        c_ref, _ = quad(kernel, s, t, args=(1,), epsrel=1e-12)
        q_ref, _ = quad(kernel, s, t, args=(2,), epsrel=1e-12)
        assert A == pytest.approx(a_s / float(process.alpha(t)), rel=1e-12)
        assert c == pytest.approx(c_ref, rel=1e-8)
        assert q == pytest.approx(q_ref, rel=1e-8)


def test_ou_exponential_integrator_is_bruno_b2() -> None:
    ou = sb.get_process("ou")
    h = 0.1
    A, c, q = (float(v) for v in ou.exponential_integrator(1.0, 1.0 - h))
    assert (A, c, q) == pytest.approx((math.exp(h), 2 * (math.exp(h) - 1), math.exp(2 * h) - 1), rel=1e-12)


def test_transition_composes_marginals(process: sb.ForwardProcess) -> None:
    """X_t = a X_s + b Z with X_s = alpha_s X_0 + sigma_s Z' gives alpha_t and sigma_t^2."""
    ts = _times(process)
    for s, t in itertools.pairwise(ts):
        a, b2 = (float(v) for v in process.transition(s, t))
        assert a * float(process.alpha(s)) == pytest.approx(float(process.alpha(t)), rel=1e-12)
        assert a * a * float(process.sigma2(s)) + b2 == pytest.approx(float(process.sigma2(t)), rel=1e-10)
        assert b2 > 0


def test_subvp_std_is_one_minus_alpha_squared() -> None:
    p = sb.get_process("subvp")
    for t in TIMES:
        assert float(p.sigma(t)) == pytest.approx(1 - float(p.alpha(t)) ** 2, rel=1e-12)


def test_noise_level_inverse(process: sb.ForwardProcess) -> None:
    t = torch.tensor(_times(process), dtype=torch.float64)
    back = process.t_from_noise_level(process.noise_level(t))
    torch.testing.assert_close(back, t, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["uniform", "quadratic", "karras", "log"])
def test_time_grids(process: sb.ForwardProcess, kind: str) -> None:
    grid = time_grid(process, 12, kind)
    assert grid.shape == (13,) and grid.dtype == torch.float64
    assert grid[0] == process.T and grid[-1] == process.t_min
    assert (grid[1:] < grid[:-1]).all()
    u = torch.arange(13, dtype=torch.float64) / 12
    if kind == "uniform":
        torch.testing.assert_close(grid, process.T - u * (process.T - process.t_min))
    elif kind == "quadratic":
        steps = grid[:-1] - grid[1:]
        assert (steps[1:] < steps[:-1]).all()  # denser towards t_min
    elif kind == "log":
        ratios = grid[1:] / grid[:-1]
        torch.testing.assert_close(ratios, ratios[0].expand_as(ratios))
    else:  # Karras et al. 2022, eq. (5), in noise level sigma_t/alpha_t
        s_hi, s_lo = float(process.noise_level(process.T)), float(process.noise_level(process.t_min))
        expected = (s_hi ** (1 / 7) + u * (s_lo ** (1 / 7) - s_hi ** (1 / 7))) ** 7
        torch.testing.assert_close(process.noise_level(grid), expected, rtol=1e-9, atol=1e-12)


def test_prior_sample_is_seeded(process: sb.ForwardProcess) -> None:
    a = process.prior_sample(500, 3, gen(1))
    b = process.prior_sample(500, 3, gen(1))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(process.prior_std, rel=0.1)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("vp", {"T": 1.0, "t_min": 1.0}, "vp: t_min must be below T = 1.0, got 1.0"),
        ("vp", {"t_min": -0.1}, r"vp: t_min must be a number in \[0, inf\), got -0.1"),
        ("vp", {"beta_min": 0.0}, r"vp: beta_min must be a number in \(0, inf\), got 0.0"),
        ("ve", {"sigma_min": 2.0, "sigma_max": 1.0}, "ve: sigma_max must be above sigma_min = 2.0, got 1.0"),
        ("ou", {"T": float("inf")}, r"ou: T must be a number in \(0, inf\), got inf"),
    ],
)
def test_bad_process_parameters(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_process(name, **params)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_step_counts(steps: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        time_grid(sb.get_process("vp"), steps)  # type: ignore[arg-type]


def test_bad_grid_kind_and_time() -> None:
    vp = sb.get_process("vp")
    with pytest.raises(ValueError, match="allowed: uniform, quadratic, karras, log"):
        time_grid(vp, 10, "cosine")
    with pytest.raises(ValueError, match=r"outside \[t_min, T\]"):
        vp.check_time(1.5)
    with pytest.raises(ValueError, match=r"outside \[t_min, T\]"):
        vp.check_time(0.0)
    with pytest.raises(ValueError, match="t_min > 0"):
        time_grid(sb.get_process("ou", t_min=0.0), 5, "log")
    with pytest.raises(ValueError, match="t_min > 0"):
        time_grid(sb.get_process("ou", t_min=0.0), 5, "karras")
