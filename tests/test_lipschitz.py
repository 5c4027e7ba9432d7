"""The ``lipschitz`` estimator (Bruno et al. 2023): the affine family fitted by SGLD, and the Lipschitz network.

Affine family: the SGLD recursion on the DSM gradient is affine in theta, so the mean and the mean
square error of theta_K are known exactly for every iteration K (an exact recursion, computed here
by quadrature over t); the fitted score at theta = mu is checked against the closed-form marginal
score.  Network family: the Lipschitz constant in x is measured from Jacobians (autograd) at many
points and times and by adversarial pairs, and must never exceed the declared bound.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import scorebench as sb
from scorebench.estimators.lipschitz import affine_score
from scorebench.estimators.networks import LipschitzMLP
from scorebench.estimators.training import FitDiverged, dsm_loss, dsm_pairs

from .conftest import gen

MU = [1.0, -2.0, 0.5]
TARGET = sb.get_target("gaussian_unknown_mean", dim=3, mean=MU)


# ---------------------------------------------------------------------------------------------
# affine family: exact law of the SGLD recursion
# ---------------------------------------------------------------------------------------------

def expectation_over_t(process: sb.ForwardProcess, values: torch.Tensor, t: torch.Tensor) -> float:
    """``E f(t)`` for ``t ~ U[t_min, T]`` by the trapezoidal rule in ``log t`` (``values = f(t)``)."""
    return float(torch.trapezoid(values * t, torch.log(t)) / (process.T - process.t_min))


def sgld_theory(
    process: sb.ForwardProcess, x: torch.Tensor, step: float, beta: float, batch: int, weighting: str, K: int,
) -> tuple[float, float]:
    """``(E ||theta_K - xbar||^2, factor)`` with ``E theta_K - xbar = factor * (theta_0 - xbar)``, ``theta_0 = 0``.

    With ``h = 2 w kappa^2`` and ``xi`` the gradient at ``theta = xbar`` (mean zero given t), theta_k - xbar
    follows ``e' = (1 - step hbar) e - step xibar + sqrt(2 step / beta) N``, so
    ``E e_K = (1 - step E h)^K e_0`` and ``E||e_K||^2 = q^K ||e_0||^2 + (1 - q^K) M`` with
    ``q = E (1 - step hbar)^2`` and ``M = (step^2 E||xibar||^2 + 2 step d / beta) / (1 - q)``;
    ``E||xi||^2 | t = 4 w^2 kappa^4 (tr S + d alpha^2 / sigma^2)`` for training data of covariance S.
    """
    t = torch.logspace(math.log10(process.t_min), math.log10(process.T), 200_001, dtype=torch.float64)
    alpha, sigma2 = process.alpha(t), process.sigma2(t)
    kappa = alpha / (alpha**2 + sigma2)
    w = {"score": torch.ones_like(t), "noise": sigma2, "denoiser": sigma2**2 / alpha**2}[weighting]
    d = x.shape[1]
    trace_s = float(x.var(dim=0, unbiased=False).sum())
    c = expectation_over_t(process, 2 * w * kappa**2, t)
    eh2 = expectation_over_t(process, 4 * w**2 * kappa**4, t)
    exi2 = expectation_over_t(process, 4 * w**2 * kappa**4 * (trace_s + d * alpha**2 / sigma2), t)
    eh2_batch = eh2 / batch + c**2 * (1 - 1 / batch)
    q = 1 - 2 * step * c + step**2 * eh2_batch
    stationary = (step**2 * exi2 / batch + 2 * step * d / beta) / (1 - q)
    e0 = float(x.mean(dim=0).pow(2).sum())
    return q**K * e0 + (1 - q**K) * stationary, (1 - step * c) ** K


@pytest.mark.slow
@pytest.mark.parametrize(
    ("process_name", "weighting", "step", "beta", "batch", "K"),
    [
        ("ou", "score", 0.05, 1e8, 1, 600),    # Bruno et al.'s setting, near stationarity
        ("ou", "score", 0.02, 1e8, 1, 60),     # transient: the bias (1 - step c)^K is still large
        ("vp", "noise", 0.2, 1e8, 4, 400),     # minibatches of 4
        ("ve", "noise", 0.2, 5.0, 1, 400),     # low inverse temperature: the Langevin term dominates
    ],
)
def test_affine_sgld_matches_the_exact_recursion(
    process_name: str, weighting: str, step: float, beta: float, batch: int, K: int
) -> None:
    process = sb.get_process(process_name)
    x = sb.get_target("gaussian_unknown_mean", dim=6).sample(400, gen(123), dtype=torch.float64)
    xbar = x.mean(dim=0)
    est = sb.get_estimator("lipschitz", step=step, beta=beta, batch_size=batch, iterations=K, weighting=weighting,
                           n_train=400)
    R = 80
    thetas = torch.stack([torch.tensor(est.fit(x, process, gen(s)).record.extra["theta"]) for s in range(R)])
    mse_theory, factor = sgld_theory(process, x, step, beta, batch, weighting, K)
    err2 = (thetas - xbar).pow(2).sum(dim=1)
    mse = float(err2.mean())
    assert abs(mse - mse_theory) <= 4 * float(err2.std()) / math.sqrt(R), (mse, mse_theory)
    bias = thetas.mean(dim=0) - xbar
    se = thetas.std(dim=0) / math.sqrt(R)
    assert ((bias - factor * (-xbar)).abs() <= 4 * se).all(), (bias, factor * (-xbar), se)


def test_affine_sgld_converges_to_the_unknown_mean() -> None:
    """Error well below ||mu||: within 3 root-mean-square errors of the exact recursion plus the data's own error."""
    process = sb.get_process("ou")
    step, K, n, batch = 0.01, 4000, 20_000, 8
    est = sb.get_estimator("lipschitz", step=step, iterations=K, n_train=n, batch_size=batch)
    model = est.fit(TARGET, process, gen(7))
    theta = torch.tensor(model.record.extra["theta"], dtype=torch.float64)
    mu = torch.tensor(MU, dtype=torch.float64)
    x_like = TARGET.sample(n, gen(8), dtype=torch.float64)   # only its covariance enters the theory
    mse, _ = sgld_theory(process, x_like, step, 1e8, batch, "score", K)
    tolerance = 3 * math.sqrt(mse + TARGET.dim / n)
    assert float((theta - mu).norm()) <= tolerance < 0.25 * float(mu.norm())
    # the recorded running DSM loss decreases from its start
    assert model.record.losses[-1] < model.record.losses[0]
    short = sb.get_estimator("lipschitz", step=step, iterations=50, n_train=n, batch_size=batch).fit(
        TARGET, process, gen(7))
    assert float((torch.tensor(short.record.extra["theta"]) - mu).norm()) > float((theta - mu).norm())


def test_affine_family_at_the_true_mean_is_the_exact_score(process: sb.ForwardProcess) -> None:
    mu = torch.tensor(MU, dtype=torch.float64)
    for t in (process.t_min, 0.37 * process.T, process.T):
        marginal = TARGET.marginal(process, t)
        x = marginal.sample(200, gen(1), dtype=torch.float64)
        torch.testing.assert_close(affine_score(mu, process, x, t), marginal.score(x), rtol=1e-10, atol=1e-10)
    if process.name == "ou":  # Bruno et al.'s form -x + mu e^{-t}
        x = TARGET.sample(50, gen(2), dtype=torch.float64)
        torch.testing.assert_close(affine_score(mu, process, x, 0.8), -x + mu * math.exp(-0.8), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("process_name", "weighting"), [("vp", "noise"), ("ve", "noise"), ("subvp", "noise")])
def test_affine_fit_is_sensible_under_other_processes(process_name: str, weighting: str) -> None:
    process = sb.get_process(process_name)
    model = sb.get_estimator("lipschitz", weighting=weighting, iterations=4000, step=0.05).fit(TARGET, process, gen(3))
    theta = torch.tensor(model.record.extra["theta"], dtype=torch.float64)
    assert torch.isfinite(theta).all()
    mu = torch.tensor(MU, dtype=torch.float64)
    assert float((theta - mu).norm()) < 0.5 * float(mu.norm())
    # the fitted model is the affine score at the recorded theta, and affine in x
    x = TARGET.marginal(process, 0.5 * process.T).sample(64, gen(4), dtype=torch.float64)
    t = torch.rand(64, generator=gen(5), dtype=torch.float64) * (process.T - process.t_min) + process.t_min
    torch.testing.assert_close(model(x, t), affine_score(theta, process, x, t), rtol=1e-12, atol=1e-12)
    y = x.flip(0)
    torch.testing.assert_close(model(0.3 * x + 0.7 * y, t), 0.3 * model(x, t) + 0.7 * model(y, t))
    assert sb.get_estimator("lipschitz").preserves_affinity
    # Lipschitz constant in x: max_t 1 / (alpha_t^2 + sigma_t^2) (1 for VP, 4/3 at most for sub-VP)
    grid = torch.linspace(process.t_min, process.T, 1001, dtype=torch.float64)
    expected = float((1 / (process.alpha(grid) ** 2 + process.sigma2(grid))).max())
    assert model.record.extra["lipschitz_bound"] == pytest.approx(expected, rel=1e-12)


def test_affine_reproducible_and_diverges_cleanly() -> None:
    ou = sb.get_process("ou")
    est = sb.get_estimator("lipschitz", iterations=3000, batch_size=3)
    a, b, c = (est.fit(TARGET, ou, gen(s)).record.extra["theta"] for s in (11, 11, 12))
    assert a == b and a != c
    with pytest.raises(FitDiverged) as info:
        sb.get_estimator("lipschitz", step=50.0, iterations=2000).fit(TARGET, ou, gen(0))
    assert info.value.record.status == "diverged" and info.value.record.stop_reason == "diverged"
    with pytest.raises(ValueError, match="non-finite"):
        sb.get_estimator("lipschitz", n_train=10).fit(torch.full((10, 3), math.inf), ou, gen(0))


# ---------------------------------------------------------------------------------------------
# network family: the Lipschitz bound
# ---------------------------------------------------------------------------------------------

def jacobian_norms(fn: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Largest singular value of d s / d x at each row (rows are independent, so one jacrev of the row sum)."""
    jac = torch.func.jacrev(lambda y: fn(y, t).sum(dim=0))(x)  # (d_out, n, d_in)
    return torch.linalg.matrix_norm(jac.permute(1, 0, 2), 2)


def adversarial_ratio(fn: torch.nn.Module, dim: int, t: torch.Tensor, steps: int = 150) -> float:
    """max ||s(x) - s(y)|| / ||x - y|| over pairs, by Adam ascent from random pairs."""
    g = gen(21)
    x = (3 * torch.randn(t.shape[0], dim, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = (x.detach() + 0.5 * torch.randn(t.shape[0], dim, generator=g, dtype=torch.float64)).requires_grad_(True)
    opt = torch.optim.Adam([x, y], lr=0.05)
    best = 0.0
    for _ in range(steps):
        ratio = (fn(x, t) - fn(y, t)).norm(dim=1) / (x - y).norm(dim=1)
        best = max(best, float(ratio.detach().max()))
        opt.zero_grad()
        (-torch.log(ratio).sum()).backward()
        opt.step()
    return best


def measured_lipschitz(fn: torch.nn.Module, dim: int, process: sb.ForwardProcess) -> float:
    """Largest Jacobian norm over 500 points at each of 4 times, and over adversarial pairs (float64)."""
    fn = copy.deepcopy(fn).double()
    worst = 0.0
    for t in (process.t_min, 0.05 * process.T, 0.3 * process.T, process.T):
        x = 3 * torch.randn(500, dim, generator=gen(int(1e4 * t)), dtype=torch.float64)
        tt = torch.full((500,), t, dtype=torch.float64)
        worst = max(worst, float(jacobian_norms(fn, x, tt).max()))
    times = torch.linspace(process.t_min, process.T, 64, dtype=torch.float64)
    return max(worst, adversarial_ratio(fn, dim, times))


@pytest.mark.parametrize(
    ("L", "skip", "activation"), [(0.5, 0.0, "maxmin"), (3.0, 0.0, "relu"), (2.0, 1.0, "tanh"), (7.0, 0.5, "maxmin")]
)
def test_network_bound_holds_at_initialisation(L: float, skip: float, activation: str) -> None:
    process = sb.get_process("vp")
    net = LipschitzMLP(process, torch.zeros(2), 1.0, L, 16, 2, gen(0), skip=skip, activation=activation)
    with torch.no_grad():  # large raw weights, so that every layer is normalised
        for w in net.weights:
            w.mul_(30.0)
    net.freeze()
    measured = measured_lipschitz(net, 2, process)
    assert measured <= (L + skip) * (1 + 1e-9)
    assert measured >= 0.05 * L  # not a vacuous bound (a zero network would pass the line above)


def test_bound_is_attained_by_an_aligned_network() -> None:
    """Raw weights 30 [I; 0], 30 I, 30 [I, 0], no biases, tanh: normalised to exact identities, so
    s(x) = L tanh(tanh(x)) near 0 (VP with unit data variance: c_in = 1) and ||J(0)|| = L: the
    normalisation divides by the exact norm, neither less (bound violated) nor more (bound loose)."""
    process, L, d, width = sb.get_process("vp"), 2.5, 2, 6
    net = LipschitzMLP(process, torch.zeros(d), 1.0, L, width, 2, gen(0), activation="tanh")
    with torch.no_grad():
        net.weights[0].copy_(30 * torch.eye(width, d))
        net.weights[1].copy_(30 * torch.eye(width))
        net.weights[2].copy_(30 * torch.eye(d, width))
        for p in [*net.time_weights, *net.biases]:
            p.zero_()
    net.freeze()
    fn = copy.deepcopy(net).double()
    at_zero = jacobian_norms(fn, torch.zeros(4, d, dtype=torch.float64), torch.linspace(0.01, 1.0, 4).double())
    assert (at_zero >= L * (1 - 1e-5)).all() and (at_zero <= L).all()
    assert measured_lipschitz(net, d, process) <= L


def test_skip_term_sets_the_constant_when_the_network_part_is_small() -> None:
    """||J|| is within [skip - L, skip + L] by the triangle inequality (J = -skip I + L J_g, ||J_g|| <= 1)."""
    process = sb.get_process("ou")
    net = LipschitzMLP(process, torch.zeros(3), 1.0, 0.01, 8, 1, gen(1), skip=1.0).freeze()
    fn = copy.deepcopy(net).double()
    x = torch.randn(200, 3, generator=gen(2), dtype=torch.float64)
    norms = jacobian_norms(fn, x, torch.full((200,), 0.4, dtype=torch.float64))
    assert ((norms >= 0.99 - 1e-12) & (norms <= 1.01 + 1e-12)).all()


@pytest.mark.slow
@pytest.mark.parametrize("L", [1.0, 4.0])
def test_network_bound_holds_after_training_and_training_lowers_the_dsm_loss(L: float) -> None:
    target = sb.get_target("gmm", preset="ring8")
    process = sb.get_process("vp")
    common = {"family": "network", "L": L, "width": 32, "depth": 2, "lr": 3e-3, "batch_size": 128, "n_train": 2000}
    short = sb.get_estimator("lipschitz", iterations=1, **common).fit(target, process, gen(0))
    model = sb.get_estimator("lipschitz", iterations=500, **common).fit(target, process, gen(0))
    assert model.record.extra["lipschitz_bound"] == L
    assert measured_lipschitz(model.fn, 2, process) <= L * (1 + 1e-9)
    assert measured_lipschitz(short.fn, 2, process) <= L * (1 + 1e-9)
    # held-out DSM loss on fixed pairs (independent draws), noise weighting as trained
    x0 = target.sample(20_000, gen(99), dtype=torch.float32)
    xt, t, z = dsm_pairs(x0, process, gen(98))
    before = float(dsm_loss(short, xt, t, z, process, "noise"))
    after = float(dsm_loss(model, xt, t, z, process, "noise"))
    assert after < 0.8 * before, (before, after)


def test_network_fit_is_reproducible_and_records_its_bound() -> None:
    process = sb.get_process("ou")
    est = sb.get_estimator("lipschitz", family="network", L=2.0, skip=0.5, width=16, depth=1, iterations=30,
                           batch_size=32, n_train=256)
    a, b, c = (est.fit(TARGET, process, gen(s)) for s in (5, 5, 6))
    x = TARGET.sample(100, gen(0))
    assert torch.equal(a(x, 0.3), b(x, 0.3)) and not torch.equal(a(x, 0.3), c(x, 0.3))
    assert not est.preserves_affinity
    extra = a.record.extra
    assert extra["lipschitz_bound"] == 2.5 and extra["L"] == 2.0 and extra["skip"] == 0.5
    assert len(a.record.losses) == len(a.record.loss_iterations) > 0 and a.record.stopped_at == 30
    assert est.describe() == {
        "name": "lipschitz", "family": "network", "L": 2.0, "skip": 0.5, "width": 16, "depth": 1,
        "activation": "maxmin", "lr": 1e-3, "iterations": 30, "batch_size": 32, "weighting": "noise",
        "n_train": 256, "seconds": None,
    }
    # the global random state is untouched by fitting
    state = torch.get_rng_state()
    est.fit(TARGET, process, gen(5))
    assert torch.equal(state, torch.get_rng_state())


def test_network_with_infinite_data_is_a_clear_error() -> None:
    est = sb.get_estimator("lipschitz", family="network", width=8, depth=1, iterations=5, batch_size=4, n_train=8)
    data = torch.zeros(8, 2)
    data[3, 0] = math.inf
    with pytest.raises(ValueError, match="non-finite"):
        est.fit(data, sb.get_process("vp"), gen(0))


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"family": "kernel"}, r"lipschitz: family must be one of 'affine', 'network', got 'kernel'"),
        ({"family": "network", "L": 0.0}, r"lipschitz: L must be a number in \(0, inf\) or None, got 0\.0"),
        ({"family": "network", "L": -1.0}, r"lipschitz: L must be a number in \(0, inf\) or None, got -1\.0"),
        ({"family": "network", "width": 0}, r"lipschitz: width must be an integer in \[1, inf\) or None, got 0"),
        ({"family": "network", "width": 7}, "width must be even"),
        ({"family": "network", "lr": 0.0}, r"lipschitz: lr must be a number in \(0, inf\) or None, got 0\.0"),
        ({"family": "network", "skip": -0.1}, r"lipschitz: skip must be a number in \[0, inf\) or None, got -0\.1"),
        ({"family": "network", "activation": "silu"},
         r"lipschitz: activation must be one of 'maxmin', 'relu', 'tanh' or None, got 'silu'"),
        ({"step": 0.0}, r"lipschitz: step must be a number in \(0, inf\) or None, got 0\.0"),
        ({"beta": -1.0}, r"lipschitz: beta must be a number in \(0, inf\) or None, got -1\.0"),
        ({"weighting": "snr"}, r"lipschitz: weighting must be one of 'score', 'noise', 'denoiser' or None, got 'snr'"),
        ({"batch_size": 64, "n_train": 10}, "n smaller than a minibatch"),
        ({"family": "network", "batch_size": 256, "n_train": 100}, "n smaller than a minibatch"),
        ({"iterations": 0}, r"lipschitz: iterations must be an integer in \[1, inf\) or None, got 0"),
        ({"L": 2.0}, "parameter 'L' applies to family 'network', not 'affine'"),
        ({"family": "network", "step": 0.1}, "parameter 'step' applies to family 'affine', not 'network'"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_estimator("lipschitz", **params)


def test_affine_describe_lists_its_parameters() -> None:
    assert sb.get_estimator("lipschitz").describe() == {
        "name": "lipschitz", "family": "affine", "step": 1e-2, "beta": 1e8, "iterations": 20_000,
        "batch_size": 1, "weighting": "score", "n_train": 10_000, "seconds": None,
    }
