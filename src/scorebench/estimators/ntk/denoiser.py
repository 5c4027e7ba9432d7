r"""The score written through a denoiser, and the input map both NTK estimators feed it.

Han, Razaviyayn & Xu (arXiv 2401.15604, ICLR 2024) write the score through a denoiser ``f``
(docs/theory.md A.2),

    s(x, t) = (alpha_t f(x, t) - x) / sigma_t^2,                                    docs/theory.md (A1)

so that denoising score matching with time weight ``sigma_t^4 / alpha_t^2`` is least squares with
covariate ``(x_t, t)`` and label ``x_0``.  The covariate enters the network or the kernel through
the input map ``z~ = (x~, u, 1)``,

    x~ = (x - alpha_t mu) / sqrt(d (alpha_t^2 v + sigma_t^2)),    u = (t - t_min) / (T - t_min),

with ``mu`` the training mean and ``v`` the mean per-coordinate training variance, so that
``E ||x~||^2 = 1`` at every time; an optional ``radius`` projects ``x~`` onto ``{||x~|| <= R}``.
Labels are standardised, ``y = (x_0 - mu) / sqrt(v)``, and the denoiser is ``f = mu + sqrt(v) g(z~)``
with ``g`` the fitted network or kernel predictor (docs/theory.md A.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..training import LearnedScore, TrainingRecord, process_scales

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...processes import ForwardProcess


@dataclass
class InputMap:
    r"""The features ``(x, t) -> z~ = (x~, u, 1)`` of the module docstring, shape ``(n, d + 2)``.

    Parameters
    ----------
    process
        The forward process, for ``alpha_t``, ``sigma_t`` and ``T``.
    mean, var
        Training mean ``mu`` (shape ``(d,)``) and mean per-coordinate training variance ``v``.
    t_lo
        The training cut-off ``t_min``, where ``u = 0``.
    radius
        ``R`` of the projection of ``x~`` onto ``{||x~|| <= R}``; ``None``: no projection.
    """

    process: ForwardProcess
    mean: Tensor
    var: float
    t_lo: float
    radius: float | None

    def __call__(self, x: Tensor, t: Tensor, alpha: Tensor | None = None, sigma: Tensor | None = None) -> Tensor:
        """``z~`` for points ``x`` of shape ``(n, d)`` at times ``t`` of shape ``(n,)`` (``alpha_t``,
        ``sigma_t`` computed unless both are given)."""
        if alpha is None or sigma is None:
            alpha, sigma = process_scales(self.process, t)
        d = x.shape[1]
        denom = torch.sqrt(d * (alpha**2 * self.var + sigma**2))
        xs = (x - alpha[:, None] * self.mean) / denom[:, None]
        if self.radius is not None:
            norm = xs.norm(dim=1, keepdim=True)
            xs = xs * torch.clamp(self.radius / norm.clamp_min(torch.finfo(xs.dtype).tiny), max=1.0)
        u = (t - self.t_lo) / (self.process.T - self.t_lo)
        return torch.cat([xs, u[:, None], torch.ones_like(u)[:, None]], dim=1)


class DenoiserScore(LearnedScore):
    r"""The score ``s(x, t) = (alpha_t f(x, t) - x) / sigma_t^2`` of a fitted denoiser ``f``.

    Parameters
    ----------
    dim
        Dimension ``d`` of the data.
    process
        The forward process.
    denoiser
        ``f`` itself, ``(x, t) -> f(x, t)`` with one time per row: an estimate of
        ``E[X_0 | X_t = x]``, in float64 on the training device.
    record
        The fit's training record.
    features
        The input map ``z~``.
    label_mean, label_scale
        ``mu`` and ``sqrt(v)`` of ``f = mu + sqrt(v) g(z~)``.
    parameters
        The fitted tensors: ``W``, ``a`` for ``ntk``; ``train_features``, ``weights`` for
        ``ntk_kernel``, with ``g(z) = K(z, train_features) weights``.
    """

    def __init__(
        self, dim: int, process: ForwardProcess, denoiser: Callable[[Tensor, Tensor], Tensor],
        record: TrainingRecord, features: InputMap, label_mean: Tensor, label_scale: float,
        parameters: dict[str, Tensor],
    ) -> None:
        self.denoiser = denoiser
        self.features = features
        self.label_mean, self.label_scale = label_mean, label_scale
        self.parameters = parameters
        self.device = label_mean.device
        super().__init__(dim, process, self._score, record, dtype=torch.float64)

    def _score(self, x: Tensor, t: Tensor) -> Tensor:
        home = x.device
        x, t = x.to(self.device), t.to(self.device)
        alpha, sigma = process_scales(self.process, t)
        f = self.denoiser(x, t)
        return ((alpha[:, None] * f - x) / (sigma**2)[:, None]).to(home)
