"""Nonconvex training of the convex estimator's network by Adam, against the convex optimum (docs/theory.md C.3).

Independent truths: cvxpy (CLARABEL) on the same convex program (its optimum lower-bounds every
network's objective), the network recovered from the convex solution (which attains it), and a
network too narrow to represent the solution (which cannot reach it).
"""

from __future__ import annotations

import pytest

import scorebench as sb
from scorebench.estimators.convex import adam_objective, nonconvex_objective, recover_networks, solve_admm
from scorebench.estimators.training import Budget

from .conftest import gen
from .test_convex import GMM_1D, cvxpy_optimum, one_level


def test_adam_approaches_the_convex_optimum_from_above_and_a_narrow_network_does_not_reach_it() -> None:
    beta = 1e-2
    program = one_level(1, 20, beta)
    optimum = cvxpy_optimum(program)
    V, _ = solve_admm(program, Budget(5000), 1e-9, 10 * beta)
    A, C, active = recover_networks(V)
    X, Y = program.X[0], program.Y[0]
    assert float(nonconvex_objective(A[0], C[0], X, Y, beta)) == pytest.approx(optimum, rel=1e-5)
    width = 2 * program.D.shape[1]
    gaps = {}
    for iterations in (30, 3000):
        final, curve = adam_objective(X, Y, beta, width, iterations, 3e-2, gen(1))
        assert final == curve[-1] and len(curve) == 11
        gaps[iterations] = (final - optimum) / optimum
    print(f"relative gaps to the cvxpy optimum: {gaps}; {active[0]} active neurons")
    assert min(gaps.values()) >= -1e-7  # the convex optimum is a lower bound
    assert gaps[3000] < 1e-3 < gaps[30]  # and Adam reaches it
    # one neuron cannot represent a solution with several active neurons: a gap that does not close
    assert active[0] > 1
    narrow, _ = adam_objective(X, Y, beta, 1, 3000, 3e-2, gen(1))
    assert (narrow - optimum) / optimum > 1e-2


def test_estimator_records_adam_beside_the_convex_optimum() -> None:
    kw = {"beta": 1e-3, "n_train": 30, "n_times": 2, "iterations": 500, "tol": 1e-9}
    plain = sb.get_estimator("convex", **kw).fit(GMM_1D, sb.get_process("vp"), gen(0))
    assert "adam_gap" not in plain.record.extra
    model = sb.get_estimator("convex", adam_iterations=50, **kw).fit(GMM_1D, sb.get_process("vp"), gen(0))
    extra = model.record.extra
    assert extra["objective"] == plain.record.extra["objective"]  # the convex fit is unchanged
    assert extra["adam_width"] == 2 * (2 * 30 - 1)
    assert len(extra["adam_objective"]) == len(extra["adam_gap"]) == len(extra["adam_curve"]) == 2
    for final, gap, convex, curve in zip(extra["adam_objective"], extra["adam_gap"], extra["objective"],
                                         extra["adam_curve"], strict=True):
        assert gap == pytest.approx((final - convex) / convex, rel=1e-12)
        assert curve[-1] == final and final < curve[0]
    narrow = sb.get_estimator("convex", adam_iterations=50, adam_width=4, **kw).fit(
        GMM_1D, sb.get_process("vp"), gen(0))
    assert narrow.record.extra["adam_width"] == 4


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"adam_iterations": 0}, r"adam_iterations must be an integer in \[1, inf\) or None"),
        ({"adam_lr": 0.0}, r"adam_lr must be a number in \(0, inf\)"),
        ({"adam_width": 0}, r"adam_width must be an integer in \[1, inf\) or None"),
    ],
)
def test_bad_adam_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_estimator("convex", **params)
