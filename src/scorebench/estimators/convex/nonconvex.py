r"""The same two-layer ReLU objective trained the nonconvex way: Adam from a random start.

Zhang & Pilanci, "Analyzing neural network-based generative diffusion models through convex
optimization" (arXiv 2402.01965); Pilanci & Ergen, "Neural networks are convex regularizers"
(ICML 2020); docs/theory.md C.2 (steps 1-3) and C.3.

For a width ``m`` at least the number of groups of the convex program (C3), the global minimum
of the weight-decay objective of the network ``f(x) = sum_j c_j (a_j^T x~)_+``,

    J(A, C) = (1/2n) ||relu(X~ A^T) C - Y||_F^2 + (beta/2) (||A||_F^2 + ||C||_F^2),

equals the optimum of (C3): every network's objective is at least the convex optimum, and the
network recovered from a convex solution attains it.  :func:`adam_objective` trains ``(A, C)``
by Adam on ``J`` from a small random start and returns the final ``J``, so that the *gap*
``(J_Adam - J_convex) / J_convex`` measures how far nonconvex training is from the global
optimum: never significantly below zero (the convex program's optimum is a lower bound), and
going to zero when training finds the global minimum.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .recovery import nonconvex_objective

#: standard deviation of the initial hidden weights ``a_j`` and of the output weights ``c_j``
INIT_STD = (0.5, 0.1)


def adam_objective(
    X: Tensor, Y: Tensor, beta: float, width: int, iterations: int, lr: float, generator: torch.Generator,
) -> tuple[float, list[float]]:
    r"""Final objective ``J(A, C)`` after ``iterations`` Adam steps from a random start.

    ``a_j ~ N(0, 0.5^2 I)``, ``c_j ~ N(0, 0.1^2 I)`` (float64, on ``X``'s device); Adam (Kingma &
    Ba 2015) with step ``lr`` annealed to zero on a cosine schedule (Loshchilov & Hutter 2017),
    full batch.

    Parameters
    ----------
    X
        Inputs with the bias column last, ``(n, p)``.
    Y
        Targets, ``(n, d)``.
    beta
        Weight decay.
    width
        Number of hidden neurons ``m``.
    iterations
        Number of Adam steps.
    lr
        Initial Adam step size.
    generator
        Source of the initial weights.

    Returns
    -------
    tuple
        The final objective, and the objective at the start and after every tenth of the
        iterations.
    """
    dev, dt = X.device, torch.float64
    X, Y = X.to(dt), Y.to(dt)
    A = (INIT_STD[0] * torch.randn((width, X.shape[1]), generator=generator, device=dev, dtype=dt)).requires_grad_()
    C = (INIT_STD[1] * torch.randn((width, Y.shape[1]), generator=generator, device=dev, dtype=dt)).requires_grad_()
    opt = torch.optim.Adam([A, C], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * k / iterations)))
    marks = {round(iterations * j / 10) for j in range(1, 11)}
    curve = [float(nonconvex_objective(A.detach(), C.detach(), X, Y, beta))]
    with torch.enable_grad():
        for k in range(1, iterations + 1):
            opt.zero_grad()
            nonconvex_objective(A, C, X, Y, beta).backward()
            opt.step()
            schedule.step()
            if k in marks:
                curve.append(float(nonconvex_objective(A.detach(), C.detach(), X, Y, beta)))
    return float(nonconvex_objective(A.detach(), C.detach(), X, Y, beta)), curve
