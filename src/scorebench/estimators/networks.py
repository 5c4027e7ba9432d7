r"""Time-conditioned score networks and the denoising-score-matching (DSM) training loop they share.

Two networks map ``(x, t)`` to a score estimate, both conditioned on time through fixed Fourier
features of the log noise level and both normalising ``x`` by the data statistics:

* :class:`ScoreMLP` (``mlp_dsm``): an MLP on ``(c_in(t) (x - alpha_t m), e(t))`` with SiLU
  activations.  Output parametrisation ``noise``: the network predicts the noise ``eps`` of
  ``x_t = alpha_t x_0 + sigma_t eps`` and ``s = -eps_hat / sigma_t``; ``score``: ``s = c_in(t) F``
  (the score of a Gaussian with the data's mean and variance is ``-c_in^2 (x - alpha_t m)``, so the
  network output ``F`` has unit scale).
* :class:`LipschitzMLP` (``lipschitz``, family ``network``): ``s(x, t) = L g(x, t) - c x`` with ``g``
  1-Lipschitz in ``x`` for every ``t``, hence ``Lip_x(s) <= L + c`` (Bruno et al. 2023,
  docs/theory.md B.1: the approximating class is Lipschitz in ``x``).

Input scaling: ``c_in(t) = 1 / sqrt(alpha_t^2 v + sigma_t^2)`` with ``v`` the mean per-coordinate
variance and ``m`` the mean of the training data, so that the network input has unit scale under
VP, OU and VE alike (VE's ``sigma_t`` reaches 50).  Time features: ``u(t) = log(sigma_t / alpha_t)``
(the EDM noise level) mapped affinely onto ``[-1, 1]`` over ``[t_min, T]``, then
``e(t) = (u, sin(pi k u), cos(pi k u))_{k=1..8}``; the log noise level is a monotone time change
common to every process.

Training (:func:`train_dsm`): Adam on the weighted DSM loss of :func:`.training.dsm_loss`, minibatches
of ``batch_size`` indices drawn uniformly with replacement from the fixed training set, a fresh time
``t ~ U[t_min, T]`` and fresh noise for every pair in every batch; optional exponential moving average
(EMA) of the weights; optional early stopping on a held-out DSM loss.  Every draw (initialisation,
indices, times, noise) comes from the fit's generator, on its device; the global RNG is not touched.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .training import (
    WEIGHTINGS,
    Budget,
    TrainingRecord,
    check_finite_loss,
    process_scales,
    sample_times,
    training_samples,
)

if TYPE_CHECKING:
    from ..processes import ForwardProcess
    from ..targets.base import Target

#: number of sine/cosine frequency pairs of the time features
TIME_FREQUENCIES = 8
#: dimension of the time features ``e(t)``
TIME_FEATURES = 2 * TIME_FREQUENCIES + 1
#: the validation DSM loss pairs each held-out point with at least this many fixed ``(t, z)`` draws ...
VAL_MIN_REPEATS = 4
#: ... and with enough of them to make at least this many pairs in all
VAL_PAIRS = 8192
#: number of loss records over a full budget
LOG_POINTS = 100
#: activations of :class:`ScoreMLP`
SCORE_MLP_ACTIVATIONS = ("silu", "relu")
#: activations of :class:`LipschitzMLP` (all 1-Lipschitz)
LIPSCHITZ_ACTIVATIONS = ("maxmin", "relu", "tanh")
#: output parametrisations of :class:`ScoreMLP`
PARAMETRIZATIONS = ("noise", "score")


def minibatch_error(estimator: str, batch_size: int, n_fit: int, what: str = "n_train") -> ValueError:
    """The error for a training set smaller than one minibatch."""
    return ValueError(
        f"{estimator}: batch_size = {batch_size} is larger than the training set ({what} = {n_fit}): "
        "n smaller than a minibatch; lower batch_size or raise n_train"
    )



def init_linear(fan_in: int, fan_out: int, generator: torch.Generator, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """PyTorch's default ``nn.Linear`` initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, from ``generator``."""
    bound = 1.0 / math.sqrt(fan_in)
    dev = generator.device
    w = torch.empty((fan_out, fan_in), device=dev, dtype=dtype).uniform_(-bound, bound, generator=generator)
    b = torch.empty(fan_out, device=dev, dtype=dtype).uniform_(-bound, bound, generator=generator)
    return w, b


def split_training_data(
    data: Target | Tensor, n_train: int, val_fraction: float, generator: torch.Generator,
) -> tuple[Tensor, Tensor | None]:
    """``n_train`` float64 points, split at random into a training part and a held-out part.

    Training samples reach it already checked to be finite (:func:`.training.check_training_data`).
    """
    x = training_samples(data, n_train, generator, dtype=torch.float64)
    n_val = round(val_fraction * n_train)
    if n_val == 0:
        return x, None
    perm = torch.randperm(n_train, generator=generator, device=x.device)
    return x[perm[n_val:]], x[perm[:n_val]]


def data_statistics(x: Tensor) -> tuple[Tensor, float]:
    """Mean vector and mean per-coordinate variance (1 for a single point) of the training data."""
    var = float(x.var(dim=0, unbiased=False).mean()) if x.shape[0] > 1 else 1.0
    return x.mean(dim=0), var if var > 0 else 1.0


class TimeConditioned(nn.Module):
    """Holds the process, the data statistics ``(m, v)`` and computes ``alpha_t, sigma_t, c_in(t), e(t)``."""

    def __init__(self, process: ForwardProcess, mean: Tensor, var: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.process = process
        self.dim = int(mean.shape[0])
        self.register_buffer("mean", mean.detach().to(dtype).clone())
        self.var = float(var)
        t_ends = torch.tensor([process.t_min, process.T], dtype=torch.float64)
        u = self._log_level(*process_scales(process, t_ends))
        self.u_lo, self.u_hi = float(u[0]), float(u[1])

    @staticmethod
    def _log_level(alpha: Tensor, sigma: Tensor) -> Tensor:
        return torch.log((sigma / alpha).clamp_min(1e-12))

    def scales(self, t: Tensor, scales: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(alpha_t, sigma_t, c_in(t))`` per row, in ``t``'s dtype (``scales``: ``(alpha_t, sigma_t)`` if known)."""
        alpha, sigma = process_scales(self.process, t) if scales is None else scales
        c_in = torch.rsqrt(alpha**2 * self.var + sigma**2)
        return alpha, sigma, c_in

    def features(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        """Fourier features ``e(t)`` of the normalised log noise level, shape ``(n, TIME_FEATURES)``."""
        u = self._log_level(alpha, sigma)
        u = 2.0 * (u - self.u_lo) / max(self.u_hi - self.u_lo, 1e-12) - 1.0
        k = torch.arange(1, TIME_FREQUENCIES + 1, device=u.device, dtype=u.dtype)
        angles = math.pi * u[:, None] * k
        return torch.cat([u[:, None], torch.sin(angles), torch.cos(angles)], dim=1)

    def centred(self, x: Tensor, alpha: Tensor) -> Tensor:
        return x - alpha[:, None] * self.mean


class ScoreMLP(TimeConditioned):
    r"""Time-conditioned MLP score model (the practice baseline of DSM training).

    ``F = W_out phi(... phi(W_1 [c_in (x - alpha_t m), e(t)] + b_1) ...) + b_out`` with ``depth``
    hidden layers of ``width`` units and activation ``phi`` (``silu``, the default, or ``relu``:
    the deep ReLU networks of the approximation theory, e.g. Fu & Lee 2025);
    ``s = -F / sigma_t`` (``noise``) or ``s = c_in F`` (``score``).
    """

    def __init__(
        self, process: ForwardProcess, mean: Tensor, var: float, width: int, depth: int, parametrization: str,
        generator: torch.Generator, dtype: torch.dtype = torch.float32, activation: str = "silu",
    ) -> None:
        super().__init__(process, mean, var, dtype)
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {', '.join(PARAMETRIZATIONS)}, got {parametrization!r}")
        if activation not in SCORE_MLP_ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(SCORE_MLP_ACTIVATIONS)}, got {activation!r}")
        self.parametrization = parametrization
        self.activation = activation
        sizes = [self.dim + TIME_FEATURES] + [width] * depth + [self.dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            w, b = init_linear(fan_in, fan_out, generator, dtype)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: Tensor, t: Tensor, scales: tuple[Tensor, Tensor] | None = None) -> Tensor:
        alpha, sigma, c_in = self.scales(t, scales)
        h = torch.cat([self.centred(x, alpha) * c_in[:, None], self.features(alpha, sigma)], dim=1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.nn.functional.linear(h, w, b)
            if i < last:
                h = torch.nn.functional.silu(h) if self.activation == "silu" else torch.relu(h)
        if self.parametrization == "noise":
            return -h / sigma[:, None]
        return h * c_in[:, None]


def _activation(name: str, h: Tensor) -> Tensor:
    if name == "maxmin":
        a, b = h.chunk(2, dim=1)
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)
    if name == "relu":
        return torch.relu(h)
    return torch.tanh(h)


class LipschitzMLP(TimeConditioned):
    r"""Score network with a guaranteed Lipschitz constant ``L + skip`` in ``x``.

    ``s(x, t) = L g(x, t) - skip * x`` with

        g = W_out h_K + B_out e(t) + b_out,   h_k = phi(W_k h_{k-1} + B_k e(t) + b_k),
        h_0 = min(1, c_in(t)) (x - alpha_t m),

    ``phi`` 1-Lipschitz (``maxmin``: GroupSort with groups of two, Anil et al. 2019; ``relu``; ``tanh``)
    and every matrix acting on ``x`` (``W_1, ..., W_K, W_out``) replaced by ``W / max(1, ||W||_2)``.
    The time-feature matrices ``B_k`` and the biases are free: they do not act on ``x``.  Hence
    ``Lip_x(g) <= min(1, c_in) prod ||W_k / max(1, ||W_k||_2)||_2 <= 1`` and ``Lip_x(s) <= L + skip``.

    During training ``||W||_2`` is estimated by one power iteration per step on a persistent vector
    (Miyato et al. 2018); that estimate is a lower bound, so :meth:`freeze` (called at the end of
    every fit; call it before using a network built by hand) divides by the exact largest singular
    value ``torch.linalg.matrix_norm(W, 2)``, computed in float64 and enlarged by a relative
    ``1e-6`` against rounding; the frozen model satisfies the bound for certain.  ``weight_spectral_norms``
    in the fit record are the raw norms ``||W||_2`` (above 1 where the normalisation is active).
    """

    def __init__(
        self, process: ForwardProcess, mean: Tensor, var: float, L: float, width: int, depth: int,
        generator: torch.Generator, skip: float = 0.0, activation: str = "maxmin", dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(process, mean, var, dtype)
        if activation not in LIPSCHITZ_ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(LIPSCHITZ_ACTIVATIONS)}, got {activation!r}")
        if activation == "maxmin" and width % 2:
            raise ValueError(f"activation 'maxmin' needs an even width, got {width}")
        self.L, self.skip, self.activation = float(L), float(skip), activation
        sizes = [self.dim] + [width] * depth + [self.dim]
        self.weights = nn.ParameterList()
        self.time_weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            w, b = init_linear(fan_in + TIME_FEATURES, fan_out, generator, dtype)
            self.weights.append(nn.Parameter(w[:, :fan_in].contiguous()))
            self.time_weights.append(nn.Parameter(w[:, fan_in:].contiguous()))
            self.biases.append(nn.Parameter(b))
        for i, w in enumerate(self.weights):
            u = torch.randn(w.shape[0], generator=generator, device=generator.device, dtype=dtype)
            self.register_buffer(f"u{i}", u / u.norm())
        with torch.no_grad():
            for i in range(len(self.weights)):
                self._power_iteration(i, 10)
        self.frozen = False

    def _power_iteration(self, i: int, steps: int) -> tuple[Tensor, Tensor]:
        w = self.weights[i].detach()
        u, v = getattr(self, f"u{i}"), w.T @ getattr(self, f"u{i}")
        for _ in range(steps):
            v = w.T @ u
            v = v / v.norm().clamp_min(1e-12)
            u = w @ v
            u = u / u.norm().clamp_min(1e-12)
        getattr(self, f"u{i}").copy_(u)
        return u, v

    def normalised_weights(self) -> list[Tensor]:
        """``W / max(1, ||W||_2)`` per layer: exact once frozen, power-iteration estimate while training."""
        if self.frozen:
            return [getattr(self, f"frozen{i}") for i in range(len(self.weights))]
        out = []
        for i, w in enumerate(self.weights):
            if self.training:
                with torch.no_grad():
                    u, v = self._power_iteration(i, 1)
            else:
                u = getattr(self, f"u{i}")
                v = w.detach().T @ u
                v = v / v.norm().clamp_min(1e-12)
            sigma = torch.dot(u, w @ v)
            out.append(w / sigma.clamp_min(1.0))
        return out

    @torch.no_grad()
    def freeze(self) -> LipschitzMLP:
        """Fix the weights at ``W / max(1, ||W||_2 (1 + 1e-6))`` with the exact spectral norm."""
        for i, w in enumerate(self.weights):
            w64 = w.detach().double()
            norm = float(torch.linalg.matrix_norm(w64, 2)) * (1.0 + 1e-6)
            self.register_buffer(f"frozen{i}", (w64 / max(1.0, norm)).to(w.dtype))
        self.frozen = True
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def forward(self, x: Tensor, t: Tensor, scales: tuple[Tensor, Tensor] | None = None) -> Tensor:
        alpha, sigma, c_in = self.scales(t, scales)
        e = self.features(alpha, sigma)
        h = self.centred(x, alpha) * c_in.clamp_max(1.0)[:, None]
        weights = self.normalised_weights()
        last = len(weights) - 1
        for i, (w, bt, b) in enumerate(zip(weights, self.time_weights, self.biases, strict=True)):
            h = h @ w.T + e @ bt.T + b
            if i < last:
                h = _activation(self.activation, h)
        return self.L * h - self.skip * x


def dsm_objective(model: nn.Module, xt: Tensor, t: Tensor, z: Tensor, scales: tuple[Tensor, Tensor],
                  weighting: str) -> Tensor:
    """Mean ``lambda(t) || s(x_t, t) + z / sigma_t ||^2``, ``(alpha_t, sigma_t)`` given (one process call per batch).

    The weights are those of :func:`.training.dsm_weight`: ``1``, ``sigma^2``, ``sigma^4 / alpha^2``.
    """
    alpha, sigma = scales
    residual = model(xt, t, scales) + z / sigma[:, None]
    if weighting == "score":
        weight = torch.ones_like(sigma)
    elif weighting == "noise":
        weight = sigma**2
    elif weighting == "denoiser":
        weight = sigma**4 / alpha**2
    else:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    return (weight * residual.pow(2).sum(dim=1)).mean()


def dsm_batch(x0: Tensor, process: ForwardProcess, generator: torch.Generator
              ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
    """``(x_t, t, z, (alpha_t, sigma_t))``: ``t ~ U[t_min, T]``, ``z ~ N(0, I)``, ``x_t = alpha_t x_0 + sigma_t z``."""
    t = sample_times(process, x0.shape[0], generator, dtype=x0.dtype)
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    alpha, sigma = process_scales(process, t)
    return alpha[:, None] * x0 + sigma[:, None] * z, t, z, (alpha, sigma)


@torch.no_grad()
def _held_out_loss(model: nn.Module, pairs: tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]], weighting: str,
                   chunk: int = 16_384) -> float:
    xt, t, z, (alpha, sigma) = pairs
    total = torch.zeros((), device=xt.device, dtype=torch.float64)
    for lo in range(0, xt.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        loss = dsm_objective(model, xt[sl], t[sl], z[sl], (alpha[sl], sigma[sl]), weighting)
        total += loss.double() * t[sl].shape[0]
    return float(total / xt.shape[0])


def train_dsm(
    model: nn.Module, x_train: Tensor, process: ForwardProcess, *, weighting: str, lr: float, batch_size: int,
    budget: Budget, generator: torch.Generator, record: TrainingRecord, ema: float = 0.0,
    x_val: Tensor | None = None, patience: int = 10,
) -> nn.Module:
    r"""Train ``model`` (a module ``(x, t) -> score``) by Adam on the weighted DSM loss; return the model to use.

    One iteration: ``batch_size`` indices uniform with replacement in the training set, one
    ``t ~ U[t_min, T]`` and one ``z ~ N(0, I)`` per pair, one Adam step.  The loss is logged as the
    mean minibatch loss over every ``max(1, iterations // 100)`` iterations (and at the last one);
    a non-finite logged loss raises :class:`.training.FitDiverged`.

    ``ema > 0``: a copy of the weights follows ``w_ema <- ema w_ema + (1 - ema) w`` after every step
    and is the returned model.  ``x_val``: held-out points, each paired with
    ``max(4, ceil(8192 / n_val))`` ``(t, z)`` draws fixed for the whole fit; the held-out DSM loss
    of the returned weights (EMA ones if on) is logged with the training loss, the best weights
    are kept, and training stops after ``patience`` log points without improvement
    (``stop_reason = "validation"``); the returned model is the best one and ``record.stopped_at``
    its iteration.
    """
    n = x_train.shape[0]
    if batch_size > n:
        raise minibatch_error(record.estimator, batch_size, n)
    dev = x_train.device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    averaged: nn.Module | None = None
    if ema > 0:
        averaged = copy.deepcopy(model)
        for p in averaged.parameters():
            p.requires_grad_(False)
    returned = model if averaged is None else averaged
    val_pairs = None
    if x_val is not None:
        repeats = max(VAL_MIN_REPEATS, math.ceil(VAL_PAIRS / x_val.shape[0]))
        val_pairs = dsm_batch(x_val.repeat(repeats, 1), process, generator)
    best_val, best_iteration, best_state, since_best = math.inf, 0, None, 0
    log_every = max(1, budget.iterations // LOG_POINTS)
    out_of_time = budget.clock()
    running = torch.zeros((), device=dev, dtype=torch.float64)
    count = 0
    iteration = 0
    stop = "iterations"
    model.train()
    for iteration in range(1, budget.iterations + 1):
        idx = torch.randint(n, (batch_size,), generator=generator, device=dev)
        xt, t, z, scales = dsm_batch(x_train[idx], process, generator)
        loss = dsm_objective(model, xt, t, z, scales, weighting)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if averaged is not None:
            with torch.no_grad():
                for pa, p in zip(averaged.parameters(), model.parameters(), strict=True):
                    pa.mul_(ema).add_(p, alpha=1.0 - ema)
                for ba, b in zip(averaged.buffers(), model.buffers(), strict=True):
                    ba.copy_(b)
        running += loss.detach().double()
        count += 1
        timed_out = out_of_time()
        if iteration % log_every and iteration != budget.iterations and not timed_out:
            continue
        mean_loss = float(running / count)
        running.zero_()
        count = 0
        check_finite_loss(mean_loss, iteration, record)
        val = None
        if val_pairs is not None:
            returned.eval()
            val = _held_out_loss(returned, val_pairs, weighting)
            model.train()
            check_finite_loss(val, iteration, record)
            if val < best_val:
                best_val, best_iteration, since_best = val, iteration, 0
                best_state = copy.deepcopy(returned.state_dict())
            else:
                since_best += 1
        record.log(iteration, mean_loss, val)
        if val_pairs is not None and since_best >= patience:
            stop = "validation"
            break
        if timed_out:
            stop = "seconds"
            break
    record.iterations = iteration
    record.stop_reason = stop
    record.stopped_at = iteration
    if best_state is not None:
        returned.load_state_dict(best_state)
        record.stopped_at = best_iteration
        record.extra["best_val_loss"] = best_val
    returned.eval()
    return returned
