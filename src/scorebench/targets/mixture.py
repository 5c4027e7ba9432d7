r"""Gaussian mixtures with exact log-density, score, samples and diffused marginals.

``p = sum_k pi_k N(mu_k, Sigma_k)``.  Under a linear forward process every component stays
Gaussian (science.md F.2):

    p_t = sum_k pi_k N(alpha_t mu_k, alpha_t^2 Sigma_k + sigma_t^2 I),

so :meth:`GaussianMixture.marginal` is again a :class:`GaussianMixture` and its
:meth:`~GaussianMixture.score` is the exact ``grad log p_t``:

    w_k(x) = softmax_k(log pi_k + log N(x; m_k, C_k)),   score(x) = sum_k w_k C_k^{-1}(m_k - x).

Covariances are stored by eigendecomposition ``Sigma_k = U_k diag(lambda_k) U_k^T``, which
the forward noise keeps (``C_k = U_k diag(alpha^2 lambda_k + sigma^2) U_k^T``).  Three storage
kinds, as in scikit-learn's ``GaussianMixture(covariance_type=...)``:

* ``diag`` (also spherical): ``U_k = I``.  Quadratic forms use the matmul expansion
  ``(x^2) P^T - 2 x (mu P)^T + sum mu^2 P`` with ``P = 1/lambda``: memory ``O(N d + N K)``,
  never an ``N x K x d`` temporary.
* ``tied``: one shared ``U``; points are rotated once and the diag path is used.
* ``full``: one ``U_k`` per component; a loop over components (never over particles) with a
  streaming log-sum-exp keeps memory at ``O(N d + N K)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .base import Target, check_count, check_points

if TYPE_CHECKING:
    from ..processes import ForwardProcess, Time

_LOG_2PI = math.log(2 * math.pi)


def _to(t: Tensor | None, like: Tensor) -> Tensor | None:
    return None if t is None else t.to(device=like.device, dtype=like.dtype)


def covariance_eigh(cov: Tensor, what: str = "covariance") -> tuple[Tensor, Tensor]:
    """Eigendecomposition of a symmetric positive-definite matrix, with clear errors."""
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"{what} must be a square matrix, got shape {tuple(cov.shape)}")
    if not torch.isfinite(cov).all():
        raise ValueError(f"{what} has non-finite entries")
    scale = cov.abs().max().clamp_min(1e-300)
    if (cov - cov.T).abs().max() > 1e-10 * scale:
        raise ValueError(f"{what} is not symmetric")
    evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    if evals.min() <= 1e-12 * scale:
        raise ValueError(
            f"{what} is not positive definite (smallest eigenvalue {evals.min().item():.3g})"
        )
    return evals, evecs


class GaussianMixture(Target):
    """A finite Gaussian mixture on ``R^d`` with closed-form marginals under any linear SDE.

    Parameters
    ----------
    weights:
        ``(K,)`` positive mixture weights (normalised here).
    means:
        ``(K, d)`` component means.
    eigvals:
        ``(K, d)`` positive eigenvalues of the component covariances.
    basis:
        ``None`` (covariances diagonal in the standard basis), ``(d, d)`` (one orthonormal
        basis shared by all components) or ``(K, d, d)`` (one per component); columns are
        eigenvectors.
    """

    has_marginals = True

    def __init__(
        self, weights: Tensor, means: Tensor, eigvals: Tensor, basis: Tensor | None = None
    ) -> None:
        weights = torch.as_tensor(weights, dtype=torch.float64).cpu()
        means = torch.as_tensor(means, dtype=torch.float64).cpu()
        eigvals = torch.as_tensor(eigvals, dtype=torch.float64).cpu()
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape ({K},) to match means, got {tuple(weights.shape)}")
        if not torch.isfinite(weights).all() or (weights <= 0).any():
            raise ValueError("mixture weights must be positive and finite")
        if not torch.isfinite(means).all():
            raise ValueError("means have non-finite entries")
        if eigvals.shape != (K, d):
            raise ValueError(f"eigvals must have shape ({K}, {d}), got {tuple(eigvals.shape)}")
        if not torch.isfinite(eigvals).all() or (eigvals <= 0).any():
            raise ValueError("covariance eigenvalues must be positive (covariances positive definite)")
        if basis is not None:
            basis = torch.as_tensor(basis, dtype=torch.float64).cpu()
            if basis.shape not in ((d, d), (K, d, d)):
                raise ValueError(f"basis must have shape ({d}, {d}) or ({K}, {d}, {d}), got {tuple(basis.shape)}")
        self.dim = d
        self.n_components = K
        self.weights = weights / weights.sum()
        self.log_weights = torch.log(self.weights)
        self.means = means
        self.eigvals = eigvals
        self.basis = basis

    # -- structure ---------------------------------------------------------------------
    @property
    def covariance_type(self) -> str:
        if self.basis is None:
            return "diag"
        return "tied" if self.basis.ndim == 2 else "full"

    def component_covariances(self) -> Tensor:
        """``(K, d, d)`` covariance matrices (float64)."""
        if self.basis is None:
            return torch.diag_embed(self.eigvals)
        U = self.basis if self.basis.ndim == 3 else self.basis.expand(self.n_components, -1, -1)
        return U @ torch.diag_embed(self.eigvals) @ U.transpose(-1, -2)

    def mean(self) -> Tensor:
        """Mixture mean (float64)."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance ``sum_k w_k (Sigma_k + mu_k mu_k^T) - mu mu^T`` (float64)."""
        m = self.mean()
        centred = self.means - m
        between = (centred.T * self.weights) @ centred
        within = torch.einsum("k,kij->ij", self.weights, self.component_covariances())
        return within + between

    def moments(self) -> tuple[Tensor, Tensor]:
        return self.mean(), self.covariance()

    def marginal(self, process: ForwardProcess, t: Time) -> GaussianMixture:
        """Exact law of ``alpha_t X_0 + sigma_t Z``: means ``alpha mu_k``, eigenvalues ``alpha^2 lambda + sigma^2``."""
        process.check_time(t)
        a = float(process.alpha(t))
        s2 = float(process.sigma2(t))
        return GaussianMixture(self.weights, a * self.means, a * a * self.eigvals + s2, self.basis)

    # -- density and score -----------------------------------------------------------
    def _diag_logits(self, y: Tensor, means: Tensor, eigvals: Tensor) -> Tensor:
        """``(N, K)`` log pi_k + log N(y; mu_k, diag(lambda_k)) by the matmul expansion."""
        prec = 1.0 / eigvals  # (K, d)
        quad = (y * y) @ prec.T - 2.0 * y @ (means * prec).T + (means * means * prec).sum(1)
        quad = quad.clamp_min(0.0)
        logdet = torch.log(eigvals).sum(1)
        return _to(self.log_weights, y) - 0.5 * (quad + logdet + self.dim * _LOG_2PI)

    def _rotated(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        means, eigvals, basis = (_to(v, x) for v in (self.means, self.eigvals, self.basis))
        if basis is None:
            return x, means, eigvals, None
        return x @ basis, means @ basis, eigvals, basis

    def _full_component(self, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Log-weighted density and score of component ``k`` (full covariance)."""
        U = _to(self.basis[k], x)
        lam = _to(self.eigvals[k], x)
        y = (x - _to(self.means[k], x)) @ U  # (N, d)
        logit = (
            float(self.log_weights[k])
            - 0.5 * ((y * y / lam).sum(1) + float(torch.log(self.eigvals[k]).sum()) + self.dim * _LOG_2PI)
        )
        return logit, -(y / lam) @ U.T

    def log_prob(self, x: Tensor) -> Tensor:
        check_points(x, self.dim)
        dtype = x.dtype
        x = x.to(torch.float64)  # the matmul expansion cancels badly in float32 far from the origin
        if self.covariance_type == "full":
            logits = torch.stack([self._full_component(x, k)[0] for k in range(self.n_components)], 1)
        else:
            y, means, eigvals, _ = self._rotated(x)
            logits = self._diag_logits(y, means, eigvals)
        return torch.logsumexp(logits, dim=1).to(dtype)

    def score(self, x: Tensor) -> Tensor:
        """Exact ``grad log p(x)``, shape ``(n, d)``, computed in float64 and returned in
        ``x``'s dtype (in float32 the expanded quadratic forms lose all accuracy when the
        means are far from the origin compared with the component widths)."""
        check_points(x, self.dim)
        dtype = x.dtype
        x = x.to(torch.float64)
        if self.covariance_type == "full":
            return self._full_score(x).to(dtype)
        y, means, eigvals, basis = self._rotated(x)
        resp = torch.softmax(self._diag_logits(y, means, eigvals), dim=1)  # (N, K)
        prec = 1.0 / eigvals
        s = resp @ (means * prec) - y * (resp @ prec)
        return (s if basis is None else s @ basis.T).to(dtype)

    def _full_score(self, x: Tensor) -> Tensor:
        # streaming softmax over components: running max, normaliser and weighted score
        run_max = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
        norm = torch.zeros_like(run_max)
        acc = torch.zeros_like(x)
        for k in range(self.n_components):
            logit, s_k = self._full_component(x, k)
            new_max = torch.maximum(run_max, logit)
            shrink = torch.exp(run_max - new_max)
            w = torch.exp(logit - new_max)
            norm = norm * shrink + w
            acc = acc * shrink[:, None] + w[:, None] * s_k
            run_max = new_max
        return acc / norm[:, None]

    # -- sampling --------------------------------------------------------------------
    def sample(
        self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Draw the component, then ``mu_k + U_k (sqrt(lambda_k) * z)``."""
        check_count(n)
        dev = generator.device
        comp = torch.multinomial(
            self.weights.to(dev), n, replacement=True, generator=generator
        )
        z = torch.randn((n, self.dim), generator=generator, device=dev, dtype=torch.float64)
        means = self.means.to(dev)
        scale = self.eigvals.to(dev).sqrt()
        if self.basis is None:
            x = means[comp] + z * scale[comp]
        elif self.basis.ndim == 2:
            x = means[comp] + (z * scale[comp]) @ self.basis.to(dev).T
        else:
            x = torch.empty_like(z)
            for k in range(self.n_components):
                idx = comp == k
                x[idx] = means[k] + (z[idx] * scale[k]) @ self.basis[k].to(dev).T
        return x.to(dtype)

    def as_gaussian(self) -> tuple[Tensor, Tensor]:
        """``(mean, covariance)`` in float64; raises unless the mixture has one component."""
        if self.n_components != 1:
            raise ValueError(f"a {self.n_components}-component mixture is not Gaussian")
        return self.mean(), self.covariance()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "n_components": self.n_components,
            "covariance_type": self.covariance_type,
        }
