r"""The registered estimators ``ntk`` (the network) and ``ntk_kernel`` (its kernel limit in closed form).

Han, Razaviyayn & Xu, "Neural Network-Based Score Estimation in Diffusion Models: Optimization
and Generalization" (arXiv 2401.15604, ICLR 2024); docs/theory.md A.2--A.9 and F.6.

Both estimators fit the denoiser ``f`` of the score ``s = (alpha_t f - x) / sigma_t^2``
(:mod:`.denoiser`) by least squares on ``n_train`` pairs: every training point ``x_0^i`` gets one
time ``t_i ~ U[t_min, T]`` and one noise draw (:func:`~..training.dsm_pairs`), the covariate is the
input map ``z~_i`` of ``(x_t^i, t_i)`` and the label the standardised ``y_i = (x_0^i - mu) / sqrt(v)``.
On this fixed set,

* ``ntk`` runs full-batch gradient descent with step ``lr`` on ``(1 / 2n) sum_i ||g_W(z~_i) - y_i||^2``
  for the two-layer network ``g_W`` of :mod:`.network`;
* ``ntk_kernel`` evaluates kernel gradient descent with the analytic kernel ``K`` of
  :mod:`.kernel` in closed form, ``g_k(z) = K(z, Z) U diag(gain_k(lambda) / n) U^T Y`` from one
  eigendecomposition ``H / n = U diag(lambda) U^T`` of the Gram matrix ``H = K(Z, Z)``.

For the same data, ``lr`` and ``k`` the network converges to the kernel predictor as its width
``m`` grows, with error ``O(m^{-1/2})``.  ``lr=None`` takes ``lr = 1 / mean_i K(z_i, z_i) =
2 / mean_i ||z~_i||^2``, for which ``lr lambda_max(H / n) <= 1`` (docs/theory.md A.8).  The
returned iteration is the rule's ``k_hat`` (``stopping="rule"``, :mod:`.stopping`), the logged
iteration with the lowest held-out loss (``"validation"``: a held-out DSM loss is the excess risk
plus a constant, docs/theory.md F.6), or the whole budget (``"none"``).

Losses in the :class:`~..training.TrainingRecord` are in the units of the data, ``mean_i ||f(z_i)
- x_0^i||^2`` (the DSM loss with the ``denoiser`` weighting), on the training pairs (``losses``) and
on the ``val_fraction`` of the ``n_train`` pairs held out (``val_losses``), at ``log_points``
iterations spaced geometrically in ``[1, iterations]`` (plus ``0``).

Cost.  ``ntk``: ``O(n m D)`` per iteration (``D = d + 2``), times ``d`` for independent heads; the
rule needs the eigendecomposition of the ``n x n`` Gram.  ``ntk_kernel``: the Gram (``8 n^2`` bytes,
built in blocks) and its eigendecomposition, ``O(n^3)``: on one CPU thread about 1 s at
``n = 1000``, 20 s at ``n = 3000`` and several minutes at ``n = 8000``.  Both refuse an
eigendecomposition above ``max_n`` training points (default 8000).  Prediction costs
``O(n_test n)`` in row blocks of at most ``2^22`` kernel entries.  Everything is computed in
float64, on the device of the fit's generator.

Record.  ``extra`` holds ``lr`` (and whether it was given), ``sigma_xi``, ``rkhs_norm`` (and their
sources), ``gcv_k``, ``rule_k`` (always for ``ntk_kernel``; for ``ntk`` with the rule), the training
cut-off ``t_min``, ``n_fit``/``n_val``, the label standardisation, and for ``ntk`` the width, heads,
``nu``, the relative weight change ``||W - W(0)|| / ||W(0)||`` (the laziness of training) and, with
``kernel_gap=True``, ``ntk_function_gap`` (the network's relative distance to kernel GD, :mod:`.fidelity`), for
``ntk_kernel`` ``lambda_max(H/n)`` and ``lr lambda_max``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ...params import Boolean, Check, Interval, NoneMeans, Options, param_error
from ...validation import is_int_at_least
from ..base import ESTIMATORS
from ..training import (
    Budget,
    LearnedEstimator,
    TrainingRecord,
    check_finite_loss,
    dsm_pairs,
    process_scales,
    training_samples,
)
from .denoiser import DenoiserScore, InputMap
from .fidelity import kernel_function_gap
from .kernel import kernel_gd_gain, relu_ntk, rkhs_norm_sq, row_blocks
from .network import HEADS, antisymmetric_init, network_output
from .stopping import STOPPING, gcv_iteration, rule_stop

if TYPE_CHECKING:
    from collections.abc import Callable

    from ...processes import ForwardProcess
    from ...targets.base import Target

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

    See the module docstring and docs/theory.md A.2--A.9 for the math.

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
        ``rule`` (the early-stopping rule, docs/theory.md A.5), ``validation`` or ``none``.
    sigma_xi, rkhs_norm
        Label-noise scale and RKHS radius of the rule; ``None``: the LMMSE bound and the
        GCV estimate.
    init_seed
        ``None``: the initial weights come from the fit's generator after the data; an integer
        fixes them separately, for studies at fixed data.
    kernel_gap
        Record ``extra["ntk_function_gap"]``: the relative ``L2`` distance, on the held-out
        inputs, between the returned network and kernel gradient descent with the analytic
        ReLU NTK on the same training set, step size and iteration (:mod:`.fidelity`;
        ``O(m^{-1/2})``, docs/theory.md A.7 check 1).  Needs ``val_fraction > 0`` and one
        eigendecomposition of the Gram matrix (at most ``max_n`` fitted points).
    n_train, iterations, seconds, val_fraction, t_min, radius, log_points, max_n
        As for :class:`NTKKernel`.

    Tested, and under ``--quick`` capped, also at 256 neurons: the width sets the cost of every
    training step and of every score evaluation while sampling.
    """

    param_constraints: ClassVar[dict] = {
        **_NTKBase.param_constraints, "width": Check(lambda w: is_int_at_least(w, 2) and w % 2 == 0,
                                                     "an even integer >= 2 (neurons come in pairs)"),
        "nu": Interval(float, 0, None, closed="neither"), "heads": Options(HEADS),
        "init_seed": [Interval(int, 0, None), None], "kernel_gap": Boolean(),
    }
    test_params: ClassVar[dict] = {**_NTKBase.test_params, "width": 256}
    budget_params: ClassVar[tuple[str, ...]] = (*_NTKBase.budget_params, "width")

    def __init__(
        self, width: int = 1024, n_train: int = 1000, iterations: int = 2000, seconds: float | None = None,
        lr: float | None = None, nu: float = 1.0, heads: str = "shared", stopping: str = "rule",
        val_fraction: float = 0.2, sigma_xi: float | None = None, rkhs_norm: float | None = None,
        t_min: float | None = None, radius: float | None = None, log_points: int = 100, max_n: int = 8000,
        init_seed: int | None = None, kernel_gap: bool = False,
    ) -> None:
        super().__init__(n_train, iterations, seconds, lr, stopping, val_fraction, sigma_xi, rkhs_norm, t_min,
                         radius, log_points, max_n)
        self.set_params_from(width=width, nu=nu, heads=heads, init_seed=init_seed, kernel_gap=kernel_gap)
        if stopping == "rule":
            self._check_max_n("stopping='rule'")
        if kernel_gap:
            if self.n_val == 0:
                raise param_error(self.registered_name, "val_fraction",
                                  "above 0 with kernel_gap=True (the gap is measured on the held-out inputs)",
                                  val_fraction)
            self._check_max_n("kernel_gap=True")

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
        if self.kernel_gap:
            with torch.no_grad():
                record.extra["ntk_function_gap"] = kernel_function_gap(
                    network_output(W, a, prep.z_val), z, y, prep.z_val, lr, stopped_at)
        _finish(record, stopped_at, reason)
        return DenoiserScore(d, process, _network_denoiser(W, a, prep), record, prep.imap, prep.mean, prep.scale,
                             {"W": W, "a": a})


def _network_denoiser(W: Tensor, a: Tensor, prep: _Prepared) -> Callable[[Tensor, Tensor], Tensor]:
    width = W.shape[-2] * (1 if W.ndim == 2 else W.shape[0])

    def denoiser(x: Tensor, t: Tensor) -> Tensor:
        zz = prep.imap(x.to(torch.float64), t.to(torch.float64))
        g = torch.cat([network_output(W, a, zz[b]) for b in row_blocks(zz.shape[0], width)]) if zz.shape[0] else \
            zz.new_zeros((0, W.shape[0] if W.ndim == 3 else a.shape[1]))
        return prep.mean + prep.scale * g

    return denoiser


# ---------------------------------------------------------------------------------------
# ntk_kernel: the same estimator in closed form
# ---------------------------------------------------------------------------------------


@ESTIMATORS.register("ntk_kernel")
class NTKKernel(_NTKBase):
    r"""Kernel gradient descent with the analytic ReLU NTK, in closed form (docs/theory.md A.4, A.5).

    The infinite-width limit of ``ntk``: the same data, input map, labels and step size;
    ``f_k(z) = K(z, Z) U diag((1 - (1 - lr lambda)^k) / (n lambda)) U^T Y`` from one
    eigendecomposition of ``H / n``.  Builds nothing larger than the ``n x n`` Gram (and
    ``n_test x n`` blocks when predicting); refuses ``n_train`` (minus the validation
    points) above ``max_n``.  Any ``k`` costs the same, so ``iterations`` is only the horizon
    (and the held-out curve is evaluated only at the ``log_points`` logged iterations).
    The rule's ``k_hat`` is recorded whatever the stopping.

    Parameters
    ----------
    n_train
        Number of training pairs, validation pairs included.
    iterations
        The iteration budget (the horizon of the rule and of the logged curve).
    seconds
        Wall-time budget; ``None``: none.
    lr
        Step size; ``None``: ``1 / mean_i K(z_i, z_i)``.
    stopping
        ``rule`` (the early-stopping rule, docs/theory.md A.5), ``validation`` or ``none``.
    val_fraction
        Fraction of the ``n_train`` pairs held out for the validation loss (at least one pair
        when positive).
    sigma_xi, rkhs_norm
        Label-noise scale and RKHS radius of the rule; ``None``: the LMMSE bound and the
        GCV estimate (docs/theory.md A.9).
    t_min
        Training cut-off: times are drawn from ``U[t_min, T]``; ``None``: the process's ``t_min``.
    radius
        Radius ``R`` of the projection of the normalised input onto a ball; ``None``: none.
    log_points
        Number of geometrically spaced iterations at which the losses are logged.
    max_n
        The largest number of fitted pairs whose Gram matrix is eigendecomposed.
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
        g = torch.cat([relu_ntk(zz[b], z_train) @ weights for b in row_blocks(zz.shape[0], z_train.shape[0])])
        return prep.mean + prep.scale * g

    return denoiser
