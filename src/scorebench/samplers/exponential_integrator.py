"""Exponential integrator for the reverse-time SDE (linear part solved exactly)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor

from .base import SAMPLERS, Sampler

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess


@SAMPLERS.register("exponential_integrator")
class ExponentialIntegrator(Sampler):
    r"""Exponential integrator: the score frozen at the start of each step, the rest exact.

    ``x' = A x + c s(x, t) + sqrt(q) z`` with ``A = alpha_{t'}/alpha_t``,
    ``c = alpha_{t'} int_{t'}^t g^2/alpha``, ``q = alpha_{t'}^2 (lambda_t - lambda_{t'})``,
    ``lambda = sigma^2/alpha^2`` (:meth:`ForwardProcess.exponential_integrator`).  For OU this
    is Bruno et al. (2023)'s scheme (B2): ``x' = e^h x + 2(e^h - 1) s + sqrt(e^{2h} - 1) z``.
    Works with every linear process; for VE (``f = 0``) it coincides with ``ddpm``
    (``variance="upper"``) and with ``pc`` without corrector steps.
    """

    noise_per_step = 1

    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None,
    ) -> Tensor:
        A, c, q = process.scalars("exponential_integrator", t, t_next)
        return score.combine(x, t, A, c).add_(noise[:, 0], alpha=math.sqrt(max(q, 0.0)))
