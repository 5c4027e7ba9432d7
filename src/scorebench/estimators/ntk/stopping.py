r"""When to stop gradient descent: the data-dependent rule and generalised cross-validation.

Han, Razaviyayn & Xu (arXiv 2401.15604, ICLR 2024) stop gradient descent early because prolonged
training on noisy labels overfits; they build on the rule of Raskutti, Wainwright & Yu (2014),
docs/theory.md A.5.  With ``lambda`` the eigenvalues of ``H / n`` (:mod:`.kernel`),
``R(eps) = sqrt((1/n) sum_j min(lambda_j, eps^2))``, label-noise scale ``sigma_xi`` and RKHS radius
``B`` of the regression function, the rule stops at

    k_hat = min{ k >= 1 : R(1 / sqrt(lr k)) > B / (2 e sigma_xi lr k) } - 1.

``lr k R(1 / sqrt(lr k))`` increases with ``k``, so the condition is monotone and ``k_hat`` is
found by bisection.  ``B`` is estimated from the iterate that minimises generalised
cross-validation (Craven & Wahba 1979),

    GCV(k) = (1/n) ||(I - S_k) Y||^2 / (1 - tr(S_k) / n)^2,    S_k = U diag(1 - (1 - lr lambda)^k) U^T,

and the default ``sigma_xi`` is the error of the best linear denoiser; both choices are derived
in docs/theory.md A.9.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .kernel import kernel_complexity

#: how an estimator picks the iteration it returns: the rule above, the lowest held-out loss, or
#: the whole budget
STOPPING = ("rule", "validation", "none")


def rule_stop(lam: Tensor, lr: float, sigma_xi: float, rkhs_norm: float = 1.0) -> int:
    r"""The early-stopping iteration ``k_hat = min{k >= 1 : R(1/sqrt(lr k)) > B/(2 e sigma_xi lr k)} - 1``.

    Raskutti, Wainwright & Yu state the rule for ``B = 1``; a ball of radius ``B`` is the unit
    ball for labels divided by ``B``, i.e. noise ``sigma_xi / B`` (docs/theory.md A.9).  The first
    ``k`` where the condition holds is bracketed by doubling and bisected.

    Parameters
    ----------
    lam
        Eigenvalues of ``H / n``.
    lr
        Step size.
    sigma_xi
        Label-noise scale.
    rkhs_norm
        Radius ``B`` of the RKHS ball assumed to hold the regression function.

    Returns
    -------
    int
        ``k_hat``; ``2^62`` if the condition never holds (every eigenvalue zero).
    """
    lam = lam.detach().to("cpu", torch.float64).clamp(min=0.0)
    noise = sigma_xi / rkhs_norm

    def holds(k: int) -> bool:
        tau = lr * k
        return kernel_complexity(lam, 1.0 / math.sqrt(tau)) > 1.0 / (2 * math.e * noise * tau)

    hi = 1
    while not holds(hi):
        hi *= 2
        if hi >= 1 << 62:
            return hi
    lo = hi // 2  # holds(lo) is false (or lo == 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return hi - 1


def gcv_iteration(lam: Tensor, coef: Tensor, lr: float, k_max: int = 10**7, points: int = 200) -> int:
    r"""The iteration minimising ``GCV(k)`` over ``points`` geometrically spaced ``k`` in ``[1, k_max]``.

    Everything is computed in the eigenbasis; the scan ends where fewer than one residual degree
    of freedom, ``tr(I - S_k) < 1``, is left (interpolation).

    Parameters
    ----------
    lam
        Eigenvalues of ``H / n``, shape ``(n,)``.
    coef
        Label coefficients ``c = U^T Y``, shape ``(n, d)``.
    lr
        Step size.
    k_max, points
        The largest iteration scanned and the number of scanned iterations (before rounding
        merges duplicates).

    Returns
    -------
    int
        The scanned iteration with the smallest ``GCV(k)`` (1 if none is smaller than infinity).
    """
    n = lam.shape[0]
    power = coef.pow(2).sum(1)
    ks = sorted({int(v) for v in torch.logspace(0.0, math.log10(k_max), points, dtype=torch.float64).round()})
    best, best_k = math.inf, 1
    for k in ks:
        shrink = torch.pow(1.0 - lr * lam, k)
        dof = float(shrink.sum()) / n
        if dof * n < 1.0:  # fewer than one residual degree of freedom left: interpolation
            break
        value = float(shrink.pow(2) @ power) / n / dof**2
        if value < best:
            best, best_k = value, k
    return best_k
