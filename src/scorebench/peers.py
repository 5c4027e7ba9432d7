r"""scorebench against the code a user would write instead, timed in one process.

The sampling problem: reverse Euler--Maruyama from the prior ``N(0, I)`` at ``T`` down to
``t_min`` over ``steps`` uniform steps, under the ``vp`` process, with the exact score of an
8-component Gaussian mixture with unit covariances (:func:`mixture`), ``n`` particles, float32.
Four implementations of the same chain (same target, score, grid, particle count):

``scorebench``
    the public API: ``get_sampler("euler_maruyama").sample(get_estimator("oracle").fit(target,
    process), process, n, steps, generator)``, so an optimisation inside scorebench shows here;
``obvious``
    the loop one writes first: per step the diffused mixture's score through an explicit
    ``n x K x d`` difference tensor, coefficients read from the process at every step;
``floor``
    a tight loop: the score in matmul form (``m x^T`` plus a per-component bias: the ``|x|^2``
    term of ``|x - m|^2`` is the same for every component and cancels in the softmax), logits
    laid out ``(K, n)`` (see :class:`MatmulScore`), the EM update fused into one ``addmm_``,
    per-step coefficients precomputed as Python floats, buffers reused, one
    ``torch.randn(n, d)`` per step;
``torchsde``
    ``torchsde.sdeint(method="euler")`` on the reverse SDE written in forward time ``s = T - t``
    with the floor's score and coefficients, diagonal noise, ``dt`` the step, a seeded
    ``BrownianInterval``.

All four are Euler--Maruyama with the exact score, so their outputs have the same law up to
Monte-Carlo error (not the same numbers: each draws its noise its own way); :func:`law_gap`
checks that on means and covariances.  ``python -m scorebench.peers`` prints the timings (best
of ``--repeat``, at each ``--threads``) with the ratios ``scorebench / floor`` and
``scorebench / torchsde``; ``--metrics`` adds scorebench's ``sinkhorn``, ``sliced_w2``, ``mmd``
and ``energy`` against geomloss and POT.  torchsde and geomloss are optional (the ``bench``
extra): a missing one is reported as ``not installed``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import scorebench as sb

from .processes import ForwardProcess, time_grid
from .targets.mixture import GaussianMixture

#: the mixture: components, radius of their means, seed of the mean directions (``d > 2``)
N_COMPONENTS = 8
RADIUS = 5.0
MIXTURE_SEED = 0
#: seed of every sampling run (each timed call does the same work)
SEED = 0
#: the implementations, in table order
PEERS = ("scorebench", "obvious", "floor", "torchsde")
NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class Case:
    n: int
    dim: int
    steps: int

    @property
    def label(self) -> str:
        return f"N={self.n}, d={self.dim}, {self.steps} steps"


#: the sizes of the issue's table, and small ones for tests and the default asv tier
CASES: dict[str, tuple[Case, ...]] = {
    "issue": (Case(10_000, 2, 200), Case(1_000, 2, 1000), Case(100_000, 16, 100)),
    "small": (Case(1_000, 2, 20), Case(200, 2, 50), Case(2_000, 16, 10)),
}


class NotInstalled(RuntimeError):
    """An optional peer package (torchsde, geomloss) is missing."""


# ---------------------------------------------------------------------------------------
# the problem
# ---------------------------------------------------------------------------------------


def mixture(dim: int) -> GaussianMixture:
    """8 equally weighted unit-covariance components with means at distance :data:`RADIUS` from
    the origin: on a regular octagon in 2-d, along seeded random directions otherwise."""
    if dim == 2:
        angle = 2 * math.pi * torch.arange(N_COMPONENTS, dtype=torch.float64) / N_COMPONENTS
        directions = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    else:
        g = torch.Generator().manual_seed(MIXTURE_SEED)
        directions = torch.randn((N_COMPONENTS, dim), generator=g, dtype=torch.float64)
        directions = directions / directions.norm(dim=1, keepdim=True)
    return GaussianMixture(
        torch.ones(N_COMPONENTS, dtype=torch.float64), RADIUS * directions,
        torch.ones((N_COMPONENTS, dim), dtype=torch.float64),
    )


def process() -> ForwardProcess:
    """The ``vp`` process with its defaults (linear beta in [0.1, 20] on [1e-3, 1])."""
    return sb.get_process("vp")


def _unit_covariance_tables(target: GaussianMixture) -> tuple[Tensor, Tensor]:
    if target.basis is not None or not bool((target.eigvals == 1).all()):
        raise ValueError("the peer loops assume unit component covariances")
    return target.means.float(), target.log_weights.float()


@dataclass
class EMCoefficients:
    """Per-step floats of the EM chain on a uniform grid: the step's start time ``t``, step ``h``,
    ``alpha_t``, the diffused components' variance ``alpha_t^2 + sigma_t^2``, ``f(t)``, ``g(t)^2``."""

    t: list[float]
    h: list[float]
    alpha: list[float]
    var: list[float]
    f: list[float]
    g2: list[float]

    @classmethod
    def of(cls, proc: ForwardProcess, steps: int) -> EMCoefficients:
        grid = time_grid(proc, steps)
        t = grid[:-1]
        alpha = proc.alpha(t)
        return cls(
            t.tolist(), (t - grid[1:]).tolist(), alpha.tolist(), (alpha**2 + proc.sigma2(t)).tolist(),
            proc.f(t).tolist(), proc.g2(t).tolist(),
        )


class MatmulScore:
    """The diffused mixture's score in matmul form (float32): with unit covariances the
    components of ``p_t`` are ``N(alpha mu_k, v I)``, ``v = alpha^2 + sigma^2``, so

        logits = x (alpha/v) mu^T + log pi - alpha^2 |mu|^2 / (2v),
        score  = (softmax(logits) (alpha mu) - x) / v.

    The logits are laid out ``(K, n)`` and normalised along dim 0: torch's CPU softmax over a
    short last dimension (``(n, K)``, dim 1) is several times slower than over the long one.
    """

    def __init__(self, target: GaussianMixture) -> None:
        self.mu, self.log_w = _unit_covariance_tables(target)
        self.mu_sq = (self.mu * self.mu).sum(1)

    def logits_t(self, x: Tensor, alpha: float, var: float) -> Tensor:
        """``(K, n)`` logits."""
        bias = torch.add(self.log_w, self.mu_sq, alpha=-alpha * alpha / (2 * var))
        return torch.addmm(bias[:, None], self.mu, x.T, alpha=alpha / var)

    def __call__(self, x: Tensor, alpha: float, var: float) -> Tensor:
        resp_t = torch.softmax(self.logits_t(x, alpha, var), dim=0)
        return torch.addmm(x, resp_t.T, self.mu, beta=-1.0 / var, alpha=alpha / var)


# ---------------------------------------------------------------------------------------
# the four samplers: prepare(...) builds what is not timed and returns the timed call
# ---------------------------------------------------------------------------------------


def prepare_scorebench(target: GaussianMixture, proc: ForwardProcess, n: int, steps: int, seed: int = SEED
                       ) -> Callable[[], Tensor]:
    sampler = sb.get_sampler("euler_maruyama")
    score = sb.get_estimator("oracle").fit(target, proc)

    def run() -> Tensor:
        g = torch.Generator().manual_seed(seed)
        return sampler.sample(score, proc, n, steps, g, dtype=torch.float32).samples

    return run


def prepare_obvious(target: GaussianMixture, proc: ForwardProcess, n: int, steps: int, seed: int = SEED
                    ) -> Callable[[], Tensor]:
    mu, log_w = _unit_covariance_tables(target)
    d = target.dim

    def run() -> Tensor:
        g = torch.Generator().manual_seed(seed)
        x = proc.prior_std * torch.randn(n, d, generator=g)
        grid = time_grid(proc, steps).tolist()
        for t, t_next in itertools.pairwise(grid):
            h = t - t_next
            alpha = float(proc.alpha(t))
            var = alpha**2 * 1.0 + float(proc.sigma2(t))  # component covariance alpha^2 I + sigma^2 I
            diff = x[:, None, :] - alpha * mu[None]  # (n, K, d)
            w = torch.softmax(log_w - 0.5 * (diff * diff).sum(-1) / var, dim=1)
            score = -(w[:, :, None] * diff).sum(1) / var
            f, g2 = float(proc.f(t)), float(proc.g2(t))
            x = x - h * (f * x - g2 * score) + math.sqrt(g2 * h) * torch.randn(n, d, generator=g)
        return x

    return run


def prepare_floor(
    target: GaussianMixture, proc: ForwardProcess, n: int, steps: int, seed: int = SEED, *,
    score_scale: float = 1.0,
) -> Callable[[], Tensor]:
    """The floor loop; ``score_scale`` multiplies the score (1 is correct: the tests pass -1 to
    check that :func:`law_gap` catches a wrong sampler)."""
    ms = MatmulScore(target)
    d, K = target.dim, target.n_components

    def run() -> Tensor:
        c = EMCoefficients.of(proc, steps)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, d, generator=g)
        if proc.prior_std != 1.0:
            x.mul_(proc.prior_std)
        z = torch.empty(n, d)
        logits_t = torch.empty(K, n)
        bias = torch.empty(K, 1)
        for k in range(steps):
            h, alpha, var, g2 = c.h[k], c.alpha[k], c.var[k], c.g2[k]
            torch.add(ms.log_w[:, None], ms.mu_sq[:, None], alpha=-alpha * alpha / (2 * var), out=bias)
            torch.addmm(bias, ms.mu, x.T, alpha=alpha / var, out=logits_t)
            resp_t = torch.softmax(logits_t, dim=0)  # (K, n): see MatmulScore
            # x' = x - h (f x - g2 s) + sqrt(g2 h) z  with  s = (resp (alpha mu) - x) / v
            hg = score_scale * h * g2 / var
            x.addmm_(resp_t.T, ms.mu, beta=1.0 - h * c.f[k] - hg, alpha=hg * alpha)
            torch.randn(n, d, generator=g, out=z)
            x.add_(z, alpha=math.sqrt(g2 * h))
        return x

    return run


def prepare_torchsde(target: GaussianMixture, proc: ForwardProcess, n: int, steps: int, seed: int = SEED
                     ) -> Callable[[], Tensor]:
    """``torchsde.sdeint(method="euler")`` in forward time ``s = T - t``: drift
    ``-f(t) y + g(t)^2 score(y, t)``, diagonal diffusion ``g(t)``; step ``k`` uses the
    coefficients of grid time ``t_k`` (the step is stretched by 1e-9 so that rounding in
    torchsde's time accumulation cannot add a tiny extra step)."""
    try:
        import torchsde
    except ImportError as err:
        raise NotInstalled("torchsde") from err
    ms = MatmulScore(target)
    d = target.dim
    span = proc.T - proc.t_min
    h = span / steps

    class ReverseSDE(torchsde.SDEIto):  # type: ignore[misc, name-defined]
        def __init__(self, c: EMCoefficients) -> None:
            super().__init__(noise_type="diagonal")
            self.c = c
            self.steps_seen: list[int] = []

        def index(self, s: Tensor) -> int:
            return min(round(float(s) / h), steps - 1)

        def f(self, s: Tensor, y: Tensor) -> Tensor:
            k = self.index(s)
            self.steps_seen.append(k)
            c = self.c
            return ms(y, c.alpha[k], c.var[k]).mul_(c.g2[k]).add_(y, alpha=-c.f[k])

        def g(self, s: Tensor, y: Tensor) -> Tensor:
            return y.new_full((1, 1), math.sqrt(self.c.g2[self.index(s)])).expand_as(y)

    def run() -> Tensor:
        c = EMCoefficients.of(proc, steps)
        g = torch.Generator().manual_seed(seed)
        y0 = proc.prior_std * torch.randn(n, d, generator=g)
        bm = torchsde.BrownianInterval(t0=0.0, t1=span, size=(n, d), dtype=y0.dtype, entropy=seed, dt=h)
        sde = ReverseSDE(c)
        ts = torch.tensor([0.0, span], dtype=torch.float64)
        out = torchsde.sdeint(sde, y0, ts, bm=bm, method="euler", dt=h * (1 + 1e-9))[-1]
        run.steps_seen = sde.steps_seen  # type: ignore[attr-defined]  # the step index of each drift call
        return out

    return run


PREPARE: dict[str, Callable[..., Callable[[], Tensor]]] = {
    "scorebench": prepare_scorebench, "obvious": prepare_obvious, "floor": prepare_floor,
    "torchsde": prepare_torchsde,
}


def prepare(peer: str, case: Case, seed: int = SEED, **kwargs: Any) -> Callable[[], Tensor]:
    """The timed call of ``peer`` on ``case`` (:class:`NotInstalled` if its package is missing)."""
    if peer not in PREPARE:
        raise ValueError(f"unknown peer {peer!r}; allowed: {', '.join(PEERS)}")
    return PREPARE[peer](mixture(case.dim), process(), case.n, case.steps, seed, **kwargs)


# ---------------------------------------------------------------------------------------
# the same-law check
# ---------------------------------------------------------------------------------------


def law_gap(a: Tensor, b: Tensor) -> float:
    """Largest standardised difference between the sample means and covariances of two
    independent samples ``a`` and ``b`` (each ``(n, d)``): ``|difference| / standard error``
    over the ``d`` mean coordinates and ``d(d+1)/2`` covariance entries, standard errors
    estimated from the samples (for a covariance entry, from the spread of the centred products).
    Under equal laws each term is roughly standard normal; 5 or less is agreement."""

    def stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x = x.double()
        n = x.shape[0]
        c = x - x.mean(0)
        iu = torch.triu_indices(x.shape[1], x.shape[1])
        prods = c[:, iu[0]] * c[:, iu[1]]  # (n, d(d+1)/2)
        return x.mean(0), c.var(0) / n, prods.mean(0), prods.var(0) / n

    ma, va, pa, wa = stats(a)
    mb, vb, pb, wb = stats(b)
    z_mean = (ma - mb).abs() / (va + vb).sqrt()
    z_cov = (pa - pb).abs() / (wa + wb).sqrt()
    gap = float(torch.cat([z_mean, z_cov]).max())
    return gap if math.isfinite(gap) else math.inf


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------


def best_of(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best wall time of each call over ``repeat`` rounds, the calls interleaved within a round
    (so load from other processes falls on all of them alike)."""
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@dataclass
class SamplerRow:
    case: Case
    threads: int
    seconds: dict[str, float | None]  # None: not installed

    def ratio(self, peer: str) -> float | None:
        other = self.seconds.get(peer)
        mine = self.seconds["scorebench"]
        return None if other is None or mine is None else mine / other


def time_samplers(cases: Sequence[Case], threads: int, repeat: int) -> list[SamplerRow]:
    torch.set_num_threads(threads)
    rows = []
    for case in cases:
        fns: dict[str, Callable[[], Any]] = {}
        for peer in PEERS:
            try:
                fns[peer] = prepare(peer, case)
            except NotInstalled:
                pass
        best = best_of(fns, repeat)
        rows.append(SamplerRow(case, threads, {p: best.get(p) for p in PEERS}))
    return rows


def fmt_seconds(s: float | None) -> str:
    return NOT_INSTALLED if s is None else f"{s:.4g}"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3g}"


SAMPLER_HEADER = (
    "| case | threads | scorebench `euler_maruyama` + `oracle` (s) | obvious loop, N×K×d score (s) "
    "| floor, float32 matmul loop (s) | torchsde `sdeint(euler)` (s) | scorebench / floor | scorebench / torchsde |"
)


def sampler_table(rows: Sequence[SamplerRow]) -> str:
    lines = [SAMPLER_HEADER, "|" + "---|" * 8]
    for r in rows:
        cells = [r.case.label, str(r.threads), *(fmt_seconds(r.seconds[p]) for p in PEERS),
                 fmt_ratio(r.ratio("floor")), fmt_ratio(r.ratio("torchsde"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# metrics against geomloss and POT
# ---------------------------------------------------------------------------------------

#: blur of scorebench's ``sinkhorn`` (its default); eps = (blur * s)^2, s the RMS spread of y
SINKHORN_BLUR = 0.3


@dataclass
class MetricRow:
    n: int
    threads: int
    metric: str
    implementation: str
    value: float | None = None
    seconds: float | None = None
    note: str = ""


def metric_samples(n: int, dim: int = 2) -> tuple[Tensor, Tensor]:
    """``x``: draws of :func:`mixture` dilated by 1.1 about the origin; ``y``: independent exact
    draws (float64, so that every implementation does float64 work)."""
    target = mixture(dim)
    x = 1.1 * target.sample(n, torch.Generator().manual_seed(1), dtype=torch.float64)
    y = target.sample(n, torch.Generator().manual_seed(2), dtype=torch.float64)
    return x, y


def _median_sq_distance(y: Tensor, max_points: int = 500) -> float:
    sub = y[:max_points]
    d2 = torch.cdist(sub, sub).pow(2)
    iu = torch.triu_indices(sub.shape[0], sub.shape[0], 1)
    return float(d2[iu[0], iu[1]].median())


def metric_calls(x: Tensor, y: Tensor) -> dict[tuple[str, str], Callable[[], float] | str]:
    """``(metric, implementation) -> call returning the value on scorebench's scale`` (or a
    string saying why it is missing).  Conversions: geomloss's Sinkhorn uses the cost
    ``|x-y|^2/2`` and ``eps = blur^2``, so ``blur = blur_sb * s / sqrt(2)`` is scorebench's eps
    and its value is half scorebench's; geomloss's kernel losses are ``||a - b||_k^2 / 2`` with
    the V-statistic, so twice the value is the biased MMD^2 (energy distance); POT's
    ``empirical_sinkhorn_divergence`` takes scorebench's cost and eps but sums ``<pi, C>`` of the
    entropic plans (no entropy term) rather than the dual objective."""
    n = x.shape[0]
    spread2 = float((y - y.mean(0)).pow(2).sum(1).mean())
    eps = (SINKHORN_BLUR * math.sqrt(spread2)) ** 2
    ell = _median_sq_distance(y)
    gen = torch.Generator().manual_seed(3)
    calls: dict[tuple[str, str], Callable[[], float] | str] = {}

    try:
        sinkhorn = sb.get_metric("sinkhorn", blur=SINKHORN_BLUR, max_samples=max(n, 2))
    except (TypeError, ValueError):  # a version without these parameters
        sinkhorn = sb.get_metric("sinkhorn")
    sliced = sb.get_metric("sliced_w2", n_projections=128)
    mmd = sb.get_metric("mmd", bandwidth=ell)
    energy = sb.get_metric("energy")
    calls["sinkhorn", "scorebench"] = lambda: float(sinkhorn(x, y, gen))
    calls["sliced_w2", "scorebench"] = lambda: float(sliced(x, y, gen))
    calls["mmd", "scorebench"] = lambda: float(mmd(x, y, gen))
    calls["energy", "scorebench"] = lambda: float(energy(x, y, gen))

    try:
        from geomloss import SamplesLoss
    except ImportError:
        for key in GEOMLOSS_ROWS:
            calls[key] = NOT_INSTALLED
    else:
        g_sink = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(eps / 2), scaling=0.5, backend="tensorized")
        g_sink9 = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(eps / 2), scaling=0.9, backend="tensorized")
        g_mmd = SamplesLoss("gaussian", blur=math.sqrt(ell / 2), backend="tensorized")
        g_energy = SamplesLoss("energy", backend="tensorized")
        calls["sinkhorn", "geomloss"] = lambda: 2 * float(g_sink(x, y))
        calls["sinkhorn", "geomloss, scaling 0.9"] = lambda: 2 * float(g_sink9(x, y))
        calls["mmd", "geomloss"] = lambda: 2 * float(g_mmd(x, y))
        calls["energy", "geomloss"] = lambda: 2 * float(g_energy(x, y))

    import ot

    calls["sinkhorn", "pot"] = lambda: float(ot.bregman.empirical_sinkhorn_divergence(x, y, eps, warn=False))
    calls["sliced_w2", "pot"] = lambda: float(ot.sliced_wasserstein_distance(x, y, n_projections=128, p=2, seed=0))
    return calls


METRIC_NOTES = {
    ("sinkhorn", "scorebench"): "debiased, cost |x−y|², eps = (0.3 s)²",
    ("sinkhorn", "geomloss"): "2 × SamplesLoss('sinkhorn', p=2, blur=√(eps/2)), tensorized; ε-scaling 0.5 "
                              "(its default), no convergence test: low at small n",
    ("sinkhorn", "geomloss, scaling 0.9"): "the same with scaling=0.9: more iterations, closer to converged",
    ("sinkhorn", "pot"): "ot.bregman.empirical_sinkhorn_divergence(reg=eps): ⟨π, C⟩ terms, no entropy",
    ("sliced_w2", "scorebench"): "128 projections",
    ("sliced_w2", "pot"): "ot.sliced_wasserstein_distance, 128 projections (other directions)",
    ("mmd", "scorebench"): "unbiased MMD², exp(−|u−v|²/l), l = median sq. distance of y",
    ("mmd", "geomloss"): "2 × SamplesLoss('gaussian', blur=√(l/2)): biased (V-statistic) MMD², above "
                         "the unbiased one by O(1/n)",
    ("energy", "scorebench"): "unbiased energy distance",
    ("energy", "geomloss"): "2 × SamplesLoss('energy'): V-statistic, above the unbiased one by O(1/n)",
}
GEOMLOSS_ROWS = [key for key in METRIC_NOTES if key[1].startswith("geomloss")]


def time_metrics(sizes: Sequence[int], threads: int, repeat: int, budget: float) -> list[MetricRow]:
    """Each (metric, implementation) at each ``n``, best of ``repeat`` (fewer when the calls
    would exceed ``budget`` seconds together); skipped where the time predicted from the
    previous size (times ``(n / n_prev)^2``, all these are O(n^2)) exceeds ``budget``."""
    torch.set_num_threads(threads)
    rows = []
    last: dict[tuple[str, str], tuple[int, float | None]] = {}
    for n in sorted(sizes):
        x, y = metric_samples(n)
        for key, call in metric_calls(x, y).items():
            row = MetricRow(n, threads, *key, note=METRIC_NOTES.get(key, ""))
            rows.append(row)
            if isinstance(call, str):
                row.note = call
                continue
            if key in last:
                n_prev, s_prev = last[key]
                if s_prev is None:
                    row.note = f"skipped (skipped at n = {n_prev})"
                    last[key] = (n, None)
                    continue
                predicted = s_prev * (n / n_prev) ** 2
                if predicted > budget:
                    row.note = f"skipped: ~{predicted:.0f} s predicted from n = {n_prev} (budget {budget:g} s)"
                    last[key] = (n, None)
                    continue
            best, spent, runs = math.inf, 0.0, 0
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                while runs < repeat and (runs == 0 or spent + best <= budget):
                    start = time.perf_counter()
                    value = call()
                    took = time.perf_counter() - start
                    best, spent, runs = min(best, took), spent + took, runs + 1
            row.value, row.seconds = value, best
            extra = [f"best of {runs}"] if runs < repeat else []
            extra += sorted({f"warned: {type(w.message).__name__}" for w in caught})
            row.note = "; ".join([row.note, *extra]) if row.note else "; ".join(extra)
            last[key] = (n, best)
    return rows


METRIC_HEADER = "| n | threads | metric | implementation | value | seconds | note |"


def metric_table(rows: Sequence[MetricRow]) -> str:
    lines = [METRIC_HEADER, "|" + "---|" * 7]
    for r in rows:
        value = "—" if r.value is None else f"{r.value:.5g}"
        seconds = "—" if r.seconds is None else f"{r.seconds:.4g}"
        lines.append(f"| {r.n} | {r.threads} | {r.metric} | {r.implementation} | {value} | {seconds} | {r.note} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------


def provenance() -> str:
    from . import environment

    commit = environment.git_output("rev-parse", "--short", "HEAD")
    status = environment.git_output("status", "--porcelain")
    dirty = " (uncommitted changes)" if status else ""
    versions = ", ".join(
        f"{p} {environment.package_version(p) or NOT_INSTALLED}" for p in ("torch", "torchsde", "geomloss", "pot")
    )
    return (f"scorebench {sb.__version__} at {commit or 'an unknown commit'}{dirty}; {versions}; "
            f"{environment.cpu_model()}, {os.cpu_count()} CPUs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scorebench.peers",
        description="Time scorebench's Euler-Maruyama sampler and metrics against plain torch loops, torchsde, "
                    "geomloss and POT on the same problem, in one process.",
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default: 1 2)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many calls (default: 3)")
    parser.add_argument("--cases", choices=sorted(CASES), default="issue", help="sampling sizes (default: issue)")
    parser.add_argument("--metrics", action="store_true", help="also time sinkhorn, sliced_w2, mmd, energy")
    parser.add_argument("--metric-sizes", type=int, nargs="+", default=[1000, 2000, 10000],
                        help="sample sizes of --metrics (default: 1000 2000 10000)")
    parser.add_argument("--metric-budget", type=float, default=120.0,
                        help="seconds one metric call may take; larger predicted times are skipped (default: 120)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or any(t < 1 for t in args.threads) or any(n < 2 for n in args.metric_sizes):
        parser.error("--repeat and --threads must be positive and --metric-sizes at least 2")

    print("# scorebench against its peers")
    print()
    print(provenance())
    print()
    print(f"Reverse Euler–Maruyama, T → t_min on a uniform grid, `vp` process, {N_COMPONENTS}-component "
          f"unit-covariance Gaussian mixture (means at radius {RADIUS:g}), exact score, float32; "
          f"seconds, best of {args.repeat}.")
    print()
    rows = [row for t in args.threads for row in time_samplers(CASES[args.cases], t, args.repeat)]
    print(sampler_table(rows))
    if args.metrics:
        print()
        print("Metrics between 1.1 × draws of the 2-d mixture and independent draws (float64 inputs); values "
              "on scorebench's scale (conversions in the notes; s² = mean squared distance of y to its mean).")
        print()
        mrows = [row for t in args.threads
                 for row in time_metrics(args.metric_sizes, t, args.repeat, args.metric_budget)]
        print(metric_table(mrows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
