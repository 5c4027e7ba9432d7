r"""Shared machinery for learned score estimators: training data, DSM pairs, budgets, records.

Every learned estimator draws ``n_train`` samples ``x_0`` from the target (or takes the
tensor it is given), pairs each with one diffusion time and one Gaussian noise draw
(docs/theory.md A.2: ``x_t = alpha_t x_0 + sigma_t z``), trains within a :class:`Budget`
(iterations and/or wall seconds), and returns a :class:`LearnedScore` whose
:class:`TrainingRecord` keeps the loss curve, the stopping iteration and why it stopped,
and the fit seconds.  :class:`LearnedEstimator` holds the ``fit`` they share; each implements
only its ``_fit``.  A loss that becomes NaN or infinite raises :class:`FitDiverged`,
which the runner records as a cell with status ``diverged``.

Denoising score matching (Vincent 2011) at time ``t``:
``E || s(x_t, t) - grad log p(x_t | x_0) ||^2`` with ``grad log p(x_t | x_0) = -z / sigma_t``.
It equals the true score error ``E || s - grad log p_t ||^2`` plus a constant ``c(t)``
that does not depend on ``s`` (docs/theory.md F.6); :func:`dsm_constant` computes ``c(t)`` for
targets with exact marginals, so a held-out DSM loss becomes an exact excess risk.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..processes import ForwardProcess
from ..targets.base import Target, check_points
from ..validation import is_int_at_least, is_positive_real
from .base import Estimator, ScoreModel, default_generator

if TYPE_CHECKING:
    from ..processes import Time

#: why training stopped
STOP_REASONS = ("iterations", "seconds", "rule", "validation", "converged", "diverged")

#: time weightings lambda(t) of the DSM loss (all give the same minimiser in the infinite-data limit)
WEIGHTINGS = ("score", "noise", "denoiser")


class FitDiverged(RuntimeError):
    """Training produced a non-finite loss; carries the record up to that point."""

    def __init__(self, message: str, record: TrainingRecord) -> None:
        super().__init__(message)
        self.record = record


@dataclass
class TrainingRecord:
    """What a fit did: the loss curve, the stop and its reason, the wall time.

    ``losses[k]`` is the training loss after iteration ``k`` (every ``log_every``-th
    iteration, see ``loss_iterations``); ``val_losses`` the held-out loss at the same
    iterations when the estimator keeps a validation set; ``stopped_at`` the iteration
    whose parameters the returned model uses.
    """

    estimator: str
    loss_iterations: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    iterations: int = 0
    stopped_at: int = 0
    stop_reason: str = "iterations"
    fit_seconds: float = 0.0
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self, iteration: int, loss: float, val_loss: float | None = None) -> None:
        self.loss_iterations.append(int(iteration))
        self.losses.append(float(loss))
        if val_loss is not None:
            self.val_losses.append(float(val_loss))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats become ``None``)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, list):
                return [clean(u) for u in v]
            if isinstance(v, dict):
                return {k: clean(u) for k, u in v.items()}
            return v

        return clean({
            "estimator": self.estimator, "status": self.status, "iterations": self.iterations,
            "stopped_at": self.stopped_at, "stop_reason": self.stop_reason, "fit_seconds": self.fit_seconds,
            "loss_iterations": self.loss_iterations, "losses": self.losses, "val_losses": self.val_losses,
            "extra": self.extra,
        })


@dataclass(frozen=True)
class Budget:
    """Training budget: at most ``iterations`` steps and, if given, at most ``seconds`` of wall time.

    A wall-time budget makes results depend on the machine; iteration budgets are the
    reproducible default, seconds a safety cap.
    """

    iterations: int
    seconds: float | None = None

    def __post_init__(self) -> None:
        if not is_int_at_least(self.iterations, 1):
            raise ValueError(f"iterations must be an integer >= 1, got {self.iterations!r}")
        if self.seconds is not None and not is_positive_real(self.seconds):
            raise ValueError(f"seconds must be a positive number or omitted, got {self.seconds!r}")

    def clock(self) -> Callable[[], bool]:
        """A function that says whether the wall-time budget is spent."""
        start = time.perf_counter()
        limit = self.seconds
        return (lambda: False) if limit is None else (lambda: time.perf_counter() - start > limit)


def check_finite_loss(loss: float, iteration: int, record: TrainingRecord) -> None:
    """Raise :class:`FitDiverged` (and mark the record) when ``loss`` is not finite."""
    if not math.isfinite(loss):
        record.status = "diverged"
        record.stop_reason = "diverged"
        record.iterations = iteration
        raise FitDiverged(f"{record.estimator}: training loss became {loss} at iteration {iteration}", record)


def training_samples(
    data: Target | Tensor, n_train: int, generator: torch.Generator | None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``n_train`` training points: drawn from a target, or the first ``n_train`` rows of a tensor.

    The tensor is moved to the generator's device; a tensor with fewer than ``n_train`` rows
    is an error (say ``n_train`` explicitly to use fewer).
    """
    device = generator.device if generator is not None else torch.device("cpu")
    if isinstance(data, Target):
        return data.sample(n_train, generator, dtype=dtype).to(device)
    if not isinstance(data, Tensor):
        raise TypeError(data_type_message(data))
    check_points(data, data.shape[-1] if data.ndim == 2 else -1)
    if data.shape[0] < n_train:
        raise ValueError(f"n_train = {n_train} but only {data.shape[0]} training samples were given")
    return data[:n_train].to(device=device, dtype=dtype)


def sample_times(
    process: ForwardProcess, n: int, generator: torch.Generator | None, t_min: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``n`` times uniform on ``[t_min, T]`` (``t_min`` defaults to the process's)."""
    lo = process.t_min if t_min is None else t_min
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, generator=generator, device=device, dtype=dtype)
    return lo + (process.T - lo) * u


def dsm_pairs(
    x0: Tensor, process: ForwardProcess, generator: torch.Generator | None, t_min: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One ``(x_t, t, z)`` per row of ``x0``: ``t ~ U[t_min, T]``, ``x_t = alpha_t x_0 + sigma_t z``."""
    t = sample_times(process, x0.shape[0], generator, t_min, dtype=x0.dtype)
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    alpha, sigma = process_scales(process, t)
    return alpha[:, None] * x0 + sigma[:, None] * z, t, z


def process_scales(process: ForwardProcess, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(alpha_t, sigma_t)`` as tensors of ``t``'s dtype and device."""
    tc = t.detach().to("cpu", torch.float64)
    alpha = torch.as_tensor(process.alpha(tc), dtype=t.dtype).to(t.device)
    sigma = torch.as_tensor(process.sigma(tc), dtype=t.dtype).to(t.device)
    return alpha, sigma


def dsm_weight(process: ForwardProcess, t: Tensor, weighting: str) -> Tensor:
    r"""``lambda(t)`` for the DSM loss ``lambda(t) || s(x_t, t) + z / sigma_t ||^2``.

    * ``score``: ``1`` (plain score matching error);
    * ``noise``: ``sigma_t^2`` (noise prediction, Ho et al. 2020 / Song et al. 2021);
    * ``denoiser``: ``sigma_t^4 / alpha_t^2`` (data prediction, the least-squares form of Han et al., A.2).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    alpha, sigma = process_scales(process, t)
    if weighting == "score":
        return torch.ones_like(t)
    if weighting == "noise":
        return sigma**2
    return sigma**4 / alpha**2


def dsm_loss(
    score: Callable[[Tensor, Tensor], Tensor], xt: Tensor, t: Tensor, z: Tensor, process: ForwardProcess,
    weighting: str = "score",
) -> Tensor:
    """Mean weighted DSM loss over the pairs (differentiable in ``score``'s parameters)."""
    _, sigma = process_scales(process, t)
    residual = score(xt, t) + z / sigma[:, None]
    return (dsm_weight(process, t, weighting) * residual.pow(2).sum(dim=1)).mean()


def dsm_constant(target: Target, process: ForwardProcess, t: Tensor, generator: torch.Generator | None,
                 n_mc: int = 20_000) -> Tensor:
    r"""``c(t) = d / sigma_t^2 - E || grad log p_t(X_t) ||^2`` for each time in ``t`` (docs/theory.md F.6).

    DSM loss at ``t`` = true score error at ``t`` + ``c(t)``.  Monte Carlo over ``n_mc`` draws of
    ``X_t`` per time; exact for Gaussians up to that Monte Carlo error.
    """
    out = torch.empty(t.shape[0], dtype=torch.float64)
    for i, ti in enumerate(t.tolist()):
        marginal = target.marginal(process, ti)
        x = marginal.sample(n_mc, generator, dtype=torch.float64)
        fisher = marginal.score(x).pow(2).sum(dim=1).mean()
        out[i] = target.dim / float(process.sigma(ti)) ** 2 - fisher
    return out


class LearnedScore(ScoreModel):
    """A score model given by a function ``(x, t_per_row) -> score`` plus its training record.

    The function is evaluated in the dtype it was trained in and the result is cast back to
    ``x``'s dtype, so float32 sampling of a float64-trained model (or the reverse) works.
    """

    def __init__(
        self, dim: int, process: ForwardProcess, fn: Callable[[Tensor, Tensor], Tensor], record: TrainingRecord,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(dim, process)
        self.fn = fn
        self.record = record
        self.dtype = dtype

    def score(self, x: Tensor, t: Time) -> Tensor:
        tt = torch.as_tensor(t, dtype=self.dtype, device=x.device)
        if tt.ndim == 0:
            tt = tt.expand(x.shape[0])
        with torch.no_grad():
            return self.fn(x.to(self.dtype), tt).to(x.dtype)


def data_type_message(data: object) -> str:
    """The one message for ``fit`` data that is neither a target nor a tensor."""
    return f"data must be a Target or a tensor of shape (n, d), got {type(data).__name__}"


def check_training_data(data: Target | Tensor, estimator: str) -> None:
    """Refuse training samples that are not a floating-point ``(n, d)`` tensor of finite values.

    The one check of the data every learned estimator runs before training
    (:meth:`LearnedEstimator.fit`).  Every row is checked, including rows beyond the ``n_train``
    an estimator uses.  A target passes: its draws are its own.

    Parameters
    ----------
    data
        A :class:`~scorebench.targets.Target` or a tensor of training samples.
    estimator
        The estimator's name, which the message starts with.

    Raises
    ------
    ValueError
        If the tensor is not two-dimensional, not floating-point, or has a NaN or infinite entry.
    """
    if isinstance(data, Target):
        return
    if data.ndim != 2:
        raise ValueError(f"{estimator}: the training data must have shape (n, d), got {tuple(data.shape)}")
    if not data.is_floating_point():
        raise ValueError(f"{estimator}: the training data must be a floating-point tensor, got {data.dtype}")
    if not bool(torch.isfinite(data).all()):
        raise ValueError(f"{estimator}: the training data contain non-finite values (NaN or inf)")


class LearnedEstimator(Estimator):
    """An estimator that trains a model on data: the ``fit`` every learned estimator shares.

    :meth:`fit` checks its arguments (training samples must be a finite floating-point ``(n, d)``
    tensor, :func:`check_training_data`), takes the default generator when none is given (a CPU
    generator seeded with 0, :func:`~.base.default_generator`), starts the clock, creates the
    :class:`TrainingRecord` under the estimator's name, calls :meth:`_fit`, and sets the record's
    ``fit_seconds`` to the wall time of the whole fit.  A new learned estimator implements
    :meth:`_fit` only.  A fit whose loss becomes non-finite raises :class:`FitDiverged` from
    :meth:`_fit`, carrying the record as it stood (its ``fit_seconds`` left at 0).
    """

    def fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator | None = None
    ) -> LearnedScore:
        """Train on ``data`` (a target to draw from, or a tensor of training samples) for ``process``.

        Parameters
        ----------
        data
            A :class:`~scorebench.targets.Target` or a tensor of shape ``(n, d)``.
        process
            The forward process whose marginal scores are estimated.
        generator
            Source of every random draw of the fit; ``None`` means a CPU generator seeded with 0.

        Returns
        -------
        LearnedScore
            The fitted model; its ``record`` is the :class:`TrainingRecord` of this fit.

        Raises
        ------
        TypeError
            If ``data``, ``process`` or ``generator`` is of the wrong type.
        ValueError
            If training samples are not a floating-point ``(n, d)`` tensor of finite values.
        """
        if not isinstance(data, Target | Tensor):
            raise TypeError(data_type_message(data))
        check_training_data(data, self.name)
        if not isinstance(process, ForwardProcess):
            raise TypeError(f"{self.name}: process must be a ForwardProcess, got {type(process).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{self.name}: generator must be a torch.Generator or None, got {type(generator).__name__}")
        generator = default_generator(generator)
        start = time.perf_counter()
        record = TrainingRecord(self.name)
        model = self._fit(data, process, generator, record)
        if not isinstance(model, LearnedScore) or model.record is not record:
            got = type(model).__name__ if not isinstance(model, LearnedScore) else "a LearnedScore with another record"
            raise TypeError(
                f"{self.name}: _fit must return a LearnedScore carrying the record it was given, got {got}"
            )
        record.fit_seconds = time.perf_counter() - start
        return model

    @abstractmethod
    def _fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord
    ) -> LearnedScore:
        """Train and return the model (arguments already checked, ``generator`` never ``None``).

        Parameters
        ----------
        data, process
            As given to :meth:`fit`.
        generator
            The fit's generator; every random draw goes through it, in a fixed order.
        record
            The fit's :class:`TrainingRecord`: log the losses, the stop and ``extra`` into it,
            and return it as the model's ``record``.

        Returns
        -------
        LearnedScore
            The fitted model carrying ``record``.
        """
