r"""Exact and controlled-error scores for targets with closed-form marginals.

``oracle`` returns the exact ``grad log p_t`` (docs/theory.md F.2), so a sampler run with it
shows pure discretisation and initialisation error.  ``noisy_oracle`` adds a perturbation
``e(x, t)`` with ``||e(x, t)|| = eps`` at every point, hence an L2 score error of exactly
``eps`` under any law of ``x``; a sampler's sensitivity to score error is then measured
directly (the L2 score-error assumption of Bruno et al. 2023 and Pedrotti et al. 2024).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ..params import Interval, Options
from ..targets.base import Target
from ..targets.mixture import GaussianMixture
from .base import ESTIMATORS, Estimator, ScoreModel, is_scalar_time, require_exact_target

if TYPE_CHECKING:
    from ..processes import ForwardProcess, Time


def exact_score(target: Target, process: ForwardProcess, x: Tensor, t: Time) -> Tensor:
    """``grad log p_t(x)``; ``t`` a scalar or one time per row (grouped by distinct value)."""
    tt = torch.as_tensor(t, dtype=torch.float64)
    if tt.ndim == 0:
        return target.marginal(process, float(tt)).score(x)
    out = torch.empty_like(x)
    times, inverse = torch.unique(tt.cpu(), return_inverse=True)
    inverse = inverse.to(x.device)
    for j, tj in enumerate(times.tolist()):
        rows = inverse == j
        out[rows] = target.marginal(process, tj).score(x[rows])
    return out


#: marginals an :class:`OracleScore` keeps (one per time of a grid; the oldest is dropped beyond)
MARGINAL_CACHE_SIZE = 4096


class OracleScore(ScoreModel):
    """The exact score of the diffused target.

    The marginal ``p_t`` of each scalar time is built once and kept (with its score tables for
    each dtype and device, see :class:`~scorebench.targets.mixture.GaussianMixture`), so a
    sampler's steps do not rebuild it at every call."""

    def __init__(self, target: Target, process: ForwardProcess) -> None:
        super().__init__(target.dim, process)
        self.target = target
        self._marginals: dict[float, Target] = {}

    def marginal(self, t: float) -> Target:
        """``p_t``, cached."""
        p_t = self._marginals.get(t)
        if p_t is None:
            if len(self._marginals) >= MARGINAL_CACHE_SIZE:
                self._marginals.pop(next(iter(self._marginals)))
            p_t = self._marginals[t] = self.target.marginal(self.process, t)
        return p_t

    def score(self, x: Tensor, t: Time) -> Tensor:
        if is_scalar_time(t):
            p_t = self.marginal(float(t))
            return p_t.score(x, compile=True) if self.compile and isinstance(p_t, GaussianMixture) else p_t.score(x)
        return exact_score(self.target, self.process, x, t)

    def score_combination(self, x: Tensor, t: Time, x_weight: float, score_weight: float) -> Tensor:
        if is_scalar_time(t):
            p_t = self.marginal(float(t))
            if isinstance(p_t, GaussianMixture) and type(p_t).score is GaussianMixture.score:  # not a changed score
                return p_t._score_combination(x, x_weight, score_weight, self.compile)  # x checked by combine
        return super().score_combination(x, t, x_weight, score_weight)


@ESTIMATORS.register("oracle")
class Oracle(Estimator):
    """Exact score ``grad log p_t`` of a Gaussian or Gaussian-mixture target (no fitting)."""

    preserves_affinity = True
    needs_exact_target = True
    learns = False

    def fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator | None = None
    ) -> OracleScore:
        return OracleScore(require_exact_target(data, "oracle"), process)


NOISE_KINDS = ("fourier", "bias")


class NoisyOracleScore(OracleScore):
    """Exact score plus a perturbation of pointwise norm ``eps``."""

    def __init__(
        self, target: Target, process: ForwardProcess, eps: float, kind: str,
        n_features: int, bandwidth: float, seed: int,
    ) -> None:
        super().__init__(target, process)
        self.eps, self.kind, self.bandwidth = eps, kind, bandwidth
        g = torch.Generator().manual_seed(int(seed))
        d = target.dim
        if kind == "bias":
            u = torch.randn(d, generator=g, dtype=torch.float64)
            self._direction = u / u.norm()
        else:
            self._W = torch.randn((d, n_features), generator=g, dtype=torch.float64)
            self._omega = torch.randn(n_features, generator=g, dtype=torch.float64)
            self._phase = 2 * math.pi * torch.rand(n_features, generator=g, dtype=torch.float64)
            self._A = torch.randn((n_features, d), generator=g, dtype=torch.float64)

    def perturbation(self, x: Tensor, t: Time) -> Tensor:
        """``e(x, t)``, of norm ``eps`` in every row."""
        if self.kind == "bias":
            return (self.eps * self._direction).to(x).expand_as(x)
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        tt = tt[:, None] if tt.ndim == 1 else tt
        feats = torch.cos(x @ self._W.to(x) / self.bandwidth + tt * self._omega.to(x) + self._phase.to(x))
        v = feats @ self._A.to(x)
        return self.eps * v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)

    def score(self, x: Tensor, t: Time) -> Tensor:
        return super().score(x, t) + self.perturbation(x, t)


@ESTIMATORS.register("noisy_oracle")
class NoisyOracle(Estimator):
    r"""Exact score plus a deterministic perturbation of L2 size ``eps``.

    kind
        ``fourier`` (default): ``e = eps * v / ||v||`` with ``v(x, t) = A^T cos(W^T x / bandwidth
        + omega t + b)``, a smooth random direction field of ``n_features`` random Fourier
        features drawn from ``seed``.  ``bias``: a constant vector ``eps * u`` (``u`` a random
        unit vector); it keeps the score affine, so Gaussian exact laws still apply.
    """

    needs_exact_target = True
    learns = False
    param_constraints: ClassVar[dict] = {
        "eps": Interval(float, 0, None), "kind": Options(NOISE_KINDS), "n_features": Interval(int, 1, None),
        "bandwidth": Interval(float, 0, None, closed="neither"), "seed": Interval(int, None, None),
    }

    def __init__(
        self, eps: float = 0.1, kind: str = "fourier", n_features: int = 64,
        bandwidth: float = 1.0, seed: int = 0,
    ) -> None:
        self.set_params_from(eps=eps, kind=kind, n_features=n_features, bandwidth=bandwidth, seed=seed)

    @property
    def preserves_affinity(self) -> bool:  # type: ignore[override]
        return self.kind == "bias"

    def fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator | None = None
    ) -> NoisyOracleScore:
        target = require_exact_target(data, "noisy_oracle")
        return NoisyOracleScore(
            target, process, self.eps, self.kind, self.n_features, self.bandwidth, self.seed
        )
