"""Targets with exact samples but no closed-form diffused marginals.

They probe what Gaussian targets cannot: funnel geometry (varying scale), support on a
low-dimensional manifold, and heavy tails.  Only learned score estimators run on them.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from ..params import Interval
from .base import TARGETS, Target, check_count, check_points
from .gaussian import SEED, random_rotation

#: a positive finite number
POSITIVE = Interval(float, 0, None, closed="neither")


@TARGETS.register("funnel")
class Funnel(Target):
    """Neal's funnel (Neal 2003): ``v ~ N(0, scale^2)``, ``x_i | v ~ N(0, e^v)``, i = 2..d.

    The first coordinate is ``v``; default ``d = 10``, ``scale = 3``.
    """

    param_constraints: ClassVar[dict] = {"dim": Interval(int, 2, None), "scale": POSITIVE}

    def __init__(self, dim: int = 10, scale: float = 3.0) -> None:
        self.set_params_from(dim=dim, scale=scale)

    def sample(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
        check_count(n)
        z = torch.randn((n, self.dim), generator=generator, device=generator.device, dtype=torch.float64)
        v = self.scale * z[:, :1]
        return torch.cat([v, torch.exp(0.5 * v) * z[:, 1:]], 1).to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        check_points(x, self.dim)
        v, rest = x[:, 0], x[:, 1:]
        k = self.dim - 1
        lp_v = -0.5 * (v / self.scale) ** 2 - math.log(self.scale) - 0.5 * math.log(2 * math.pi)
        lp_x = -0.5 * (rest**2).sum(1) * torch.exp(-v) - 0.5 * k * v - 0.5 * k * math.log(2 * math.pi)
        return lp_v + lp_x

    def moments(self) -> tuple[Tensor, Tensor]:
        """Mean 0; ``Var v = scale^2`` and ``Var x_i = E e^v = exp(scale^2 / 2)``."""
        var = torch.full((self.dim,), math.exp(0.5 * self.scale**2), dtype=torch.float64)
        var[0] = self.scale**2
        return torch.zeros(self.dim, dtype=torch.float64), torch.diag(var)


@TARGETS.register("circle")
class Circle(Target):
    """Uniform law on a circle of radius ``radius`` embedded in ``R^dim``.

    The circle lies in the plane of the first two coordinates, or, with ``rotation_seed``,
    in a random 2-plane.  Its support is one-dimensional, so there is no density on
    ``R^dim`` (``log_prob`` is unavailable) and the true score blows up as ``t -> 0``.
    """

    has_log_prob = False

    param_constraints: ClassVar[dict] = {
        "dim": Interval(int, 2, None), "radius": POSITIVE, "rotation_seed": SEED,
    }

    def __init__(self, dim: int = 2, radius: float = 1.0, rotation_seed: int | None = None) -> None:
        self.set_params_from(dim=dim, radius=radius, rotation_seed=rotation_seed)
        self._frame = None if rotation_seed is None else random_rotation(self.dim, rotation_seed)[:, :2]

    def sample(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
        check_count(n)
        dev = generator.device
        theta = 2 * math.pi * torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
        plane = self.radius * torch.stack([torch.cos(theta), torch.sin(theta)], 1)
        if self._frame is None:
            x = torch.cat([plane, plane.new_zeros((n, self.dim - 2))], 1)
        else:
            x = plane @ self._frame.to(dev).T
        return x.to(dtype)

    def moments(self) -> tuple[Tensor, Tensor]:
        """Mean 0; covariance ``radius^2 / 2`` on the circle's plane."""
        frame = torch.eye(self.dim, dtype=torch.float64)[:, :2] if self._frame is None else self._frame
        return torch.zeros(self.dim, dtype=torch.float64), 0.5 * self.radius**2 * frame @ frame.T

    def log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError(
            "target 'circle' is supported on a 1-D curve and has no density on R^dim"
        )


@TARGETS.register("student_t")
class StudentT(Target):
    """Multivariate Student-t with ``df`` degrees of freedom and scale ``scale``: heavy tails.

    ``x = scale * z / sqrt(u / df)``, ``z ~ N(0, I)``, ``u ~ chi^2_df``.  ``df`` is a positive
    integer so that ``u`` is drawn exactly as a sum of squared normals from the given
    generator.  Moments of order ``>= df`` do not exist.
    """

    param_constraints: ClassVar[dict] = {
        "dim": Interval(int, 1, None), "df": Interval(int, 1, None), "scale": POSITIVE,
    }

    def __init__(self, dim: int = 2, df: int = 3, scale: float = 1.0) -> None:
        self.set_params_from(dim=dim, df=df, scale=scale)

    def sample(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
        check_count(n)
        dev = generator.device
        z = torch.randn((n, self.dim), generator=generator, device=dev, dtype=torch.float64)
        u = torch.randn((n, self.df), generator=generator, device=dev, dtype=torch.float64).pow(2).sum(1)
        return (self.scale * z / torch.sqrt(u / self.df)[:, None]).to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        check_points(x, self.dim)
        nu, d = float(self.df), self.dim
        r2 = (x / self.scale).pow(2).sum(1)
        const = (
            math.lgamma((nu + d) / 2) - math.lgamma(nu / 2)
            - 0.5 * d * math.log(nu * math.pi) - d * math.log(self.scale)
        )
        return const - 0.5 * (nu + d) * torch.log1p(r2 / nu)

    def moments(self) -> tuple[Tensor, Tensor]:
        """Mean 0 (df > 1); covariance ``df / (df - 2) scale^2 I`` (df > 2)."""
        if self.df <= 2:
            raise NotImplementedError(f"student_t with df={self.df} has no finite covariance (needs df > 2)")
        eye = torch.eye(self.dim, dtype=torch.float64)
        return torch.zeros(self.dim, dtype=torch.float64), self.df / (self.df - 2) * self.scale**2 * eye
