"""``score_jacobian``: the score model's Lipschitz constant in ``x`` per time (Mooney et al. 2024).

Truths: the Gaussian closed form ``L(t) = 1 / (alpha_t^2 lambda_min + sigma_t^2)``, the exact mixture
Hessian (``GaussianMixture.hessian``, itself checked against autograd of ``log_prob`` in
test_hessian.py), a linear score model whose Jacobian is its matrix, and the two-atom midpoint
value ``alpha_t^2 D^2 / (4 sigma_t^4) - 1 / sigma_t^2``.
"""

from __future__ import annotations

import math

import pytest
import torch

import scorebench as sb
from scorebench.estimators.oracle import OracleScore
from scorebench.estimators.training import LearnedScore, TrainingRecord
from scorebench.metrics import METRICS, MetricContext
from scorebench.metrics.jacobian import (
    ScoreJacobian,
    autograd_jacobian,
    component_midpoints,
    operator_norms,
    score_jacobian,
)
from scorebench.metrics.score import log_spaced_times
from scorebench.targets.mixture import GaussianMixture


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _context(target, process, score, n: int = 300) -> MetricContext:
    x = torch.zeros(n, target.dim)
    return MetricContext(x=x, y1=x.double(), y2=x.double(), target=target, process=process, score=score,
                         generator=lambda: gen(3), n_samples=n)


def _gaussian_truth(process, t: float, lam_min: float) -> float:
    return 1.0 / (float(process.alpha(t)) ** 2 * lam_min + float(process.sigma2(t)))


@pytest.mark.parametrize("process_name", ["ou", "vp", "ve"])
def test_gaussian_matches_the_closed_form_at_every_time(process_name: str) -> None:
    cov = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, 0.01], [0.0, 0.01, 0.02]], dtype=torch.float64)
    target = sb.get_target("gaussian", cov=cov.tolist(), mean=[1.0, -2.0, 0.5])
    process = sb.get_process(process_name)
    lam_min, lam_max = torch.linalg.eigvalsh(cov)[[0, -1]].tolist()
    metric = METRICS.build("score_jacobian", n_times=6)
    rows = metric.checked_rows(_context(target, process, OracleScore(target, process)))
    assert [t for t, _ in rows] == pytest.approx(log_spaced_times(process, 6))
    for t, value in rows:
        assert value == pytest.approx(_gaussian_truth(process, t, lam_min), rel=1e-9)
    # the wrong eigenvalue (lambda_max) is far off at the smallest time, where alpha_t^2 lambda dominates
    t0, v0 = rows[0]
    assert v0 > 2.0 * _gaussian_truth(process, t0, lam_max)


@pytest.mark.parametrize("basis", ["diag", "full"])
def test_the_autograd_path_equals_the_exact_hessian(basis: str) -> None:
    g = gen(4)
    K, d = 3, 3
    means = 2.0 * torch.randn(K, d, generator=g, dtype=torch.float64)
    eigvals = torch.rand(K, d, generator=g, dtype=torch.float64) + 0.1
    rot = None if basis == "diag" else torch.linalg.qr(torch.randn(K, d, d, generator=g, dtype=torch.float64))[0]
    mix = GaussianMixture(torch.tensor([0.2, 0.5, 0.3]), means, eigvals, rot)
    process = sb.get_process("vp")
    p_t = mix.marginal(process, 0.05)
    x = torch.cat([p_t.sample(20, g, dtype=torch.float64), component_midpoints(p_t)])
    auto = autograd_jacobian(p_t.score, x)
    exact = score_jacobian(OracleScore(mix, process), x, 0.05)
    assert torch.allclose(auto, exact, rtol=1e-8, atol=1e-8)
    # the Hessian of another time is not the Jacobian of this one
    assert not torch.allclose(autograd_jacobian(mix.marginal(process, 0.2).score, x), exact, rtol=1e-3)


def test_a_learned_score_is_differentiated_through_its_network() -> None:
    A = torch.tensor([[1.0, 4.0], [0.0, -2.0]])  # not symmetric: its spectral norm is not max |eigenvalue|
    process = sb.get_process("ou")
    model = LearnedScore(2, process, lambda x, t: x @ A.T + t[:, None], TrainingRecord("linear"), dtype=torch.float32)
    x = torch.randn(7, 2, generator=gen(1), dtype=torch.float64)
    jac = score_jacobian(model, x, 0.5)
    assert torch.allclose(jac, A.double().expand(7, 2, 2))
    norms = operator_norms(jac)
    assert norms == pytest.approx(torch.full((7,), float(torch.linalg.svdvals(A.double())[0])), rel=1e-6)
    assert float(norms[0]) != pytest.approx(float(torch.linalg.eigvals(A).abs().max()), rel=1e-2)


def test_a_score_without_an_autograd_graph_is_refused() -> None:
    def detached(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return -x

    with pytest.raises(ValueError, match="no autograd graph"):
        autograd_jacobian(detached, torch.ones(3, 2))


def test_midpoints_between_two_atoms_give_the_covariance_term() -> None:
    D = 3.0
    atoms = sb.get_target("gmm", means=[[0.0, 0.0], [D, 0.0]], covs=0.0)
    process = sb.get_process("ou", T=1.0, t_min=1e-3)
    score = OracleScore(atoms, process)
    with_mid = ScoreJacobian(n_times=4, points="samples+midpoints").checked_rows(_context(atoms, process, score))
    draws = ScoreJacobian(n_times=4, points="samples").checked_rows(_context(atoms, process, score))
    assert with_mid[0][0] < 0.01  # the check below covers small times
    for (t, mid), (_, near) in zip(with_mid, draws, strict=True):
        a2, s2 = float(process.alpha(t)) ** 2, float(process.sigma2(t))
        if a2 * D**2 / (4 * s2) < 2:  # the covariance term no longer dominates -I / sigma_t^2
            continue
        assert mid == pytest.approx(a2 * D**2 / (4 * s2**2) - 1 / s2, rel=1e-9)
        if t < 0.1:  # exact draws stay near the atoms, where the Hessian is about -I / sigma_t^2
            assert near < 0.01 * mid
            assert near == pytest.approx(1 / s2, rel=0.5)


def test_midpoints_need_a_mixture_and_points_must_be_known() -> None:
    with pytest.raises(ValueError, match="points"):
        ScoreJacobian(points="grid")
    assert component_midpoints(sb.get_target("gaussian", dim=2)).shape == (0, 2)


def test_singular_mixtures_are_sampled_and_diffused_but_have_no_density_at_zero() -> None:
    covs = [[[4.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]  # a horizontal line and a diagonal one
    lines = sb.get_target("gmm", means=[[0.0, 0.0], [1.0, 1.0]], covs=covs)
    assert lines.singular
    x = lines.sample(500, gen(2), dtype=torch.float64)
    on_first = x[:, 1].abs() < 1e-12
    on_second = (x[:, 0] - x[:, 1]).abs() < 1e-9
    assert bool((on_first | on_second).all()) and bool(on_first.any()) and bool(on_second.any())
    process = sb.get_process("ou", T=1.0, t_min=1e-3)
    p_t = lines.marginal(process, 0.01)
    assert not p_t.singular
    assert bool(torch.isfinite(p_t.score(x.float())).all())
    for call in (lines.log_prob, lines.score, lines.hessian):
        with pytest.raises(ValueError, match="no density"):
            call(x)
    with pytest.raises(ValueError, match="non-negative"):
        sb.get_target("gmm", means=[[0.0, 0.0]], covs=[[1.0, -1.0]])


def test_the_near_support_constant_grows_like_one_over_t_for_a_line() -> None:
    """A Gaussian on a line (rank-one covariance) has the constant Hessian -(alpha^2 Sigma + sigma^2 I)^{-1}:
    L(t) = 1 / sigma_t^2 exactly."""
    line = sb.get_target("gmm", means=[[0.0, 0.0]], covs=[[[1.0, 1.0], [1.0, 1.0]]])
    process = sb.get_process("ou", T=1.0, t_min=1e-3)
    rows = ScoreJacobian(n_times=5).checked_rows(_context(line, process, OracleScore(line, process), n=50))
    for t, value in rows:
        assert value == pytest.approx(1.0 / float(process.sigma2(t)), rel=1e-9)
    slope = (math.log(rows[1][1]) - math.log(rows[0][1])) / (math.log(rows[1][0]) - math.log(rows[0][0]))
    assert slope == pytest.approx(-1.0, abs=0.01)
