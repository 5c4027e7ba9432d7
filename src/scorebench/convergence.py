r"""Does a sampler converge to the right law as its grid is refined?

Consistency -- a sampler's samples agree with the sampler's own exact law -- is not
correctness: any affine map has an exact law.  Correctness is that the error to the law
the sampler is meant to produce shrinks as the step count grows.  :func:`convergence`
measures it on a Gaussian target with the exact score, where that law is known exactly:

* a **time reversal** starts from exact draws of ``p_{T0}`` (``T0`` the sampler's
  :meth:`~scorebench.samplers.Sampler.start_time`), so that no initialisation error hides
  the discretisation error (a probability-flow ODE does not contract the prior's error,
  docs/theory.md F.4), and should produce ``p_{t_min}``;
* a **gradient flow** (a JKO scheme, ``sampler.gradient_flow``) starts from its own initial
  law and should produce the law at its flow time ``tau`` of the Langevin diffusion toward
  ``p_{t_min}`` (:func:`~scorebench.exact.langevin_flow_law`), the limit of JKO steps of total
  size ``tau`` (Jordan, Kinderlehrer, Otto 1998).

The error is the exact W2 (Bures) of the sampler's exact output law for affine samplers (no
Monte-Carlo noise), and for the others the Bures W2 of the sample's mean and covariance,
whose noise floor (the same statistic for exact draws of the reference, averaged over
:data:`FLOOR_DRAWS` draws) bounds what the check can resolve.  A sampler passes when every
error is finite, the error at the largest step count is at most ``tolerance``, the error
shrinks from each step count to the next (unless it is already within the resolution,
twice the floor), and the least-squares order through the resolved points,
``error ~ steps^slope``, is at most ``-min_order``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .estimators.oracle import OracleScore
from .exact import GaussianLaw, exact_output_law, gaussian_w2, langevin_flow_law
from .metrics.moments import empirical_moments
from .processes import ForwardProcess
from .samplers.base import Sampler
from .stats import fit_order
from .targets.base import Target
from .validation import is_int_at_least

#: step counts of the convergence check
LADDER: tuple[int, ...] = (50, 100, 200, 400)
#: the slowest accepted order: error ~ steps^(-MIN_ORDER)
MIN_ORDER = 0.5
#: largest accepted W2 at the largest step count (the kit's target has scale sqrt(tr Sigma) = 1.22)
TOLERANCE = 0.1
#: particles of the sample-moment check of a non-affine sampler
MOMENT_PARTICLES = 20_000
#: independent exact draws over which the noise floor of the sample-moment W2 is averaged
FLOOR_DRAWS = 8
#: relative rounding level of exact laws (float64 over hundreds of steps)
ROUNDING = 1e-9


@dataclass(frozen=True)
class Convergence:
    """Errors of one sampler on one process along a ladder of step counts.

    ``resolution`` is the error below which the check cannot tell the sampler from its
    reference (twice the Monte-Carlo floor, or the rounding level of exact laws);
    ``order`` and ``se`` are the fitted slope and its standard error through the errors above
    it (NaN when fewer than two are).  ``problems`` is empty when the sampler passes.
    """

    process: str
    steps: tuple[int, ...]
    errors: tuple[float, ...]
    resolution: float
    method: str
    reference: str
    order: float
    se: float
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """``"vp: order -1.00 ± 0.00, W2 4.26e-03 at 400 steps"`` and, where the check is limited by
        noise, its resolution."""
        if math.isnan(self.order):
            order = f"order not resolved (errors within {self.resolution:.2g} from "
            first = next((s for s, e in zip(self.steps, self.errors, strict=True) if e <= self.resolution), None)
            order += f"{first} steps)" if first is not None else "the start)"
        elif math.isfinite(self.se):
            order = f"order {self.order:+.2f} ± {self.se:.2f}"
        else:
            order = f"order {self.order:+.2f}"
        return f"{self.process}: {order}, W2 {self.errors[-1]:.3g} at {self.steps[-1]} steps"

    def table(self) -> str:
        """The errors, one ``steps: value`` pair each."""
        return ", ".join(f"{s}: {e:.3g}" for s, e in zip(self.steps, self.errors, strict=True))


def judge(steps: Sequence[int], errors: Sequence[float], resolution: float, tolerance: float = TOLERANCE,
          min_order: float = MIN_ORDER) -> tuple[float, float, list[str]]:
    """Fitted order, its standard error and the problems of an error ladder (see the module
    docstring for the criteria)."""
    problems = []
    bad = [s for s, e in zip(steps, errors, strict=True) if not math.isfinite(e)]
    if bad:
        problems.append(f"the error is not finite at {', '.join(map(str, bad))} steps (the chain diverges)")
        return math.nan, math.nan, problems
    if errors[-1] > tolerance:
        problems.append(f"W2 {errors[-1]:.3g} at {steps[-1]} steps exceeds the tolerance {tolerance:g}")
    stuck = [f"{steps[i]} -> {steps[i + 1]} steps" for i in range(len(steps) - 1)
             if errors[i + 1] >= errors[i] and errors[i + 1] > resolution]
    if stuck:
        problems.append(f"the error does not shrink from {', '.join(stuck)}")
    resolved = [(s, e) for s, e in zip(steps, errors, strict=True) if e > resolution]
    if len(resolved) < 2:
        return math.nan, math.nan, problems
    slope, se, _ = fit_order([s for s, _ in resolved], [e for _, e in resolved])
    if slope > -min_order:
        spread = f" ± {se:.2f}" if math.isfinite(se) else ""
        problems.append(f"fitted order {slope:+.2f}{spread}: slower than steps^-{min_order:g}")
    return slope, se, problems


def convergence(
    sampler: Sampler,
    process: ForwardProcess,
    target: Target,
    ladder: Sequence[int] = LADDER,
    *,
    n: int | None = None,
    seed: int = 0,
    tolerance: float = TOLERANCE,
    min_order: float = MIN_ORDER,
) -> Convergence:
    """Measure and judge ``sampler``'s error along ``ladder`` on the Gaussian ``target`` with its
    exact score under ``process`` (see the module docstring).

    ``n`` is the particle count of the sample-moment check of a non-affine sampler
    (default :data:`MOMENT_PARTICLES`).  Raises ``ValueError`` for a target that is not Gaussian
    or a ladder that is not increasing step counts."""
    steps = tuple(ladder)
    if len(steps) < 2 or not all(is_int_at_least(s, 1) for s in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(f"convergence: ladder must be at least two increasing step counts, got {ladder!r}")
    n = MOMENT_PARTICLES if n is None else n
    if not is_int_at_least(n, 2):
        raise ValueError(f"convergence: n must be an integer >= 2, got {n!r}")
    score = OracleScore(target, process)
    pi = GaussianLaw.of(target.marginal(process, process.t_min))
    flow = sampler.gradient_flow
    start = GaussianLaw.isotropic(target.dim, sampler.initial_std(process)) if flow else \
        GaussianLaw.of(target.marginal(process, sampler.start_time(process)))
    x0 = None if flow or sampler.affine else start.sample(n, torch.Generator().manual_seed(seed))
    errors, references, taus = [], [], set()
    for count in steps:
        grid = sampler.resolve_grid(process, count)
        if flow:
            tau = sampler.flow_time(process, grid)
            taus.add(round(tau, 10))
        reference = langevin_flow_law(pi, start, tau) if flow else pi
        references.append(reference)
        if sampler.affine:
            law = exact_output_law(sampler, score, process, grid, init=None if flow else start)
            errors.append(gaussian_w2(law, reference) if _finite(law) else math.inf)
        else:
            out = sampler.sample(score, process, n, grid, torch.Generator().manual_seed(seed + 1), x_init=x0,
                                 dtype=torch.float64).samples
            errors.append(gaussian_w2(GaussianLaw(*empirical_moments(out.cpu())), reference)
                          if torch.isfinite(out).all() else math.inf)
    scale = math.sqrt(float(torch.trace(pi.cov)) + float(pi.mean @ pi.mean))
    if sampler.affine:
        resolution, method = ROUNDING * (1.0 + scale), "exact law"
    else:
        gen = torch.Generator().manual_seed(seed + 2)
        last = references[-1]
        floor = sum(gaussian_w2(GaussianLaw(*empirical_moments(last.sample(n, gen))), last)
                    for _ in range(FLOOR_DRAWS)) / FLOOR_DRAWS
        resolution, method = 2.0 * floor, f"sample moments, n = {n}"
    if flow:
        what = f"the Langevin flow toward p_t_min at time {', '.join(f'{t:g}' for t in sorted(taus))}"
    else:
        what = "p_t_min, from exact draws of p_T"
    order, se, problems = judge(steps, errors, resolution, tolerance, min_order)
    return Convergence(process.name, steps, tuple(errors), resolution, method, what, order, se, tuple(problems))


def _finite(law: GaussianLaw) -> bool:
    return bool(torch.isfinite(law.mean).all() and torch.isfinite(law.cov).all())
