"""Score error against the exact score of ``p_t`` (targets with closed-form marginals)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ..estimators.oracle import exact_score
from ..params import Interval
from .base import METRICS, ScoreMetric, TrajectoryMetric

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess
    from ..targets.base import Target


def squared_error(score: ScoreModel, target: Target, process: ForwardProcess, x: Tensor, t: float) -> float:
    """``mean_i ||s_hat(x_i, t) - grad log p_t(x_i)||^2``."""
    with torch.no_grad():
        err = score.score(x, t) - exact_score(target, process, x, t)
    return float(err.double().pow(2).sum(1).mean())


def log_spaced_times(process: ForwardProcess, n_times: int) -> list[float]:
    lo = max(process.t_min, 1e-3 * process.T)
    grid = torch.linspace(math.log(lo), math.log(process.T), n_times, dtype=torch.float64).exp()
    return [min(max(v, lo), process.T) for v in grid.tolist()]  # exactly inside [lo, T] despite rounding


@METRICS.register("score_mse")
class ScoreMSE(ScoreMetric):
    r"""``E_{x ~ p_t} ||s_hat(x, t) - grad log p_t(x)||^2`` at ``n_times`` times log-spaced in
    ``[max(t_min, T/1000), T]``, with ``x`` drawn exactly from ``p_t`` (one result row per
    time, in the ``t`` column).  Only for targets with exact marginals."""

    param_constraints: ClassVar[dict] = {"n_times": Interval(int, 1, None)}

    def __init__(self, n_times: int = 5) -> None:
        self.set_params_from(n_times=n_times)

    def compute(
        self, score: ScoreModel, target: Target, process: ForwardProcess, n: int, generator: torch.Generator
    ) -> list[tuple[float, float]]:
        out = []
        for t in log_spaced_times(process, self.n_times):
            x = target.marginal(process, t).sample(n, generator)
            out.append((t, squared_error(score, target, process, x, t)))
        return out


@METRICS.register("score_mse_traj")
class TrajectoryScoreMSE(TrajectoryMetric):
    r"""``mean_i ||s_hat(x_i, t) - grad log p_t(x_i)||^2`` along the sampler's own trajectory,
    at ``n_times`` steps evenly spaced over the run (at most ``max_particles`` particles):
    the score error where the sampler actually goes, not where the data are."""

    param_constraints: ClassVar[dict] = {"n_times": Interval(int, 1, None), "max_particles": Interval(int, 1, None)}

    def __init__(self, n_times: int = 5, max_particles: int = 1000) -> None:
        self.set_params_from(n_times=n_times, max_particles=max_particles)

    def record_steps(self, steps: int) -> set[int]:
        """Step indices (1-based) at which to record the particles."""
        return {max(1, round(steps * (k + 1) / self.n_times)) for k in range(self.n_times)}

    def record_particles(self) -> int:
        """The first ``max_particles`` particles."""
        return self.max_particles

    def compute(
        self, score: ScoreModel, target: Target, process: ForwardProcess, states: list[tuple[float, Tensor]]
    ) -> list[tuple[float, float]]:
        return [
            (t, squared_error(score, target, process, x, max(t, process.t_min)))
            for t, x in states
            if torch.isfinite(x).all()
        ]
