"""The exact mixture score in float32: relative error <= 1e-5 against a float64 autograd reference.

The reference is ``grad log p_t`` by autograd of the float64 log-density, at the same (float32)
points, for all three covariance types, shared and unequal precisions, means up to 20 from the
origin, component widths down to 1e-2, points drawn from ``p_t`` and uniform in the ball
``|x| <= 50``, at times from ``t_min`` to ``T``.  The plain float32 matmul expansion, which the
centred expansion replaces, fails the same check (so the check can fail).
"""

from __future__ import annotations

import math

import pytest
import torch

import scorebench as sb
from scorebench.targets.mixture import GaussianMixture

#: relative error of the float32 score over a sample, ``||s - s_ref||_F / ||s_ref||_F``
TOL = 1e-5
#: worst relative error at a single point: at ``|x| = 50`` between two components the logits,
#: of size ``|x - m|^2_P / 2 ~ 10^3``, carry a float32 rounding of ``eps |x - m|^2_P ~ 1e-4``,
#: which moves the responsibilities (and no float32 formulation avoids it)
POINT_TOL = 5e-5
TIMES = ("t_min", 0.05, 0.3, "T")


def mixture(kind: str, shared: bool, width: float, K: int = 6, d: int = 3, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(K, d, generator=g, dtype=torch.float64)
    radius = 20.0 * torch.rand(K, 1, generator=g, dtype=torch.float64)
    means = radius * direction / direction.norm(dim=1, keepdim=True)
    if shared:
        eigvals = torch.full((K, d), width**2, dtype=torch.float64)
    else:
        eigvals = width**2 * torch.exp(3 * torch.rand(K, d, generator=g, dtype=torch.float64))
    basis = None
    if kind == "tied":
        basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    elif kind == "full":
        basis = torch.linalg.qr(torch.randn(K, d, d, generator=g, dtype=torch.float64))[0]
    return GaussianMixture(torch.rand(K, generator=g, dtype=torch.float64) + 0.2, means, eigvals, basis)


def points(p_t: GaussianMixture, n: int = 1500, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    near = p_t.sample(n, g, dtype=torch.float32)
    u = torch.randn(n, p_t.dim, generator=g)
    far = 50.0 * torch.rand(n, 1, generator=g) ** (1 / p_t.dim) * u / u.norm(dim=1, keepdim=True)
    return torch.cat([near, far])


def reference(p_t: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    x64 = x.double().requires_grad_(True)
    return torch.autograd.grad(p_t.log_prob(x64).sum(), x64)[0]


def worst_relative_error(score: torch.Tensor, ref: torch.Tensor) -> float:
    return float(((score.double() - ref).norm(dim=1) / ref.norm(dim=1)).max())


def relative_error(score: torch.Tensor, ref: torch.Tensor) -> float:
    return float((score.double() - ref).norm() / ref.norm())


def check(score: torch.Tensor, ref: torch.Tensor) -> None:
    """Both halves of :func:`points` (draws of p_t, then far points) within TOL, every point
    within POINT_TOL (a whole-sample norm would let the large far scores hide the near ones)."""
    half = score.shape[0] // 2
    for part in (slice(0, half), slice(half, None)):
        assert relative_error(score[part], ref[part]) <= TOL
    assert worst_relative_error(score, ref) <= POINT_TOL


def plain_float32_score(p_t: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """The expansion without centring, all in float32 (what a naive fast score does)."""
    y, means, eigvals, basis = p_t._rotated(x)
    resp = torch.softmax(p_t._diag_logits(y, means, eigvals), dim=1)
    prec = 1.0 / eigvals
    s = resp @ (means * prec) - y * (resp @ prec)
    return s if basis is None else s @ basis.T


def at_time(target: GaussianMixture, when: str | float) -> GaussianMixture:
    process = sb.get_process("vp")
    t = {"t_min": process.t_min, "T": process.T}.get(when, when)
    return target.marginal(process, float(t))


@pytest.mark.parametrize("when", TIMES)
@pytest.mark.parametrize("width", [1e-2, 1.0])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "unequal"])
@pytest.mark.parametrize("kind", ["diag", "tied", "full"])
def test_float32_score_within_1e5_of_the_float64_autograd_score(kind: str, shared: bool, width: float,
                                                                when: str | float) -> None:
    p_t = at_time(mixture(kind, shared, width), when)
    x = points(p_t)
    score = p_t.score(x)
    assert score.dtype == torch.float32 and score.shape == x.shape
    check(score, reference(p_t, x))


@pytest.mark.parametrize("kind", ["diag", "tied", "full"])
def test_one_component_float32_score(kind: str) -> None:
    p_t = at_time(mixture(kind, False, 1e-2, K=1), "t_min")
    x = points(p_t)
    check(p_t.score(x), reference(p_t, x))


@pytest.mark.parametrize("kind", ["diag", "tied"])
def test_the_plain_float32_expansion_fails_the_same_check(kind: str) -> None:
    p_t = at_time(mixture(kind, True, 1e-2), "t_min")
    x = points(p_t)
    with pytest.raises(AssertionError):
        check(plain_float32_score(p_t, x), reference(p_t, x))


def test_float64_input_gives_the_autograd_score_to_1e12() -> None:
    p_t = at_time(mixture("tied", False, 0.1), 0.05)
    x = points(p_t).double()
    assert worst_relative_error(p_t.score(x), reference(p_t, x)) <= 1e-12


def test_ties_in_the_rough_pass_pick_one_centre() -> None:
    """A point equidistant from two equal components: the one-hot pick keeps exactly one centre."""
    mix = GaussianMixture(torch.ones(2), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.full((2, 2), 0.5))
    x = torch.tensor([[0.0, 0.3], [0.0, -2.0]])
    torch.testing.assert_close(mix.score(x).double(), reference(mix, x), rtol=1e-6, atol=1e-6)
    assert math.isfinite(float(mix.score(x).sum()))


@pytest.mark.parametrize("when", TIMES)
def test_the_plain_expansion_where_chosen_is_within_the_same_bounds(when: str | float,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit components at distance 5 from the origin in 16-d, points out to where the rounding bound
    reaches the threshold: the centred pass is skipped (it would raise here), the accuracy is the same."""
    import scorebench.targets.mixture as mixture_module

    def refuse(*args, **kwargs):
        raise AssertionError("the centred pass was used")

    d, K = 16, 8
    g = torch.Generator().manual_seed(5)
    direction = torch.randn(K, d, generator=g, dtype=torch.float64)
    means = 5.0 * direction / direction.norm(dim=1, keepdim=True)
    p_t = at_time(GaussianMixture(torch.ones(K), means, torch.ones(K, d, dtype=torch.float64)), when)
    tables = p_t._tables(torch.float32, torch.device("cpu"))
    reach = 0.95 * mixture_module.PLAIN_EXPANSION_ERROR / (torch.finfo(torch.float32).eps * tables.plain_scale)
    assert reach > 5  # coordinates up to here (about the average mean) keep the bound under the threshold
    centre = tables.centre
    near = p_t.sample(1500, g)
    u = torch.randn(1500, d, generator=g)
    far = reach * u / u.abs().amax(dim=1, keepdim=True)
    x = centre + torch.cat([(near - centre).clamp(-reach, reach), far])
    monkeypatch.setattr(mixture_module, "_centred_score", refuse)
    check(p_t.score(x), reference(p_t, x))
