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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..registry import Registry

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..exact import GaussianLaw
    from ..processes import ForwardProcess
    from ..samplers.base import Sampler
    from ..targets.base import Target

METRICS: Registry[Metric] = Registry("metric", "scorebench.metrics")

METRIC_KINDS = ("sample", "moment", "score", "trajectory", "exact")


class Metric(ABC):
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

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k not in ("name", "version"))
        return f"{type(self).__name__}({args})"


class SampleMetric(Metric):
    """Distance between two samples ``x`` and ``y`` (each ``(n, d)``)."""

    kind = "sample"

    @abstractmethod
    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        """The distance; ``generator`` serves any randomness (projections, subsampling)."""

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> float:
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"metric {self.name!r}: x and y must be (n, d) with the same d, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        self.check_size(max(x.shape[0], y.shape[0]))
        return self.compute(x, y, generator if generator is not None else torch.Generator(x.device).manual_seed(0))


class MomentMetric(Metric):
    """Distance between the empirical moments of ``x`` and exact moments ``(mean, cov)``."""

    kind = "moment"

    @abstractmethod
    def compute(self, x: Tensor, mean: Tensor, cov: Tensor) -> float: ...

    def __call__(self, x: Tensor, mean: Tensor, cov: Tensor) -> float:
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

    def __init__(self, reference: str = "data") -> None:
        if reference not in EXACT_REFERENCES:
            raise ValueError(f"metric {self.name!r}: reference must be one of {', '.join(EXACT_REFERENCES)}, "
                             f"got {reference!r}")
        self.reference = reference

    def reference_law(self, target: Target, process: ForwardProcess) -> GaussianLaw:
        """The Gaussian law the distance is measured to."""
        from ..exact import GaussianLaw

        return GaussianLaw.of(target.marginal(process, process.t_min) if self.reference == "t_min" else target)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "reference": self.reference}

    @abstractmethod
    def compute(
        self, sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor, target: Target,
        init: GaussianLaw | None = None,
    ) -> float:
        """The distance; the chain starts from ``init`` (the exact ``p_T``), or from the sampler's
        own initial law when ``None``."""
