"""Conformance checks for a new sampler, in the spirit of scikit-learn's ``check_estimator``.

    from scorebench.testing import check_sampler
    check_sampler(MySampler())          # raises SamplerCheckError listing every failed check

Each check runs the sampler on small Gaussian problems whose answers are known:

* ``interface``: a :class:`~scorebench.samplers.Sampler` with an integer ``noise_per_step >= 0``.
* ``shapes_and_dtypes``: ``(n, d)`` output in float32 and float64, finite, for every process.
* ``device``: output on the generator's device (CUDA too, when present).
* ``determinism``: the same seed gives the same output; another seed a different one.
* ``chunking``: running in chunks gives the same particles as one batch (unless the sampler
  declares ``batch_invariant = False``, as score_sde's batch-normalised corrector does).
* ``nan_handling``: a score that returns NaN leads to non-finite output or a clear error,
  never to finite numbers that hide it.
* ``nfe``: the reported NFE equals the score evaluations a particle actually received.
* ``gaussian_exact_law``: on a Gaussian target with the exact score, the sample mean and
  covariance agree with the sampler's exact output law (z-test, affine samplers) or, for
  non-affine samplers, come within a tolerance of the target after many steps (200 steps,
  5000 particles by default; ``steps`` and ``n`` lower that for samplers whose steps are
  costly, such as trained JKO blocks or interacting particles, whose ``O(n^2)`` kernels make
  5000 particles slow).
* ``convergence``: correctness, not only consistency.  With the exact score, started from
  exact draws of ``p_T``, the error to the target at 50, 100, 200 and 400 steps (``ladder``)
  must be finite, shrink from each step count to the next, fall at a fitted order of at
  least 0.5 and end below a tolerance of 0.1 (W2); exact W2 of the exact output law for
  affine samplers, the W2 of the sample moments (20000 particles, or ``n``) for the others,
  down to their noise floor.  A gradient-flow sampler (JKO) is held to the Langevin flow it
  discretises.  The measured orders are reported.  See :mod:`scorebench.convergence`.

A step that uses a wrong score coefficient, ignores the score, draws the wrong noise
variance or writes one process's coefficients into the step passes every consistency check
(its exact law is still a Gaussian its samples agree with) and fails ``convergence``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .convergence import LADDER, Convergence, convergence
from .estimators.base import ScoreModel
from .estimators.oracle import OracleScore
from .exact import GaussianLaw, exact_output_law, gaussian_w2
from .metrics.moments import empirical_moments
from .processes import PROCESSES, ForwardProcess
from .samplers.base import Sampler
from .samplers.noise import NOISE_BLOCK
from .targets.gaussian import Gaussian
from .validation import is_int_at_least


class SamplerCheckError(AssertionError):
    """One or more conformance checks failed; the message lists them."""


@dataclass
class CheckReport:
    """Outcome of :func:`check_sampler`: ``(check, passed, detail)`` per check."""

    sampler: str
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    #: the ``convergence`` check's measurements, one per process
    convergence: list[Convergence] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.results)

    @property
    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, ok, detail in self.results if not ok]

    def __str__(self) -> str:
        lines = [f"check_sampler({self.sampler}):"]
        for name, ok, detail in self.results:
            first, *rest = (detail or "").splitlines() or [""]
            lines.append(f"  {'ok  ' if ok else 'FAIL'} {name}" + (f": {first}" if first else ""))
            lines += [f"         {line}" for line in rest]
        return "\n".join(lines)


class _NaNScore(OracleScore):
    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, math.nan)


TARGET = Gaussian(dim=3, mean=[1.0, -2.0, 0.5], condition_number=8.0)


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def check_sampler(
    sampler: Sampler,
    processes: tuple[str, ...] = ("vp", "ou", "ve", "subvp"),
    *,
    raise_on_failure: bool = True,
    steps: int | None = None,
    n: int | None = None,
    ladder: tuple[int, ...] = LADDER,
) -> CheckReport:
    """Run every conformance check on ``sampler``; see the module docstring.

    ``steps`` and ``n`` set the grid size and particle count of the non-affine Gaussian check
    (defaults 200 and 5000; its tolerance, Bures W2 < 0.15 on a 3-d target, allows about
    1000 particles); ``n`` also sets the particles of the non-affine ``convergence`` check
    (default 20000).  ``ladder`` is the step counts of the ``convergence`` check (default
    50, 100, 200, 400; fewer and smaller for samplers whose steps are costly).
    """
    for value, what in ((steps, "steps"), (n, "n")):
        if value is not None and not is_int_at_least(value, 1):
            raise ValueError(f"check_sampler: {what} must be a positive integer or None, got {value!r}")
    ladder = tuple(ladder)
    if len(ladder) < 2 or not all(is_int_at_least(s, 1) for s in ladder) or list(ladder) != sorted(set(ladder)):
        raise ValueError(f"check_sampler: ladder must be at least two increasing step counts, got {ladder!r}")
    name = getattr(sampler, "name", type(sampler).__name__)
    report = CheckReport(str(name))
    if not isinstance(sampler, Sampler):
        report.results.append(("interface", False, f"expected a scorebench Sampler, got {type(sampler).__name__}"))
        if raise_on_failure:
            raise SamplerCheckError(str(report))
        return report
    procs = {p: PROCESSES.build(p) for p in processes}

    def run(check: str, fn: Callable[[], str | None]) -> None:
        try:
            detail = fn()
            report.results.append((check, True, detail or ""))
        except Exception as exc:  # a check failing by assertion or by crashing is a failure
            report.results.append((check, False, f"{type(exc).__name__}: {exc}"))

    def score_for(process: ForwardProcess) -> ScoreModel:
        return OracleScore(TARGET, process)

    def interface() -> None:
        m = sampler.noise_per_step
        assert isinstance(m, int) and not isinstance(m, bool) and m >= 0, (
            f"noise_per_step must be an integer >= 0, got {m!r}"
        )

    def shapes_and_dtypes() -> None:
        for pname, process in procs.items():
            for dtype in (torch.float32, torch.float64):
                out = sampler.sample(score_for(process), process, 50, 10, _gen(0), dtype=dtype)
                x = out.samples
                assert tuple(x.shape) == (50, 3), f"{pname}: output shape {tuple(x.shape)}, expected (50, 3)"
                assert x.dtype == dtype, f"{pname}: output dtype {x.dtype}, expected {dtype}"
                assert torch.isfinite(x).all(), f"{pname}: non-finite output with the exact score"
                assert out.steps == 10, f"{pname}: reported {out.steps} steps for a 10-step grid"

    def device() -> str:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        process = procs[next(iter(procs))]
        for dev in devices:
            x = sampler.sample(score_for(process), process, 20, 5, _gen(0, dev)).samples
            assert x.device.type == dev, f"output on {x.device}, the generator is on {dev}"
        return "checked on " + ", ".join(devices)

    def determinism() -> None:
        for pname, process in procs.items():
            a = sampler.sample(score_for(process), process, 40, 8, _gen(5)).samples
            b = sampler.sample(score_for(process), process, 40, 8, _gen(5)).samples
            c = sampler.sample(score_for(process), process, 40, 8, _gen(6)).samples
            assert torch.equal(a, b), f"{pname}: the same seed gave different outputs"
            assert not torch.equal(a, c), f"{pname}: different seeds gave identical outputs"

    def chunking() -> str | None:
        if not sampler.batch_invariant:
            return "skipped: the sampler declares batch_invariant = False (its steps use batch statistics)"
        n = NOISE_BLOCK + NOISE_BLOCK // 2
        for pname, process in procs.items():
            whole = sampler.sample(score_for(process), process, n, 6, _gen(3), dtype=torch.float64).samples
            parts = sampler.sample(score_for(process), process, n, 6, _gen(3), dtype=torch.float64,
                                   chunk_size=NOISE_BLOCK).samples
            err = float((whole - parts).abs().max())
            assert err < 1e-8, f"{pname}: chunked output differs from one batch by {err:.3g}"

    def nan_handling() -> None:
        process = procs[next(iter(procs))]
        try:
            x = sampler.sample(_NaNScore(TARGET, process), process, 20, 5, _gen(0)).samples
        except (ValueError, FloatingPointError, RuntimeError):
            return  # a clear error is acceptable
        assert not torch.isfinite(x).all(), "a NaN score produced finite output: the sampler hides NaNs"

    def nfe() -> None:
        process = procs[next(iter(procs))]
        score = score_for(process)
        out = sampler.sample(score, process, 30, 7, _gen(0))
        assert out.nfe == score.calls, f"reported nfe={out.nfe}, but the score was called {score.calls} times"
        assert out.nfe > 0, "the sampler never evaluated the score"

    def gaussian_exact_law() -> str:
        lines = []
        n_check = 20_000 if sampler.affine else (n or 5_000)
        steps_check = 8 if sampler.affine else (steps or 200)
        for pname, process in procs.items():
            score = score_for(process)
            x = sampler.sample(score, process, n_check, steps_check, _gen(11), dtype=torch.float64).samples
            if sampler.affine:
                try:
                    law = exact_output_law(sampler, score, process, 8)
                except ValueError as exc:
                    raise AssertionError(
                        f"{pname}: the sampler declares affine = True, but with the exact (affine) score its "
                        "step is not affine in (x, noise); does it draw noise itself instead of using the "
                        f"noise argument, or should it set affine = False? ({exc})"
                    ) from None
                z = (x.mean(0) - law.mean) / (law.cov.diagonal() / n_check).sqrt()
                se = ((law.cov**2 + torch.outer(law.cov.diagonal(), law.cov.diagonal())) / (n_check - 1)).sqrt()
                zc = (empirical_moments(x)[1] - law.cov) / se
                worst = max(float(z.abs().max()), float(zc.abs().max()))
                assert worst < 4.5, f"{pname}: sample moments disagree with the exact law (max |z| = {worst:.1f})"
                lines.append(f"{pname} max|z|={worst:.1f}")
            else:
                m, c = empirical_moments(x)
                w = gaussian_w2(GaussianLaw(m, c), GaussianLaw.of(TARGET.marginal(process, process.t_min)))
                assert w < 0.15, (f"{pname}: after {steps_check} steps the moments are {w:.3f} (Bures W2) "
                                  "from the target")
                lines.append(f"{pname} bures_w2={w:.3f}")
        return ", ".join(lines)

    def converges() -> str:
        report.convergence = [convergence(sampler, process, TARGET, ladder, n=n) for process in procs.values()]
        failed = [c for c in report.convergence if not c.passed]
        what = report.convergence[0]
        head = f"{what.method}, against {what.reference}"
        if failed:
            raise AssertionError("\n".join([f"{head}; W2 by steps:", *(
                f"{c.process}: {'; '.join(c.problems)} ({c.table()})" for c in failed)]))
        return "\n".join([f"{head}:", *(c.summary() for c in report.convergence)])

    for check, fn in [
        ("interface", interface), ("shapes_and_dtypes", shapes_and_dtypes), ("device", device),
        ("determinism", determinism), ("chunking", chunking), ("nan_handling", nan_handling),
        ("nfe", nfe), ("gaussian_exact_law", gaussian_exact_law), ("convergence", converges),
    ]:
        run(check, fn)
    if raise_on_failure and not report.passed:
        raise SamplerCheckError(str(report))
    return report
