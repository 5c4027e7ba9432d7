"""From a convex solution back to the two-layer ReLU network, and that network's own objective.

Each nonzero group ``v`` becomes one neuron, ``a = v / sqrt(||v||)``, ``c = +-sqrt(||v||)``
(docs/theory.md C.2 step 3); the rescaling makes the network's weight-decay objective equal the
convex one.
"""

from __future__ import annotations

import torch
from torch import Tensor


def recover_networks(V: Tensor) -> tuple[Tensor, Tensor, list[int]]:
    r"""Neurons of the two-layer network from a convex solution ``V`` of shape ``(K, 2, P, p, d)``.

    Each nonzero group ``v`` (pattern ``i``, output ``c``, sign ``+`` for ``u``, ``-`` for ``w``)
    becomes the neuron ``x~ -> c_j (a_j^T x~)_+`` with ``a_j = v / sqrt(||v||)`` and
    ``c_j = +-sqrt(||v||) e_c``.  Returns ``A`` of shape ``(K, M, p)``, ``C`` of shape
    ``(K, M, d)`` (levels padded with zero neurons to the largest count ``M``) and the number
    of active neurons per level; the network of level ``k`` is ``relu(X~ A_k^T) C_k``.
    """
    K, _, P, p, d = V.shape
    groups = V.permute(0, 1, 2, 4, 3).reshape(K, 2 * P * d, p)
    norms = groups.norm(dim=2)
    sign = torch.tensor([1.0, -1.0], dtype=V.dtype, device=V.device).view(2, 1, 1).expand(2, P, d).reshape(-1)
    onehot = torch.eye(d, dtype=V.dtype, device=V.device).expand(2, P, d, d).reshape(-1, d)
    active = norms > 0
    counts = [int(c) for c in active.sum(dim=1).tolist()]
    M = max(1, *counts)
    A = torch.zeros((K, M, p), dtype=V.dtype, device=V.device)
    C = torch.zeros((K, M, d), dtype=V.dtype, device=V.device)
    for k in range(K):
        idx = torch.nonzero(active[k]).flatten()
        root = norms[k, idx].sqrt()
        A[k, : idx.numel()] = groups[k, idx] / root[:, None]
        C[k, : idx.numel()] = (sign[idx] * root)[:, None] * onehot[idx]
    return A, C, counts


def network_output(A: Tensor, C: Tensor, x: Tensor) -> Tensor:
    """``sum_j c_j (a_j^T (x, 1))_+`` for one network ``(A, C)``: ``(n, d)`` from ``x`` of shape ``(n, d)``."""
    xt = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    return torch.relu(xt @ A.T) @ C


def nonconvex_objective(A: Tensor, C: Tensor, X: Tensor, Y: Tensor, beta: float) -> Tensor:
    """The weight-decay objective of one network on ``(X~, Y)`` (docs/theory.md (C1), penalty form):
    ``(1/2n) ||relu(X~ A^T) C - Y||^2 + (beta/2)(||A||^2 + ||C||^2)``."""
    n = X.shape[0]
    R = torch.relu(X @ A.T) @ C - Y
    return R.pow(2).sum() / (2 * n) + 0.5 * beta * (A.pow(2).sum() + C.pow(2).sum())

