"""Pedrotti, Maas & Mondelli's finite-horizon predictor-corrector."""

from __future__ import annotations

import itertools

import pytest
import torch

import scorebench as sb
from scorebench.exact import GaussianLaw
from scorebench.testing import check_sampler

from .conftest import gen


@pytest.mark.parametrize(("predictor", "step"), [("ei", 0.03), ("em", 0.03), ("ode_heun", 1e-3)])
def test_passes_the_conformance_kit(predictor: str, step: float) -> None:
    """An ODE predictor carries the corrector's O(step) bias to t_min, so it converges only with a small
    corrector step (test_testing shows the plateau at the default step)."""
    sampler = sb.get_sampler("pc_finite_horizon", predictor=predictor, corrector_steps=10, corrector_step_size=step)
    assert check_sampler(sampler).passed


def test_finite_horizon_suffices_with_the_corrector() -> None:
    """Exact laws, OU with T = 8, exact score: with the Langevin corrector at T1 the error is
    flat in T1 already for T1 = 0.5; without it the initialisation error needs T1 ~ 4."""
    ou = sb.get_process("ou", T=8.0)
    target = sb.get_target("gaussian", dim=4, mean=[3.0] * 4, condition_number=4.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    ref = GaussianLaw.of(target.marginal(ou, ou.t_min))

    def w2(T1: float, corrector_steps: int) -> float:
        sampler = sb.get_sampler("pc_finite_horizon", T1=T1, corrector_steps=corrector_steps, corrector_step_size=0.05)
        return sb.gaussian_w2(sb.exact_output_law(sampler, score, ou, 400), ref)

    with_corrector = [w2(T1, 300) for T1 in (0.5, 1.0, 2.0)]
    without = [w2(T1, 0) for T1 in (0.5, 1.0, 2.0, 4.0)]
    assert max(with_corrector) < 0.01 and max(with_corrector) < 2 * min(with_corrector)
    assert without[0] > 1.0 and all(b < a for a, b in itertools.pairwise(without))
    assert without[-1] < 2 * min(with_corrector) + 0.02  # a long horizon catches up


def test_grid_is_mapped_onto_the_finite_horizon() -> None:
    ou = sb.get_process("ou")
    sampler = sb.get_sampler("pc_finite_horizon", T1=2.0)
    grid = sampler.resolve_grid(ou, sb.time_grid(ou, 10, "quadratic"))
    assert grid.shape == (11,) and grid[0] == 2.0 and grid[-1] == ou.t_min
    full = sb.time_grid(ou, 10, "quadratic")
    ratio = (grid[:-1] - grid[1:]) / (full[:-1] - full[1:])
    torch.testing.assert_close(ratio, ratio[0].expand_as(ratio))  # the grid's shape is kept


def test_nfe_and_denoising() -> None:
    ou = sb.get_process("ou")
    target = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0])
    score = sb.get_estimator("oracle").fit(target, ou)
    out = sb.get_sampler("pc_finite_horizon", corrector_steps=25).sample(score, ou, 100, 40, gen(0))
    assert out.nfe == 25 + 40
    heun = sb.get_sampler("pc_finite_horizon", corrector_steps=25, predictor="ode_heun", denoise=True)
    assert heun.sample(score, ou, 100, 40, gen(0)).nfe == 25 + 2 * 40 + 1
    # Tweedie's denoiser is affine; from t_min = 0.2 its output law has the target's mean and
    # the smaller covariance of E[X_0 | X_t]
    ou = sb.get_process("ou", t_min=0.2)
    score = sb.get_estimator("oracle").fit(target, ou)
    law = sb.exact_output_law(sb.get_sampler("pc_finite_horizon", denoise=True), score, ou, 400)
    mean, cov = target.moments()
    torch.testing.assert_close(law.mean, mean, atol=0.02, rtol=0)
    assert torch.linalg.eigvalsh(cov - law.cov).min() > 0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"T1": 0.0}, r"pc_finite_horizon: T1 must be a number in \(0, inf\) or one of 'T', got 0\.0"),
        ({"corrector_steps": -1}, r"pc_finite_horizon: corrector_steps must be an integer in \[0, inf\), got -1"),
        ({"corrector_step_size": 0}, r"pc_finite_horizon: corrector_step_size must be a number in \(0, inf\), got 0"),
        ({"predictor": "rk4"},
         r"pc_finite_horizon: predictor must be one of 'ei', 'em', 'ode_euler', 'ode_heun', got 'rk4'"),
        ({"denoise": "yes"}, "denoise must be true or false"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_sampler("pc_finite_horizon", **params)


def test_horizon_beyond_the_process() -> None:
    vp = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(sb.get_target("gaussian"), vp)
    with pytest.raises(ValueError, match=r"T1 = 3.0 must lie in \(t_min, T\]"):
        sb.get_sampler("pc_finite_horizon", T1=3.0).sample(score, vp, 10, 5, gen(0))


def test_horizon_from_the_process() -> None:
    """``T1 = "T"`` is the process's horizon: the same output as the number, on two processes."""
    target = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0])
    for T in (0.5, 2.0):
        ou = sb.get_process("ou", T=T)
        score = sb.get_estimator("oracle").fit(target, ou)
        from_process = sb.get_sampler("pc_finite_horizon", T1="T", corrector_steps=5)
        explicit = sb.get_sampler("pc_finite_horizon", T1=T, corrector_steps=5)
        assert from_process.start_time(ou) == T
        torch.testing.assert_close(
            from_process.sample(score, ou, 50, 20, gen(1)).samples, explicit.sample(score, ou, 50, 20, gen(1)).samples
        )
    other = sb.get_sampler("pc_finite_horizon", T1=1.0, corrector_steps=5)  # a different horizon differs
    assert not torch.allclose(
        other.sample(score, ou, 50, 20, gen(1)).samples, from_process.sample(score, ou, 50, 20, gen(1)).samples
    )


@pytest.mark.parametrize("T1", ["t", "inf", -1.0])
def test_horizon_rejects_other_values(T1: object) -> None:
    with pytest.raises(sb.params.ParameterError, match="T1"):
        sb.get_sampler("pc_finite_horizon", T1=T1)
