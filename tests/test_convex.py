"""The convex two-layer ReLU score estimator (Zhang & Pilanci; docs/theory.md C).

Independent truths: cvxpy (CLARABEL) on the same convex program and on the cone projections,
nonconvex training of the same network by Adam, the rescaling identity of the recovered
network, and exact scores of Gaussian and Gaussian-mixture targets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import scorebench as sb
from scorebench.estimators.convex import (
    ConvexProgram,
    cone_geometry,
    network_output,
    noise_level_grid,
    nonconvex_objective,
    patterns_1d,
    project_onto_cones,
    recover_networks,
    sampled_patterns,
    solve_admm,
    solve_fista,
)
from scorebench.estimators.training import Budget, FitDiverged, TrainingRecord
from scorebench.metrics.score import log_spaced_times

from .conftest import gen

cp = pytest.importorskip("cvxpy")

GMM_1D = sb.get_target("gmm", means=[[-2.0], [1.5]], covs=[0.3, 0.5], weights=[0.4, 0.6])
SMALL = {"n_train": 100, "n_times": 6, "iterations": 300}


def one_level(d: int, n: int, beta: float, seed: int = 0, n_patterns: int = 40, exact: bool = True):
    """A single-level program on data ``x ~ N(0, I)``, ``y = tanh(2x) + noise`` (its own patterns)."""
    g = gen(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.tanh(2 * x) + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    X = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    pats = patterns_1d(x[:, 0]) if d == 1 else sampled_patterns(X, n_patterns, g)
    cones = cone_geometry(X[None], [pats]) if exact else None
    return ConvexProgram(X[None], pats[0][None].to(torch.float64), y[None], beta, cones)


def cvxpy_optimum(program: ConvexProgram) -> float:
    """The same program (docs/theory.md (C3)), level 0, written directly in cvxpy and solved by CLARABEL."""
    X, D, Y = program.X[0].numpy(), program.D[0].numpy(), program.Y[0].numpy()
    beta = float(program.beta[0])
    n, p = X.shape
    P, d = D.shape[0], Y.shape[1]
    dictionary = np.concatenate([D[i][:, None] * X for i in range(P)], axis=1)  # (n, P p)
    cone = np.zeros((P * n, P * p))
    for i in range(P):
        cone[i * n:(i + 1) * n, i * p:(i + 1) * p] = (2 * D[i] - 1)[:, None] * X
    U, W = cp.Variable((P * p, d)), cp.Variable((P * p, d))
    groups = sum(
        cp.sum(cp.norm(cp.reshape(V[:, c], (P, p), order="C"), 2, axis=1)) for V in (U, W) for c in range(d)
    )
    problem = cp.Problem(
        cp.Minimize(cp.sum_squares(dictionary @ (U - W) - Y) / (2 * n) + beta * groups),
        [cone @ U >= 0, cone @ W >= 0],
    )
    problem.solve(solver="CLARABEL")
    assert problem.status == "optimal"
    return float(problem.value)


# ---------------------------------------------------------------------------------------
# The convex program and its solvers
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2])
def test_cone_projection_is_the_qp_solution(d: int) -> None:
    program = one_level(d, 25, 1e-2, seed=3)
    g = gen(4)
    P = program.D.shape[1]
    V = 2 * torch.randn((1, 2, P, d + 1, d), generator=g, dtype=torch.float64)
    proj = project_onto_cones(V, program.cones)
    rows = [(s, i, c) for s in range(2) for i in range(0, P, max(1, P // 12)) for c in range(d)]
    X, S = program.X[0].numpy(), (2 * program.D[0] - 1).numpy()
    for s, i, c in rows:
        u, v = cp.Variable(d + 1), V[0, s, i, :, c].numpy()
        cp.Problem(cp.Minimize(cp.sum_squares(u - v)), [(S[i][:, None] * X) @ u >= 0]).solve(solver="CLARABEL")
        np.testing.assert_allclose(proj[0, s, i, :, c].numpy(), u.value, atol=1e-6 * (1 + np.abs(v).max()))
    assert float(program.violation(proj)) <= 1e-12


@pytest.mark.parametrize(("d", "n", "beta"), [(1, 30, 1e-2), (1, 30, 1e-3), (2, 30, 1e-2)])
def test_admm_reaches_the_cvxpy_optimum(d: int, n: int, beta: float) -> None:
    program = one_level(d, n, beta)
    V, info = solve_admm(program, Budget(1500), 1e-7, 10 * beta)
    reference = cvxpy_optimum(program)
    assert abs(float(info.objective[0]) - reference) <= 1e-4 * reference
    assert float(program.violation(V)) <= 1e-10  # feasible by construction (exact projection)


def test_fista_reaches_the_cvxpy_optimum() -> None:
    program = one_level(1, 20, 5e-2)
    V, info = solve_fista(program, Budget(2000), 1e-8, gen(0))
    reference = cvxpy_optimum(program)
    assert abs(float(info.objective[0]) - reference) <= 1e-4 * reference
    assert float(program.violation(V)) <= 1e-10


@pytest.mark.slow
def test_split_admm_without_enumerated_faces_reaches_the_cvxpy_optimum() -> None:
    # the path used for d >= 3: cone constraints as a separate ADMM block
    program = one_level(2, 20, 5e-2, exact=False)
    V, info = solve_admm(program, Budget(2000), 1e-8, 0.5)
    reference = cvxpy_optimum(program)
    assert abs(float(info.objective[0]) - reference) <= 1e-3 * reference
    assert float(program.violation(V)) <= 1e-4


@pytest.mark.slow
def test_convex_optimum_is_the_nonconvex_optimum() -> None:
    """Adam on the same two-layer network (width 2P, same beta) cannot beat the convex optimum, gets close to
    it, and the network recovered from the convex solution has the convex objective (rescaling identity)."""
    beta = 1e-2
    program = one_level(1, 20, beta)
    V, info = solve_admm(program, Budget(5000), 1e-8, 10 * beta)
    convex = float(info.objective[0])
    X, Y = program.X[0], program.Y[0]

    A, C, active = recover_networks(V)
    recovered = float(nonconvex_objective(A[0], C[0], X, Y, beta))
    assert recovered == pytest.approx(convex, rel=1e-12)
    # each neuron is active exactly on its pattern, so the network reproduces the program's fit
    torch.testing.assert_close(network_output(A[0], C[0], X[:, :1]), program.fitted(V)[0], rtol=0, atol=1e-12)
    assert 0 < active[0] < 2 * program.D.shape[1]

    width = 2 * program.D.shape[1]
    adam = []
    for seed in range(3):
        g = gen(seed)
        a = (0.5 * torch.randn((width, 2), generator=g, dtype=torch.float64)).requires_grad_()
        c = (0.1 * torch.randn((width, 1), generator=g, dtype=torch.float64)).requires_grad_()
        opt = torch.optim.Adam([a, c], lr=3e-2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1000)
        for _ in range(1000):
            opt.zero_grad()
            loss = nonconvex_objective(a, c, X, Y, beta)
            loss.backward()
            opt.step()
            sched.step()
        adam.append(float(nonconvex_objective(a.detach(), c.detach(), X, Y, beta)))
    assert convex <= min(adam) + 1e-9
    assert min(adam) <= convex * (1 + 1e-3)  # and nonconvex training does reach it


# ---------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------


def test_learned_1d_score_is_piecewise_linear_with_kinks_at_the_neurons() -> None:
    process = sb.get_process("vp")
    model = sb.get_estimator("convex", beta=3e-4, n_train=40, n_times=3, iterations=800).fit(GMM_1D, process, gen(0))
    fn = model.fn
    k = 1  # the middle level; at its own time the score is that level's network plus the Gaussian skip
    t = float(model.record.extra["times"][k])
    A, C, active = recover_networks(fn.solution)
    assert active[k] > 0
    a, b = A[k, : active[k], 0], A[k, : active[k], 1]
    alpha, sigma = float(process.alpha(t)), float(process.sigma(t))
    scale = math.sqrt(alpha**2 * fn.gaussian.var + sigma**2)
    grid = torch.linspace(-4.0, 4.0, 4001, dtype=torch.float64)  # in normalised units
    x = (alpha * fn.gaussian.mean + scale * grid)[:, None]
    s = model(x, t)[:, 0]
    second = (s[2:] - 2 * s[1:-1] + s[:-2]).abs()
    h = float(grid[1] - grid[0])
    kinks = -b[a != 0] / a[a != 0]
    near_kink = (grid[1:-1, None] - kinks[None, :]).abs().le(1.01 * h).any(dim=1)
    assert second[~near_kink].max() <= 1e-9 * s.abs().max()  # linear between the neurons' kinks
    assert (second[near_kink] > 1e-9 * s.abs().max()).sum() >= 1  # and it does bend
    # each neuron is active on the (noisy, normalised) training inputs exactly where its pattern says,
    # so the network reproduces the convex program's fitted values
    out = network_output(A[k], C[k], fn.program.X[k, :, :1])
    torch.testing.assert_close(out, fn.program.fitted(fn.solution)[k], rtol=0, atol=1e-10)


def test_kinks_need_not_sit_at_data_points() -> None:
    """docs/theory.md C.2 step 4 says the optimal 1-D score has kinks only at data points.  With the bias inside
    the group norm that is false: cvxpy's optimum of this program has a heavy neuron whose kink lies strictly
    between two inputs (docs/theory.md C.4 says so)."""
    program = one_level(1, 15, 1e-2, seed=0)
    X, D, Y = program.X[0].numpy(), program.D[0].numpy(), program.Y[0, :, 0].numpy()
    n, P = X.shape[0], D.shape[0]
    U, W = cp.Variable((P, 2)), cp.Variable((P, 2))
    fit = sum(cp.multiply(D[i], X @ (U[i] - W[i])) for i in range(P))
    cons = [c for i in range(P) for c in (cp.multiply(2 * D[i] - 1, X @ U[i]) >= 0,
                                          cp.multiply(2 * D[i] - 1, X @ W[i]) >= 0)]
    reg = cp.sum(cp.norm(U, 2, axis=1)) + cp.sum(cp.norm(W, 2, axis=1))
    cp.Problem(cp.Minimize(cp.sum_squares(fit - Y) / (2 * n) + 1e-2 * reg), cons).solve(solver="CLARABEL")
    x = X[:, 0]
    off_data = [
        np.abs(x + v[1] / v[0]).min()
        for v in np.concatenate([U.value, W.value])
        if np.linalg.norm(v) > 0.1 and abs(v[0]) > 1e-9 and x.min() < -v[1] / v[0] < x.max()
    ]
    assert max(off_data) > 1e-2


def test_recovered_network_reproduces_the_fit_in_2d() -> None:
    target = sb.get_target("gmm", preset="ring8")
    model = sb.get_estimator("convex", n_train=60, n_times=3, n_patterns=32, iterations=300).fit(
        target, sb.get_process("ou"), gen(0))
    fn = model.fn
    A, C, active = recover_networks(fn.solution)
    for k in range(3):
        out = network_output(A[k], C[k], fn.program.X[k, :, :2])
        torch.testing.assert_close(out, fn.program.fitted(fn.solution)[k], rtol=0, atol=1e-10)
    assert model.record.extra["exact_cone_projection"] is True
    assert max(model.record.extra["max_violation"]) <= 1e-10
    assert model.record.extra["width"] == max(active)


def _errors(model: sb.ScoreModel, target: sb.Target, process: sb.ForwardProcess, t: float) -> tuple[float, ...]:
    """Score MSE at x ~ p_t of: the model, the trivial N(0, alpha^2 + sigma^2) score, the exact-moment Gaussian."""
    x = target.marginal(process, t).sample(4000, gen(7), dtype=torch.float64)
    exact = target.marginal(process, t).score(x)
    alpha, sigma = float(process.alpha(t)), float(process.sigma(t))
    mu, cov = target.moments()
    trivial = -x / (alpha**2 + sigma**2)
    gauss = -(x - alpha * mu) @ torch.linalg.inv(alpha**2 * cov + sigma**2 * torch.eye(target.dim, dtype=torch.float64))
    return tuple(float((s - exact).pow(2).sum(dim=1).mean()) for s in (model(x, t), trivial, gauss))


GAUSS_1D = sb.get_target("gaussian", dim=1, mean=[1.5], cov=[[0.4]])
GAUSS_2D = sb.get_target("gaussian", dim=2, mean=[1.0, -0.5], cov=[[0.6, 0.2], [0.2, 0.4]])


@pytest.mark.parametrize(
    ("target", "process_name", "ratio"),
    [
        (GAUSS_1D, "vp", 0.3), (GAUSS_1D, "ou", 0.3), (GAUSS_1D, "ve", 0.3),
        (GMM_1D, "ou", 0.7), (GAUSS_2D, "vp", 0.3), (GAUSS_2D, "ve", 0.3),
    ],
    ids=["gauss1d-vp", "gauss1d-ou", "gauss1d-ve", "gmm1d-ou", "gauss2d-vp", "gauss2d-ve"],
)
def test_score_error_is_finite_and_beats_the_trivial_score(target: sb.Target, process_name: str, ratio: float) -> None:
    """Summed over the score_mse times, the error is well below that of the N(0, alpha^2 + sigma^2) score
    (for the mixture, whose own Gaussian fit only halves the trivial error, a smaller margin)."""
    process = sb.get_process(process_name)
    model = sb.get_estimator("convex", n_patterns=32, **SMALL).fit(target, process, gen(0))
    errors = [_errors(model, target, process, t) for t in log_spaced_times(process, 5)]
    ours, trivial = (sum(e[i] for e in errors) for i in (0, 1))
    assert all(math.isfinite(e[0]) for e in errors)
    assert ours < ratio * trivial


def test_bimodal_structure_is_learned_where_the_gaussian_fit_fails() -> None:
    process = sb.get_process("vp")
    model = sb.get_estimator("convex", beta=3e-3, **SMALL).fit(GMM_1D, process, gen(0))
    for t in (0.15, 0.25):
        ours, _, gauss = _errors(model, GMM_1D, process, t)
        assert ours < 0.5 * gauss


def test_score_is_continuous_in_time_across_levels() -> None:
    process = sb.get_process("vp")
    model = sb.get_estimator("convex", **SMALL).fit(GMM_1D, process, gen(0))
    x = GMM_1D.sample(200, gen(1), dtype=torch.float64)
    for t in model.record.extra["times"][1:-1]:
        below, above = model(x, t * (1 - 1e-7)), model(x, t * (1 + 1e-7))
        torch.testing.assert_close(below, above, rtol=1e-4, atol=1e-4)
    # one time per row gives the same as one call per time
    times = torch.tensor(model.record.extra["times"], dtype=torch.float64)
    t_rows = torch.exp(torch.log(times[:-1]) + 0.37 * torch.diff(torch.log(times)))[torch.arange(200) % 5]
    per_row = model(x, t_rows)
    for j in range(5):
        rows = torch.arange(200) % 5 == j
        torch.testing.assert_close(per_row[rows], model(x[rows], float(t_rows[rows][0])), rtol=1e-12, atol=1e-12)


def test_noise_level_grid_is_even_in_log_noise_level() -> None:
    for name in ("vp", "ou", "ve"):
        process = sb.get_process(name)
        times, logs = noise_level_grid(process, process.t_min, 7)
        assert times[0] == process.t_min and times[-1] == process.T
        torch.testing.assert_close(torch.diff(logs), torch.full((6,), float(logs[1] - logs[0]), dtype=torch.float64))
        torch.testing.assert_close(logs, torch.log(process.sigma(times) / process.alpha(times)))


def test_record_and_description() -> None:
    est = sb.get_estimator("convex", **SMALL)
    model = est.fit(GMM_1D, sb.get_process("vp"), gen(0))
    rec = model.record
    assert rec.estimator == "convex" and rec.status == "ok"
    assert rec.loss_iterations == list(range(1, rec.iterations + 1))
    assert rec.stop_reason in ("iterations", "converged") and rec.stopped_at == rec.iterations
    assert rec.losses[-1] == pytest.approx(float(np.mean(rec.extra["objective"])), rel=1e-12)
    assert rec.losses[-1] < rec.losses[0]
    extra = rec.extra
    assert len(extra["active_neurons"]) == 6 and extra["width"] == max(extra["active_neurons"])
    assert extra["n_patterns"] == [2 * 100 - 1] * 6  # exact 1-D enumeration of distinct points
    sigma_over_s = [float(process_ratio) for process_ratio in _ratios(extra["times"])]
    np.testing.assert_allclose(extra["beta_per_level"], [est.beta / r for r in sigma_over_s], rtol=1e-10)
    assert est.describe() == {
        "name": "convex", "beta": 1e-2, "n_train": 100, "n_times": 6, "n_patterns": 128, "iterations": 300,
        "tol": 1e-4, "seconds": None, "t_min": None, "solver": "admm", "rho": None,
        "adam_iterations": None, "adam_lr": 3e-2, "adam_width": None,
    }
    loose = sb.get_estimator("convex", n_train=30, n_times=2, iterations=5000, tol=1e-3).fit(
        GMM_1D, sb.get_process("vp"), gen(0))
    assert loose.record.stop_reason == "converged" and loose.record.iterations < 5000
    assert all(loose.record.extra["converged"])


def _ratios(times: list[float]) -> list[float]:
    """``sigma_t / s_t`` of the training data of :data:`GMM_1D` (100 points, seed 0) under VP."""
    process = sb.get_process("vp")
    x0 = GMM_1D.sample(100, gen(0), dtype=torch.float64)
    var = float(x0.var(dim=0, unbiased=False).mean())  # the mean per-coordinate variance
    t = torch.tensor(times, dtype=torch.float64)
    alpha, sigma = process.alpha(t), process.sigma(t)
    return (sigma / torch.sqrt(alpha**2 * var + sigma**2)).tolist()


def test_fista_and_admm_estimators_agree() -> None:
    process = sb.get_process("vp")
    kw = {"beta": 5e-2, "n_train": 30, "n_times": 2, "tol": 1e-9, "iterations": 1500}
    admm = sb.get_estimator("convex", **kw).fit(GMM_1D, process, gen(0))
    fista = sb.get_estimator("convex", solver="fista", **kw).fit(GMM_1D, process, gen(0))
    np.testing.assert_allclose(fista.record.extra["objective"], admm.record.extra["objective"], rtol=1e-3)


def test_reproducible_for_a_seed_and_on_the_generator_device() -> None:
    process = sb.get_process("vp")
    x = GMM_1D.sample(50, gen(1), dtype=torch.float64)
    kw = {"beta": 3e-3, "n_train": 50, "n_times": 3, "iterations": 100}
    a = sb.get_estimator("convex", **kw).fit(GMM_1D, process, gen(5))
    b = sb.get_estimator("convex", **kw).fit(GMM_1D, process, gen(5))
    c = sb.get_estimator("convex", **kw).fit(GMM_1D, process, gen(6))
    assert torch.equal(a(x, 0.1), b(x, 0.1))
    assert not torch.allclose(a(x, 0.1), c(x, 0.1))
    assert a(x, 0.1).device == x.device and a.fn.solution.device.type == "cpu"
    assert a(x.float(), 0.1).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fits_on_the_generator_device_cuda() -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    model = sb.get_estimator("convex", **SMALL).fit(GMM_1D, sb.get_process("vp"), g)
    assert model.fn.solution.device.type == "cuda"
    x = GMM_1D.sample(50, gen(1), dtype=torch.float64).cuda()
    assert torch.isfinite(model(x, 0.1)).all()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"beta": 0.0}, r"beta must be a number in \(0, inf\)"),
        ({"beta": -1e-3}, r"beta must be a number in \(0, inf\)"),
        ({"n_train": 1}, r"n_train must be an integer in \[2, inf\)"),
        ({"n_train": True}, r"n_train must be an integer in \[2, inf\)"),
        ({"n_times": 0}, r"n_times must be an integer in \[1, inf\)"),
        ({"n_patterns": 0}, r"n_patterns must be an integer in \[1, inf\)"),
        ({"iterations": 0}, r"iterations must be an integer in \[1, inf\)"),
        ({"tol": 0.0}, r"tol must be a number in \(0, inf\)"),
        ({"seconds": -1.0}, r"seconds must be a number in \(0, inf\) or None"),
        ({"t_min": 0.0}, r"t_min must be a number in \(0, inf\) or None"),
        ({"solver": "newton"}, "solver must be one of 'admm', 'fista'"),
        ({"rho": float("nan")}, r"rho must be a number in \(0, inf\) or None"),
    ],
)
def test_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_estimator("convex", **params)


def test_a_nan_objective_stops_with_fit_diverged() -> None:
    program = one_level(1, 20, 1e-2)
    program.Y[0, 3, 0] = math.nan
    record = TrainingRecord("convex")
    with pytest.raises(FitDiverged, match="training loss became nan"):
        solve_admm(program, Budget(100), 1e-6, 0.1, record)
    assert record.status == "diverged" and record.stop_reason == "diverged"


def test_bad_data_and_fit_settings() -> None:
    vp = sb.get_process("vp")
    est = sb.get_estimator("convex", n_train=10, n_times=2, iterations=10)
    bad = torch.randn(10, 1, generator=gen(0), dtype=torch.float64)
    bad[3, 0] = math.inf
    with pytest.raises(ValueError, match="non-finite"):
        est.fit(bad, vp, gen(0))
    bad[3, 0] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        est.fit(bad, vp, gen(0))
    with pytest.raises(ValueError, match="positive finite variance"):
        est.fit(torch.ones(10, 1, dtype=torch.float64), vp, gen(0))
    with pytest.raises(ValueError, match="only 5 training samples"):
        est.fit(torch.randn(5, 1, generator=gen(0)), vp, gen(0))
    with pytest.raises(ValueError, match=r"t_min = 2.0 must lie in \[t_min, T\)"):
        sb.get_estimator("convex", t_min=2.0).fit(GMM_1D, vp, gen(0))
    with pytest.raises(ValueError, match="solver 'fista' needs exact cone projections"):
        sb.get_estimator("convex", solver="fista", n_train=10).fit(sb.get_target("gaussian", dim=3), vp, gen(0))


def test_three_dimensional_data_use_the_split_solver() -> None:
    target = sb.get_target("gaussian", dim=3)
    model = sb.get_estimator("convex", n_train=40, n_times=2, n_patterns=16, iterations=200).fit(
        target, sb.get_process("vp"), gen(0))
    assert model.record.extra["exact_cone_projection"] is False
    x = target.sample(20, gen(1), dtype=torch.float64)
    assert torch.isfinite(model(x, 0.3)).all() and model(x, 0.3).shape == (20, 3)
