"""The NTK score estimators ``ntk`` (network) and ``ntk_kernel`` (closed-form kernel GD), docs/theory.md A and F.6."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import scorebench as sb
from scorebench.estimators import FitDiverged
from scorebench.estimators.ntk import (
    antisymmetric_init,
    kernel_complexity,
    kernel_gd_gain,
    network_output,
    relu_ntk,
    rule_stop,
)
from scorebench.estimators.oracle import exact_score
from scorebench.estimators.training import dsm_constant, dsm_loss, dsm_pairs, process_scales
from scorebench.metrics.score import squared_error

from .conftest import gen

RING8 = sb.get_target("gmm", preset="ring8")
GAUSSIAN = sb.get_target("gaussian", dim=3, mean=[1.0, -1.0, 0.5], condition_number=5.0)
OU = sb.get_process("ou")


def random_features(n: int, d: int, seed: int) -> Tensor:
    """Points shaped like the input map's ``z~ = (x~, u, 1)``."""
    g = gen(seed)
    x = torch.randn((n, d), generator=g, dtype=torch.float64) / math.sqrt(d)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return torch.cat([x, u[:, None], torch.ones(n, 1, dtype=torch.float64)], 1)


def loglog_slope(m: list[float], err: list[float]) -> tuple[float, float]:
    """Least-squares slope of log err on log m and its standard error."""
    X = torch.tensor(m, dtype=torch.float64).log()
    Y = torch.tensor(err, dtype=torch.float64).log()
    A = torch.stack([X, torch.ones_like(X)], 1)
    coef = torch.linalg.lstsq(A, Y[:, None]).solution[:, 0]
    resid = Y - A @ coef
    cov = resid.pow(2).sum() / (len(m) - 2) * torch.linalg.inv(A.T @ A)
    return float(coef[0]), float(cov[0, 0].sqrt())


# ---------------------------------------------------------------------------------------
# The kernel and the network at initialisation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", ["shared", "independent"])
def test_analytic_kernel_is_the_empirical_tangent_kernel_of_a_wide_network(heads: str) -> None:
    n, d, width = 12, 2, 1 << 14
    z = random_features(n, d, 0)
    W, a = antisymmetric_init(width, z.shape[1], d, heads, 1.0, gen(1), torch.float64)
    assert network_output(W, a, z).abs().max() < 1e-12  # antisymmetric init: g = 0 up to rounding

    def empirical(weights: Tensor) -> Tensor:
        jac = torch.func.jacrev(lambda w: network_output(w, a, z))(weights)  # (n, d, *W.shape)
        flat = jac.reshape(n, d, -1)
        return torch.einsum("ipk,jqk->ijpq", flat, flat)  # (n, n, d, d)

    emp = empirical(W)
    K = relu_ntk(z, z)
    # per entry: an average over width/2 independent pairs of a bounded term, |term| <= |<z, z'>|
    sd = (z @ z.T).abs() / math.sqrt(width / 2)
    for p in range(d):
        for q in range(d):
            expected = K if p == q else torch.zeros_like(K)
            assert ((emp[:, :, p, q] - expected).abs() <= 5 * sd).all(), (p, q)
    diag_err = (emp[:, :, 0, 0] - K).abs().max()
    assert diag_err > 0  # a finite-width kernel, not the limit by construction
    # the kernel does not depend on the init scale nu (indicators are scale free)
    W3, _ = antisymmetric_init(width, z.shape[1], d, heads, 3.0, gen(1), torch.float64)
    torch.testing.assert_close(empirical(W3), emp, rtol=1e-12, atol=1e-12)


def test_relu_ntk_closed_form_matches_monte_carlo_over_neurons() -> None:
    # E_w[1{w.z > 0} 1{w.z' > 0}] <z, z'> with w ~ N(0, I), by direct sampling
    z = random_features(6, 3, 2)
    w = torch.randn((400_000, z.shape[1]), generator=gen(3), dtype=torch.float64)
    act = (z @ w.T > 0).to(torch.float64)
    mc = (act @ act.T / w.shape[0]) * (z @ z.T)
    torch.testing.assert_close(relu_ntk(z, z), mc, rtol=0, atol=5e-3)


# ---------------------------------------------------------------------------------------
# Kernel gradient descent in closed form
# ---------------------------------------------------------------------------------------


def test_closed_form_kernel_gd_equals_iterated_kernel_gd_on_training_points() -> None:
    n = 60
    x0 = RING8.sample(n, gen(5), dtype=torch.float64)
    xt, t, _ = dsm_pairs(x0, OU, gen(6), t_min=0.05)  # the pairs fit() draws from the same generator
    for k in (1, 7, 60, 700):
        model = sb.get_estimator(
            "ntk_kernel", n_train=n, iterations=k, stopping="none", val_fraction=0.0, t_min=0.05
        ).fit(x0, OU, gen(6))
        Z = model.features(xt, t)
        Y = (x0 - model.label_mean) / model.label_scale
        H = relu_ntk(Z, Z)
        lr = model.record.extra["lr"]
        F = torch.zeros_like(Y)
        losses = {0: float(Y.pow(2).sum(1).mean())}
        for j in range(1, k + 1):
            F = F - (lr / n) * H @ (F - Y)
            losses[j] = float((F - Y).pow(2).sum(1).mean())
        torch.testing.assert_close(model.denoiser(xt, t), model.label_mean + model.label_scale * F,
                                   rtol=1e-9, atol=1e-9)
        rec = model.record
        for j, loss in zip(rec.loss_iterations, rec.losses, strict=True):
            assert loss == pytest.approx(model.label_scale**2 * losses[j], rel=1e-9, abs=1e-12)
        assert (rec.stopped_at, rec.stop_reason, rec.iterations) == (k, "iterations", k)


def test_kernel_gd_gain_is_continuous_at_zero_eigenvalue() -> None:
    lr, k = 0.7, 50
    lam = torch.tensor([0.0, 1e-300, 1e-14, 1e-3, 0.5, 1.2], dtype=torch.float64)
    gain = kernel_gd_gain(lam, lr, k)
    assert gain[0] == gain[1] == k * lr
    assert gain[2] == pytest.approx(k * lr, rel=1e-9)
    exact = (1 - (1 - lr * lam[3:]) ** k) / lam[3:]
    torch.testing.assert_close(gain[3:], exact, rtol=1e-12, atol=0)


def test_rule_stop_is_the_first_crossing_found_by_scanning() -> None:
    z = random_features(80, 2, 7)
    lam = torch.linalg.eigvalsh(relu_ntk(z, z) / 80).clamp(min=0)
    lr = 1.0 / float(lam.sum())
    for sigma, B in [(0.9, 1.0), (0.3, 1.0), (0.8, 7.0), (0.5, 30.0)]:
        k_hat = rule_stop(lam, lr, sigma, B)
        first = next(k for k in range(1, 10**6)
                     if kernel_complexity(lam, 1 / math.sqrt(lr * k)) > B / (2 * math.e * sigma * lr * k))
        assert k_hat == first - 1


# ---------------------------------------------------------------------------------------
# The network converges to the kernel predictor as the width grows (A.7 check 1)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", ["shared", "independent"])
def test_network_tracks_kernel_gd_at_rate_one_over_sqrt_width(heads: str) -> None:
    common = {"n_train": 64, "iterations": 20, "stopping": "none", "val_fraction": 0.0, "t_min": 0.05}
    kernel = sb.get_estimator("ntk_kernel", **common).fit(RING8, OU, gen(3))
    x0 = RING8.sample(300, gen(7), dtype=torch.float64)
    xt, t, _ = dsm_pairs(x0, OU, gen(8), t_min=0.05)
    f_kernel = kernel.denoiser(xt, t)
    widths, errors = [], []
    for m in (64, 256, 1024, 4096):
        for seed in range(4):
            net = sb.get_estimator("ntk", width=m, heads=heads, init_seed=seed, **common).fit(RING8, OU, gen(3))
            widths.append(m)
            errors.append(float((net.denoiser(xt, t) - f_kernel).pow(2).sum(1).mean().sqrt()))
    slope, se = loglog_slope(widths, errors)
    print(f"lazy-training fidelity ({heads} heads): log-log slope {slope:.3f} +- {se:.3f}")
    assert -0.75 <= slope <= -0.3
    assert max(errors[-4:]) < 0.25 * min(errors[:4])


# ---------------------------------------------------------------------------------------
# Risk: F.6, overfitting, early stopping, score error
# ---------------------------------------------------------------------------------------


def test_heldout_dsm_minus_f6_constant_is_the_exact_excess_score_risk() -> None:
    model = sb.get_estimator("ntk_kernel", n_train=300, stopping="validation", t_min=0.05).fit(RING8, OU, gen(0))
    N = 20_000
    for t in (0.1, 0.3, 0.6):
        g = gen(10)
        x0 = RING8.sample(N, g, dtype=torch.float64)
        z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        tt = torch.full((N,), t, dtype=torch.float64)
        alpha, sigma = process_scales(OU, tt)
        xt = alpha[:, None] * x0 + sigma[:, None] * z
        s_hat, s_star = model(xt, tt), exact_score(RING8, OU, xt, t)
        dsm = float(dsm_loss(model, xt, tt, z, OU))
        c = float(dsm_constant(RING8, OU, tt[:1], gen(11), n_mc=N))
        per_dsm = (s_hat + z / sigma[:, None]).pow(2).sum(1)
        per_err = (s_hat - s_star).pow(2).sum(1)
        xc = RING8.marginal(OU, t).sample(N, gen(12), dtype=torch.float64)
        se = math.sqrt(float((per_dsm - per_err).var()) / N
                       + float(RING8.marginal(OU, t).score(xc).pow(2).sum(1).var()) / N)
        excess = float(per_err.mean())
        print(f"t = {t}: held-out DSM - c(t) = {dsm - c:.4f}, exact excess risk = {excess:.4f}, SE {se:.4f}")
        assert abs(dsm - c - excess) < 4 * se, (t, dsm - c, excess, se)
        assert excess > 10 * se  # a real error, not noise


def score_errors(model: sb.ScoreModel, points: dict[float, tuple[Tensor, Tensor]]) -> Tensor:
    """``E_{x ~ p_t} ||s_hat(x, t) - grad log p_t(x)||^2`` at each time of ``points``."""
    return torch.tensor([float((model(x, t) - s).pow(2).sum(1).mean()) for t, (x, s) in points.items()])


def test_excess_risk_is_u_shaped_in_iterations_and_the_rule_stops_near_the_minimum() -> None:
    # times spread evenly over the training range [t_min, T], the law of the training times
    t_min = 0.05
    times = torch.linspace(t_min, OU.T, 12, dtype=torch.float64).tolist()
    points = {}
    for i, t in enumerate(times):
        x = RING8.marginal(OU, t).sample(400, gen(20 + i), dtype=torch.float64)
        points[t] = (x, exact_score(RING8, OU, x, t))
    tt = torch.tensor(times, dtype=torch.float64)
    # E||f - f*||^2 = (sigma^4 / alpha^2) E||s - s*||^2 (A.2): the regression risk the rule controls
    to_denoiser = OU.sigma2(tt) ** 2 / OU.alpha(tt) ** 2
    common = {"n_train": 200, "val_fraction": 0.0, "t_min": t_min}
    ks = [4**j for j in range(11)]  # 1 ... ~1e6
    errors = [score_errors(sb.get_estimator("ntk_kernel", iterations=k, stopping="none", **common)
                           .fit(RING8, OU, gen(0)), points) for k in ks]
    score_risk = [float(e.mean()) for e in errors]
    regression_risk = [float((to_denoiser * e).mean()) for e in errors]
    print("score risk by iteration:", {k: round(r, 3) for k, r in zip(ks, score_risk, strict=True)})
    print("regression risk by iteration:", {k: round(r, 4) for k, r in zip(ks, regression_risk, strict=True)})
    for risk in (score_risk, regression_risk):
        best = min(range(len(ks)), key=risk.__getitem__)
        assert 0 < best < len(ks) - 1
        assert risk[0] > 1.5 * risk[best] and risk[-1] > 1.5 * risk[best]
    model = sb.get_estimator("ntk_kernel", iterations=10**6, stopping="rule", **common).fit(RING8, OU, gen(0))
    rec = model.record
    assert rec.stop_reason == "rule" and rec.stopped_at == rec.extra["rule_k"] < 10**6
    rule_risk = float((to_denoiser * score_errors(model, points)).mean())
    print(f"rule stops at {rec.stopped_at} (B = {rec.extra['rkhs_norm']:.2f}): regression risk {rule_risk:.4f}, "
          f"min over the grid {min(regression_risk):.4f}")
    assert rule_risk < 3.0 * min(regression_risk)


class MeanDenoiser(sb.ScoreModel):
    """Baseline ``f = E[X_0]``, ``s = (alpha_t E[X_0] - x) / sigma_t^2``: every learned denoiser starts here."""

    def __init__(self, target: sb.Target, process: sb.ForwardProcess) -> None:
        super().__init__(target.dim, process)
        self.mean = target.mean()

    def score(self, x: Tensor, t: float | Tensor) -> Tensor:
        tt = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        alpha, sigma2 = self.process.alpha(tt)[:, None], self.process.sigma2(tt)[:, None]
        return ((alpha * self.mean - x.double()) / sigma2).to(x.dtype)


@pytest.mark.parametrize(
    ("name", "params", "target", "process"),
    [
        ("ntk_kernel", {"n_train": 1000}, GAUSSIAN, "vp"),
        ("ntk_kernel", {"n_train": 1000}, RING8, "ou"),
        ("ntk", {"n_train": 400, "width": 512, "iterations": 500}, RING8, "vp"),
    ],
)
def test_score_mse_is_far_below_the_mean_denoiser(name: str, params: dict, target: sb.Target, process: str) -> None:
    # score_mse at 5 log-spaced times in the training range [t_min, T]
    proc = sb.get_process(process, t_min=0.05)
    model = sb.get_estimator(name, **params).fit(target, proc, gen(0))
    baseline = MeanDenoiser(target, proc)
    times = torch.logspace(math.log10(proc.t_min), math.log10(proc.T), 5, dtype=torch.float64).clamp(proc.t_min, proc.T)
    ours, base = [], []
    for i, t in enumerate(times.tolist()):
        x = target.marginal(proc, t).sample(4000, gen(30 + i))
        ours.append(squared_error(model, target, proc, x, t))
        base.append(squared_error(baseline, target, proc, x, t))
    assert all(math.isfinite(v) for v in ours)
    ratio = sum(ours) / sum(base)
    print(f"{name} on {target.name}/{process}: score_mse / mean-denoiser score_mse = {ratio:.3f}")
    assert ratio < 0.35


# ---------------------------------------------------------------------------------------
# Contract: processes, reproducibility, dtype, stopping records, errors
# ---------------------------------------------------------------------------------------

SMALL = {
    "ntk": {"width": 32, "n_train": 60, "iterations": 40},
    "ntk_kernel": {"n_train": 60, "iterations": 40},
}


@pytest.mark.parametrize("name", ["ntk", "ntk_kernel"])
@pytest.mark.parametrize("process_name", ["vp", "ou", "ve", "subvp"])
def test_every_process_reproducible_and_dtype_follows_x(name: str, process_name: str) -> None:
    proc = sb.get_process(process_name)
    est = sb.get_estimator(name, **SMALL[name])
    a, b, c = (est.fit(RING8, proc, gen(s)) for s in (0, 0, 1))
    x = RING8.sample(30, gen(9))  # float32
    t = torch.linspace(proc.t_min, proc.T, 30, dtype=torch.float64)
    out = a(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert a(x.double(), 0.3 * proc.T).dtype == torch.float64
    assert torch.equal(out, b(x, t))
    assert not torch.allclose(out, c(x, t))
    # the score is the denoiser form (A1)
    alpha, sigma = process_scales(proc, t)
    expected = (alpha[:, None] * a.denoiser(x.double(), t) - x.double()) / (sigma**2)[:, None]
    torch.testing.assert_close(a(x.double(), t), expected)
    assert a.record.status == "ok" and a.record.fit_seconds > 0
    assert len(a.record.losses) == len(a.record.val_losses) == len(a.record.loss_iterations)


@pytest.mark.parametrize("name", ["ntk", "ntk_kernel"])
def test_validation_and_rule_return_the_iterate_they_name(name: str) -> None:
    base = {**SMALL[name], "n_train": 100, "iterations": 3000}
    x = RING8.sample(50, gen(9), dtype=torch.float64)
    for stopping in ("validation", "rule"):
        model = sb.get_estimator(name, stopping=stopping, **base).fit(RING8, OU, gen(2))
        rec = model.record
        if stopping == "validation":
            best = min(range(len(rec.val_losses)), key=rec.val_losses.__getitem__)
            assert rec.stopped_at == rec.loss_iterations[best] < rec.iterations == 3000
            assert rec.stop_reason == "validation"
        else:
            assert rec.stop_reason == "rule" and rec.stopped_at == rec.extra["rule_k"] == rec.iterations < 3000
        plain = sb.get_estimator(name, stopping="none", **{**base, "iterations": max(rec.stopped_at, 1)})
        if rec.stopped_at > 0:
            torch.testing.assert_close(model(x, 0.5), plain.fit(RING8, OU, gen(2))(x, 0.5), rtol=1e-10, atol=1e-10)


def test_seconds_budget_stops_the_network() -> None:
    model = sb.get_estimator("ntk", width=32, n_train=60, iterations=10**6, stopping="none",
                             seconds=0.05).fit(RING8, OU, gen(0))
    rec = model.record
    assert rec.stop_reason == "seconds" and 0 < rec.stopped_at == rec.iterations < 10**6
    assert rec.loss_iterations[-1] == rec.iterations


def test_radius_truncates_the_normalised_input() -> None:
    model = sb.get_estimator("ntk_kernel", n_train=50, iterations=5, radius=0.5).fit(RING8, OU, gen(0))
    x = torch.tensor([[100.0, -50.0], [0.01, 0.0]], dtype=torch.float64)
    z = model.features(x, torch.full((2,), 0.3, dtype=torch.float64))
    assert z[0, :2].norm() == pytest.approx(0.5)
    assert z[1, :2].norm() < 0.5 and z[:, -1].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("name", ["ntk", "ntk_kernel"])
def test_absurd_step_size_diverges(name: str) -> None:
    est = sb.get_estimator(name, **{**SMALL[name], "iterations": 500}, lr=1e6, stopping="none")
    with pytest.raises(FitDiverged) as info:
        est.fit(RING8, OU, gen(0))
    assert info.value.record.status == "diverged" and info.value.record.stop_reason == "diverged"


def test_describe_lists_every_parameter() -> None:
    est = sb.get_estimator("ntk", width=8, nu=2.0, heads="independent", rkhs_norm=5.0)
    desc = est.describe()
    assert desc["name"] == "ntk" and (desc["width"], desc["nu"], desc["heads"], desc["rkhs_norm"]) == (
        8, 2.0, "independent", 5.0)
    for key in ("n_train", "iterations", "seconds", "lr", "stopping", "val_fraction", "sigma_xi", "t_min",
                "radius", "log_points", "max_n", "init_seed", "kernel_gap"):
        assert key in desc
    network_only = {"width", "nu", "heads", "init_seed", "kernel_gap"}
    assert set(sb.get_estimator("ntk_kernel").describe()) == set(desc) - network_only


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("ntk", {"width": 0}, "width must be an even integer >= 2"),
        ("ntk", {"width": 33}, "width must be an even integer >= 2"),
        ("ntk", {"n_train": 1}, r"ntk: n_train must be an integer in \[2, inf\), got 1"),
        ("ntk_kernel", {"n_train": 1}, r"ntk_kernel: n_train must be an integer in \[2, inf\), got 1"),
        ("ntk", {"lr": 0.0}, r"ntk: lr must be a number in \(0, inf\) or None \(automatic\), got 0\.0"),
        ("ntk_kernel", {"lr": -1.0}, r"ntk_kernel: lr must be a number in \(0, inf\) or None \(automatic\), got -1\.0"),
        ("ntk", {"stopping": "patience"}, r"ntk: stopping must be one of 'rule', 'validation', 'none', got 'patience'"),
        ("ntk_kernel", {"stopping": "never"},
         r"ntk_kernel: stopping must be one of 'rule', 'validation', 'none', got 'never'"),
        ("ntk", {"val_fraction": 1.0}, r"val_fraction must be a number in \[0, 1\)"),
        ("ntk", {"stopping": "validation", "val_fraction": 0.0},
         r"ntk: val_fraction must be above 0 with stopping='validation', got 0\.0"),
        ("ntk", {"nu": 0.0}, r"ntk: nu must be a number in \(0, inf\), got 0\.0"),
        ("ntk", {"heads": "tied"}, r"ntk: heads must be one of 'shared', 'independent', got 'tied'"),
        ("ntk", {"iterations": 0}, r"ntk: iterations must be an integer in \[1, inf\), got 0"),
        ("ntk", {"sigma_xi": -1.0}, r"ntk: sigma_xi must be a number in \(0, inf\) or None \(estimated\), got -1\.0"),
        ("ntk_kernel", {"rkhs_norm": 0.0},
         r"ntk_kernel: rkhs_norm must be a number in \(0, inf\) or None \(estimated\), got 0\.0"),
        ("ntk_kernel", {"n_train": 9000, "val_fraction": 0.0}, "9000 x 9000 .* above max_n = 8000"),
        ("ntk_kernel", {"n_train": 300, "max_n": 100}, "above max_n = 100"),
        ("ntk", {"n_train": 300, "max_n": 100}, "stopping='rule' needs the eigendecomposition"),
        ("ntk", {"n_train": 2, "val_fraction": 0.5}, "leaves 1 training points"),
        ("ntk", {"t_min": -1.0}, r"ntk: t_min must be a number in \[0, inf\) or None \(the process\'s\), got -1\.0"),
        ("ntk", {"radius": 0.0}, r"ntk: radius must be a number in \(0, inf\) or None \(no truncation\), got 0\.0"),
    ],
)
def test_bad_parameters(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_estimator(name, **params)


def test_training_time_cutoff_must_lie_in_the_process_range() -> None:
    with pytest.raises(ValueError, match=r"t_min = 5.0 must lie in \[process t_min, T\)"):
        sb.get_estimator("ntk_kernel", n_train=20, t_min=5.0).fit(RING8, OU, gen(0))


def test_network_with_validation_stopping_needs_no_eigendecomposition() -> None:
    # large n is fine for the network when the rule is not used (no n x n Gram)
    est = sb.get_estimator("ntk", n_train=300, max_n=100, stopping="validation", width=16, iterations=3)
    assert est.fit(RING8, OU, gen(0)).record.stop_reason in ("validation", "iterations")
