r"""``mlp_dsm``: the practice baseline, a time-conditioned MLP trained by denoising score matching.

The network (:class:`.networks.ScoreMLP`) sees ``c_in(t) (x - alpha_t m)`` with
``c_in = 1 / sqrt(alpha_t^2 v + sigma_t^2)`` (``m``, ``v``: mean and mean per-coordinate variance of
the training data, so VP, OU and VE inputs all have unit scale) and Fourier features of the log
noise level ``log(sigma_t / alpha_t)``; SiLU activations.  It is trained with Adam on the DSM loss
(Vincent 2011; Song et al. 2021)

    E_t E_{x_0, z} lambda(t) || s(alpha_t x_0 + sigma_t z, t) + z / sigma_t ||^2,   t ~ U[t_min, T],

over minibatches of a fixed training set of ``n_train`` points, with a fresh ``t`` and ``z`` for
every pair in every batch.  Weightings (:func:`.training.dsm_weight`): ``noise``
``lambda = sigma_t^2`` (epsilon prediction, Ho et al. 2020; with the ``noise`` parametrisation the
loss is exactly ``||eps_hat - z||^2``), ``score`` ``lambda = 1``, ``denoiser``
``lambda = sigma_t^4 / alpha_t^2`` (the loss is then ``||x0_hat - x_0||^2`` with the Tweedie
denoiser ``x0_hat = (x_t + sigma_t^2 s) / alpha_t``, docs/theory.md A.2).  Output parametrisations:
``noise`` (``s = -eps_hat / sigma_t``) and ``score`` (``s = c_in F``).

Optional: an exponential moving average of the weights (``ema``, the decay; the averaged weights
are the fitted model), and early stopping on the DSM loss of a held-out fraction ``val_fraction``
of the training set (a principled proxy: the held-out DSM loss is the true score error plus a
constant, docs/theory.md F.6); the fitted model is then the best held-out one and the record's
``stopped_at`` its iteration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..validation import is_int_at_least, is_positive_real
from .base import ESTIMATORS
from .networks import (
    PARAMETRIZATIONS,
    ScoreMLP,
    data_statistics,
    minibatch_error,
    split_training_data,
    train_dsm,
)
from .training import WEIGHTINGS, Budget, LearnedEstimator, LearnedScore, TrainingRecord

if TYPE_CHECKING:
    from torch import Tensor

    from ..processes import ForwardProcess
    from ..targets.base import Target


@ESTIMATORS.register("mlp_dsm")
class MLPDSM(LearnedEstimator):
    """Time-conditioned SiLU MLP trained by denoising score matching with Adam (module docstring).

    Parameters
    ----------
    width, depth
        Hidden units per layer and number of hidden layers.
    lr, iterations, batch_size, seconds
        Adam step, iteration budget, minibatch size, optional wall-clock cap.
    n_train
        Training set size (including the held-out part when ``val_fraction > 0``).
    weighting
        ``noise`` (default, ``lambda = sigma^2``), ``score`` (``1``) or ``denoiser`` (``sigma^4 / alpha^2``).
    parametrization
        ``noise`` (default: the network predicts the noise) or ``score``.
    ema
        Decay of the exponential moving average of the weights in ``[0, 1)``; 0 turns it off.
    val_fraction, patience
        Held-out fraction in ``[0, 1)`` for early stopping on the validation DSM loss (0: off), and the
        number of loss records (one every ``iterations // 100`` iterations) without improvement
        after which training stops.

    Under ``--quick`` (:attr:`quick_budget`) at most 200 iterations on at most 2000 training points.
    """

    quick_budget: ClassVar[dict[str, int]] = {"iterations": 200, "n_train": 2000}

    def __init__(
        self, width: int = 128, depth: int = 3, lr: float = 1e-3, iterations: int = 5000, batch_size: int = 256,
        n_train: int = 10_000, weighting: str = "noise", parametrization: str = "noise", ema: float = 0.0,
        seconds: float | None = None, val_fraction: float = 0.0, patience: int = 10,
    ) -> None:
        for name, value in (("width", width), ("depth", depth), ("batch_size", batch_size),
                            ("n_train", n_train), ("patience", patience)):
            if not is_int_at_least(value, 1):
                raise ValueError(f"mlp_dsm: {name} must be an integer >= 1, got {value!r}")
        if not is_positive_real(lr):
            raise ValueError(f"mlp_dsm: lr must be a positive number, got {lr!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"mlp_dsm: weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"mlp_dsm: parametrization must be one of {', '.join(PARAMETRIZATIONS)}, got {parametrization!r}"
            )
        if isinstance(ema, bool) or not isinstance(ema, int | float) or not 0.0 <= ema < 1.0:
            raise ValueError(f"mlp_dsm: ema must be a number in [0, 1) (0 turns it off), got {ema!r}")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) or not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"mlp_dsm: val_fraction must be a number in [0, 1) (0 turns it off), got {val_fraction!r}")
        try:
            self.budget = Budget(iterations, seconds)
        except ValueError as exc:
            raise ValueError(f"mlp_dsm: {exc}") from None
        n_val = round(val_fraction * n_train)
        if val_fraction > 0 and n_val == 0:
            raise ValueError(
                f"mlp_dsm: val_fraction = {val_fraction} of n_train = {n_train} holds out no point; raise either"
            )
        if batch_size > n_train - n_val:
            raise minibatch_error("mlp_dsm", batch_size, n_train - n_val,
                                  "n_train" if n_val == 0 else "n_train minus the held-out part")
        self.width, self.depth, self.lr = width, depth, float(lr)
        self.iterations, self.batch_size, self.n_train = iterations, batch_size, n_train
        self.weighting, self.parametrization, self.ema = weighting, parametrization, float(ema)
        self.seconds = None if seconds is None else float(seconds)
        self.val_fraction, self.patience = float(val_fraction), patience

    def _fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord
    ) -> LearnedScore:
        x_fit, x_val = split_training_data(data, self.n_train, self.val_fraction, generator, self.name)
        mean, var = data_statistics(x_fit)
        model = ScoreMLP(process, mean, var, self.width, self.depth, self.parametrization, generator)
        fitted = train_dsm(
            model, x_fit.float(), process, weighting=self.weighting, lr=self.lr, batch_size=self.batch_size,
            budget=self.budget, generator=generator, record=record, ema=self.ema,
            x_val=None if x_val is None else x_val.float(), patience=self.patience,
        )
        record.extra.update({
            "width": self.width, "depth": self.depth, "weighting": self.weighting,
            "parametrization": self.parametrization, "ema": self.ema,
            "val_fraction": self.val_fraction,
            "n_fit": int(x_fit.shape[0]), "n_val": 0 if x_val is None else int(x_val.shape[0]),
            "data_mean": mean.tolist(), "data_var": var,
            "n_parameters": sum(p.numel() for p in fitted.parameters()),
        })
        return LearnedScore(x_fit.shape[1], process, fitted, record, dtype=torch.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "width": self.width, "depth": self.depth, "lr": self.lr,
            "iterations": self.iterations, "batch_size": self.batch_size, "n_train": self.n_train,
            "weighting": self.weighting, "parametrization": self.parametrization, "ema": self.ema,
            "seconds": self.seconds, "val_fraction": self.val_fraction, "patience": self.patience,
        }
