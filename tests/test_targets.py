"""Targets: exact scores against autograd, densities against torch.distributions and scipy,
samples against their laws."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

import scorebench as sb
from scorebench.targets import GaussianMixture

from .conftest import exact_targets, gen

EXACT = exact_targets()


def _points(target: GaussianMixture, n: int = 64, seed: int = 0) -> torch.Tensor:
    """Points spread over and beyond the bulk of the target."""
    x = target.sample(n, gen(seed), dtype=torch.float64)
    return x + 2.0 * torch.randn(x.shape, generator=gen(seed + 1), dtype=torch.float64)


def _torch_mixture(target: GaussianMixture) -> MixtureSameFamily:
    return MixtureSameFamily(
        Categorical(probs=target.weights),
        MultivariateNormal(target.means, covariance_matrix=target.component_covariances()),
    )


@pytest.mark.parametrize("name", list(EXACT))
def test_marginal_score_equals_autograd_of_log_prob(name: str, process: sb.ForwardProcess) -> None:
    target = EXACT[name]
    x = _points(target)
    for u in (0.0, 0.01, 0.2, 0.6, 1.0):
        t = process.t_min + u * (process.T - process.t_min)
        p_t = target.marginal(process, t)
        xr = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(p_t.log_prob(xr).sum(), xr)
        torch.testing.assert_close(p_t.score(x), auto, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", list(EXACT))
def test_log_prob_matches_torch_distributions(name: str, process: sb.ForwardProcess) -> None:
    target = EXACT[name]
    x = _points(target)
    for p in (target, target.marginal(process, 0.5 * (process.T + process.t_min))):
        torch.testing.assert_close(p.log_prob(x), _torch_mixture(p).log_prob(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", list(EXACT))
def test_marginal_is_law_of_noised_samples(name: str) -> None:
    """alpha_t X_0 + sigma_t Z has the marginal's mean and covariance (z-test, 5 SE)."""
    target, process, t = EXACT[name], sb.get_process("vp"), 0.3
    n = 40_000
    x0 = target.sample(n, gen(3), dtype=torch.float64)
    xt = float(process.alpha(t)) * x0 + float(process.sigma(t)) * torch.randn(
        x0.shape, generator=gen(4), dtype=torch.float64
    )
    p_t = target.marginal(process, t)
    mean, cov = p_t.mean(), p_t.covariance()
    z_mean = (xt.mean(0) - mean) / (cov.diagonal() / n).sqrt()
    assert z_mean.abs().max() < 5
    centred = xt - xt.mean(0)
    products = centred[:, :, None] * centred[:, None, :]  # (n, d, d); d <= 6 here
    se = products.std(0) / math.sqrt(n)  # standard error from the empirical fourth moments
    assert ((products.mean(0) - cov) / se).abs().max() < 5


def test_mixture_samples_pick_components_by_weight() -> None:
    target = EXACT["gmm_full"]
    x = target.sample(30_000, gen(5), dtype=torch.float64)
    resp = torch.softmax(_torch_mixture(target).component_distribution.log_prob(x[:, None, :]) + target.log_weights, 1)
    share = resp.mean(0)
    se = (target.weights * (1 - target.weights) / x.shape[0]).sqrt()
    assert ((share - target.weights) / se).abs().max() < 5


def test_float32_score_close_to_float64() -> None:
    target = EXACT["gmm40"]
    p_t = target.marginal(sb.get_process("vp"), 0.05)
    x = _points(target, 256)
    s64 = p_t.score(x)
    s32 = p_t.score(x.float())
    assert s32.dtype == torch.float32
    torch.testing.assert_close(s32.double(), s64, rtol=1e-3, atol=1e-3)


def test_presets() -> None:
    ring = EXACT["ring8"]
    assert ring.n_components == 8 and ring.dim == 2
    torch.testing.assert_close(ring.means.norm(dim=1), torch.full((8,), 4.0, dtype=torch.float64))
    g40 = EXACT["gmm40"]
    assert g40.n_components == 40 and g40.dim == 2
    assert g40.means.abs().max() <= 40 and g40.means.abs().max() > 30
    torch.testing.assert_close(g40.eigvals, torch.full((40, 2), math.log1p(math.e) ** 2, dtype=torch.float64))
    rnd = sb.get_target("gmm", preset="random", dim=12, n_components=7, seed=3)
    assert (rnd.dim, rnd.n_components) == (12, 7)
    assert not torch.equal(rnd.means, sb.get_target("gmm", preset="random", dim=12, n_components=7, seed=4).means)


def test_covariance_kinds_are_recognised() -> None:
    assert EXACT["gmm_diag"].covariance_type == "diag"
    assert EXACT["gmm_tied"].covariance_type == "tied"
    assert EXACT["gmm_full"].covariance_type == "full"
    assert EXACT["gaussian_axes"].covariance_type == "diag"


def test_gaussian_condition_number() -> None:
    g = sb.get_target("gaussian", dim=6, condition_number=50.0)
    evals = torch.linalg.eigvalsh(g.covariance())
    assert evals.max() / evals.min() == pytest.approx(50.0, rel=1e-10)
    assert evals.max() == pytest.approx(1.0, rel=1e-10)


def test_gaussian_unknown_mean_score_under_ou() -> None:
    """Bruno et al.'s example: under OU, p_t = N(mu e^{-t}, I) and the score is -x + mu e^{-t}."""
    mu = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    target = sb.get_target("gaussian_unknown_mean", dim=3, mean=mu.tolist())
    x = _points(target)
    for t in (0.01, 0.5, 3.0):
        s = target.marginal(sb.get_process("ou"), t).score(x)
        torch.testing.assert_close(s, -x + mu * math.exp(-t), rtol=1e-12, atol=1e-12)


# -- sample-only targets ---------------------------------------------------------------

def test_funnel() -> None:
    f = sb.get_target("funnel")
    assert f.dim == 10 and not f.has_marginals
    x = f.sample(20_000, gen(0), dtype=torch.float64)
    assert stats.kstest(x[:, 0].numpy() / 3.0, "norm").pvalue > 1e-3
    assert stats.kstest((x[:, 1:] * torch.exp(-0.5 * x[:, :1])).flatten()[:20_000].numpy(), "norm").pvalue > 1e-3
    y = x[:50]
    ref = torch.distributions.Normal(
        torch.tensor(0.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
    ).log_prob(y[:, 0]) + torch.distributions.Normal(
        0.0, torch.exp(0.5 * y[:, :1])
    ).log_prob(y[:, 1:]).sum(1)
    torch.testing.assert_close(f.log_prob(y), ref, rtol=1e-12, atol=1e-12)


def test_student_t() -> None:
    st = sb.get_target("student_t", dim=3, df=4, scale=2.0)
    x = st.sample(20_000, gen(0), dtype=torch.float64)
    # ||x / scale||^2 / d ~ F(d, df)
    f_stat = (x / 2.0).pow(2).sum(1) / 3
    assert stats.kstest(f_stat.numpy(), stats.f(3, 4).cdf).pvalue > 1e-3
    ref = stats.multivariate_t(loc=[0.0] * 3, shape=4.0 * torch.eye(3).numpy(), df=4).logpdf(x[:20].numpy())
    torch.testing.assert_close(st.log_prob(x[:20]), torch.as_tensor(ref), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rotation_seed", [None, 7])
def test_circle(rotation_seed: int | None) -> None:
    c = sb.get_target("circle", dim=5, radius=2.0, rotation_seed=rotation_seed)
    x = c.sample(5_000, gen(0), dtype=torch.float64)
    torch.testing.assert_close(x.norm(dim=1), torch.full((5_000,), 2.0, dtype=torch.float64))
    assert torch.linalg.matrix_rank(x) == 2  # a one-dimensional curve inside a 2-plane
    assert not c.has_log_prob
    with pytest.raises(NotImplementedError, match="no density"):
        c.log_prob(x)


@pytest.mark.parametrize("name", ["funnel", "circle", "student_t"])
def test_sample_only_targets_have_no_marginal(name: str) -> None:
    with pytest.raises(NotImplementedError, match="no closed-form diffused marginals"):
        sb.get_target(name).marginal(sb.get_process("vp"), 0.5)


@pytest.mark.parametrize("name", ["gaussian", "gmm", "funnel", "circle", "student_t"])
def test_sampling_is_seeded(name: str) -> None:
    t = sb.get_target(name, preset="ring8") if name == "gmm" else sb.get_target(name)
    assert torch.equal(t.sample(100, gen(9)), t.sample(100, gen(9)))
    assert not torch.equal(t.sample(100, gen(9)), t.sample(100, gen(10)))
    assert t.sample(100, gen(9)).shape == (100, t.dim)


# -- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("gaussian", {"cov": [[1.0, 2.0], [2.0, 1.0]]}, "not positive definite"),
        ("gaussian", {"cov": [[1.0, 0.5], [0.0, 1.0]]}, "not symmetric"),
        ("gaussian", {"dim": 3, "mean": [1.0, 2.0]}, "mean must have length 3"),
        ("gaussian", {"dim": 0}, r"gaussian: dim must be an integer in \[1, inf\), got 0"),
        ("gaussian", {"condition_number": 0.5}, r"gaussian: condition_number must be a number in \[1, inf\), got 0.5"),
        ("gmm", {"means": [[0.0, 0.0], [1.0, 1.0]], "covs": [[[1.0, 0.0], [0.0, -1.0]], [[1.0, 0.0], [0.0, 1.0]]]},
         r"covs\[0\] is not positive semi-definite"),
        ("gmm", {"means": [[0.0, 0.0]], "weights": [-1.0]}, "weights must be positive"),
        ("gmm", {"means": [[0.0, 0.0], [1.0, 1.0]], "weights": [1.0]}, "weights must have length 2"),
        ("gmm", {"preset": "spiral"}, "gmm: preset must be one of 'ring8', 'gmm40', 'random' or None, got 'spiral'"),
        ("gmm", {}, "give means"),
        ("gmm", {"preset": "ring8", "dim": 3}, "is 2-D"),
        ("gmm", {"means": [[0.0, 0.0]], "covs": [1.0, 2.0, 3.0]}, "covs must be"),
        ("student_t", {"df": 2.5}, r"student_t: df must be an integer in \[1, inf\), got 2.5"),
        ("funnel", {"scale": -1.0}, r"funnel: scale must be a number in \(0, inf\), got -1.0"),
    ],
)
def test_bad_target_parameters(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_target(name, **params)


def test_wrong_shapes_and_times() -> None:
    g = sb.get_target("gaussian", dim=3)
    with pytest.raises(ValueError, match=r"shape \(n, 3\), got \(5, 2\)"):
        g.log_prob(torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"shape \(n, 3\), got \(3,\)"):
        g.marginal(sb.get_process("vp"), 0.5).score(torch.zeros(3))
    with pytest.raises(ValueError, match=r"outside \[t_min, T\]"):
        g.marginal(sb.get_process("vp"), 1.5)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        g.sample(0, gen(0))


@pytest.mark.parametrize(
    ("name", "params"),
    [("funnel", {"dim": 4, "scale": 1.0}), ("circle", {"dim": 4, "rotation_seed": 2}), ("student_t", {"df": 6}),
     ("gmm", {"preset": "ring8"})],
)
def test_moments_match_samples(name: str, params: dict) -> None:
    """Exact moments against the sample moments (z-test with empirical fourth-moment SEs)."""
    target = sb.get_target(name, **params)
    mean, cov = target.moments()
    n = 200_000
    x = target.sample(n, gen(0), dtype=torch.float64)
    assert ((x.mean(0) - mean) / (cov.diagonal() / n).sqrt()).abs().max() < 5
    centred = x - mean
    products = centred[:, :, None] * centred[:, None, :]
    se = products.std(0) / math.sqrt(n)
    ok = se > 0
    assert ((products.mean(0) - cov)[ok] / se[ok]).abs().max() < 5
    torch.testing.assert_close(products.mean(0)[~ok], cov[~ok], rtol=0, atol=1e-12)


def test_heavy_tailed_student_t_has_no_covariance() -> None:
    with pytest.raises(NotImplementedError, match="df > 2"):
        sb.get_target("student_t", df=2).moments()


def test_square_covs_with_k_equal_d_must_be_disambiguated() -> None:
    means, covs = [[0.0, 0.0], [3.0, 3.0]], [[2.0, 1.0], [1.0, 2.0]]
    with pytest.raises(ValueError, match="ambiguous"):
        sb.get_target("gmm", means=means, covs=covs)
    diag = sb.get_target("gmm", means=means, covs=covs, covariance_type="diag")
    tied = sb.get_target("gmm", means=means, covs=covs, covariance_type="tied")
    expected = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(diag.component_covariances()[0], expected)
    torch.testing.assert_close(tied.component_covariances()[1], torch.tensor(covs, dtype=torch.float64))


def test_float32_score_accurate_far_from_origin() -> None:
    """Means far away compared with the widths: float32 input must not lose the responsibilities."""
    target = sb.get_target("gmm", means=[[100.0, 100.0], [100.3, 100.0]], covs=0.01)
    x = target.sample(500, gen(0), dtype=torch.float64)
    torch.testing.assert_close(target.score(x.float()).double(), target.score(x.float().double()), rtol=1e-5, atol=1e-3)
