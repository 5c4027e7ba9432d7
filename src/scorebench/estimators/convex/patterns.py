"""Activation patterns of the data: the exact 1-D enumeration and the sampled multivariate ones.

Zhang & Pilanci (arXiv 2402.01965) write a two-layer ReLU network as a convex program over the
activation patterns ``D_i = diag(1[X~ g_i >= 0])`` of the data (docs/theory.md C.2 step 2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def patterns_1d(x: Tensor) -> tuple[Tensor, Tensor]:
    """All activation patterns ``1[a x + b >= 0]`` of 1-D points ``x`` (``(n,)``), each with an interior direction.

    Suffix sets ``{x >= x_j}`` (``a > 0``), prefix sets ``{x <= x_j}`` (``a < 0``) and all-on
    (``a = 0, b > 0``), deduplicated, the all-off pattern left out (it carries no neuron):
    ``P = 2n - 1`` for distinct points (docs/theory.md C.2 step 4).  Returns ``D`` of shape
    ``(P, n)`` (booleans) and ``G`` of shape ``(P, 2)``: ``(a, b)`` with the breakpoint
    ``-b/a`` midway between the last point off and the first point on, so that
    ``(2 D - 1) (a x + b) > 0`` strictly.
    """
    suffix = x[None, :] >= x[:, None]
    prefix = x[None, :] <= x[:, None]
    D = torch.unique(torch.cat([suffix, prefix]), dim=0)
    D = D[D.any(dim=1)]
    big = torch.full_like(x, math.inf)
    on_min = torch.where(D, x, big).amin(dim=1)
    on_max = torch.where(D, x, -big).amax(dim=1)
    off_min = torch.where(~D, x, big).amin(dim=1)
    off_max = torch.where(~D, x, -big).amax(dim=1)
    all_on = D.all(dim=1)
    is_suffix = ~all_on & (on_min > off_max)
    one, zero = torch.ones_like(on_min), torch.zeros_like(on_min)
    a = torch.where(all_on, zero, torch.where(is_suffix, one, -one))
    mid = torch.where(is_suffix, 0.5 * (on_min + off_max), 0.5 * (on_max + off_min))
    b = torch.where(all_on, one, -a * torch.where(all_on, zero, mid))
    return D, torch.stack([a, b], dim=1)


def sampled_patterns(X: Tensor, n_patterns: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Distinct nonzero patterns ``1[X~ g >= 0]`` for ``n_patterns`` draws ``g ~ N(0, I)``, plus all-on.

    ``X`` is ``(n, p)`` with the bias column last.  Returns ``D`` of shape ``(P, n)``
    (``P <= n_patterns + 1``; the sampling scheme of Pilanci & Ergen 2020, docs/theory.md C.2 step 5)
    and, for each pattern, the mean of the unit directions that produced it (``e_bias`` for
    all-on), a direction inside its cone.
    """
    p = X.shape[1]
    g = torch.randn((n_patterns, p), generator=generator, device=X.device, dtype=X.dtype)
    e_bias = torch.zeros((1, p), device=X.device, dtype=X.dtype)
    e_bias[0, -1] = 1.0
    g = torch.cat([g / g.norm(dim=1, keepdim=True), e_bias])
    D_all = X @ g.T >= 0  # (n, n_patterns + 1)
    D, inverse = torch.unique(D_all.T, dim=0, return_inverse=True)
    G = torch.zeros((D.shape[0], p), device=X.device, dtype=X.dtype).index_add_(0, inverse, g)
    keep = D.any(dim=1)
    return D[keep], G[keep]



def stack_patterns(patterns: list[tuple[Tensor, Tensor]], dtype: torch.dtype = torch.float64) -> Tensor:
    """Pad per-level pattern sets to a common count with all-zero patterns; ``(K, P, n)`` 0/1 floats.

    An all-zero pattern contributes nothing to the fit and its optimal groups are zero, so
    padding does not change any level's program.
    """
    P = max(D.shape[0] for D, _ in patterns)
    n = patterns[0][0].shape[1]
    out = torch.zeros((len(patterns), P, n), dtype=dtype, device=patterns[0][0].device)
    for k, (D, _) in enumerate(patterns):
        out[k, : D.shape[0]] = D.to(dtype)
    return out
