r"""``mlp_dsm``: the practice baseline, a time-conditioned MLP trained by denoising score matching.

The network (:class:`.networks.ScoreMLP`) sees ``c_in(t) (x - alpha_t m)`` with
``c_in = 1 / sqrt(alpha_t^2 v + sigma_t^2)`` (``m``, ``v``: mean and mean per-coordinate variance of
the training data, so VP, OU and VE inputs all have unit scale) and Fourier features of the log
noise level ``log(sigma_t / alpha_t)``; SiLU activations (or ReLU, ``activation = "relu"``).  It is
trained with Adam on the DSM loss (Vincent 2011; Song et al. 2021)

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

from typing import TYPE_CHECKING, ClassVar

import torch

from ..params import Interval, Options, param_error
from .base import ESTIMATORS
from .networks import (
    PARAMETRIZATIONS,
    SCORE_MLP_ACTIVATIONS,
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
    """Time-conditioned MLP trained by denoising score matching with Adam (module docstring).

    Parameters
    ----------
    width, depth
        Hidden units per layer and number of hidden layers.
    activation
        ``silu`` (default) or ``relu`` (the deep ReLU networks of score-approximation theory).
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

    Its :attr:`test_params` (and ``--quick``, which caps :attr:`budget_params` at them) are 200
    iterations on 2000 training points.
    """

    param_constraints: ClassVar[dict] = {
        "width": Interval(int, 1, None), "depth": Interval(int, 1, None),
        "lr": Interval(float, 0, None, closed="neither"), "iterations": Interval(int, 1, None),
        "batch_size": Interval(int, 1, None), "n_train": Interval(int, 1, None),
        "weighting": Options(WEIGHTINGS), "parametrization": Options(PARAMETRIZATIONS),
        "ema": Interval(float, 0, 1, closed="left", why="0 turns it off"),
        "seconds": [Interval(float, 0, None, closed="neither"), None],
        "val_fraction": Interval(float, 0, 1, closed="left", why="0 turns it off"),
        "patience": Interval(int, 1, None), "activation": Options(SCORE_MLP_ACTIVATIONS),
    }
    test_params: ClassVar[dict] = {"iterations": 200, "n_train": 2000}
    budget_params: ClassVar[tuple[str, ...]] = ("iterations", "n_train")

    def __init__(
        self, width: int = 128, depth: int = 3, lr: float = 1e-3, iterations: int = 5000, batch_size: int = 256,
        n_train: int = 10_000, weighting: str = "noise", parametrization: str = "noise", ema: float = 0.0,
        seconds: float | None = None, val_fraction: float = 0.0, patience: int = 10, activation: str = "silu",
    ) -> None:
        self.set_params_from(
            width=width, depth=depth, lr=lr, iterations=iterations, batch_size=batch_size, n_train=n_train,
            weighting=weighting, parametrization=parametrization, ema=ema, seconds=seconds,
            val_fraction=val_fraction, patience=patience, activation=activation,
        )
        self.budget = Budget(iterations, seconds)
        n_val = round(val_fraction * n_train)
        if val_fraction > 0 and n_val == 0:
            raise param_error("mlp_dsm", "val_fraction",
                              f"0 or large enough to hold out a point of n_train = {n_train}", val_fraction)
        if batch_size > n_train - n_val:
            raise minibatch_error("mlp_dsm", batch_size, n_train - n_val,
                                  "n_train" if n_val == 0 else "n_train minus the held-out part")

    def _fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord
    ) -> LearnedScore:
        x_fit, x_val = split_training_data(data, self.n_train, self.val_fraction, generator)
        mean, var = data_statistics(x_fit)
        model = ScoreMLP(process, mean, var, self.width, self.depth, self.parametrization, generator,
                         activation=self.activation)
        fitted = train_dsm(
            model, x_fit.float(), process, weighting=self.weighting, lr=self.lr, batch_size=self.batch_size,
            budget=self.budget, generator=generator, record=record, ema=self.ema,
            x_val=None if x_val is None else x_val.float(), patience=self.patience,
        )
        record.extra.update({
            "width": self.width, "depth": self.depth, "activation": self.activation, "weighting": self.weighting,
            "parametrization": self.parametrization, "ema": self.ema,
            "val_fraction": self.val_fraction,
            "n_fit": int(x_fit.shape[0]), "n_val": 0 if x_val is None else int(x_val.shape[0]),
            "data_mean": mean.tolist(), "data_var": var,
            "n_parameters": sum(p.numel() for p in fitted.parameters()),
        })
        return LearnedScore(x_fit.shape[1], process, fitted, record, dtype=torch.float32)
