"""Optimal-transport distances between samples (POT for exact OT, torch for the rest)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import ot
import torch
from torch import Tensor

from ..validation import is_int_at_least, is_positive_real
from .base import METRICS, MetricInputError, NonConvergenceWarning, SampleMetric

#: POT's warnings for a network-simplex result code other than "optimal"; :class:`W2` reads the
#: code from the log instead and raises or warns in its own words
_POT_RESULT_WARNINGS = ("Problem infeasible", "Problem unbounded", "numItermax reached")


@METRICS.register("w2")
class W2(SampleMetric):
    r"""Exact 2-Wasserstein distance between the empirical laws of ``x`` and ``y``.

    ``W2 = (min_P sum_ij P_ij ||x_i - y_j||^2)^{1/2}`` solved by POT's network simplex
    (``ot.emd2``, uniform weights, float64).  Biased upwards by roughly ``n^{-1/d}`` (compare
    with its noise floor).  Cost ``O(n^3)``: refused above ``max_samples``.

    Non-finite samples and samples above ``MAX_ABS_VALUE`` are refused (:class:`MetricInputError`)
    before POT sees them: POT declares such a problem infeasible and returns a cost of 0, a
    perfect score.  Should POT still report an infeasible or unbounded problem, that is an error
    too.  When the simplex stops at :attr:`num_itermax` pivots before optimality, the value of
    the plan reached is returned with a :class:`NonConvergenceWarning`.
    """

    alternatives = ("sliced_w2", "sinkhorn")
    #: POT's ``numItermax``: network-simplex iterations before it gives up on optimality
    num_itermax: int = 10_000_000

    def __init__(self, max_samples: int = 5000) -> None:
        if not is_int_at_least(max_samples, 2):
            raise ValueError(f"w2: max_samples must be an integer >= 2, got {max_samples!r}")
        self.max_samples = max_samples

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        xs, ys = x.detach().cpu().double(), y.detach().cpu().double()
        a = torch.full((xs.shape[0],), 1.0 / xs.shape[0], dtype=torch.float64)
        b = torch.full((ys.shape[0],), 1.0 / ys.shape[0], dtype=torch.float64)
        with warnings.catch_warnings():  # POT warns on a bad result code; it is read from the log below
            for message in _POT_RESULT_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=UserWarning)
            cost, log = ot.emd2(a, b, ot.dist(xs, ys), numItermax=self.num_itermax, log=True)
        code = int(log["result_code"])
        value = math.sqrt(max(float(cost), 0.0))
        if code == 3:  # numItermax reached: the plan is not optimal
            warnings.warn(NonConvergenceWarning(
                f"metric {self.name!r}: POT's network simplex stopped at numItermax = {self.num_itermax} iterations "
                f"before reaching the optimal plan; the value {value:.6g} is approximate (raise num_itermax)"
            ), stacklevel=3)
        elif code != 1:
            raise MetricInputError(
                f"metric {self.name!r}: POT's network simplex failed with result code {code} "
                f"({log.get('warning')}); the cost matrix is not finite"
            )
        return value

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_samples": self.max_samples}


@METRICS.register("sliced_w2")
class SlicedW2(SampleMetric):
    r"""Sliced 2-Wasserstein distance ``(E_theta W2^2(theta^T x, theta^T y))^{1/2}`` over
    ``n_projections`` directions uniform on the sphere, drawn from the metric's generator.

    Each one-dimensional W2 is exact: for equal sample sizes the mean squared difference of
    the sorted projections (batched torch, any device); otherwise POT's
    ``sliced_wasserstein_distance`` with the same explicit projections.
    """

    def __init__(self, n_projections: int = 128) -> None:
        if not is_int_at_least(n_projections, 1):
            raise ValueError(f"sliced_w2: n_projections must be a positive integer, got {n_projections!r}")
        self.n_projections = n_projections

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        d = x.shape[1]
        theta = torch.randn((d, self.n_projections), generator=generator, device=generator.device, dtype=torch.float64)
        theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)
        x, y = x.double(), y.double().to(x.device)
        if x.shape[0] != y.shape[0]:
            return float(ot.sliced_wasserstein_distance(x, y, projections=theta, p=2))
        px = torch.sort(x @ theta, dim=0).values
        py = torch.sort(y @ theta, dim=0).values
        return math.sqrt(float((px - py).pow(2).mean()))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_projections": self.n_projections}


#: most epsilon-annealing stages of :class:`SinkhornDivergence`: with ``scaling = 0.5`` they span
#: a ratio ``2^200 ~ 1.6e60`` between the squared diameter and ``eps``, far beyond any real input
MAX_ANNEALING_STAGES = 200
#: smallest ``eps`` of :class:`SinkhornDivergence` relative to the squared diameter, so that
#: ``cost / eps`` stays finite in float64
_MIN_EPS_RATIO = 1e-290


def epsilon_schedule(diam2: float, eps: float, scaling: float, max_stages: int = MAX_ANNEALING_STAGES) -> list[float]:
    """The epsilon-annealing schedule ``diam2, diam2 * scaling, ...`` while above ``eps``, then ``eps``.

    The number of stages above ``eps`` is ``ceil(log(diam2 / eps) / log(1 / scaling))``, at most
    ``max_stages``: beyond that the schedule starts lower, at ``eps / scaling^max_stages`` (the
    final stage at ``eps``, which decides the value, is the same).  So it ends for any finite
    input; a non-finite or non-positive ``diam2`` or ``eps`` raises :class:`MetricInputError`."""
    if not (math.isfinite(diam2) and math.isfinite(eps) and eps > 0 and diam2 >= 0):
        raise MetricInputError(
            f"metric 'sinkhorn': the squared diameter {diam2!r} and eps {eps!r} must be finite (and eps > 0)"
        )
    if diam2 <= eps:
        return [eps]
    stages = (math.log(diam2) - math.log(eps)) / -math.log(scaling)
    if stages > max_stages:
        schedule = [eps * scaling ** -k for k in range(max_stages, 0, -1)]
    else:
        schedule = []
        e = diam2
        for _ in range(max_stages + 1):  # the same arithmetic as ``while e > eps``, bounded
            if not e > eps:
                break
            schedule.append(e)
            e *= scaling
    schedule.append(eps)
    return schedule


def _entropic_ot(
    cost: Tensor, eps_schedule: list[float], max_iterations: int, tol: float
) -> tuple[Tensor, float, bool]:
    """Entropic OT cost ``<a, f> + <b, g>`` (uniform weights) by log-domain Sinkhorn with
    epsilon-scaling and symmetric, averaged updates (Feydy et al. 2019, geomloss), ending
    with one plain update.  The same arithmetic for ``OT(x, y)`` and ``OT(x, x)`` makes the
    debiased divergence of a sample with itself exactly zero.

    Returns ``(cost, last_change, converged)``: the largest potential change of the last
    iteration at the final epsilon, and whether it fell below ``tol * eps`` within
    ``max_iterations`` iterations."""
    n, m = cost.shape
    log_a = torch.full((n,), -math.log(n), dtype=cost.dtype, device=cost.device)
    log_b = torch.full((m,), -math.log(m), dtype=cost.dtype, device=cost.device)

    def softmin_f(g: Tensor, eps: float) -> Tensor:
        return -eps * torch.logsumexp(log_b[None, :] + (g[None, :] - cost) / eps, dim=1)

    def softmin_g(f: Tensor, eps: float) -> Tensor:
        return -eps * torch.logsumexp(log_a[:, None] + (f[:, None] - cost) / eps, dim=0)

    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    for eps in eps_schedule:
        f, g = 0.5 * (f + softmin_f(g, eps)), 0.5 * (g + softmin_g(f, eps))
    eps = eps_schedule[-1]
    converged, change = False, math.nan
    for _ in range(max_iterations):  # at the target epsilon, until the potentials settle
        f_new, g_new = 0.5 * (f + softmin_f(g, eps)), 0.5 * (g + softmin_g(f, eps))
        change = max(float((f_new - f).abs().max()), float((g_new - g).abs().max()))
        f, g = f_new, g_new
        if change < tol * eps:
            converged = True
            break
    f, g = softmin_f(g, eps), softmin_g(f, eps)
    return f.mean() + g.mean(), change, converged


@METRICS.register("sinkhorn")
class SinkhornDivergence(SampleMetric):
    r"""Debiased Sinkhorn divergence (Feydy et al. 2019) on the squared Euclidean cost:

        S_eps(x, y) = OT_eps(x, y) - OT_eps(x, x)/2 - OT_eps(y, y)/2,

    non-negative and zero iff the laws agree, with ``eps = (blur * s)^2`` where ``s`` is the
    root-mean-square spread of ``y`` about its mean (so it is not symmetric in ``x, y``
    unless ``y`` is the reference).  Log-domain iterations with epsilon-scaling from the
    squared diameter down to ``eps`` (factor ``scaling`` per iteration, at most
    ``MAX_ANNEALING_STAGES`` stages: see :func:`epsilon_schedule`), then at ``eps``
    until no potential moves by more than ``tol * eps`` (at most ``max_iterations``).  Memory ``O(n^2)``: refused above
    ``max_samples``.  Units: squared distance.

    When ``max_iterations`` is reached first (small ``blur``, small ``max_iterations``), the value
    is returned with a one-line :class:`NonConvergenceWarning` naming the iterations, the last
    potential change and the tolerance ``tol * eps``.  ``eps`` is at least ``1e-12`` and at least
    ``1e-290`` times the squared diameter (so that ``cost / eps`` stays finite).  Non-finite
    samples and samples above ``MAX_ABS_VALUE`` are refused (:class:`MetricInputError`): their
    squared diameter overflows and no schedule reaches ``eps`` from it.
    """

    alternatives = ("sliced_w2",)

    def __init__(
        self, blur: float = 0.3, scaling: float = 0.5, max_iterations: int = 500, tol: float = 1e-4,
        max_samples: int = 5000,
    ) -> None:
        if not is_positive_real(blur):
            raise ValueError(f"sinkhorn: blur must be a positive finite number, got {blur!r}")
        if not (is_positive_real(scaling) and scaling < 1):
            raise ValueError(f"sinkhorn: scaling must lie in (0, 1), got {scaling!r}")
        if not is_int_at_least(max_iterations, 1):
            raise ValueError(f"sinkhorn: max_iterations must be a positive integer, got {max_iterations!r}")
        if not is_positive_real(tol):
            raise ValueError(f"sinkhorn: tol must be a positive finite number, got {tol!r}")
        if not is_int_at_least(max_samples, 2):
            raise ValueError(f"sinkhorn: max_samples must be an integer >= 2, got {max_samples!r}")
        self.blur, self.scaling, self.tol = float(blur), float(scaling), float(tol)
        self.max_iterations = max_iterations
        self.max_samples = max_samples

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        x, y = x.double(), y.double().to(x.device)
        spread2 = float((y - y.mean(0)).pow(2).sum(1).mean())
        both = torch.cat([x, y])
        diam2 = float((both.max(0).values - both.min(0).values).pow(2).sum())
        eps = max(self.blur**2 * spread2, 1e-12, _MIN_EPS_RATIO * diam2)
        schedule = epsilon_schedule(diam2, eps, self.scaling)
        args = (schedule, self.max_iterations, self.tol)
        parts = {
            "OT(x, y)": _entropic_ot(torch.cdist(x, y).pow(2), *args),
            "OT(x, x)": _entropic_ot(torch.cdist(x, x).pow(2), *args),
            "OT(y, y)": _entropic_ot(torch.cdist(y, y).pow(2), *args),
        }
        value = parts["OT(x, y)"][0] - 0.5 * parts["OT(x, x)"][0] - 0.5 * parts["OT(y, y)"][0]
        stuck = [name for name, (_, _, converged) in parts.items() if not converged]
        if stuck:
            change = max(parts[name][1] for name in stuck)
            warnings.warn(NonConvergenceWarning(
                f"metric {self.name!r}: Sinkhorn iterations for {', '.join(stuck)} stopped at max_iterations = "
                f"{self.max_iterations} without converging: last potential change {change:.3g} > tolerance "
                f"tol * eps = {self.tol * eps:.3g} (tol = {self.tol:g}, eps = {eps:.3g}); the value "
                f"{float(value):.6g} is approximate (raise max_iterations or blur)"
            ), stacklevel=3)
        return float(value)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "blur": self.blur, "scaling": self.scaling,
            "max_iterations": self.max_iterations, "tol": self.tol, "max_samples": self.max_samples,
        }
