r"""Closed-form values of the distances between isotropic Gaussians, the exact truths the
micro-benchmarks' accuracy figures are measured against.

All functions take ``P = N(m1, s1^2 I_d)`` and ``Q = N(m2, s2^2 I_d)``; ``delta = ||m1 - m2||``.
"""

from __future__ import annotations

import math

from scipy.special import gammaln, hyp1f1


def w2(delta: float, s1: float, s2: float, d: int) -> float:
    """``W2(P, Q) = (delta^2 + d (s1 - s2)^2)^{1/2}`` (the Bures formula for commuting covariances)."""
    return math.sqrt(delta**2 + d * (s1 - s2) ** 2)


def sliced_w2(delta: float, s1: float, s2: float, d: int) -> float:
    r"""Sliced W2 over directions uniform on the sphere: every projection is
    ``N(theta.m, s^2)``, so ``SW2^2 = E_theta (theta.(m1 - m2))^2 + (s1 - s2)^2 = delta^2 / d + (s1 - s2)^2``."""
    return math.sqrt(delta**2 / d + (s1 - s2) ** 2)


def _mean_norm(mu: float, var: float, d: int) -> float:
    r"""``E||W||`` for ``W ~ N(mu, var I_d)`` with ``||mu|| = mu``: the mean of a noncentral chi law,
    ``sqrt(2 var) Gamma((d+1)/2) / Gamma(d/2) 1F1(-1/2; d/2; -mu^2 / (2 var))``."""
    scale = math.sqrt(2 * var) * math.exp(gammaln((d + 1) / 2) - gammaln(d / 2))
    return scale * float(hyp1f1(-0.5, d / 2, -(mu**2) / (2 * var)))


def energy(delta: float, s1: float, s2: float, d: int) -> float:
    r"""Energy distance ``2 E||X - Y|| - E||X - X'|| - E||Y - Y'||`` (Székely & Rizzo 2013), with
    ``X - Y ~ N(m1 - m2, (s1^2 + s2^2) I)`` and ``X - X' ~ N(0, 2 s1^2 I)``."""
    return (
        2 * _mean_norm(delta, s1**2 + s2**2, d) - _mean_norm(0.0, 2 * s1**2, d) - _mean_norm(0.0, 2 * s2**2, d)
    )


def mmd2(delta: float, s1: float, s2: float, d: int, ell: float) -> float:
    r"""Squared MMD with the kernel ``exp(-||u - v||^2 / ell)``.  For ``W ~ N(mu, v I_d)``,
    ``E exp(-||W||^2 / ell) = (1 + 2 v / ell)^{-d/2} exp(-||mu||^2 / (ell + 2 v))``; the three
    kernel means take ``W = X - X'``, ``Y - Y'`` and ``X - Y``."""

    def mean_kernel(mu: float, v: float) -> float:
        return (1 + 2 * v / ell) ** (-d / 2) * math.exp(-(mu**2) / (ell + 2 * v))

    return mean_kernel(0.0, 2 * s1**2) + mean_kernel(0.0, 2 * s2**2) - 2 * mean_kernel(delta, s1**2 + s2**2)


def sinkhorn(delta: float, s1: float, s2: float, d: int, eps: float) -> float:
    r"""Debiased Sinkhorn divergence ``S = OT(P, Q) - OT(P, P)/2 - OT(Q, Q)/2`` with
    ``OT(P, Q) = min_pi E_pi||x - y||^2 + eps KL(pi || P x Q)``.

    Janati, Muzellec, Peyré, Cuturi (NeurIPS 2020, Thm. 1): with ``eps = 2 sigma^2`` and
    ``D = (4 A^{1/2} B A^{1/2} + sigma^4 I)^{1/2}``,
    ``OT = ||a - b||^2 + tr A + tr B - tr D + d sigma^2 (1 - log 2 sigma^2) + sigma^2 log det(D + sigma^2 I)``;
    for isotropic covariances ``D = (4 s1^2 s2^2 + sigma^4)^{1/2} I`` and the constants cancel in ``S``.
    """
    sig2 = eps / 2

    def part(a2: float, b2: float) -> float:
        dd = math.sqrt(4 * a2 * b2 + sig2**2)
        return d * (a2 + b2 - dd + sig2 * math.log(dd + sig2))

    return delta**2 + part(s1**2, s2**2) - 0.5 * part(s1**2, s1**2) - 0.5 * part(s2**2, s2**2)
