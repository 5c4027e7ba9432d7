"""Oracle and noisy-oracle scores, and the fit that every learned estimator shares."""

from __future__ import annotations

import math
import time

import pytest
import torch

import scorebench as sb
from scorebench.estimators import ESTIMATORS, LearnedEstimator, LearnedScore, TrainingRecord
from scorebench.estimators.lipschitz import Lipschitz

from .conftest import exact_targets, gen

TARGET = exact_targets()["gmm_full"]


def test_oracle_is_the_exact_marginal_score(process: sb.ForwardProcess) -> None:
    score = sb.get_estimator("oracle").fit(TARGET, process)
    x = TARGET.sample(50, gen(0), dtype=torch.float64)
    t = 0.5 * (process.T + process.t_min)
    torch.testing.assert_close(score(x, t), TARGET.marginal(process, t).score(x), rtol=0, atol=0)
    assert (score.calls, score.evaluations) == (1, 50)


def test_oracle_with_one_time_per_row(process: sb.ForwardProcess) -> None:
    score = sb.get_estimator("oracle").fit(TARGET, process)
    x = TARGET.sample(60, gen(1), dtype=torch.float64)
    times = torch.tensor([process.t_min, 0.5 * process.T, process.T], dtype=torch.float64)
    t = times[torch.arange(60) % 3]
    expected = torch.stack(
        [TARGET.marginal(process, float(ti)).score(xi[None])[0] for xi, ti in zip(x, t, strict=True)]
    )
    torch.testing.assert_close(score(x, t), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["fourier", "bias"])
def test_noisy_oracle_error_has_declared_l2_size(kind: str, process: sb.ForwardProcess) -> None:
    eps = 0.37
    noisy = sb.get_estimator("noisy_oracle", eps=eps, kind=kind, seed=4).fit(TARGET, process)
    exact = sb.get_estimator("oracle").fit(TARGET, process)
    for t in (process.t_min, 0.3 * process.T, process.T):
        x = TARGET.marginal(process, t).sample(500, gen(2), dtype=torch.float64)
        err = (noisy(x, t) - exact(x, t)).norm(dim=1)
        torch.testing.assert_close(err, torch.full_like(err, eps), rtol=1e-10, atol=1e-12)


def test_noisy_oracle_is_deterministic_given_seed() -> None:
    vp = sb.get_process("vp")
    x = TARGET.sample(100, gen(0), dtype=torch.float64)
    a = sb.get_estimator("noisy_oracle", eps=0.2, seed=1).fit(TARGET, vp)(x, 0.4)
    b = sb.get_estimator("noisy_oracle", eps=0.2, seed=1).fit(TARGET, vp)(x, 0.4)
    c = sb.get_estimator("noisy_oracle", eps=0.2, seed=2).fit(TARGET, vp)(x, 0.4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_fourier_perturbation_varies_smoothly_in_x_and_t() -> None:
    vp = sb.get_process("vp")
    model = sb.get_estimator("noisy_oracle", eps=1.0, seed=0).fit(TARGET, vp)
    x = TARGET.sample(200, gen(0), dtype=torch.float64)
    e0 = model.perturbation(x, 0.4)
    assert (e0 - model.perturbation(x + 1e-6, 0.4)).norm(dim=1).max() < 1e-3
    assert (e0 - model.perturbation(x, 0.9)).norm(dim=1).mean() > 0.05  # it does depend on t
    assert (e0 - e0.mean(0)).norm(dim=1).mean() > 0.1  # and on x: not a constant bias


def test_zero_eps_is_the_oracle() -> None:
    vp = sb.get_process("vp")
    x = TARGET.sample(20, gen(0), dtype=torch.float64)
    noisy = sb.get_estimator("noisy_oracle", eps=0.0).fit(TARGET, vp)
    torch.testing.assert_close(noisy(x, 0.5), TARGET.marginal(vp, 0.5).score(x))


@pytest.mark.parametrize("name", ["oracle", "noisy_oracle"])
def test_oracles_need_an_exact_target(name: str) -> None:
    est = sb.get_estimator(name)
    with pytest.raises(ValueError, match=r"needs exact scores.*funnel"):
        est.fit(sb.get_target("funnel"), sb.get_process("vp"))
    with pytest.raises(ValueError, match="needs the target itself"):
        est.fit(torch.zeros(10, 2), sb.get_process("vp"))


def test_score_model_rejects_bad_input() -> None:
    vp = sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(TARGET, vp)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        score(torch.zeros(4, 2), 0.5)
    with pytest.raises(ValueError, match=r"outside \[t_min, T\]"):
        score(torch.zeros(4, 3), 2.0)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(4,\)"):
        score(torch.zeros(4, 3), torch.full((5,), 0.5))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"eps": -1.0}, r"noisy_oracle: eps must be a number in \[0, inf\), got -1.0"),
        ({"kind": "gaussian"}, "noisy_oracle: kind must be one of 'fourier', 'bias', got 'gaussian'"),
        ({"n_features": 0}, r"noisy_oracle: n_features must be an integer in \[1, inf\), got 0"),
        ({"bandwidth": 0.0}, r"noisy_oracle: bandwidth must be a number in \(0, inf\), got 0.0"),
    ],
)
def test_bad_noisy_oracle_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sb.get_estimator("noisy_oracle", **params)


@pytest.mark.parametrize("name", ["mlp_dsm", "lipschitz", "ntk", "ntk_kernel", "convex"])
def test_fit_without_a_generator_is_fit_with_seed_0(name: str) -> None:
    """Every learned estimator defaults to the same generator (a CPU generator seeded with 0), and
    a different seed gives a different fit (so the comparison can fail)."""
    cls = sb.estimators.ESTIMATORS.factory(name)
    est = sb.get_estimator(name, **cls.test_params_for({}))
    target, vp = sb.get_target("gaussian", dim=2), sb.get_process("vp")
    x = torch.randn(50, 2, generator=gen(9))

    def fitted(generator: torch.Generator | None) -> torch.Tensor:
        return est.fit(target, vp, generator)(x, 0.3).detach()

    default = fitted(None)
    torch.testing.assert_close(default, fitted(gen(0)), rtol=0, atol=0)
    assert not torch.equal(default, fitted(gen(1)))


# -- the fit skeleton of learned estimators -------------------------------------------------------------

LEARNED = sorted(name for name in ESTIMATORS.names()
                 if ESTIMATORS.factory(name).__module__.startswith("scorebench.")
                 and not ESTIMATORS.factory(name).needs_exact_target)


def skeleton_violations(est: sb.Estimator, target: sb.Target, process: sb.ForwardProcess,
                        generator: torch.Generator) -> list[str]:
    """How a fit of ``est`` departs from the shared skeleton (empty: it goes through it).

    The fit must be :class:`LearnedEstimator`'s own, call ``_fit`` exactly once with a fresh record
    under the estimator's name, return a model carrying that record, and record a fit time that
    spans the whole ``_fit`` call and lies within the call to ``fit``.
    """
    cls = type(est)
    if not isinstance(est, LearnedEstimator):
        return [f"{cls.__name__} is not a LearnedEstimator"]
    problems = [] if cls.fit is LearnedEstimator.fit else [f"{cls.__name__} overrides fit"]
    calls: list[tuple[TrainingRecord, float]] = []
    inner = est._fit

    def spy(data, process, generator, record):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        model = inner(data, process, generator, record)
        calls.append((record, time.perf_counter() - start))
        return model

    est._fit = spy  # type: ignore[method-assign]  # on the instance: the class stays as it is
    try:
        start = time.perf_counter()
        model = est.fit(target, process, generator)
        span = time.perf_counter() - start
    finally:
        del est._fit
    if len(calls) != 1:
        return [*problems, f"_fit called {len(calls)} times"]
    record, inner_span = calls[0]
    if not isinstance(model, LearnedScore) or model.record is not record:
        problems.append("the model does not carry the record _fit was given")
    if record.estimator != est.name:
        problems.append(f"record names {record.estimator!r}, not {est.name!r}")
    if not inner_span <= record.fit_seconds <= span:
        problems.append(f"fit_seconds {record.fit_seconds} outside [{inner_span}, {span}]")
    return problems


def test_the_learned_estimators_are_the_ones_not_needing_exact_scores() -> None:
    assert LEARNED == ["convex", "lipschitz", "memorising", "mlp_dsm", "ntk", "ntk_kernel"]


@pytest.mark.parametrize("name", LEARNED)
def test_every_learned_estimator_fits_through_the_skeleton(name: str) -> None:
    cls = ESTIMATORS.factory(name)
    est = sb.get_estimator(name, **cls.test_params_for({}))
    assert skeleton_violations(est, sb.get_target("gaussian", dim=2), sb.get_process("vp"), gen(0)) == []


def _without_training(est: LearnedEstimator) -> list[int]:
    """Replace ``est._fit`` (on the instance) by a recorder that trains nothing; returns the call log."""
    calls: list[int] = []

    def recorder(data, process, generator, record):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise AssertionError("_fit reached")

    est._fit = recorder  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("name", LEARNED)
def test_every_learned_estimator_refuses_non_finite_training_data(name: str) -> None:
    """A NaN, +inf or -inf entry, in the rows the fit uses or beyond them, is refused with the one
    ValueError naming the estimator, before ``_fit`` is called; the same samples made finite are
    fitted into a model with finite scores."""
    cls = ESTIMATORS.factory(name)
    est = sb.get_estimator(name, **cls.quick_params({}))
    vp = sb.get_process("vp")
    good = sb.get_target("gaussian", dim=2).sample(est.n_train + 5, gen(3), dtype=torch.float64)
    message = rf"^{name}: the training data contain non-finite values \(NaN or inf\)$"
    calls = _without_training(est)
    for row in (est.n_train // 2, est.n_train + 2):
        for value in (math.nan, math.inf, -math.inf):
            bad = good.clone()
            bad[row, 1] = value
            with pytest.raises(ValueError, match=message):
                est.fit(bad, vp, gen(0))
    assert calls == []
    with pytest.raises(AssertionError, match="_fit reached"):  # finite samples pass the check
        est.fit(good, vp, gen(0))
    assert calls == [1]
    del est._fit
    model = est.fit(good, vp, gen(0))
    assert torch.isfinite(model(torch.randn(50, 2, generator=gen(9), dtype=torch.float64), 0.5)).all()


@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("data, match", [
    pytest.param(torch.zeros(100), r"the training data must have shape \(n, d\), got \(100,\)", id="1d"),
    pytest.param(torch.zeros(100, 1, 2), r"the training data must have shape \(n, d\), got \(100, 1, 2\)", id="3d"),
    pytest.param(torch.zeros(100, 2, dtype=torch.int64),
                 "the training data must be a floating-point tensor, got torch.int64", id="int64"),
])
def test_every_learned_estimator_refuses_malformed_training_data(name: str, data: torch.Tensor, match: str) -> None:
    est = sb.get_estimator(name, **ESTIMATORS.factory(name).quick_params({}))
    calls = _without_training(est)
    with pytest.raises(ValueError, match=f"^{name}: {match}$"):
        est.fit(data, sb.get_process("vp"), gen(0))
    assert calls == []


class _OverridesFit(Lipschitz):
    """Broken on purpose: trains through ``_fit`` but builds its own record and never times the fit."""

    def fit(self, data, process, generator=None):  # type: ignore[no-untyped-def]
        return self._fit(data, process, generator, TrainingRecord("overrides_fit"))


class _ReturnsTheFunction(Lipschitz):
    """Broken on purpose: ``_fit`` returns the score function instead of the model."""

    def _fit(self, data, process, generator, record):  # type: ignore[no-untyped-def]
        return super()._fit(data, process, generator, record).fn


class _ReturnsAnotherRecord(Lipschitz):
    """Broken on purpose: ``_fit`` returns a model carrying a record of its own."""

    def _fit(self, data, process, generator, record):  # type: ignore[no-untyped-def]
        model = super()._fit(data, process, generator, record)
        return LearnedScore(model.dim, model.process, model.fn, TrainingRecord("lipschitz"), dtype=model.dtype)


def test_the_skeleton_check_catches_an_estimator_that_overrides_fit() -> None:
    est = _OverridesFit(iterations=50, n_train=100)
    problems = skeleton_violations(est, sb.get_target("gaussian", dim=2), sb.get_process("vp"), gen(0))
    assert "_OverridesFit overrides fit" in problems
    assert any(p.startswith("fit_seconds 0.0 outside") for p in problems)
    assert "record names 'overrides_fit', not 'lipschitz'" in problems


@pytest.mark.parametrize("cls, got", [(_ReturnsTheFunction, "AffineScoreFunction"),
                                      (_ReturnsAnotherRecord, "a LearnedScore with another record")])
def test_fit_refuses_what_a_broken_fit_hook_returns(cls: type[Lipschitz], got: str) -> None:
    est = cls(iterations=50, n_train=100)
    with pytest.raises(TypeError, match=f"lipschitz: _fit must return a LearnedScore carrying the record it was "
                                        f"given, got {got}"):
        est.fit(sb.get_target("gaussian", dim=2), sb.get_process("vp"), gen(0))


def test_a_learned_estimator_without_a_fit_hook_cannot_be_built() -> None:
    class NoHook(LearnedEstimator):
        pass

    with pytest.raises(TypeError, match=r"abstract method '?_fit"):
        NoHook()


@pytest.mark.parametrize("args, match", [
    (("samples", "vp", None), "data must be a Target or a tensor of shape \\(n, d\\), got str"),
    (("target", "ve_name", None), "lipschitz: process must be a ForwardProcess, got str"),
    (("target", "vp", 0), "lipschitz: generator must be a torch.Generator or None, got int"),
])
def test_fit_checks_its_arguments(args: tuple, match: str) -> None:
    data, process, generator = args
    values = {"target": sb.get_target("gaussian", dim=2), "samples": "x.csv", "vp": sb.get_process("vp"),
              "ve_name": "ve"}
    with pytest.raises(TypeError, match=match):
        sb.get_estimator("lipschitz").fit(values[data], values[process], generator)
