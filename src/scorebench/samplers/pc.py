"""Song et al.'s predictor-corrector sampler: Langevin corrector + reverse-diffusion predictor."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ..params import Boolean, Interval
from .base import SAMPLERS, Sampler

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess

@SAMPLERS.register("pc")
class PredictorCorrector(Sampler):
    r"""Predictor--corrector sampling (Song et al. 2021, ``score_sde/sampling.py``).

    Each step first runs ``corrector_steps`` Langevin steps at time ``t``,

        x <- x + eps s(x, t) + sqrt(2 eps) z,

    then one reverse-diffusion predictor step to ``t' < t``, built on the exact forward
    transition ``X_t = a X_{t'} + b Z``:  ``x <- (2 - a) x + b^2 s(x, t) + b z``  (for VP with
    score_sde's discrete betas, ``a = sqrt(1 - beta_i)`` and ``b^2 = beta_i``; for VE ``a = 1``,
    ``b^2 = sigma_i^2 - sigma_{i-1}^2``).  NFE per step: ``corrector_steps + 1``.

    Corrector step size
        Fixed when ``step_size`` is given (then the step is affine, does not depend on the
        batch, and Gaussian exact laws apply).  Otherwise the signal-to-noise rule
        ``eps = 2 a^2 (snr mean||z|| / mean||s||)^2`` with ``snr = 0.16``, the norms averaged
        over the batch exactly as score_sde does: the step then depends on the batch, so
        results change with ``chunk_size`` (``batch_invariant`` is False).  A per-particle
        version of the rule is not offered: particles with a near-zero score take huge
        steps (``check_sampler`` measured a Bures W2 of 0.75 after 200 steps on a 3-D
        Gaussian under VP).
    """

    param_constraints: ClassVar[dict] = {
        "noise_removal": Boolean(), "snr": Interval(float, 0, None, closed="neither"),
        "corrector_steps": Interval(int, 0, None), "step_size": [Interval(float, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        snr: float = 0.16,
        corrector_steps: int = 1,
        step_size: float | None = None,
        noise_removal: bool = False,
    ) -> None:
        self.set_params_from(snr=snr, corrector_steps=corrector_steps, step_size=step_size)
        super().__init__(noise_removal)
        self.noise_per_step = corrector_steps + 1

    @property
    def affine(self) -> bool:
        return self.step_size is not None or self.corrector_steps == 0

    @property
    def batch_invariant(self) -> bool:
        return self.affine

    def _langevin_step_size(self, s: Tensor, z: Tensor, a2: float) -> Tensor | float:
        if self.step_size is not None:
            return self.step_size
        tiny = torch.finfo(s.dtype).tiny
        ratio = z.norm(dim=1).mean() / s.norm(dim=1).mean().clamp_min(tiny)
        return 2.0 * a2 * (self.snr * ratio) ** 2

    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None,
    ) -> Tensor:
        a, b2 = process.scalars("transition", t_next, t)
        for j in range(self.corrector_steps):
            s = score(x, t)
            z = noise[:, j]
            eps = self._langevin_step_size(s, z, a * a)
            x = x + eps * s + torch.sqrt(torch.as_tensor(2.0 * eps, dtype=x.dtype, device=x.device)) * z
        x_mean = (2.0 - a) * x + b2 * score(x, t)
        return x_mean + math.sqrt(max(b2, 0.0)) * noise[:, -1]

