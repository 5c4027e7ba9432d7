"""Probability-flow ODE solved with Euler or Heun steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from torch import Tensor

from ..params import Options
from .base import SAMPLERS, Sampler

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess

PF_ODE_METHODS = ("euler", "heun")


@SAMPLERS.register("pf_ode")
class ProbabilityFlowODE(Sampler):
    r"""Probability-flow ODE ``dY/dt = f(t) Y - g(t)^2 s(Y, t) / 2`` (Song et al. 2021), integrated
    from ``T`` down to ``t_min``.

    ``method="euler"``: one score evaluation per step, order 1.  ``method="heun"``: Heun's
    second-order method (Karras et al. 2022, Alg. 1, here on every step since ``t_min > 0``
    keeps the last velocity finite), two evaluations per step, order 2.  Deterministic: no
    noise is drawn.  The ODE does not contract an initialisation error, so start it from the
    exact ``p_T`` to see the discretisation error alone (docs/theory.md F.4).
    """

    noise_per_step = 0
    param_constraints: ClassVar[dict] = {"method": Options(PF_ODE_METHODS)}

    def __init__(self, method: str = "heun") -> None:
        self.set_params_from(method=method)

    @staticmethod
    def velocity(score: ScoreModel, process: ForwardProcess, x: Tensor, t: float) -> Tensor:
        (f,), (g2,) = process.scalars("f", t), process.scalars("g2", t)
        return score.combine(x, t, f, -0.5 * g2)

    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None,
    ) -> Tensor:
        h = t - t_next
        v = self.velocity(score, process, x, t)
        x_euler = x - h * v
        if self.method == "euler":
            return x_euler
        v_next = self.velocity(score, process, x_euler, t_next)
        return x - 0.5 * h * (v + v_next)
