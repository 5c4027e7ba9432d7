"""The target-distribution contract.

A target carries its own ground truth, as Inference Gym's targets do: exact samples,
its log-density where known and, for Gaussian and Gaussian-mixture targets, the exact law
of every diffused marginal ``p_t`` (:meth:`Target.marginal`), from which the exact score
``grad log p_t`` follows.  Targets without closed-form marginals only offer samples; only
learned estimators run on them.

What a target provides is declared, never inferred from its class: :attr:`Target.has_marginals`
(closed-form marginals, hence exact scores), :attr:`Target.has_log_prob`, :meth:`Target.moments`
(raises ``NotImplementedError`` where unknown) and :meth:`Target.gaussian_law` (the exact law when
the target is one Gaussian, else ``None``).  Suite validation, the runner and the exact-law
computations read only these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..params import Parameterised
from ..registry import Registry
from ..validation import is_int_at_least

if TYPE_CHECKING:
    from ..exact import GaussianLaw
    from ..processes import ForwardProcess, Time

TARGETS: Registry[Target] = Registry("target", "scorebench.targets")


def check_points(x: Tensor, dim: int, what: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating tensor of shape ``(n, dim)``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{what} must be a torch.Tensor of shape (n, {dim}), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got {x.dtype}")


def check_count(n: Any, what: str = "n") -> int:
    if not is_int_at_least(n, 1):
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    return n


class Target(Parameterised, ABC):
    """A distribution on ``R^dim`` that knows its own ground truth."""

    registered_name: ClassVar[str] = ""
    #: ``log_prob`` is available (exactly, normalised)
    has_log_prob: ClassVar[bool] = True
    #: ``marginal(process, t)`` is available in closed form (so is the exact score of p_t)
    has_marginals: ClassVar[bool] = False

    dim: int

    @property
    def name(self) -> str:
        return self.registered_name or type(self).__name__.lower()

    @abstractmethod
    def sample(
        self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """``n`` exact draws, shape ``(n, dim)``, on ``generator.device``."""

    def log_prob(self, x: Tensor) -> Tensor:
        """Normalised log-density at each row of ``x``; shape ``(n,)``."""
        raise NotImplementedError(f"target {self.name!r} has no closed-form log-density")

    def score(self, x: Tensor) -> Tensor:
        """``grad log p(x)`` of the data law (autograd of :meth:`log_prob` unless overridden)."""
        check_points(x, self.dim)
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_prob(xr).sum(), xr)
        return grad

    def moments(self) -> tuple[Tensor, Tensor]:
        """Exact ``(mean, covariance)`` in float64, where they exist and are known."""
        raise NotImplementedError(f"target {self.name!r} has no known finite mean and covariance")

    def gaussian_law(self) -> GaussianLaw | None:
        """The target's exact law ``N(mean, cov)`` (float64) when it is a single Gaussian, else
        ``None`` (the default: a target is not known to be Gaussian unless it says so).

        Exact-law metrics need it, of the target and of its marginals (:meth:`marginal`), and
        suite validation refuses them on a target whose ``gaussian_law()`` is ``None``.
        """
        return None

    def mode_weights(self) -> Tensor | None:
        """The weights ``pi_k`` (``(K,)`` float64, summing to 1) of the target's modes when it is a
        mixture of at least two components, else ``None`` (the default).

        Mode metrics (:mod:`scorebench.metrics.modes`) need it together with
        :meth:`mode_log_posterior`, and suite validation refuses them on a target whose
        ``mode_weights()`` is ``None``.
        """
        return None

    def mode_log_posterior(self, x: Tensor) -> Tensor:
        """``(n, K)`` float64 log posterior ``log P(mode = k | x)`` of each row of ``x`` (where
        :meth:`mode_weights` is not ``None``)."""
        raise NotImplementedError(f"target {self.name!r} is not a mixture of modes")

    def marginal(self, process: ForwardProcess, t: Time) -> Target:
        """The exact law of ``X_t = alpha_t X_0 + sigma_t Z`` as a target (only where
        :attr:`has_marginals`: Gaussian and Gaussian-mixture targets); it samples, has an exact
        score and, for a Gaussian target, a :meth:`gaussian_law`."""
        raise NotImplementedError(
            f"target {self.name!r} has no closed-form diffused marginals; "
            "use a learned score estimator with it (oracle scores need gaussian, "
            "gaussian_unknown_mean or gmm)"
        )

    def describe(self) -> dict[str, Any]:
        """Parameters that identify this target (written to result provenance): its name, its
        dimension and its declared parameters."""
        return {"name": self.name, "dim": self.dim, **self.get_params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


def exact_score_targets() -> list[str]:
    """Registered targets (plugins included) that declare closed-form marginals
    (:attr:`Target.has_marginals`), hence exact scores."""
    return [n for n in TARGETS.names() if getattr(TARGETS.factory(n), "has_marginals", False)]


#: every component this registry builds, plugins included, must be one
TARGETS.base = Target
