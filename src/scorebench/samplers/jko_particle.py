r"""Implicit particle JKO steps from the first-order optimality condition (docs/theory.md E.3 #2)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..params import Boolean, Interval, NoneMeans
from .base import SAMPLERS, RunState, Sampler
from .jko_exact_gaussian import HORIZON, step_scale

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess


def kde_score(y: Tensor, bandwidth: float) -> Tensor:
    r"""Score of the Gaussian kernel density estimate of the particles ``y`` at the particles:
    ``s(y_i) = sum_j w_ij (y_j - y_i) / b^2``, ``w_i. = softmax_j(-||y_i - y_j||^2 / (2 b^2))``."""
    logits = -torch.cdist(y, y).pow(2) / (2.0 * bandwidth**2)
    w = torch.softmax(logits, dim=1)
    return (w @ y - y) / bandwidth**2


def median_bandwidth(y: Tensor) -> float:
    """Median heuristic: ``b^2 = median ||y_i - y_j||^2 / (2 log(n + 1))`` (Liu & Wang's SVGD choice)."""
    n = y.shape[0]
    d2 = torch.cdist(y, y).pow(2)
    iu = torch.triu_indices(n, n, 1, device=y.device)
    med = float(d2[iu[0], iu[1]].median()) if n > 1 else 1.0
    return math.sqrt(max(med, 1e-12) / (2.0 * math.log(n + 1.0)))


def smoothed_target_score(score: ScoreModel, process: ForwardProcess, b: float) -> Callable[[Tensor], Tensor]:
    r"""Score of ``pi * N(0, b^2 I)``, ``pi = p_{t_min}``, from the diffusion's own score.

    ``pi * N(0, b^2)`` is the law of ``alpha_0 X_0 + sqrt(sigma_0^2 + b^2) Z`` (index 0: ``t_min``),
    which is ``X_{t'}`` rescaled by ``r = alpha_0 / alpha_{t'}`` for the ``t'`` whose noise level
    ``sigma_{t'} / alpha_{t'}`` equals ``sqrt(sigma_0^2 + b^2) / alpha_0``; hence its score at ``y``
    is ``s(y / r, t') / r``.  Beyond ``T`` the time is clipped to ``T`` (an approximation that
    only concerns the first steps from a wide prior).
    """
    t0 = process.t_min
    alpha0, sigma0 = float(process.alpha(t0)), float(process.sigma(t0))
    level = math.sqrt(sigma0**2 + b**2) / alpha0
    t_s = min(max(float(process.t_from_noise_level(level)), t0), process.T)
    inv_r = float(process.alpha(t_s)) / alpha0
    return lambda y: inv_r * score(inv_r * y, t_s)


@dataclass
class JKOParticleState(RunState):
    """One ``jko_particle`` run: the factor from grid spacings to step sizes and the mean
    first-order residual of every step taken (per chunk, in the order run)."""

    scale: float = 1.0
    residuals: list[float] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {"residuals": list(self.residuals)}


@SAMPLERS.register("jko_particle")
class JKOParticle(Sampler):
    r"""Particle JKO steps toward ``pi = p_{t_min}`` (Cheng, Lu, Tan, Xie 2024, docs/theory.md E.3).

    The JKO minimiser ``rho_{k+1}`` of ``KL(rho || pi) + W2^2(rho, rho_k)/(2h)`` is the push-forward
    of ``rho_k`` by ``T`` with the first-order condition ``T(x) = x + h [grad log pi - grad log
    rho_{k+1}](T(x))``.  Each step solves it for the particles by damped fixed-point iteration,

        y <- (1 - w) y + w (x + h [s(y, t_min) - s_KDE(y)]),   w = damping or 1/(1 + h/b^2),

    with ``s_KDE`` the score of a Gaussian kernel density estimate of the current ``{y_j}``
    (median-heuristic bandwidth).  The residual of the condition, averaged over particles, is
    the per-step error ``eps`` of Cheng et al.'s analysis; the run state
    (:class:`JKOParticleState`) holds it per step and ``SampleResult.info["residuals"]`` returns
    it.  ``h_k`` are the spacings of the time grid rescaled to sum to ``horizon`` (as in
    ``jko_exact_gaussian``, the ground truth on Gaussian targets; see
    :func:`~.jko_exact_gaussian.step_scale`).  ``O(n^2)`` per iteration; particles interact
    through the KDE, so the result depends on the batch (``batch_invariant`` is False) and the
    step is not affine.
    """

    noise_per_step = 0
    param_constraints: ClassVar[dict] = {
        "iterations": Interval(int, 1, None),
        "damping": [Interval(float, 0, 1, closed="right"), NoneMeans("automatic")],
        "bandwidth": [Interval(float, 0, None, closed="neither"), None], "horizon": HORIZON, "debias": Boolean(),
    }
    test_params: ClassVar[dict] = {"iterations": 5}

    def __init__(self, iterations: int = 50, damping: float | None = None, bandwidth: float | None = None,
                 horizon: float | None = 10.0, debias: bool = True) -> None:
        super().__init__()
        self.set_params_from(iterations=iterations, damping=damping, bandwidth=bandwidth, horizon=horizon,
                             debias=debias)

    @property
    def affine(self) -> bool:
        return False

    @property
    def batch_invariant(self) -> bool:
        return False

    @property
    def gradient_flow(self) -> bool:
        return True

    def flow_time(self, process: ForwardProcess, grid: Tensor) -> float:
        return step_scale(grid, self.horizon) * float(grid[0] - grid[-1])

    def begin(self, score: ScoreModel, process: ForwardProcess, grid: Tensor) -> JKOParticleState:
        return JKOParticleState(scale=step_scale(grid, self.horizon))

    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None, *, state: RunState | None = None,
    ) -> Tensor:
        run = self.state_of(state, JKOParticleState)
        h = run.scale * (t - t_next)
        b = self.bandwidth if self.bandwidth is not None else median_bandwidth(x)
        pi_score = smoothed_target_score(score, process, b) if self.debias else (
            lambda y: score(y, process.t_min))
        # the KDE score varies on the scale b: its Lipschitz constant ~ 1/b^2 sets the damping
        omega = self.damping if self.damping is not None else 1.0 / (1.0 + h / b**2)
        y = x
        for _ in range(self.iterations):
            target = x + h * (pi_score(y) - kde_score(y, b))
            y = (1.0 - omega) * y + omega * target
        residual = y - x - h * (pi_score(y) - kde_score(y, b))
        run.residuals.append(float(residual.norm(dim=1).mean()))
        return y
