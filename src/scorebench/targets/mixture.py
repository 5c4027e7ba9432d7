r"""Gaussian mixtures with exact log-density, score, samples and diffused marginals.

``p = sum_k pi_k N(mu_k, Sigma_k)``.  Under a linear forward process every component stays
Gaussian (docs/theory.md F.2):

    p_t = sum_k pi_k N(alpha_t mu_k, alpha_t^2 Sigma_k + sigma_t^2 I),

so :meth:`GaussianMixture.marginal` is again a :class:`GaussianMixture` and its
:meth:`~GaussianMixture.score` is the exact ``grad log p_t``:

    w_k(x) = softmax_k(log pi_k + log N(x; m_k, C_k)),   score(x) = sum_k w_k C_k^{-1}(m_k - x).

Covariances are stored by eigendecomposition ``Sigma_k = U_k diag(lambda_k) U_k^T``, which
the forward noise keeps (``C_k = U_k diag(alpha^2 lambda_k + sigma^2) U_k^T``).  Three storage
kinds, as in scikit-learn's ``GaussianMixture(covariance_type=...)``:

* ``diag`` (also spherical): ``U_k = I``.
* ``tied``: one shared ``U``; points are rotated once and the diag path is used.
* ``full``: one ``U_k`` per component; a loop over components (never over particles) with a
  streaming log-sum-exp keeps memory at ``O(N d + N K)``.

Scores are computed in the dtype of ``x`` (float32 in a suite) and stay accurate there.  The
matmul expansion ``|y - m_k|^2_P = |y|^2_P - 2 y.(P m_k) + |m_k|^2_P`` cancels catastrophically
in float32 when ``|y|, |m_k|`` are large against the component widths.  For ``diag`` and
``tied`` each row is therefore centred on its most likely component ``k*`` (found by a cheap,
rough expansion) before the accurate pass: with ``y' = y - m_{k*}`` and
``D_k = m_k - m_{k*}``,

    |y - m_k|^2_P = |y'|^2_P - 2 y'.(P D_k) + |D_k|^2_P,
    score = -(sum_k w_k P_k) y' + sum_{k != k*} w_k P_k D_k,

where ``|D_k|^2_P`` comes from a ``K x K`` table built in float64, the cross term of ``k*``
is exactly zero and ``y'`` is formed by a compensated subtraction (``m = m_hi + m_lo``, both
in the working dtype).  Every error term is then relative to the size of ``y'`` or of the
weights of the other components, never to ``|y|`` or ``|m|``.  When all components share one
precision and the rounding bound ``eps |P| sqrt(d) max|y_i| max|m_k - c|`` of the plain expansion
about the average mean ``c`` is below :data:`PLAIN_EXPANSION_ERROR`, the plain expansion is used
instead (four passes over the particles, as a hand-written loop would).  The ``full`` path subtracts
each compensated mean before rotating.  Tables depending only on the mixture (precisions,
rotated means, ``|D|^2`` table, constants) are built once per dtype and device and cached.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from ..exact import GaussianLaw
from .base import Target, check_count, check_points

if TYPE_CHECKING:
    from ..processes import ForwardProcess, Time

_LOG_2PI = math.log(2 * math.pi)
#: largest rounding bound ``eps * max|P| * sqrt(d) max|y_i| * max|m_k - centre|`` of the logits for
#: which :meth:`GaussianMixture.score` uses the plain expansion (no centring on ``k*``); in float32
#: a scale of 200, e.g. unit components within 5 of their average and points within 10 in 16-d
PLAIN_EXPANSION_ERROR = 200 * torch.finfo(torch.float32).eps
#: largest dimension for which :meth:`GaussianMixture.score_combination` works in the layout
#: ``(d, N)`` (measured on CPU: faster up to d = 8, slower at d = 16)
TRANSPOSED_LAYOUT_MAX_DIM = 8


def _to(t: Tensor | None, like: Tensor) -> Tensor | None:
    return None if t is None else t.to(device=like.device, dtype=like.dtype)


def covariance_eigh(cov: Tensor, what: str = "covariance", singular: bool = False) -> tuple[Tensor, Tensor]:
    """Eigendecomposition of a symmetric positive-definite matrix, with clear errors.

    With ``singular=True`` a positive semi-definite matrix is accepted too: eigenvalues within
    the rounding of the decomposition (``1e-12`` times the largest entry) of zero are set to
    exactly zero (the covariance of data on a lower-dimensional affine set)."""
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"{what} must be a square matrix, got shape {tuple(cov.shape)}")
    if not torch.isfinite(cov).all():
        raise ValueError(f"{what} has non-finite entries")
    scale = cov.abs().max().clamp_min(1e-300)
    if (cov - cov.T).abs().max() > 1e-10 * scale:
        raise ValueError(f"{what} is not symmetric")
    evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    if singular and evals.min() >= -1e-12 * scale:
        return torch.where(evals <= 1e-12 * scale, torch.zeros_like(evals), evals), evecs
    if evals.min() <= 1e-12 * scale:
        kind = "positive semi-definite" if singular else "positive definite"
        raise ValueError(f"{what} is not {kind} (smallest eigenvalue {evals.min().item():.3g})")
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
        ``(K, d)`` eigenvalues of the component covariances, positive, or non-negative for data
        on lower-dimensional sets (a zero eigenvalue: the component lies on an affine subspace).
        Such a *singular* mixture has no density: it can be sampled and diffused (its marginal
        at any ``t`` with ``sigma_t > 0`` has eigenvalues ``alpha_t^2 lambda + sigma_t^2 > 0``),
        but :meth:`log_prob`, :meth:`score` and :meth:`hessian` refuse it.
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
        if not torch.isfinite(eigvals).all() or (eigvals < 0).any():
            raise ValueError("covariance eigenvalues must be non-negative (covariances positive semi-definite)")
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
        #: whether some component covariance has a zero eigenvalue (no density, see ``eigvals``)
        self.singular = bool((eigvals == 0).any())

    # -- structure ---------------------------------------------------------------------
    def _require_density(self, what: str) -> None:
        if self.singular:
            raise ValueError(
                f"{what} of a mixture with singular component covariances (data on a lower-dimensional set) is "
                "undefined: it has no density; its diffused marginals at t > 0 (marginal(process, t)) have one"
            )

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
    def _tables(self, dtype: torch.dtype, device: torch.device) -> _ScoreTables:
        """The x-independent tables of :meth:`score` in ``dtype`` on ``device`` (built once)."""
        key = (dtype, device)
        cache = self.__dict__.setdefault("_table_cache", {})
        if key not in cache:
            cache[key] = _ScoreTables.build(self, dtype, device)
        return cache[key]

    def _diag_logits(self, y: Tensor, means: Tensor, eigvals: Tensor) -> Tensor:
        """``(N, K)`` log pi_k + log N(y; mu_k, diag(lambda_k)) by the plain matmul expansion
        (exact enough in float64; :meth:`log_prob` works in float64)."""
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
        """Log-weighted density and score of component ``k`` (full covariance), in ``x``'s dtype:
        the compensated mean is subtracted before the rotation."""
        tab = self._tables(x.dtype, x.device)
        U, lam = tab.basis[k], tab.eigvals[k]
        y = ((x - tab.mean_hi[k]) - tab.mean_lo[k]) @ U  # (N, d)
        logit = tab.const[k] - 0.5 * (y * y / lam).sum(1)
        return logit, -(y / lam) @ U.T

    def _joint_log_probs(self, x: Tensor) -> Tensor:
        """``(N, K)`` float64 ``log pi_k + log N(x; mu_k, Sigma_k)`` of checked points."""
        x = x.to(torch.float64)  # the matmul expansion cancels badly in float32 far from the origin
        if self.covariance_type == "full":
            return torch.stack([self._full_component(x, k)[0] for k in range(self.n_components)], 1)
        y, means, eigvals, _ = self._rotated(x)
        return self._diag_logits(y, means, eigvals)

    def log_prob(self, x: Tensor) -> Tensor:
        check_points(x, self.dim)
        self._require_density("log_prob")
        return torch.logsumexp(self._joint_log_probs(x), dim=1).to(x.dtype)

    def mode_weights(self) -> Tensor | None:
        """The mixture weights ``pi_k`` (float64) when there are at least two components, else
        ``None`` (a single Gaussian has no modes to cover)."""
        return self.weights.clone() if self.n_components >= 2 else None

    def mode_log_posterior(self, x: Tensor) -> Tensor:
        r"""``(n, K)`` float64 log responsibilities, the exact posterior of the component:

        .. math::
            \log r_k(x) = \log \pi_k + \log N(x; \mu_k, \Sigma_k)
                - \operatorname{logsumexp}_j \left(\log \pi_j + \log N(x; \mu_j, \Sigma_j)\right).
        """
        check_points(x, self.dim)
        self._require_density("the mode posterior")
        return torch.log_softmax(self._joint_log_probs(x), dim=1)

    def score(self, x: Tensor, compile: bool = False) -> Tensor:
        """Exact ``grad log p(x)``, shape ``(n, d)``, computed in ``x``'s dtype and accurate
        there (relative error a few float32 ulps times the conditioning; see the module
        docstring for the centred expansion).  ``compile=True`` runs the ``diag``/``tied`` kernel
        through ``torch.compile`` (compiled once per process; results equal to float rounding)."""
        check_points(x, self.dim)
        self._require_density("the score")
        if self.covariance_type == "full":
            return self._full_score(x)
        tab = self._tables(x.dtype, x.device)
        if self.n_components == 1:
            y = (x - tab.mean_hi[0]) - tab.mean_lo[0]
            return -(y @ tab.basis / tab.eigvals[0]) @ tab.basis.T if tab.basis is not None else -y / tab.eigvals[0]
        plain = _plain_responsibilities(x, tab)
        if plain is not None:
            y, resp = plain
            if tab.isotropic:  # P (sum_k w_k (m_k - centre) - y)
                s = torch.addmm(y, resp.T, tab.rot_mean, beta=-tab.iso_prec, alpha=tab.iso_prec)
            else:
                s = torch.addmm(y, resp.T, tab.rot_mean, beta=-1.0).mul_(tab.prec[0])
            return s if tab.basis is None else s @ tab.basis.T
        return (_compiled_centred_score() if compile else _centred_score)(x, tab)

    def score_combination(self, x: Tensor, x_weight: float, score_weight: float, compile: bool = False) -> Tensor:
        r"""``x_weight * x + score_weight * score(x)`` (a new tensor, possibly a transposed view),
        the affine step of the diffusion samplers.

        For ``diag`` mixtures whose components share one precision ``P``, in the range of the plain
        expansion, the score is never formed: with ``w = softmax(logits)`` and ``sum_k w_k = 1``,

            a x + b P (sum_k w_k m_k - x) = (a - b P) x + b sum_k w_k (P m_k),

        one matrix product added to ``x``: for ``d <= TRANSPOSED_LAYOUT_MAX_DIM`` the product
        ``(d, K) x (K, N)`` into ``x`` laid out ``(d, N)`` (the result is then a transposed view; for
        small ``d`` the ``(N, K) x (K, d)`` product is several times slower), above it into ``x`` as
        it is.  The logits are taken about the origin (no centring pass), so the plain expansion's
        bound is checked on ``max|x_i|``.  Unlike :meth:`score`, the rounding is ``eps |b| |P|
        max|m_k|`` rather than relative to ``|score|``: the rounding of the combination itself.
        Everywhere else (other covariances, unequal precisions, far points) ``a x + b score(x)``.
        """
        check_points(x, self.dim)
        self._require_density("the score")
        return self._score_combination(x, x_weight, score_weight, compile)

    def _score_combination(self, x: Tensor, x_weight: float, score_weight: float, compile: bool) -> Tensor:
        """:meth:`score_combination` of checked points."""
        tab = self._tables(x.dtype, x.device)
        # the logits about the origin, from x itself: they round by eps |P| |x| |m_k - centre|
        if not (tab.plain_combination and _plain_expansion_fits(x, tab)):
            return (x * x_weight).add_(self.score(x, compile=compile), alpha=score_weight)
        xt = x.T
        resp = torch.softmax(torch.addmm(tab.origin_const, tab.base_prec_mean, xt), 0)  # (K, N)
        if x.shape[1] <= TRANSPOSED_LAYOUT_MAX_DIM:  # the product (d, K) x (K, N), into x laid out (d, N)
            if tab.isotropic:
                bp = score_weight * tab.iso_prec
                return torch.addmm(xt, tab.means_t, resp, beta=x_weight - bp, alpha=bp).T
            scaled = xt * (x_weight - score_weight * tab.prec_col)
            return scaled.addmm_(tab.prec_means_t, resp, alpha=score_weight).T
        if tab.isotropic:  # the product (N, K) x (K, d), into x as it is
            bp = score_weight * tab.iso_prec
            return torch.addmm(x, resp.T, tab.mean_hi, beta=x_weight - bp, alpha=bp)
        return (x * (x_weight - score_weight * tab.prec[0])).addmm_(resp.T, tab.prec_means, alpha=score_weight)

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

    def hessian(self, x: Tensor) -> Tensor:
        r"""Exact Hessian of ``log p`` at each row of ``x``, shape ``(n, d, d)``.

        With responsibilities ``r_k(x)``, component scores ``s_k = -Sigma_k^{-1} (x - mu_k)`` and
        the mixture score ``s = sum_k r_k s_k``,

        .. math::
            \nabla^2 \log p(x) = \sum_k r_k(x) \left(s_k s_k^\top - \Sigma_k^{-1}\right) - s s^\top,

        the covariance of the component scores under the responsibilities minus the mean
        precision.  Applied to a marginal (:meth:`marginal`), it is the Jacobian of the exact
        score ``nabla_x log p_t``, whose growth near ``t = 0`` for data near a low-dimensional set
        is the smoothness constant in Mooney's analysis of the reverse SDE.  Computed in float64
        with a streaming softmax over the components (memory ``O(n d^2)``, never ``n K d^2``) and
        returned in ``x``'s dtype.
        """
        check_points(x, self.dim)
        self._require_density("the Hessian of log p")
        x64 = x.to(torch.float64)
        n, d = x64.shape
        run_max = torch.full((n,), -math.inf, dtype=torch.float64, device=x.device)
        norm = torch.zeros_like(run_max)
        first = torch.zeros_like(x64)  # sum_k w_k s_k
        second = torch.zeros(n, d, d, dtype=torch.float64, device=x.device)  # sum_k w_k (s_k s_k^T - P_k)
        means, eigvals, weights = (_to(v, x64) for v in (self.means, self.eigvals, self.log_weights))
        basis = None if self.basis is None else _to(self.basis, x64)
        for k in range(self.n_components):
            U = None if basis is None else (basis if basis.ndim == 2 else basis[k])
            y = x64 - means[k] if U is None else (x64 - means[k]) @ U  # coordinates in the eigenbasis
            lam = eigvals[k]
            logit = weights[k] - 0.5 * ((y * y / lam).sum(1) + torch.log(lam).sum() + d * _LOG_2PI)
            score_k = -(y / lam) if U is None else -(y / lam) @ U.T
            precision = torch.diag(1.0 / lam) if U is None else (U / lam) @ U.T
            new_max = torch.maximum(run_max, logit)
            shrink, w = torch.exp(run_max - new_max), torch.exp(logit - new_max)
            norm = norm * shrink + w
            first = first * shrink[:, None] + w[:, None] * score_k
            second = (second * shrink[:, None, None]
                      + w[:, None, None] * (score_k[:, :, None] * score_k[:, None, :] - precision))
            run_max = new_max
        mean_score = first / norm[:, None]
        hess = second / norm[:, None, None] - mean_score[:, :, None] * mean_score[:, None, :]
        return (0.5 * (hess + hess.transpose(1, 2))).to(x.dtype)  # symmetric to the last bit

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

    def gaussian_law(self) -> GaussianLaw | None:
        """``N(mean, covariance)`` (float64) for a one-component mixture, ``None`` otherwise."""
        return GaussianLaw(*self.as_gaussian()) if self.n_components == 1 else None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "n_components": self.n_components,
            "covariance_type": self.covariance_type,
        }


class _ScoreTables(NamedTuple):
    """What :meth:`GaussianMixture.score` needs besides ``x``, in one dtype on one device.

    Built in float64 and cast once: ``mean_hi + mean_lo`` (compensated means, original basis),
    ``centre`` (the average mean), ``rot_mean`` (means minus ``centre``, in the eigenbasis),
    ``prec = 1/lambda``, its average ``Pbar`` over components and deviations ``dev_prec``, their
    products with ``rot_mean``, ``const = log pi_k - (log det + d log 2 pi)/2``,
    ``rough_const = 2 const - |m_k|^2_P`` (the rough pass works with twice the logits),
    ``dist2[j, k] = |m_k - m_j|^2_{P_k}`` and ``picked`` (hi, lo and rotated mean side by side,
    gathered for ``k*`` by one product with a one-hot matrix).  For
    :meth:`GaussianMixture.score_combination`: ``prec_means`` (``P_k m_k``, not centred), the transposed
    views ``means_t`` and ``prec_means_t``, ``prec_col`` (the shared precision as a column), ``origin_const``
    (``plain_const - (P (m_k - centre)) . centre``, a column: the plain logits' constant for points
    not centred) and ``plain_combination`` (whether it applies: ``diag``, shared precision, ``K > 1``).
    ``plain_limit`` is the largest ``max|y_i|`` for which the plain expansion is used.
    """

    shared_precision: bool
    picked: Tensor
    mean_hi: Tensor
    mean_lo: Tensor
    rot_mean: Tensor
    eigvals: Tensor
    prec: Tensor
    prec_mean: Tensor
    base_prec_mean: Tensor
    dev_prec: Tensor
    dev_prec_mean: Tensor
    const: Tensor
    rough_const: Tensor
    dist2: Tensor
    basis: Tensor | None
    centre: Tensor
    plain_const: Tensor
    plain_scale: float
    isotropic: bool
    iso_prec: float
    plain_limit: float
    plain_combination: bool
    origin_const: Tensor
    prec_means: Tensor
    means_t: Tensor
    prec_means_t: Tensor
    prec_col: Tensor

    @classmethod
    def build(cls, mix: GaussianMixture, dtype: torch.dtype, device: torch.device) -> _ScoreTables:
        def cast(v: Tensor | None) -> Tensor | None:
            return None if v is None else v.to(device=device, dtype=dtype)

        means, lam = mix.means, mix.eigvals
        hi = means.to(dtype)
        lo = (means - hi.to(torch.float64)).to(dtype)
        const = mix.log_weights - 0.5 * (torch.log(lam).sum(1) + mix.dim * _LOG_2PI)
        prec = 1.0 / lam
        # means about their average, so that products with them round relative to the spread of
        # the means rather than to their distance from the origin (differences m_k - m_j are unchanged)
        centre = means.mean(0)
        rot = means - centre if mix.basis is None or mix.basis.ndim == 3 else (means - centre) @ mix.basis
        # dist2[j, k] = |m_k - m_j|^2_{P_k} by the expansion, in float64 (no K x K x d temporary)
        dist2 = ((rot * rot * prec).sum(1)[None, :] - 2.0 * rot @ (prec * rot).T + (rot * rot) @ prec.T).clamp_min(0.0)
        dist2.fill_diagonal_(0.0)
        rough_const = 2.0 * const - (rot * rot * prec).sum(1)
        shared = bool((lam == lam[0]).all())
        base = prec.mean(0)  # Pbar
        plain_scale = float(prec.max() * math.sqrt(mix.dim) * rot.norm(dim=1).max())
        plain_const = const - 0.5 * (rot * rot * prec).sum(1)
        prec_means = cast(prec * means)
        return cls(
            shared_precision=shared, picked=cast(torch.cat([hi.to(torch.float64), lo.to(torch.float64), rot], 1)),
            mean_hi=hi.to(device), mean_lo=lo.to(device), rot_mean=cast(rot), eigvals=cast(lam), prec=cast(prec),
            prec_mean=cast(prec * rot), base_prec_mean=cast(base * rot), dev_prec=cast(prec - base),
            dev_prec_mean=cast((prec - base) * rot), const=cast(const), rough_const=cast(rough_const),
            dist2=cast(dist2),
            basis=cast(mix.basis), centre=cast(centre),
            plain_const=cast(plain_const),
            plain_scale=plain_scale,
            isotropic=bool((prec == prec[0, 0]).all()), iso_prec=float(prec[0, 0]),
            plain_limit=PLAIN_EXPANSION_ERROR / (torch.finfo(dtype).eps * plain_scale) if plain_scale > 0 else math.inf,
            plain_combination=shared and mix.basis is None and mix.n_components > 1,
            origin_const=cast((plain_const - (prec * rot) @ centre)[:, None]),
            prec_means=prec_means, means_t=hi.to(device).T, prec_means_t=prec_means.T,
            prec_col=cast(prec[0][:, None]),
        )


def _plain_responsibilities(x: Tensor, tab: _ScoreTables) -> tuple[Tensor, Tensor] | None:
    """``(y, w)``: ``y = x - centre`` (rotated into the eigenbasis) and the responsibilities ``w``,
    laid out ``(K, N)``, by the plain expansion about the average mean, when all components share
    one precision and the expansion's rounding bound ``eps |P| sqrt(d) max|y_i| max|m_k - centre|``
    is at most :data:`PLAIN_EXPANSION_ERROR`; ``None`` otherwise (the centred pass is needed)."""
    if not tab.shared_precision:
        return None
    y = x - tab.centre if tab.basis is None else (x - tab.centre) @ tab.basis
    if not _plain_expansion_fits(y, tab):
        return None
    return y, torch.softmax(torch.addmm(tab.plain_const[:, None], tab.base_prec_mean, y.T), 0)


def _plain_expansion_fits(y: Tensor, tab: _ScoreTables) -> bool:
    """Whether the plain expansion's rounding bound ``eps |P| sqrt(d) max|y_i| max|m_k - centre|`` for
    points ``y`` is at most :data:`PLAIN_EXPANSION_ERROR`."""
    # the extreme entries, read in memory order (a reduction over a transposed view is ~10x slower)
    lo, hi = torch.aminmax(y if y.is_contiguous() else y.T)
    return -tab.plain_limit <= lo.item() and hi.item() <= tab.plain_limit


def _centred_score(x: Tensor, tab: _ScoreTables) -> Tensor:
    """The centred expansion of the module docstring.  Per-component quantities are laid out
    ``(K, N)`` (softmax, max and the products with the tables then run along contiguous rows,
    several times faster than ``(N, K)`` for small ``K``); the row of ``k*`` is picked by a
    one-hot matrix product, which is exact."""
    basis = tab.basis
    y = x - tab.centre if basis is None else (x - tab.centre) @ basis
    # rough pass: twice the logits up to a per-row constant; only its argmax is used
    rough = torch.addmm(tab.rough_const[:, None], tab.prec_mean, y.T, alpha=2.0)
    if not tab.shared_precision:
        rough -= tab.prec @ (y * y).T
    top = rough == rough.amax(dim=0)
    top &= top.cumsum(0) == 1  # (K, N), one True per column even on ties
    onehot = top.to(x.dtype)
    d = x.shape[1]
    picked = onehot.T @ tab.picked  # (N, 3d): hi and lo parts of m_{k*}, and m_{k*} rotated
    centred = (x - picked[:, :d]) - picked[:, d:2 * d]
    y = centred if basis is None else centred @ basis
    mk = picked[:, 2 * d:]
    # With P_k = Pbar + dP_k (Pbar the mean precision): -|y - m_k|^2_{P_k} / 2 equals, up to terms
    # common to all k, y'.(Pbar m_k) + y'.(dP_k D_k) - |y'|^2_{dP_k} / 2 - |D_k|^2_{P_k} / 2.
    logits = torch.addmm(torch.addmm(tab.const[:, None], tab.dist2.T, onehot, alpha=-0.5), tab.base_prec_mean, y.T)
    if not tab.shared_precision:  # the dP terms, each relative to the spread of the precisions
        cross = tab.dev_prec_mean @ y.T - tab.dev_prec @ (y * mk).T
        logits += cross.masked_fill_(top, 0.0) - 0.5 * (tab.dev_prec @ (y * y).T)  # the k* cross term is 0
    resp = torch.softmax(logits, dim=0)  # (K, N)
    others = resp.masked_fill(top, 0.0)
    if tab.shared_precision:  # P (sum_{k != k*} w_k m_k - (1 - w_k*) m_k* - y')
        inner = torch.addmm(torch.addcmul(y, others.sum(0)[:, None], mk), others.T, tab.rot_mean, beta=-1.0)
        s = inner * tab.prec[0]
    else:
        s = others.T @ tab.prec_mean - (others.T @ tab.prec) * mk - (resp.T @ tab.prec) * y
    return s if basis is None else s @ basis.T

_COMPILED: dict[str, Any] = {}


def _compiled_centred_score() -> Any:
    """:func:`_centred_score` through ``torch.compile`` (dynamic shapes: one compilation serves
    every particle count and every marginal's tables)."""
    if "centred" not in _COMPILED:
        _COMPILED["centred"] = torch.compile(_centred_score, dynamic=True)
    return _COMPILED["centred"]
