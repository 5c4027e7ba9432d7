"""The neural JKO flow against the exact Gaussian JKO recursion, autograd and its own inverse."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import scorebench as sb
from scorebench.exact import GaussianLaw
from scorebench.metrics.moments import empirical_moments
from scorebench.samplers.jko_flow import FlowBlock, JKOFlow, step_sizes, truncation_bound
from scorebench.samplers.noise import NOISE_BLOCK, NoiseSource

from .conftest import gen

F64 = torch.float64
SMALL = {"iterations": 150, "width": 16, "batch_size": 500}  # small networks: the test file stays fast


def _exact_laws(score: sb.ScoreModel, process: sb.ForwardProcess, grid: torch.Tensor,
                horizon: float | None = None) -> list[GaussianLaw]:
    """The exact JKO recursion's laws rho_0 .. rho_N on ``grid`` (docs/theory.md (E3))."""
    plan = sb.get_sampler("jko_exact_gaussian", horizon=horizon).begin(score, process, grid)
    mu, U = plan.mu, plan.U
    return [GaussianLaw(mu + U @ m, U @ torch.diag(u**2) @ U.T) for m, u in plan.laws]


def _run(sampler: sb.Sampler, score: sb.ScoreModel, process: sb.ForwardProcess, n: int, grid: torch.Tensor,
         seed: int = 0) -> tuple[sb.SampleResult, dict[int, torch.Tensor]]:
    states: dict[int, torch.Tensor] = {}
    out = sampler.sample(score, process, n, grid, gen(seed), dtype=F64,
                         callback=lambda i, t, x, lo: states.__setitem__(i, x.clone()))
    return out, states


def _moment_law(x: torch.Tensor) -> GaussianLaw:
    return GaussianLaw(*empirical_moments(x))


def _floor(law: GaussianLaw, n: int, repeats: int = 8) -> float:
    """Mean Bures W2 between the moments of ``n`` exact draws of ``law`` and ``law`` itself."""
    chol = torch.linalg.cholesky(law.cov)
    g = gen(1234)
    vals = [sb.gaussian_w2(_moment_law(law.mean + torch.randn((n, law.dim), generator=g, dtype=F64) @ chol.T), law)
            for _ in range(repeats)]
    return float(np.mean(vals))


@dataclass
class GaussianCase:
    process: sb.ForwardProcess
    score: sb.ScoreModel
    pi: GaussianLaw
    grid: torch.Tensor
    laws: list[GaussianLaw]
    flow: JKOFlow
    out: sb.SampleResult
    states: dict[int, torch.Tensor]
    exact_states: dict[int, torch.Tensor]
    n: int


@pytest.fixture(scope="module")
def gaussian_case() -> GaussianCase:
    """d = 2, a rotated target (eigenvalues 0.25 and 1) whose mean lies 3 away along the slow eigenvector
    (so KL(rho_k || pi) soon decays at the slowest rate), five JKO blocks of h = 0.5: the VP grid's
    spacings rescaled to the flow time horizon = 2.5, for the flow and the exact recursion alike."""
    vp = sb.get_process("vp")
    cov = sb.get_target("gaussian", dim=2, condition_number=4.0).as_gaussian()[1]
    slow = torch.linalg.eigh(cov).eigenvectors[:, -1]
    target = sb.get_target("gaussian", dim=2, mean=(3.0 * slow).tolist(), condition_number=4.0)
    assert torch.allclose(target.as_gaussian()[1], cov)
    score = sb.get_estimator("oracle").fit(target, vp)
    grid = sb.time_grid(vp, 5)
    flow = sb.get_sampler("jko_flow", horizon=2.5, **SMALL)
    n = 1000
    out, states = _run(flow, score, vp, n, grid)
    assert [b["h"] for b in out.info["blocks"]] == pytest.approx([0.5] * 5)
    _, exact_states = _run(sb.get_sampler("jko_exact_gaussian", horizon=2.5), score, vp, n, grid)
    pi = GaussianLaw.of(target.marginal(vp, vp.t_min))
    laws = _exact_laws(score, vp, grid, horizon=2.5)
    return GaussianCase(vp, score, pi, grid, laws, flow, out, states, exact_states, n)


# -- the exact Gaussian recursion (E3) -----------------------------------------------------------------------


@pytest.mark.slow
def test_tracks_the_exact_gaussian_recursion(gaussian_case: GaussianCase) -> None:
    """Per step, the particles' moments are as close to the exact law rho_k as exact draws are (Monte-Carlo
    floor), and with common initial noise the flow moves each particle where the exact JKO map does, to
    within that floor."""
    c = gaussian_case
    for k in range(1, len(c.laws)):
        floor = _floor(c.laws[k], c.n)
        w2 = sb.gaussian_w2(_moment_law(c.states[k]), c.laws[k])
        assert w2 < 3 * floor, (k, w2, floor)
        rms = float((c.states[k] - c.exact_states[k]).norm(dim=1).pow(2).mean().sqrt())
        assert rms < floor, (k, rms, floor)


@pytest.mark.slow
def test_contracts_like_the_exact_recursion(gaussian_case: GaussianCase) -> None:
    """W2(rho_{k+1}, pi) <= W2(rho_k, pi) / (1 + h / lambda_max) (E3), up to the floor of both moment laws."""
    c = gaussian_case
    lam_max = float(torch.linalg.eigvalsh(c.pi.cov).max())
    h = 0.5
    w2 = [sb.gaussian_w2(_moment_law(c.states[k]), c.pi) for k in range(1, len(c.laws))]
    floors = [_floor(c.laws[k], c.n) for k in range(1, len(c.laws))]
    for k in range(1, len(w2)):
        assert w2[k] <= w2[k - 1] / (1.0 + h / lam_max) + 2 * (floors[k] + floors[k - 1]), (k, w2)
    assert w2[-1] < 0.25 * sb.gaussian_w2(c.laws[0], c.pi)


@pytest.mark.slow
def test_log_kl_falls_linearly_with_the_blocks(gaussian_case: GaussianCase) -> None:
    """log KL(rho_k || pi) against k: a straight line of negative slope, that of the exact recursion."""
    c = gaussian_case
    k = np.arange(1, len(c.laws))
    flow_kl = np.array([sb.gaussian_kl(_moment_law(c.states[i]), c.pi) for i in k])
    exact_kl = np.array([sb.gaussian_kl(c.laws[i], c.pi) for i in k])
    assert flow_kl.min() > 20 * 3 / (4 * c.n)  # far above the bias d(d+1)/(4n) of a moment-based KL
    (slope, icpt), (exact_slope, _) = np.polyfit(k, np.log(flow_kl), 1), np.polyfit(k, np.log(exact_kl), 1)
    fit = slope * k + icpt
    r2 = 1 - np.sum((np.log(flow_kl) - fit) ** 2) / np.sum((np.log(flow_kl) - np.log(flow_kl).mean()) ** 2)
    assert slope < 0 and r2 > 0.99, (slope, r2)
    assert slope == pytest.approx(exact_slope, rel=0.05)


@pytest.mark.slow
def test_log_density_is_the_exact_law_density(gaussian_case: GaussianCase) -> None:
    """The flow's change-of-variables density at its output is the exact recursion's Gaussian density
    (to the map error), and KL(rho_N || pi) from the flow's NLL matches the exact KL within Monte Carlo."""
    c = gaussian_case
    y = c.out.samples
    last = c.laws[-1]
    exact = torch.distributions.MultivariateNormal(last.mean, last.cov).log_prob(y)
    flow = c.out.state.log_density(y)
    assert float((flow - exact).abs().mean()) < 0.05
    pi_logp = torch.distributions.MultivariateNormal(c.pi.mean, c.pi.cov).log_prob(y)
    diff = flow - pi_logp
    kl = sb.gaussian_kl(last, c.pi)
    assert abs(float(diff.mean()) - kl) < 4 * float(diff.std()) / math.sqrt(c.n) + 0.01


def _exact_affine_map(score: sb.ScoreModel, process: sb.ForwardProcess, grid: torch.Tensor) -> tuple[torch.Tensor,
                                                                                                         torch.Tensor]:
    """``(A, c)`` of the exact first JKO map ``x -> A x + c`` on ``grid`` (E3, in the target's eigenbasis)."""
    plan = sb.get_sampler("jko_exact_gaussian", horizon=None).begin(score, process, grid)
    (m0, u0), (m1, u1) = plan.laws[:2]
    U, mu = plan.U, plan.mu
    A = U @ torch.diag(u1 / u0) @ U.T
    return A, mu + U @ m1 - A @ (mu + U @ m0)


def test_one_block_reaches_the_jko_minimum() -> None:
    """On fresh exact draws of rho_0, the trained block's JKO objective (E2 with the true potential) is at
    least the exact minimum, attained by the E3 map, and within 1% of the way from the identity map to it;
    the block moves points to within the Monte-Carlo floor of the exact map."""
    ou = sb.get_process("ou", T=1.0 + 1e-3)
    target = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0], condition_number=4.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    pi = GaussianLaw.of(target.marginal(ou, ou.t_min))
    flow = sb.get_sampler("jko_flow", horizon=None, **SMALL)
    trained = flow.sample(score, ou, 200, 1, gen(0), dtype=F64).state
    grid = sb.time_grid(ou, 1)
    A, c = _exact_affine_map(score, ou, grid)
    x = torch.randn((20_000, 2), generator=gen(7), dtype=F64)
    P = torch.linalg.inv(pi.cov)
    h = float(grid[0] - grid[1])

    def objective(y: torch.Tensor, logdet: torch.Tensor | float) -> torch.Tensor:
        r = y - pi.mean
        return 0.5 * ((r @ P) * r).sum(1) - logdet + (y - x).pow(2).sum(1) / (2 * h)

    y, logdet = trained.blocks[0].forward(x, "exact")
    y_star = x @ A.T + c
    best = objective(y_star, float(torch.linalg.slogdet(A).logabsdet))
    gap = objective(y, logdet) - best
    se = float(gap.std()) / math.sqrt(x.shape[0])
    assert float(gap.mean()) > -4 * se
    assert float(gap.mean()) < 0.01 * float((objective(x, 0.0) - best).mean())
    rms = float((y - y_star).norm(dim=1).pow(2).mean().sqrt())
    assert rms < _floor(GaussianLaw(c, A @ A.T), 1000)


def test_first_order_residual_vanishes_at_the_exact_map_and_shrinks_with_training() -> None:
    """Cheng et al.'s eps: zero (to rounding) for the exact JKO map written as a block, and smaller after
    more training iterations."""
    ou = sb.get_process("ou", T=1.0 + 1e-3)
    target = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0], condition_number=4.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    grid = sb.time_grid(ou, 1)
    A, c = _exact_affine_map(score, ou, grid)  # symmetric positive definite
    evals, evecs = torch.linalg.eigh(A)
    S = evecs @ torch.diag(evals.log()) @ evecs.T
    zeros = [torch.zeros(4, 2, dtype=F64), torch.zeros(2, 4, dtype=F64)]
    block = FlowBlock(torch.zeros(2, dtype=F64), 1.0, S, c, [torch.eye(4, 2, dtype=F64), zeros[1]],
                      [torch.zeros(4, dtype=F64), torch.zeros(2, dtype=F64)], 0.9, "tanh",
                      h=float(grid[0] - grid[1]))
    block.freeze()
    run = JKOFlow().begin(score, ou, grid)
    x = torch.randn((500, 2), generator=gen(3), dtype=F64)
    assert JKOFlow._first_order_residual(run, score, ou, block, x, 0) < 1e-10
    few = sb.get_sampler("jko_flow", **{**SMALL, "iterations": 5}).sample(score, ou, 500, 1, gen(0), dtype=F64)
    many = sb.get_sampler("jko_flow", horizon=None, **SMALL).sample(score, ou, 500, 1, gen(0), dtype=F64)
    assert many.info["residuals"][0] < 0.5 * few.info["residuals"][0]


@pytest.mark.slow
def test_geometric_step_sizes_track_the_exact_recursion_on_the_same_steps() -> None:
    """growth = 1.4 (JKO-iFlow): h_k grows geometrically, sums to the grid's span (or to horizon), and the
    flow follows the exact recursion run on the grid with those spacings."""
    ou = sb.get_process("ou", T=3.0 + 1e-3)
    grid = sb.time_grid(ou, 4)
    h = step_sizes(grid, 1.4)
    assert sum(h) == pytest.approx(3.0) and all(b / a == pytest.approx(1.4) for a, b in itertools.pairwise(h))
    assert step_sizes(grid, None) == pytest.approx([0.75] * 4)
    assert step_sizes(grid, None, horizon=6.0) == pytest.approx([1.5] * 4)
    assert step_sizes(grid, 1.4, horizon=6.0) == pytest.approx([2 * v for v in h])
    quad = sb.time_grid(ou, 4, "quadratic")
    assert step_sizes(quad, None, horizon=6.0) == pytest.approx((6.0 / 3.0 * (quad[:-1] - quad[1:])).tolist())
    target = sb.get_target("gaussian", dim=2, mean=[1.0, 1.0], condition_number=4.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    flow = sb.get_sampler("jko_flow", horizon=None, growth=1.4, **{**SMALL, "iterations": 100})
    out, states = _run(flow, score, ou, 1000, grid)
    assert [b["h"] for b in out.info["blocks"]] == pytest.approx(h)
    exact_grid = torch.tensor([ou.T] + [ou.T - s for s in np.cumsum(h)], dtype=F64)
    exact_grid[-1] = ou.t_min
    laws = _exact_laws(score, ou, exact_grid)
    for k in range(1, 5):
        assert sb.gaussian_w2(_moment_law(states[k]), laws[k]) < 3 * _floor(laws[k], 1000)


# -- the block: invertibility and log-determinants ---------------------------------------------------------


def _random_block(d: int, width: int = 8, lipschitz: float = 0.9, seed: int = 0) -> FlowBlock:
    g = gen(seed)
    weights = [torch.randn(width, d, generator=g, dtype=F64), torch.randn(width, width, generator=g, dtype=F64),
               torch.randn(d, width, generator=g, dtype=F64)]
    biases = [torch.randn(width, generator=g, dtype=F64), torch.randn(width, generator=g, dtype=F64),
              torch.randn(d, generator=g, dtype=F64)]
    return FlowBlock(torch.randn(d, generator=g, dtype=F64), 1.7, 0.3 * torch.randn(d, d, generator=g, dtype=F64),
                     torch.randn(d, generator=g, dtype=F64), weights, biases, lipschitz, "tanh")


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_block_inverse_logdet_and_lipschitz_bound(activation: str) -> None:
    block = _random_block(3)
    block.activation = activation
    x = torch.randn((50, 3), generator=gen(1), dtype=F64)
    y, logdet = block.forward(x, "exact")
    assert torch.allclose(block.inverse(y), x, atol=1e-10)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda v: block.forward(v[None], "none")[0][0], xi)
                       for xi in x[:10]])
    assert torch.allclose(logdet[:10], torch.linalg.slogdet(jac).logabsdet, atol=1e-10)
    assert (torch.linalg.slogdet(jac).sign > 0).all()
    assert torch.allclose(block.jacobian(x[:10]), jac, atol=1e-10)
    # the residual g is lipschitz-bounded: its Jacobian (autograd) has spectral norm <= 0.9 everywhere
    z = 3 * torch.randn((200, 3), generator=gen(2), dtype=F64)
    jg = torch.stack([torch.autograd.functional.jacobian(lambda v: block.residual(v[None])[0][0], zi) for zi in z])
    assert float(torch.linalg.matrix_norm(jg, ord=2).max()) <= 0.9 + 1e-12


def test_hutchinson_logdet_is_unbiased_for_the_series_and_the_series_converges() -> None:
    block = _random_block(4, lipschitz=0.6)
    z = torch.randn((1, 4), generator=gen(5), dtype=F64)
    layers = block.layers()
    _, derivs = block.residual(z, layers)
    J = block.residual_jacobian(derivs, layers)[0]
    terms = 6
    series = sum((-1) ** (k + 1) / k * torch.trace(torch.linalg.matrix_power(J, k)) for k in range(1, terms + 1))
    # one Rademacher probe per row, the same point repeated: mean and standard error over 20000 probes
    m = 20_000
    est = block.hutchinson_logdet([d.expand(m, -1) for d in derivs], layers, gen(6), 1, terms, m)
    se = float(est.std()) / math.sqrt(m)
    assert abs(float(est.mean()) - float(series)) < 4 * se
    exact = torch.linalg.slogdet(torch.eye(4, dtype=F64) + J).logabsdet
    for k in (2, 6, 12):
        partial = sum((-1) ** (j + 1) / j * torch.trace(torch.linalg.matrix_power(J, j)) for j in range(1, k + 1))
        assert abs(float(partial - exact)) <= truncation_bound(4, 0.6, k)


def test_hutchinson_path_trains_above_the_exact_dimension() -> None:
    """With exact_logdet_dim below d the Hutchinson estimator is used and the flow still contracts to pi."""
    ou = sb.get_process("ou", T=1.5 + 1e-3)
    target = sb.get_target("gaussian", dim=3, mean=[1.5, -1.0, 0.5], condition_number=4.0)
    score = sb.get_estimator("oracle").fit(target, ou)
    flow = sb.get_sampler("jko_flow", horizon=None, exact_logdet_dim=2, probes=2, **{**SMALL, "iterations": 60})
    grid = sb.time_grid(ou, 3)
    out = flow.sample(score, ou, 1000, grid, gen(0), dtype=F64)
    assert [b["logdet"] for b in out.info["blocks"]] == ["hutchinson"] * 3
    assert all(math.isnan(r) for r in out.info["residuals"])
    laws = _exact_laws(score, ou, grid)
    assert sb.gaussian_w2(_moment_law(out.samples), laws[-1]) < 3 * _floor(laws[-1], 1000)


# -- the sampler interface ----------------------------------------------------------------------------------


def test_flow_inverse_recovers_the_initial_noise_and_nfe_is_counted() -> None:
    ou = sb.get_process("ou")
    target = sb.get_target("gaussian", dim=2, mean=[1.0, 0.0])
    score = sb.get_estimator("oracle").fit(target, ou)
    flow = sb.get_sampler("jko_flow", horizon=None, **{**SMALL, "iterations": 20})
    out = flow.sample(score, ou, 300, 3, gen(4), dtype=F64)
    x0 = NoiseSource.from_generator(gen(4), F64).normal(0, 0, 300, (2,)) * ou.prior_std
    assert torch.allclose(out.state.inverse(out.samples), x0, atol=1e-10)
    assert torch.allclose(out.state.forward(x0), out.samples, atol=1e-12)
    assert out.nfe == score.calls == 3 * (20 + 1)  # one score call per iteration, one per residual


def test_deterministic_chunk_invariant_and_runs_without_grad() -> None:
    vp = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(sb.get_target("gaussian", dim=2), vp)
    flow = sb.get_sampler("jko_flow", horizon=None, **{**SMALL, "iterations": 10})
    n = NOISE_BLOCK + NOISE_BLOCK // 2
    a = flow.sample(score, vp, n, 2, gen(5), dtype=F64).samples
    with torch.no_grad():
        b = flow.sample(score, vp, n, 2, gen(5), dtype=F64, chunk_size=NOISE_BLOCK).samples
    c = flow.sample(score, vp, n, 2, gen(6), dtype=F64).samples
    assert flow.batch_invariant and float((a - b).abs().max()) < 1e-12
    assert not torch.equal(a, c)
    on_particles = sb.get_sampler("jko_flow", n_train=None, batch_size=None, **{"iterations": 10, "width": 16})
    assert not on_particles.batch_invariant and not on_particles.affine
    d = on_particles.sample(score, vp, 200, 2, gen(5), dtype=F64).samples
    assert torch.equal(d, on_particles.sample(score, vp, 200, 2, gen(5), dtype=F64).samples)


def test_x_init_only_when_training_on_the_particles() -> None:
    """With its own training set the flow is trained on the prior's draws, so x_init is refused; trained on
    the particles it accepts x_init, but then has no density and no first-order residual to report."""
    ou = sb.get_process("ou")
    score = sb.get_estimator("oracle").fit(sb.get_target("gaussian", dim=2), ou)
    x_init = 2.0 + torch.randn((100, 2), generator=gen(1), dtype=F64)
    with pytest.raises(ValueError, match="x_init needs n_train=None"):
        sb.get_sampler("jko_flow", horizon=None, iterations=2).sample(score, ou, 100, 2, gen(0), x_init=x_init)
    flow = sb.get_sampler("jko_flow", horizon=None, n_train=None, batch_size=None, iterations=20, width=8)
    out = flow.sample(score, ou, 100, 2, gen(0), x_init=x_init)
    assert torch.isfinite(out.samples).all() and all(math.isnan(r) for r in out.info["residuals"])
    assert float(out.samples.mean(0).norm()) < float(x_init.mean(0).norm())  # pulled toward pi's mean 0
    with pytest.raises(ValueError, match="density is unknown"):
        out.state.log_density(out.samples)


@pytest.mark.parametrize("name", ["vp", "ou", "ve", "subvp"])
def test_every_process_and_float32(name: str) -> None:
    process = sb.get_process(name)
    score = sb.get_estimator("oracle").fit(sb.get_target("gaussian", dim=3, mean=[1.0, -2.0, 0.5]), process)
    out = sb.get_sampler("jko_flow", horizon=None, **{**SMALL, "iterations": 5}).sample(score, process, 50, 3, gen(0))
    assert out.samples.shape == (50, 3) and out.samples.dtype == torch.float32 and out.steps == 3
    assert torch.isfinite(out.samples).all()


def test_non_gaussian_target_moves_toward_pi_and_density_integrates_to_one() -> None:
    vp = sb.get_process("vp")
    target = sb.get_target("gmm", preset="ring8")
    score = sb.get_estimator("oracle").fit(target, vp)
    flow = sb.get_sampler("jko_flow", horizon=None, **{**SMALL, "iterations": 40})
    out = flow.sample(score, vp, 1000, 2, gen(0), dtype=F64)
    assert torch.isfinite(out.samples).all()
    ref = target.marginal(vp, vp.t_min).sample(1000, gen(1), dtype=F64)
    sw = sb.get_metric("sliced_w2")
    before = sw(out.state.inverse(out.samples), ref, gen(2))
    after = sw(out.samples, ref, gen(2))
    assert after < 0.6 * before, (before, after)
    # change of variables: the flow's density is normalised (midpoint rule on [-10, 10]^2)
    edges = torch.linspace(-10, 10, 201, dtype=F64)
    mid = 0.5 * (edges[1:] + edges[:-1])
    mass = float(out.state.log_density(torch.cartesian_prod(mid, mid)).exp().sum()) * float(edges[1] - edges[0]) ** 2
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_nan_score_raises_a_clear_error() -> None:
    from scorebench.estimators.oracle import OracleScore

    class NaNScore(OracleScore):
        def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, math.nan)

    vp = sb.get_process("vp")
    with pytest.raises(FloatingPointError, match="training loss became nan"):
        sb.get_sampler("jko_flow", iterations=3).sample(NaNScore(sb.get_target("gaussian"), vp), vp, 20, 2, gen(0))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"iterations": 0}, r"iterations must be an integer in \[1, inf\), got 0"),
    ({"lr": -1.0}, r"lr must be a number in \(0, inf\), got -1\.0"),
    ({"width": 2.5}, r"width must be an integer in \[1, inf\), got 2\.5"),
    ({"depth": 0}, r"depth must be an integer in \[1, inf\) \(hidden layers\), got 0"),
    ({"activation": "relu"}, r"activation must be one of 'tanh', 'softplus', got 'relu'"),
    ({"lipschitz": 1.0}, r"lipschitz must be a number in \(0, 1\) \(invertibility\), got 1\.0"),
    ({"grad_clip": 0}, r"grad_clip must be a number in \(0, inf\) or None, got 0"),
    ({"growth": True}, r"growth must be a number in \(0, inf\) or None \(the grid's spacings\), got True"),
    ({"horizon": 0.0}, r"horizon must be a number in \(0, inf\) \(total JKO flow time\) or None "
     r"\(the time grid's own spacings\), got 0\.0"),
    ({"n_train": 1}, r"n_train must be an integer in \[2, inf\) or None \(the particles\), got 1"),
    ({"batch_size": 0}, r"batch_size must be an integer in \[1, inf\) or None \(full batch\), got 0"),
    ({"exact_logdet_dim": -1}, r"exact_logdet_dim must be an integer in \[0, inf\), got -1"),
    ({"probes": 0}, r"probes must be an integer in \[1, inf\), got 0"),
    ({"series_terms": 0}, r"series_terms must be an integer in \[1, inf\), got 0"),
    ({"warm_start": 1}, "warm_start must be true or false"),
])
def test_bad_parameters_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=f"jko_flow: {match}"):
        sb.get_sampler("jko_flow", **kwargs)


def test_describe_lists_every_parameter() -> None:
    flow = sb.get_sampler("jko_flow", horizon=None, width=8, growth=1.4)
    described = flow.describe()
    assert described["name"] == "jko_flow" and described["width"] == 8 and described["growth"] == 1.4
    import inspect

    assert set(inspect.signature(JKOFlow).parameters) == set(described) - {"name"}
