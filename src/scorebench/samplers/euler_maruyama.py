"""Euler--Maruyama discretisation of the reverse-time SDE."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor

from .base import SAMPLERS, Sampler

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess


@SAMPLERS.register("euler_maruyama")
class EulerMaruyama(Sampler):
    r"""Euler--Maruyama on the reverse SDE ``dY = [f Y - g^2 s(Y, t)] dt + g dW`` (Song et al. 2021).

    One step from ``t`` to ``t' = t - h``:  ``x' = x - h (f(t) x - g(t)^2 s(x, t)) + g(t) sqrt(h) z``.
    Weak order 1 (docs/theory.md F.4, H.1).  Works with every linear process.  ``noise_removal``
    drops the noise of the final step (score_sde's default).
    """

    noise_per_step = 1

    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None,
    ) -> Tensor:
        h = t - t_next
        (f,), (g2,) = process.scalars("f", t), process.scalars("g2", t)
        # (1 - h f) x + h g2 s + sqrt(g2 h) z: the score term through ScoreModel.combine
        return score.combine(x, t, 1.0 - h * f, h * g2).add_(noise.select(1, 0), alpha=math.sqrt(g2 * h))
