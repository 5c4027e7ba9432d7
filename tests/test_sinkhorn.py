"""The ``sinkhorn`` metric, version 2 (POT's solver), against version 1 (scorebench's own
log-domain loop, kept here as a private reference) run to convergence at the same ``eps``; the
conventions it shares with POT; and deliberately wrong variants that the same check rejects."""

from __future__ import annotations

import math
import warnings

import ot
import pytest
import torch

import scorebench as sb
from scorebench.metrics import NonConvergenceWarning, transport
from scorebench.metrics.transport import _entropic_ot

from .conftest import gen

N = 300  # version 1 converges in seconds at this size


def _v1_entropic_ot(cost: torch.Tensor, eps: float, tol: float = 1e-9, max_iterations: int = 200_000) -> float:
    """Version 1's ``OT_eps`` (scorebench <= the POT solver): log-domain Sinkhorn with
    epsilon-scaling from the squared diameter (factor 0.5) and symmetric, averaged updates, here
    run until no potential moves by more than ``tol * eps``, then one plain update."""
    n, m = cost.shape
    log_a, log_b = -math.log(n), -math.log(m)

    def softmin_f(g: torch.Tensor, e: float) -> torch.Tensor:
        return -e * torch.logsumexp(log_b + (g[None, :] - cost) / e, dim=1)

    def softmin_g(f: torch.Tensor, e: float) -> torch.Tensor:
        return -e * torch.logsumexp(log_a + (f[:, None] - cost) / e, dim=0)

    schedule, e = [], float(cost.max())
    while e > eps:
        schedule.append(e)
        e *= 0.5
    f, g = torch.zeros(n, dtype=cost.dtype), torch.zeros(m, dtype=cost.dtype)
    for e in [*schedule, eps]:
        f, g = 0.5 * (f + softmin_f(g, e)), 0.5 * (g + softmin_g(f, e))
    for _ in range(max_iterations):
        f_new, g_new = 0.5 * (f + softmin_f(g, eps)), 0.5 * (g + softmin_g(f, eps))
        change = max(float((f_new - f).abs().max()), float((g_new - g).abs().max()))
        f, g = f_new, g_new
        if change < tol * eps:
            break
    else:
        raise AssertionError("the version-1 reference did not converge")
    f, g = softmin_f(g, eps), softmin_g(f, eps)
    return float(f.mean() + g.mean())


def metric_eps(y: torch.Tensor, blur: float = 0.3) -> float:
    """The metric's ``eps = (blur * s)^2``, ``s`` the root-mean-square spread of ``y``."""
    return blur**2 * float((y - y.mean(0)).pow(2).sum(1).mean())


def v1_divergence(x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    parts = [_v1_entropic_ot(torch.cdist(p, q).pow(2), eps) for p, q in ((x, y), (x, x), (y, y))]
    return parts[0] - 0.5 * parts[1] - 0.5 * parts[2]


def samples(d: int, n: int = N, floor: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """8-cluster data: the ring8 mixture (d = 2) or an 8-mode random mixture (d = 10); ``x`` a copy
    with 20% wider modes (or, for ``floor``, a second sample of the same law)."""
    spec = {"preset": "ring8"} if d == 2 else {"preset": "random", "dim": d, "n_components": 8}
    std = 0.5 if d == 2 else 1.0
    y = sb.get_target("gmm", **spec).sample(n, gen(1)).double()
    x = sb.get_target("gmm", **spec, std=std if floor else 1.2 * std).sample(n, gen(2)).double()
    return x, y


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[torch.Tensor, torch.Tensor, float, float]]:
    """name -> (x, y, eps, version 1's converged divergence)."""
    out = {}
    for name, d, floor in (("d=2", 2, False), ("d=10", 10, False), ("d=2 floor", 2, True)):
        x, y = samples(d, floor=floor)
        eps = metric_eps(y)
        out[name] = (x, y, eps, v1_divergence(x, y, eps))
    return out


def within_one_percent(value: float, reference: float) -> bool:
    """The acceptance check of version 2 against version 1 run to convergence."""
    return abs(value - reference) <= 0.01 * abs(reference)


@pytest.mark.parametrize("name", ["d=2", "d=10", "d=2 floor"])
def test_the_value_is_version_1_run_to_convergence_within_one_percent(cases: dict, name: str) -> None:
    x, y, _, reference = cases[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)
        value = sb.get_metric("sinkhorn")(x, y)
    assert within_one_percent(value, reference)
    assert value == pytest.approx(reference, rel=1e-3)  # measured: about 1e-5 at the default tol
    # at a tight tolerance the two solvers agree to the digits the references carry
    assert sb.get_metric("sinkhorn", tol=1e-8, max_iterations=100_000)(x, y) == pytest.approx(reference, rel=1e-6)


def plans(x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, tuple[float, float]]:
    """For each of OT(x, y), OT(x, x), OT(y, y), solved tightly in float64: the entropic value and
    the transport part <P, C> of its plan."""
    out = {}
    for name, (p, q, sym) in {"xy": (x, y, False), "xx": (x, x, True), "yy": (y, y, True)}.items():
        cost = ot.dist(p, q)
        r = _entropic_ot(cost, eps, 100_000, 1e-9, symmetric=sym)
        plan = torch.exp((r.f[:, None] + r.g[None, :] - cost) / eps) / (cost.shape[0] * cost.shape[1])
        out[name] = (r.value, float((plan * cost).sum()))
    return out


def test_wrong_variants_fail_the_check(cases: dict) -> None:
    """The acceptance check tells the definition from near misses: dropping the entropic term
    (POT's empirical_sinkhorn_divergence), not debiasing, or reading geomloss's cost |x - y|^2 / 2
    at the same eps."""
    for name in ("d=2", "d=10"):
        x, y, eps, reference = cases[name]
        parts = plans(x, y, eps)
        right = parts["xy"][0] - 0.5 * parts["xx"][0] - 0.5 * parts["yy"][0]
        assert within_one_percent(right, reference)
        transport_only = parts["xy"][1] - 0.5 * parts["xx"][1] - 0.5 * parts["yy"][1]
        not_debiased = parts["xy"][0]
        half_cost = sum(w * _entropic_ot(ot.dist(p, q) / 2, eps, 100_000, 1e-9, symmetric=s).value
                        for w, p, q, s in ((1.0, x, y, False), (-0.5, x, x, True), (-0.5, y, y, True)))
        for wrong in (transport_only, not_debiased, half_cost):
            assert not within_one_percent(wrong, reference), (name, wrong, reference)


def test_pots_divergence_differs_by_design_and_agrees_once_the_entropic_term_is_dropped(cases: dict) -> None:
    x, y, eps, reference = cases["d=2"]
    pot = float(ot.bregman.empirical_sinkhorn_divergence(x, y, eps, method="sinkhorn_log", numIterMax=100_000,
                                                         stopThr=1e-12))
    parts = plans(x, y, eps)
    transport_only = parts["xy"][1] - 0.5 * parts["xx"][1] - 0.5 * parts["yy"][1]
    assert pot == pytest.approx(transport_only, rel=1e-4)  # POT keeps <P, C> of the same plans
    assert not within_one_percent(pot, reference)  # and drops eps KL(P | a b^T)


def test_one_entropic_problem_is_pots_entropic_objective() -> None:
    """``_entropic_ot``'s dual value is the primal objective <P, C> + eps KL(P | a b^T) that POT's
    ``ot.solve`` reports, on ``ot.dist``'s cost |x - y|^2 with ``reg = eps``: same conventions."""
    x, y = samples(2, 200)
    eps = metric_eps(y)
    cost = ot.dist(x, y)
    res = ot.solve(cost, reg=eps, reg_type="KL", tol=1e-12, max_iter=100_000)
    ours = _entropic_ot(cost, eps, 100_000, 1e-10)
    assert ours.converged and ours.value == pytest.approx(float(res.value), rel=1e-8)
    sym = _entropic_ot(ot.dist(x, x), eps, 100_000, 1e-10, symmetric=True)
    res = ot.solve(ot.dist(x, x), reg=eps, reg_type="KL", tol=1e-12, max_iter=100_000)
    assert sym.converged and sym.value == pytest.approx(float(res.value), rel=1e-8)


def test_a_sample_against_itself_is_exactly_zero_and_a_permutation_close_to_it() -> None:
    x, _ = samples(2)
    metric = sb.get_metric("sinkhorn")
    assert metric(x, x) == 0.0 and metric(x, x.clone()) == 0.0
    permuted = x[torch.randperm(len(x), generator=gen(5))]
    # the same law: zero up to the solver's tolerance (each OT term is about 4 here)
    assert abs(metric(permuted, x)) < 1e-4


def test_the_reference_term_is_solved_once_per_reference_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = samples(2)
    calls: list[bool] = []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("symmetric", args[4] if len(args) > 4 else False))
        return _entropic_ot(*args, **kwargs)

    monkeypatch.setattr(transport, "_entropic_ot", counting)
    metric = sb.get_metric("sinkhorn")
    first = metric(x, y)
    assert len(calls) == 3
    other = x[: N // 2]
    assert metric(other, y) == sb.get_metric("sinkhorn")(other, y) and len(calls) == 3 + 2 + 3
    assert metric(x, y) == first and len(calls) == 8 + 2  # OT(y, y) reused: only OT(x, y), OT(x, x)
    moved = y.clone()
    moved[0, 0] += 1.0
    metric(x, moved)
    assert len(calls) == 10 + 3  # a different reference sample is solved again


def test_outlying_points_at_a_thousand_samples_converge() -> None:
    """POT's ``sinkhorn_stabilized`` restarts its scalings at ``1/n`` after absorbing them: with
    its default ``tau = 1e3`` and n >= 1000 it then absorbs at every iteration and never converges
    (marginal error 1, a meaningless value).  Outlying points trigger the absorption."""
    y = sb.get_target("gmm", preset="ring8").sample(1000, gen(1)).double()
    x = sb.get_target("gmm", preset="ring8").sample(1000, gen(2)).double()
    x[:10] *= 6
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)
        value = sb.get_metric("sinkhorn")(x, y)
    tight = sb.get_metric("sinkhorn", tol=1e-5, max_iterations=100_000)(x, y)
    assert value == pytest.approx(tight, rel=1e-3) and value > 0


def test_version_and_retired_keywords() -> None:
    metric = sb.get_metric("sinkhorn")
    assert metric.version == "2" and "scaling" not in metric.describe()
    with pytest.raises(ValueError, match="sinkhorn: scaling must be omitted \\(it is no longer a parameter"):
        sb.get_metric("sinkhorn", scaling=0.5)
