r"""Lazy-training fidelity: the distance between a trained network and kernel gradient descent.

Han, Razaviyayn & Xu, "Neural Network-Based Score Estimation in Diffusion Models: Optimization
and Generalization" (arXiv 2401.15604, ICLR 2024); docs/theory.md A.4 and A.7 (check 1).

A two-layer ReLU network ``g_W`` in NTK scaling (:mod:`.network`), trained by ``k`` steps of
full-batch gradient descent with step ``lr`` on ``(1 / 2n) sum_i ||g_W(z_i) - y_i||^2`` from an
antisymmetric start (``g_{W(0)} = 0``), follows kernel gradient descent with the analytic tangent
kernel ``K`` (:func:`.kernel.relu_ntk`),

    f_k(z) = K(z, Z) U diag(gain_k(lambda) / n) U^T Y,     H / n = K(Z, Z) / n = U diag(lambda) U^T,

up to an error of order ``m^{-1/2}`` in the width ``m``: the tangent kernel at initialisation
differs from ``K`` by a Monte Carlo error over ``m`` neurons, and it moves by ``O(m^{-1/2})``
during training.  :func:`kernel_function_gap` measures that error as a relative ``L2`` distance on
evaluation inputs,

    gap = ||g_{W(k)}(Z_eval) - f_k(Z_eval)||_F / ||f_k(Z_eval)||_F.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .kernel import kernel_gd_gain, relu_ntk

Kernel = Callable[[Tensor, Tensor], Tensor]


def kernel_gd_predictor(
    z_train: Tensor, y_train: Tensor, z_eval: Tensor, lr: float, k: int, kernel: Kernel = relu_ntk,
) -> Tensor:
    r"""Kernel gradient descent after ``k`` steps of size ``lr``, from zero, evaluated at ``z_eval``.

    ``f_k(z) = K(z, Z) U diag(gain_k(lambda) / n) U^T Y`` with ``K(Z, Z) / n = U diag(lambda) U^T``
    and ``gain_k(lambda) = (1 - (1 - lr lambda)^k) / lambda`` (:func:`.kernel.kernel_gd_gain`): the
    function-space iteration ``f <- f - (lr / n) K(., Z) (f(Z) - Y)`` in closed form.

    Parameters
    ----------
    z_train, y_train
        Training features ``(n, D)`` and labels ``(n, d)``.
    z_eval
        Evaluation features ``(n_eval, D)``.
    lr, k
        Step size and number of steps.
    kernel
        The kernel ``K(za, zb)`` (default: the analytic ReLU tangent kernel).

    Returns
    -------
    Tensor
        ``f_k(z_eval)``, shape ``(n_eval, d)``.
    """
    n = z_train.shape[0]
    lam, U = torch.linalg.eigh(kernel(z_train, z_train) / n)
    lam = lam.clamp(min=0.0)
    weights = U @ (kernel_gd_gain(lam, lr, k)[:, None] * (U.T @ y_train)) / n
    return kernel(z_eval, z_train) @ weights


def kernel_function_gap(
    network_eval: Tensor, z_train: Tensor, y_train: Tensor, z_eval: Tensor, lr: float, k: int,
    kernel: Kernel = relu_ntk,
) -> float:
    r"""Relative ``L2`` distance between a trained network and kernel gradient descent at the same ``k``.

    ``||g(Z_eval) - f_k(Z_eval)||_F / ||f_k(Z_eval)||_F`` with ``f_k`` from
    :func:`kernel_gd_predictor` on the network's own training set, step size and iteration.

    Parameters
    ----------
    network_eval
        The network's outputs ``g(z_eval)``, shape ``(n_eval, d)``.
    z_train, y_train, z_eval, lr, k, kernel
        As for :func:`kernel_gd_predictor`.

    Returns
    -------
    float
        The relative gap; ``inf`` if the kernel predictor is identically zero there and the
        network is not (``0.0`` if both are).
    """
    reference = kernel_gd_predictor(z_train, y_train, z_eval, lr, k, kernel)
    diff = float((network_eval - reference).norm())
    size = float(reference.norm())
    if size == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / size
