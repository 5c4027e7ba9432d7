"""The metric contract.

Four kinds of metric, by what they compare:

* ``sample``: generated samples ``x`` against reference samples ``y`` drawn from the
  target (``w2``, ``sliced_w2``, ``sinkhorn``, ``mmd``, ``energy``).  Their **noise floor**
  is the same metric between two independent target samples of the same size.
* ``moment``: the empirical moments of ``x`` against the target's exact moments
  (``bures_w2``, ``mean_error``, ``cov_error``); the floor is the same metric for a
  target sample.
* ``score``: a score model against the exact score of ``p_t`` (``score_mse``), per time.
* ``exact``: the exact output law of an affine sampler on a Gaussian target against the
  target (``exact_w2``, ``exact_kl``): no Monte-Carlo noise, floor zero.

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

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..params import Options, Parameterised
from ..registry import Registry

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..exact import GaussianLaw
    from ..processes import ForwardProcess
    from ..samplers.base import Sampler
    from ..targets.base import Target

METRICS: Registry[Metric] = Registry("metric", "scorebench.metrics")

METRIC_KINDS = ("sample", "moment", "score", "trajectory", "exact")

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


class NonConvergenceWarning(RuntimeWarning):
    """An iterative metric stopped at its iteration cap before reaching its tolerance; the value
    it returned is approximate.  The message is one line naming the metric, the iterations, the
    last change and the tolerance."""


class Metric(Parameterised, ABC):
    """A named, versioned distance; lower is better."""

    registered_name: ClassVar[str] = ""
    kind: ClassVar[str]
    version: ClassVar[str] = "1"
    #: largest sample size accepted (``None``: no cap)
    max_samples: int | None = None
    #: metric to suggest when the cap is exceeded
    alternatives: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        return self.registered_name or type(self).__name__.lower()

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

    @abstractmethod
    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        """The distance; ``generator`` serves any randomness (projections, subsampling)."""

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

    @abstractmethod
    def compute(self, x: Tensor, mean: Tensor, cov: Tensor) -> float: ...

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

    @abstractmethod
    def compute(
        self, score: ScoreModel, target: Target, process: ForwardProcess, n: int, generator: torch.Generator
    ) -> list[tuple[float, float]]:
        """``[(t, value), ...]``."""


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

    param_constraints: ClassVar[dict] = {"reference": Options(EXACT_REFERENCES)}

    def __init__(self, reference: str = "data") -> None:
        self.set_params_from(reference=reference)

    def reference_law(self, target: Target, process: ForwardProcess) -> GaussianLaw:
        """The Gaussian law the distance is measured to."""
        from ..exact import GaussianLaw

        return GaussianLaw.of(target.marginal(process, process.t_min) if self.reference == "t_min" else target)

    @abstractmethod
    def compute(
        self, sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor, target: Target,
        init: GaussianLaw | None = None,
    ) -> float:
        """The distance; the chain starts from ``init`` (the exact ``p_T``), or from the sampler's
        own initial law when ``None``."""
