"""The ``convex`` estimator: one convex program per noise level, the recovered networks as a score.

Zhang & Pilanci, "Analyzing neural network-based generative diffusion models through convex
optimization" (arXiv 2402.01965); the formulation and the choices made here are in
docs/theory.md C.4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ...params import Interval, Options
from ..base import ESTIMATORS
from ..training import Budget, LearnedEstimator, LearnedScore, TrainingRecord, process_scales, training_samples
from .cones import cone_geometry
from .nonconvex import adam_objective
from .patterns import patterns_1d, sampled_patterns, stack_patterns
from .recovery import network_output, recover_networks
from .solvers import RHO_PER_BETA, SOLVERS, ConvexProgram, solve_admm, solve_fista

if TYPE_CHECKING:
    from ...processes import ForwardProcess
    from ...targets.base import Target


def noise_level_grid(process: ForwardProcess, t_lo: float, n_times: int) -> tuple[Tensor, Tensor]:
    """``n_times`` times in ``[t_lo, T]`` with ``log(sigma_t / alpha_t)`` evenly spaced; returns (times, log levels).

    One level (``n_times = 1``) sits at the middle of the log noise-level range.
    """
    lo = math.log(float(process.noise_level(t_lo)))
    hi = math.log(float(process.noise_level(process.T)))
    if n_times == 1:
        levels = torch.tensor([0.5 * (lo + hi)], dtype=torch.float64)
    else:
        levels = torch.linspace(lo, hi, n_times, dtype=torch.float64)
    times = process.t_from_noise_level(torch.exp(levels)).to(torch.float64)
    if n_times > 1:
        times[0], times[-1] = t_lo, process.T
    logs = torch.log(process.noise_level(times).to(torch.float64))
    return times, logs


@dataclass
class GaussianFit:
    """The Gaussian ``N(m, Sigma)`` with the training data's mean and covariance, and the input scaling.

    ``Sigma = Q diag(lam) Q^T``; ``var`` is the mean per-coordinate variance.  Under the forward
    process its law at time ``t`` is ``N(alpha_t m, alpha_t^2 Sigma + sigma_t^2 I)``.
    """

    mean: Tensor
    evals: Tensor
    evecs: Tensor
    var: float

    @classmethod
    def of(cls, x0: Tensor) -> GaussianFit:
        mean = x0.mean(dim=0)
        cov = torch.atleast_2d(torch.cov(x0.T, correction=0))
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp_min(0.0)
        return cls(mean, evals, evecs, float(evals.mean()))

    def scale(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        """``s_t = sqrt(alpha_t^2 v + sigma_t^2)``."""
        return torch.sqrt(alpha**2 * self.var + sigma**2)

    def normalise(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """``x^ = (x - alpha_t m) / s_t``, with ``alpha`` and ``sigma`` given per row of ``x``."""
        return (x - alpha[..., None] * self.mean.to(x)) / self.scale(alpha, sigma)[..., None]

    def score(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """``-(alpha_t^2 Sigma + sigma_t^2 I)^{-1} (x - alpha_t m)``: the Gaussian fit's score at time ``t``."""
        Q, lam = self.evecs.to(x), self.evals.to(x)
        y = (x - alpha[..., None] * self.mean.to(x)) @ Q
        return -(y / (alpha[..., None] ** 2 * lam + sigma[..., None] ** 2)) @ Q.T


class ConvexScoreFunction:
    r"""``(x, t) -> grad log p_t(x)`` from the per-level recovered networks (docs/theory.md C.4).

    ``x^ = (x - alpha_t m) / s_t``, ``s_t^2 = alpha_t^2 v + sigma_t^2``.  Level ``k``'s network
    ``eps^_k`` predicts the noise the Gaussian fit leaves; as a term of the normalised score it
    reads ``-(s_k / sigma_k) eps^_k(x^)``, and this term is interpolated linearly in
    ``log(sigma_t / alpha_t)`` between the neighbouring levels:
    ``s(x, t) = s_gauss(x, t) + sum_k w_k(t) (-(s_k / sigma_k) eps^_k(x^)) / s_t``, which at a
    level's own time is ``s_gauss - eps^_k(x^) / sigma_t``.  ``program`` and ``solution`` keep the
    fitted convex programs (all levels) for inspection.
    """

    def __init__(
        self, process: ForwardProcess, log_levels: Tensor, gains: Tensor, A: Tensor, C: Tensor, gaussian: GaussianFit,
        program: ConvexProgram, solution: Tensor,
    ) -> None:
        self.process = process
        self.log_levels, self.gains = log_levels, gains
        self.A, self.C = A, C
        self.gaussian = gaussian
        self.program, self.solution = program, solution

    def correction(self, xh: Tensor, t: Tensor) -> Tensor:
        """Interpolated network term of the normalised score, ``-(s_k / sigma_k) eps^_k(x^)`` (one Python step per
        level used, none per row)."""
        K = self.log_levels.shape[0]
        A, C, gains = self.A.to(xh), self.C.to(xh), self.gains.to(xh)
        if K == 1:
            return -gains[0] * network_output(A[0], C[0], xh)
        alpha, sigma = process_scales(self.process, t)
        ell = torch.log(sigma / alpha)
        grid = self.log_levels.to(ell)
        lo = (torch.searchsorted(grid, ell, right=True) - 1).clamp(0, K - 2)
        w = ((ell - grid[lo]) / (grid[lo + 1] - grid[lo])).clamp(0.0, 1.0)
        out = torch.zeros_like(xh)
        zero = torch.zeros_like(w)
        for k in torch.unique(torch.cat([lo, lo + 1])).tolist():
            weight = torch.where(lo == k, 1.0 - w, zero) + torch.where(lo + 1 == k, w, zero)
            rows = torch.nonzero(weight > 0).flatten()
            if rows.numel():
                out[rows] -= (gains[k] * weight[rows])[:, None] * network_output(A[k], C[k], xh[rows])
        return out

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = process_scales(self.process, t)
        xh = self.gaussian.normalise(x, alpha, sigma)
        network = self.correction(xh, t) / self.gaussian.scale(alpha, sigma)[:, None]
        return self.gaussian.score(x, alpha, sigma) + network


#: a positive, finite number
_POSITIVE = Interval(float, 0, None, closed="neither")


@ESTIMATORS.register("convex")
class ConvexReLU(LearnedEstimator):
    r"""Two-layer ReLU score network fitted as a convex program per noise level (Zhang & Pilanci 2024).

    Parameters
    ----------
    beta
        Weight decay ``> 0``; level ``k`` uses ``beta s_k / sigma_k`` (docs/theory.md C.4).
    n_train
        Training sample size (``>= 2``; the 1-D program has ``2 n_train - 1`` patterns).
    n_times
        Number of noise levels, evenly spaced in ``log(sigma_t / alpha_t)`` on ``[t_min, T]``.
    n_patterns
        Number of random directions that sample activation patterns when ``d >= 2`` (1-D
        data use the exact enumeration and ignore it).
    iterations
        Iteration budget of the solver (all levels advance together).
    tol
        Relative stopping tolerance of each level (docs/theory.md C.5).
    seconds
        Optional wall-clock cap.
    t_min
        Smallest time of the level grid (default: the process's ``t_min``; must be ``> 0``).
    solver
        ``admm`` (default) or ``fista``.
    rho
        ADMM penalty (default ``10 beta_k`` at level ``k``).
    adam_iterations
        If given, also train the same two-layer network on each level's data and weight decay by
        Adam from a random start for this many steps (:mod:`.nonconvex`) and record its final
        objective beside the convex optimum (the score still comes from the convex solution).
    adam_lr
        Initial Adam step size (cosine-annealed to zero).
    adam_width
        Width of the Adam-trained network; ``None``: ``2 P d``, one neuron per group of the
        program, enough to represent any of its solutions.

    ``record.extra`` holds the level times, the number of patterns and active neurons per
    level, the final convex objective, constraint violation and residuals per level, and
    ``width`` (the largest number of active neurons at one level); with ``adam_iterations``, also
    ``adam_objective`` (the Adam-trained network's final objective per level), ``adam_gap``
    (``(J_Adam - J_convex) / J_convex`` per level), ``adam_curve`` and ``adam_width``.

    Its :attr:`test_params` (and ``--quick``, which caps :attr:`budget_params` at them) are 100
    solver iterations, 100 training points and 32 pattern directions (the cost of an iteration
    grows with patterns x points).
    """


    param_constraints: ClassVar[dict] = {
        "beta": _POSITIVE, "n_train": Interval(int, 2, None), "n_times": Interval(int, 1, None),
        "n_patterns": Interval(int, 1, None), "iterations": Interval(int, 1, None), "tol": _POSITIVE,
        "seconds": [_POSITIVE, None], "t_min": [_POSITIVE, None], "solver": Options(SOLVERS), "rho": [_POSITIVE, None],
        "adam_iterations": [Interval(int, 1, None), None], "adam_lr": _POSITIVE,
        "adam_width": [Interval(int, 1, None), None],
    }
    test_params: ClassVar[dict] = {"iterations": 100, "n_train": 100, "n_patterns": 32}
    budget_params: ClassVar[tuple[str, ...]] = ("iterations", "n_train", "n_patterns")

    def __init__(
        self, beta: float = 1e-2, n_train: int = 200, n_times: int = 8, n_patterns: int = 128,
        iterations: int = 1000, tol: float = 1e-4, seconds: float | None = None, t_min: float | None = None,
        solver: str = "admm", rho: float | None = None, adam_iterations: int | None = None, adam_lr: float = 3e-2,
        adam_width: int | None = None,
    ) -> None:
        self.set_params_from(beta=beta, n_train=n_train, n_times=n_times, n_patterns=n_patterns,
                             iterations=iterations, tol=tol, seconds=seconds, t_min=t_min, solver=solver, rho=rho,
                             adam_iterations=adam_iterations, adam_lr=adam_lr, adam_width=adam_width)

    def _grid_start(self, process: ForwardProcess) -> float:
        t_lo = process.t_min if self.t_min is None else self.t_min
        if not process.t_min <= t_lo < process.T:
            raise ValueError(
                f"convex: t_min = {t_lo} must lie in [t_min, T) = [{process.t_min}, {process.T}) of process "
                f"{process.name!r}"
            )
        if t_lo <= 0:
            raise ValueError(f"convex: process {process.name!r} has t_min = 0; give the estimator a t_min > 0")
        return t_lo

    def build_program(
        self, x0: Tensor, process: ForwardProcess, generator: torch.Generator
    ) -> tuple[ConvexProgram, Tensor, Tensor, Tensor, GaussianFit]:
        """The batched program for training points ``x0``: ``(program, times, log levels, s_k / sigma_k, fit)``."""
        n, d = x0.shape
        gaussian = GaussianFit.of(x0)
        if not (math.isfinite(gaussian.var) and gaussian.var > 0):
            raise ValueError(f"convex: the training data must have positive finite variance, got {gaussian.var}")
        times, logs = noise_level_grid(process, self._grid_start(process), self.n_times)
        alpha, sigma = process_scales(process, times.to(x0.device))
        K = times.shape[0]
        z = torch.randn((K, n, d), generator=generator, device=x0.device, dtype=x0.dtype)
        xt = alpha[:, None, None] * x0 + sigma[:, None, None] * z
        alpha_rows, sigma_rows = alpha[:, None].expand(K, n), sigma[:, None].expand(K, n)
        xh = gaussian.normalise(xt, alpha_rows, sigma_rows)
        X = torch.cat([xh, torch.ones_like(xh[..., :1])], dim=2)
        if d == 1:
            patterns = [patterns_1d(xh[k, :, 0]) for k in range(K)]
        else:
            patterns = [sampled_patterns(X[k], self.n_patterns, generator) for k in range(K)]
        # targets: the part of the noise that the Gaussian fit's noise prediction -sigma s_gauss leaves
        y = z + sigma[:, None, None] * gaussian.score(xt, alpha_rows, sigma_rows)
        ratio = sigma / gaussian.scale(alpha, sigma)  # sigma_k / s_k
        program = ConvexProgram(X, stack_patterns(patterns, x0.dtype), y, self.beta / ratio, cone_geometry(X, patterns))
        return program, times, logs, 1.0 / ratio, gaussian

    def _fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord
    ) -> LearnedScore:
        x0 = training_samples(data, self.n_train, generator, dtype=torch.float64)
        if self.solver == "fista" and x0.shape[1] > 2:
            raise ValueError("convex: solver 'fista' needs exact cone projections, available for d <= 2; use 'admm'")
        program, times, logs, gains, gaussian = self.build_program(x0, process, generator)
        budget = Budget(self.iterations, self.seconds)
        rho = self.rho if self.rho is not None else RHO_PER_BETA * program.beta
        if self.solver == "admm":
            V, info = solve_admm(program, budget, self.tol, rho, record)
        else:
            V, info = solve_fista(program, budget, self.tol, generator, record)
        A, C, active = recover_networks(V)
        fn = ConvexScoreFunction(process, logs.to(x0.device), gains, A, C, gaussian, program, V)
        record.extra = {
            "formulation": "per-output-coordinate groups, bias penalised",
            "solver": self.solver,
            "rho": torch.as_tensor(rho).expand(program.X.shape[0]).tolist() if self.solver == "admm" else None,
            "exact_cone_projection": program.cones is not None,
            "beta": self.beta, "beta_per_level": program.beta.tolist(),
            "times": times.tolist(), "log_noise_levels": logs.tolist(),
            "n_patterns": [int(v) for v in program.D.any(dim=2).sum(dim=1).tolist()],
            "active_neurons": active, "width": max(active),
            "objective": info.objective.tolist(), "max_violation": info.violation.tolist(),
            "primal_residual": info.primal_residual.tolist(), "dual_residual": info.dual_residual.tolist(),
            "converged": info.converged.tolist(),
        }
        if self.adam_iterations is not None:
            record.extra.update(self._adam_comparison(program, info.objective, generator))
        return LearnedScore(x0.shape[1], process, fn, record, dtype=torch.float64)

    def _adam_comparison(self, program: ConvexProgram, convex: Tensor, generator: torch.Generator) -> dict:
        """Adam on each level's nonconvex objective: final objectives, relative gaps to the convex ones, curves."""
        K, _, _, P, d = program.shape
        width = 2 * P * d if self.adam_width is None else self.adam_width
        finals, gaps, curves = [], [], []
        for k in range(K):
            final, curve = adam_objective(program.X[k], program.Y[k], float(program.beta[k]), width,
                                          self.adam_iterations, self.adam_lr, generator)
            finals.append(final)
            gaps.append((final - float(convex[k])) / float(convex[k]))
            curves.append(curve)
        return {"adam_width": width, "adam_objective": finals, "adam_gap": gaps, "adam_curve": curves}
