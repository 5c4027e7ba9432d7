"""Registered Gaussian and Gaussian-mixture targets (exact scores at every diffusion time)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..params import Array, Interval, Options
from .base import TARGETS
from .mixture import GaussianMixture, covariance_eigh

ArrayLike = Sequence[Any] | Tensor | float


def _tensor(value: ArrayLike, what: str) -> Tensor:
    try:
        out = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{what} must be numeric (a number or nested list of numbers): {exc}") from None
    if not torch.isfinite(out).all():
        raise ValueError(f"{what} has non-finite entries")
    return out


#: the seed of a random rotation, or ``None`` for the coordinate axes
SEED = [Interval(int, None, None), None]
#: a target's dimension
DIM = Interval(int, 1, None)


def random_rotation(dim: int, seed: int) -> Tensor:
    """A Haar-distributed orthogonal matrix from a seeded QR decomposition (float64)."""
    g = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn((dim, dim), generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@TARGETS.register("gaussian")
class Gaussian(GaussianMixture):
    """Multivariate normal ``N(mean, cov)``: strongly log-concave, the exact-law reference.

    Give ``cov`` explicitly, or a ``condition_number`` kappa: then the covariance has
    eigenvalues log-spaced in ``[1/kappa, 1]`` (precision in ``[1, kappa]``) in a random
    orthonormal basis drawn from ``rotation_seed`` (``rotation_seed=None`` keeps the
    coordinate axes).  ``mean`` defaults to zero.
    """

    param_constraints: ClassVar[dict] = {
        "dim": DIM, "mean": [Array(), None], "cov": [Array(), None], "condition_number": Interval(float, 1, None),
        "rotation_seed": SEED,
    }

    def __init__(
        self,
        dim: int = 2,
        mean: ArrayLike | None = None,
        cov: ArrayLike | None = None,
        condition_number: float = 10.0,
        rotation_seed: int | None = 0,
    ) -> None:
        self._init_params = {"dim": dim, "mean": mean, "cov": cov, "condition_number": condition_number,
                             "rotation_seed": rotation_seed}
        self.validate_params(self._init_params)
        if cov is not None:
            cov_t = _tensor(cov, "gaussian: cov")
            if cov_t.ndim != 2:
                raise ValueError(f"gaussian: cov must be a (d, d) matrix, got shape {tuple(cov_t.shape)}")
            dim = cov_t.shape[0]
            evals, evecs = covariance_eigh(cov_t, "gaussian: cov")
            self._spec = {"cov": cov_t.tolist()}
        else:
            kappa = float(condition_number)
            evals = torch.logspace(-math.log10(kappa), 0.0, dim, dtype=torch.float64) if dim > 1 \
                else torch.ones(1, dtype=torch.float64)
            evecs = torch.eye(dim, dtype=torch.float64) if rotation_seed is None \
                else random_rotation(dim, rotation_seed)
            self._spec = {"condition_number": kappa, "rotation_seed": rotation_seed}
        mean_t = torch.zeros(dim, dtype=torch.float64) if mean is None else _tensor(mean, "gaussian: mean")
        if mean_t.ndim == 0:
            mean_t = mean_t.expand(dim).clone()
        if mean_t.shape != (dim,):
            raise ValueError(f"gaussian: mean must have length {dim}, got shape {tuple(mean_t.shape)}")
        basis = None if torch.equal(evecs, torch.eye(dim, dtype=torch.float64)) else evecs
        super().__init__(torch.ones(1), mean_t[None], evals[None], basis)

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return dict(self._init_params)

    def describe(self) -> dict[str, Any]:
        """Name, dimension, mean and the covariance's specification (what identifies the law)."""
        return {"name": self.name, "dim": self.dim, "mean": self.means[0].tolist(), **self._spec}


@TARGETS.register("gaussian_unknown_mean")
class GaussianUnknownMean(Gaussian):
    """``N(mu, I_d)``: Bruno et al. (2023)'s Gaussian with unknown mean (docs/theory.md B.3).

    Under OU ``p_t = N(mu e^{-t}, I)``, so the exact score ``-x + mu e^{-t}`` lies in the
    affine family ``-x + theta e^{-t}``.  ``mean`` defaults to the all-ones vector.
    """

    param_constraints: ClassVar[dict] = {"dim": DIM, "mean": [Array(), None]}

    def __init__(self, dim: int = 2, mean: ArrayLike | None = None) -> None:
        self.validate_params({"dim": dim, "mean": mean})
        super().__init__(
            dim=dim,
            mean=torch.ones(dim, dtype=torch.float64) if mean is None else mean,
            cov=torch.eye(dim, dtype=torch.float64),
        )
        self._init_params = {"dim": dim, "mean": mean}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "mean": self.means[0].tolist()}


GMM_PRESETS = ("ring8", "gmm40", "random")


@TARGETS.register("gmm")
class GMM(GaussianMixture):
    """Gaussian mixture ``sum_k w_k N(mu_k, Sigma_k)``, explicit or from a preset.

    Explicit: ``means`` (K x d); ``weights`` (default uniform); ``covs`` as a scalar variance,
    ``(K,)`` spherical variances, ``(K, d)`` diagonal variances, one ``(d, d)`` matrix shared by
    all components or ``(K, d, d)`` (default identity).  When ``K == d`` a square ``covs`` is
    ambiguous; say which with ``covariance_type="diag"`` or ``"tied"``.  Covariances may be
    singular (positive semi-definite: a zero variance puts a component on a line, a plane or a
    point): such a mixture has no density at ``t = 0`` but exact marginals, scores and Hessians
    at every ``t > 0`` of a process with ``sigma_t > 0`` (data on low-dimensional sets, Mooney et
    al. 2024).

    Presets (``preset=``), each with ``scale``/``std``/``n_components``/``seed`` overrides:

    * ``ring8`` -- 8 equal modes on a circle of radius ``scale`` (4) with std ``std`` (0.5), 2-D.
    * ``gmm40`` -- the 40-mode 2-D mixture of Midgley et al. (FAB, 2023) used across the
      sampling literature: means uniform in ``[-scale, scale]^2`` (scale 40) drawn from
      ``seed`` (0), std ``softplus(1) = 1.3133``, equal weights.
    * ``random`` -- ``n_components`` (5) modes in ``dim`` (10) dimensions with means
      ``N(0, scale^2 I)`` (scale 3), std ``std`` (1), equal weights, drawn from ``seed``.
    """

    param_constraints: ClassVar[dict] = {
        "preset": [Options(GMM_PRESETS), None], "means": [Array(), None], "weights": [Array(), None],
        "covs": [Array(), None], "dim": [DIM, None], "n_components": [Interval(int, 1, None), None],
        "scale": [Interval(float, 0, None, closed="neither", cast=False), None],
        "std": [Interval(float, 0, None, closed="neither", cast=False), None], "seed": Interval(int, None, None),
        "covariance_type": [Options(("diag", "tied")), None],
    }
    #: the defaults name no mixture: the smallest preset
    test_params: ClassVar[dict] = {"preset": "ring8"}

    def __init__(
        self,
        preset: str | None = None,
        means: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        covs: ArrayLike | None = None,
        dim: int | None = None,
        n_components: int | None = None,
        scale: float | None = None,
        std: float | None = None,
        seed: int = 0,
        covariance_type: str | None = None,
    ) -> None:
        self._init_params = {
            "preset": preset, "means": means, "weights": weights, "covs": covs, "dim": dim,
            "n_components": n_components, "scale": scale, "std": std, "seed": seed, "covariance_type": covariance_type,
        }
        self.validate_params(self._init_params)
        self._spec: dict[str, Any]
        if preset is not None:
            if means is not None or covs is not None:
                raise ValueError("gmm: give either preset or means/covs, not both")
            means_t, var = self._preset(preset, dim, n_components, scale, std, seed)
            K, d = means_t.shape
            weights_t = torch.ones(K, dtype=torch.float64) if weights is None else _tensor(weights, "gmm: weights")
            eigvals, basis = torch.full((K, d), var, dtype=torch.float64), None
            self._spec = {"preset": preset, "n_components": K, "scale": scale, "std": std, "seed": seed}
        else:
            if means is None:
                raise ValueError(f"gmm: give means (K x d) or a preset ({', '.join(GMM_PRESETS)})")
            for name, val in (("dim", dim), ("n_components", n_components), ("scale", scale), ("std", std)):
                if val is not None:
                    raise ValueError(f"gmm: {name} applies to presets only; with explicit means it is implied")
            means_t = _tensor(means, "gmm: means")
            if means_t.ndim != 2:
                raise ValueError(f"gmm: means must be a K x d matrix, got shape {tuple(means_t.shape)}")
            K, d = means_t.shape
            weights_t = torch.ones(K, dtype=torch.float64) if weights is None else _tensor(weights, "gmm: weights")
            eigvals, basis = self._covariances(covs, K, d, covariance_type)
            self._spec = {"means": means_t.tolist(), "weights": weights_t.tolist()}
        if weights_t.shape != (K,):
            raise ValueError(f"gmm: weights must have length {K}, got shape {tuple(weights_t.shape)}")
        super().__init__(weights_t, means_t, eigvals, basis)

    @staticmethod
    def _preset(
        preset: str, dim: int | None, n_components: int | None, scale: float | None,
        std: float | None, seed: int,
    ) -> tuple[Tensor, float]:
        g = torch.Generator().manual_seed(int(seed))
        if preset in ("ring8", "gmm40") and dim not in (None, 2):
            raise ValueError(f"gmm: preset {preset!r} is 2-D; got dim={dim}")
        if preset == "ring8":
            K = 8 if n_components is None else n_components
            r = 4.0 if scale is None else float(scale)
            angle = 2 * math.pi * torch.arange(K, dtype=torch.float64) / K
            return r * torch.stack([torch.cos(angle), torch.sin(angle)], 1), (0.5 if std is None else std) ** 2
        if preset == "gmm40":
            K = 40 if n_components is None else n_components
            loc = 40.0 if scale is None else float(scale)
            means = (torch.rand((K, 2), generator=g, dtype=torch.float64) - 0.5) * 2 * loc
            sd = math.log1p(math.e) if std is None else std  # softplus(1)
            return means, sd**2
        if preset == "random":
            d = 10 if dim is None else dim
            K = 5 if n_components is None else n_components
            s = 3.0 if scale is None else float(scale)
            return s * torch.randn((K, d), generator=g, dtype=torch.float64), (1.0 if std is None else std) ** 2
        raise ValueError(f"gmm: unknown preset {preset!r}; allowed: {', '.join(GMM_PRESETS)}")

    @staticmethod
    def _covariances(
        covs: ArrayLike | None, K: int, d: int, covariance_type: str | None
    ) -> tuple[Tensor, Tensor | None]:
        if covariance_type not in (None, "diag", "tied"):
            raise ValueError(f"gmm: covariance_type must be 'diag' or 'tied' (or omitted), got {covariance_type!r}")
        if covs is None:
            return torch.ones((K, d), dtype=torch.float64), None
        c = _tensor(covs, "gmm: covs")
        if c.ndim == 2 and K == d and K > 1:
            if covariance_type is None:
                raise ValueError(
                    f"gmm: covs of shape ({K}, {d}) with K == d is ambiguous; pass covariance_type='diag' "
                    "(one row of variances per component) or 'tied' (one shared covariance matrix)"
                )
            if covariance_type == "diag":
                if (c < 0).any():
                    raise ValueError("gmm: diagonal variances in covs must be non-negative")
                return c.clone(), None
            evals, evecs = covariance_eigh(c, "gmm: covs (shared covariance)", singular=True)
            return evals[None].expand(K, d).clone(), evecs
        if c.ndim == 0 or (c.ndim == 1 and c.shape == (K,)):
            var = c.expand(K) if c.ndim == 1 else c.expand(K).clone()
            if (var < 0).any():
                raise ValueError("gmm: covs (variances) must be non-negative")
            return var[:, None].expand(K, d).clone(), None
        if c.ndim == 2 and c.shape == (K, d):
            if (c < 0).any():
                raise ValueError("gmm: diagonal variances in covs must be non-negative")
            return c.clone(), None
        if c.ndim == 2 and c.shape == (d, d):
            evals, evecs = covariance_eigh(c, "gmm: covs (shared covariance)", singular=True)
            return evals[None].expand(K, d).clone(), evecs
        if c.ndim == 3 and c.shape == (K, d, d):
            pairs = [covariance_eigh(c[k], f"gmm: covs[{k}]", singular=True) for k in range(K)]
            evals = torch.stack([p[0] for p in pairs])
            evecs = torch.stack([p[1] for p in pairs])
            if all(torch.count_nonzero(c[k] - torch.diag(torch.diagonal(c[k]))) == 0 for k in range(K)):
                return torch.stack([torch.diagonal(c[k]) for k in range(K)]), None
            return evals, evecs
        raise ValueError(
            f"gmm: covs must be a scalar, ({K},), ({K}, {d}), ({d}, {d}) or ({K}, {d}, {d}); "
            f"got shape {tuple(c.shape)}"
        )

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return dict(self._init_params)

    def describe(self) -> dict[str, Any]:
        """Name, dimension and the mixture's specification (a preset's or the explicit one)."""
        return {"name": self.name, "dim": self.dim, **{k: v for k, v in self._spec.items() if v is not None}}
