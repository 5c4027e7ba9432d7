"""Distances from the exact output law of an affine sampler to a Gaussian target."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from ..exact import GaussianLaw, exact_output_law, gaussian_kl, gaussian_w2
from .base import METRICS, ExactMetric

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess
    from ..samplers.base import Sampler
    from ..targets.base import Target


def output_and_target(
    metric: ExactMetric, sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor,
    target: Target, init: GaussianLaw | None = None,
) -> tuple[GaussianLaw, GaussianLaw]:
    """The sampler's exact output law from ``init`` (its own initial law when ``None``) and the
    metric's reference law."""
    law = exact_output_law(sampler, score, process, grid, init=init)
    return law, metric.reference_law(target, process)


@METRICS.register("exact_w2")
class ExactW2(ExactMetric):
    """Exact W2 (Bures) between the sampler's output law and the Gaussian target (``reference``:
    ``data``, or ``t_min`` for the discretisation error alone): no Monte-Carlo noise.  The chain
    starts from the sampler's initial law, or from ``init`` (the exact ``p_T`` of a suite's
    ``init = "exact"``).  Needs an affine sampler, an affine score and a Gaussian target."""

    def compute(
        self, sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor, target: Target,
        init: GaussianLaw | None = None,
    ) -> float:
        return gaussian_w2(*output_and_target(self, sampler, score, process, grid, target, init))


@METRICS.register("exact_kl")
class ExactKL(ExactMetric):
    """Exact ``KL(output law || target)`` for an affine sampler on a Gaussian target (start as for
    ``exact_w2``)."""

    def compute(
        self, sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor, target: Target,
        init: GaussianLaw | None = None,
    ) -> float:
        return gaussian_kl(*output_and_target(self, sampler, score, process, grid, target, init))
