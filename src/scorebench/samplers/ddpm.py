"""Ancestral (DDPM) sampling for any linear forward process."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor

from ..params import Boolean, Options
from .base import SAMPLERS, Sampler

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess

DDPM_VARIANCES = ("posterior", "upper")


@SAMPLERS.register("ddpm")
class DDPM(Sampler):
    r"""Ancestral sampling (Ho et al. 2020; Song et al. 2021's ``AncestralSamplingPredictor``).

    With the forward transition ``X_t = a X_{t'} + b Z`` (``a = alpha_t/alpha_{t'}``,
    ``b^2 = sigma_t^2 - a^2 sigma_{t'}^2``), the Gaussian posterior
    ``q(x_{t'} | x_t, x_0)`` with ``x_0`` replaced by its Tweedie estimate
    ``(x + sigma_t^2 s)/alpha_t`` has mean ``(x + b^2 s(x, t)) / a``: for VP this is
    ``(x + beta_i s)/sqrt(1 - beta_i)`` and for VE ``x + (sigma_i^2 - sigma_{i-1}^2) s``.

    variance
        ``upper`` (default): ``b^2`` (Ho et al.'s ``sigma^2 = beta``; score_sde's choice for
        VP).  ``posterior``: ``sigma_{t'}^2 b^2 / sigma_t^2`` (Ho et al.'s ``beta-tilde``;
        score_sde's choice for VE).  On a uniform grid the posterior variance converges
        slowly (pre-asymptotic slope about -0.6 on OU): its steps near ``t_min`` are large
        compared with ``sigma_t^2``; on a ``log`` grid both are first order.
    """

    noise_per_step = 1
    param_constraints: ClassVar[dict] = {"noise_removal": Boolean(), "variance": Options(DDPM_VARIANCES)}

    def __init__(self, variance: str = "upper", noise_removal: bool = False) -> None:
        super().__init__(noise_removal)
        self.set_params_from(variance=variance)

    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None,
    ) -> Tensor:
        a, b2 = process.scalars("transition", t_next, t)
        x_mean = score.combine(x, t, 1.0 / a, b2 / a)
        var = b2 if self.variance == "upper" else float(process.sigma2(t_next)) * b2 / float(process.sigma2(t))
        return x_mean + math.sqrt(max(var, 0.0)) * noise[:, 0]
