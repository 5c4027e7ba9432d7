"""Optimal-transport distances between samples (POT for exact OT, torch for the rest)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import ot
import torch
from torch import Tensor

from ..params import Check, Interval
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

    param_constraints: ClassVar[dict] = {"max_samples": Interval(int, 2, None)}

    def __init__(self, max_samples: int = 5000) -> None:
        self.set_params_from(max_samples=max_samples)

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


@METRICS.register("sliced_w2")
class SlicedW2(SampleMetric):
    r"""Sliced 2-Wasserstein distance ``(E_theta W2^2(theta^T x, theta^T y))^{1/2}`` over
    ``n_projections`` directions uniform on the sphere, drawn from the metric's generator.

    Each one-dimensional W2 is exact: for equal sample sizes the mean squared difference of
    the sorted projections (batched torch, any device); otherwise POT's
    ``sliced_wasserstein_distance`` with the same explicit projections.
    """

    param_constraints: ClassVar[dict] = {"n_projections": Interval(int, 1, None)}

    def __init__(self, n_projections: int = 128) -> None:
        self.set_params_from(n_projections=n_projections)

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


#: :class:`SinkhornDivergence` solves in float32 when the float32 rounding of the kernel's exponent
#: ``(f_i + g_j - C_ij) / eps``, about ``2^-24 * max(C) / eps``, is at most ``tol / FLOAT32_MARGIN``
#: (``max(C) / eps`` up to 500 at the default ``tol = 3e-4``: about 100 on typical samples at the
#: default ``blur``); otherwise (a small ``blur`` or ``tol``, outlying points) in float64
FLOAT32_MARGIN = 10.0
#: POT iterations between two symmetrisations ``h = (f + g) / 2`` of ``OT(x, x)`` and ``OT(y, y)``
SYMMETRIC_ROUND = 10
#: POT's ``sinkhorn_stabilized`` absorbs its scalings ``u, v`` into the potentials when one exceeds
#: ``tau`` and then restarts them at ``1/n, 1/m``, not 1: the next update brings ``v`` to about
#: ``n``, so with ``n >= tau`` (its default ``tau = 1e3``, any ``n >= 1000``) it absorbs at every
#: iteration and its plan stays at mass ``1 / (n m)`` (marginal error 1, never converging).  A
#: ``tau`` of ``ABSORB_FACTOR * max(n, m)`` lets the scalings settle after an absorption.
ABSORB_FACTOR = 1e3
#: POT checks the marginal error of ``OT(x, y)`` every this many iterations (a check is one pass of
#: ``exp`` over the ``n x m`` plan, about as costly as 20 iterations)
CHECK_PERIOD = 20
#: smallest ``eps`` relative to the squared diameter, so that ``cost / eps`` stays finite in float64
_MIN_EPS_RATIO = 1e-290


@dataclass(frozen=True)
class EntropicOT:
    """One entropic OT problem as solved by :func:`_entropic_ot`.

    ``value`` is the dual objective ``<a, f> + <b, g>`` at the returned potentials (a lower bound
    on ``OT_eps`` that is exact at convergence); ``error`` the relative marginal error of their
    plan ``P = a b^T exp((f + g - C) / eps)`` at the last check (``||P^T 1 - b|| / ||b||``); and
    ``iterations`` POT's Sinkhorn iterations."""

    value: float
    f: Tensor
    g: Tensor
    error: float
    iterations: int
    converged: bool
    pot_warnings: tuple[str, ...] = ()


def _pot_sinkhorn(
    cost: Tensor, a: Tensor, eps: float, f: Tensor, g: Tensor, iterations: int, stop: float, period: int
) -> tuple[Tensor, Tensor, float, int, list[str]]:
    """``iterations`` (at most) of POT's ``sinkhorn_stabilized`` (Schmitzer 2019: Sinkhorn's
    scaling iterations with the large scalings absorbed into log-domain potentials) from the
    dual potentials ``(f, g)``, uniform weights; stops once the marginal error, checked every
    ``period`` iterations, is at most ``stop``.  Returns the potentials, the last marginal
    error, the iterations run and POT's warnings (numerical errors)."""
    n, m = cost.shape
    b = a if m == n else torch.full((m,), 1.0 / m, dtype=cost.dtype, device=cost.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # POT's warm start (alpha, beta) with its initial scalings u = a, v = b is the plan
        # a b^T exp((alpha + beta - C) / eps): the dual potentials (f, g) themselves
        _, log = ot.bregman.sinkhorn_stabilized(
            a, b, cost, eps, numItermax=iterations, tau=ABSORB_FACTOR * max(n, m), stopThr=stop, warmstart=(f, g),
            print_period=period, log=True, warn=False,
        )
    # POT's log["alpha"] = alpha + eps log(u) is the potential f + eps log(a) of P = exp((alpha + beta - C) / eps)
    f_new = log["alpha"] - eps * math.log(1.0 / n)
    g_new = log["beta"] - eps * math.log(1.0 / m)
    return f_new, g_new, float(log["err"][-1]), int(log["n_iter"]) + 1, [str(w.message) for w in caught]


def _dual_objective(cost: Tensor, f: Tensor, g: Tensor, eps: float) -> tuple[float, float]:
    """The dual objective ``<a, f> + <b, g> - eps (sum P - 1)`` at any potentials (a lower bound
    on ``OT_eps``), with ``P = a b^T exp((f_i + g_j - C_ij) / eps)``, and the relative error of its
    row marginals ``||P 1 - a|| / ||a||`` (row sums in the log domain, summed in float64)."""
    n, m = cost.shape
    log_rows = f / eps + torch.logsumexp((g[None, :] - cost) / eps, dim=1) - math.log(m) - math.log(n)
    rows = log_rows.double().exp()
    value = float(f.double().mean()) + float(g.double().mean()) - eps * (float(rows.sum()) - 1.0)
    return value, float((rows - 1.0 / n).norm()) * math.sqrt(n)


def _entropic_ot(cost: Tensor, eps: float, max_iterations: int, tol: float, symmetric: bool = False) -> EntropicOT:
    """Entropic OT ``OT_eps = min_P <P, C> + eps KL(P | a b^T)`` (uniform weights ``a``, ``b``)
    by POT's Sinkhorn solver (:func:`_pot_sinkhorn`), in the dtype and on the device of ``cost``.

    ``OT(x, y)``: one POT solve from the c-transform start ``f_i = min_j C_ij``,
    ``g_j = min_i (C_ij - f_i)`` (every row and column of the initial kernel holds a 1, so
    nothing underflows, whatever ``C / eps``), until the relative marginal error is at most
    ``tol`` or after ``max_iterations`` iterations; the value is the dual objective
    ``<a, f> + <b, g>`` (the last update makes the row marginals exact).

    ``symmetric`` (``C`` of a sample with itself): the alternating iterates of a symmetric
    problem oscillate about the symmetric solution (their error nearly changes sign each
    half-step when the plan is close to diagonal), so POT runs ``SYMMETRIC_ROUND`` iterations
    from ``(h, h)`` and ``h = (f + g) / 2`` (the symmetric update of Feydy et al. 2019) until the
    plan of ``(h, h)`` meets ``tol``; the value is the dual objective at ``(h, h)``."""
    n, m = cost.shape
    a = torch.full((n,), 1.0 / n, dtype=cost.dtype, device=cost.device)
    caught: list[str] = []
    if symmetric:
        h = torch.zeros(n, dtype=cost.dtype, device=cost.device)
        used, value, error = 0, math.nan, math.nan
        while used < max_iterations:
            rounds = min(SYMMETRIC_ROUND, max_iterations - used)
            f, g, _, it, w = _pot_sinkhorn(cost, a, eps, h, h, rounds, 0.0, rounds + 1)
            used, h = used + it, 0.5 * (f + g)
            caught += w
            value, error = _dual_objective(cost, h, h, eps)
            if error <= tol or not math.isfinite(error):
                break
        return EntropicOT(value, h, h, error, used, error <= tol and not caught, tuple(caught))
    f = cost.min(dim=1).values
    g = (cost - f[:, None]).min(dim=0).values
    f, g, error, used, caught = _pot_sinkhorn(cost, a, eps, f, g, max_iterations, tol / math.sqrt(m), CHECK_PERIOD)
    error *= math.sqrt(m)  # POT's ||P^T 1 - b||_2 relative to ||b||_2 = 1 / sqrt(m)
    value, _ = _dual_objective(cost, f, g, eps)  # POT's last update makes the rows exact: sum P = 1
    return EntropicOT(value, f, g, error, used, error <= tol and not caught, tuple(caught))


@METRICS.register("sinkhorn")
class SinkhornDivergence(SampleMetric):
    r"""Debiased Sinkhorn divergence (Feydy et al. 2019) on the squared Euclidean cost:

        S_eps(x, y) = OT_eps(x, y) - OT_eps(x, x)/2 - OT_eps(y, y)/2,
        OT_eps(x, y) = min_P <P, C> + eps KL(P | a b^T)
                     = max_{f, g} <a, f> + <b, g> - eps <a b^T, exp((f + g - C) / eps) - 1>,

    with ``C_ij = |x_i - y_j|^2`` (no factor 1/2), uniform weights ``a``, ``b``, and
    ``eps = (blur * s)^2`` where ``s`` is the root-mean-square spread of ``y`` about its mean (so
    it is not symmetric in ``x, y`` unless ``y`` is the reference).  The exact ``S_eps`` is
    non-negative and zero iff the laws agree; ``S_eps(x, x)`` is returned as exactly 0.  Units:
    squared distance.  Each ``OT_eps`` keeps its entropic term (the dual value above): POT's
    ``empirical_sinkhorn_divergence`` keeps only ``<P, C>`` and clamps at 0, so it differs by design.

    Conventions of other libraries: geomloss's ``SamplesLoss("sinkhorn", p=2, blur=B)`` uses the
    cost ``|x - y|^2 / 2`` and ``eps = B^2``, so its value is half of this one at
    ``B^2 = eps / 2``, i.e. ``B = blur * s / sqrt(2)``; POT's ``reg`` is this ``eps`` on
    ``ot.dist``'s cost ``|x - y|^2``.

    **Solver** (version 2): POT's ``sinkhorn_stabilized`` (see :func:`_entropic_ot`): ``OT(x, y)``
    from a c-transform start, the symmetric ``OT(x, x)`` and ``OT(y, y)`` with averaged
    potentials.  Each stops when the relative marginal error of its plan is at most ``tol``, after
    at most ``max_iterations`` iterations: on 8-cluster samples (n = 2000, d = 2 and 10) the
    default ``3e-4`` keeps the value within about ``1e-5`` of the converged one (``1e-3``:
    ``2e-4``).  The cost matrix and potentials are float32 where float32 rounding stays below
    ``tol / FLOAT32_MARGIN``, else float64; the values are summed in float64.  ``OT(y, y)`` of the
    last reference sample is kept, so that repeated calls with the same ``y`` (the value, the
    noise floor and bootstrap resamples of one cell) solve it once.  Sinkhorn's iterations grow
    like ``1 / eps``: a few hundred at the default ``blur``, thousands at ``blur = 0.05`` (hence
    the default ``max_iterations``; an iteration costs two matrix-vector products, a few
    milliseconds at n = 2000).  Memory ``O(n^2)``: refused above ``max_samples``.

    When ``max_iterations`` is reached first (small ``blur``, small ``max_iterations``), or POT
    reports a numerical error, the value is returned with a one-line
    :class:`NonConvergenceWarning` naming the problems, the iterations, the marginal error and
    ``tol``.  ``eps`` is at least ``1e-12`` and at least ``1e-290`` times the squared diameter.
    A value that is still not finite raises ``FloatingPointError`` naming POT's warnings.
    Non-finite samples and samples above ``MAX_ABS_VALUE`` are refused
    (:class:`MetricInputError`), by ``compute`` too: their squared diameter overflows.

    Version 1 (scorebench before this solver) iterated its own symmetric, averaged log-domain
    updates with epsilon-scaling (``scaling``), stopping on the change of the potentials: its
    values at the default 500 iterations were often not converged, hence the new version.
    """

    version = "2"
    alternatives = ("sliced_w2",)

    param_constraints: ClassVar[dict] = {
        "blur": Interval(float, 0, None, closed="neither"), "max_iterations": Interval(int, 1, None),
        "tol": Interval(float, 0, None, closed="neither"), "max_samples": Interval(int, 2, None),
        "scaling": Check(lambda v: v is None, "omitted (it is no longer a parameter: version 2 solves with POT "
                                             "from a c-transform start, without epsilon-scaling)"),
    }
    hidden_params = ("scaling",)

    def __init__(
        self, blur: float = 0.3, max_iterations: int = 20_000, tol: float = 3e-4, max_samples: int = 5000,
        scaling: float | None = None,
    ) -> None:
        self.set_params_from(blur=blur, max_iterations=max_iterations, tol=tol, max_samples=max_samples,
                             scaling=scaling)
        self._reference: tuple[Tensor, float, int, float, EntropicOT] | None = None

    def _solve(self, p: Tensor, q: Tensor, eps: float, symmetric: bool = False) -> EntropicOT:
        """``OT_eps(p, q)`` on the cost ``|p_i - q_j|^2`` (computed in float64), solved in float32
        when its rounding of ``C / eps`` stays below ``tol / FLOAT32_MARGIN``, else in float64."""
        cost = ot.dist(p, q)
        single = float(cost.max()) / eps * 2.0**-24 <= self.tol / FLOAT32_MARGIN
        return _entropic_ot(cost.float() if single else cost, eps, self.max_iterations, self.tol, symmetric)

    def _reference_ot(self, y: Tensor, eps: float) -> EntropicOT:
        """``OT_eps(y, y)``, solved once for the last reference sample ``y`` (the same values,
        device, ``eps`` and solver settings)."""
        kept = self._reference
        if (kept is not None and kept[1:4] == (eps, self.max_iterations, self.tol) and kept[0].device == y.device
                and kept[0].shape == y.shape and torch.equal(kept[0], y)):
            return kept[-1]
        result = self._solve(y, y, eps, symmetric=True)
        self._reference = (y.detach().clone(), eps, self.max_iterations, self.tol, result)
        return result

    def compute(self, x: Tensor, y: Tensor, generator: torch.Generator) -> float:
        x, y = x.double(), y.double().to(x.device)
        spread2 = float((y - y.mean(0)).pow(2).sum(1).mean())
        both = torch.cat([x, y])
        diam2 = float((both.max(0).values - both.min(0).values).pow(2).sum())
        if not (math.isfinite(diam2) and math.isfinite(spread2)):
            raise MetricInputError(
                f"metric {self.name!r}: the squared diameter {diam2!r} of the samples is not finite; "
                f"no entropic transport is defined on it"
            )
        if x.shape == y.shape and torch.equal(x, y):
            return 0.0  # OT(x, y) = OT(x, x) = OT(y, y): the debiased divergence is exactly zero
        eps = max(self.blur**2 * spread2, 1e-12, _MIN_EPS_RATIO * diam2)
        parts = {
            "OT(x, y)": self._solve(x, y, eps),
            "OT(x, x)": self._solve(x, x, eps, symmetric=True),
            "OT(y, y)": self._reference_ot(y, eps),
        }
        value = parts["OT(x, y)"].value - 0.5 * parts["OT(x, x)"].value - 0.5 * parts["OT(y, y)"].value
        if not math.isfinite(value):
            raise FloatingPointError(
                f"metric {self.name!r}: the Sinkhorn divergence is not finite ({value}); POT reported: "
                + ("; ".join(w for part in parts.values() for w in part.pot_warnings) or "nothing")
            )
        stuck = [name for name, part in parts.items() if not part.converged]
        if stuck:
            capped = all(parts[name].iterations >= self.max_iterations for name in stuck)
            how = (f"stopped at max_iterations = {self.max_iterations} without converging" if capped else
                   f"stopped without converging after {max(parts[name].iterations for name in stuck)} iterations "
                   f"(max_iterations = {self.max_iterations})")
            pot = "; ".join(dict.fromkeys(w for name in stuck for w in parts[name].pot_warnings))
            error = max(parts[name].error for name in stuck)
            warnings.warn(NonConvergenceWarning(
                f"metric {self.name!r}: POT's Sinkhorn iterations for {', '.join(stuck)} {how}: relative marginal "
                f"error {error:.3g} > tolerance tol = {self.tol:g} (eps = {eps:.3g}{'; POT: ' + pot if pot else ''}); "
                f"the value {value:.6g} is approximate (raise max_iterations or blur)"
            ), stacklevel=3)
        return float(value)
