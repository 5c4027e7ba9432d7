"""The conformance kits (samplers, estimators, metrics), the check-sampler command and the plugin path."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import unittest
from pathlib import Path

import pytest
import torch

import scorebench as sb
from scorebench.cli import main
from scorebench.estimators import Estimator, LearnedScore, TrainingRecord
from scorebench.estimators.base import default_generator
from scorebench.estimators.training import process_scales, training_samples
from scorebench.exact import GaussianLaw, exact_output_law, gaussian_w2
from scorebench.metrics import ExactW2, Metric, MomentMetric, SampleMetric, ScoreMSE, TrajectoryScoreMSE
from scorebench.metrics.moments import empirical_moments
from scorebench.results import read_results
from scorebench.testing import (
    CheckReport,
    CheckSkipped,
    EstimatorCheckError,
    MetricCheckError,
    SamplerCheckError,
    check_estimator,
    check_metric,
    check_sampler,
    estimator_checks,
    metric_checks,
    parametrize_with_checks,
    sampler_checks,
)

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugins" / "example"

CHECKS = 9
ESTIMATOR_CHECKS = ["interface", "fit_returns_score_model", "score_shapes_and_dtypes", "device", "determinism",
                    "training_record", "needs_exact_target", "refuses_bad_data", "quality_floor"]


def test_a_broken_sampler_fails_with_messages_that_say_what_is_wrong() -> None:
    sys.path.insert(0, str(PLUGIN))
    try:
        from scorebench_example_plugin import BrokenSampler, WrongShapeSampler
    finally:
        sys.path.remove(str(PLUGIN))
    with pytest.raises(SamplerCheckError) as info:
        check_sampler(BrokenSampler(), ("vp",))
    text = str(info.value)
    assert "FAIL determinism: AssertionError: vp: the same seed gave different outputs" in text
    assert "FAIL chunking" in text
    assert "FAIL nan_handling: AssertionError: a NaN score produced finite output" in text
    assert "does it draw noise itself instead of using the noise argument" in text
    report = check_sampler(BrokenSampler(), ("vp",), raise_on_failure=False)
    assert not report.passed and len(report.failures) == 5
    # it declares itself affine, so its convergence is measured on its exact law, which does not exist
    assert "FAIL convergence: ValueError: sampler 'brokensampler': step" in str(report)
    shape = check_sampler(WrongShapeSampler(), ("vp",), raise_on_failure=False)
    assert "FAIL shapes_and_dtypes: ValueError: sampler 'wrongshapesampler': step 1 " in str(shape)
    assert "returned (50, 2); expected a tensor of shape (50, 3)" in str(shape)


def test_not_a_sampler() -> None:
    with pytest.raises(SamplerCheckError, match="expected a scorebench Sampler"):
        check_sampler(object())  # type: ignore[arg-type]


def test_check_sampler_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["check-sampler", "exponential_integrator", "--processes", "ou"]) == 0
    assert "ok   gaussian_exact_law" in capsys.readouterr().out
    assert main(["check-sampler", "nope"]) == 2
    assert main(["check-sampler", "no_such_module:Thing"]) == 2
    assert main(["check-sampler", "ddpm", "--processes", "vp,cosine"]) == 2


def test_plugin_installed_and_discovered_through_its_entry_point(tmp_path: Path) -> None:
    """pip-install the example package into a private folder, then a fresh interpreter finds
    its sampler by entry point, passes it through check_sampler and runs a suite that names it."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGIN)],
        check=True, capture_output=True, text=True,
    )
    suite = tmp_path / "plugin.toml"
    suite.write_text(
        '[suite]\nname = "plugin"\ndevice = "cpu"\n[targets.g]\nname = "gaussian"\n[processes.ou]\n'
        '[estimators.oracle]\n[samplers.heun_sde]\nname = "example_heun_sde"\n[samplers.em]\n'
        'name = "euler_maruyama"\n[samplers.raises]\nname = "example_raises"\n[samplers.wrong_shape]\n'
        'name = "example_wrong_shape"\n[samplers.nan]\nname = "example_nan"\n'
        '[metrics]\nexact_w2 = {}\nsliced_w2 = {}\n'
        '[[grid]]\nsteps = [20]\nn_samples = [200]\nseeds = [0, 1]\n'
    )
    code = f"""
import sys
sys.path.insert(0, {str(target)!r})
import scorebench as sb
from scorebench.testing import check_sampler
from scorebench.cli import main
assert "example_heun_sde" in sb.list_samplers(), sb.list_samplers()
print(check_sampler(sb.get_sampler("example_heun_sde"), ("vp", "ou")))
sys.exit(main(["run", {str(suite)!r}, "--out", {str(tmp_path / "out")!r}, "--no-progress"]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr  # the broken plugins' cells failed
    assert "ok   gaussian_exact_law" in result.stdout
    frame = read_results(tmp_path / "out")
    assert set(frame["sampler"]) == {"heun_sde", "em", "raises", "wrong_shape", "nan"}
    by = {name: group for name, group in frame.groupby("sampler")}
    for good in ("heun_sde", "em"):
        assert (by[good]["status"] == "ok").all() and by[good]["value"].notna().all()
    # each broken plugin is reported per cell and seed, with what went wrong
    assert (by["raises"]["status"] == "error").all()
    assert by["raises"]["message"].str.contains("RuntimeError: example plugin failure").all()
    assert (by["wrong_shape"]["status"] == "error").all()
    wrong = r"returned \(200, 1\); expected a tensor of shape \(200, 2\)"
    assert by["wrong_shape"]["message"].str.contains(wrong).all()
    assert (by["nan"]["status"] == "diverged").all()
    assert by["nan"]["message"].str.contains("non-finite output in 200 of 200").all()
    for broken in ("raises", "wrong_shape", "nan"):
        assert set(by[broken]["seed"]) == {0, 1} and by[broken]["value"].isna().all()
    # provenance names the distribution, its version and the hash of the file each plugin came from
    plugins = json.loads((tmp_path / "out" / "provenance.json").read_text())["plugins"]
    installed = target / "scorebench_example_plugin" / "__init__.py"
    sha = hashlib.sha256(installed.read_bytes()).hexdigest()
    assert set(plugins) == {"samplers.heun_sde", "samplers.raises", "samplers.wrong_shape", "samplers.nan"}
    for info in plugins.values():
        assert (info["distribution"], info["version"], info["sha256"]) == ("scorebench-example-plugin", "0.1.0", sha)
    assert plugins["samplers.heun_sde"]["spec"] == (
        "entry point scorebench.samplers: example_heun_sde = scorebench_example_plugin:StochasticHeun")


def test_the_documented_example_sampler_passes() -> None:
    """The code in docs/proposing-a-sampler.md, executed as written, defines a sampler that passes."""
    text = (ROOT / "docs" / "proposing-a-sampler.md").read_text()
    code = text.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "proposing-a-sampler.md", "exec"), namespace)
    assert check_sampler(namespace["HeunSDE"](), ("vp", "ou")).passed
    # suites/proposal.toml runs the same sampler from suites/my_sampler.py
    assert code.strip().split("\n", 1)[1].strip() == (ROOT / "suites" / "my_sampler.py").read_text().split(
        '"""', 2)[2].strip()


def _example_plugin(*names: str) -> list:
    sys.path.insert(0, str(PLUGIN))
    try:
        import scorebench_example_plugin as plugin
    finally:
        sys.path.remove(str(PLUGIN))
    return [getattr(plugin, n) for n in names]


@pytest.mark.parametrize(("name", "wrong_on"), [
    ("WrongScoreCoefficient", {"vp", "ou", "ve", "subvp"}), ("DroppedScore", {"vp", "ou", "ve", "subvp"}),
    ("WrongNoiseVariance", {"vp", "ou", "ve", "subvp"}), ("VPOnlyDrift", {"ve", "subvp"}),
])
def test_wrong_samplers_pass_every_consistency_check_and_fail_convergence(name: str, wrong_on: set) -> None:
    """Each is an affine, deterministic, well-shaped step with one mistake: its samples agree with its
    own exact law, so only the correctness check can see that the law is not the target's."""
    (cls,) = _example_plugin(name)
    report = check_sampler(cls(), raise_on_failure=False)
    assert [check for check, ok, _ in report.results if not ok] == ["convergence"]
    failed = {c.process for c in report.convergence if not c.passed}
    assert failed == wrong_on
    text = str(report)
    for process in wrong_on:
        assert f"\n         {process}: " in text
    assert "exceeds the tolerance 0.1" in text


def test_the_measured_orders_are_the_schemes_orders() -> None:
    """Euler--Maruyama, DDPM and the Euler ODE are first order, Heun's ODE second order: from exact
    draws of p_T nothing but the discretisation remains, so the fitted slopes are the textbook ones.
    (Euler--Maruyama under VE is at least first order; its first-order term is small there because its
    local errors scale with g^2, tiny near t_min, and larger ones are contracted, so it shows a steeper
    slope over these step counts.)"""
    expected = [("euler_maruyama", {}, -1.0), ("ddpm", {}, -1.0), ("pf_ode", {}, -2.0),
                ("pf_ode", {"method": "euler"}, -1.0)]
    for name, params, order in expected:
        for c in check_sampler(sb.get_sampler(name, **params)).convergence:
            if (name, c.process) == ("euler_maruyama", "ve"):
                assert c.order < -0.9, c.summary()
                continue
            assert abs(c.order - order) < 0.1, (name, c.summary())
            assert c.se < 0.05


def test_a_fixed_corrector_step_shows_as_a_plateau_with_an_ode_predictor() -> None:
    """pc_finite_horizon's Langevin corrector at T1 has a bias of the order of its step that the
    probability-flow ODE does not contract; with the default step the error stops shrinking."""
    report = check_sampler(sb.get_sampler("pc_finite_horizon", predictor="ode_heun"), raise_on_failure=False)
    assert [check for check, ok, _ in report.results if not ok] == ["convergence"]
    plateau = [c for c in report.convergence if not c.passed]
    assert {c.process for c in plateau} >= {"vp", "ou", "subvp"}
    for c in plateau:
        assert c.errors[-1] > 0.9 * c.errors[0]


def test_judge_fails_what_it_must_and_passes_what_it_must() -> None:
    from scorebench.convergence import judge

    steps = (50, 100, 200, 400)
    first = [1e-1 * 50 / s for s in steps]
    assert judge(steps, first, 1e-9)[2] == []
    assert abs(judge(steps, first, 1e-9)[0] + 1) < 1e-12
    assert judge(steps, [1e-12] * 4, 1e-9)[2] == []  # an exact sampler: every error below the rounding level
    assert "not finite" in judge(steps, [0.1, 0.05, float("inf"), 0.01], 1e-9)[2][0]
    slow = [0.09 * (50 / s) ** 0.3 for s in steps]
    assert judge(steps, slow, 1e-9)[2] == ["fitted order -0.30 ± 0.00: slower than steps^-0.5"]
    assert "exceeds the tolerance 0.1" in judge(steps, [0.8, 0.4, 0.2, 0.11], 1e-9)[2][0]
    # noise: errors within the resolution may wander; above it they must shrink
    assert judge(steps, [0.2, 0.02, 0.025, 0.015], 0.03)[2] == []
    assert judge(steps, [0.2, 0.05, 0.06, 0.015], 0.03)[2] == ["the error does not shrink from 100 -> 200 steps"]


def test_check_sampler_rejects_a_bad_ladder() -> None:
    with pytest.raises(ValueError, match="ladder must be at least two increasing step counts"):
        check_sampler(sb.get_sampler("ddpm"), ladder=(100, 50))


# -- the estimator kit ---------------------------------------------------------------------------


class GaussianFit(Estimator):
    """Fits a Gaussian to its training samples: its score ``-Sigma_t^{-1} (x - alpha_t m)`` with
    ``Sigma_t = alpha_t^2 C + sigma_t^2 I`` is the exact score of the fitted law diffused (a small,
    correct learned estimator; the subclasses below each break one thing)."""

    n_train = 2000

    def describe(self) -> dict:
        return {"name": self.name, "n_train": self.n_train}

    def samples(self, data: sb.Target | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x0 = training_samples(data, self.n_train, generator)
        if not bool(torch.isfinite(x0).all()):
            raise ValueError(f"{self.name}: the training data contain non-finite values")
        return x0

    def fit(self, data: sb.Target | torch.Tensor, process: sb.ForwardProcess,
            generator: torch.Generator | None = None) -> LearnedScore:
        x0 = self.samples(data, default_generator(generator))
        m, c = empirical_moments(x0)
        lam, vec = torch.linalg.eigh(c)
        record = TrainingRecord(self.record_name())
        record.log(0, float(lam.sum()))
        record.iterations = record.stopped_at = 1

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            alpha, sigma = process_scales(process, self.time(t))
            centred = (x - alpha[:, None] * m.to(x)) @ vec.to(x)
            return -(centred / (alpha[:, None] ** 2 * lam.to(x) + sigma[:, None] ** 2)) @ vec.to(x).T

        return LearnedScore(x0.shape[1], process, fn, record, dtype=torch.float64)

    def time(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def record_name(self) -> str:
        return self.name


class Unseeded(GaussianFit):
    def samples(self, data: sb.Target | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x0 = super().samples(data, generator)
        return x0 + 0.01 * torch.randn(x0.shape, dtype=x0.dtype)  # the global generator, not the given one


class IgnoresGenerator(GaussianFit):
    def samples(self, data: sb.Target | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return super().samples(data, torch.Generator().manual_seed(123))


class WrongSign(GaussianFit):
    def fit(self, data: sb.Target | torch.Tensor, process: sb.ForwardProcess,
            generator: torch.Generator | None = None) -> LearnedScore:
        model = super().fit(data, process, generator)
        fn = model.fn
        model.fn = lambda x, t: -fn(x, t)
        return model


class IgnoresTime(GaussianFit):
    def time(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, 1e-3)  # the score of the data law at every time


class AcceptsNaN(GaussianFit):
    def samples(self, data: sb.Target | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return training_samples(data, self.n_train, generator)


class MisnamedRecord(GaussianFit):
    def record_name(self) -> str:
        return "gaussian_fit"


class Float32Score(GaussianFit):
    def fit(self, data: sb.Target | torch.Tensor, process: sb.ForwardProcess,
            generator: torch.Generator | None = None) -> LearnedScore:
        model = super().fit(data, process, generator)
        model.score = lambda x, t: model.fn(x.double(), torch.as_tensor(t, dtype=torch.float64).expand(
            x.shape[0])).float()  # not cast back to the points' dtype
        return model


class DeclaresExactButFitsSamples(GaussianFit):
    needs_exact_target = True


def failed(report: CheckReport) -> list[str]:
    return [name for name, ok, _ in report.results if not ok]


def test_a_correct_learned_estimator_passes_every_check() -> None:
    report = check_estimator(GaussianFit())
    assert [name for name, _, _ in report.results] == ESTIMATOR_CHECKS
    assert "fits training samples" in str(report)


@pytest.mark.parametrize(("cls", "check", "message"), [
    (Unseeded, "determinism", "two fits with the same seed differ"),
    (IgnoresGenerator, "determinism", "fits with different seeds are identical"),
    (WrongSign, "quality_floor", "relative to the zero score's is not below 1 at t=0.2"),
    (IgnoresTime, "quality_floor", "relative to the zero score's is not below 1 at"),
    (AcceptsNaN, "refuses_bad_data", "training samples with NaN entries were accepted"),
    (MisnamedRecord, "training_record", "the record names the estimator 'gaussian_fit', it is registered as"),
    (Float32Score, "score_shapes_and_dtypes", "score dtype torch.float32, the points are torch.float64"),
    (DeclaresExactButFitsSamples, "needs_exact_target", "declares needs_exact_target = True but fitted"),
])
def test_a_wrong_estimator_fails_the_check_that_names_its_mistake(cls: type, check: str, message: str) -> None:
    report = check_estimator(cls(), raise_on_failure=False)
    assert failed(report) == [check], str(report)
    assert message in str(report)
    with pytest.raises(EstimatorCheckError, match=f"FAIL {check}"):
        check_estimator(cls())


def test_not_an_estimator() -> None:
    report = check_estimator(object(), raise_on_failure=False)  # type: ignore[arg-type]
    assert report.results == [("interface", False, "AssertionError: expected a scorebench Estimator, got object")]


def test_a_learned_estimator_that_says_it_is_not_is_held_to_less() -> None:
    """``learned=False`` drops the different-seed and record requirements, which an estimator
    ignoring its generator then passes; the default holds it to them."""
    assert check_estimator(IgnoresGenerator(), learned=False).passed
    with pytest.raises(ValueError, match="check_estimator: target must be a Target with closed-form marginals"):
        check_estimator(GaussianFit(), target=sb.get_target("funnel"))


# -- the metric kit ------------------------------------------------------------------------------


class MeanGap(SampleMetric):
    """``||mean(x) - mean(y)||``: a symmetric, permutation-invariant (pseudo-)distance."""

    def compute(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        return float((x.double().mean(0) - y.double().mean(0)).norm())


class RowPaired(SampleMetric):
    """``mean_i ||x_i - y_i||``: depends on the order of the rows."""

    def compute(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        return float((x.double() - y.double()).norm(dim=1).mean())


class NegativeGap(MeanGap):
    def compute(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        return -super().compute(x, y, generator)


class SkipsInputChecks(MeanGap):
    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> float:
        return self.compute(x, y, torch.Generator())


class GlobalJitter(MeanGap):
    """Adds a jitter of size 1e-9 drawn from the global generator (not the one it is given)."""

    def compute(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
        return super().compute(x, y, generator) + 1e-9 * float(torch.rand(()))


class FirstPointMean(MomentMetric):
    """``||x_0 - mean||``: reads one row."""

    def compute(self, x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> float:
        return float((x[0] - mean).norm())


class NaNHidingScoreMSE(ScoreMSE):
    def compute(self, score: sb.ScoreModel, target: sb.Target, process: sb.ForwardProcess, n: int,
                generator: torch.Generator) -> list[tuple[float, float]]:
        return [(t, 0.0 if math.isnan(v) else v) for t, v in super().compute(score, target, process, n, generator)]


class FirstParticleTrajectoryMSE(TrajectoryScoreMSE):
    def compute(self, score: sb.ScoreModel, target: sb.Target, process: sb.ForwardProcess,
                states: list[tuple[float, torch.Tensor]]) -> list[tuple[float, float]]:
        return super().compute(score, target, process, [(t, x[:2]) for t, x in states])


class DataReferenceW2(ExactW2):
    """Says it measures to ``p_{t_min}`` (``reference_law``) but measures to the data law."""

    def compute(self, sampler: sb.Sampler, score: sb.ScoreModel, process: sb.ForwardProcess, grid: torch.Tensor,
                target: sb.Target, init: GaussianLaw | None = None) -> float:
        law = exact_output_law(sampler, score, process, grid, init=init)
        return gaussian_w2(law, GaussianLaw.of(target))


def test_a_correct_custom_metric_passes_every_check() -> None:
    report = check_metric(MeanGap(), symmetric=True)
    assert [name for name, ok, _ in report.results if ok] == [
        "interface", "finite_and_nonnegative", "zero_on_identical", "same_law_floor", "symmetry",
        "permutation_invariance", "float32_inputs", "determinism", "input_checks"]
    assert "skipped" not in str(report)


@pytest.mark.parametrize(("metric", "options", "checks", "message"), [
    (RowPaired(), {"symmetric": True}, ["permutation_invariance"], "permuting the rows changed the value"),
    (NegativeGap(), {}, ["finite_and_nonnegative", "same_law_floor"], "negative distances: {'same law': -"),
    (SkipsInputChecks(), {}, ["input_checks"], "x with a NaN entry: accepted, returned nan"),
    (GlobalJitter(), {}, ["determinism"], "the same generator seed gave"),
    (FirstPointMean(), {}, ["zero_on_identical", "permutation_invariance"], "permuting the rows"),
    (NaNHidingScoreMSE(), {}, ["nan_score"], "a NaN score gave the finite values"),
    (FirstParticleTrajectoryMSE(), {}, ["permutation_invariance"], "permuting the particles changed the values"),
    (DataReferenceW2(reference="t_min"), {}, ["zero_when_laws_agree"], "a chain that stays at the reference law"),
], ids=lambda v: type(v).__name__ if isinstance(v, Metric) else None)
def test_a_wrong_metric_fails_the_check_that_names_its_mistake(
    metric: Metric, options: dict, checks: list[str], message: str
) -> None:
    report = check_metric(metric, raise_on_failure=False, **options)
    assert failed(report) == checks, str(report)
    assert message in str(report)
    with pytest.raises(MetricCheckError, match=f"FAIL {checks[0]}"):
        check_metric(metric, **options)


def test_a_symmetry_claim_is_checked_only_where_made() -> None:
    """``sinkhorn`` scales its entropic blur by the spread of ``y``, so it is not symmetric: it
    fails the check when the claim is made, and skips it otherwise."""
    assert check_metric(sb.get_metric("sinkhorn"), symmetric=True, raise_on_failure=False).failures[0].startswith(
        "symmetry: AssertionError: metric(x, y) = ")
    assert "ok   symmetry: skipped: the metric does not claim symmetry" in str(check_metric(sb.get_metric("sinkhorn")))


def test_an_unbiased_estimator_is_held_to_nonnegativity_unless_declared() -> None:
    """The unbiased MMD dips below zero between two samples of one law; claimed biased, it fails."""
    report = check_metric(sb.get_metric("mmd", bandwidth=1.0), raise_on_failure=False)
    assert failed(report) == ["finite_and_nonnegative", "zero_on_identical"]
    assert check_metric(sb.get_metric("mmd", bandwidth=1.0), unbiased=True).passed


def test_not_a_metric() -> None:
    report = check_metric(object(), raise_on_failure=False)  # type: ignore[arg-type]
    assert report.results == [("interface", False, "AssertionError: expected a scorebench Metric, got object")]
    with pytest.raises(ValueError, match="check_metric: symmetric must be true, false or None, got 'yes'"):
        check_metric(MeanGap(), symmetric="yes")  # type: ignore[arg-type]


# -- checks one at a time, and the pytest helper -------------------------------------------------


def test_each_kit_yields_its_checks_one_at_a_time_with_ids() -> None:
    sampler_ids = [c.id for c in sampler_checks(sb.get_sampler("ddpm", variance="posterior"))]
    assert sampler_ids[0] == "ddpm(variance='posterior')-interface" and len(sampler_ids) == CHECKS
    estimator = [c.id for c in estimator_checks(sb.get_estimator("mlp_dsm", iterations=50))]
    assert estimator == [f"mlp_dsm(iterations=50)-{name}" for name in ESTIMATOR_CHECKS]
    assert [c.name for c in metric_checks(sb.get_metric("score_mse"))] == [
        "interface", "exact_score_zero", "perturbed_score_positive", "nan_score", "determinism"]
    assert [c.name for c in metric_checks(sb.get_metric("exact_w2", reference="t_min"))][1:] == [
        "zero_when_laws_agree", "shifted_law_positive", "perturbed_score_larger", "determinism"]


def test_a_yielded_check_fails_alone_and_a_skip_is_a_pytest_skip() -> None:
    checks = {c.name: c for c in estimator_checks(WrongSign())}
    assert checks["interface"]() is None
    with pytest.raises(AssertionError, match="not below 1"):
        checks["quality_floor"]()
    oracle = {c.name: c for c in estimator_checks(sb.get_estimator("oracle"))}
    with pytest.raises(CheckSkipped, match="not a learned estimator: no training record"):
        oracle["training_record"]()
    assert issubclass(CheckSkipped, unittest.SkipTest)  # which pytest reports as a skip


def test_parametrize_with_checks_gives_one_id_per_component_and_check() -> None:
    mark = parametrize_with_checks([GaussianFit(), (MeanGap(), {"symmetric": True})],
                                   marks=lambda c: [pytest.mark.slow] if c.name == "quality_floor" else [])
    (argname, params) = mark.args
    assert argname == "check"
    ids = [p.id for p in params]
    assert ids[:2] == ["gaussianfit(n_train=2000)-interface", "gaussianfit(n_train=2000)-fit_returns_score_model"]
    assert "meangap()-symmetry" in ids and len(ids) == len(set(ids)) == len(ESTIMATOR_CHECKS) + 9
    assert [p.id for p in params if p.marks] == ["gaussianfit(n_train=2000)-quality_floor"]
    with pytest.raises(ValueError, match="repeated ids"):
        parametrize_with_checks([MeanGap(), MeanGap()])
    with pytest.raises(ValueError, match="expected a Sampler, an Estimator or a Metric, got object"):
        parametrize_with_checks([object()])
