"""The metric contract.

A metric reads one frozen :class:`~scorebench.metrics.context.MetricContext` (the samples, two
reference draws of the target, the score model, target, process, sampler, time grid, recorded
trajectory states, the exact start law, a generator factory, ``n_samples`` and ``seed``) and
returns rows:

* :meth:`Metric.evaluate` ``(ctx) -> [(t, value), ...]``: one row with ``t = NaN`` unless the metric
  is :attr:`~Metric.time_resolved` (then one row per time ``t``);
* :meth:`Metric.floor` ``(ctx) -> float``: the **noise floor**, the same metric between two
  independent target samples of the size of ``x`` (``NaN`` where a metric has none; ``0`` for a
  :attr:`~Metric.deterministic` one).

Each metric **declares** what it needs and how its value behaves, as class attributes (tags, in the
spirit of scikit-learn's estimator tags): :attr:`~Metric.needs_marginals` (the target's exact
marginals, hence exact scores), :attr:`~Metric.needs_moments` (its exact mean and covariance),
:attr:`~Metric.needs_gaussian_target` (its exact Gaussian law), :attr:`~Metric.needs_mixture_target`
(a mixture of at least two modes and their exact posterior), :attr:`~Metric.needs_affine_sampler`
and :attr:`~Metric.needs_affine_score` (an exact output law), :attr:`~Metric.needs_trajectory`
(states recorded along the run, at :meth:`~Metric.record_steps` for :meth:`~Metric.record_particles`
particles), :attr:`~Metric.deterministic` (no sampling noise: computed once per cell, or once per
cell x seed when the estimator learns, floor 0, a zero-width interval),
:attr:`~Metric.bootstrappable` (a single-seed cell gets a percentile bootstrap interval by
re-evaluating on resampled particles) and :attr:`~Metric.time_resolved`.
Suite validation and the runner read these declarations and nothing else, so a plugin metric is
treated exactly as a built-in one; :meth:`Metric.check_declarations` refuses contradictory ones,
and :meth:`Metric.checked_rows` and :meth:`Metric.checked_floor` refuse results that contradict
them (:class:`MetricContractError`).

The built-in families implement ``evaluate`` and ``floor`` on top of their ``__call__`` or
``compute``, which stay the direct way to call them:

* :class:`SampleMetric`: generated samples ``x`` against reference samples ``y`` drawn from the
  target (``w2``, ``sliced_w2``, ``sinkhorn``, ``mmd``, ``energy``); floor: ``y2`` against ``y1``.
* :class:`MomentMetric`: the empirical moments of ``x`` against the target's exact moments
  (``bures_w2``, ``mean_error``, ``cov_error``); floor: the same metric for ``y2``.
* :class:`ScoreMetric`: a score model against the exact score of ``p_t`` (``score_mse``), per time.
* :class:`TrajectoryMetric`: a score model along the sampler's own trajectory (``score_mse_traj``).
* ``score_jacobian`` (kind ``regularity``): a property of the score model itself, the operator
  norm of its Jacobian in ``x`` per time (its local Lipschitz constant), not an error.
* :class:`ExactMetric`: the exact output law of an affine sampler on a Gaussian target against
  the target (``exact_w2``, ``exact_kl``): no Monte-Carlo noise, floor zero.
* :class:`~scorebench.metrics.modes.ModeMetric`: the sample's mode weights, by the exact posterior
  of a mixture target, against the mixture weights (``mode_tv``, ``modes_missed``); floor: the same
  metric for ``y2``.

``kind`` names the family, for people; no code outside this package branches on it.

Every metric has a ``version`` that is written to the result provenance; change it
whenever the numbers a metric produces change.  Values are "lower is better".

**Input checks.**  ``SampleMetric.__call__`` and ``MomentMetric.__call__`` refuse, with a
:class:`MetricInputError` naming the metric, inputs on which a distance is meaningless or the
float64 arithmetic breaks: non-finite entries (NaN or inf), fewer than two points, and entries
above :data:`MAX_ABS_VALUE` in absolute value.  Every sample and moment metric, third-party ones
included, gets these checks by implementing ``compute`` and being called.  Iterative metrics
that stop at an iteration cap before reaching their tolerance warn with a one-line
:class:`NonConvergenceWarning` and still return their value.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..exact import GaussianLaw
from ..params import Options, Parameterised
from ..registry import Registry
from .context import MetricContext

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess
    from ..samplers.base import Sampler
    from ..targets.base import Target

METRICS: Registry[Metric] = Registry("metric", "scorebench.metrics")

#: the ``kind`` labels of the built-in families (descriptive only)
METRIC_KINDS = ("sample", "moment", "score", "trajectory", "exact", "mode", "regularity")

#: Largest absolute value accepted in a metric's input (see :meth:`Metric.check_values`).  Sample
#: metrics work with squared distances and moment metrics with covariances: for entries of
#: magnitude at most ``1e150`` a squared difference is at most ``4e300`` per coordinate, so
#: sums of them stay below float64's ``1.8e308`` for up to ``4e7`` coordinates (or summands),
#: while at ``1e155`` and beyond a single squared difference is already infinite.  Samples this
#: large come from a diverged sampler, never from a target.
MAX_ABS_VALUE = 1e150


class MetricInputError(ValueError):
    """A metric refused its input: non-finite entries, fewer than two points, magnitudes above
    :data:`MAX_ABS_VALUE`, or the wrong shape.  The message names the metric."""


class MetricContractError(ValueError):
    """A metric's declarations contradict each other, or what it returned contradicts them (an
    ``evaluate`` that is not a list of ``(t, value)`` pairs, rows that do not match
    :attr:`Metric.time_resolved`, a deterministic metric with a non-zero floor).  The message
    names the metric and the declaration."""


class NonConvergenceWarning(RuntimeWarning):
    """An iterative metric stopped at its iteration cap before reaching its tolerance; the value
    it returned is approximate.  The message is one line naming the metric, the iterations, the
    last change and the tolerance."""


def _real(value: Any) -> float | None:
    """``value`` as a float when it is a real number (a Python or NumPy real, or a one-element
    tensor), else ``None``; ``bool`` is not a number here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Tensor):
        return float(value) if value.numel() == 1 and not value.is_complex() else None
    if isinstance(value, numbers.Real):
        return float(value)
    return None


class Metric(Parameterised, ABC):
    """A named, versioned distance; lower is better.

    Subclasses implement :meth:`evaluate` (and :meth:`floor` where the metric has a noise floor)
    and declare what they need in the class attributes below; see :mod:`scorebench.metrics.base`.
    """

    registered_name: ClassVar[str] = ""
    #: the family, for people (``sample``, ``moment``, ``score``, ``trajectory``, ``exact``, ...)
    kind: ClassVar[str] = "other"
    version: ClassVar[str] = "1"
    #: largest sample size accepted (``None``: no cap)
    max_samples: int | None = None
    #: metric to suggest when the cap is exceeded
    alternatives: ClassVar[tuple[str, ...]] = ()

    # -- declarations (tags) ------------------------------------------------------------
    #: needs the target's closed-form marginals ``p_t`` (hence its exact score at every ``t``)
    needs_marginals: ClassVar[bool] = False
    #: needs the target's exact mean and covariance (:meth:`~scorebench.targets.base.Target.moments`)
    needs_moments: ClassVar[bool] = False
    #: needs the target's exact Gaussian law (:meth:`~scorebench.targets.base.Target.gaussian_law`)
    needs_gaussian_target: ClassVar[bool] = False
    #: needs a mixture target of at least two modes (:meth:`~scorebench.targets.base.Target.mode_weights`)
    needs_mixture_target: ClassVar[bool] = False
    #: needs a sampler whose step is affine in ``(x, noise)`` (its exact output law)
    needs_affine_sampler: ClassVar[bool] = False
    #: needs a score model that stays affine in ``x`` (the estimator's ``preserves_affinity``)
    needs_affine_score: ClassVar[bool] = False
    #: needs particles recorded along the sampler's trajectory (``ctx.states``)
    needs_trajectory: ClassVar[bool] = False
    #: the value has no sampling noise: the same for every seed of a cell (computed once) unless
    #: the cell's estimator learns (each seed's fit gives its own value); its floor is 0 and its
    #: interval has zero width
    deterministic: ClassVar[bool] = False
    #: a single-seed cell gets a percentile bootstrap interval: :meth:`evaluate` again on
    #: particles resampled with replacement (``dataclasses.replace(ctx, x=xb)``)
    bootstrappable: ClassVar[bool] = False
    #: :meth:`evaluate` returns one row per time ``t`` (finite); otherwise one row with ``t = NaN``
    time_resolved: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.registered_name or type(self).__name__.lower()

    @property
    def needs_covariance(self) -> bool:
        """Whether the metric holds a ``(dim, dim)`` matrix of the target (its moments or its
        Gaussian law): counted in suite validation's memory estimate."""
        return self.needs_moments or self.needs_gaussian_target

    # -- evaluation ---------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
        """The metric's rows ``[(t, value), ...]`` for one cell x seed (``t`` NaN unless
        :attr:`time_resolved`)."""

    def floor(self, ctx: MetricContext) -> float:
        """The noise floor: the metric between two independent target samples of the size of
        ``ctx.x`` (``ctx.y2`` against ``ctx.y1``).  The default: 0 for a :attr:`deterministic`
        metric, NaN (no floor) otherwise."""
        return 0.0 if self.deterministic else math.nan

    def record_steps(self, steps: int) -> set[int]:
        """Step indices (1-based, of a run of ``steps`` steps) at which a metric that
        :attr:`needs_trajectory` wants the particles recorded (none by default)."""
        return set()

    def record_particles(self) -> int:
        """How many particles (the first ones) a metric that :attr:`needs_trajectory` wants
        recorded at each of its :meth:`record_steps` (none by default)."""
        return 0

    # -- the contract, checked ----------------------------------------------------------
    def check_declarations(self) -> None:
        """Refuse declarations that contradict each other, with a :class:`MetricContractError`
        naming the metric: a :attr:`deterministic` value has no sampling noise to bootstrap, and
        the bootstrap resamples a single value, not rows per time."""
        if self.deterministic and self.bootstrappable:
            raise MetricContractError(
                f"metric {self.name!r} declares deterministic and bootstrappable: a deterministic value has no "
                "sampling noise to bootstrap; declare one of them"
            )
        if self.bootstrappable and self.time_resolved:
            raise MetricContractError(
                f"metric {self.name!r} declares bootstrappable and time_resolved: the bootstrap interval is of a "
                "single value per cell; declare one of them"
            )

    def checked_rows(self, ctx: MetricContext) -> list[tuple[float, float]]:
        """:meth:`evaluate`, refused (:class:`MetricContractError`) unless it returns a list of
        ``(t, value)`` pairs of real numbers that matches :attr:`time_resolved`: one row with
        ``t`` NaN, or rows with finite ``t``.  Non-finite values are returned as they are (the
        runner records them as errors)."""
        rows = self.evaluate(ctx)
        if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
            raise MetricContractError(
                f"metric {self.name!r}: evaluate must return a list of (t, value) pairs, got {type(rows).__name__}"
            )
        out = []
        for row in rows:
            pair = tuple(row) if isinstance(row, Sequence) and not isinstance(row, str | bytes) else None
            reals = [_real(v) for v in pair] if pair is not None and len(pair) == 2 else None
            if reals is None or None in reals:
                raise MetricContractError(
                    f"metric {self.name!r}: evaluate must return (t, value) pairs of real numbers, got {row!r}"
                )
            out.append((reals[0], reals[1]))
        if self.time_resolved:
            bad = [t for t, _ in out if not math.isfinite(t)]
            if bad:
                raise MetricContractError(
                    f"metric {self.name!r} declares time_resolved, but evaluate returned a row with t = {bad[0]}; "
                    "each row needs its finite time t"
                )
        elif len(out) != 1 or not math.isnan(out[0][0]):
            got = f"{len(out)} rows" if len(out) != 1 else f"t = {out[0][0]}"
            raise MetricContractError(
                f"metric {self.name!r} is not time_resolved, so evaluate must return one row (nan, value), got {got}; "
                "declare time_resolved = True for one row per time"
            )
        return out

    def checked_floor(self, ctx: MetricContext) -> float:
        """:meth:`floor`, refused (:class:`MetricContractError`) unless it is a real number, and
        unless it is 0 for a :attr:`deterministic` metric (no sampling noise, no floor above 0)."""
        value = self.floor(ctx)
        floor = _real(value)
        if floor is None:
            raise MetricContractError(f"metric {self.name!r}: floor must return a real number, got {value!r}")
        if self.deterministic and floor != 0.0:
            raise MetricContractError(
                f"metric {self.name!r} declares deterministic (no sampling noise), so its floor is 0, but floor "
                f"returned {floor!r}"
            )
        return floor

    def check_size(self, n: int) -> None:
        """Refuse sample sizes above :attr:`max_samples`, naming the alternatives."""
        if self.max_samples is not None and n > self.max_samples:
            alt = f"; use {' or '.join(self.alternatives)} for larger samples" if self.alternatives else ""
            raise ValueError(f"metric {self.name!r} is capped at {self.max_samples} samples, got {n}{alt}")

    def check_points(self, what: str, x: Tensor, min_points: int = 2) -> None:
        """Refuse a sample ``x`` (one point per row) that a distance cannot be computed on.

        Raises :class:`MetricInputError`, naming the metric and ``what`` (``"x"``, ``"y"``), when
        ``x`` has fewer than ``min_points`` points (one point has no spread and no pair of
        distinct points; unbiased estimators divide by ``n - 1``), and as :meth:`check_values`.
        """
        n = int(x.shape[0]) if x.ndim else 0
        if n < min_points:
            raise MetricInputError(
                f"metric {self.name!r}: {what} has {n} point{'' if n == 1 else 's'}; at least {min_points} are needed"
            )
        self.check_values(what, x, rows="points")

    def check_values(self, what: str, x: Tensor, rows: str | None = None) -> None:
        """Refuse a tensor with a NaN or inf entry (distances to it are undefined; the message
        counts the entries and, with ``rows`` (``"points"``), the rows they lie in) or with an
        entry above :data:`MAX_ABS_VALUE` in absolute value (its squared distances overflow
        float64), by raising :class:`MetricInputError` naming the metric and ``what``."""
        if x.numel() == 0:
            return
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            where = f"{bad} of {x.numel()} entries"
            if rows is not None and x.ndim >= 1:
                hit = int((~finite).reshape(x.shape[0], -1).any(dim=1).sum())
                where = f"{bad} entr{'y' if bad == 1 else 'ies'} in {hit} of {x.shape[0]} {rows}"
            raise MetricInputError(
                f"metric {self.name!r}: {what} is not finite: NaN or inf in {where}; "
                f"a distance to non-finite values is undefined"
            )
        largest = float(x.abs().max())
        if largest > MAX_ABS_VALUE:
            raise MetricInputError(
                f"metric {self.name!r}: {what} has entries up to {largest:.3g} in absolute value, above the bound "
                f"{MAX_ABS_VALUE:g} beyond which squared distances overflow float64"
            )

    def describe(self) -> dict[str, Any]:
        """``{"name", "version", **parameters}``: the version is part of what provenance records."""
        return {"name": self.name, "version": self.version, **self.get_params()}


class SampleMetric(Metric):
    """Distance between two samples ``x`` and ``y`` (each ``(n, d)``).

    Calling the metric checks its input before :meth:`compute` runs: ``x`` and ``y`` must be
    ``(n, d)`` with the same ``d`` (``ValueError``), each with at least two points, finite, and
    at most :data:`MAX_ABS_VALUE` in absolute value (:class:`MetricInputError`), and no larger
    than :attr:`max_samples` (``ValueError``).
    """

    kind = "sample"
    bootstrappable = True

    @abstractmethod
    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        """The distance; ``generator`` serves any randomness (projections, subsampling)."""

    def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
        """``x`` (float64) against the reference ``y1``, on the device of ``x``."""
        return [(math.nan, self(ctx.x.double(), ctx.y1.to(ctx.x.device), ctx.generator()))]

    def floor(self, ctx: MetricContext) -> float:
        """``y2`` against ``y1``: two independent target samples of the size of ``x``."""
        return self(ctx.y2.to(ctx.x.device), ctx.y1.to(ctx.x.device), ctx.generator())

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> float:
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"metric {self.name!r}: x and y must be (n, d) with the same d, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        self.check_points("x", x)
        self.check_points("y", y)
        self.check_size(max(x.shape[0], y.shape[0]))
        return self.compute(x, y, generator if generator is not None else torch.Generator(x.device).manual_seed(0))


class MomentMetric(Metric):
    """Distance between the empirical moments of ``x`` and exact moments ``(mean, cov)``.

    Calling the metric checks its input before :meth:`compute` runs: ``x`` must be ``(n, d)``
    with ``mean`` of shape ``(d,)`` and ``cov`` of shape ``(d, d)``, ``x`` needs at least two
    points (a sample covariance needs two), and ``x``, ``mean`` and ``cov`` must be finite and at
    most :data:`MAX_ABS_VALUE` in absolute value (:class:`MetricInputError` for all of these).
    """

    kind = "moment"
    needs_moments = True
    bootstrappable = True

    @abstractmethod
    def compute(self, x: Tensor, mean: Tensor, cov: Tensor) -> float: ...

    def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
        """The moments of ``x`` against the target's exact ``(mean, cov)``."""
        mean, cov = ctx.target.moments()
        return [(math.nan, self(ctx.x, mean, cov))]

    def floor(self, ctx: MetricContext) -> float:
        """The same metric for the target sample ``y2``."""
        mean, cov = ctx.target.moments()
        return self(ctx.y2, mean, cov)

    def __call__(self, x: Tensor, mean: Tensor, cov: Tensor) -> float:
        d = x.shape[1] if x.ndim == 2 else None
        if d is None or tuple(mean.shape) != (d,) or tuple(cov.shape) != (d, d):
            raise MetricInputError(
                f"metric {self.name!r}: x must be (n, d) with mean (d,) and cov (d, d), got "
                f"{tuple(x.shape)}, {tuple(mean.shape)}, {tuple(cov.shape)}"
            )
        self.check_points("x", x)
        self.check_values("the target mean", mean)
        self.check_values("the target covariance", cov)
        return self.compute(x.to(torch.float64), mean.to(x.device, torch.float64), cov.to(x.device, torch.float64))


class ScoreMetric(Metric):
    """Error of a score model against the exact score; one value per time."""

    kind = "score"
    needs_marginals = True
    time_resolved = True
    #: most exact draws of ``p_t`` per time (``min(n_samples, max_points)``)
    max_points: ClassVar[int] = 2000

    @abstractmethod
    def compute(
        self, score: ScoreModel, target: Target, process: ForwardProcess, n: int, generator: torch.Generator
    ) -> list[tuple[float, float]]:
        """``[(t, value), ...]``."""

    def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
        """:meth:`compute` with ``min(n_samples, max_points)`` draws per time."""
        return self.compute(ctx.score, ctx.target, ctx.process, min(ctx.n_samples, self.max_points), ctx.generator())


class TrajectoryMetric(Metric):
    """Error of a score model along the sampler's own trajectory; one value per recorded time.

    Subclasses say where to record (:meth:`record_steps`, :meth:`record_particles`) and implement
    :meth:`compute` on the recorded ``(t, particles)`` states."""

    kind = "trajectory"
    needs_marginals = True
    needs_trajectory = True
    time_resolved = True

    @abstractmethod
    def compute(
        self, score: ScoreModel, target: Target, process: ForwardProcess, states: list[tuple[float, Tensor]]
    ) -> list[tuple[float, float]]:
        """``[(t, value), ...]`` over the recorded states."""

    def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
        return self.compute(ctx.score, ctx.target, ctx.process, list(ctx.states))


#: what an exact-law metric measures its distance to
EXACT_REFERENCES = ("data", "t_min")


class ExactMetric(Metric):
    """Distance from the exact output law of an affine sampler to a Gaussian target.

    ``reference = "data"`` (default) measures against the data law ``p_0``: the total error,
    including the early-stopping bias ``W2(p_{t_min}, p_0)``.  ``reference = "t_min"`` measures
    against ``p_{t_min}``, the law the reverse chain approximates: with exact starts and the
    exact score the value is then the discretisation error alone, and its convergence order is
    the scheme's."""

    kind = "exact"
    needs_marginals = True
    needs_gaussian_target = True
    needs_affine_sampler = True
    needs_affine_score = True
    deterministic = True

    param_constraints: ClassVar[dict] = {"reference": Options(EXACT_REFERENCES)}

    def __init__(self, reference: str = "data") -> None:
        self.set_params_from(reference=reference)

    def reference_law(self, target: Target, process: ForwardProcess) -> GaussianLaw:
        """The Gaussian law the distance is measured to."""
        return GaussianLaw.of(target.marginal(process, process.t_min) if self.reference == "t_min" else target)

    @abstractmethod
    def compute(
        self, sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor, target: Target,
        init: GaussianLaw | None = None,
    ) -> float:
        """The distance; the chain starts from ``init`` (the exact ``p_T``), or from the sampler's
        own initial law when ``None``."""

    def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
        """:meth:`compute` from the exact start law ``ctx.start_law`` (``init = "exact"``), else from
        the sampler's own initial law."""
        init = GaussianLaw.of(ctx.start_law) if ctx.start_law is not None else None
        return [(math.nan, self.compute(ctx.sampler, ctx.score, ctx.process, ctx.grid, ctx.target, init=init))]
