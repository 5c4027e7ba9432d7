"""Conformance kits for samplers, estimators and metrics, in the spirit of scikit-learn's
``check_estimator`` and ``parametrize_with_checks``.

    from scorebench.testing import check_estimator, check_metric, check_sampler
    check_sampler(MySampler())          # raises SamplerCheckError listing every failed check
    check_estimator(MyEstimator())      # EstimatorCheckError
    check_metric(MyMetric())            # MetricCheckError

Each kit is also a generator of named checks (:func:`sampler_checks`, :func:`estimator_checks`,
:func:`metric_checks`), one :class:`Check` at a time, so that a test suite shows one result per
(component, check); :func:`parametrize_with_checks` turns components into such pytest
parameters::

    @parametrize_with_checks([MySampler(), MyEstimator(), MyMetric()])
    def test_conformance(check):
        check()

A check passes by returning (a detail line or nothing), fails by raising, and is skipped by
raising :class:`CheckSkipped` (a ``unittest.SkipTest``, which pytest shows as a skip).

**Samplers.**  Each check runs the sampler on small Gaussian problems whose answers are known:

* ``interface``: a :class:`~scorebench.samplers.Sampler` with an integer ``noise_per_step >= 0``.
* ``shapes_and_dtypes``: ``(n, d)`` output in float32 and float64, finite, for every process.
* ``device``: output on the generator's device (CUDA too, when present).
* ``determinism``: the same seed gives the same output; another seed a different one.
* ``chunking``: running in chunks gives the same particles as one batch (unless the sampler
  declares ``batch_invariant = False``, as score_sde's batch-normalised corrector does).
* ``nan_handling``: a score that returns NaN leads to non-finite output or a clear error,
  never to finite numbers that hide it.
* ``nfe``: the reported NFE equals the score evaluations a particle actually received.
* ``gaussian_exact_law``: on a Gaussian target with the exact score, the sample mean and
  covariance agree with the sampler's exact output law (z-test, affine samplers) or, for
  non-affine samplers, come within a tolerance of the target after many steps (200 steps,
  5000 particles by default; ``steps`` and ``n`` lower that for samplers whose steps are
  costly, such as trained JKO blocks or interacting particles, whose ``O(n^2)`` kernels make
  5000 particles slow).
* ``convergence``: correctness, not only consistency.  With the exact score, started from
  exact draws of ``p_T``, the error to the target at 50, 100, 200 and 400 steps (``ladder``)
  must be finite, shrink from each step count to the next, fall at a fitted order of at
  least 0.5 and end below a tolerance of 0.1 (W2); exact W2 of the exact output law for
  affine samplers, the W2 of the sample moments (20000 particles, or ``n``) for the others,
  down to their noise floor.  A gradient-flow sampler (JKO) is held to the Langevin flow it
  discretises.  The measured orders are reported.  See :mod:`scorebench.convergence`.

A step that uses a wrong score coefficient, ignores the score, draws the wrong noise
variance or writes one process's coefficients into the step passes every consistency check
(its exact law is still a Gaussian its samples agree with) and fails ``convergence``.

**Estimators.**  Each check fits the estimator (with its own parameters: pass a small budget,
such as its ``cls(**cls.test_params)``) on a 2-d Gaussian whose scores are known in closed form:

* ``interface``: an :class:`~scorebench.estimators.Estimator` with a name, ``describe()``
  naming it, and ``needs_exact_target`` declared as a bool.
* ``fit_returns_score_model``: ``fit`` returns a :class:`~scorebench.estimators.ScoreModel` of
  the target's dimension for the given process.
* ``score_shapes_and_dtypes``: the score of ``(n, d)`` points, at a scalar time and at one time
  per row, has shape ``(n, d)``, the dtype of the points (float32 and float64), their device,
  finite entries; each call counts one call and ``n`` evaluations.
* ``device``: a fit with a generator on a device scores points on that device (CUDA too, when
  present).
* ``determinism``: the same generator seed gives the same model; for learned estimators another
  seed gives a different one.
* ``training_record``: a learned model carries a :class:`~scorebench.estimators.TrainingRecord`
  under the estimator's registered name, with finite logged losses and a known stop reason.
* ``needs_exact_target``: the declaration holds: an estimator that needs the exact target refuses
  training samples with a ``ValueError``; one that does not fits them.
* ``refuses_bad_data``: training samples with NaN or inf entries, or of a shape other than
  ``(n, d)``, are refused with a ``ValueError``.
* ``quality_floor``: at times ``0.2 T``, ``0.5 T`` and ``T`` the fitted score is closer to the
  exact score (in mean squared error over exact draws of ``p_t``) than the zero score is; an
  estimate that ignores ``t`` or has the wrong sign fails.

**Metrics.**  Checks by the metric's ``kind`` (see :mod:`scorebench.metrics.base`); every kind
gets ``interface`` (a :class:`~scorebench.metrics.Metric` of a known kind whose ``describe()``
has its name and a version) and ``determinism``.

* sample and moment metrics: ``finite_and_nonnegative`` (an ``unbiased`` estimator of a squared
  distance may dip below zero on samples of one law, and is held to positivity on shifted ones
  only), ``zero_on_identical`` (a sample against itself, or a sample whose empirical moments are
  the target's, is at distance zero; skipped for unbiased estimators), ``same_law_floor`` (two
  samples of one law are closer than a shifted pair, which is closer than a pair shifted
  further), ``symmetry`` (where the metric claims it: ``symmetric``), ``permutation_invariance``
  (of the rows), ``float32_inputs`` (sample metrics), ``input_checks`` (non-finite entries, too
  few points and wrong shapes refused with a :class:`~scorebench.metrics.MetricInputError` or
  ``ValueError`` naming the metric).
* score and trajectory metrics: ``exact_score_zero`` (zero for the exact score),
  ``perturbed_score_positive`` (positive for a score off by a constant of norm 0.1, larger for
  norm 0.5), ``nan_score`` (a NaN score gives a non-finite value or an error, never a finite
  number that hides it) and, for trajectory metrics, ``permutation_invariance`` of the particles.
* regularity metrics (a property of the score model itself, not an error): ``linear_score``
  (the linear score ``s(x) = -c A x`` gives ``c ||A||_op`` at every time, twice that for ``2c``),
  ``nan_score`` and ``determinism`` as for score metrics.
* exact metrics: ``zero_when_laws_agree`` (a sampler that leaves its start unchanged, started from
  the metric's reference law), ``shifted_law_positive`` (started from a shifted law: positive,
  larger for a larger shift), ``perturbed_score_larger`` (a sampler run with a perturbed score
  lands farther than with the exact score).
* mode metrics, on ``ring8``: ``finite_in_unit_interval``, ``dropped_mode_seen`` (a sample missing
  one of the eight modes scores above a target sample), ``permutation_invariance``,
  ``float32_inputs``, ``determinism`` and ``input_checks`` (non-finite entries, one point, a wrong
  shape and a one-mode target refused with a :class:`~scorebench.metrics.MetricInputError` naming
  the metric).
"""

from __future__ import annotations

import inspect
import math
import unittest
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .convergence import LADDER, Convergence, convergence
from .estimators.base import Estimator, ScoreModel
from .estimators.oracle import NoisyOracle, OracleScore, exact_score
from .estimators.training import STOP_REASONS, TrainingRecord
from .exact import GaussianLaw, exact_output_law, gaussian_w2
from .metrics.base import METRIC_KINDS, Metric, MetricInputError
from .metrics.moments import empirical_moments
from .processes import PROCESSES, ForwardProcess
from .samplers.base import Sampler
from .samplers.noise import NOISE_BLOCK
from .targets.base import Target
from .targets.gaussian import GMM, Gaussian
from .targets.mixture import GaussianMixture
from .validation import is_int_at_least

if TYPE_CHECKING:
    import pytest


class CheckError(AssertionError):
    """One or more conformance checks failed; the message lists them."""


class SamplerCheckError(CheckError):
    """One or more sampler conformance checks failed; the message lists them."""


class EstimatorCheckError(CheckError):
    """One or more estimator conformance checks failed; the message lists them."""


class MetricCheckError(CheckError):
    """One or more metric conformance checks failed; the message lists them."""


class CheckSkipped(unittest.SkipTest):
    """Raised by a check that does not apply to its component; the message says why."""


@dataclass(frozen=True)
class Check:
    """One named conformance check of one component.

    Calling it runs the check: it returns a detail line (or ``None``) when it passes, raises
    (``AssertionError`` or whatever the component raised) when it fails, and raises
    :class:`CheckSkipped` when it does not apply.
    """

    name: str
    #: the component's label, ``name(param=value, ...)`` with the parameters that differ from
    #: the constructor's defaults (see :func:`component_id`)
    component: str
    fn: Callable[[], str | None] = field(repr=False, compare=False)
    #: the component itself
    subject: Any = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        """``component-check``, the pytest id of :func:`parametrize_with_checks`."""
        return f"{self.component}-{self.name}"

    def __call__(self) -> str | None:
        return self.fn()


@dataclass
class CheckReport:
    """Outcome of a kit (:func:`check_sampler`, ...): ``(check, passed, detail)`` per check."""

    sampler: str
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    #: the ``convergence`` check's measurements, one per process (samplers only)
    convergence: list[Convergence] = field(default_factory=list)
    #: what was checked: ``"sampler"``, ``"estimator"`` or ``"metric"``
    kind: str = "sampler"

    @property
    def component(self) -> str:
        """The checked component's name."""
        return self.sampler

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.results)

    @property
    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, ok, detail in self.results if not ok]

    def __str__(self) -> str:
        lines = [f"check_{self.kind}({self.sampler}):"]
        for name, ok, detail in self.results:
            first, *rest = (detail or "").splitlines() or [""]
            lines.append(f"  {'ok  ' if ok else 'FAIL'} {name}" + (f": {first}" if first else ""))
            lines += [f"         {line}" for line in rest]
        return "\n".join(lines)


def run_checks(checks: Iterable[Check], report: CheckReport) -> CheckReport:
    """Run every check, appending ``(name, passed, detail)`` to ``report``: a check that raises
    fails with the exception as its detail; a skipped one passes with ``skipped: why``."""
    for check in checks:
        try:
            detail = check()
            report.results.append((check.name, True, detail or ""))
        except CheckSkipped as skip:
            report.results.append((check.name, True, f"skipped: {skip}"))
        except Exception as exc:  # a check failing by assertion or by crashing is a failure
            report.results.append((check.name, False, f"{type(exc).__name__}: {exc}"))
    return report


def component_id(component: object) -> str:
    """``name(param=value, ...)``: the component's name and the ``describe()`` entries whose
    values differ from its constructor's defaults (``version`` left out)."""
    name = str(getattr(component, "name", type(component).__name__))
    try:
        described = dict(component.describe())  # type: ignore[attr-defined]
    except Exception:
        described = {}
    try:
        defaults = {k: p.default for k, p in inspect.signature(type(component)).parameters.items()}
    except (TypeError, ValueError):
        defaults = {}
    args = []
    for key, value in described.items():
        if key in ("name", "version") or (key in defaults and _same(defaults[key], value)):
            continue
        args.append(f"{key}={value!r}")
    return f"{name}({', '.join(args)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _gen(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class _NaNScore(OracleScore):
    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, math.nan)


# ---------------------------------------------------------------------------------------------
# samplers


TARGET = Gaussian(dim=3, mean=[1.0, -2.0, 0.5], condition_number=8.0)


def sampler_checks(
    sampler: Sampler,
    processes: tuple[str, ...] = ("vp", "ou", "ve", "subvp"),
    *,
    steps: int | None = None,
    n: int | None = None,
    ladder: tuple[int, ...] = LADDER,
) -> Iterator[Check]:
    """The sampler checks (see the module docstring), one :class:`Check` at a time.

    Parameters
    ----------
    sampler:
        The sampler to check; anything else yields one failing ``interface`` check.
    processes:
        Registered forward processes to check with.
    steps, n:
        Grid size and particle count of the non-affine Gaussian check (defaults 200 and 5000;
        its tolerance, Bures W2 < 0.15 on a 3-d target, allows about 1000 particles); ``n``
        also sets the particles of the non-affine ``convergence`` check (default 20000).
    ladder:
        Step counts of the ``convergence`` check (default 50, 100, 200, 400; fewer and smaller
        for samplers whose steps are costly).

    Returns
    -------
    Iterator[Check]
        ``interface``, ``shapes_and_dtypes``, ``device``, ``determinism``, ``chunking``,
        ``nan_handling``, ``nfe``, ``gaussian_exact_law``, ``convergence``.
    """
    return _sampler_checks(sampler, processes, steps, n, ladder, [])


def _sampler_checks(
    sampler: Sampler, processes: tuple[str, ...], steps: int | None, n: int | None, ladder: tuple[int, ...],
    measured: list[Convergence],
) -> Iterator[Check]:
    for value, what in ((steps, "steps"), (n, "n")):
        if value is not None and not is_int_at_least(value, 1):
            raise ValueError(f"check_sampler: {what} must be a positive integer or None, got {value!r}")
    ladder = tuple(ladder)
    if len(ladder) < 2 or not all(is_int_at_least(s, 1) for s in ladder) or list(ladder) != sorted(set(ladder)):
        raise ValueError(f"check_sampler: ladder must be at least two increasing step counts, got {ladder!r}")
    procs = {p: PROCESSES.build(p) for p in processes}
    return _sampler_check_list(sampler, procs, steps, n, ladder, measured)


def _sampler_check_list(
    sampler: Sampler, procs: dict[str, ForwardProcess], steps: int | None, n: int | None, ladder: tuple[int, ...],
    measured: list[Convergence],
) -> Iterator[Check]:
    label = component_id(sampler)
    if not isinstance(sampler, Sampler):
        def not_a_sampler() -> None:
            raise AssertionError(f"expected a scorebench Sampler, got {type(sampler).__name__}")

        yield Check("interface", label, not_a_sampler, sampler)
        return

    def score_for(process: ForwardProcess) -> ScoreModel:
        return OracleScore(TARGET, process)

    def interface() -> None:
        m = sampler.noise_per_step
        assert isinstance(m, int) and not isinstance(m, bool) and m >= 0, (
            f"noise_per_step must be an integer >= 0, got {m!r}"
        )

    def shapes_and_dtypes() -> None:
        for pname, process in procs.items():
            for dtype in (torch.float32, torch.float64):
                out = sampler.sample(score_for(process), process, 50, 10, _gen(0), dtype=dtype)
                x = out.samples
                assert tuple(x.shape) == (50, 3), f"{pname}: output shape {tuple(x.shape)}, expected (50, 3)"
                assert x.dtype == dtype, f"{pname}: output dtype {x.dtype}, expected {dtype}"
                assert torch.isfinite(x).all(), f"{pname}: non-finite output with the exact score"
                assert out.steps == 10, f"{pname}: reported {out.steps} steps for a 10-step grid"

    def device() -> str:
        devices = _devices()
        process = procs[next(iter(procs))]
        for dev in devices:
            x = sampler.sample(score_for(process), process, 20, 5, _gen(0, dev)).samples
            assert x.device.type == dev, f"output on {x.device}, the generator is on {dev}"
        return "checked on " + ", ".join(devices)

    def determinism() -> None:
        for pname, process in procs.items():
            a = sampler.sample(score_for(process), process, 40, 8, _gen(5)).samples
            b = sampler.sample(score_for(process), process, 40, 8, _gen(5)).samples
            c = sampler.sample(score_for(process), process, 40, 8, _gen(6)).samples
            assert torch.equal(a, b), f"{pname}: the same seed gave different outputs"
            assert not torch.equal(a, c), f"{pname}: different seeds gave identical outputs"

    def chunking() -> None:
        if not sampler.batch_invariant:
            raise CheckSkipped("the sampler declares batch_invariant = False (its steps use batch statistics)")
        n = NOISE_BLOCK + NOISE_BLOCK // 2
        for pname, process in procs.items():
            whole = sampler.sample(score_for(process), process, n, 6, _gen(3), dtype=torch.float64).samples
            parts = sampler.sample(score_for(process), process, n, 6, _gen(3), dtype=torch.float64,
                                   chunk_size=NOISE_BLOCK).samples
            err = float((whole - parts).abs().max())
            assert err < 1e-8, f"{pname}: chunked output differs from one batch by {err:.3g}"

    def nan_handling() -> None:
        process = procs[next(iter(procs))]
        try:
            x = sampler.sample(_NaNScore(TARGET, process), process, 20, 5, _gen(0)).samples
        except (ValueError, FloatingPointError, RuntimeError):
            return  # a clear error is acceptable
        assert not torch.isfinite(x).all(), "a NaN score produced finite output: the sampler hides NaNs"

    def nfe() -> None:
        process = procs[next(iter(procs))]
        score = score_for(process)
        out = sampler.sample(score, process, 30, 7, _gen(0))
        assert out.nfe == score.calls, f"reported nfe={out.nfe}, but the score was called {score.calls} times"
        assert out.nfe > 0, "the sampler never evaluated the score"

    def gaussian_exact_law() -> str:
        lines = []
        n_check = 20_000 if sampler.affine else (n or 5_000)
        steps_check = 8 if sampler.affine else (steps or 200)
        for pname, process in procs.items():
            score = score_for(process)
            x = sampler.sample(score, process, n_check, steps_check, _gen(11), dtype=torch.float64).samples
            if sampler.affine:
                try:
                    law = exact_output_law(sampler, score, process, 8)
                except ValueError as exc:
                    raise AssertionError(
                        f"{pname}: the sampler declares affine = True, but with the exact (affine) score its "
                        "step is not affine in (x, noise); does it draw noise itself instead of using the "
                        f"noise argument, or should it set affine = False? ({exc})"
                    ) from None
                z = (x.mean(0) - law.mean) / (law.cov.diagonal() / n_check).sqrt()
                se = ((law.cov**2 + torch.outer(law.cov.diagonal(), law.cov.diagonal())) / (n_check - 1)).sqrt()
                zc = (empirical_moments(x)[1] - law.cov) / se
                worst = max(float(z.abs().max()), float(zc.abs().max()))
                assert worst < 4.5, f"{pname}: sample moments disagree with the exact law (max |z| = {worst:.1f})"
                lines.append(f"{pname} max|z|={worst:.1f}")
            else:
                m, c = empirical_moments(x)
                w = gaussian_w2(GaussianLaw(m, c), GaussianLaw.of(TARGET.marginal(process, process.t_min)))
                assert w < 0.15, (f"{pname}: after {steps_check} steps the moments are {w:.3f} (Bures W2) "
                                  "from the target")
                lines.append(f"{pname} bures_w2={w:.3f}")
        return ", ".join(lines)

    def converges() -> str:
        measured[:] = [convergence(sampler, process, TARGET, ladder, n=n) for process in procs.values()]
        failed = [c for c in measured if not c.passed]
        what = measured[0]
        head = f"{what.method}, against {what.reference}"
        if failed:
            raise AssertionError("\n".join([f"{head}; W2 by steps:", *(
                f"{c.process}: {'; '.join(c.problems)} ({c.table()})" for c in failed)]))
        return "\n".join([f"{head}:", *(c.summary() for c in measured)])

    for name, fn in [
        ("interface", interface), ("shapes_and_dtypes", shapes_and_dtypes), ("device", device),
        ("determinism", determinism), ("chunking", chunking), ("nan_handling", nan_handling),
        ("nfe", nfe), ("gaussian_exact_law", gaussian_exact_law), ("convergence", converges),
    ]:
        yield Check(name, label, fn, sampler)


def check_sampler(
    sampler: Sampler,
    processes: tuple[str, ...] = ("vp", "ou", "ve", "subvp"),
    *,
    raise_on_failure: bool = True,
    steps: int | None = None,
    n: int | None = None,
    ladder: tuple[int, ...] = LADDER,
) -> CheckReport:
    """Run every sampler check on ``sampler`` (see :func:`sampler_checks` and the module docstring).

    Returns
    -------
    CheckReport
        Every check's outcome and the ``convergence`` check's measurements; with
        ``raise_on_failure`` (default) a failure raises :class:`SamplerCheckError` instead.
    """
    measured: list[Convergence] = []
    checks = _sampler_checks(sampler, processes, steps, n, ladder, measured)
    report = run_checks(checks, CheckReport(str(getattr(sampler, "name", type(sampler).__name__))))
    report.convergence = measured
    if raise_on_failure and not report.passed:
        raise SamplerCheckError(str(report))
    return report


# ---------------------------------------------------------------------------------------------
# estimators

#: the estimator checks' target: a 2-d Gaussian off the origin with unequal variances, whose
#: diffused scores are known in closed form
ESTIMATOR_TARGET = Gaussian(dim=2, mean=[1.0, -0.5], condition_number=4.0)
#: times of the ``quality_floor`` check, as fractions of the process's horizon ``T``
QUALITY_TIMES = (0.2, 0.5, 1.0)


def estimator_checks(
    estimator: Estimator,
    process: str = "vp",
    *,
    target: Target | None = None,
    learned: bool | None = None,
) -> Iterator[Check]:
    """The estimator checks (see the module docstring), one :class:`Check` at a time.

    The estimator is fitted with its own parameters: give it a small budget (its
    ``test_params``), each fit should take a second or two.  Fits are made the first time a
    check needs them and shared by the checks of one call.

    Parameters
    ----------
    estimator:
        The estimator to check; anything else yields one failing ``interface`` check.
    process:
        The registered forward process to fit for.
    target:
        A target with closed-form marginals (default :data:`ESTIMATOR_TARGET`).
    learned:
        Whether the estimator learns from data (a seed changes its fit, its model carries a
        :class:`~scorebench.estimators.TrainingRecord`); default: it does unless it declares
        ``needs_exact_target``.

    Returns
    -------
    Iterator[Check]
        ``interface``, ``fit_returns_score_model``, ``score_shapes_and_dtypes``, ``device``,
        ``determinism``, ``training_record``, ``needs_exact_target``, ``refuses_bad_data``,
        ``quality_floor``.
    """
    proc = PROCESSES.build(process)
    target = ESTIMATOR_TARGET if target is None else target
    if not (isinstance(target, Target) and target.has_marginals):
        raise ValueError(f"check_estimator: target must be a Target with closed-form marginals, got {target!r}")
    if learned is not None and not isinstance(learned, bool):
        raise ValueError(f"check_estimator: learned must be true, false or None, got {learned!r}")
    return _estimator_check_list(estimator, proc, target, learned)


def _estimator_check_list(
    estimator: Estimator, process: ForwardProcess, target: Target, learned: bool | None
) -> Iterator[Check]:
    label = component_id(estimator)
    if not isinstance(estimator, Estimator):
        def not_an_estimator() -> None:
            raise AssertionError(f"expected a scorebench Estimator, got {type(estimator).__name__}")

        yield Check("interface", label, not_an_estimator, estimator)
        return
    is_learned = (not bool(estimator.needs_exact_target)) if learned is None else learned
    fits: dict[tuple[str, int], ScoreModel] = {}
    d, T = target.dim, process.T

    def fitted(seed: int = 0, device: str = "cpu") -> ScoreModel:
        key = (device, seed)
        if key not in fits:
            fits[key] = estimator.fit(target, process, _gen(seed, device))
        return fits[key]

    def draw(t: float, n: int, seed: int, dtype: torch.dtype = torch.float64, device: str = "cpu") -> torch.Tensor:
        return target.marginal(process, t).sample(n, _gen(seed, device), dtype=dtype)

    def samples(n: int) -> torch.Tensor:
        return target.sample(n, _gen(21), dtype=torch.float64)

    def n_data() -> int:
        n = estimator.describe().get("n_train")
        return n if is_int_at_least(n, 1) else 2000

    def interface() -> None:
        name = estimator.name
        assert isinstance(name, str) and name, f"name must be a non-empty string, got {name!r}"
        described = estimator.describe()
        assert isinstance(described, dict) and described.get("name") == name, (
            f"describe() must be a dict with 'name': {name!r}, got {described!r}")
        declared = estimator.needs_exact_target
        assert isinstance(declared, bool), f"needs_exact_target must be declared true or false, got {declared!r}"
        repr(estimator)

    def fit_returns_score_model() -> None:
        model = fitted()
        assert isinstance(model, ScoreModel), f"fit returned a {type(model).__name__}, not a ScoreModel"
        assert model.dim == d, f"the fitted model has dim {model.dim}, the target {d}"
        assert model.process is process, "the fitted model is not for the process it was fitted for"

    def score_shapes_and_dtypes() -> None:
        model = fitted()
        t = 0.5 * T
        for dtype in (torch.float32, torch.float64):
            x = draw(t, 64, 1, dtype)
            per_row = torch.linspace(0.2 * T, T, 64, dtype=torch.float64)
            for when, tt in (("a scalar time", t), ("one time per row", per_row)):
                calls, evaluations = model.calls, model.evaluations
                out = model(x, tt)
                where = f"{dtype}, {when}"
                assert isinstance(out, torch.Tensor), f"{where}: the score is a {type(out).__name__}, not a tensor"
                assert tuple(out.shape) == (64, d), f"{where}: score shape {tuple(out.shape)}, expected (64, {d})"
                assert out.dtype == dtype, f"{where}: score dtype {out.dtype}, the points are {dtype}"
                assert out.device == x.device, f"{where}: score on {out.device}, the points on {x.device}"
                assert bool(torch.isfinite(out).all()), f"{where}: non-finite score"
                assert (model.calls - calls, model.evaluations - evaluations) == (1, 64), (
                    f"{where}: one call of 64 points counted {model.calls - calls} calls and "
                    f"{model.evaluations - evaluations} evaluations")

    def device() -> str:
        devices = _devices()
        for dev in devices:
            model = fitted(0, dev)
            x = draw(0.5 * T, 16, 1, torch.float32, dev)
            out = model(x, 0.5 * T)
            assert out.device == x.device, f"fitted with a generator on {dev}, scored points on {x.device}: " \
                f"the score is on {out.device}"
        return "checked on " + ", ".join(devices)

    def determinism() -> str | None:
        x = draw(0.5 * T, 64, 2)
        a = fitted(0)(x, 0.5 * T)
        b = estimator.fit(target, process, _gen(0))(x, 0.5 * T)
        assert torch.equal(a, b), (
            f"two fits with the same seed differ (max {float((a - b).abs().max()):.3g}): the fit draws from a "
            "source other than the generator it is given")
        if not is_learned:
            return "not a learned estimator: a different seed may give the same model"
        c = estimator.fit(target, process, _gen(1))(x, 0.5 * T)
        assert not torch.equal(a, c), "fits with different seeds are identical: the fit ignores its generator"
        return None

    def training_record() -> None:
        if not is_learned:
            raise CheckSkipped("not a learned estimator: no training record")
        record = getattr(fitted(), "record", None)
        assert isinstance(record, TrainingRecord), (
            f"a learned model must carry a TrainingRecord as .record, got {type(record).__name__}")
        assert record.estimator == estimator.name, (
            f"the record names the estimator {record.estimator!r}, it is registered as {estimator.name!r}")
        assert record.losses, "the record logged no loss"
        assert len(record.loss_iterations) == len(record.losses), (
            f"{len(record.loss_iterations)} logged iterations for {len(record.losses)} losses")
        bad = [v for v in record.losses + record.val_losses if not math.isfinite(v)]
        assert not bad, f"non-finite logged losses: {bad[:3]}"
        assert record.status == "ok", f"a fit that returned has status {record.status!r}"
        assert record.stop_reason in STOP_REASONS, (
            f"stop_reason {record.stop_reason!r}; allowed: {', '.join(STOP_REASONS)}")
        assert record.fit_seconds >= 0 and math.isfinite(record.fit_seconds), (
            f"fit_seconds {record.fit_seconds!r}")

    def needs_exact_target() -> str:
        data = samples(n_data())
        if estimator.needs_exact_target:
            try:
                estimator.fit(data, process, _gen(0))
            except ValueError as exc:
                return f"training samples refused: {exc}"
            raise AssertionError("declares needs_exact_target = True but fitted training samples without a ValueError")
        try:
            model = estimator.fit(data, process, _gen(0))
        except ValueError as exc:
            raise AssertionError(
                f"declares needs_exact_target = False but refused training samples: {exc}") from None
        x = draw(0.5 * T, 16, 1)
        out = model(x, 0.5 * T)
        assert tuple(out.shape) == (16, d) and bool(torch.isfinite(out).all()), (
            "the model fitted on training samples gives a score of the wrong shape or non-finite")
        return "fits training samples"

    def refuses_bad_data() -> None:
        good = samples(n_data())
        nan, inf = good.clone(), good.clone()
        nan[3, 1] = math.nan
        inf[5, 0] = math.inf
        for what, data in (("NaN entries", nan), ("inf entries", inf), ("shape (n,)", good[:, 0]),
                           ("shape (n, 1, d)", good[:, None, :])):
            try:
                estimator.fit(data, process, _gen(0))
            except ValueError:
                continue
            except Exception as exc:
                raise AssertionError(
                    f"training samples with {what}: raised {type(exc).__name__} ({exc}), not a ValueError") from None
            raise AssertionError(f"training samples with {what} were accepted")

    def quality_floor() -> str:
        model = fitted()
        ratios = []
        for fraction in QUALITY_TIMES:
            t = max(fraction * T, process.t_min)
            x = draw(t, 2000, 7)
            exact = exact_score(target, process, x, t)
            err = float((model(x, t).double() - exact).pow(2).sum(1).mean())
            ratios.append((t, err / float(exact.pow(2).sum(1).mean())))
        text = ", ".join(f"t={t:.3g}: {r:.3g}" for t, r in ratios)
        worse = [(t, r) for t, r in ratios if not r < 1.0]
        assert not worse, ("mean squared error relative to the zero score's is not below 1 at "
                           + ", ".join(f"t={t:.3g} ({r:.3g})" for t, r in worse) + f" (all: {text})")
        return f"error / zero score's error: {text}"

    for name, fn in [
        ("interface", interface), ("fit_returns_score_model", fit_returns_score_model),
        ("score_shapes_and_dtypes", score_shapes_and_dtypes), ("device", device), ("determinism", determinism),
        ("training_record", training_record), ("needs_exact_target", needs_exact_target),
        ("refuses_bad_data", refuses_bad_data), ("quality_floor", quality_floor),
    ]:
        yield Check(name, label, fn, estimator)


def check_estimator(
    estimator: Estimator,
    process: str = "vp",
    *,
    target: Target | None = None,
    learned: bool | None = None,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Run every estimator check on ``estimator`` (see :func:`estimator_checks`).

    Returns
    -------
    CheckReport
        Every check's outcome; with ``raise_on_failure`` (default) a failure raises
        :class:`EstimatorCheckError` instead.
    """
    checks = estimator_checks(estimator, process, target=target, learned=learned)
    report = run_checks(checks, CheckReport(str(getattr(estimator, "name", type(estimator).__name__)),
                                            kind="estimator"))
    if raise_on_failure and not report.passed:
        raise EstimatorCheckError(str(report))
    return report


# ---------------------------------------------------------------------------------------------
# metrics

#: the metric checks' target (score, trajectory and exact metrics): a 2-d Gaussian
METRIC_TARGET = Gaussian(dim=2, mean=[1.0, -0.5], condition_number=4.0)


class _Still(Sampler):
    """A sampler whose step leaves the particles where they are: its output law is its start."""

    noise_per_step = 0

    def step(self, score: ScoreModel, process: ForwardProcess, x: torch.Tensor, t: float, t_next: float,
             noise: torch.Tensor | None) -> torch.Tensor:
        return x


class _SkewedScore(OracleScore):
    """The exact score plus ``0.3 x``: an error whose size varies from point to point."""

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        return super().score(x, t) + 0.3 * x


class _LinearScore(ScoreModel):
    """``s(x, t) = -scale * x A^T`` with a fixed non-symmetric ``A`` (spectral norm 5): a known Jacobian."""

    MATRIX = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)

    def __init__(self, process: ForwardProcess, scale: float) -> None:
        super().__init__(2, process)
        self.scale = scale

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        return -self.scale * x @ self.MATRIX.to(x).T


def _bias_score(target: Target, process: ForwardProcess, eps: float) -> ScoreModel:
    """The exact score plus a constant vector of norm ``eps``: an L2 score error of exactly ``eps``."""
    return NoisyOracle(eps=eps, kind="bias", seed=1).fit(target, process)


def metric_checks(
    metric: Metric,
    *,
    symmetric: bool | None = None,
    unbiased: bool | None = None,
    process: str = "vp",
) -> Iterator[Check]:
    """The metric checks for ``metric``'s kind (see the module docstring), one :class:`Check` at a time.

    Parameters
    ----------
    metric:
        The metric to check; anything else (or an unknown ``kind``) yields one failing
        ``interface`` check.
    symmetric:
        Whether ``metric(x, y) == metric(y, x)`` is claimed (sample metrics); default: the
        metric's ``symmetric`` attribute, else not claimed (``symmetry`` is skipped).
    unbiased:
        Whether the metric is an unbiased estimator of a squared distance, which may dip below
        zero on samples of one law and is not zero on a sample against itself; default: the
        metric's ``unbiased`` attribute, else false.
    process:
        The registered forward process of score, trajectory and exact metrics.

    Returns
    -------
    Iterator[Check]
        The checks of the metric's kind.
    """
    for value, what in ((symmetric, "symmetric"), (unbiased, "unbiased")):
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"check_metric: {what} must be true, false or None, got {value!r}")
    proc = PROCESSES.build(process)
    sym = bool(getattr(metric, "symmetric", False)) if symmetric is None else symmetric
    unb = bool(getattr(metric, "unbiased", False)) if unbiased is None else unbiased
    return _metric_check_list(metric, sym, unb, proc)


def _metric_check_list(metric: Metric, symmetric: bool, unbiased: bool, process: ForwardProcess) -> Iterator[Check]:
    label = component_id(metric)
    kind = getattr(metric, "kind", None)
    if not isinstance(metric, Metric) or kind not in METRIC_KINDS:
        def not_a_metric() -> None:
            if not isinstance(metric, Metric):
                raise AssertionError(f"expected a scorebench Metric, got {type(metric).__name__}")
            raise AssertionError(f"unknown metric kind {kind!r}; allowed: {', '.join(METRIC_KINDS)}")

        yield Check("interface", label, not_a_metric, metric)
        return

    def interface() -> None:
        name = metric.name
        assert isinstance(name, str) and name, f"name must be a non-empty string, got {name!r}"
        described = metric.describe()
        assert isinstance(described, dict) and described.get("name") == name, (
            f"describe() must be a dict with 'name': {name!r}, got {described!r}")
        version = described.get("version")
        assert isinstance(version, str) and version, f"describe() must give a non-empty 'version', got {version!r}"
        if kind == "trajectory":
            for steps in (1, 10, 100):
                chosen = metric.record_steps(steps)  # type: ignore[attr-defined]
                assert chosen and set(chosen) <= set(range(1, steps + 1)), (
                    f"record_steps({steps}) = {sorted(chosen)}: must be a non-empty set of steps in 1..{steps}")
        repr(metric)

    makers: dict[str, Callable[..., list[tuple[str, Callable[[], str | None]]]]] = {
        "sample": _sample_metric_checks, "moment": _moment_metric_checks, "score": _score_metric_checks,
        "trajectory": _score_metric_checks, "exact": _exact_metric_checks, "mode": _mode_metric_checks,
        "regularity": _regularity_metric_checks,
    }
    yield Check("interface", label, interface, metric)
    for name, fn in makers[kind](metric, symmetric=symmetric, unbiased=unbiased, process=process):
        yield Check(name, label, fn, metric)


def _normal(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn((n, d), generator=_gen(seed), dtype=torch.float64)


def _expect_refusal(call: Callable[[], Any], what: str, error: type[Exception], name: str) -> None:
    """``call`` must raise ``error`` with a message naming the metric."""
    try:
        value = call()
    except error as exc:
        assert repr(name) in str(exc) or name in str(exc), f"{what}: the message does not name the metric: {exc}"
        return
    except Exception as exc:
        raise AssertionError(f"{what}: raised {type(exc).__name__} ({exc}), not a {error.__name__}") from None
    raise AssertionError(f"{what}: accepted, returned {value!r}; expected a {error.__name__}")


def _sample_metric_checks(
    metric: Any, *, symmetric: bool, unbiased: bool, process: ForwardProcess
) -> list[tuple[str, Callable[[], str | None]]]:
    n, d = 300, 2
    x, y = _normal(n, d, 1), _normal(n, d, 2)
    shift = torch.zeros(d, dtype=torch.float64)
    shift[0] = 1.0

    def value(a: torch.Tensor, b: torch.Tensor, seed: int = 0) -> float:
        return float(metric(a, b, _gen(seed)))

    def scale() -> float:
        return abs(value(x, y + shift)) + 1e-12

    def finite_and_nonnegative() -> str:
        values = {"same law": value(x, y), "shifted by 1": value(x, y + shift), "shifted by 3": value(x, y + 3 * shift)}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        assert not bad, f"non-finite values: {bad}"
        must = ("shifted by 1", "shifted by 3") if unbiased else tuple(values)
        wrong = {k: v for k, v in values.items() if k in must and (v < 0 if not unbiased else v <= 0)}
        assert not wrong, f"{'non-positive' if unbiased else 'negative'} distances: {wrong}"
        return ", ".join(f"{k}: {v:.3g}" for k, v in values.items())

    def zero_on_identical() -> None:
        if unbiased:
            raise CheckSkipped("an unbiased estimator is not zero on a sample against itself")
        v = value(x, x)
        assert abs(v) <= 1e-6 * scale(), f"the distance of a sample to itself is {v:.3g}, not 0"

    def same_law_floor() -> str:
        same, near, far = value(x, y), value(x, y + shift), value(x, y + 3 * shift)
        assert same < near < far, (
            f"expected same law < shifted by 1 < shifted by 3, got {same:.3g}, {near:.3g}, {far:.3g}")
        return f"{same:.3g} < {near:.3g} < {far:.3g}"

    def symmetry() -> None:
        if not symmetric:
            raise CheckSkipped("the metric does not claim symmetry")
        for b in (y, y + shift):
            ab, ba = value(x, b), value(b, x)
            assert abs(ab - ba) <= 1e-6 * scale(), f"metric(x, y) = {ab:.6g} but metric(y, x) = {ba:.6g}"

    def permutation_invariance() -> None:
        px, py = torch.randperm(n, generator=_gen(8)), torch.randperm(n, generator=_gen(9))
        for b in (y, y + shift):
            a, p = value(x, b), value(x[px], b[py])
            assert abs(a - p) <= 1e-6 * scale(), f"permuting the rows changed the value from {a:.6g} to {p:.6g}"

    def float32_inputs() -> None:
        a, b = value(x, y + shift), value(x.float(), (y + shift).float())
        assert abs(a - b) <= 1e-3 * scale(), f"float32 inputs give {b:.6g}, float64 inputs {a:.6g}"

    def determinism() -> None:
        a, b = value(x, y + shift, 5), value(x, y + shift, 5)
        assert a == b, f"the same generator seed gave {a!r} and {b!r}"

    def input_checks() -> None:
        name = metric.name
        bad_x, bad_y = x.clone(), y.clone()
        bad_x[4, 1] = math.nan
        bad_y[7, 0] = math.inf
        _expect_refusal(lambda: metric(bad_x, y), "x with a NaN entry", MetricInputError, name)
        _expect_refusal(lambda: metric(x, bad_y), "y with an inf entry", MetricInputError, name)
        _expect_refusal(lambda: metric(x[:1], y), "x of one point", MetricInputError, name)
        _expect_refusal(lambda: metric(x[:, 0], y), "x of shape (n,)", ValueError, name)
        _expect_refusal(lambda: metric(x, torch.cat([y, y[:, :1]], 1)), "x and y of different dimensions",
                        ValueError, name)

    return [
        ("finite_and_nonnegative", finite_and_nonnegative), ("zero_on_identical", zero_on_identical),
        ("same_law_floor", same_law_floor), ("symmetry", symmetry),
        ("permutation_invariance", permutation_invariance), ("float32_inputs", float32_inputs),
        ("determinism", determinism), ("input_checks", input_checks),
    ]


def _moment_metric_checks(
    metric: Any, *, symmetric: bool, unbiased: bool, process: ForwardProcess
) -> list[tuple[str, Callable[[], str | None]]]:
    d, n = 2, 4000
    law = GaussianLaw.of(METRIC_TARGET)
    mean, cov = law.mean.double(), law.cov.double()
    chol = torch.linalg.cholesky(cov)
    z = _normal(n, d, 1)
    x = mean + z @ chol.T
    e1 = torch.zeros(d, dtype=torch.float64)
    e1[0] = 1.0

    def moved(k: float) -> torch.Tensor:
        """``x`` with its mean moved by ``k`` and its spread scaled by ``1 + k``."""
        return mean + (x - mean) * (1 + k) + k * e1

    def value(a: torch.Tensor) -> float:
        return float(metric(a, mean, cov))

    def finite_and_nonnegative() -> str:
        values = {"same law": value(x), "moved by 0.5": value(moved(0.5)), "moved by 2": value(moved(2.0))}
        bad = {k: v for k, v in values.items() if not (math.isfinite(v) and v >= 0)}
        assert not bad, f"negative or non-finite distances: {bad}"
        return ", ".join(f"{k}: {v:.3g}" for k, v in values.items())

    def zero_on_identical() -> None:
        m, c = empirical_moments(z)
        exact = mean + (z - m) @ torch.linalg.inv(torch.linalg.cholesky(c)).T @ chol.T  # moments exactly (mean, cov)
        v = value(exact)
        assert abs(v) <= 1e-6, f"a sample whose empirical moments are the target's is at distance {v:.3g}, not 0"

    def same_law_floor() -> str:
        same, near, far = value(x), value(moved(0.5)), value(moved(2.0))
        assert same < near < far, (
            f"expected same law < moved by 0.5 < moved by 2, got {same:.3g}, {near:.3g}, {far:.3g}")
        return f"{same:.3g} < {near:.3g} < {far:.3g}"

    def permutation_invariance() -> None:
        perm = torch.randperm(n, generator=_gen(8))
        for a in (x, moved(0.5)):
            u, v = value(a), value(a[perm])
            assert abs(u - v) <= 1e-9 * (abs(u) + 1e-12) + 1e-12, (
                f"permuting the rows changed the value from {u:.6g} to {v:.6g}")

    def determinism() -> None:
        a, b = value(moved(0.5)), value(moved(0.5))
        assert a == b, f"two calls gave {a!r} and {b!r}"

    def input_checks() -> None:
        name = metric.name
        bad_x = x.clone()
        bad_x[4, 1] = math.nan
        bad_mean = mean.clone()
        bad_mean[0] = math.inf
        _expect_refusal(lambda: metric(bad_x, mean, cov), "x with a NaN entry", MetricInputError, name)
        _expect_refusal(lambda: metric(x, bad_mean, cov), "a mean with an inf entry", MetricInputError, name)
        _expect_refusal(lambda: metric(x[:1], mean, cov), "x of one point", MetricInputError, name)
        _expect_refusal(lambda: metric(x, mean, cov[:1]), "cov of shape (1, d)", MetricInputError, name)
        _expect_refusal(lambda: metric(x[:, 0], mean, cov), "x of shape (n,)", MetricInputError, name)

    return [
        ("finite_and_nonnegative", finite_and_nonnegative), ("zero_on_identical", zero_on_identical),
        ("same_law_floor", same_law_floor), ("permutation_invariance", permutation_invariance),
        ("determinism", determinism), ("input_checks", input_checks),
    ]


def _nan_score_check(values: Callable[..., list[float]], target: Any, process: ForwardProcess) -> None:
    """A score metric given a NaN score raises a clear error or returns a non-finite value."""
    try:
        got = values(_NaNScore(target, process))
    except (ValueError, FloatingPointError):
        return  # a clear error is acceptable
    assert not all(math.isfinite(v) for v in got), f"a NaN score gave the finite values {got}"


def _determinism_check(values: Callable[..., list[float]], target: Any, process: ForwardProcess) -> None:
    """A score metric gives the same values for the same generator seed."""
    score = _SkewedScore(target, process)
    a, b = values(score, 5), values(score, 5)
    assert a == b, f"the same generator seed gave {a} and {b}"


def _score_metric_checks(
    metric: Any, *, symmetric: bool, unbiased: bool, process: ForwardProcess
) -> list[tuple[str, Callable[[], str | None]]]:
    target, T = METRIC_TARGET, process.T
    trajectory = metric.kind == "trajectory"
    times = [0.2 * T, 0.5 * T, T]

    def states(seed: int = 3) -> list[tuple[float, torch.Tensor]]:
        return [(t, target.marginal(process, t).sample(500, _gen(seed + k), dtype=torch.float64))
                for k, t in enumerate(times)]

    def values(score: ScoreModel, seed: int = 3, given: list[tuple[float, torch.Tensor]] | None = None) -> list[float]:
        if trajectory:
            out = metric.compute(score, target, process, states(seed) if given is None else given)
        else:
            out = metric.compute(score, target, process, 500, _gen(seed))
        assert isinstance(out, list) and out, f"compute returned {out!r}, expected a non-empty list of (t, value)"
        for t, _ in out:
            assert process.t_min <= t <= T, f"time {t!r} outside [{process.t_min}, {T}]"
        return [float(v) for _, v in out]

    def exact_score_zero() -> None:
        got = values(OracleScore(target, process))
        assert all(abs(v) <= 1e-12 for v in got), f"the exact score's error is {got}, not 0"

    def perturbed_score_positive() -> str:
        small, large = values(_bias_score(target, process, 0.1)), values(_bias_score(target, process, 0.5))
        assert all(math.isfinite(v) and v > 0 for v in small + large), (
            f"a score off by 0.1 gives {small}, off by 0.5 gives {large}: expected positive values")
        assert all(a < b for a, b in zip(small, large, strict=True)), (
            f"a score off by 0.5 gives {large}, not more than the {small} of one off by 0.1")
        return f"off by 0.1: {max(small):.3g}, off by 0.5: {max(large):.3g}"

    def nan_score() -> None:
        _nan_score_check(values, target, process)

    def determinism() -> None:
        _determinism_check(values, target, process)

    def permutation_invariance() -> None:
        score = _SkewedScore(target, process)
        given = states()
        perm = torch.randperm(500, generator=_gen(8))
        a, b = values(score, given=given), values(score, given=[(t, x[perm]) for t, x in given])
        assert all(abs(u - v) <= 1e-9 * abs(u) + 1e-15 for u, v in zip(a, b, strict=True)), (
            f"permuting the particles changed the values from {a} to {b}")

    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("exact_score_zero", exact_score_zero), ("perturbed_score_positive", perturbed_score_positive),
        ("nan_score", nan_score), ("determinism", determinism),
    ]
    if trajectory:
        checks.append(("permutation_invariance", permutation_invariance))
    return checks


def _regularity_metric_checks(
    metric: Any, *, symmetric: bool, unbiased: bool, process: ForwardProcess
) -> list[tuple[str, Callable[[], str | None]]]:
    target, T = METRIC_TARGET, process.T

    def values(score: ScoreModel, seed: int = 3) -> list[float]:
        out = metric.compute(score, target, process, 200, _gen(seed))
        assert isinstance(out, list) and out, f"compute returned {out!r}, expected a non-empty list of (t, value)"
        for t, _ in out:
            assert process.t_min <= t <= T, f"time {t!r} outside [{process.t_min}, {T}]"
        return [float(v) for _, v in out]

    def linear_score() -> str:
        one, two = values(_LinearScore(process, 1.0)), values(_LinearScore(process, 2.0))
        assert all(abs(v - 5.0) <= 1e-6 * 5.0 for v in one), (
            f"the score -x A^T with ||A||_op = 5 gives {one}, expected 5 at every time")
        assert all(abs(v - 10.0) <= 1e-6 * 10.0 for v in two), f"the score -2 x A^T gives {two}, expected 10"
        return "||A||_op = 5 recovered"

    def nan_score() -> None:
        _nan_score_check(values, target, process)

    def determinism() -> None:
        _determinism_check(values, target, process)

    return [("linear_score", linear_score), ("nan_score", nan_score), ("determinism", determinism)]


def _exact_metric_checks(
    metric: Any, *, symmetric: bool, unbiased: bool, process: ForwardProcess
) -> list[tuple[str, Callable[[], str | None]]]:
    from .samplers import SAMPLERS

    target = METRIC_TARGET
    reference = metric.reference_law(target, process)
    e1 = torch.zeros(target.dim, dtype=torch.float64)
    e1[0] = 1.0
    start = GaussianLaw.of(target.marginal(process, process.T))

    def still(init: GaussianLaw) -> float:
        return float(metric.compute(_Still(), OracleScore(target, process), process, 4, target, init))

    def shifted(k: float) -> GaussianLaw:
        return GaussianLaw(reference.mean + k * e1, reference.cov * (1 + k) ** 2)

    def zero_when_laws_agree() -> None:
        v = still(reference)
        assert abs(v) <= 1e-6, f"a chain that stays at the reference law is at distance {v:.3g}, not 0"

    def shifted_law_positive() -> str:
        near, far = still(shifted(0.5)), still(shifted(2.0))
        assert math.isfinite(near) and 0 < near < far, (
            f"a law shifted by 0.5 is at {near:.3g}, by 2 at {far:.3g}: expected 0 < the first < the second")
        return f"{near:.3g} < {far:.3g}"

    def perturbed_score_larger() -> str:
        sampler = SAMPLERS.build("euler_maruyama")
        exact = float(metric.compute(sampler, OracleScore(target, process), process, 100, target, start))
        off = float(metric.compute(sampler, _bias_score(target, process, 0.5), process, 100, target, start))
        assert math.isfinite(exact) and exact >= 0, f"the exact score gives {exact!r}"
        assert off > exact, f"a score off by 0.5 gives {off:.3g}, not more than the exact score's {exact:.3g}"
        return f"exact score: {exact:.3g}, off by 0.5: {off:.3g}"

    def determinism() -> None:
        a, b = still(shifted(0.5)), still(shifted(0.5))
        assert a == b, f"two calls gave {a!r} and {b!r}"

    return [
        ("zero_when_laws_agree", zero_when_laws_agree), ("shifted_law_positive", shifted_law_positive),
        ("perturbed_score_larger", perturbed_score_larger), ("determinism", determinism),
    ]


#: the mode metrics' target: ``ring8``, eight equal, well-separated modes
MODE_TARGET = GMM(preset="ring8")


def _mode_metric_checks(
    metric: Any, *, symmetric: bool, unbiased: bool, process: ForwardProcess
) -> list[tuple[str, Callable[[], str | None]]]:
    target, n = MODE_TARGET, 2000
    perfect = target.sample(n, _gen(1), dtype=torch.float64)
    seven = GaussianMixture(target.weights[1:], target.means[1:], target.eigvals[1:])
    dropped = seven.sample(n, _gen(2), dtype=torch.float64)  # mode 0 dropped, the others renormalised

    def value(x: torch.Tensor) -> float:
        return float(metric(x, target))

    def finite_in_unit_interval() -> str:
        values = {"target sample": value(perfect), "one mode dropped": value(dropped)}
        bad = {k: v for k, v in values.items() if not (math.isfinite(v) and 0 <= v <= 1)}
        assert not bad, f"values outside [0, 1]: {bad}"
        return ", ".join(f"{k}: {v:.3g}" for k, v in values.items())

    def dropped_mode_seen() -> str:
        same, drop = value(perfect), value(dropped)
        assert drop > same, (
            f"a sample missing one of 8 modes gives {drop:.3g}, not more than a target sample's {same:.3g}")
        return f"{same:.3g} < {drop:.3g}"

    def permutation_invariance() -> None:
        perm = torch.randperm(n, generator=_gen(8))
        for x in (perfect, dropped):
            a, b = value(x), value(x[perm])
            assert abs(a - b) <= 1e-9, f"permuting the rows changed the value from {a:.6g} to {b:.6g}"

    def float32_inputs() -> None:
        a, b = value(dropped), value(dropped.float())
        assert abs(a - b) <= 1e-3, f"float32 inputs give {b:.6g}, float64 inputs {a:.6g}"

    def determinism() -> None:
        a, b = value(dropped), value(dropped)
        assert a == b, f"two calls gave {a!r} and {b!r}"

    def input_checks() -> None:
        name = metric.name
        bad = perfect.clone()
        bad[4, 1] = math.nan
        _expect_refusal(lambda: metric(bad, target), "x with a NaN entry", MetricInputError, name)
        _expect_refusal(lambda: metric(perfect[:1], target), "x of one point", MetricInputError, name)
        _expect_refusal(lambda: metric(perfect[:, 0], target), "x of shape (n,)", MetricInputError, name)
        _expect_refusal(lambda: metric(perfect, METRIC_TARGET), "a Gaussian (one-mode) target", MetricInputError,
                        name)

    return [
        ("finite_in_unit_interval", finite_in_unit_interval), ("dropped_mode_seen", dropped_mode_seen),
        ("permutation_invariance", permutation_invariance), ("float32_inputs", float32_inputs),
        ("determinism", determinism), ("input_checks", input_checks),
    ]


def check_metric(
    metric: Metric,
    *,
    symmetric: bool | None = None,
    unbiased: bool | None = None,
    process: str = "vp",
    raise_on_failure: bool = True,
) -> CheckReport:
    """Run every check of ``metric``'s kind (see :func:`metric_checks`).

    Returns
    -------
    CheckReport
        Every check's outcome; with ``raise_on_failure`` (default) a failure raises
        :class:`MetricCheckError` instead.
    """
    checks = metric_checks(metric, symmetric=symmetric, unbiased=unbiased, process=process)
    report = run_checks(checks, CheckReport(str(getattr(metric, "name", type(metric).__name__)), kind="metric"))
    if raise_on_failure and not report.passed:
        raise MetricCheckError(str(report))
    return report


# ---------------------------------------------------------------------------------------------
# pytest


def checks_for(component: object, **options: Any) -> Iterator[Check]:
    """The kit's checks for ``component`` by its kind (sampler, estimator or metric), with the
    kit's keyword ``options``.

    Raises
    ------
    ValueError
        When ``component`` is none of the three.
    """
    if isinstance(component, Sampler):
        return sampler_checks(component, **options)
    if isinstance(component, Estimator):
        return estimator_checks(component, **options)
    if isinstance(component, Metric):
        return metric_checks(component, **options)
    raise ValueError(f"checks_for: expected a Sampler, an Estimator or a Metric, got {type(component).__name__}")


def parametrize_with_checks(
    components: Iterable[object | tuple[object, dict[str, Any]]],
    *,
    marks: Callable[[Check], Any] | None = None,
) -> pytest.MarkDecorator:
    """A ``pytest.mark.parametrize`` over every (component, check), with ids ``component-check``.

    Parameters
    ----------
    components:
        Samplers, estimators and metrics, each alone or as ``(component, options)`` with the
        keyword options of its kit (``processes``, ``ladder``, ``symmetric``, ...).
    marks:
        A function of a :class:`Check` returning pytest marks for it (one mark or a list), such
        as ``pytest.mark.slow`` for the costly checks.

    Returns
    -------
    pytest.MarkDecorator
        Decorates a test with one parameter, ``check``, that calls it.
    """
    import pytest

    params = []
    for item in components:
        component, options = item if isinstance(item, tuple) else (item, {})
        for check in checks_for(component, **options):
            params.append(pytest.param(check, id=check.id, marks=marks(check) if marks else ()))
    ids = [p.id for p in params]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"parametrize_with_checks: repeated ids {repeated}: give each component distinct parameters")
    return pytest.mark.parametrize("check", params)
