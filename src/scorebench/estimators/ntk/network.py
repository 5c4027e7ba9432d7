r"""The two-layer ReLU network in NTK scaling and its antisymmetric initialisation.

Han, Razaviyayn & Xu (arXiv 2401.15604, ICLR 2024), docs/theory.md A.3.  On features ``z`` of
dimension ``D`` (the input map of :mod:`.denoiser`) the network of width ``m`` is

    g_W(z) = (1 / sqrt m) sum_{r=1}^m a_r relu(w_r . z),    w_r(0) ~ N(0, nu^2 I),

with the output weights ``a_r`` fixed at ``+-1`` and only ``W = (w_r)`` trained.  Two ways to give
it ``d`` outputs (:data:`HEADS`):

* ``shared``: one hidden layer, ``a_r in {-1, +1}^d`` with i.i.d. Rademacher entries; the
  cross-output blocks of the tangent kernel vanish only as ``m -> inf``;
* ``independent``: ``d`` separate networks of width ``m`` with scalar ``a_r = +-1``; the
  cross-output blocks are exactly zero, at ``d`` times the cost.

The initialisation is antisymmetric: neurons come in pairs with equal ``w_r(0)`` and opposite
``a_r``, so ``g_{W(0)} = 0`` and training starts where kernel gradient descent starts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: how the network produces its ``d`` outputs: one shared hidden layer, or one network per output
HEADS = ("shared", "independent")


def network_output(W: Tensor, a: Tensor, z: Tensor) -> Tensor:
    r"""The network ``g_W(z) = (1/sqrt m) sum_r a_r relu(w_r . z)``.

    Parameters
    ----------
    W
        First-layer weights: ``(m, D)`` for a shared hidden layer, ``(d, m, D)`` for independent
        heads.
    a
        Output weights ``+-1``: ``(m, d)`` for a shared hidden layer, ``(d, m)`` for independent heads.
    z
        Features, shape ``(n, D)``.

    Returns
    -------
    Tensor
        The outputs, shape ``(n, d)``.
    """
    if W.ndim == 2:
        return torch.relu(z @ W.T) @ a / math.sqrt(W.shape[0])
    hidden = torch.relu(torch.einsum("nk,jmk->jnm", z, W))
    return torch.einsum("jnm,jm->nj", hidden, a) / math.sqrt(W.shape[1])


def antisymmetric_init(
    width: int, in_dim: int, out_dim: int, heads: str, nu: float, generator: torch.Generator, dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """The initial weights ``(W(0), a)``: neurons ``r`` and ``r + m/2`` share ``w_r(0) ~ N(0, nu^2 I)``
    and have opposite ``a_r``, so the network starts at zero.

    Parameters
    ----------
    width
        Number of hidden neurons ``m`` per network (even).
    in_dim, out_dim
        Feature dimension ``D`` and number of outputs ``d``.
    heads
        ``shared`` or ``independent`` (:data:`HEADS`).
    nu
        Standard deviation of the initial first-layer weights.
    generator
        Source of the draws; the weights live on its device.
    dtype
        Floating dtype of the weights.

    Returns
    -------
    tuple of Tensor
        ``W(0)`` and ``a``, shaped as :func:`network_output` takes them.
    """
    half = width // 2
    dev = generator.device
    lead = (half,) if heads == "shared" else (out_dim, half)
    w = nu * torch.randn((*lead, in_dim), generator=generator, device=dev, dtype=dtype)
    a_shape = (half, out_dim) if heads == "shared" else (out_dim, half)
    a = 2.0 * torch.randint(0, 2, a_shape, generator=generator, device=dev).to(dtype) - 1.0
    dim = 0 if heads == "shared" else 1
    return torch.cat([w, w], dim=dim), torch.cat([a, -a], dim=dim)
