"""Mode metrics (``mode_tv``, ``modes_missed``) on mixture targets, against independent truths:
nearest-mean assignment where it equals the posterior (ring8), scipy's Gaussian densities where it
does not, De Moivre's binomial mean absolute deviation and multinomial draws for the floors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import scorebench as sb
import scorebench.metrics.modes as modes
from scorebench.cli import main
from scorebench.metrics import MetricContext, MetricInputError, ModesMissed, ModeTV
from scorebench.metrics.modes import expected_mode_tv, expected_modes_missed, sample_mode_weights
from scorebench.results import read_results
from scorebench.suite import SuiteError, load_suite
from scorebench.targets.gaussian import GMM
from scorebench.targets.mixture import GaussianMixture
from scorebench.testing import MetricCheckError, check_metric

RING8 = GMM(preset="ring8")
PI = 1.0 / 8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def without_mode(target: GaussianMixture, k: int) -> GaussianMixture:
    """``target`` with mode ``k`` dropped, the other weights renormalised."""
    keep = [j for j in range(target.n_components) if j != k]
    return GaussianMixture(target.weights[keep], target.means[keep], target.eigvals[keep])


def nearest_mean_weights(target: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """Mode weights by the nearest mean: the posterior's argmax when the weights are equal and the
    covariances equal and isotropic (ring8), a different rule otherwise."""
    nearest = torch.cdist(x.double(), target.means).argmin(1)
    return torch.bincount(nearest, minlength=target.n_components).double() / x.shape[0]


def context(x: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, target: GaussianMixture) -> MetricContext:
    return MetricContext(x=x, y1=y1, y2=y2, target=target, process=sb.get_process("vp"))


def de_moivre_tv(pi: float, k: int, n: int) -> float:
    """``(1/2) K E|B/n - pi|``, ``B ~ Binomial(n, pi)``, by De Moivre's closed form of the binomial
    mean absolute deviation: ``E|B - n p| = 2 v C(n, v) p^v (1 - p)^(n - v + 1)``, ``v = floor(n p) + 1``."""
    v = math.floor(n * pi) + 1
    log_mad = math.log(2 * v) + math.lgamma(n + 1) - math.lgamma(v + 1) - math.lgamma(n - v + 1) \
        + v * math.log(pi) + (n - v + 1) * math.log1p(-pi)
    return 0.5 * k * math.exp(log_mad) / n


# -- a sample that drops one of ring8's modes ---------------------------------------------------


def test_a_dropped_mode_is_seen_far_above_the_floor() -> None:
    """Seven of ring8's modes, renormalised: 7 of 8 modes covered (modes_missed = 1/8), and
    TV = 1/8 - w_0, w_0 the share of the seven modes' draws whose most likely mode is the dropped
    one (nearest mean on ring8), whose expectation is 2/7 Phi(-r sin(pi/8) / std): the two
    neighbours' draws cross the bisector of their means and mode 0's."""
    n = 4000
    x = without_mode(RING8, 0).sample(n, gen(1), dtype=torch.float32)
    w = nearest_mean_weights(RING8, x)
    tv = ModeTV()(x, RING8)
    assert tv == pytest.approx(0.5 * float((w - PI).abs().sum()), abs=1e-12)
    assert tv == pytest.approx(PI - float(w[0]), abs=1e-12)
    q0 = 2 / 7 * stats.norm.cdf(-4.0 * math.sin(math.pi / 8) / 0.5)
    expected, sd = PI - q0, math.sqrt(q0 * (1 - q0) / n)
    assert abs(tv - expected) <= 4 * sd + 1e-12, (tv, expected, sd)
    assert ModesMissed()(x, RING8) == PI
    # the floor: a target sample of the same size, far below
    y2 = RING8.sample(n, gen(2), dtype=torch.float64)
    floor = ModeTV().checked_floor(context(x, y2, y2, RING8))
    assert floor < 0.3 * tv
    assert floor == pytest.approx(expected_mode_tv(RING8.mode_weights(), n), rel=1.0)
    assert ModesMissed().checked_floor(context(x, y2, y2, RING8)) == 0.0


def test_a_metric_blind_to_the_sample_fails_the_conformance_check() -> None:
    """The kit's ``dropped_mode_seen`` is not vacuous: a metric that ignores the sample fails it."""

    class Blind(ModeTV):
        def compute(self, sample_weights: torch.Tensor, weights: torch.Tensor) -> float:
            return 0.0  # never sees the sample

    with pytest.raises(MetricCheckError, match="dropped_mode_seen"):
        check_metric(Blind())


# -- a perfect sample ---------------------------------------------------------------------------


def test_a_perfect_sample_is_within_its_floor_distribution() -> None:
    """A target sample's value is below the 99% quantile of the floors of 200 independent pairs;
    the floors' mean matches the closed form of the multinomial TV."""
    n, reps = 1000, 200
    metric = ModeTV()
    floors = []
    for r in range(reps):
        y = RING8.sample(2 * n, gen(100 + r), dtype=torch.float64)
        floors.append(metric.checked_floor(context(y[:n], y[:n], y[n:], RING8)))
    floors = np.array(floors)
    x = RING8.sample(n, gen(7), dtype=torch.float32)
    value = metric.checked_rows(context(x, x.double(), x.double(), RING8))[0][1]
    assert value <= np.quantile(floors, 0.99), (value, np.quantile(floors, 0.99))
    closed = expected_mode_tv(RING8.mode_weights(), n)
    assert abs(floors.mean() - closed) <= 4 * floors.std(ddof=1) / math.sqrt(reps), (floors.mean(), closed)
    assert ModesMissed()(x, RING8) == 0.0  # tolerance 0.5 is 6 standard deviations out at n = 1000


@pytest.mark.parametrize(("k", "n"), [(8, 1000), (8, 37), (40, 2000), (2, 11)])
def test_the_closed_form_floor_is_de_moivres(k: int, n: int) -> None:
    """The pmf sum of :func:`expected_mode_tv` equals De Moivre's closed form for equal weights."""
    got = expected_mode_tv(torch.full((k,), 1.0 / k, dtype=torch.float64), n)
    assert got == pytest.approx(de_moivre_tv(1.0 / k, k, n), rel=1e-9)
    assert got != pytest.approx(de_moivre_tv(1.0 / k, k, 2 * n), rel=1e-3)  # and depends on n


def test_the_closed_form_floors_match_multinomial_draws() -> None:
    """Unequal weights: both closed forms against 20000 multinomial count vectors."""
    pi = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    n, reps = 60, 20000
    counts = torch.distributions.Multinomial(n, probs=pi).sample((reps,)).double()
    w = counts / n
    tv = 0.5 * (w - pi).abs().sum(1)
    missed = ((w - pi).abs() > 0.5 * pi).double().mean(1)
    for draws, closed in ((tv, expected_mode_tv(pi, n)), (missed, expected_modes_missed(pi, n, 0.5))):
        se = float(draws.std()) / math.sqrt(reps)
        assert abs(float(draws.mean()) - closed) <= 4 * se, (float(draws.mean()), closed, se)
    # the coverage floor by scipy's binomial distribution, mode by mode
    by_scipy = np.mean([1 - (stats.binom.cdf(math.floor(n * p * 1.5 + 1e-9), n, p)
                             - stats.binom.cdf(math.ceil(n * p * 0.5 - 1e-9) - 1, n, p)) for p in pi.tolist()])
    assert expected_modes_missed(pi, n, 0.5) == pytest.approx(by_scipy, rel=1e-9)


# -- the assignment -----------------------------------------------------------------------------


def test_soft_and_hard_agree_unless_points_lie_between_modes() -> None:
    n = 4000
    x = RING8.sample(n, gen(11), dtype=torch.float64)
    hard, soft = (sample_mode_weights(RING8, x, a) for a in ("hard", "soft"))
    assert float((hard - soft).abs().max()) < 2e-3  # 6 std apart: a point is almost never ambiguous
    assert ModeTV(assign="soft")(x, RING8) == pytest.approx(ModeTV()(x, RING8), abs=2e-3)
    # points between two modes, 45% of the way from mode 0 to mode 1: hard puts them all in mode 0
    # (TV = 7/8); their responsibility for mode 0 is 1 / (1 + exp(-0.1 |m_1 - m_0|^2 / (2 std^2)))
    m0, m1 = RING8.means[0], RING8.means[1]
    z = (m0 + 0.45 * (m1 - m0)).expand(n, 2) + 1e-3 * torch.randn(n, 2, generator=gen(12), dtype=torch.float64)
    assert ModeTV()(z, RING8) == pytest.approx(7 / 8, abs=1e-12)
    r0 = 1 / (1 + math.exp(-0.1 * float((m1 - m0).square().sum()) / (2 * 0.25)))
    soft_tv = 0.5 * ((r0 - PI) + abs(1 - r0 - PI) + 6 * PI)
    assert ModeTV(assign="soft")(z, RING8) == pytest.approx(soft_tv, abs=2e-3)
    assert soft_tv < 7 / 8 - 0.05


def test_the_assignment_is_the_exact_posterior_not_the_nearest_mean() -> None:
    """Two equal modes, one stretched along x: its draws far to the right are nearer the other
    mean but more likely under their own component.  The hard weights equal the argmax of scipy's
    densities; the nearest-mean rule gives a different TV."""
    means = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    covs = [np.diag([25.0, 0.25]), np.diag([0.25, 0.25])]
    target = GMM(means=means, covs=torch.tensor(np.stack(covs)))
    n = 3000
    x = GaussianMixture(torch.ones(1), means[:1], torch.tensor([[25.0, 0.25]])).sample(n, gen(13),
                                                                                        dtype=torch.float64)
    dens = np.stack([stats.multivariate_normal(means[k].numpy(), covs[k]).logpdf(x.numpy()) for k in range(2)], 1)
    posterior = np.bincount(dens.argmax(1), minlength=2) / n
    got = sample_mode_weights(target, x, "hard")
    assert np.allclose(got.numpy(), posterior, atol=0.0)
    tv = ModeTV()(x, target)
    assert tv == pytest.approx(0.5 * np.abs(posterior - 0.5).sum(), abs=1e-12)
    nearest = nearest_mean_weights(target, x)
    wrong = 0.5 * float((nearest - 0.5).abs().sum())
    assert abs(tv - wrong) > 0.2, (tv, wrong)
    # the soft weights are the mean of scipy's posterior probabilities
    soft = np.exp(dens - np.logaddexp(dens[:, :1], dens[:, 1:])).mean(0)
    assert np.allclose(sample_mode_weights(target, x, "soft").numpy(), soft, rtol=1e-10)


@pytest.mark.parametrize("kind", ["diag", "tied", "full"])
def test_the_posterior_matches_scipy_for_every_covariance_kind(kind: str) -> None:
    """Log responsibilities of three overlapping modes against scipy's densities and Bayes' rule."""
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 0.0], [1.5, 0.5, -1.0], [-1.0, 2.0, 0.5]])
    weights = np.array([0.5, 0.3, 0.2])

    def spd() -> np.ndarray:
        a = rng.normal(size=(3, 3))
        return a @ a.T + 0.3 * np.eye(3)

    covs = {"diag": [np.diag(rng.uniform(0.3, 2.0, 3)) for _ in range(3)], "tied": [spd()] * 3,
            "full": [spd() for _ in range(3)]}[kind]
    if kind == "tied":
        target = GMM(means=means.tolist(), weights=weights.tolist(), covs=covs[0].tolist(), covariance_type="tied")
    else:
        target = GMM(means=means.tolist(), weights=weights.tolist(), covs=np.stack(covs).tolist())
    assert target.covariance_type == kind
    x = target.sample(500, gen(16), dtype=torch.float64)
    joint = np.stack([np.log(weights[k]) + stats.multivariate_normal(means[k], covs[k]).logpdf(x.numpy())
                      for k in range(3)], 1)
    truth = joint - np.logaddexp.reduce(joint, axis=1, keepdims=True)
    assert np.allclose(target.mode_log_posterior(x).numpy(), truth, atol=1e-10)
    assert np.allclose(target.mode_log_posterior(x.float()).numpy(), truth, atol=1e-4)


def test_blocks_do_not_change_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    x = GMM(preset="gmm40").sample(3001, gen(14), dtype=torch.float64)
    target = GMM(preset="gmm40")
    whole = [sample_mode_weights(target, x, a) for a in ("hard", "soft")]
    monkeypatch.setattr(modes, "BLOCK_ENTRIES", 40 * 7)  # blocks of 7 rows
    blocked = [sample_mode_weights(target, x, a) for a in ("hard", "soft")]
    assert torch.equal(whole[0], blocked[0])
    assert torch.allclose(whole[1], blocked[1], rtol=1e-12, atol=0)
    assert float(whole[0].sum()) == pytest.approx(1.0) and float(whole[1].sum()) == pytest.approx(1.0)


def test_parameters_and_targets_are_checked() -> None:
    with pytest.raises(ValueError, match="assign"):
        ModeTV(assign="nearest")
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="tolerance"):
            ModesMissed(tolerance=bad)
    x = RING8.sample(100, gen(15))
    with pytest.raises(MetricInputError, match="'mode_tv' needs a mixture target"):
        ModeTV()(x, sb.get_target("gaussian", dim=2))
    with pytest.raises(MetricInputError, match=r"x must be \(n, 2\)"):
        ModeTV()(x[:, :1], RING8)


# -- suites -------------------------------------------------------------------------------------

SUITE = """
[suite]
name = "modes"
seed = 0
device = "cpu"

[targets.ring8]
name = "gmm"
preset = "ring8"

[processes.vp]

[estimators.oracle]

[samplers.ei]
name = "exponential_integrator"

[metrics]
mode_tv = {}
modes_missed = {}

[[grid]]
steps = [30]
n_samples = [1000]
seeds = [0]
"""


@pytest.mark.parametrize("target", ['name = "gaussian"\ndim = 2', 'name = "funnel"\ndim = 2',
                                    'name = "gmm"\nmeans = [[1.0, 2.0]]'])
def test_validation_refuses_a_non_mixture_target(tmp_path: Path, target: str) -> None:
    """A Gaussian, the funnel and a one-component mixture, each with a learned estimator (which any
    target accepts): one message naming the metric, the target label and what is needed."""
    path = tmp_path / "s.toml"
    path.write_text(SUITE.replace('name = "gmm"\npreset = "ring8"', target)
                    .replace("[estimators.oracle]", '[estimators.oracle]\nname = "mlp_dsm"'))
    with pytest.raises(SuiteError, match=r"metrics.mode_tv x targets.ring8: mode metric 'mode_tv' needs a mixture "
                                         r"target with at least two modes \(gmm\); target '(gaussian|funnel|gmm)' "
                                         r"is not one"):
        load_suite(path)
    path.write_text(SUITE.replace("[estimators.oracle]", '[estimators.oracle]\nname = "mlp_dsm"'))
    assert load_suite(path).cells()  # the same suite on ring8 is accepted


def test_runs_through_scorebench_run(tmp_path: Path) -> None:
    """The exponential integrator with the exact score on ring8: every mode covered, TV at the
    level of its floor, a bootstrap interval for the single seed."""
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    rows = read_results(tmp_path / "run").set_index("metric")
    assert set(rows.index) == {"mode_tv", "modes_missed"}
    assert (rows["status"] == "ok").all()
    tv = rows.loc["mode_tv"]
    assert 0 <= tv["value"] < 4 * tv["floor"] and 0 < tv["floor"] < 0.1
    # a percentile bootstrap interval; TV is biased upward near zero, so resamples sit above the value
    assert 0 < tv["ci_low"] <= tv["ci_high"] < 0.1
    assert rows.loc["modes_missed", "value"] == 0.0
