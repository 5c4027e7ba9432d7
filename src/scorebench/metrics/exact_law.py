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
    sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor, target: Target
) -> tuple[GaussianLaw, GaussianLaw]:
    law = exact_output_law(sampler, score, process, grid)
    return law, GaussianLaw.of(target)


@METRICS.register("exact_w2")
class ExactW2(ExactMetric):
    """Exact W2 (Bures) between the sampler's output law (prior start) and the Gaussian target:
    no Monte-Carlo noise.  Needs an affine sampler, an affine score and a Gaussian target."""

    def compute(
        self, sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor, target: Target
    ) -> float:
        return gaussian_w2(*output_and_target(sampler, score, process, grid, target))


@METRICS.register("exact_kl")
class ExactKL(ExactMetric):
    """Exact ``KL(output law || target)`` for an affine sampler on a Gaussian target."""

    def compute(
        self, sampler: Sampler, score: ScoreModel, process: ForwardProcess, grid: Tensor, target: Target
    ) -> float:
        return gaussian_kl(*output_and_target(sampler, score, process, grid, target))
