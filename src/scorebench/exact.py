r"""Exact output laws of affine samplers on Gaussian targets, and Gaussian distances.

If the score is affine in ``x`` (the exact score of a Gaussian target, or ``noisy_oracle``
with ``kind="bias"``) and a sampler's step is affine in ``(x, z)`` -- Euler--Maruyama, the
exponential integrator, the probability-flow ODE (Euler and Heun), DDPM, and predictor--
corrector with a fixed corrector step -- then each step is

    x' = A x + c + B z,      z ~ N(0, I_{m d}),

and a Gaussian law ``N(m, P)`` is carried to ``N(A m + c, A P A^T + B B^T)`` (docs/theory.md F.4).
:func:`affine_step_map` reads ``A``, ``c`` and ``B`` off the sampler's own ``step`` by
evaluating it on the basis vectors in float64 (so any registered or plugin sampler is
covered, with no per-scheme formula to keep in sync) and checks affinity at a random
point.  :func:`exact_output_law` composes the steps; :func:`gaussian_w2` (Bures) and
:func:`gaussian_kl` then give the exact distance to the target with no Monte-Carlo noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .samplers.base import RunState

if TYPE_CHECKING:
    from .estimators.base import ScoreModel
    from .processes import ForwardProcess
    from .samplers.base import Sampler
    from .targets.base import Target

_F64 = torch.float64


@dataclass(frozen=True)
class GaussianLaw:
    """``N(mean, cov)`` in float64."""

    mean: Tensor
    cov: Tensor

    def __post_init__(self) -> None:
        d = self.mean.shape[-1]
        if self.mean.shape != (d,) or self.cov.shape != (d, d):
            raise ValueError(
                f"GaussianLaw needs mean (d,) and cov (d, d), got {tuple(self.mean.shape)} "
                f"and {tuple(self.cov.shape)}"
            )

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @classmethod
    def of(cls, target: Target) -> GaussianLaw:
        """The law of a Gaussian target (or of its marginal), read from the target contract's
        :meth:`~scorebench.targets.base.Target.gaussian_law`; ``ValueError`` naming the target
        when it is not Gaussian."""
        law = target.gaussian_law()
        if law is None:
            raise ValueError(f"{target!r} is not Gaussian (its gaussian_law() is None)")
        return cls(law.mean.to(_F64), law.cov.to(_F64))

    @classmethod
    def isotropic(cls, dim: int, std: float, mean: float = 0.0) -> GaussianLaw:
        return cls(torch.full((dim,), float(mean), dtype=_F64), std**2 * torch.eye(dim, dtype=_F64))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` exact draws ``mean + C^{1/2} z`` in float64, on the generator's device."""
        z = torch.randn((n, self.dim), generator=generator, device=generator.device, dtype=_F64)
        return self.mean.to(z.device) + z @ _psd_sqrt(self.cov).to(z.device)


def _psd_sqrt(cov: Tensor) -> Tensor:
    evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def gaussian_w2(p: GaussianLaw, q: GaussianLaw) -> float:
    r"""Exact 2-Wasserstein distance between Gaussians (the Bures formula, docs/theory.md F.3).

    ``W2^2 = ||m_p - m_q||^2 + tr(P + Q - 2 (Q^{1/2} P Q^{1/2})^{1/2})``, computed with symmetric
    eigendecompositions in float64 and tiny negative eigenvalues clipped.
    """
    P, Q = p.cov.to(_F64), q.cov.to(_F64)
    rq = _psd_sqrt(Q)
    cross = torch.linalg.eigvalsh(rq @ P @ rq).clamp_min(0).sqrt().sum()
    w2sq = (p.mean - q.mean).to(_F64).pow(2).sum() + torch.trace(P) + torch.trace(Q) - 2 * cross
    return float(w2sq.clamp_min(0).sqrt())


def gaussian_kl(p: GaussianLaw, q: GaussianLaw) -> float:
    r"""``KL(p || q)`` between Gaussians:
    ``(tr(Q^{-1} P) + (m_q - m_p)^T Q^{-1} (m_q - m_p) - d + ln det Q - ln det P) / 2``."""
    P, Q = p.cov.to(_F64), q.cov.to(_F64)
    Lq = torch.linalg.cholesky(Q)
    Lp = torch.linalg.cholesky(P)
    diff = (q.mean - p.mean).to(_F64)[:, None]
    sol = torch.cholesky_solve(torch.cat([P, diff], 1), Lq)
    trace = torch.trace(sol[:, :-1])
    maha = float(diff[:, 0] @ sol[:, -1])
    logdet = 2 * (torch.log(torch.diagonal(Lq)).sum() - torch.log(torch.diagonal(Lp)).sum())
    return float(0.5 * (trace + maha - p.dim + logdet))


def langevin_flow_law(target: GaussianLaw, init: GaussianLaw, tau: float) -> GaussianLaw:
    r"""Law at time ``tau`` of the Langevin diffusion ``dX = grad log pi(X) dt + sqrt(2) dW``
    toward ``pi = N(mu, S)``, started from ``init = N(m_0, C_0)``.

    The diffusion is the Wasserstein gradient flow of ``KL(. || pi)`` (Jordan, Kinderlehrer,
    Otto 1998), the limit of JKO steps whose sizes sum to ``tau``.  With ``P = S^{-1}`` the
    mean solves ``dm/dt = -P (m - mu)`` and the covariance ``dC/dt = 2I - P C - C P``, whose
    fixed point is ``S``; so ``m_tau = mu + exp(-P tau) (m_0 - mu)`` and ``C_tau = S + E (C_0 - S) E``
    with ``E = exp(-P tau)`` (in ``S``'s eigenbasis, ``p_i = 1 / lambda_i``:
    ``(C_tau - S)_ij = e^{-(p_i + p_j) tau} (C_0 - S)_ij``).
    """
    lam, U = torch.linalg.eigh(0.5 * (target.cov + target.cov.T))
    if float(lam.min()) <= 0:
        raise ValueError("langevin_flow_law: the target covariance must be positive definite")
    decay = torch.exp(-tau / lam)  # exp(-p_i tau), p_i = 1 / lam_i
    mean = target.mean + U @ (decay * (U.T @ (init.mean - target.mean)))
    gap = U.T @ (init.cov - target.cov) @ U
    cov = target.cov + U @ (decay[:, None] * gap * decay[None, :]) @ U.T
    return GaussianLaw(mean, 0.5 * (cov + cov.T))


@dataclass(frozen=True)
class AffineStep:
    """One sampler step as ``x' = A x + c + B z`` (``B`` is ``d x (m d)``)."""

    A: Tensor
    c: Tensor
    B: Tensor

    def push(self, law: GaussianLaw) -> GaussianLaw:
        mean = self.A @ law.mean + self.c
        cov = self.A @ law.cov @ self.A.T + self.B @ self.B.T
        return GaussianLaw(mean, 0.5 * (cov + cov.T))


def affine_step_map(
    sampler: Sampler, score: ScoreModel, process: ForwardProcess, t: float, t_next: float,
    is_last: bool = False, index: int = 1, state: RunState | None = None,
) -> AffineStep:
    """Read the affine map of one step off ``sampler.step`` (float64, on the CPU).

    ``state`` is the run state :meth:`Sampler.open_run` returned, for a sampler that plans its
    steps (an empty one by default).

    Raises ``ValueError`` if the sampler declares itself non-affine or if the map fails an
    affinity check at a random point (e.g. a score that is not affine in ``x``).
    """
    if not sampler.affine:
        raise ValueError(
            f"sampler {sampler.name!r} with these settings is not affine in (x, noise); "
            "exact laws need an affine step (estimate its law by sampling instead)"
        )
    d, m = score.dim, sampler.noise_slots(index)
    rows = 1 + d + m * d
    x = torch.zeros((rows + 1, d), dtype=_F64)
    x[1 : d + 1] = torch.eye(d, dtype=_F64)
    z = torch.zeros((rows + 1, m * d), dtype=_F64)
    z[d + 1 : rows] = torch.eye(m * d, dtype=_F64)
    probe = torch.Generator().manual_seed(12345)
    x[-1] = torch.randn(d, generator=probe, dtype=_F64)
    z[-1] = torch.randn(m * d, generator=probe, dtype=_F64)
    noise = sampler.step_noise(z.reshape(rows + 1, m, d), is_last) if m > 0 else None
    out = sampler.run_step(score, process, x, t, t_next, noise, state=RunState() if state is None else state)
    c = out[0]
    A = (out[1 : d + 1] - c).T
    B = (out[d + 1 : rows] - c).T
    predicted = A @ x[-1] + c + B @ z[-1]
    err = (predicted - out[-1]).abs().max()
    scale = 1.0 + out.abs().max()
    if not torch.isfinite(err) or err > 1e-8 * scale:
        raise ValueError(
            f"sampler {sampler.name!r}: step {t} -> {t_next} is not affine in (x, noise) "
            f"(residual {float(err):.3g}); exact laws need an affine score, such as the "
            "oracle score of a Gaussian target"
        )
    return AffineStep(A, c, B)


def exact_output_law(
    sampler: Sampler,
    score: ScoreModel,
    process: ForwardProcess,
    grid: Tensor | Sequence[float] | int,
    init: GaussianLaw | None = None,
) -> GaussianLaw:
    """Exact law of ``sampler.sample(score, process, n, grid, ..., x_init ~ init)``.

    ``init`` defaults to the sampler's initial law (the prior ``N(0, prior_std^2 I)`` unless
    the sampler says otherwise); pass the exact ``p_T`` (for
    Gaussian targets ``GaussianLaw.of(target.marginal(process, T))``) to remove the
    initialisation error.
    """
    grid = sampler.resolve_grid(process, grid)
    law = init if init is not None else GaussianLaw.isotropic(score.dim, sampler.initial_std(process))
    if law.dim != score.dim:
        raise ValueError(f"init law has dimension {law.dim}, the score has {score.dim}")
    state = sampler.open_run(score, process, grid)
    for index, t, t_next, is_last in sampler.steps_of(grid):
        law = affine_step_map(sampler, score, process, t, t_next, is_last, index, state).push(law)
    return law
