r"""Forward noising processes and reverse-time grids.

Every process is a linear SDE  ``dX = f(t) X dt + g(t) dW``  on ``[0, T]``, so that
``X_t | X_0 ~ N(alpha_t X_0, sigma_t^2 I)`` with

    alpha_t = exp(int_0^t f),      sigma_t^2 = alpha_t^2 int_0^t g(u)^2 / alpha_u^2 du

(docs/theory.md §0.2, F.1).  Reverse samplers run from ``T`` down to ``t_min`` and need, besides
``f`` and ``g``, the exact solution of the linear part over a step (exponential integrator)
and the forward transition between two times; both follow from ``alpha`` and
``sigma`` in closed form and are provided here so that every sampler works with every
process.

Processes (Song et al. 2021, ``score_sde/sde_lib.py``):

* ``vp``: ``beta(t) = beta_min + t (beta_max - beta_min)``, ``f = -beta/2``, ``g^2 = beta``.
* ``ou``: the theory papers' ``dX = -X dt + sqrt(2) dW`` (VP with ``beta = 2``).
* ``ve``: ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, ``f = 0``,
  ``g^2 = d sigma(t)^2 / dt``.  The conditional variance is the exact
  ``sigma(t)^2 - sigma_min^2`` (score_sde uses ``sigma(t)^2``, which assumes the data were
  already blurred by ``sigma_min``); the two differ by ``sigma_min^2 = 1e-4``.
* ``subvp``: ``f = -beta/2``, ``g^2 = beta (1 - exp(-2 int_0^t beta))``, so that
  ``sigma_t = 1 - alpha_t^2`` (the standard deviation, not its square root).

Times are floats or float64 tensors; every coefficient is computed in float64.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from .params import Interval, Parameterised, param_error
from .registry import Registry

Time = float | Tensor

PROCESSES: Registry[ForwardProcess] = Registry("process", "scorebench.processes")
#: coefficient values a process keeps (:meth:`ForwardProcess.scalars`); the cache restarts beyond
SCALAR_CACHE_SIZE = 1 << 16


def _as_time(t: Time) -> Tensor:
    if isinstance(t, Tensor):
        return t.to(torch.float64)
    return torch.tensor(float(t), dtype=torch.float64)


#: a positive finite number (a process's horizon and rate parameters)
POSITIVE = Interval(float, 0, None, closed="neither")


class ForwardProcess(Parameterised, ABC):
    """A linear forward SDE ``dX = f(t) X dt + g(t) dW`` on ``[0, T]``.

    Subclasses define ``log_alpha``, ``sigma2``, ``f``, ``g2`` and ``G`` (the integral
    ``int_0^t g(u)^2 / alpha_u du`` used by the exponential integrator); everything else
    derives from them.
    """

    registered_name: ClassVar[str] = ""
    #: standard deviation of the prior ``N(0, prior_std^2 I)`` from which samplers start
    prior_std: float = 1.0
    param_constraints: ClassVar[dict] = {"T": POSITIVE, "t_min": Interval(float, 0, None)}

    def __init__(self, T: float, t_min: float) -> None:
        self.set_params_from(T=T, t_min=t_min)
        if not self.t_min < self.T:
            raise param_error(self.name, "t_min", f"below T = {self.T}", t_min)

    @property
    def name(self) -> str:
        return self.registered_name or type(self).__name__.lower()

    # -- the defining coefficients ------------------------------------------------------
    @abstractmethod
    def log_alpha(self, t: Time) -> Tensor:
        """``log alpha_t = int_0^t f``."""

    @abstractmethod
    def sigma2(self, t: Time) -> Tensor:
        """Conditional variance ``sigma_t^2`` of ``X_t | X_0`` (per coordinate)."""

    @abstractmethod
    def f(self, t: Time) -> Tensor:
        """Drift coefficient: ``drift(x, t) = f(t) x``."""

    @abstractmethod
    def g2(self, t: Time) -> Tensor:
        """Squared diffusion coefficient ``g(t)^2``."""

    @abstractmethod
    def G(self, t: Time) -> Tensor:
        """``int_0^t g(u)^2 / alpha_u du`` (closed form)."""

    # -- derived quantities -------------------------------------------------------------
    def alpha(self, t: Time) -> Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: Time) -> Tensor:
        return torch.sqrt(self.sigma2(t))

    def diffusion(self, t: Time) -> Tensor:
        return torch.sqrt(self.g2(t))

    def drift(self, x: Tensor, t: Time) -> Tensor:
        return self.f(t).to(x.dtype) * x

    def noise_level(self, t: Time) -> Tensor:
        """EDM noise level ``sigma_t / alpha_t`` (the equivalent VE standard deviation)."""
        return self.sigma(t) / self.alpha(t)

    def t_from_noise_level(self, level: Tensor | float) -> Tensor:
        """Inverse of :meth:`noise_level` on ``[0, T]`` by bisection (it is increasing)."""
        target = _as_time(level)
        lo = torch.zeros_like(target)
        hi = torch.full_like(target, self.T)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            below = self.noise_level(mid) < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def check_time(self, t: Time, what: str = "t") -> None:
        """Raise ``ValueError`` unless every time lies in ``[t_min, T]``."""
        tt = _as_time(t)
        tol = 1e-9 * max(1.0, self.T)
        if not torch.isfinite(tt).all() or (tt < self.t_min - tol).any() or (tt > self.T + tol).any():
            raise ValueError(
                f"{what}={tt.tolist()} is outside [t_min, T] = [{self.t_min}, {self.T}] "
                f"of process {self.name!r}"
            )

    def scalars(self, method: str, *times: float) -> tuple[float, ...]:
        """``getattr(self, method)(*times)`` as Python floats (a tuple, also for one value), computed
        once per method and times and then cached: a sampler's per-step coefficients cost a dict
        look-up after the first run over a grid.  For methods of float times only (``f``, ``g2``,
        ``alpha``, ``sigma2``, ``transition``, ``exponential_integrator``, ...)."""
        key = (method, *times)
        cache = self.__dict__.setdefault("_scalar_cache", {})
        hit = cache.get(key)
        if hit is None:
            value = getattr(self, method)(*times)
            hit = tuple(float(v) for v in value) if isinstance(value, tuple) else (float(value),)
            if len(cache) >= SCALAR_CACHE_SIZE:
                cache.clear()
            cache[key] = hit
        return hit

    def check_scalar_time(self, t: float) -> None:
        """:meth:`check_time` for one Python number, without building a tensor (a score call's check)."""
        tol = 1e-9 * max(1.0, self.T)
        if not (self.t_min - tol <= t <= self.T + tol):  # also False for NaN
            self.check_time(float(t))

    def transition(self, s: Time, t: Time) -> tuple[Tensor, Tensor]:
        """Forward transition ``X_t = a X_s + b Z`` for ``s <= t``; returns ``(a, b^2)``.

        ``a = alpha_t / alpha_s`` and ``b^2 = sigma_t^2 - a^2 sigma_s^2
        = alpha_t^2 (lambda_t - lambda_s)`` with ``lambda = sigma^2 / alpha^2``.
        """
        a = torch.exp(self.log_alpha(t) - self.log_alpha(s))
        lam_t = self.sigma2(t) * torch.exp(-2 * self.log_alpha(t))
        lam_s = self.sigma2(s) * torch.exp(-2 * self.log_alpha(s))
        b2 = torch.exp(2 * self.log_alpha(t)) * (lam_t - lam_s)
        return a, b2

    def exponential_integrator(self, t: Time, s: Time) -> tuple[Tensor, Tensor, Tensor]:
        r"""Exact solution of the reverse SDE from ``t`` down to ``s < t`` with the score frozen.

        With ``dY = [f Y - g^2 score] dt + g dW`` run backwards and ``score`` held at its value
        at ``t``,  ``Y_s = A Y_t + c score + sqrt(q) Z``  where

            A = alpha_s / alpha_t,   c = alpha_s (G(t) - G(s)),   q = alpha_s^2 (lambda_t - lambda_s).

        For OU this is Bruno et al.'s (B2): ``A = e^h, c = 2(e^h - 1), q = e^{2h} - 1``.
        """
        la_s, la_t = self.log_alpha(s), self.log_alpha(t)
        A = torch.exp(la_s - la_t)
        c = torch.exp(la_s) * (self.G(t) - self.G(s))
        lam_t = self.sigma2(t) * torch.exp(-2 * la_t)
        lam_s = self.sigma2(s) * torch.exp(-2 * la_s)
        q = torch.exp(2 * la_s) * (lam_t - lam_s)
        return A, c, q

    def prior_sample(
        self,
        n: int,
        dim: int,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``n`` draws from the prior ``N(0, prior_std^2 I_dim)`` on the generator's device."""
        z = torch.randn((n, dim), generator=generator, device=generator.device, dtype=dtype)
        return self.prior_std * z


@PROCESSES.register("vp")
class VP(ForwardProcess):
    """Variance-preserving SDE, ``dX = -beta(t)/2 X dt + sqrt(beta(t)) dW`` (Song et al. 2021).

    ``beta`` is linear from ``beta_min`` to ``beta_max`` over ``[0, T]`` (score_sde's
    defaults 0.1 and 20 with ``T = 1``).
    """

    param_constraints: ClassVar[dict] = {**ForwardProcess.param_constraints, "beta_min": POSITIVE, "beta_max": POSITIVE}

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, t_min: float = 1e-3
    ) -> None:
        super().__init__(T, t_min)
        self.set_params_from(beta_min=beta_min, beta_max=beta_max)
        if not self.beta_max >= self.beta_min:
            raise param_error(self.name, "beta_max", f">= beta_min = {self.beta_min}", beta_max)

    def beta(self, t: Time) -> Tensor:
        t = _as_time(t)
        return self.beta_min + t * (self.beta_max - self.beta_min) / self.T

    def B(self, t: Time) -> Tensor:
        """``int_0^t beta``."""
        t = _as_time(t)
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min) / self.T

    def log_alpha(self, t: Time) -> Tensor:
        return -0.5 * self.B(t)

    def sigma2(self, t: Time) -> Tensor:
        return -torch.expm1(-self.B(t))

    def f(self, t: Time) -> Tensor:
        return -0.5 * self.beta(t)

    def g2(self, t: Time) -> Tensor:
        return self.beta(t)

    def G(self, t: Time) -> Tensor:
        return 2.0 * torch.expm1(0.5 * self.B(t))


@PROCESSES.register("ou")
class OU(VP):
    """Ornstein--Uhlenbeck process ``dX = -X dt + sqrt(2) dW`` of the theory papers.

    ``alpha_t = e^{-t}``, ``sigma_t^2 = 1 - e^{-2t}``, stationary law ``N(0, I)``
    (Bruno et al. 2023; Pedrotti, Maas, Mondelli 2024).  It is VP with ``beta = 2``.
    """

    param_constraints: ClassVar[dict] = ForwardProcess.param_constraints

    def __init__(self, T: float = 5.0, t_min: float = 1e-3) -> None:
        super().__init__(beta_min=2.0, beta_max=2.0, T=T, t_min=t_min)


@PROCESSES.register("subvp")
class SubVP(VP):
    """Sub-VP SDE of Song et al. 2021: ``g^2 = beta (1 - e^{-2 B(t)})``, ``sigma_t = 1 - alpha_t^2``."""

    def sigma2(self, t: Time) -> Tensor:
        return torch.expm1(-self.B(t)) ** 2

    def g2(self, t: Time) -> Tensor:
        return -self.beta(t) * torch.expm1(-2.0 * self.B(t))

    def G(self, t: Time) -> Tensor:
        # int beta/alpha - int beta alpha^3 = 2(e^{B/2} - 1) - (2/3)(1 - e^{-3B/2})
        B = self.B(t)
        return 2.0 * torch.expm1(0.5 * B) + (2.0 / 3.0) * torch.expm1(-1.5 * B)


@PROCESSES.register("ve")
class VE(ForwardProcess):
    """Variance-exploding SDE, ``sigma(t) = sigma_min (sigma_max / sigma_min)^{t/T}`` (Song et al. 2021).

    ``f = 0``, ``g^2 = d sigma(t)^2 / dt``; conditional variance ``sigma(t)^2 - sigma_min^2``;
    prior ``N(0, sigma_max^2 I)``.
    """

    param_constraints: ClassVar[dict] = {
        **ForwardProcess.param_constraints, "sigma_min": POSITIVE, "sigma_max": POSITIVE,
    }

    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0, t_min: float = 1e-5
    ) -> None:
        super().__init__(T, t_min)
        self.set_params_from(sigma_min=sigma_min, sigma_max=sigma_max)
        if not self.sigma_min < self.sigma_max:
            raise param_error(self.name, "sigma_max", f"above sigma_min = {self.sigma_min}", sigma_max)
        self.prior_std = float(sigma_max)
        self._log_ratio = math.log(sigma_max / sigma_min)

    def _sig_fun2(self, t: Time) -> Tensor:
        """``sigma(t)^2 = sigma_min^2 (sigma_max/sigma_min)^{2t/T}``."""
        return self.sigma_min**2 * torch.exp(2.0 * self._log_ratio * _as_time(t) / self.T)

    def log_alpha(self, t: Time) -> Tensor:
        return 0.0 * _as_time(t)

    def sigma2(self, t: Time) -> Tensor:
        return self.sigma_min**2 * torch.expm1(2.0 * self._log_ratio * _as_time(t) / self.T)

    def f(self, t: Time) -> Tensor:
        return 0.0 * _as_time(t)

    def g2(self, t: Time) -> Tensor:
        return 2.0 * self._log_ratio / self.T * self._sig_fun2(t)

    def G(self, t: Time) -> Tensor:
        return self.sigma2(t)


# ---------------------------------------------------------------------------------------
# Reverse-time grids
# ---------------------------------------------------------------------------------------

GRID_KINDS = ("uniform", "quadratic", "karras", "log")


def time_grid(
    process: ForwardProcess, steps: int, kind: str = "uniform", rho: float = 7.0
) -> Tensor:
    """Decreasing float64 times ``T = t_0 > t_1 > ... > t_steps = t_min``.

    kind
        ``uniform``: equal steps in t.  ``quadratic``: ``t_i = t_min + (T - t_min)(1 - i/N)^2``,
        dense near ``t_min`` (the DDIM "quadratic" schedule).  ``karras``: the EDM schedule
        (Karras et al. 2022) in noise level ``sigma_t/alpha_t``,
        ``s_i = (s_max^{1/rho} + i/N (s_min^{1/rho} - s_max^{1/rho}))^rho``, mapped back to t.
        ``log``: geometric spacing in t (needs ``t_min > 0``).
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    if kind not in GRID_KINDS:
        raise ValueError(f"unknown time grid {kind!r}; allowed: {', '.join(GRID_KINDS)}")
    T, t_min = process.T, process.t_min
    u = torch.arange(steps + 1, dtype=torch.float64) / steps
    if kind == "uniform":
        grid = T + u * (t_min - T)
    elif kind == "quadratic":
        grid = t_min + (T - t_min) * (1.0 - u) ** 2
    elif kind == "log":
        if t_min <= 0:
            raise ValueError("the 'log' time grid needs t_min > 0")
        grid = torch.exp(math.log(T) + u * (math.log(t_min) - math.log(T)))
    else:
        if not rho > 0:
            raise ValueError(f"karras grid: rho must be positive, got {rho}")
        if t_min <= 0:
            raise ValueError("the 'karras' time grid needs t_min > 0 (its noise level vanishes at t = 0)")
        s_hi = float(process.noise_level(T))
        s_lo = float(process.noise_level(t_min))
        levels = (s_hi ** (1 / rho) + u * (s_lo ** (1 / rho) - s_hi ** (1 / rho))) ** rho
        grid = process.t_from_noise_level(levels)
    grid[0], grid[-1] = T, t_min
    return grid


def check_grid(process: ForwardProcess, grid: Tensor) -> Tensor:
    """Validate a user-given grid: 1-D, at least two times, strictly decreasing, in range."""
    grid = torch.as_tensor(grid, dtype=torch.float64).cpu()
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(
            f"time grid must be a 1-D sequence of at least 2 times, got shape {tuple(grid.shape)}"
        )
    process.check_time(grid, "time grid")
    if not (grid[1:] < grid[:-1]).all():
        raise ValueError("time grid must be strictly decreasing (from T down to t_min)")
    return grid


#: every component this registry builds, plugins included, must be one
PROCESSES.base = ForwardProcess
