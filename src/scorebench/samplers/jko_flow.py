r"""Neural JKO flow: one invertible residual block per JKO step, trained block-wise (docs/theory.md E.2, E.3 #1).

Each step ``k`` of the time grid is a JKO (Wasserstein proximal) step toward ``pi = p_{t_min}``,

    rho_{k+1} = argmin_rho KL(rho || pi) + W2^2(rho, rho_k) / (2 h_k),

carried out by a map ``T_k`` fitted to the particles ``x_i ~ rho_k``.  With ``V = -log pi`` and
``T#rho_k`` in place of ``rho``, the objective becomes (Xu, Cheng, Xie 2023, JKO-iFlow; Cheng, Lu,
Tan, Xie 2024)

    L(theta) = mean_i [ V(T x_i) - log det grad T(x_i) + ||T x_i - x_i||^2 / (2 h_k) ]     (E2)

up to a constant.  Only the score ``grad log pi = score(., t_min)`` is available, so the first
term is replaced by the surrogate ``-mean_i <stopgrad(score(T x_i)), T x_i>``, which has the same
gradient in ``theta``.

The block (in coordinates standardised by its training points, ``z = (x - c)/s`` with ``c`` their
mean and ``s`` their root-mean-square spread, so the same parameters suit any scale, VE included):

    z1 = exp(S) z + b                       (affine, invertible: det = e^{tr S}, inverse exp(-S))
    z2 = z1 + g(z1)                         (i-ResNet residual, Lip(g) <= lipschitz < 1)
    T(x) = c + s z2,   log det grad T(x) = tr S + log det(I + grad g(z1)).

The affine part carries the exact Gaussian JKO map (which is affine, docs/theory.md (E3)), so on
Gaussian targets the network only has to find ``S`` and ``b``; ``g`` corrects non-Gaussian parts.
``g`` is an MLP whose weights are divided by their exact spectral norms (hidden layers to norm
<= 1, the output layer to ``lipschitz``) with a 1-Lipschitz activation, so ``z1 + g(z1)`` is
invertible (Behrmann et al. 2019, i-ResNet); it is inverted by the fixed-point iteration
``z1 <- z2 - g(z1)``, finished by Newton steps.

Log-determinant of the residual: exact, ``slogdet(I + J)`` with the Jacobian ``J`` of ``g``
formed by the chain rule in closed form (column by column as Jacobian-vector products), when
``d <= exact_logdet_dim``; above, the truncated series ``log det(I + J) = sum_{k=1}^{K} (-1)^{k+1}
tr(J^k) / k`` (Behrmann et al. 2019; Chen et al. 2019) with each trace estimated by Hutchinson's
estimator with Rademacher probes (unbiased for the truncated series; the truncation error is at
most ``d lipschitz^{K+1} / ((K+1)(1 - lipschitz))``).

Training of each block: Adam on minibatches of a training set, a cosine learning-rate decay to 0
and gradient-norm clipping, warm-started from the previous block (the first block starts at the
identity map).  The training set is ``n_train`` draws of the initial law, carried through the
blocks as they are trained (fresh draws of ``rho_k``, independent of the particles), or the
particles of the first chunk.  Later chunks are pushed through the trained blocks, so one flow
maps every particle; the run's :class:`JKOFlowState` (``SampleResult.state``) holds it, with
:meth:`JKOFlowState.forward`, :meth:`JKOFlowState.inverse` and :meth:`JKOFlowState.log_density`.

Step sizes: ``h_k`` are the spacings of the time grid rescaled to sum to ``horizon`` (as in
``jko_particle`` and ``jko_exact_gaussian``; ``horizon=None`` keeps the spacings), or, with
``growth = r``, the geometric sequence ``h_k`` proportional to ``r^k`` (JKO-iFlow grows them by
about 1.4 per block) with the same total.

Per block, ``SampleResult.info["blocks"]`` reports the step size, the final loss and gradient
norm and, when ``d <= exact_logdet_dim``, the mean residual ``eps`` of the first-order condition
``T(x) = x + h [grad log pi - grad log rho_{k+1}](T(x))`` at the particles (Cheng et al.'s
per-step error), with ``grad log rho_{k+1}`` the flow's own score, carried exactly through the
blocks by change of variables (``info["residuals"]`` lists them, as for ``jko_particle``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..params import Boolean, Interval, NoneMeans, Options
from .base import SAMPLERS, RunState, Sampler
from .jko_exact_gaussian import HORIZON, step_scale

if TYPE_CHECKING:
    from ..estimators.base import ScoreModel
    from ..processes import ForwardProcess

ACTIVATIONS = ("tanh", "softplus")
_SOFTPLUS_BETA = 20.0  # JKO-iFlow's Softplus(beta = 20); Lipschitz constant 1 for any beta


def _activation(a: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """The activation and its derivative (both 1-Lipschitz / bounded by 1)."""
    if kind == "tanh":
        y = torch.tanh(a)
        return y, 1.0 - y * y
    return torch.nn.functional.softplus(a, beta=_SOFTPLUS_BETA), torch.sigmoid(_SOFTPLUS_BETA * a)


def truncation_bound(dim: int, lipschitz: float, terms: int) -> float:
    r"""Bound on the error of the ``terms``-term series for ``log det(I + J)`` when ``||J|| <= lipschitz``:
    ``d sum_{k > K} lipschitz^k / k <= d lipschitz^{K+1} / ((K + 1)(1 - lipschitz))``."""
    return dim * lipschitz ** (terms + 1) / ((terms + 1) * (1.0 - lipschitz))


@dataclass
class FlowBlock:
    r"""One invertible JKO block ``T(x) = c + s (z1 + g(z1))``, ``z1 = exp(S) (x - c)/s + b``.

    ``weights``/``biases`` are the raw MLP parameters of ``g``; :meth:`layers` returns them
    spectrally normalised.  ``h`` is the step size the block was trained for.
    """

    center: Tensor
    scale: float
    S: Tensor
    b: Tensor
    weights: list[Tensor]
    biases: list[Tensor]
    lipschitz: float
    activation: str
    h: float = math.nan
    record: dict[str, Any] = field(default_factory=dict)
    _frozen: tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor] | None = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        return self.b.shape[0]

    def parameters(self) -> list[Tensor]:
        return [self.S, self.b, *self.weights, *self.biases]

    def copy(self, center: Tensor, scale: float) -> FlowBlock:
        """A detached copy (the warm start of the next block) with new standardisation."""
        return FlowBlock(center, scale, self.S.detach().clone(), self.b.detach().clone(),
                         [w.detach().clone() for w in self.weights], [c.detach().clone() for c in self.biases],
                         self.lipschitz, self.activation)

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """``(W / max(1, ||W||_2 / c), bias)`` per layer: ``c = 1`` for hidden layers and
        ``c = lipschitz`` for the output layer, so ``Lip(g) <= lipschitz``."""
        if self._frozen is not None:
            return self._frozen[0]
        out = []
        last = len(self.weights) - 1
        for i, (w, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            cap = self.lipschitz if i == last else 1.0
            sigma = torch.linalg.matrix_norm(w, ord=2)
            out.append((w / torch.clamp(sigma / cap, min=1.0), bias))
        return out

    def expm(self, sign: float = 1.0) -> Tensor:
        """``exp(sign * S)``."""
        if self._frozen is not None:
            return self._frozen[1] if sign > 0 else self._frozen[2]
        return torch.linalg.matrix_exp(sign * self.S)

    def freeze(self) -> None:
        """Cache the normalised layers and ``exp(+-S)`` once training is over (parameters detached)."""
        self.S, self.b = self.S.detach(), self.b.detach()
        self.weights = [w.detach() for w in self.weights]
        self.biases = [c.detach() for c in self.biases]
        self._frozen = None
        self._frozen = (self.layers(), self.expm(1.0), self.expm(-1.0))

    # -- the residual g and its Jacobian --------------------------------------------
    def residual(self, z: Tensor, layers: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, list[Tensor]]:
        """``g(z)`` and the activation derivatives at each hidden layer."""
        layers = self.layers() if layers is None else layers
        derivs = []
        a = z
        for w, bias in layers[:-1]:
            a, da = _activation(a @ w.T + bias, self.activation)
            derivs.append(da)
        w, bias = layers[-1]
        return a @ w.T + bias, derivs

    def residual_jacobian(self, derivs: list[Tensor], layers: list[tuple[Tensor, Tensor]]) -> Tensor:
        """``grad g`` per row, shape ``(n, d, d)``: ``W_L diag(act') W_{L-1} ... diag(act') W_1``, formed
        column by column as Jacobian-vector products with the unit vectors (plain matrix products)."""
        n = derivs[0].shape[0]
        eye = torch.eye(self.dim, dtype=derivs[0].dtype, device=derivs[0].device).expand(n, -1, -1)
        return self.residual_jvp(eye, derivs, layers).transpose(1, 2)

    def residual_jvp(self, v: Tensor, derivs: list[Tensor], layers: list[tuple[Tensor, Tensor]]) -> Tensor:
        """``grad g(z) v`` for ``v`` of shape ``(n, p, d)`` (``p`` vectors per row)."""
        m = derivs[0][:, None, :] * (v @ layers[0][0].T)
        for (w, _), da in zip(layers[1:-1], derivs[1:], strict=True):
            m = da[:, None, :] * (m @ w.T)
        return m @ layers[-1][0].T

    # -- the map ------------------------------------------------------------------------
    def affine(self, x: Tensor) -> Tensor:
        return ((x - self.center) / self.scale) @ self.expm().T + self.b

    def forward(
        self, x: Tensor, logdet: str = "exact", generator: torch.Generator | None = None,
        probes: int = 1, terms: int = 8,
    ) -> tuple[Tensor, Tensor | None]:
        r"""``T(x)`` and ``log det grad T(x)`` per row: ``"exact"`` (slogdet), ``"hutchinson"``
        (truncated series, Rademacher probes from ``generator``) or ``"none"``."""
        layers = self.layers()
        z1 = self.affine(x)
        g, derivs = self.residual(z1, layers)
        y = self.center + self.scale * (z1 + g)
        if logdet == "none":
            return y, None
        if logdet == "exact":
            J = self.residual_jacobian(derivs, layers)
            eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
            ld = torch.linalg.slogdet(eye + J).logabsdet
        else:
            ld = self.hutchinson_logdet(derivs, layers, generator, probes, terms, x.shape[0])
        return y, ld + torch.diagonal(self.S).sum()

    def hutchinson_logdet(
        self, derivs: list[Tensor], layers: list[tuple[Tensor, Tensor]], generator: torch.Generator | None,
        probes: int, terms: int, n: int,
    ) -> Tensor:
        r"""``sum_{k=1}^{K} (-1)^{k+1} / k * mean_p v_p^T J^k v_p`` with Rademacher ``v_p`` (an unbiased
        estimate of the ``K``-term series for ``log det(I + J)``)."""
        w0 = layers[0][0]
        v = torch.randint(0, 2, (n, probes, self.dim), generator=generator, device=w0.device).to(w0.dtype) * 2 - 1
        est = torch.zeros(n, dtype=w0.dtype, device=w0.device)
        w = v
        for k in range(1, terms + 1):
            w = self.residual_jvp(w, derivs, layers)
            est = est + ((-1) ** (k + 1) / k) * (v * w).sum(-1).mean(-1)
        return est

    def jacobian(self, x: Tensor) -> Tensor:
        """``grad T(x)`` per row, ``(n, d, d)``: ``(I + grad g(z1)) exp(S)``."""
        layers = self.layers()
        z1 = self.affine(x)
        _, derivs = self.residual(z1, layers)
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return (eye + self.residual_jacobian(derivs, layers)) @ self.expm()

    def inverse(self, y: Tensor, max_iterations: int = 1000, newton: bool = True) -> Tensor:
        r"""``T^{-1}(y)``: solve ``z1 + g(z1) = z2`` by the fixed-point iteration ``z1 <- z2 - g(z1)`` (a
        contraction with factor ``lipschitz``), switching to Newton steps ``z1 <- z1 - (I + grad g)^{-1}
        (z1 + g(z1) - z2)`` (``I + grad g`` has singular values >= ``1 - lipschitz``) once the equation's
        residual is below ``1e-3``, if ``newton``; then ``z = exp(-S)(z1 - b)``.  Raises if the residual
        has not reached ``16 eps (1 + max |z2|)`` within ``max_iterations``."""
        layers = self.layers()
        z2 = (y - self.center) / self.scale
        z1 = z2.clone()
        scale = 1.0 + (float(z2.abs().max()) if z2.numel() else 0.0)
        tol = 16 * torch.finfo(y.dtype).eps * scale
        eye = torch.eye(self.dim, dtype=y.dtype, device=y.device)
        for _ in range(max_iterations + 1):
            g, derivs = self.residual(z1, layers)
            r = z1 + g - z2
            err = float(r.abs().max()) if r.numel() else 0.0
            if err <= tol:
                break
            if newton and err < 1e-3 * scale:
                J = self.residual_jacobian(derivs, layers)
                z1 = z1 - torch.linalg.solve(eye + J, r.unsqueeze(-1)).squeeze(-1)
            else:
                z1 = z2 - g
        else:
            raise RuntimeError(f"jko_flow: the inversion did not converge in {max_iterations} iterations "
                               f"(residual {err:.3g})")
        z = (z1 - self.b) @ self.expm(-1.0).T
        return self.center + self.scale * z


def step_sizes(grid: Tensor, growth: float | None, horizon: float | None = None) -> list[float]:
    r"""``h_k``, summing to ``H = horizon`` (``None``: the grid's span): the grid's spacings times
    ``H / span`` (as ``jko_exact_gaussian``, :func:`~.jko_exact_gaussian.step_scale`), or, with
    ``growth = r``, ``H r^k / sum_j r^j``."""
    times = grid.tolist()
    if growth is None:
        scale = step_scale(grid, horizon)
        return [scale * (a - b) for a, b in itertools.pairwise(times)]
    n = len(times) - 1
    weights = [growth**k for k in range(n)]
    total = times[0] - times[-1] if horizon is None else horizon
    return [total * w / sum(weights) for w in weights]


def _init_block(d: int, width: int, depth: int, lipschitz: float, activation: str, generator: torch.Generator,
                dtype: torch.dtype, center: Tensor, scale: float) -> FlowBlock:
    """The identity map (``S = 0``, ``b = 0``) with a small random residual (output weights x 1e-2)."""
    dev = generator.device
    sizes = [d] + [width] * depth + [d]
    weights, biases = [], []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        w = torch.randn((fan_out, fan_in), generator=generator, device=dev, dtype=dtype) / math.sqrt(fan_in)
        if i == depth:
            w = 1e-2 * w
        weights.append(w)
        biases.append(torch.zeros(fan_out, device=dev, dtype=dtype))
    zeros = torch.zeros((d + 1, d), device=dev, dtype=dtype)
    return FlowBlock(center, scale, zeros[:d].clone(), zeros[d].clone(), weights, biases, lipschitz, activation)


@dataclass
class JKOFlowState(RunState):
    r"""One ``jko_flow`` run, and after it the trained flow.

    ``seed`` is the run's noise seed (hashed per block into the seeds of the networks'
    initialisation, the training set, the minibatches and the Hutchinson probes); ``h`` the step
    sizes and ``plan`` each step's start time on the grid mapped to its block index; the initial
    law is ``N(0, initial_std^2 I)`` (``from_prior``) or ``x_init``'s, unknown.  ``blocks`` are the
    blocks trained so far; ``train`` the own training set carried through them and ``flow_score``
    the flow's score at the first chunk's particles (for the first-order residual).
    """

    seed: int = 0
    h: list[float] = field(default_factory=list)
    plan: dict[float, int] = field(default_factory=dict)
    initial_std: float = 1.0
    from_prior: bool = True
    exact_logdet_dim: int = 20
    blocks: list[FlowBlock] = field(default_factory=list)
    train: Tensor | None = None
    flow_score: Tensor | None = None

    def info(self) -> dict[str, Any]:
        """``blocks``: per block, its step size, final loss and gradient norm, iterations, log-det
        mode and (exact mode) first-order residual; ``residuals``: those residuals (NaN where not
        computed)."""
        return {"blocks": [dict(b.record) for b in self.blocks],
                "residuals": [b.record.get("residual", math.nan) for b in self.blocks]}

    # -- the trained flow ----------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Push points of the initial law through every trained block."""
        with torch.no_grad():
            for block in self.blocks:
                x = block.forward(x, "none")[0]
        return x

    def inverse(self, y: Tensor, max_iterations: int = 1000) -> Tensor:
        """Pull points back through the trained blocks, last to first (:meth:`FlowBlock.inverse`; Newton
        steps when ``d <= exact_logdet_dim``)."""
        with torch.no_grad():
            for block in reversed(self.blocks):
                y = block.inverse(y, max_iterations, newton=y.shape[1] <= self.exact_logdet_dim)
        return y

    def log_density(self, y: Tensor) -> Tensor:
        r"""``log rho_N(y)`` of the flow's output law by change of variables:
        ``log N(x_0; 0, std^2 I) - sum_k log det grad T_k(x_{k-1})`` with ``x_0 = T^{-1}(y)``
        (exact log-determinants)."""
        if not self.blocks:
            raise ValueError("jko_flow: no trained blocks (run sample first)")
        if not self.from_prior:
            raise ValueError("jko_flow: the flow started from x_init, whose density is unknown")
        with torch.no_grad():
            x = self.inverse(y)
            d = y.shape[1]
            std = self.initial_std
            logp = -0.5 * x.pow(2).sum(1) / std**2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)
            for block in self.blocks:
                x, ld = block.forward(x, "exact")
                logp = logp - ld  # type: ignore[operator]
        return logp


@SAMPLERS.register("jko_flow")
class JKOFlow(Sampler):
    r"""Neural JKO flow toward ``pi = p_{t_min}``: one invertible residual block per JKO step, each
    trained on the JKO objective (E2) of its step (see the module docstring for the math).

    Training data: ``n_train`` draws of the initial law ``N(0, prior_std^2 I)`` from the sampler's
    seed, carried through the blocks as they are trained (so block ``k`` is fitted to draws of
    ``rho_k`` independent of the particles, and the output does not depend on the chunking), or,
    with ``n_train=None``, the first chunk of particles itself (the fitted maps then follow the
    particles' empirical law, whose moments they pull toward ``pi``'s, and the residual MLP can
    overfit it; ``x_init`` is only allowed in this mode).  Meant for a few JKO blocks (JKO-iFlow
    uses about 8): each block costs ``iterations`` optimiser steps.

    The integer the noise source draws from the run's generator also seeds, hashed per block, the
    networks' initialisation, the training set, the minibatches and the Hutchinson probes.
    ``SampleResult.info["blocks"]`` holds per-block records, ``info["residuals"]`` the first-order
    residuals ``eps_k``; ``SampleResult.state`` is the trained flow (:class:`JKOFlowState`).

    Parameters
    ----------
    iterations:
        Adam iterations per block (one score evaluation each: NFE ``= steps * (iterations + r)``,
        ``r = 1`` when the first-order residual is computed, i.e. ``d <= exact_logdet_dim``, else 0).
    lr:
        Initial Adam learning rate; decays to 0 by a cosine schedule within each block.
    width, depth:
        Hidden width and number of hidden layers of the residual MLP ``g``.
    activation:
        ``tanh`` or ``softplus`` (beta = 20, as JKO-iFlow).
    lipschitz:
        Bound on ``Lip(g)`` in ``(0, 1)`` (invertibility; the inverse converges like ``lipschitz^j``).
    grad_clip:
        Gradient-norm clipping threshold, or ``None`` for none.
    horizon:
        Total flow time ``sum_k h_k`` (default 10; ``None``: the time grid's span), as in
        ``jko_exact_gaussian``.
    growth:
        ``None``: ``h_k`` = the time grid's spacings (rescaled to ``horizon``).  A number ``r > 0``:
        ``h_k`` proportional to ``r^k`` (JKO-iFlow: ``r`` about 1.4), summing to the same total.
    n_train, batch_size:
        Size of the training set (``None``: the particles) and of the minibatch drawn from it, with
        replacement, at every iteration (``None``: full batch).
    exact_logdet_dim:
        Largest dimension with the exact log-determinant; above it, Hutchinson's estimator.
    probes, series_terms:
        Rademacher probes per point and terms of the log-det series (Hutchinson path).
    warm_start:
        Start each block from the previous block's parameters (else from the identity map).
    """

    noise_per_step = 0
    param_constraints: ClassVar[dict] = {
        "iterations": Interval(int, 1, None), "lr": Interval(float, 0, None, closed="neither"),
        "width": Interval(int, 1, None), "depth": Interval(int, 1, None, why="hidden layers"),
        "activation": Options(ACTIVATIONS),
        "lipschitz": Interval(float, 0, 1, closed="neither", why="invertibility"),
        "grad_clip": [Interval(float, 0, None, closed="neither"), None], "horizon": HORIZON,
        "growth": [Interval(float, 0, None, closed="neither"), NoneMeans("the grid's spacings")],
        "n_train": [Interval(int, 2, None), NoneMeans("the particles")],
        "batch_size": [Interval(int, 1, None), NoneMeans("full batch")], "exact_logdet_dim": Interval(int, 0, None),
        "probes": Interval(int, 1, None), "series_terms": Interval(int, 1, None), "warm_start": Boolean(),
    }
    test_params: ClassVar[dict] = {"iterations": 5, "width": 8, "n_train": 200, "batch_size": 100}

    def __init__(
        self, iterations: int = 300, lr: float = 2e-2, width: int = 32, depth: int = 2,
        activation: str = "tanh", lipschitz: float = 0.9, grad_clip: float | None = 10.0,
        horizon: float | None = 10.0, growth: float | None = None, n_train: int | None = 20_000,
        batch_size: int | None = 1000, exact_logdet_dim: int = 20, probes: int = 4, series_terms: int = 8,
        warm_start: bool = True,
    ) -> None:
        super().__init__()
        self.set_params_from(
            iterations=iterations, lr=lr, width=width, depth=depth, activation=activation, lipschitz=lipschitz,
            grad_clip=grad_clip, horizon=horizon, growth=growth, n_train=n_train, batch_size=batch_size,
            exact_logdet_dim=exact_logdet_dim, probes=probes, series_terms=series_terms, warm_start=warm_start,
        )

    @property
    def affine(self) -> bool:
        return False

    @property
    def batch_invariant(self) -> bool:
        """With its own training set (``n_train``) the blocks do not depend on the particles."""
        return self.n_train is not None

    @property
    def gradient_flow(self) -> bool:
        return True

    def flow_time(self, process: ForwardProcess, grid: Tensor) -> float:
        return sum(step_sizes(grid, self.growth, self.horizon))

    # -- driver hooks ----------------------------------------------------------------
    def check_init(self, x_init: Tensor, n: int, d: int) -> None:
        """Refuse ``x_init`` unless the blocks train on the particles (``n_train=None``), then check it
        as every sampler does."""
        if self.n_train is not None:
            raise ValueError(
                "jko_flow: x_init needs n_train=None (training on the particles): with n_train the blocks "
                "are trained on draws of the initial law N(0, prior_std^2 I), not of x_init's law"
            )
        super().check_init(x_init, n, d)

    def begin(self, score: ScoreModel, process: ForwardProcess, grid: Tensor, *, seed: int = 0,
              x_init: Tensor | None = None) -> JKOFlowState:
        """A flow with no blocks yet, its step sizes planned on ``grid``; ``seed`` seeds the training."""
        return JKOFlowState(seed=seed, h=step_sizes(grid, self.growth, self.horizon),
                            plan={t: k for k, t in enumerate(grid.tolist()[:-1])},
                            initial_std=self.initial_std(process), from_prior=x_init is None,
                            exact_logdet_dim=self.exact_logdet_dim)

    def _step_size(self, run: JKOFlowState, t: float, t_next: float) -> tuple[int, float]:
        if t in run.plan:
            k = run.plan[t]
            return k, run.h[k]
        if self.growth is not None or self.horizon is not None:
            raise ValueError("jko_flow: step called outside the planned grid (call begin first)")
        return len(run.blocks), t - t_next

    def step(
        self, score: ScoreModel, process: ForwardProcess, x: Tensor, t: float, t_next: float,
        noise: Tensor | None, *, state: RunState | None = None,
    ) -> Tensor:
        run = self.state_of(state, JKOFlowState)
        k, h = self._step_size(run, t, t_next)
        if k > len(run.blocks):
            raise ValueError(f"jko_flow: block {k} requested before block {len(run.blocks)} was trained")
        if k == len(run.blocks):  # the first chunk trains the block; later chunks reuse it
            run.blocks.append(self._train_block(run, score, process, x, h, k))
        with torch.no_grad():
            return run.blocks[k].forward(x, "none")[0]

    # -- training ---------------------------------------------------------------------
    @staticmethod
    def _generator(run: JKOFlowState, k: int, device: torch.device) -> torch.Generator:
        return torch.Generator(device).manual_seed((run.seed + 0x9E3779B97F4A7C15 * (k + 2)) % (2**62))

    def _training_set(self, run: JKOFlowState, x: Tensor, k: int) -> Tensor:
        """Block ``k``'s training points: the particles, or the own training set (drawn at ``k = 0``
        from the initial law, then carried through each trained block)."""
        if self.n_train is None:
            return x.detach()
        if run.train is None or k == 0:
            gen = self._generator(run, -1, x.device)
            z = torch.randn((self.n_train, x.shape[1]), generator=gen, device=x.device, dtype=x.dtype)
            run.train = run.initial_std * z
        elif run.train.shape[1] != x.shape[1] or run.train.dtype != x.dtype:
            raise ValueError("jko_flow: the particles changed dimension or dtype between blocks")
        return run.train

    def _train_block(self, run: JKOFlowState, score: ScoreModel, process: ForwardProcess, x: Tensor, h: float,
                     k: int) -> FlowBlock:
        data = self._training_set(run, x, k)
        n, d = data.shape
        gen = self._generator(run, k, x.device)
        center = data.mean(0)
        scale = float(data.var(0, unbiased=False).mean().sqrt()) if n > 1 else 1.0
        if not (math.isfinite(scale) and bool(torch.isfinite(center).all())):
            raise FloatingPointError(f"jko_flow: block {k}: non-finite particles")
        scale = max(scale, 1e-12)
        if run.blocks and self.warm_start:
            block = run.blocks[-1].copy(center, scale)
        else:
            block = _init_block(d, self.width, self.depth, self.lipschitz, self.activation, gen, x.dtype,
                                center, scale)
        block.h = h
        mode = "exact" if d <= self.exact_logdet_dim else "hutchinson"
        params = block.parameters()
        t_pi = process.t_min
        loss_value, grad_norm = math.nan, math.nan
        with torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.Adam(params, lr=self.lr)
            for it in range(self.iterations):
                for group in opt.param_groups:
                    group["lr"] = self.lr * 0.5 * (1.0 + math.cos(math.pi * it / self.iterations))
                if self.batch_size is None:
                    xb = data
                else:
                    xb = data[torch.randint(0, n, (self.batch_size,), generator=gen, device=data.device)]
                y, logdet = block.forward(xb, mode, gen, self.probes, self.series_terms)
                with torch.no_grad():
                    s = score(y.detach(), t_pi)
                transport = (y - xb).pow(2).sum(1).mean() / (2.0 * h)
                loss = -(s * y).sum(1).mean() - logdet.mean() + transport  # type: ignore[union-attr]
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"jko_flow: block {k} training loss became {loss_value} at iteration {it} "
                        "(non-finite score or particles?)"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = float(torch.sqrt(sum(p.grad.pow(2).sum() for p in params)))  # type: ignore[union-attr]
                if self.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
                opt.step()
        block.freeze()
        if self.n_train is not None:
            with torch.no_grad():
                run.train = block.forward(data, "none")[0]
        block.record = {"h": h, "loss": loss_value, "grad_norm": grad_norm, "iterations": self.iterations,
                        "logdet": mode}
        if mode == "exact":
            block.record["residual"] = self._first_order_residual(run, score, process, block, x.detach(), k)
        return block

    @staticmethod
    def _first_order_residual(run: JKOFlowState, score: ScoreModel, process: ForwardProcess, block: FlowBlock,
                              x: Tensor, k: int) -> float:
        r"""Mean ``||T(x) - x - h [s_pi - s_{k+1}](T(x))||`` with ``s_{k+1}`` the flow's score, carried by
        ``s_{k+1}(T x) = grad T(x)^{-T} [s_k(x) - grad_x log det grad T(x)]`` from ``s_0(x) = -x / std^2``."""
        if not run.from_prior:  # the initial law, hence the flow's score, is unknown
            return math.nan
        if k == 0:
            run.flow_score = -x / run.initial_std**2
        prev = run.flow_score
        if prev is None or prev.shape != x.shape:
            return math.nan
        with torch.enable_grad():
            xr = x.detach().clone().requires_grad_(True)
            y, logdet = block.forward(xr, "exact")
            (grad_ld,) = torch.autograd.grad(logdet.sum(), xr)  # type: ignore[union-attr]
        with torch.no_grad():
            jac = block.jacobian(x)
            s_next = torch.linalg.solve(jac.transpose(1, 2), (prev - grad_ld).unsqueeze(-1)).squeeze(-1)
            run.flow_score = s_next
            y = y.detach()
            res = y - x - block.h * (score(y, process.t_min) - s_next)
            return float(res.norm(dim=1).mean())

