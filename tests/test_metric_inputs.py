"""Metrics called directly on degenerate input: refused with one clear error, never a silent
score (POT's 0.0 for an infeasible problem, NaN from a kernel sum) or a hang (Sinkhorn on an
infinite diameter); iterations that stop at their cap say so."""

from __future__ import annotations

import math
import threading
import time
import warnings

import pytest
import torch
from scipy.optimize import linear_sum_assignment

import scorebench as sb
from scorebench.metrics import (
    MAX_ABS_VALUE,
    METRICS,
    MetricInputError,
    NonConvergenceWarning,
    SampleMetric,
)

from .conftest import gen


def _registered(kind: str) -> list[str]:
    return [name for name in METRICS.names() if getattr(METRICS.factory(name), "kind", None) == kind]


SAMPLE = _registered("sample")
MOMENT = _registered("moment")


def test_every_built_in_sample_and_moment_metric_is_covered() -> None:
    assert {"w2", "sliced_w2", "sinkhorn", "mmd", "energy"} <= set(SAMPLE)
    assert {"bures_w2", "mean_error", "cov_error"} <= set(MOMENT)


def points(n: int = 20, d: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=gen(seed), dtype=torch.float64)


def degenerate(kind: str) -> torch.Tensor:
    x = points()
    if kind == "nan":
        x[3, 1] = math.nan
    elif kind == "inf":
        x[5] = math.inf
    elif kind == "1e200":
        x = x * 1e200
    elif kind == "n=1":
        x = x[:1]
    return x


BAD = ("nan", "inf", "1e200", "n=1")
WHY = {"nan": "not finite", "inf": "not finite", "1e200": "above the bound", "n=1": "1 point"}


def evaluate(name: str, x: torch.Tensor) -> float:
    metric = METRICS.build(name)
    if metric.kind == "sample":
        return metric(x, points(seed=1), gen(2))
    return metric(x, torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("name", SAMPLE + MOMENT)
def test_degenerate_samples_are_refused_naming_the_metric(name: str, bad: str) -> None:
    start = time.perf_counter()
    with pytest.raises(MetricInputError, match=f"metric '{name}': x .*{WHY[bad]}"):
        evaluate(name, degenerate(bad))
    assert time.perf_counter() - start < 5.0


def test_the_message_counts_the_non_finite_entries_and_the_points() -> None:
    x = points()
    x[2, 0] = x[7, 1] = math.nan
    x[7, 0] = -math.inf
    with pytest.raises(MetricInputError, match=r"metric 'w2': x is not finite: NaN or inf in 3 entries in 2 of 20 "):
        sb.get_metric("w2")(x, points(seed=1))


@pytest.mark.parametrize("name", SAMPLE)
def test_a_degenerate_reference_sample_is_refused_too(name: str) -> None:
    y = points(seed=1)
    y[0, 0] = math.nan
    with pytest.raises(MetricInputError, match=f"metric '{name}': y is not finite"):
        sb.get_metric(name)(points(), y)
    with pytest.raises(MetricInputError, match=f"metric '{name}': y has 1 point"):
        sb.get_metric(name)(points(), y[1:2])


@pytest.mark.parametrize("name", MOMENT)
def test_moment_metrics_refuse_non_finite_or_misshapen_target_moments(name: str) -> None:
    metric = sb.get_metric(name)
    mean, cov = torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    with pytest.raises(MetricInputError, match=f"metric '{name}': the target mean is not finite"):
        metric(points(), torch.tensor([0.0, math.nan]), cov)
    with pytest.raises(MetricInputError, match=f"metric '{name}': the target covariance is not finite"):
        metric(points(), mean, cov * math.inf)
    with pytest.raises(MetricInputError, match=f"metric '{name}': x must be"):
        metric(points(d=3), mean, cov)


@pytest.mark.parametrize("name", SAMPLE + MOMENT)
def test_samples_at_the_bound_still_give_a_finite_value(name: str) -> None:
    x = points()
    x = x / x.abs().max() * MAX_ABS_VALUE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonConvergenceWarning)
        assert math.isfinite(evaluate(name, x))


def test_third_party_metrics_get_the_checks_from_the_base_class() -> None:
    class Zero(SampleMetric):
        registered_name = "zero_for_test"

        def compute(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
            return 0.0

    assert Zero()(points(), points(seed=1)) == 0.0
    with pytest.raises(MetricInputError, match="metric 'zero_for_test': x is not finite"):
        Zero()(degenerate("nan"), points(seed=1))


# -- sinkhorn ----------------------------------------------------------------------------


def test_sinkhorn_on_huge_or_infinite_samples_returns_at_once() -> None:
    outcome: list[BaseException | float] = []

    def run() -> None:
        metric = sb.get_metric("sinkhorn")
        for x in (degenerate("1e200"), degenerate("inf")):
            try:
                outcome.append(metric(x, points(seed=1)))
            except MetricInputError as exc:
                outcome.append(exc)
            try:  # compute alone, without the checks of __call__: the schedule must still end
                outcome.append(metric.compute(x, points(seed=1), gen(0)))
            except MetricInputError as exc:
                outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=10.0)
    assert not worker.is_alive(), "sinkhorn did not return within 10 s on 1e200 / inf samples"
    assert len(outcome) == 4 and all(isinstance(o, MetricInputError) for o in outcome)


def test_sinkhorn_starts_where_nothing_underflows_and_keeps_to_its_dtype_rule() -> None:
    """A tiny blur puts C / eps near 1e7: the c-transform start leaves a 1 in every row and column
    of the kernel, so the value is finite; float32 would round C / eps too coarsely for tol, so
    such a problem is solved in float64, while the default blur solves in float32."""
    x, y = points(30, seed=7), points(30, seed=8) + 3.0
    tiny = sb.get_metric("sinkhorn", blur=1e-3, max_iterations=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonConvergenceWarning)  # tiny eps: Sinkhorn is slow, not wrong
        assert math.isfinite(tiny(x, y)) and tiny(x, y) > 0
    spread2 = float((y - y.mean(0)).pow(2).sum(1).mean())
    assert tiny._solve(x, y, 1e-6 * spread2).f.dtype == torch.float64
    near = points(30, seed=8)  # max C / eps about 60 at the default blur
    assert sb.get_metric("sinkhorn")._solve(x, near, 0.09 * spread2).f.dtype == torch.float32


def test_sinkhorn_warns_when_it_stops_at_max_iterations_and_still_returns() -> None:
    metric = sb.get_metric("sinkhorn", blur=0.01, max_iterations=5)
    with pytest.warns(NonConvergenceWarning) as record:
        value = metric(points(), points(seed=1))
    assert math.isfinite(value)
    (message,) = {str(w.message) for w in record if issubclass(w.category, NonConvergenceWarning)}
    assert "\n" not in message
    assert message.startswith("metric 'sinkhorn': ") and "stopped at max_iterations = 5 without converging" in message
    assert "relative marginal error" in message and "tol = 0.0003" in message


def test_sinkhorn_with_defaults_on_a_normal_sample_converges_silently() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)
        value = sb.get_metric("sinkhorn")(points(100, seed=3), points(100, seed=4))
    assert math.isfinite(value) and value >= 0


# -- w2 ----------------------------------------------------------------------------------


def test_w2_on_good_input_is_the_exact_assignment_cost() -> None:
    x, y = points(40, 3, seed=5), points(40, 3, seed=6) + 0.5
    cost = torch.cdist(x, y).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    exact = math.sqrt(cost[rows, cols].mean())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither a NonConvergenceWarning nor POT's own
        assert sb.get_metric("w2")(x, y) == pytest.approx(exact, rel=1e-10)


def test_w2_turns_pots_iteration_cap_into_a_non_convergence_warning() -> None:
    metric = sb.get_metric("w2")
    metric.num_itermax = 3
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        value = metric(points(40, seed=5), points(40, seed=6))
    assert math.isfinite(value)
    assert [w.category for w in record] == [NonConvergenceWarning]  # POT's UserWarning is not repeated
    message = str(record[0].message)
    assert message.startswith("metric 'w2': ") and "numItermax = 3" in message and "\n" not in message


# -- samplers ------------------------------------------------------------------------------


@pytest.mark.parametrize("fill", [math.nan, math.inf])
def test_a_non_finite_x_init_is_refused_naming_the_sampler(fill: float) -> None:
    target = sb.get_target("gaussian", dim=2)
    process = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(target, process)
    sampler = sb.get_sampler("euler_maruyama")
    x_init = torch.full((8, 2), fill)
    with pytest.raises(ValueError, match=r"sampler 'euler_maruyama': x_init is not finite: NaN or inf in 8 of its 8"):
        sampler.sample(score, process, 8, 4, gen(0), x_init=x_init)
    with pytest.raises(ValueError, match=r"sampler 'euler_maruyama': x_init must have shape \(n, 2\)"):
        sampler.sample(score, process, 8, 4, gen(0), x_init=torch.zeros(8, 3))
