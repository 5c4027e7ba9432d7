"""The batched convex program (docs/theory.md (C3)) and its solvers ``admm`` and ``fista`` (docs/theory.md C.5).

``K`` independent programs, one per noise level, are solved together: every step is batched over
levels, patterns, samples and outputs, and the Python loop runs over iterations only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..training import Budget, TrainingRecord, check_finite_loss
from .cones import ConeGeometry, project_onto_cones

SOLVERS = ("admm", "fista")

#: default ADMM penalty in units of beta
RHO_PER_BETA = 10.0
#: ADMM over-relaxation
_RELAXATION = 1.6
#: safety factor on the power-iteration estimate of the data-fit Lipschitz constant (fista)
_LIPSCHITZ_SAFETY = 1.1
#: iterations between host synchronisations (stopping checks, finite-loss checks)
_CHECK_EVERY = 10


@dataclass
class ConvexProgram:
    r"""``K`` independent convex ReLU programs (docs/theory.md (C3)), one per noise level, batched.

    ``X``: ``(K, n, p)`` inputs with the bias column last; ``D``: ``(K, P, n)`` 0/1 patterns;
    ``Y``: ``(K, n, d)`` targets; ``cones``: the cones' facets and rays (``None`` when not enumerated).
    Variables ``V`` have shape ``(K, 2, P, p, d)``: ``V[:, 0]`` are the ``u`` groups,
    ``V[:, 1]`` the ``w`` groups, one group per ``(pattern, output)`` (a vector in ``R^p``).
    The objective of level ``k`` is

        F_k(V) = (1/2n) || sum_i D_i X~ (u_i - w_i) - Y ||_F^2 + beta sum_groups ||v||_2

    subject to ``(2 D_i - I) X~ v >= 0`` for every group ``v`` of pattern ``i``.
    """

    X: Tensor
    D: Tensor
    Y: Tensor
    beta: Tensor | float
    cones: ConeGeometry | None = None

    def __post_init__(self) -> None:
        self.beta = torch.as_tensor(self.beta, dtype=self.X.dtype, device=self.X.device).expand(self.X.shape[0])

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(K, n, p, P, d)``."""
        K, n, p = self.X.shape
        return K, n, p, self.D.shape[1], self.Y.shape[2]

    def zeros(self) -> Tensor:
        K, _, p, P, d = self.shape
        return torch.zeros((K, 2, P, p, d), dtype=self.X.dtype, device=self.X.device)

    def preactivations(self, V: Tensor) -> Tensor:
        """``X~ v`` for every group: ``(K, 2, P, n, d)``."""
        K, _, p, P, d = self.shape
        flat = torch.bmm(self.X, V.permute(0, 3, 1, 2, 4).reshape(K, p, 2 * P * d))  # (K, n, 2 P d)
        return flat.view(K, -1, 2, P, d).permute(0, 2, 3, 1, 4)

    def fitted(self, V: Tensor) -> Tensor:
        """``M V = sum_i D_i X~ (u_i - w_i)``: ``(K, n, d)``."""
        K, n, p, P, d = self.shape
        mixed = torch.bmm(self.D.transpose(1, 2), (V[:, 0] - V[:, 1]).reshape(K, P, p * d))  # (K, n, p d)
        return (self.X[:, :, :, None] * mixed.view(K, n, p, d)).sum(dim=2)

    def fitted_adjoint(self, E: Tensor) -> Tensor:
        """``M^T E`` for ``E`` of shape ``(K, n, d)``: ``(K, 2, P, p, d)`` (``+`` for ``u``, ``-`` for ``w``)."""
        K, n, p, P, d = self.shape
        half = torch.bmm(self.D, (self.X[:, :, :, None] * E[:, :, None, :]).reshape(K, n, p * d)).view(K, P, p, d)
        return torch.stack([half, -half], dim=1)

    def signs(self) -> Tensor:
        """``2 D - I`` broadcast against pre-activations: ``(K, 1, P, n, 1)``."""
        return (2.0 * self.D - 1.0)[:, None, :, :, None]

    def objective(self, V: Tensor) -> Tensor:
        """``F_k(V)`` for each level, shape ``(K,)`` (constraints not included)."""
        n = self.X.shape[1]
        R = self.fitted(V) - self.Y
        return R.pow(2).sum(dim=(1, 2)) / (2 * n) + self.beta * V.norm(dim=3).sum(dim=(1, 2, 3))

    def violation(self, V: Tensor) -> Tensor:
        """Largest cone-constraint violation ``max (-(2D - I) X~ v)_+`` per level (all ``n`` rows), ``(K,)``."""
        C = self.signs() * self.preactivations(V)
        return (-C).clamp_min(0).amax(dim=(1, 2, 3, 4))

    def fit_lipschitz(self, generator: torch.Generator, iterations: int = 200) -> Tensor:
        """Largest curvature of the data-fit term in ``V``, per level: ``||M||^2 / n`` (power iteration)."""
        v = torch.randn(self.zeros().shape, generator=generator, device=self.X.device, dtype=self.X.dtype)
        lam = torch.zeros(self.X.shape[0], dtype=self.X.dtype, device=self.X.device)
        for _ in range(iterations):
            v = v / v.flatten(1).norm(dim=1).clamp_min(torch.finfo(v.dtype).tiny).view(-1, 1, 1, 1, 1)
            v = self.fitted_adjoint(self.fitted(v))
            lam = v.flatten(1).norm(dim=1)
        return lam / self.X.shape[1]


def group_soft_threshold(V: Tensor, threshold: Tensor) -> Tensor:
    """Proximal map of ``threshold * sum ||group||_2`` (groups along dim 3); ``threshold`` is ``(K,)``."""
    norm = V.norm(dim=3, keepdim=True)
    thr = threshold.view(-1, 1, 1, 1, 1)
    return V * (1.0 - thr / norm.clamp_min(torch.finfo(V.dtype).tiny)).clamp_min(0.0)


@dataclass
class SolverInfo:
    """Per-level outcome of a solve (tensors of shape ``(K,)``); for ``fista`` the primal residual is the
    last step length and the dual residual is zero."""

    objective: Tensor
    violation: Tensor
    converged: Tensor
    primal_residual: Tensor
    dual_residual: Tensor
    iterations: int
    stop_reason: str


class _Progress:
    """Per-iteration objectives kept on the device, copied to the record every few iterations."""

    def __init__(self, budget: Budget, K: int, record: TrainingRecord, like: Tensor) -> None:
        self.losses = torch.empty((budget.iterations, K), dtype=like.dtype, device=like.device)
        self.record = record
        self.logged = 0
        self.out_of_time = budget.clock()

    def flush(self, it: int) -> None:
        for j, value in enumerate(self.losses[self.logged : it].mean(dim=1).tolist()):
            check_finite_loss(value, self.logged + j + 1, self.record)
            self.record.log(self.logged + j + 1, value)
        self.logged = it

    def finish(self, it: int, stop_reason: str) -> None:
        self.flush(it)
        self.record.iterations = it
        self.record.stopped_at = it
        self.record.stop_reason = stop_reason


def solve_admm(
    program: ConvexProgram, budget: Budget, tol: float, rho: Tensor | float, record: TrainingRecord | None = None,
) -> tuple[Tensor, SolverInfo]:
    """ADMM for every level of ``program`` (docs/theory.md C.5); returns ``z`` and a :class:`SolverInfo`.

    ``rho`` is the penalty, one value or one per level.
    """
    X, Y, D = program.X, program.Y, program.D
    K, n, p, P, d = program.shape
    dtype, device = X.dtype, X.device
    rho_k = torch.as_tensor(rho, dtype=dtype, device=device).expand(K)
    rho5 = rho_k.view(-1, 1, 1, 1, 1)
    record = record if record is not None else TrainingRecord("convex")
    cones = program.cones
    split = cones is None  # cone constraints as a separate ADMM block
    S = program.signs()

    # v-step: (M^T M / n + rho B0) v = r with B0 = I (faces) or I + blockdiag(X~^T X~) (split), by Woodbury
    eye_p = torch.eye(p, dtype=dtype, device=device)
    gram = X.transpose(1, 2) @ X
    B0_inv = torch.linalg.inv(eye_p + gram) if split else eye_p.expand(K, p, p)
    kernel = 2.0 / rho_k.view(-1, 1, 1) * (X @ B0_inv @ X.transpose(1, 2)) * (D.transpose(1, 2) @ D)
    chol = torch.linalg.cholesky(n * torch.eye(n, dtype=dtype, device=device) + kernel)

    def apply_b0_inv(r: Tensor) -> Tensor:
        if not split:
            return r / rho5
        return (B0_inv[:, None, None, :, :, None] * r[:, :, :, None, :, :]).sum(dim=4) / rho5

    def solve_v(r: Tensor) -> Tensor:
        br = apply_b0_inv(r)
        return br - apply_b0_inv(program.fitted_adjoint(torch.cholesky_solve(program.fitted(br), chol)))

    def cone_op(V: Tensor) -> Tensor:
        return S * program.preactivations(V)

    def cone_adjoint(R: Tensor) -> Tensor:
        flat = (S * R).permute(0, 3, 1, 2, 4).reshape(K, n, 2 * P * d)
        return torch.bmm(X.transpose(1, 2), flat).view(K, p, 2, P, d).permute(0, 2, 3, 1, 4)

    MtY = program.fitted_adjoint(Y) / n
    thr = program.beta / rho_k
    z = program.zeros()
    lam = torch.zeros_like(z)
    if split:
        s = torch.zeros((K, 2, P, n, d), dtype=dtype, device=device)
        lam2 = torch.zeros_like(s)
    frozen = torch.zeros(K, dtype=torch.bool, device=device)
    rp = torch.full((K,), math.inf, dtype=dtype, device=device)
    rd = torch.full((K,), math.inf, dtype=dtype, device=device)
    progress = _Progress(budget, K, record, X)
    stop_reason, it = "iterations", 0
    a = _RELAXATION
    for it in range(1, budget.iterations + 1):
        r = MtY + rho5 * (z - lam)
        if split:
            r = r + rho5 * cone_adjoint(s - lam2)
        v = solve_v(r)
        vh = a * v + (1 - a) * z
        keep = frozen.view(-1, 1, 1, 1, 1)
        if split:
            Av = cone_op(v)
            Avh = a * Av + (1 - a) * s
            z_new = group_soft_threshold(vh + lam, thr)
            s_new = torch.where(keep, s, (Avh + lam2).clamp_min(0.0))
        else:
            assert cones is not None
            z_new = group_soft_threshold(project_onto_cones(vh + lam, cones), thr)
        z_new = torch.where(keep, z, z_new)
        lam = torch.where(keep, lam, lam + vh - z_new)
        primal = (v - z_new).flatten(1).pow(2).sum(dim=1)
        dual_vec = z_new - z
        if split:
            lam2 = torch.where(keep, lam2, lam2 + Avh - s_new)
            primal = primal + (Av - s_new).flatten(1).pow(2).sum(dim=1)
            dual_vec = dual_vec + cone_adjoint(s_new - s)
            s = s_new
        rp = torch.where(frozen, rp, primal.sqrt())
        rd = torch.where(frozen, rd, rho_k * dual_vec.flatten(1).norm(dim=1))
        z = z_new
        progress.losses[it - 1] = program.objective(z)
        scale_dual = rho_k * lam.flatten(1).norm(dim=1)
        if split:
            scale_dual = torch.sqrt(scale_dual**2 + (rho5 * cone_adjoint(lam2)).flatten(1).pow(2).sum(dim=1))
        frozen = frozen | ((rp <= tol * (1 + z.flatten(1).norm(dim=1))) & (rd <= tol * (1 + scale_dual)))

        if it % _CHECK_EVERY == 0:
            progress.flush(it)
            if bool(frozen.all()):
                stop_reason = "converged"
                break
            if progress.out_of_time():
                stop_reason = "seconds"
                break
    progress.finish(it, stop_reason)
    info = SolverInfo(
        objective=program.objective(z), violation=program.violation(z), converged=frozen,
        primal_residual=rp, dual_residual=rd, iterations=it, stop_reason=stop_reason,
    )
    return z, info


def solve_fista(
    program: ConvexProgram, budget: Budget, tol: float, generator: torch.Generator,
    record: TrainingRecord | None = None,
) -> tuple[Tensor, SolverInfo]:
    """Restarted FISTA with the exact proximal map (group soft-threshold of the cone projection)."""
    cones = program.cones
    if cones is None:
        raise ValueError("convex: solver 'fista' needs the cones' faces, enumerated for d <= 2 only; use 'admm'")
    X, Y = program.X, program.Y
    K, n, _, _, _ = program.shape
    record = record if record is not None else TrainingRecord("convex")
    L = _LIPSCHITZ_SAFETY * program.fit_lipschitz(generator)
    Lv = L.view(-1, 1, 1, 1, 1)
    thr = program.beta / L
    V = program.zeros()
    Vy = V
    R = program.fitted(V) - Y
    Ry = R
    tk = torch.ones(K, dtype=X.dtype, device=X.device)
    frozen = torch.zeros(K, dtype=torch.bool, device=X.device)
    step_size = torch.full((K,), math.inf, dtype=X.dtype, device=X.device)
    progress = _Progress(budget, K, record, X)
    stop_reason, it = "iterations", 0
    for it in range(1, budget.iterations + 1):
        G = program.fitted_adjoint(Ry) / n
        Vn = group_soft_threshold(project_onto_cones(Vy - G / Lv, cones), thr)
        keep = frozen.view(-1, 1, 1, 1, 1)
        Vn = torch.where(keep, V, Vn)
        Rn = program.fitted(Vn) - Y
        progress.losses[it - 1] = Rn.pow(2).sum(dim=(1, 2)) / (2 * n) + program.beta * Vn.norm(dim=3).sum(
            dim=(1, 2, 3))
        step = (Vn - Vy).flatten(1).norm(dim=1)
        step_size = torch.where(frozen, step_size, step)
        frozen = frozen | (step <= tol * (1 + Vn.flatten(1).norm(dim=1)))
        restart = ((Vy - Vn) * (Vn - V)).flatten(1).sum(dim=1) > 0
        tk_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * tk * tk))
        theta = torch.where(restart, torch.zeros_like(tk), (tk - 1.0) / tk_next)
        tk = torch.where(restart, torch.ones_like(tk), tk_next)
        Vy = Vn + theta.view(-1, 1, 1, 1, 1) * (Vn - V)
        Ry = Rn + theta.view(-1, 1, 1) * (Rn - R)
        V, R = Vn, Rn
        if it % _CHECK_EVERY == 0:
            progress.flush(it)
            if bool(frozen.all()):
                stop_reason = "converged"
                break
            if progress.out_of_time():
                stop_reason = "seconds"
                break
    progress.finish(it, stop_reason)
    info = SolverInfo(
        objective=program.objective(V), violation=program.violation(V), converged=frozen,
        primal_residual=step_size, dual_residual=torch.zeros_like(step_size), iterations=it,
        stop_reason=stop_reason,
    )
    return V, info

