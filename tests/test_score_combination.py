"""``ScoreModel.combine(x, t, a, b) = a x + b score(x, t)``: the samplers' affine step.

The exact mixture computes it without forming the score where its components share one
diagonal precision (``GaussianMixture.score_combination``).  Checked against ``a x + b s`` with
``s`` the float64 autograd score at the same points, within the score's own accuracy
(``POINT_TOL`` of ``|b s|``) plus a few float32 roundings of the combination's terms; wrong
variants (half the score, a constant that forgets the average mean, no ``x`` term) fail the
same check.  The samplers that use it give the samples of the two-step form.
"""

from __future__ import annotations

import math

import pytest
import torch

import scorebench as sb
from scorebench.estimators.oracle import OracleScore
from scorebench.targets.mixture import GaussianMixture
from tests.test_score_float32 import POINT_TOL, TIMES, at_time, mixture, points, reference

EPS32 = torch.finfo(torch.float32).eps
#: (x weight, score weight) pairs: an Euler--Maruyama step near T and near t_min, a DDPM mean, a
#: probability-flow velocity (negative score weight)
WEIGHTS = ((0.99, 0.02), (1.0, 2e-5), (1.2, 0.3), (0.5, -0.25))


def shared_diag(isotropic: bool, K: int = 6, d: int = 3, width: float = 1e-2, offset: float = 8.0,
                spread: float = 6.0, seed: int = 2) -> GaussianMixture:
    """Components sharing one diagonal precision, their means about a point ``offset`` from the
    origin in every coordinate (so that forgetting the average mean is visible)."""
    g = torch.Generator().manual_seed(seed)
    means = offset + spread * torch.randn(K, d, generator=g, dtype=torch.float64)
    scales = torch.ones(d, dtype=torch.float64) if isotropic else torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    eigvals = (width * scales) ** 2 * torch.ones(K, 1, dtype=torch.float64)
    return GaussianMixture(torch.rand(K, generator=g, dtype=torch.float64) + 0.2, means, eigvals)


def check_combination(p_t: GaussianMixture, x: torch.Tensor, a: float, b: float, combined: torch.Tensor) -> None:
    """Every row within ``POINT_TOL |b s| + 16 eps (|a x| + |b| |P| (|x| + max|m_k|))``."""
    s_ref = reference(p_t, x)
    x64 = x.double()
    want = a * x64 + b * s_ref
    prec = float((1.0 / p_t.eigvals).max())
    scale = float(p_t.means.norm(dim=1).max())
    rows = x64.norm(dim=1)
    bound = POINT_TOL * abs(b) * s_ref.norm(dim=1) + 16 * EPS32 * (abs(a) * rows + abs(b) * prec * (rows + scale))
    err = (combined.double() - want).norm(dim=1)
    worst = int((err / bound).argmax())
    assert bool((err <= bound).all()), f"row {worst}: error {float(err[worst]):.3g} > bound {float(bound[worst]):.3g}"


@pytest.mark.parametrize("a_b", WEIGHTS)
@pytest.mark.parametrize("when", TIMES)
@pytest.mark.parametrize("isotropic", [True, False], ids=["isotropic", "anisotropic"])
@pytest.mark.parametrize("d", [3, 12], ids=["transposed-layout", "row-layout"])
def test_the_fused_combination_is_a_x_plus_b_score(d: int, isotropic: bool, when: str | float,
                                                   a_b: tuple[float, float]) -> None:
    # in 12-d the means are kept closer together, so that the fused path applies away from t_min
    p_t = at_time(shared_diag(isotropic, d=d) if d == 3 else shared_diag(isotropic, d=d, offset=1.0, spread=1.0), when)
    x = points(p_t)
    a, b = a_b
    out = p_t.score_combination(x, a, b)
    assert out.shape == x.shape and out.dtype == torch.float32
    check_combination(p_t, x, a, b, out)


@pytest.mark.parametrize(("kind", "shared", "K"), [
    ("diag", False, 6), ("tied", True, 6), ("tied", False, 6), ("full", True, 6), ("diag", True, 1),
])
def test_other_mixtures_combine_through_the_score(kind: str, shared: bool, K: int) -> None:
    p_t = at_time(mixture(kind, shared, 1e-2, K=K), 0.05)
    x = points(p_t)
    for a, b in WEIGHTS:
        check_combination(p_t, x, a, b, p_t.score_combination(x, a, b))


@pytest.mark.parametrize("d", [3, 12])
@pytest.mark.parametrize("isotropic", [True, False])
def test_the_fused_path_is_the_one_used_near_the_components(d: int, isotropic: bool,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Draws of p_t of an off-centre shared-precision mixture: the score is never formed."""
    p_t = at_time(shared_diag(isotropic, d=d, width=1.0, offset=1.0, spread=1.0), 0.3)
    x = p_t.sample(2000, torch.Generator().manual_seed(3))

    def refuse(*args: object, **kwargs: object) -> torch.Tensor:
        raise AssertionError("the score was formed")

    monkeypatch.setattr(GaussianMixture, "score", refuse)
    check_combination(p_t, x, 0.99, 0.05, p_t.score_combination(x, 0.99, 0.05))


def wrong_half_score(p_t: GaussianMixture, x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    return p_t.score_combination(x, a, b / 2)


def wrong_no_x_term(p_t: GaussianMixture, x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    return p_t.score_combination(x, 0.0, b)


def wrong_constant(p_t: GaussianMixture, x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """The logits' constant about the average mean used for points that are not centred."""
    key = (torch.float32, torch.device("cpu"))
    tab = p_t._tables(*key)
    p_t._table_cache[key] = tab._replace(origin_const=tab.plain_const[:, None])
    try:
        return p_t.score_combination(x, a, b)
    finally:
        p_t._table_cache[key] = tab


@pytest.mark.parametrize("d", [3, 12])
@pytest.mark.parametrize("wrong", [wrong_half_score, wrong_no_x_term, wrong_constant])
def test_wrong_combinations_fail_the_check(wrong, d: int) -> None:
    p_t = at_time(shared_diag(True, d=d, width=1.0, offset=1.0, spread=1.0), 0.3)
    x = p_t.sample(2000, torch.Generator().manual_seed(3))
    with pytest.raises(AssertionError):
        check_combination(p_t, x, 0.99, 0.05, wrong(p_t, x, 0.99, 0.05))


def test_float64_combination_is_exact_to_1e12() -> None:
    """The same bound as in float32, with 1e-12 in place of the float32 roundings."""
    p_t = at_time(shared_diag(False), 0.05)
    x = points(p_t).double()
    want = 0.9 * x + 0.01 * reference(p_t, x.clone())
    prec, scale, rows = float((1.0 / p_t.eigvals).max()), float(p_t.means.norm(dim=1).max()), x.norm(dim=1)
    err = (p_t.score_combination(x, 0.9, 0.01) - want).norm(dim=1) / (0.9 * rows + 0.01 * prec * (rows + scale))
    assert float(err.max()) <= 1e-12


# -- ScoreModel.combine ------------------------------------------------------------------


def fitted(name: str = "oracle", **params: object) -> OracleScore:
    vp = sb.get_process("vp")
    return sb.get_estimator(name, **params).fit(sb.get_target("gmm", preset="random", dim=3), vp)


def test_combine_counts_one_call_and_checks_its_input() -> None:
    model = fitted()
    x = torch.randn(50, 3)
    model.combine(x, 0.5, 1.0, 0.1)
    assert (model.calls, model.evaluations) == (1, 50)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        model.combine(torch.randn(5, 2), 0.5, 1.0, 0.1)
    with pytest.raises(ValueError, match="outside"):
        model.combine(x, 7.0, 1.0, 0.1)


@pytest.mark.parametrize("t", [0.3, "rows"])
def test_combine_equals_the_two_step_form(t: float | str) -> None:
    model = fitted()
    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(0)) * 3
    tt = torch.linspace(0.1, 0.9, 400, dtype=torch.float64) if t == "rows" else t
    torch.testing.assert_close(model.combine(x, tt, 0.97, 0.04), 0.97 * x + 0.04 * model(x, tt), rtol=1e-5, atol=1e-5)


def test_a_model_that_changes_score_gets_its_own_score_in_combine() -> None:
    """noisy_oracle overrides score (exact score plus a perturbation) and inherits the oracle's
    fused combination, which does not know the perturbation: combine must use the two-step form."""
    model = fitted("noisy_oracle", eps=0.5)
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.combine(x, 0.2, 1.0, 0.3), x + 0.3 * model(x, 0.2), rtol=1e-5, atol=1e-5)

    class NaNScore(OracleScore):
        def score(self, x: torch.Tensor, t: object) -> torch.Tensor:
            return torch.full_like(x, math.nan)

    nan_model = NaNScore(sb.get_target("gmm", preset="random", dim=3), sb.get_process("vp"))
    assert bool(nan_model.combine(x, 0.2, 1.0, 0.3).isnan().all())


class TwoStep(OracleScore):
    """The oracle without its fused combination (score overridden, so combine uses the two-step form)."""

    def score(self, x: torch.Tensor, t: object) -> torch.Tensor:
        return super().score(x, t)


@pytest.mark.parametrize(("sampler", "params"), [
    ("euler_maruyama", {}), ("exponential_integrator", {}), ("ddpm", {}), ("pf_ode", {"method": "heun"}),
])
def test_samplers_give_the_samples_of_the_two_step_form(sampler: str, params: dict) -> None:
    vp = sb.get_process("vp")
    target = sb.get_target("gmm", preset="ring8")
    fused, two_step = OracleScore(target, vp), TwoStep(target, vp)
    run = sb.get_sampler(sampler, **params)
    a = run.sample(fused, vp, 3000, 60, torch.Generator().manual_seed(4)).samples
    b = run.sample(two_step, vp, 3000, 60, torch.Generator().manual_seed(4)).samples
    assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max())


def test_far_from_the_origin_the_bound_sends_points_to_the_centred_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """Narrow components about 1000 from the origin, points on the boundaries between two of them:
    logits taken about the origin would round by ~eps |P| |x| |m_k - c| ~ 0.1 and move the weights
    where they matter.  The bound sends these points to the centred score (the check passes); with
    the bound switched off the fused path is wrong there (the same check fails)."""
    import scorebench.targets.mixture as mixture_module

    p_t = at_time(shared_diag(True, K=4, d=3, width=0.1, offset=1000.0, spread=1.0), "t_min")
    g = torch.Generator().manual_seed(7)
    means = p_t.means.float()
    pairs = torch.randint(0, 4, (2, 600), generator=g)
    pairs = pairs[:, pairs[0] != pairs[1]]
    x = 0.5 * (means[pairs[0]] + means[pairs[1]]) + 0.01 * torch.randn(pairs.shape[1], 3, generator=g)
    check_combination(p_t, x, 0.99, 0.02, p_t.score_combination(x, 0.99, 0.02))
    monkeypatch.setattr(mixture_module, "_plain_expansion_fits", lambda y, tab: True)
    with pytest.raises(AssertionError):
        check_combination(p_t, x, 0.99, 0.02, p_t.score_combination(x, 0.99, 0.02))


def test_a_score_replaced_on_the_instance_is_the_one_combined() -> None:
    model = fitted()
    x = torch.randn(100, 3, generator=torch.Generator().manual_seed(2))
    model.score = lambda x, t: torch.ones_like(x)  # type: ignore[method-assign]
    torch.testing.assert_close(model.combine(x, 0.4, 0.5, 2.0), 0.5 * x + 2.0)


def test_a_marginal_with_its_own_score_is_not_fused() -> None:
    """A target whose marginals are a GaussianMixture subclass with a changed score: the oracle's
    combination uses that score, not the mixture formula."""

    class Shifted(GaussianMixture):
        def score(self, x: torch.Tensor, compile: bool = False) -> torch.Tensor:
            return super().score(x, compile) + 1.0

    class ShiftedTarget(GaussianMixture):
        def marginal(self, process, t):
            p = super().marginal(process, t)
            return Shifted(p.weights, p.means, p.eigvals, p.basis)

    base = shared_diag(True, width=1.0, offset=1.0, spread=1.0)
    target = ShiftedTarget(base.weights, base.means, base.eigvals, base.basis)
    vp = sb.get_process("vp")
    model = OracleScore(target, vp)
    x = target.marginal(vp, 0.3).sample(200, torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.combine(x, 0.3, 0.9, 0.1), 0.9 * x + 0.1 * model(x, 0.3), rtol=1e-5, atol=1e-5)
    unshifted = GaussianMixture.score(target.marginal(vp, 0.3), x)
    torch.testing.assert_close(model(x, 0.3), unshifted + 1.0)  # the marginal's own score is the one used
