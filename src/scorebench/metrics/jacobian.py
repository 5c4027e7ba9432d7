r"""The score's Lipschitz constant in ``x`` along the diffusion: ``score_jacobian``.

For a score model ``s(x, t)`` the metric reports, at each of ``n_times`` times,

.. math::
    L(t) = \max_{i} \| \nabla_x s(x_i, t) \|_{op},

the largest singular value of the Jacobian over a finite set of points ``x_i``: exact draws of
``p_t``, optionally with the pairwise midpoints of the diffused component means of a mixture.
For the exact score, ``\nabla_x s = \nabla^2 \log p_t`` and ``L(t)`` is the constant of the
local Lipschitz bounds of Mooney, Wang, Xin & Yu (2024, arXiv 2405.16104), which grows like
``1/t`` near data on a low-dimensional set and like ``1/t^2`` at midpoints between separated atoms
(docs/theory.md G.1).  Examples:

* Gaussian ``N(mu, Sigma)`` under ``alpha_t, sigma_t``: the Hessian is the constant
  ``-(alpha_t^2 Sigma + sigma_t^2 I)^{-1}``, so ``L(t) = 1 / (alpha_t^2 lambda_min(Sigma) + sigma_t^2)``
  exactly, at every point.
* Two atoms at distance ``D``: at their diffused midpoint the responsibilities are ``1/2`` and
  ``L(t) = alpha_t^2 D^2 / (4 sigma_t^4) - 1 / sigma_t^2``.

A maximum over finitely many random points is a **lower estimate** of the supremum over ``x``;
for a mixture the supremum sits where responsibilities are split, which exact draws of ``p_t``
reach with probability ``exp(-D^2 alpha_t^2 / (8 sigma_t^2))`` between atoms at distance ``D``:
the ``midpoints`` option adds those points.

The Jacobian of the exact mixture score is :meth:`GaussianMixture.hessian` (closed form,
float64).  Any other score model is differentiated by automatic differentiation: one backward
pass per output coordinate over the whole batch (``d`` passes, never a loop over points), which
is exact because a score model maps each row of ``x`` on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ..estimators.oracle import OracleScore
from ..estimators.training import LearnedScore
from ..params import Interval, Options
from ..targets.mixture import GaussianMixture
from .base import METRICS, ScoreMetric
from .score import log_spaced_times

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess
    from ..targets.base import Target

#: the point sets of :class:`ScoreJacobian`
JACOBIAN_POINTS = ("samples", "samples+midpoints")


def autograd_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    r"""Row-wise Jacobians ``J[i] = d fn(x)[i] / d x[i]``, shape ``(n, d_out, d)``.

    ``fn`` must map each row of ``x`` on its own (no coupling between rows), as a score model
    does; then ``d/dx_i sum_k fn(x)[k, j] = d fn(x)[i, j] / d x_i`` and one backward pass per output
    coordinate ``j`` gives the whole batch's ``j``-th Jacobian rows.

    Raises
    ------
    ValueError
        If ``fn``'s output does not depend on ``x`` through autograd (e.g. computed under
        ``torch.no_grad``, or a constant).
    """
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        out = fn(xg)
        if not out.requires_grad:
            raise ValueError("the score model's output has no autograd graph to x; its Jacobian cannot be computed")
        d_out = out.shape[1]
        rows = [
            torch.autograd.grad(out[:, j].sum(), xg, retain_graph=j < d_out - 1, allow_unused=True)[0]
            for j in range(d_out)
        ]
    rows = [torch.zeros_like(xg) if r is None else r for r in rows]
    return torch.stack(rows, dim=1).detach()


def score_jacobian(score: ScoreModel, x: Tensor, t: float) -> Tensor:
    r"""``\nabla_x s(x_i, t)`` at each row of ``x``, shape ``(n, d, d)``.

    The exact score of a mixture (:class:`~scorebench.estimators.oracle.OracleScore` on a
    :class:`~scorebench.targets.mixture.GaussianMixture`) gives the closed-form Hessian of
    ``log p_t``; a learned score is differentiated through its network (the network itself,
    outside the ``no_grad`` of :meth:`LearnedScore.score`); any other model through its
    :meth:`~scorebench.estimators.base.ScoreModel.score`.
    """
    if type(score) is OracleScore:
        p_t = score.marginal(float(t))
        if isinstance(p_t, GaussianMixture) and type(p_t).score is GaussianMixture.score:
            return p_t.hessian(x)
    if isinstance(score, LearnedScore):
        tt = torch.full((x.shape[0],), float(t), dtype=score.dtype, device=x.device)
        return autograd_jacobian(lambda z: score.fn(z, tt), x.to(score.dtype)).to(x.dtype)
    return autograd_jacobian(lambda z: score.score(z, float(t)), x)


def operator_norms(jac: Tensor) -> Tensor:
    """The largest singular value of each ``(d, d)`` matrix of ``jac`` (float64)."""
    return torch.linalg.matrix_norm(jac.to(torch.float64), ord=2)


def component_midpoints(mixture: GaussianMixture) -> Tensor:
    """``(mu_j + mu_k) / 2`` for every pair ``j < k`` of distinct component means (float64;
    empty ``(0, d)`` for one component)."""
    pairs = [(j, k) for j, k in itertools.combinations(range(mixture.n_components), 2)
             if not torch.equal(mixture.means[j], mixture.means[k])]
    if not pairs:
        return torch.zeros(0, mixture.dim, dtype=torch.float64)
    j, k = (torch.tensor(v) for v in zip(*pairs, strict=True))
    return 0.5 * (mixture.means[j] + mixture.means[k])


@METRICS.register("score_jacobian")
class ScoreJacobian(ScoreMetric):
    r"""``L(t) = max_i ||grad_x s_hat(x_i, t)||_op`` at ``n_times`` times log-spaced in
    ``[max(t_min, T/1000), T]`` (one row per time): the score model's local Lipschitz constant
    in ``x`` (Mooney et al. 2024).  Points: ``min(n_samples, max_points)`` exact draws of ``p_t``
    (``points = "samples"``), plus the midpoints of every pair of diffused component means of a
    mixture target (``"samples+midpoints"``, where the supremum between separated atoms lies).
    The maximum over points is a lower estimate of the supremum over ``x``.  Higher means a
    rougher score, not a worse estimate: the metric describes regularity.  Only for targets
    with exact marginals."""

    kind = "regularity"
    param_constraints: ClassVar[dict] = {"n_times": Interval(int, 1, None), "points": Options(JACOBIAN_POINTS)}

    def __init__(self, n_times: int = 9, points: str = "samples") -> None:
        self.set_params_from(n_times=n_times, points=points)

    def points_at(
        self, target: Target, process: ForwardProcess, t: float, n: int, generator: torch.Generator
    ) -> Tensor:
        """The evaluation points at time ``t`` (float64)."""
        p_t = target.marginal(process, t)
        x = p_t.sample(n, generator, dtype=torch.float64)
        if self.points == "samples+midpoints":
            if not isinstance(p_t, GaussianMixture):
                raise ValueError(
                    f"metric {self.name!r}: points = 'samples+midpoints' needs a Gaussian-mixture target, got "
                    f"{type(target).__name__}"
                )
            x = torch.cat([x, component_midpoints(p_t).to(x.device)])
        return x

    def compute(
        self, score: ScoreModel, target: Target, process: ForwardProcess, n: int, generator: torch.Generator
    ) -> list[tuple[float, float]]:
        out = []
        for t in log_spaced_times(process, self.n_times):
            x = self.points_at(target, process, t, n, generator)
            jac = score_jacobian(score, x, t)
            out.append((t, float(operator_norms(jac).max())))
        return out
