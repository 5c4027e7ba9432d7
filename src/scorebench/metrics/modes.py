r"""Mode metrics for mixture targets: does the sample put each mode's weight where it belongs?

A target ``p = sum_k pi_k p_k`` with ``K >= 2`` modes (a Gaussian mixture) has an exact posterior
of the mode, the responsibilities

.. math::
    r_k(x) = \frac{\pi_k p_k(x)}{\sum_j \pi_j p_j(x)},

computed in float64 by a log-sum-exp (:meth:`~scorebench.targets.base.Target.mode_log_posterior`).
A sample ``x_1, ..., x_n`` gets mode weights

.. math::
    \hat w_k = \frac{1}{n} \sum_i 1\{k = \arg\max_j r_j(x_i)\}  \quad (\text{hard}), \qquad
    \hat w_k = \frac{1}{n} \sum_i r_k(x_i)  \quad (\text{soft}),

and the metrics compare them with ``pi``:

* ``mode_tv``: the total-variation distance ``(1/2) sum_k |w_hat_k - pi_k|`` in ``[0, 1]``;
* ``modes_missed``: the share of modes whose weight is *not* reproduced within a relative
  tolerance, ``(1/K) #{k : |w_hat_k - pi_k| > tolerance * pi_k}`` in ``[0, 1]``.  Mode coverage
  is ``1 - modes_missed``; the metric reports the missed share so that, like every scorebench
  metric, lower is better (comparisons, reports and claims read every value as an error).

Blessing et al. (2024) found a mode-coverage measure decisive on multi-modal targets, where
sample distances such as W2 or MMD blur a dropped mode into a small change of value; their
entropic mode coverage assigns each point to its most likely component.  The responsibilities
here are those of the data law ``p_0``, the reference every sample metric compares with.
The metrics see only how the mass is split among the modes, not where it lies within them: a
sample spread too wide around every mode, or shifted within each, keeps its weights and sits at
the floor.  Read them beside a sample distance, which sees the shape and blurs the weights.

**Assignment.**  ``hard`` (the default) counts each point in its most likely mode, as Blessing et
al. do: the counts of a perfect sample are then multinomial, whose noise floor has a closed form
(:func:`expected_mode_tv`, :func:`expected_modes_missed`), exact whenever a target draw's most
likely mode is ``k`` with probability ``pi_k`` (well-separated modes, or modes alike under a
symmetry, as ``ring8``'s; otherwise the counts are multinomial with slightly different
probabilities, and the floor measured on a target sample stays the reference).  ``soft`` averages the
responsibilities: unbiased for every mixture (``E r_k(X) = pi_k`` for ``X ~ p``), but a point
half-way between two modes counts half in each, so a sampler that fills the gaps between modes
is credited for it; on well-separated modes the two agree.

**Noise floor.**  The weights are compared with the exact ``pi``, so the floor is the metric of
an independent target sample of the same size (``ctx.y2``), as for the moment metrics.

Reference: D. Blessing, X. Jia, J. Esslinger, F. Vargas, G. Neumann, "Beyond ELBOs: A
Large-Scale Evaluation of Variational Methods for Sampling", ICML 2024.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ..params import Interval, Options
from .base import METRICS, Metric, MetricInputError
from .context import MetricContext

if TYPE_CHECKING:
    from ..targets.base import Target

#: how points are assigned to modes
ASSIGNMENTS = ("hard", "soft")
#: most entries of one ``(rows, K)`` block of responsibilities (float64: 32 MiB)
BLOCK_ENTRIES = 1 << 22


def sample_mode_weights(target: Target, x: Tensor, assign: str = "hard") -> Tensor:
    """The sample's mode weights ``w_hat`` (``(K,)`` float64, summing to 1), on ``x``'s device.

    Parameters
    ----------
    target:
        A mixture target (its :meth:`~scorebench.targets.base.Target.mode_weights` is not ``None``).
    x:
        ``(n, d)`` points.
    assign:
        ``"hard"``: the share of points whose most likely mode is ``k``; ``"soft"``: the mean
        responsibility of mode ``k``.

    The responsibilities are computed in blocks of at most :data:`BLOCK_ENTRIES` entries, so
    memory stays ``O(n d + BLOCK_ENTRIES)`` for any ``n x K``.
    """
    if assign not in ASSIGNMENTS:
        raise ValueError(f"assign must be one of {', '.join(ASSIGNMENTS)}, got {assign!r}")
    weights = target.mode_weights()
    if weights is None:
        raise ValueError(f"target {target.name!r} is not a mixture of modes")
    k = int(weights.numel())
    total = torch.zeros(k, dtype=torch.float64, device=x.device)
    for block in x.split(max(1, BLOCK_ENTRIES // k)):
        log_r = target.mode_log_posterior(block)
        if assign == "hard":
            total += torch.bincount(log_r.argmax(1), minlength=k).to(torch.float64)
        else:
            total += log_r.exp().sum(0)
    return total / x.shape[0]


def reproduced(sample_weights: Tensor, weights: Tensor, tolerance: float) -> Tensor:
    """Which modes a sample reproduces: ``|w_hat_k - pi_k| <= tolerance * pi_k`` (boolean ``(K,)``)."""
    return (sample_weights - weights).abs() <= tolerance * weights


def _binomial_pmf(n: int, p: Tensor) -> tuple[Tensor, Tensor]:
    """``(counts, pmf)``: ``counts = 0..n`` (``(n + 1,)``) and the ``Binomial(n, p_k)`` pmf of each
    ``p_k`` (``(K, n + 1)``), float64, from log-gamma."""
    counts = torch.arange(n + 1, dtype=torch.float64)
    p = p.to(torch.float64)[:, None]
    log_choose = math.lgamma(n + 1) - torch.lgamma(counts + 1) - torch.lgamma(n - counts + 1)
    log_pmf = log_choose + counts * torch.log(p) + (n - counts) * torch.log1p(-p)
    return counts, torch.exp(log_pmf)


def expected_mode_tv(weights: Tensor, n: int) -> float:
    r"""``E (1/2) sum_k |N_k / n - pi_k|`` for counts ``N ~ Multinomial(n, pi)``: the mean
    :class:`ModeTV` (hard) of a perfect sample of size ``n`` when each draw's most likely mode is
    its own component's with probability ``pi_k`` (see the module docstring).

    Each ``N_k`` is ``Binomial(n, pi_k)``, so the expectation is a finite sum over its pmf
    (exact, ``O(n K)``); for large ``n`` it approaches ``sum_k sqrt(pi_k (1 - pi_k) / (2 pi n))``.
    """
    pi = torch.as_tensor(weights, dtype=torch.float64).cpu()
    counts, pmf = _binomial_pmf(int(n), pi)
    return float(0.5 * (pmf * (counts / n - pi[:, None]).abs()).sum())


def expected_modes_missed(weights: Tensor, n: int, tolerance: float) -> float:
    """``E (1/K) #{k : |N_k / n - pi_k| > tolerance pi_k}`` for ``N ~ Multinomial(n, pi)``: the
    mean :class:`ModesMissed` (hard) of a perfect sample of size ``n``, under the condition of
    :func:`expected_mode_tv`; a finite sum over each ``Binomial(n, pi_k)`` pmf."""
    pi = torch.as_tensor(weights, dtype=torch.float64).cpu()
    counts, pmf = _binomial_pmf(int(n), pi)
    kept = reproduced(counts[None, :] / n, pi[:, None], tolerance)
    return float((pmf * ~kept).sum(1).mean())


class ModeMetric(Metric):
    """A metric of a sample's mode weights against a mixture target's (see
    :mod:`scorebench.metrics.modes`).  Called as ``metric(x, target)``; subclasses implement
    :meth:`compute` on the two weight vectors."""

    kind = "mode"
    needs_mixture_target = True
    bootstrappable = True

    param_constraints: ClassVar[dict] = {"assign": Options(ASSIGNMENTS)}

    def __init__(self, assign: str = "hard") -> None:
        self.set_params_from(assign=assign)

    @abstractmethod
    def compute(self, sample_weights: Tensor, weights: Tensor) -> float:
        """The value, from the sample's mode weights and the target's ``pi`` (both ``(K,)`` float64)."""

    def __call__(self, x: Tensor, target: Target) -> float:
        """The metric of the sample ``x`` (``(n, d)``) against the mixture ``target``.

        Refuses (:class:`MetricInputError`, naming the metric) a target that is not a mixture of at
        least two modes, ``x`` of the wrong shape, with fewer than two points, non-finite entries or
        entries above ``MAX_ABS_VALUE``.
        """
        weights = target.mode_weights()
        if weights is None:
            raise MetricInputError(
                f"metric {self.name!r} needs a mixture target with at least two modes (gmm); "
                f"target {target.name!r} is not one"
            )
        if x.ndim != 2 or x.shape[1] != target.dim:
            raise MetricInputError(
                f"metric {self.name!r}: x must be (n, {target.dim}) for target {target.name!r}, got {tuple(x.shape)}"
            )
        self.check_points("x", x)
        sample = sample_mode_weights(target, x.to(torch.float64), self.assign)
        return self.compute(sample, weights.to(sample.device))

    def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
        """The sampler's output ``x`` against the target's mode weights."""
        return [(math.nan, self(ctx.x, ctx.target))]

    def floor(self, ctx: MetricContext) -> float:
        """The same metric for the independent target sample ``y2`` of the size of ``x``."""
        return self(ctx.y2.to(ctx.x.device), ctx.target)


@METRICS.register("mode_tv")
class ModeTV(ModeMetric):
    r"""Total-variation distance between the sample's and the target's mode weights (Blessing et
    al. 2024, "Beyond ELBOs", ICML):

    .. math::
        \mathrm{TV} = \tfrac12 \sum_k |\hat w_k - \pi_k| \in [0, 1],

    ``w_hat`` from the exact posterior responsibilities of the data law, ``hard`` (the most likely
    mode, default) or ``soft`` (mean responsibility); see :mod:`scorebench.metrics.modes`.  A
    sample that drops a mode of weight ``pi_k`` and redistributes it over the others in
    proportion is at ``TV = pi_k``.  Floor: :func:`expected_mode_tv` in closed form.
    """

    def compute(self, sample_weights: Tensor, weights: Tensor) -> float:
        return float(0.5 * (sample_weights - weights).abs().sum())


@METRICS.register("modes_missed")
class ModesMissed(ModeMetric):
    r"""Share of the target's modes whose weight the sample does not reproduce (one minus the mode
    coverage of Blessing et al. 2024, "Beyond ELBOs", ICML):

    .. math::
        \frac1K \#\{k : |\hat w_k - \pi_k| > \tau \pi_k\} \in [0, 1],

    ``tau = tolerance`` (0.5 by default: a mode holding less than half or more than one and a half
    times its weight is missed; a dropped mode always is, since ``tau < 1``).  The binomial noise of
    a perfect sample's ``w_hat_k`` has relative size ``sqrt((1 - pi_k) / (n pi_k))``, so the default
    sits 6 standard deviations out for ``ring8`` at ``n = 1000`` and 3.6 out for the 40 modes of
    ``gmm40`` at ``n = 2000``; :func:`expected_modes_missed` gives the floor in closed form for any
    ``n``.  Reported as the missed share so that lower is better, as for every metric.
    """

    param_constraints: ClassVar[dict] = {
        **ModeMetric.param_constraints,
        "tolerance": Interval(float, 0, 1, closed="neither", why="a dropped mode must count as missed"),
    }

    def __init__(self, assign: str = "hard", tolerance: float = 0.5) -> None:
        self.set_params_from(assign=assign, tolerance=tolerance)

    def compute(self, sample_weights: Tensor, weights: Tensor) -> float:
        return float(1.0 - reproduced(sample_weights, weights, self.tolerance).double().mean())
