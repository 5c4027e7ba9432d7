r"""The ReLU neural tangent kernel and the spectral calculus of kernel gradient descent.

Han, Razaviyayn & Xu, "Neural Network-Based Score Estimation in Diffusion Models: Optimization
and Generalization" (arXiv 2401.15604, ICLR 2024); docs/theory.md A.4 and A.5.

For the two-layer network of :mod:`.network` with output weights ``a_r = +-1`` fixed and only the
first layer trained, the tangent kernel of each output converges, as the width grows, to

    K(z, z') = <z, z'> (pi - arccos rho) / (2 pi),    rho = <z, z'> / (||z|| ||z'||),

with no factor ``nu^2`` for the initial scale (docs/theory.md A.4).  Gradient descent with step
``lr`` on the squared loss in this kernel's function space (kernel gradient descent) has, with
``H = K(Z, Z)`` and ``H / n = U diag(lambda) U^T``, the closed form

    F_k  = [I - (I - lr H / n)^k] Y                                  (at the training points),
    f_k(z) = K(z, Z) U diag(gain_k(lambda) / n) U^T Y,   gain_k(lambda) = (1 - (1 - lr lambda)^k) / lambda,

where ``gain_k(lambda) -> k lr`` as ``lambda -> 0``, so no inverse of a singular ``H`` is formed.
Everything the early-stopping rules need (:mod:`.stopping`) is a function of ``lambda`` and of the
label coefficients ``c = U^T Y``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: kernel / hidden-layer entries per evaluation block
_BLOCK = 1 << 22


def relu_ntk(za: Tensor, zb: Tensor) -> Tensor:
    r"""Analytic tangent kernel of a first-layer-trained ReLU network, ``K(za, zb)``.

    ``K(z, z') = <z, z'> (pi - arccos rho) / (2 pi)``, ``rho`` the cosine of the angle
    (docs/theory.md A.4, without the ``nu^2`` factor).  Built in row blocks of at most ``2^22``
    entries, so the only full-size allocation is the result.

    Parameters
    ----------
    za, zb
        Features of shape ``(n_a, D)`` and ``(n_b, D)`` with non-zero rows (the input map's
        constant coordinate guarantees it).

    Returns
    -------
    Tensor
        The kernel matrix, shape ``(n_a, n_b)``.
    """
    out = za.new_empty((za.shape[0], zb.shape[0]))
    norm_b = zb.norm(dim=1)
    for rows in row_blocks(za.shape[0], zb.shape[0]):
        inner = za[rows] @ zb.T
        rho = (inner / (za[rows].norm(dim=1)[:, None] * norm_b)).clamp_(-1.0, 1.0)
        out[rows] = inner * (math.pi - torch.arccos(rho)) / (2 * math.pi)
    return out


def row_blocks(n: int, width: int) -> list[slice]:
    """Row slices covering ``range(n)`` with at most ``2^22`` entries of a ``width``-wide row each."""
    rows = max(1, _BLOCK // max(1, width))
    return [slice(i, min(n, i + rows)) for i in range(0, n, rows)]


def kernel_gd_gain(lam: Tensor, lr: float, k: int) -> Tensor:
    r"""The gain ``(1 - (1 - lr lambda)^k) / lambda`` of ``k`` kernel-GD steps, elementwise.

    Computed as ``-expm1(k log1p(-lr lambda)) / lambda`` where ``lr lambda < 1/2`` (no
    cancellation for small ``lambda``), directly otherwise; ``lambda <= 0`` gives the limit ``k lr``.

    Parameters
    ----------
    lam
        Eigenvalues ``lambda`` of ``H / n``.
    lr
        Step size.
    k
        Number of steps.

    Returns
    -------
    Tensor
        The gains, shaped like ``lam``.
    """
    x = lr * lam
    small = x < 0.5
    num = torch.where(small, -torch.expm1(k * torch.log1p(-x.clamp(max=0.5))), 1.0 - torch.pow(1.0 - x, k))
    positive = lam > 0
    return torch.where(positive, num / torch.where(positive, lam, torch.ones_like(lam)), torch.full_like(lam, k * lr))


def kernel_complexity(lam: Tensor, eps: float) -> float:
    r"""Empirical kernel complexity ``R(eps) = sqrt((1/n) sum_j min(lambda_j, eps^2))`` (docs/theory.md A.5).

    Negative eigenvalues (round-off of a positive semi-definite ``H / n``) count as zero.
    """
    return float(torch.clamp(lam, min=0.0).clamp(max=eps * eps).mean().sqrt())


def rkhs_norm_sq(lam: Tensor, coef: Tensor, lr: float, k: int) -> float:
    r"""Squared RKHS norm of the kernel-GD iterate ``f_k``.

    ``||f_k||_H^2 = (1/n) sum_j gain_k(lambda_j)^2 lambda_j ||c_j||^2``.

    Parameters
    ----------
    lam
        Eigenvalues of ``H / n``, shape ``(n,)``.
    coef
        Label coefficients ``c = U^T Y`` in the eigenbasis, shape ``(n, d)``.
    lr, k
        Step size and number of steps.
    """
    gain = kernel_gd_gain(lam, lr, k)
    return float((gain**2 * lam) @ coef.pow(2).sum(1)) / lam.shape[0]
