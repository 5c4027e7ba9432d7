"""Pedrotti, Maas & Mondelli's predictor-corrector with a finite forward horizon."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor

from ..params import Boolean, Interval, Options
from ..processes import check_grid, time_grid
from .base import SAMPLERS, Sampler
from .euler_maruyama import EulerMaruyama
from .exponential_integrator import ExponentialIntegrator
from .pf_ode import ProbabilityFlowODE

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess

PREDICTORS = ("ei", "em", "ode_euler", "ode_heun")


def _predictor(name: str) -> Sampler:
    return {
        "ei": ExponentialIntegrator, "em": EulerMaruyama,
        "ode_euler": lambda: ProbabilityFlowODE("euler"), "ode_heun": lambda: ProbabilityFlowODE("heun"),
    }[name]()


@SAMPLERS.register("pc_finite_horizon")
class PCFiniteHorizon(Sampler):
    r"""Predictor--corrector with a finite horizon (Pedrotti, Maas, Mondelli, TMLR 2024;
    docs/theory.md D.1).

    1. Start at ``T1`` (not ``T``) from ``N(0, (alpha_{T1}^2 + sigma_{T1}^2) I)`` -- for VP/OU the
       stationary law ``N(0, I)``.  ``T1 = "T"`` starts at the process's own horizon ``T``, so
       that a suite sweeps the horizon through its processes.
    2. **Corrector:** ``corrector_steps`` unadjusted Langevin steps aimed at ``p_{T1}`` with the
       score at ``T1``:  ``x <- x + h s(x, T1) + sqrt(2 h) xi``,  ``h = corrector_step_size *
       sigma_{T1}^2`` (the step is given in units of the noise variance at ``T1``, so one setting
       fits every process).  Corrector time ``T2 = corrector_steps * h``.
    3. **Predictor:** the reverse process from ``T1`` down to ``t_min`` with ``predictor`` =
       ``ei`` (exponential integrator), ``em``, ``ode_euler`` or ``ode_heun``.  The paper's
       summary leaves SDE vs ODE open ([?] in docs/theory.md D.1), hence the choice.
    4. Optionally (``denoise``) a final Tweedie step ``x <- (x + sigma^2 s(x, t_min)) / alpha``.

    The time grid a suite gives (from ``T`` to ``t_min``) is mapped affinely onto
    ``[t_min, T1]``, keeping its number of steps and its shape; the corrector runs inside the
    first step and draws its noise there.  With a fixed step size every part is affine, so
    Gaussian exact laws apply.  The corrector's fixed step leaves an ``O(step)`` bias in the
    law at ``T1`` that no number of predictor steps removes: an SDE predictor contracts it, an
    ODE predictor carries it to ``t_min``, where the error levels off as steps grow (W2 about
    9e-3 on the conformance kit's target with the default step; scale
    ``corrector_step_size`` down with the grid to converge).  NFE = ``corrector_steps`` + predictor evaluations (+1 with
    ``denoise``).
    """

    param_constraints: ClassVar[dict] = {
        "noise_removal": Boolean(), "T1": [Interval(float, 0, None, closed="neither"), Options(("T",))],
        "corrector_steps": Interval(int, 0, None), "corrector_step_size": Interval(float, 0, None, closed="neither"),
        "predictor": Options(PREDICTORS), "denoise": Boolean(),
    }
    param_attributes: ClassVar[dict] = {"predictor": "predictor_name"}
    test_params: ClassVar[dict] = {"corrector_steps": 5}

    def __init__(
        self,
        T1: float | str = 1.0,
        corrector_steps: int = 100,
        corrector_step_size: float = 0.03,
        predictor: str = "ei",
        denoise: bool = False,
        noise_removal: bool = False,
    ) -> None:
        super().__init__(noise_removal)
        self.set_params_from(T1=T1, corrector_steps=corrector_steps, corrector_step_size=corrector_step_size,
                             predictor=predictor, denoise=denoise)
        self.predictor = _predictor(predictor)
        self.noise_per_step = self.predictor.noise_per_step

    # -- hooks -----------------------------------------------------------------------------
    def _T1(self, process: ForwardProcess) -> float:
        if self.T1 == "T":
            return float(process.T)
        if not process.t_min < self.T1 <= process.T:
            raise ValueError(
                f"pc_finite_horizon: T1 = {self.T1} must lie in (t_min, T] = ({process.t_min}, {process.T}] "
                f"of process {process.name!r}"
            )
        return self.T1

    def start_time(self, process: ForwardProcess) -> float:
        return self._T1(process)

    def initial_std(self, process: ForwardProcess) -> float:
        T1 = self._T1(process)
        return math.sqrt(float(process.alpha(T1)) ** 2 + float(process.sigma2(T1)))

    def noise_slots(self, index: int) -> int:
        return self.noise_per_step + (self.corrector_steps if index == 1 else 0)

    def resolve_grid(self, process: ForwardProcess, grid: Tensor | Sequence[float] | int) -> Tensor:
        T1 = self._T1(process)
        if isinstance(grid, int) and not isinstance(grid, bool):
            full = time_grid(process, grid)
        else:
            full = super().resolve_grid(process, grid)
        if abs(float(full[0]) - T1) < 1e-12 * max(1.0, T1):
            return full  # already a grid from T1
        t_min = process.t_min
        top = float(full[0])
        mapped = t_min + (full - t_min) * (T1 - t_min) / (top - t_min)
        mapped[0], mapped[-1] = T1, t_min
        return check_grid(process, mapped)

    # -- the step ----------------------------------------------------------------------------
    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None,
    ) -> Tensor:
        k = self.corrector_steps
        if noise is not None and noise.shape[1] == self.noise_per_step + k and k > 0:
            h = self.corrector_step_size * float(process.sigma2(t))
            for j in range(k):
                x = x + h * score(x, t) + math.sqrt(2.0 * h) * noise[:, j]
            noise = noise[:, k:] if self.noise_per_step > 0 else None
        x = self.predictor.step(score, process, x, t, t_next, noise)
        if self.denoise and t_next == process.t_min:
            sigma2, alpha = float(process.sigma2(t_next)), float(process.alpha(t_next))
            x = (x + sigma2 * score(x, t_next)) / alpha
        return x


