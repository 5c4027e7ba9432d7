r"""``memorising``: the empirical optimum of denoising score matching (docs/theory.md F.5).

Over a training set ``x_1, ..., x_n`` the DSM objective (exact expectation over the noise) is
minimised by the score of the training set smoothed by the forward kernel,

.. math::
    \hat p_t = \frac1n \sum_i N(\alpha_t x_i, \sigma_t^2 I), \qquad
    \nabla \log \hat p_t(x) = \sum_i w_i(x) \frac{\alpha_t x_i - x}{\sigma_t^2}, \quad
    w = \operatorname{softmax}_i\left(-\frac{\|x - \alpha_t x_i\|^2}{2 \sigma_t^2}\right),

the score of a mixture of point masses at the training points.  A sampler run with it reproduces
the training points as ``t -> 0``: the baseline that every function class which generalises must
beat, and the estimator whose excess risk decays differently from a network's (Fu & Lee 2025; its
risk against the true score at small ``t`` does not vanish at the rate of a smooth class).
The mixture of atoms is a :class:`~scorebench.targets.mixture.GaussianMixture` with zero
covariances, so its score and Hessian at every ``t > 0`` are the mixture's exact ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ..params import Interval
from ..targets.base import Target
from ..targets.mixture import GaussianMixture
from .base import ESTIMATORS
from .oracle import OracleScore
from .training import LearnedEstimator, LearnedScore, TrainingRecord

if TYPE_CHECKING:
    from ..processes import ForwardProcess


def empirical_mixture(x: Tensor) -> GaussianMixture:
    """The empirical law of the rows of ``x`` as a mixture of equally weighted point masses."""
    x64 = x.detach().to(torch.float64).cpu()
    return GaussianMixture(torch.ones(x64.shape[0], dtype=torch.float64), x64, torch.zeros_like(x64))


@ESTIMATORS.register("memorising")
class Memorising(LearnedEstimator):
    """The exact score of the forward-smoothed empirical law of ``n_train`` training points
    (module docstring): the empirical optimum of DSM, a closed form (no training).

    It learns in the sense that matters to a run: its score depends on the seed's training draw,
    so it goes through the learned estimators' ``fit`` (data checks, a training record with
    ``extra.n_train``) and ``--quick`` caps ``n_train``.

    Parameters
    ----------
    n_train
        Training points: the first ``n_train`` rows of given samples, or ``n_train`` draws of a
        target with the fit's generator.
    """

    param_constraints: ClassVar[dict] = {"n_train": Interval(int, 1, None)}
    test_params: ClassVar[dict] = {"n_train": 200}
    budget_params: ClassVar[tuple[str, ...]] = ("n_train",)

    def __init__(self, n_train: int = 1000) -> None:
        self.set_params_from(n_train=n_train)

    def _fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord
    ) -> LearnedScore:
        """The score model of the smoothed empirical law of the training points."""
        if isinstance(data, Target):
            x = data.sample(self.n_train, generator, dtype=torch.float64)
        else:
            if data.shape[0] < self.n_train:
                raise ValueError(f"memorising: n_train = {self.n_train} but only {data.shape[0]} samples were given")
            x = data[: self.n_train]
        exact = OracleScore(empirical_mixture(x), process)

        def score(z: Tensor, t: Tensor) -> Tensor:
            if bool((t == t[0]).all()):  # one time for every row: the mixture's own fast path
                return exact.score(z, float(t[0]))
            return exact.score(z, t)

        record.extra = {"n_train": int(x.shape[0])}
        return LearnedScore(x.shape[1], process, score, record, dtype=torch.float64)
