r"""``lipschitz``: score estimators from a Lipschitz approximating class (Bruno et al. 2023, docs/theory.md B).

Bruno, Zhang, Lim, Akyildiz, Sabanis (arXiv 2311.13584) bound the W2 error of diffusion sampling of a
strongly log-concave target when the score is fitted within a class of functions
``s(theta, t, x)`` that are Lipschitz in ``x`` (no Lipschitz assumption on the true score) and the
fit is an SGLD run on the DSM objective (B.1).  Two families:

``family="affine"`` (B.3, the Gaussian-with-unknown-mean example)
    ``s(theta, t, x) = (alpha_t theta - x) / (alpha_t^2 + sigma_t^2)``, the exact score of the
    diffused ``N(theta, I)`` under any linear process.  Under OU (``alpha_t^2 + sigma_t^2 = 1``) it is
    Bruno et al.'s ``-x + theta e^{-t}``, and for data ``N(mu, I)`` the family contains the truth at
    ``theta = mu``.  With ``kappa_t = alpha_t / (alpha_t^2 + sigma_t^2)``,
    ``rho_t = 1 / (alpha_t^2 + sigma_t^2)``, ``X_t = alpha_t X_0 + sigma_t Z`` and the DSM weight
    ``lambda(t)``, the stochastic gradient of ``lambda(t) || s(theta, t, X_t) + Z / sigma_t ||^2`` is

        H(theta; X_0, t, Z) = 2 lambda(t) kappa_t (kappa_t theta - rho_t X_t + Z / sigma_t)

    (for OU and ``lambda = 1``: ``2 e^{-t} (theta e^{-t} - e^{-t} X_0 - sigma_t Z + Z / sigma_t)``,
    as in B.3).  Its mean is ``2 E[lambda kappa^2] (theta - E X_0)``, so the minimiser is the data
    mean for every process and weighting.  SGLD with ``theta_0 = 0``, step ``lambda`` (``step``),
    inverse temperature ``beta``, ``t ~ U[t_min, T]`` (the ``Z / sigma_t`` term has a variance that
    grows like ``1 / sigma_t^2`` as ``t -> 0``; the ``noise`` weighting removes that growth):

        theta_{k+1} = theta_k - step * mean_batch H(theta_k; .) + sqrt(2 step / beta) N(0, I_d).

    The recursion is affine in ``theta``: ``H = a_k theta - r_k`` with
    ``a_k = 2 mean_b lambda kappa^2`` and ``r_k = 2 mean_b lambda kappa (rho X_t - Z / sigma_t)``, so
    all draws of a block of iterations are made and reduced at once and only the scalar recursion
    runs step by step.  The fitted score is affine in ``x`` (Gaussian exact laws apply); its
    Lipschitz constant in ``x`` is ``max_t rho_t`` (1 for VP and OU).

``family="network"`` (B.1, the general Lipschitz class)
    ``s(x, t) = L g(x, t) - skip * x`` with ``g`` an MLP that is 1-Lipschitz in ``x`` for every ``t``
    (:class:`.networks.LipschitzMLP`: spectrally normalised matrices on the ``x`` path, 1-Lipschitz
    activations, time entering only through additive biases), so that ``Lip_x(s) <= L + skip``,
    guaranteed by an exact spectral normalisation of the fitted weights.  The fixed linear skip
    ``-skip * x`` (default 0) lets the class contain the ``-x`` part of OU scores at no cost to the
    network; it is counted in the declared bound ``lipschitz_bound = L + skip``.  Trained by DSM with
    Adam (:func:`.networks.train_dsm`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..params import Interval, Options, param_error
from .base import ESTIMATORS
from .networks import (
    LIPSCHITZ_ACTIVATIONS,
    LipschitzMLP,
    data_statistics,
    minibatch_error,
    split_training_data,
    train_dsm,
)
from .training import (
    WEIGHTINGS,
    Budget,
    LearnedEstimator,
    LearnedScore,
    TrainingRecord,
    check_finite_loss,
    dsm_weight,
    process_scales,
    sample_times,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..processes import ForwardProcess, Time
    from ..targets.base import Target

FAMILIES = ("affine", "network")
#: parameters of each family, with their defaults (the common ones are in the constructor)
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "affine": {"step": 1e-2, "beta": 1e8, "iterations": 20_000, "batch_size": 1, "weighting": "score"},
    "network": {
        "L": 10.0, "skip": 0.0, "width": 128, "depth": 3, "activation": "maxmin", "lr": 1e-3,
        "iterations": 5000, "batch_size": 256, "weighting": "noise",
    },
}
#: the test parameters of each family (:meth:`Lipschitz.test_params_for`): SGLD needs many cheap
#: iterations, Adam on the network few costly ones; ``--quick`` caps the budget at them
FAMILY_TEST_PARAMS: dict[str, dict[str, int]] = {
    "affine": {"iterations": 5000, "n_train": 2000},
    "network": {"iterations": 200, "n_train": 2000},
}
#: iterations of the SGLD recursion whose draws are made at once (capped by memory)
SGLD_BLOCK = 1024


def affine_coefficients(process: ForwardProcess, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(kappa_t, rho_t) = (alpha_t, 1) / (alpha_t^2 + sigma_t^2)`` in ``t``'s dtype."""
    alpha, sigma = process_scales(process, t)
    rho = 1.0 / (alpha**2 + sigma**2)
    return alpha * rho, rho


def affine_score(theta: Tensor, process: ForwardProcess, x: Tensor, t: Time) -> Tensor:
    """``s(theta, t, x) = kappa_t theta - rho_t x``: the exact score of ``N(theta, I)`` diffused to time ``t``."""
    tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if tt.ndim == 0:
        tt = tt.expand(x.shape[0])
    kappa, rho = affine_coefficients(process, tt)
    return kappa[:, None] * theta.to(x) - rho[:, None] * x


class AffineScoreFunction:
    """``(x, t_per_row) -> kappa_t theta - rho_t x`` (picklable, no closure)."""

    def __init__(self, theta: Tensor, process: ForwardProcess) -> None:
        self.theta = theta
        self.process = process

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return affine_score(self.theta, self.process, x, t)


_COUNT = [Interval(int, 1, None), None]
_POSITIVE = [Interval(float, 0, None, closed="neither"), None]


@ESTIMATORS.register("lipschitz")
class Lipschitz(LearnedEstimator):
    """Score fitted in a class of functions Lipschitz in ``x`` (Bruno et al. 2023, docs/theory.md B.1).

    Parameters
    ----------
    family
        ``affine`` (default): ``(alpha_t theta - x) / (alpha_t^2 + sigma_t^2)`` fitted by SGLD on the
        DSM gradient (parameters ``step``, ``beta``).  ``network``: a spectrally normalised MLP with
        ``Lip_x <= L + skip`` fitted by DSM with Adam (parameters ``L``, ``skip``, ``width``, ``depth``,
        ``activation``, ``lr``).  A parameter of the other family is an error.
    iterations, batch_size, n_train, weighting, seconds
        Iterations (20000 affine / 5000 network), minibatch size (1 affine, as in the paper / 256
        network) drawn uniformly with replacement from ``n_train`` training points, DSM weighting
        (``score`` affine, as in B.3 / ``noise`` network), optional wall-clock cap.
    step, beta
        SGLD step ``lambda`` (default 0.01) and inverse temperature (default 1e8).
    L, skip, width, depth, activation, lr
        Lipschitz bound of the network part (default 10), coefficient of the fixed skip ``-skip x``
        (default 0), hidden units (even for ``maxmin``; 128), hidden layers (3), 1-Lipschitz
        activation (``maxmin``, ``relu``, ``tanh``), Adam step (1e-3).

    The test parameters depend on the family (:data:`FAMILY_TEST_PARAMS`, through
    :meth:`test_params_for`): 5000 SGLD iterations (affine) or 200 Adam iterations (network), on
    2000 training points; ``--quick`` caps :attr:`budget_params` at them.
    """

    param_constraints: ClassVar[dict] = {
        "family": Options(FAMILIES), "iterations": _COUNT, "batch_size": _COUNT, "n_train": Interval(int, 1, None),
        "weighting": [Options(WEIGHTINGS), None], "seconds": _POSITIVE, "step": _POSITIVE, "beta": _POSITIVE,
        "L": _POSITIVE, "skip": [Interval(float, 0, None), None], "width": _COUNT, "depth": _COUNT,
        "activation": [Options(LIPSCHITZ_ACTIVATIONS), None], "lr": _POSITIVE,
    }
    #: the default family's; :meth:`test_params_for` gives each family's
    test_params: ClassVar[dict] = dict(FAMILY_TEST_PARAMS["affine"])
    budget_params: ClassVar[tuple[str, ...]] = ("iterations", "n_train")

    def __init__(
        self, family: str = "affine", *, iterations: int | None = None, batch_size: int | None = None,
        n_train: int = 10_000, weighting: str | None = None, seconds: float | None = None,
        step: float | None = None, beta: float | None = None,
        L: float | None = None, skip: float | None = None, width: int | None = None, depth: int | None = None,
        activation: str | None = None, lr: float | None = None,
    ) -> None:
        given = {"iterations": iterations, "batch_size": batch_size, "weighting": weighting, "step": step,
                 "beta": beta, "L": L, "skip": skip, "width": width, "depth": depth, "activation": activation,
                 "lr": lr}
        checked = self.validate_params({"family": family, "n_train": n_train, "seconds": seconds, **given})
        self.family, self._given = family, {k: checked[k] for k in given}
        other = "network" if family == "affine" else "affine"
        for name, value in given.items():
            if value is not None and name not in FAMILY_DEFAULTS[family]:
                owner = other if name in FAMILY_DEFAULTS[other] else "no"
                raise ValueError(f"lipschitz: parameter {name!r} applies to family {owner!r}, not {family!r}")
        p = {k: (checked[k] if checked[k] is not None else v) for k, v in FAMILY_DEFAULTS[family].items()}
        if p["batch_size"] > n_train:
            raise minibatch_error("lipschitz", p["batch_size"], n_train)
        self.budget = Budget(p["iterations"], seconds)
        if family == "network" and p["activation"] == "maxmin" and p["width"] % 2:
            raise param_error("lipschitz", "width", "even with activation 'maxmin' (it pairs units)", p["width"])
        self.params = p
        self.n_train = n_train
        self.seconds = checked["seconds"]

    @classmethod
    def test_params_for(cls, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The test parameters of the family ``params`` select (``affine`` by default; ``{}`` for
        an unknown family, which the constructor refuses)."""
        family = (params or {}).get("family", "affine")
        return dict(FAMILY_TEST_PARAMS[family]) if family in FAMILIES else {}

    @property
    def preserves_affinity(self) -> bool:  # type: ignore[override]
        return self.family == "affine"

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments (``None`` where the family's default applies)."""
        values = {"family": self.family, **self._given, "n_train": self.n_train, "seconds": self.seconds}
        return {k: values[k] for k in self.param_constraints}

    def describe(self) -> dict[str, Any]:
        """The parameters the fit uses: the family's, defaults filled in."""
        return {"name": self.name, "family": self.family, **self.params, "n_train": self.n_train,
                "seconds": self.seconds}

    def _fit(
        self, data: Target | Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord
    ) -> LearnedScore:
        x0, _ = split_training_data(data, self.n_train, 0.0, generator)
        if self.family == "affine":
            theta = self._sgld(x0, process, generator, record)
            return LearnedScore(x0.shape[1], process, AffineScoreFunction(theta, process), record, dtype=torch.float64)
        p = self.params
        mean, var = data_statistics(x0)
        model = LipschitzMLP(process, mean, var, p["L"], p["width"], p["depth"], generator, skip=p["skip"],
                             activation=p["activation"])
        train_dsm(model, x0.float(), process, weighting=p["weighting"], lr=p["lr"], batch_size=p["batch_size"],
                  budget=self.budget, generator=generator, record=record)
        model.freeze()
        record.extra.update({
            "family": "network", "L": p["L"], "skip": p["skip"], "lipschitz_bound": p["L"] + p["skip"],
            "width": p["width"], "depth": p["depth"], "activation": p["activation"], "weighting": p["weighting"],
            "weight_spectral_norms": [float(torch.linalg.matrix_norm(w.double(), 2)) for w in model.weights],
            "data_mean": mean.tolist(), "data_var": var,
        })
        return LearnedScore(x0.shape[1], process, model, record, dtype=torch.float32)

    def _sgld(self, x0: Tensor, process: ForwardProcess, generator: torch.Generator, record: TrainingRecord) -> Tensor:
        """SGLD on the DSM gradient of the affine family; returns the final ``theta`` (float64)."""
        p = self.params
        step, beta, B, weighting = p["step"], p["beta"], p["batch_size"], p["weighting"]
        n, d = x0.shape
        dev = x0.device
        iterations = self.budget.iterations
        block = max(1, min(SGLD_BLOCK, (1 << 20) // (B * d)))
        log_every = max(1, iterations // 100)
        out_of_time = self.budget.clock()
        noise_scale = math.sqrt(2.0 * step / beta)
        theta = torch.zeros(d, dtype=torch.float64, device=dev)
        running, count, done, curvature = 0.0, 0, 0, 0.0
        stop = "iterations"
        theta_norms: list[float] = []
        while done < iterations and stop == "iterations":
            m = min(block, iterations - done)
            idx = torch.randint(n, (m * B,), generator=generator, device=dev)
            t = sample_times(process, m * B, generator, dtype=torch.float64)
            z = torch.randn((m * B, d), generator=generator, device=dev, dtype=torch.float64)
            xi = torch.randn((m, d), generator=generator, device=dev, dtype=torch.float64)
            alpha, sigma = process_scales(process, t)
            kappa, rho = affine_coefficients(process, t)
            w = dsm_weight(process, t, weighting)
            q = rho[:, None] * (alpha[:, None] * x0[idx] + sigma[:, None] * z) - z / sigma[:, None]
            a = (2.0 * w * kappa**2).reshape(m, B).mean(dim=1)
            r = (2.0 * (w * kappa)[:, None] * q).reshape(m, B, d).mean(dim=1)
            c = (w * q.pow(2).sum(dim=1)).reshape(m, B).mean(dim=1)
            mult = (1.0 - step * a).tolist()
            add = step * r + noise_scale * xi
            before = torch.empty((m, d), dtype=torch.float64, device=dev)
            ran = m
            for j in range(m):
                before[j] = theta
                theta = theta * mult[j] + add[j]
                if out_of_time():
                    ran, stop = j + 1, "seconds"
                    break
            before = before[:ran]
            after = torch.cat([before[1:], theta[None]])
            losses = (0.5 * a[:ran] * before.pow(2).sum(dim=1) - (before * r[:ran]).sum(dim=1) + c[:ran]).tolist()
            norms = after.norm(dim=1).tolist()
            curvature += float(a[:ran].sum())
            for j, loss in enumerate(losses):
                k = done + j + 1
                running += loss
                count += 1
                if k % log_every == 0 or (j == ran - 1 and (stop != "iterations" or k == iterations)):
                    mean_loss = running / count if math.isfinite(running) else math.nan
                    running, count = 0.0, 0
                    check_finite_loss(mean_loss, k, record)
                    record.log(k, mean_loss)
                    theta_norms.append(norms[j])
            done += ran
        if not torch.isfinite(theta).all():
            check_finite_loss(math.nan, done, record)
        grid = torch.linspace(process.t_min, process.T, 1001, dtype=torch.float64)
        record.iterations = record.stopped_at = done
        record.stop_reason = stop
        record.extra.update({
            "family": "affine", "theta": theta.tolist(), "theta_norm": theta_norms,
            "step": step, "beta": beta, "batch_size": B, "weighting": weighting,
            "mean_curvature": curvature / done,
            "lipschitz_bound": float(affine_coefficients(process, grid)[1].max()),
        })
        return theta
