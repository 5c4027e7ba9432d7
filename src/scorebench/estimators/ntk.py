r"""Neural-tangent-kernel score estimators of Han, Razaviyayn, Xu (2024): ``ntk`` and ``ntk_kernel``.

Han, Razaviyayn, Xu, "Neural Network-Based Score Estimation in Diffusion Models: Optimization
and Generalization" (arXiv 2401.15604, ICLR 2024); docs/theory.md A.2--A.7 and F.6.

Parametric form (A.2).  The score is written through a denoiser ``f``,

    s(x, t) = (alpha_t f(x, t) - x) / sigma_t^2,

so that denoising score matching with time weight ``sigma_t^4 / alpha_t^2`` is plain least
squares with covariate ``z = (x_t, t)`` and label ``y = x_0``:

    L(f) = E_t E || f(alpha_t X_0 + sigma_t Z, t) - X_0 ||^2,

a regression with noisy labels (noise ``xi = X_0 - E[X_0 | X_t]``).  Every training point
``x_0^i`` gets one time ``t_i ~ U[t_min, T]`` and one noise draw (:func:`~.training.dsm_pairs`);
the fit is full-batch gradient descent on this fixed set.  Since ``s - s* = (alpha_t /
sigma_t^2)(f - f*)``, a regression error is amplified like ``1 / sigma_t^4`` near ``t = 0``:
the training cut-off ``t_min`` matters.

Input map (shared by both estimators).  ``z~ = (x~, u, 1)`` with

    x~ = (x - alpha_t mu) / sqrt(d (alpha_t^2 v + sigma_t^2)),    u = (t - t_min) / (T - t_min),

where ``mu`` is the training mean and ``v`` the mean per-coordinate training variance, so that
``E ||x~||^2 = 1`` at every time and for every process (VE's ``sigma_t`` up to 50 included).
The paper truncates unbounded inputs to a ball of radius ``R``; here ``radius=R`` optionally
projects ``x~`` onto ``{||x~|| <= R}`` (default: no truncation, the normalisation already
keeps ``x~`` of order one).  Labels are standardised the same way, ``y = (x_0 - mu) / sqrt(v)``,
and ``f = mu + sqrt(v) g``; this is affine in the labels, so the estimator is kernel gradient
descent on standardised labels and all of A.4--A.5 applies unchanged in those units.

Network (A.3).  Two-layer ReLU in NTK scaling, only the first layer trained:

    g_W(z) = (1 / sqrt m) sum_{r=1}^m a_r relu(w_r . z~),     w_r(0) ~ N(0, nu^2 I),

``heads="shared"``: one hidden layer, ``a_r in {-1, +1}^d`` i.i.d. Rademacher (cross-output
blocks of the tangent kernel vanish only as ``m -> inf``); ``heads="independent"``: ``d``
separate networks of width ``m`` with scalar ``a_r = +-1`` (cross-output blocks exactly zero,
``d`` times the cost).  Antisymmetric initialisation: neurons come in pairs with equal
``w_r(0)`` and opposite ``a_r``, so ``g_{W(0)} = 0``.  Gradient descent on
``(1 / 2n) sum_i ||g_W(z_i) - y_i||^2`` with step ``lr``.

Kernel (A.4).  With ``a_r^2 = 1`` the tangent kernel of each output converges to

    K(z, z') = <z~, z~'> (pi - arccos rho) / (2 pi),    rho = <z~, z~'> / (||z~|| ||z~'||),

(times ``I_d``).  It does not depend on ``nu``: ``d g / d w_r = a_r 1{w_r . z~ > 0} z~ / sqrt m``
and the indicator is scale free (docs/theory.md A.4 carries a factor ``nu^2``; with ``a_r`` fixed
at ``+-1`` and only ``W`` trained there is none, as the tests confirm against the empirical
tangent kernel).  ``nu`` only sets how lazy training is: the relative weight change scales
like ``1 / (nu sqrt m)``.

Kernel gradient descent (A.5) on ``H = K(Z, Z)``, ``H / n = U diag(lambda) U^T``:

    F_k = [I - (I - lr H / n)^k] Y  (train points),
    f_k(z) = K(z, Z) U diag( (1 - (1 - lr lambda)^k) / (n lambda) ) U^T Y,

with ``(1 - (1 - lr lambda)^k) / lambda -> k lr`` as ``lambda -> 0`` (no inverse of a singular
``H`` is formed).  ``ntk`` is the network, ``ntk_kernel`` this closed form; for the same data,
``lr`` and ``k`` the network converges to the kernel predictor as ``m`` grows, with error
``O(m^{-1/2})``.

Step size.  ``lr=None`` uses ``1 / mean_i K(z_i, z_i) = 2 / mean_i ||z~_i||^2``.  Because ``H``
is positive semi-definite, ``lambda_max(H / n) <= trace(H) / n``, so this ``lr`` satisfies
``lr lambda_max <= 1 < 2``, the stability bound, without forming ``H``.

Early stopping (A.5, Raskutti, Wainwright, Yu 2014).  With ``R(eps) = sqrt((1/n) sum_j
min(lambda_j, eps^2))`` the rule stops at

    k_hat = min{ k : R(1 / sqrt(lr k)) > B / (2 e sigma_xi lr k) } - 1.

Raskutti et al. state it for regression functions in the unit ball of the RKHS (``B = 1``);
``f*`` in a ball of radius ``B`` is the unit-ball case for labels divided by ``B``, hence the
factor.  ``sigma_xi`` is the label-noise scale in standardised units; ``sigma_xi=None`` uses
``sigma_xi^2 = mean_i sigma_i^2 / (alpha_i^2 v + sigma_i^2)`` over the training times: the
posterior variance of a Gaussian prior with the data's mean variance, i.e. the error of the
best linear denoiser, which bounds the mean posterior variance of any prior with that
variance from above (LMMSE >= MMSE, and Jensen over the covariance's eigenvalues).
``rkhs_norm=None`` estimates ``B`` as the RKHS norm of the kernel-GD iterate chosen by
generalised cross-validation (:func:`gcv_iteration`), at least 1.  With ``B = 1`` the rule
stops one to two orders of magnitude too early on the denoisers of Gaussian mixtures, whose
RKHS norm in standardised units is about 5 to 10; with the estimated ``B`` it is still
conservative (it stops several times earlier than the minimum of the regression risk, at a
risk within a few times the minimum; validation stopping gets closer at the price of the
held-out data).  ``lr k R(1/sqrt(lr k))`` increases with
``k``, so ``k_hat`` is found by bisection.  ``stopping="validation"`` instead keeps the iterate
with the lowest held-out loss among the logged iterations (a held-out DSM loss is the excess
risk plus a constant, F.6); ``"none"`` runs the full budget.

Losses in the :class:`~.training.TrainingRecord` are in the units of the data:
``mean_i ||f(z_i) - x_0^i||^2``, the DSM loss with the ``denoiser`` weighting, on the
training pairs (``losses``) and on ``val_fraction`` of the ``n_train`` pairs held out
(``val_losses``), at ``log_points`` iterations spaced geometrically in ``[1, iterations]``
(plus ``0``).

Cost.  ``ntk``: ``O(n m D)`` per iteration (``D = d + 2``), times ``d`` for independent
heads; the rule needs the eigendecomposition of the ``n x n`` Gram.  ``ntk_kernel``: the
Gram (``8 n^2`` bytes; built in blocks, so no larger temporaries) and its eigendecomposition,
``O(n^3)``: on one CPU thread about 1 s at ``n = 1000``, 20 s at ``n = 3000`` and several
minutes at ``n = 8000`` (0.5 GB for the Gram and as much for the eigenvectors); at
``n = 32000`` the two take 16 GB.  Both refuse an eigendecomposition above ``max_n`` training
points (default 8000).  Prediction costs ``O(n_test n)`` in row blocks of at most ``2^22``
kernel entries.  Everything is computed in float64, on the device of the fit's generator.

Record.  ``extra`` holds ``lr`` (and whether it was given), ``sigma_xi``, ``rkhs_norm`` (and
their sources), ``gcv_k``, ``rule_k`` (always for ``ntk_kernel``; for ``ntk`` with the rule),
the training cut-off ``t_min``, ``n_fit``/``n_val``, the label standardisation, and for
``ntk`` the width, heads, ``nu`` and the relative weight change ``||W - W(0)|| / ||W(0)||``
(the laziness of training), for ``ntk_kernel`` ``lambda_max(H/n)`` and ``lr lambda_max``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..params import Check, Interval, NoneMeans, Options, param_error
from ..targets.base import Target
from ..validation import is_int_at_least
from .base import ESTIMATORS
from .training import (
    Budget,
    LearnedEstimator,
    LearnedScore,
    TrainingRecord,
    check_finite_loss,
    dsm_pairs,
    process_scales,
    training_samples,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..processes import ForwardProcess

HEADS = ("shared", "independent")
STOPPING = ("rule", "validation", "none")
#: kernel / hidden-layer entries per evaluation block
_BLOCK = 1 << 22


# ---------------------------------------------------------------------------------------
# The kernel, the input map, the network
# ---------------------------------------------------------------------------------------


def relu_ntk(za: Tensor, zb: Tensor) -> Tensor:
    r"""Analytic tangent kernel of a first-layer-trained ReLU network, ``(n_a, n_b)``.

    ``K(z, z') = <z, z'> (pi - arccos rho) / (2 pi)``, ``rho`` the cosine of the angle
    (docs/theory.md A.4, without the ``nu^2`` factor, see the module docstring).  Rows must be
    non-zero (the input map's constant coordinate guarantees it).  Built in row blocks of at
    most ``2^22`` entries, so the only full-size allocation is the result.
    """
    out = za.new_empty((za.shape[0], zb.shape[0]))
    norm_b = zb.norm(dim=1)
    for rows in _blocks(za.shape[0], zb.shape[0]):
        inner = za[rows] @ zb.T
        rho = (inner / (za[rows].norm(dim=1)[:, None] * norm_b)).clamp_(-1.0, 1.0)
        out[rows] = inner * (math.pi - torch.arccos(rho)) / (2 * math.pi)
    return out


def _blocks(n: int, width: int) -> list[slice]:
    """Row slices covering ``range(n)`` with at most ``2^22`` entries of a ``width``-wide row each."""
    rows = max(1, _BLOCK // max(1, width))
    return [slice(i, min(n, i + rows)) for i in range(0, n, rows)]


def kernel_gd_gain(lam: Tensor, lr: float, k: int) -> Tensor:
    r"""``(1 - (1 - lr lambda)^k) / lambda`` elementwise, ``= k lr`` at ``lambda = 0``.

    Computed as ``-expm1(k log1p(-lr lambda)) / lambda`` where ``lr lambda < 1/2`` (no
    cancellation for small ``lambda``), directly otherwise; ``lambda <= 0`` gives ``k lr``.
    """
    x = lr * lam
    small = x < 0.5
    num = torch.where(small, -torch.expm1(k * torch.log1p(-x.clamp(max=0.5))), 1.0 - torch.pow(1.0 - x, k))
    positive = lam > 0
    return torch.where(positive, num / torch.where(positive, lam, torch.ones_like(lam)), torch.full_like(lam, k * lr))


def kernel_complexity(lam: Tensor, eps: float) -> float:
    r"""Empirical kernel complexity ``R(eps) = sqrt((1/n) sum_j min(lambda_j, eps^2))`` (A.5)."""
    return float(torch.clamp(lam, min=0.0).clamp(max=eps * eps).mean().sqrt())


def rule_stop(lam: Tensor, lr: float, sigma_xi: float, rkhs_norm: float = 1.0) -> int:
    r"""``k_hat = min{k >= 1 : R(1/sqrt(lr k)) > B/(2 e sigma_xi lr k)} - 1`` (A.5).

    ``lam`` are the eigenvalues of ``H / n``; ``B = rkhs_norm`` the radius of the RKHS ball
    assumed to hold ``f*`` (Raskutti, Wainwright, Yu state the rule for ``B = 1``; a ball of
    radius ``B`` is the unit ball for labels divided by ``B``, i.e. noise ``sigma_xi / B``).
    The condition is monotone in ``k`` (``lr k R(1/sqrt(lr k))`` increases), so the first
    ``k`` is bracketed by doubling and bisected.  Returns ``2^62`` if every eigenvalue is zero.
    """
    lam = lam.detach().to("cpu", torch.float64).clamp(min=0.0)
    noise = sigma_xi / rkhs_norm

    def holds(k: int) -> bool:
        tau = lr * k
        return kernel_complexity(lam, 1.0 / math.sqrt(tau)) > 1.0 / (2 * math.e * noise * tau)

    hi = 1
    while not holds(hi):
        hi *= 2
        if hi >= 1 << 62:
            return hi
    lo = hi // 2  # holds(lo) is false (or lo == 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return hi - 1


def rkhs_norm_sq(lam: Tensor, coef: Tensor, lr: float, k: int) -> float:
    r"""``||f_k||_H^2 = (1/n) sum_j gain_j^2 lambda_j ||c_j||^2`` of the kernel-GD iterate (``c = U^T Y``)."""
    gain = kernel_gd_gain(lam, lr, k)
    return float((gain**2 * lam) @ coef.pow(2).sum(1)) / lam.shape[0]


def gcv_iteration(lam: Tensor, coef: Tensor, lr: float, k_max: int = 10**7, points: int = 200) -> int:
    r"""Iteration minimising generalised cross-validation over ``points`` geometric ``k in [1, k_max]``.

    ``GCV(k) = (1/n) ||(I - S_k) Y||^2 / (1 - tr(S_k)/n)^2`` with the kernel-GD smoother
    ``S_k = U diag(1 - (1 - lr lambda)^k) U^T`` (Craven, Wahba 1979), all in the eigenbasis.
    """
    n = lam.shape[0]
    power = coef.pow(2).sum(1)
    ks = sorted({int(v) for v in torch.logspace(0.0, math.log10(k_max), points, dtype=torch.float64).round()})
    best, best_k = math.inf, 1
    for k in ks:
        shrink = torch.pow(1.0 - lr * lam, k)
        dof = float(shrink.sum()) / n
        if dof * n < 1.0:  # fewer than one residual degree of freedom left: interpolation
            break
        value = float(shrink.pow(2) @ power) / n / dof**2
        if value < best:
            best, best_k = value, k
    return best_k


@dataclass
class InputMap:
    r"""``(x, t) -> z~ = (x~, u, 1)``, see the module docstring; ``mean``/``var`` from the training data."""

    process: ForwardProcess
    mean: Tensor
    var: float
    t_lo: float
    radius: float | None

    def __call__(self, x: Tensor, t: Tensor, alpha: Tensor | None = None, sigma: Tensor | None = None) -> Tensor:
        if alpha is None or sigma is None:
            alpha, sigma = process_scales(self.process, t)
        d = x.shape[1]
        denom = torch.sqrt(d * (alpha**2 * self.var + sigma**2))
        xs = (x - alpha[:, None] * self.mean) / denom[:, None]
        if self.radius is not None:
            norm = xs.norm(dim=1, keepdim=True)
            xs = xs * torch.clamp(self.radius / norm.clamp_min(torch.finfo(xs.dtype).tiny), max=1.0)
        u = (t - self.t_lo) / (self.process.T - self.t_lo)
        return torch.cat([xs, u[:, None], torch.ones_like(u)[:, None]], dim=1)


def network_output(W: Tensor, a: Tensor, z: Tensor) -> Tensor:
    r"""``g_W(z) = (1/sqrt m) sum_r a_r relu(w_r . z)``, shape ``(n, d)``.

    Shared hidden layer: ``W (m, D)``, ``a (m, d)``.  Independent heads: ``W (d, m, D)``,
    ``a (d, m)``.
    """
    if W.ndim == 2:
        return torch.relu(z @ W.T) @ a / math.sqrt(W.shape[0])
    hidden = torch.relu(torch.einsum("nk,jmk->jnm", z, W))
    return torch.einsum("jnm,jm->nj", hidden, a) / math.sqrt(W.shape[1])


def antisymmetric_init(
    width: int, in_dim: int, out_dim: int, heads: str, nu: float, generator: torch.Generator, dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """``(W(0), a)``: pairs ``r, r + m/2`` share ``w_r(0) ~ N(0, nu^2 I)`` and have opposite ``a_r``."""
    half = width // 2
    dev = generator.device
    lead = (half,) if heads == "shared" else (out_dim, half)
    w = nu * torch.randn((*lead, in_dim), generator=generator, device=dev, dtype=dtype)
    a_shape = (half, out_dim) if heads == "shared" else (out_dim, half)
    a = 2.0 * torch.randint(0, 2, a_shape, generator=generator, device=dev).to(dtype) - 1.0
    dim = 0 if heads == "shared" else 1
    return torch.cat([w, w], dim=dim), torch.cat([a, -a], dim=dim)


# ---------------------------------------------------------------------------------------
# The fitted score model
# ---------------------------------------------------------------------------------------


class DenoiserScore(LearnedScore):
    r"""``s(x, t) = (alpha_t f(x, t) - x) / sigma_t^2`` for a fitted denoiser ``f`` (A1).

    ``denoiser(x, t)`` (``t`` one time per row) is ``f`` itself, an estimate of
    ``E[X_0 | X_t = x]``, in float64 on the training device; ``features(x, t)`` the input map
    ``z~``; ``f = label_mean + label_scale * g(z~)``; ``parameters`` the fitted tensors
    (``W``, ``a`` for ``ntk``; ``train_features``, ``weights`` for ``ntk_kernel``, with
    ``g(z) = K(z, train_features) weights``).
    """

    def __init__(
        self, dim: int, process: ForwardProcess, denoiser: Callable[[Tensor, Tensor], Tensor],
        record: TrainingRecord, features: InputMap, label_mean: Tensor, label_scale: float,
        parameters: dict[str, Tensor],
    ) -> None:
        self.denoiser = denoiser
        self.features = features
        self.label_mean, self.label_scale = label_mean, label_scale
        self.parameters = parameters
        self.device = label_mean.device
        super().__init__(dim, process, self._score, record, dtype=torch.float64)

    def _score(self, x: Tensor, t: Tensor) -> Tensor:
        home = x.device
        x, t = x.to(self.device), t.to(self.device)
        alpha, sigma = process_scales(self.process, t)
        f = self.denoiser(x, t)
        return ((alpha[:, None] * f - x) / (sigma**2)[:, None]).to(home)


# ---------------------------------------------------------------------------------------
# Shared configuration and data preparation
# ---------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    z: Tensor  # (n, D) training covariates
    y: Tensor  # (n, d) standardised labels
    z_val: Tensor | None
    y_val: Tensor | None
    imap: InputMap
    mean: Tensor
    scale: float
    sigma_xi: float
    sigma_xi_source: str
    t_lo: float


_POSITIVE = Interval(float, 0, None, closed="neither", cast=False)


def _positive_or(none_means: str) -> list:
    """A positive number stored as given, or ``None`` for what ``none_means`` says."""
    return [_POSITIVE, NoneMeans(none_means)]


class _NTKBase(LearnedEstimator):
    """Parameters, validation and data preparation shared by ``ntk`` and ``ntk_kernel``.

    Both are tested (:attr:`test_params`), and run under ``--quick`` (which caps
    :attr:`budget_params` at their test values), with 200 iterations on 500 training points, so
    that the network and its infinite-width limit stay comparable.
    """

    param_constraints: ClassVar[dict] = {
        "n_train": Interval(int, 2, None), "iterations": Interval(int, 1, None), "seconds": [_POSITIVE, None],
        "lr": _positive_or("automatic"), "stopping": Options(STOPPING),
        "val_fraction": Interval(float, 0, 1, closed="left"),
        "sigma_xi": _positive_or("estimated"), "rkhs_norm": _positive_or("estimated"),
        "t_min": [Interval(float, 0, None, cast=False), NoneMeans("the process's")],
        "radius": _positive_or("no truncation"),
        "log_points": Interval(int, 1, None), "max_n": Interval(int, 2, None),
    }
    test_params: ClassVar[dict] = {"iterations": 200, "n_train": 500}
    budget_params: ClassVar[tuple[str, ...]] = ("iterations", "n_train")

    def __init__(
        self, n_train: int, iterations: int, seconds: float | None, lr: float | None, stopping: str,
        val_fraction: float, sigma_xi: float | None, rkhs_norm: float | None, t_min: float | None,
        radius: float | None, log_points: int, max_n: int,
    ) -> None:
        name = self.registered_name
        self.set_params_from(
            n_train=n_train, iterations=iterations, seconds=seconds, lr=lr, stopping=stopping,
            val_fraction=val_fraction, sigma_xi=sigma_xi, rkhs_norm=rkhs_norm, t_min=t_min, radius=radius,
            log_points=log_points, max_n=max_n,
        )
        if stopping == "validation" and val_fraction == 0:
            raise param_error(name, "val_fraction", "above 0 with stopping='validation'", val_fraction)
        self.n_val = max(1, round(val_fraction * n_train)) if val_fraction > 0 else 0
        self.n_fit = n_train - self.n_val
        if self.n_fit < 2:
            raise ValueError(
                f"{name}: n_train = {n_train} with val_fraction = {val_fraction} leaves {self.n_fit} training "
                "points; need at least 2"
            )

    def _check_max_n(self, why: str) -> None:
        if self.n_fit > self.max_n:
            raise ValueError(
                f"{self.registered_name}: {why} needs the eigendecomposition of the {self.n_fit} x {self.n_fit} "
                f"NTK Gram matrix (O(n^3) time, {8 * self.n_fit**2 / 1e9:.2f} GB), above max_n = {self.max_n}; "
                "lower n_train, raise max_n"
                + (", or use stopping='validation'" if why == "stopping='rule'" else "")
            )

    def _prepare(self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator) -> _Prepared:
        t_lo = process.t_min if self.t_min is None else float(self.t_min)
        if not process.t_min <= t_lo < process.T:
            raise ValueError(
                f"{self.name}: t_min = {t_lo} must lie in [process t_min, T) = [{process.t_min}, {process.T})"
            )
        x0 = training_samples(data, self.n_train, generator)
        xt, t, _ = dsm_pairs(x0, process, generator, t_min=t_lo)
        perm = torch.randperm(self.n_train, generator=generator, device=x0.device)
        fit, val = perm[: self.n_fit], perm[self.n_fit:]
        mean = x0[fit].mean(0)
        var = float(x0[fit].var(0, unbiased=False).mean())
        if not var > 0:
            raise ValueError(f"{self.name}: the training samples have zero variance")
        scale = math.sqrt(var)
        imap = InputMap(process, mean, var, t_lo, self.radius)
        z_all = imap(xt, t)
        y_all = (x0 - mean) / scale
        alpha, sigma = process_scales(process, t[fit])
        if self.sigma_xi is None:
            sigma_xi = float((sigma**2 / (alpha**2 * var + sigma**2)).mean().sqrt())
            source = "lmmse_bound"
        else:
            sigma_xi, source = float(self.sigma_xi), "given"
        has_val = self.n_val > 0
        return _Prepared(
            z_all[fit], y_all[fit], z_all[val] if has_val else None, y_all[val] if has_val else None,
            imap, mean, scale, sigma_xi, source, t_lo,
        )

    def _log_grid(self) -> list[int]:
        k = torch.logspace(0.0, math.log10(self.iterations), self.log_points, dtype=torch.float64)
        return sorted({0, self.iterations, *(int(v) for v in torch.round(k).tolist())})

    def _default_lr(self, z: Tensor) -> float:
        """``1 / (trace(H) / n)``: ``lr lambda_max(H / n) <= 1``."""
        return float(2.0 / z.pow(2).sum(1).mean())

    def _extra(self, prep: _Prepared, lr: float, n_fit: int) -> dict[str, Any]:
        return {
            "lr": lr, "lr_source": "given" if self.lr is not None else "trace_bound",
            "sigma_xi": prep.sigma_xi, "sigma_xi_source": prep.sigma_xi_source,
            "t_min": prep.t_lo, "n_fit": n_fit, "n_val": self.n_val,
            "label_mean": prep.mean.tolist(), "label_scale": prep.scale,
            "input_map": "z~ = ((x - alpha_t mu) / sqrt(d (alpha_t^2 v + sigma_t^2)), (t - t_min)/(T - t_min), 1)",
            "loss": "mean ||f(x_t, t) - x_0||^2 (DSM, denoiser weighting)",
        }

    def _rule(self, lam: Tensor, coef: Tensor, lr: float, prep: _Prepared, record: TrainingRecord) -> int:
        """``k_hat`` of :func:`rule_stop`; ``B`` given or the RKHS norm of the GCV-selected iterate."""
        if self.rkhs_norm is None:
            k_gcv = gcv_iteration(lam, coef, lr)
            norm = max(math.sqrt(rkhs_norm_sq(lam, coef, lr, k_gcv)), 1.0)
            record.extra.update(rkhs_norm=norm, rkhs_norm_source="gcv", gcv_k=k_gcv)
        else:
            norm = float(self.rkhs_norm)
            record.extra.update(rkhs_norm=norm, rkhs_norm_source="given")
        k_hat = rule_stop(lam, lr, prep.sigma_xi, norm)
        record.extra["rule_k"] = k_hat
        return k_hat


def _finish(record: TrainingRecord, stopped_at: int, reason: str) -> None:
    record.stopped_at = stopped_at
    record.stop_reason = reason


# ---------------------------------------------------------------------------------------
# ntk: the network
# ---------------------------------------------------------------------------------------


@ESTIMATORS.register("ntk")
class NTK(_NTKBase):
    r"""Two-layer ReLU denoiser in NTK scaling trained by full-batch GD (Han, Razaviyayn, Xu 2024).

    See the module docstring for the math (docs/theory.md A.2--A.5).

    Parameters
    ----------
    width
        Number of hidden neurons ``m`` (even, >= 2: neurons come in antisymmetric pairs).
    heads
        ``shared`` (Rademacher ``a_r in {+-1}^d``) or ``independent`` (one network per output).
    nu
        Scale of the initial weights ``w_r(0) ~ N(0, nu^2 I)``.
    lr
        Step size; ``None``: ``1 / mean_i K(z_i, z_i)``.
    stopping
        ``rule`` (the early-stopping rule of A.5), ``validation`` or ``none``.
    sigma_xi, rkhs_norm
        Label-noise scale and RKHS radius of the rule; ``None``: the LMMSE bound and the
        GCV estimate.
    init_seed
        ``None``: the initial weights come from the fit's generator after the data; an integer
        fixes them separately, for studies at fixed data.
    n_train, iterations, seconds, val_fraction, t_min, radius, log_points, max_n
        As for ``ntk_kernel`` (module docstring).

    Tested, and under ``--quick`` capped, also at 256 neurons: the width sets the cost of every
    training step and of every score evaluation while sampling.
    """

    param_constraints: ClassVar[dict] = {
        **_NTKBase.param_constraints, "width": Check(lambda w: is_int_at_least(w, 2) and w % 2 == 0,
                                                     "an even integer >= 2 (neurons come in pairs)"),
        "nu": Interval(float, 0, None, closed="neither"), "heads": Options(HEADS),
        "init_seed": [Interval(int, 0, None), None],
    }
    test_params: ClassVar[dict] = {**_NTKBase.test_params, "width": 256}
    budget_params: ClassVar[tuple[str, ...]] = (*_NTKBase.budget_params, "width")

    def __init__(
        self, width: int = 1024, n_train: int = 1000, iterations: int = 2000, seconds: float | None = None,
        lr: float | None = None, nu: float = 1.0, heads: str = "shared", stopping: str = "rule",
        val_fraction: float = 0.2, sigma_xi: float | None = None, rkhs_norm: float | None = None,
        t_min: float | None = None, radius: float | None = None, log_points: int = 100, max_n: int = 8000,
        init_seed: int | None = None,
    ) -> None:
        super().__init__(n_train, iterations, seconds, lr, stopping, val_fraction, sigma_xi, rkhs_norm, t_min,
                         radius, log_points, max_n)
        self.set_params_from(width=width, nu=nu, heads=heads, init_seed=init_seed)
        if stopping == "rule":
            self._check_max_n("stopping='rule'")

    def _fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord
    ) -> DenoiserScore:
        prep = self._prepare(data, process, generator)
        z, y = prep.z, prep.y
        n, d = y.shape
        init_gen = (generator if self.init_seed is None
                    else torch.Generator(generator.device).manual_seed(self.init_seed))
        W, a = antisymmetric_init(self.width, z.shape[1], d, self.heads, self.nu, init_gen, z.dtype)
        W0 = W.clone()
        lr = self._default_lr(z) if self.lr is None else float(self.lr)
        record.extra = {**self._extra(prep, lr, n), "width": self.width, "heads": self.heads, "nu": self.nu}
        budget_k = self.iterations
        rule_k = None
        if self.stopping == "rule":
            lam, U = torch.linalg.eigh(relu_ntk(z, z) / n)
            lam = lam.clamp(min=0.0)
            rule_k = self._rule(lam, U.T @ y, lr, prep, record)
            del U
            budget_k = min(budget_k, rule_k)
        grid = set(self._log_grid())
        out_of_time = Budget(self.iterations, self.seconds).clock()
        scale2 = prep.scale**2

        def val_loss(weights: Tensor) -> float | None:
            if prep.z_val is None:
                return None
            with torch.no_grad():
                return scale2 * float((network_output(weights, a, prep.z_val) - prep.y_val).pow(2).sum(1).mean())

        best = (math.inf, 0, W.clone())
        k, reason = 0, "iterations"
        while True:
            W.requires_grad_(True)
            with torch.enable_grad():
                resid = network_output(W, a, z) - y
                objective = 0.5 * resid.pow(2).sum() / n
                (grad,) = torch.autograd.grad(objective, W)
            W = W.detach()
            loss = 2.0 * scale2 * float(objective.detach())
            check_finite_loss(loss, k, record)
            last = k >= budget_k or out_of_time()
            if k in grid or last:
                vl = val_loss(W)
                record.log(k, loss, vl)
                if vl is not None and vl < best[0]:
                    best = (vl, k, W.clone())
            if last:
                if k < budget_k:
                    reason = "seconds"
                elif rule_k is not None and rule_k < self.iterations:
                    reason = "rule"
                break
            W = W - lr * grad
            k += 1
        record.iterations = k
        stopped_at = k
        if self.stopping == "validation" and best[1] < k:
            W, stopped_at, reason = best[2], best[1], "validation"
        record.extra["relative_weight_change"] = float((W - W0).norm() / W0.norm())
        _finish(record, stopped_at, reason)
        return DenoiserScore(d, process, _network_denoiser(W, a, prep), record, prep.imap, prep.mean, prep.scale,
                             {"W": W, "a": a})


def _network_denoiser(W: Tensor, a: Tensor, prep: _Prepared) -> Callable[[Tensor, Tensor], Tensor]:
    width = W.shape[-2] * (1 if W.ndim == 2 else W.shape[0])

    def denoiser(x: Tensor, t: Tensor) -> Tensor:
        zz = prep.imap(x.to(torch.float64), t.to(torch.float64))
        g = torch.cat([network_output(W, a, zz[b]) for b in _blocks(zz.shape[0], width)]) if zz.shape[0] else \
            zz.new_zeros((0, W.shape[0] if W.ndim == 3 else a.shape[1]))
        return prep.mean + prep.scale * g

    return denoiser


# ---------------------------------------------------------------------------------------
# ntk_kernel: the same estimator in closed form
# ---------------------------------------------------------------------------------------


@ESTIMATORS.register("ntk_kernel")
class NTKKernel(_NTKBase):
    r"""Kernel gradient descent with the analytic ReLU NTK, in closed form (A.4--A.5).

    The infinite-width limit of ``ntk``: the same data, input map, labels and step size;
    ``f_k(z) = K(z, Z) U diag((1 - (1 - lr lambda)^k) / (n lambda)) U^T Y`` from one
    eigendecomposition of ``H / n``.  Builds nothing larger than the ``n x n`` Gram (and
    ``n_test x n`` blocks when predicting); refuses ``n_train`` (minus the validation
    points) above ``max_n``.  Any ``k`` costs the same, so ``iterations`` is only the horizon
    (and the held-out curve is evaluated only at the ``log_points`` logged iterations).
    The rule's ``k_hat`` is recorded whatever the stopping.
    """

    def __init__(
        self, n_train: int = 1000, iterations: int = 2000, seconds: float | None = None, lr: float | None = None,
        stopping: str = "rule", val_fraction: float = 0.2, sigma_xi: float | None = None,
        rkhs_norm: float | None = None, t_min: float | None = None, radius: float | None = None,
        log_points: int = 100, max_n: int = 8000,
    ) -> None:
        super().__init__(n_train, iterations, seconds, lr, stopping, val_fraction, sigma_xi, rkhs_norm, t_min,
                         radius, log_points, max_n)
        self._check_max_n("closed-form kernel GD")

    def _fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord
    ) -> DenoiserScore:
        prep = self._prepare(data, process, generator)
        z, y = prep.z, prep.y
        n = z.shape[0]
        lam, U = torch.linalg.eigh(relu_ntk(z, z) / n)
        lam = lam.clamp(min=0.0)
        coef = U.T @ y  # (n, d)
        lr = self._default_lr(z) if self.lr is None else float(self.lr)
        record.extra = {**self._extra(prep, lr, n), "lambda_max": float(lam[-1]),
                        "lr_lambda_max": lr * float(lam[-1])}
        k_hat = self._rule(lam, coef, lr, prep, record)  # recorded whatever the stopping
        rule_k = k_hat if self.stopping == "rule" else None
        budget_k = self.iterations if rule_k is None else min(self.iterations, rule_k)
        scale2 = prep.scale**2
        val_basis = None if prep.z_val is None else relu_ntk(prep.z_val, z) @ U  # (n_val, n)
        out_of_time = Budget(self.iterations, self.seconds).clock()
        grid = [k for k in self._log_grid() if k < budget_k] + [budget_k]
        best = (math.inf, 0)
        k, reason = 0, "iterations"
        for k in grid:
            shrink = torch.pow(1.0 - lr * lam, k)
            loss = scale2 * float((shrink[:, None] * coef).pow(2).sum()) / n
            check_finite_loss(loss, k, record)
            vl = None
            if val_basis is not None:
                pred = val_basis @ (kernel_gd_gain(lam, lr, k)[:, None] * coef) / n
                vl = scale2 * float((pred - prep.y_val).pow(2).sum(1).mean())
                check_finite_loss(vl, k, record)
                if vl < best[0]:
                    best = (vl, k)
            record.log(k, loss, vl)
            if k < budget_k and out_of_time():
                reason = "seconds"
                break
        else:
            if rule_k is not None and rule_k < self.iterations:
                reason = "rule"
        record.iterations = k
        stopped_at = k
        if self.stopping == "validation" and best[1] < k:
            stopped_at, reason = best[1], "validation"
        weights = U @ (kernel_gd_gain(lam, lr, stopped_at)[:, None] * coef) / n  # (n, d)
        _finish(record, stopped_at, reason)
        return DenoiserScore(y.shape[1], process, _kernel_denoiser(z, weights, prep), record, prep.imap, prep.mean,
                             prep.scale, {"train_features": z, "weights": weights})


def _kernel_denoiser(z_train: Tensor, weights: Tensor, prep: _Prepared) -> Callable[[Tensor, Tensor], Tensor]:
    def denoiser(x: Tensor, t: Tensor) -> Tensor:
        zz = prep.imap(x.to(torch.float64), t.to(torch.float64))
        if zz.shape[0] == 0:
            return zz.new_zeros((0, weights.shape[1]))
        g = torch.cat([relu_ntk(zz[b], z_train) @ weights for b in _blocks(zz.shape[0], z_train.shape[0])])
        return prep.mean + prep.scale * g

    return denoiser
