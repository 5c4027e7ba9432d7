"""Shared pieces of the asv suite: parameters, skips, the synchronising timer, seeded inputs
and cached, warmed-up builders.

Rules the benchmark modules follow (docs/benchmarking.md explains why):

* **Nothing heavy at import.**  torch and scorebench are imported inside the builders, so a
  parameter combination skipped in ``setup`` (no CUDA, slow size switched off) costs an
  interpreter start only (asv runs every combination in its own process).
* **Cheap setup.**  asv-runner >= 0.3 runs ``setup`` before *every* timed call; ``setup``
  only calls :func:`require` and an ``lru_cache``'d builder, which builds the inputs, fits
  models and warms the kernel up once per process.  Builders return a zero-argument
  callable (the timed work) or a number (``track_*``).
* **Synchronised timing.**  Every class whose parameters include ``"cuda"`` sets
  ``timer = staticmethod(sync_timer)``; warm-up happens in the builder, so first-call costs
  (CUDA context, cuBLAS handles, lazy initialisation) are never timed.
* **Seeds.**  Every random draw comes from a ``torch.Generator`` seeded from :data:`SEED`
  (plus a fixed offset per input), on the benchmark's device.
* **Two tiers.**  The smallest size of each grid always runs; the larger sizes run only when
  ``SCOREBENCH_BENCH_SLOW=1`` (nightly) and are skipped otherwise.
* **Declared sizes.**  Every sampler, estimator and metric is built from its class's declared
  test parameters (``test_params_for``, the sizes its conformance tests and ``--quick`` use) with
  the parameters of this module's tables on top: a table says only what a benchmark sets
  deliberately (a variant, a workload size, no early stopping), never a class's sizes again.

The benchmarks come from the working tree while a managed asv environment installs an older
commit of scorebench, so this module uses only long-standing public API (registries, targets,
samplers, ``NoiseSource``) and skips, rather than fails, a component the installed version
does not register.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

try:
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # asv_runner absent (the suite imported outside asv); asv also skips on NotImplementedError

    class SkipNotImplemented(NotImplementedError):  # type: ignore[no-redef]
        pass


# ---------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------

DEVICES = ["cpu", "cuda"]
#: dimensions and particle counts of the sampler, score and noise benchmarks (first = default tier)
DIMS = [2, 16]
PARTICLES = [1024, 16384]
#: sample sizes of the metric benchmarks
METRIC_SIZES = [500, 2000]
#: largest sample size a metric is timed at (sinkhorn's default settings take seconds at 500
#: points of the benchmark mixture and minutes at 2000 on one CPU core)
METRIC_MAX_N = {"sinkhorn": 500}
#: base seed of every input
SEED = 0
#: environment switch for the larger sizes
SLOW_ENV = "SCOREBENCH_BENCH_SLOW"
#: time grid the step benchmarks take their first step on, and the full sampling runs use
STEPS = 50
#: diffusion time at which scores are evaluated (the VP process runs on [1e-3, 1])
T_EVAL = 0.5

#: step benchmarks: label -> (registered sampler, parameters on top of its test parameters)
STEP_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler_maruyama": ("euler_maruyama", {}),
    "exponential_integrator": ("exponential_integrator", {}),
    "pf_ode_euler": ("pf_ode", {"method": "euler"}),
    "pf_ode_heun": ("pf_ode", {"method": "heun"}),
    "ddpm": ("ddpm", {}),
    "pc": ("pc", {"corrector_steps": 1}),
    "pc_finite_horizon": ("pc_finite_horizon", {"corrector_steps": 20}),
    "jko_exact_gaussian": ("jko_exact_gaussian", {}),
    "jko_particle": ("jko_particle", {"iterations": 10}),
    "jko_flow": ("jko_flow", {"iterations": 20, "width": 16, "depth": 1, "n_train": 512, "batch_size": 256}),
}
#: samplers whose step trains or plans per run: ``begin`` is part of each timed step
RESTART_EACH_STEP = {"jko_flow"}
#: largest particle count a sampler is timed at (O(n^2) time and memory per step above it)
MAX_PARTICLES = {"jko_particle": 4096}

#: full sampling runs (oracle score of a Gaussian mixture, STEPS uniform steps)
RUN_SAMPLERS = ["exponential_integrator", "pf_ode_heun"]

#: affine samplers whose exact output law is tracked (oracle score, Gaussian target)
EXACT_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    **{k: STEP_SAMPLERS[k] for k in (
        "euler_maruyama", "exponential_integrator", "pf_ode_euler", "pf_ode_heun", "ddpm", "pc_finite_horizon",
        "jko_exact_gaussian",
    )},
    "pc_fixed_step": ("pc", {"corrector_steps": 1, "step_size": 1e-3}),
}

#: sampled accuracy runs: label -> (sampler, parameters on top of its test parameters, steps, particles)
SAMPLED_ACCURACY: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "exponential_integrator": ("exponential_integrator", {}, STEPS, 2000),
    "pf_ode_heun": ("pf_ode", {"method": "heun"}, STEPS, 2000),
    "jko_particle": ("jko_particle", {"iterations": 10}, 10, 1000),
}
#: dimension of the Gaussian target of the accuracy cells
ACCURACY_DIM = 4

#: score estimators: label -> (registered estimator, parameters on top of its test parameters): the
#: fit budget is the declared one (the ``--quick`` budget); ``ntk`` trains it all (no early stopping)
ESTIMATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "oracle": ("oracle", {}),
    "ntk": ("ntk", {"stopping": "none"}),
    "ntk_kernel": ("ntk_kernel", {"stopping": "none"}),
    "lipschitz_affine": ("lipschitz", {"family": "affine"}),
    "lipschitz_network": ("lipschitz", {"family": "network"}),
    "convex": ("convex", {}),
    "mlp_dsm": ("mlp_dsm", {}),
    "memorising": ("memorising", {}),
}
LEARNED = [k for k in ESTIMATORS if k != "oracle"]

#: metrics timed by :func:`metric_call` at each sample size (names only: asv reads its parameters
#: before scorebench is imported; how each is evaluated is its own declaration)
TIMED_METRICS = ["w2", "sliced_w2", "sinkhorn", "mmd", "energy", "bures_w2", "mean_error", "cov_error",
                 "score_mse", "score_mse_traj", "score_jacobian", "mode_tv", "modes_missed"]
#: exact-law metrics, timed by :func:`exact_metric_call` (no device, no sample size)
EXACT_METRICS = ["exact_w2", "exact_kl"]


# ---------------------------------------------------------------------------------------
# skips and timer
# ---------------------------------------------------------------------------------------


def slow_enabled() -> bool:
    """Whether the larger sizes run (``SCOREBENCH_BENCH_SLOW`` set to anything but ``0``)."""
    return os.environ.get(SLOW_ENV, "0").strip() not in ("", "0")


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, answered without importing torch on a Linux machine that
    has no GPU driver at all (the common CPU-only case)."""
    if sys.platform.startswith("linux") and not any(
        os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/kfd")
    ):
        return False
    import torch

    return torch.cuda.is_available()


def require(device: str, *, slow: bool = False) -> None:
    """Raise :class:`SkipNotImplemented` (asv shows ``n/a``) for a CUDA combination on a machine
    without CUDA, and for a ``slow`` combination unless ``SCOREBENCH_BENCH_SLOW=1``."""
    if slow and not slow_enabled():
        raise SkipNotImplemented(f"larger size: set {SLOW_ENV}=1 to run it")
    if device == "cuda" and not cuda_available():
        raise SkipNotImplemented("no CUDA device")


def is_slow(*values: Any, defaults: tuple[Any, ...] = (DIMS[0], PARTICLES[0])) -> bool:
    """Whether a combination of sizes is outside the default tier."""
    return tuple(values) != tuple(defaults)


def sync_timer() -> float:
    """``time.perf_counter()`` after ``torch.cuda.synchronize()`` when this process has initialised
    CUDA (the same clock as ``scorebench.timing.sync_perf_counter``, kept here so that importing
    the suite imports no torch and works with scorebench versions that predate that module).

    Use as ``timer = staticmethod(sync_timer)``: a plain function as a class attribute would be
    bound as a method.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


# ---------------------------------------------------------------------------------------
# small helpers (lazy imports)
# ---------------------------------------------------------------------------------------


def _sb() -> Any:
    import scorebench

    return scorebench


def _torch() -> Any:
    import torch

    return torch


def synchronize(device: str) -> None:
    torch = _torch()
    if device == "cuda" and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def warm_up(fn: Callable[[], Any], device: str, calls: int = 2) -> None:
    """Run ``fn`` ``calls`` times and synchronise: first-call costs (CUDA context and kernels,
    cuBLAS handles, lazy initialisation) stay out of the timings."""
    for _ in range(calls):
        fn()
    synchronize(device)


def expensive_warm_up(fn: Callable[[], Any], device: str) -> None:
    """Warm-up for calls that take seconds (full runs, metrics): once on CUDA, where the first
    call pays for the context and kernel loading; not at all on the CPU, where that cost is
    small next to the call."""
    warm_up(fn, device, calls=1 if device == "cuda" else 0)


def cuda_peak_bytes(fn: Callable[[], Any]) -> float:
    """CUDA bytes ``fn()`` allocated above the level when it started (peak, after a reset)."""
    torch = _torch()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return float(torch.cuda.max_memory_allocated() - base)


def generator(device: str, offset: int = 0) -> Any:
    """A ``torch.Generator`` on ``device`` seeded with ``SEED + offset``."""
    torch = _torch()
    return torch.Generator(torch.device(device)).manual_seed(SEED + offset)


def declared_params(factory: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``{**test parameters, **params}``: the test parameters ``factory`` declares for the variant
    ``params`` select (``test_params_for``; a scorebench version without it: ``test_params``,
    else none), with ``params`` on top."""
    if hasattr(factory, "test_params_for"):
        small = factory.test_params_for(params)
    else:
        small = dict(getattr(factory, "test_params", {}))
    return {**small, **params}


def _build(registry: Any, kind: str, name: str, params: dict[str, Any]) -> Any:
    if name not in registry:
        raise SkipNotImplemented(f"{kind} {name!r} is not registered in this scorebench version")
    factory = registry.factory(name)
    learned = kind == "estimator" and not getattr(factory, "needs_exact_target", False)
    if learned and not hasattr(factory, "test_params"):  # its defaults are full training budgets
        raise SkipNotImplemented(f"{kind} {name!r} declares no test parameters in this scorebench version")
    return registry.build(name, **declared_params(factory, params))


def sampler(label: str, table: dict[str, tuple[Any, ...]] | None = None) -> Any:
    """Sampler ``label`` of ``table`` (default :data:`STEP_SAMPLERS`; an entry starts with the
    registered name and the parameters set on top of the test parameters)."""
    name, params = (STEP_SAMPLERS if table is None else table)[label][:2]
    return _build(_sb().SAMPLERS, "sampler", name, params)


def estimator(label: str) -> Any:
    """Estimator ``label`` of :data:`ESTIMATORS`."""
    name, params = ESTIMATORS[label]
    return _build(_sb().ESTIMATORS, "estimator", name, params)


def metric(name: str) -> Any:
    return _build(_sb().METRICS, "metric", name, {})


@functools.cache
def process() -> Any:
    """The forward process of every benchmark: VP with linear beta in [0.1, 20] on [1e-3, 1]."""
    return _sb().get_process("vp")


@functools.cache
def gaussian_target(dim: int) -> Any:
    """``N(1, Sigma)`` with condition number 10 in a seeded random basis (exact scores, exact laws)."""
    return _sb().get_target("gaussian", dim=dim, mean=[1.0] * dim, condition_number=10.0, rotation_seed=0)


@functools.cache
def gmm_target(dim: int) -> Any:
    """A 5-mode Gaussian mixture in ``dim`` dimensions (means N(0, 9 I), unit variances, seed 0)."""
    return _sb().get_target("gmm", preset="random", dim=dim, n_components=5, seed=0)


def oracle(target: Any) -> Any:
    return _sb().get_estimator("oracle").fit(target, process())


# ---------------------------------------------------------------------------------------
# builders: sampler steps, runs, noise
# ---------------------------------------------------------------------------------------


@functools.cache
def sampler_step(device: str, label: str, dim: int, n: int) -> Callable[[], Any]:
    """One step of sampler ``label`` on ``n`` particles in ``dim`` dimensions: the first step of a
    ``STEPS``-step grid, from the sampler's initial law, with the oracle score of
    :func:`gaussian_target` and the step's explicit noise drawn beforehand (float32).

    ``pc_finite_horizon``'s first step includes its Langevin corrector; ``jko_flow``'s trains
    its JKO block (a fresh run state from ``begin`` before each timed step); ``jko_exact_gaussian``
    plans its Gaussian recursion once, outside the timing.
    """
    if n > MAX_PARTICLES.get(label, n):
        raise SkipNotImplemented(f"{label} is timed up to {MAX_PARTICLES[label]} particles (O(n^2) per step)")
    sb = _sb()
    s = sampler(label)
    proc = process()
    score = oracle(gaussian_target(dim))
    grid = s.resolve_grid(proc, STEPS)
    t, t_next = float(grid[0]), float(grid[1])
    noise = sb.samplers.NoiseSource(SEED, device)
    x = s.initial_std(proc) * noise.normal(0, 0, n, (dim,))
    m = s.noise_slots(1)
    z = s.step_noise(noise.normal(1, 0, n, (m, dim)), False) if m > 0 else None
    state = s.open_run(score, proc, grid)
    restart = label in RESTART_EACH_STEP

    def run() -> Any:
        run_state = s.open_run(score, proc, grid) if restart else state
        return s.run_step(score, proc, x, t, t_next, z, state=run_state)

    warm_up(run, device)
    return run


@functools.cache
def sampling_run(device: str, label: str, dim: int, n: int) -> Callable[[], Any]:
    """A full ``sampler.sample`` run: ``n`` particles, ``STEPS`` uniform steps, oracle score of
    :func:`gmm_target` (``dim`` dimensions), float32, a fresh seeded generator per run."""
    s = sampler(label)
    proc = process()
    score = oracle(gmm_target(dim))

    def run() -> Any:
        return s.sample(score, proc, n, STEPS, generator(device)).samples

    expensive_warm_up(run, device)
    return run


@functools.cache
def noise_draw(device: str, dim: int, n: int) -> Callable[[], Any]:
    """``NoiseSource.normal`` for one step's noise: ``n`` particles x ``dim`` (counter-based
    blocks of 1024 particles, each from its own seeded generator)."""
    noise = _sb().samplers.NoiseSource(SEED, device)

    def run() -> Any:
        return noise.normal(1, 0, n, (1, dim))

    warm_up(run, device)
    return run


# ---------------------------------------------------------------------------------------
# builders: estimators and scores
# ---------------------------------------------------------------------------------------


@functools.cache
def fitted_model(device: str, label: str, dim: int) -> Any:
    """Estimator ``label`` fitted once on :func:`gmm_target` (``dim``) with the generator on
    ``device`` (so it trains there)."""
    return estimator(label).fit(gmm_target(dim), process(), generator(device, 100))


@functools.cache
def estimator_fit(device: str, label: str, dim: int) -> Callable[[], Any]:
    """A full ``fit`` of estimator ``label`` within its declared test budget (plus :data:`ESTIMATORS`),
    with a freshly seeded generator each time (so every timed fit does the same work)."""
    est = estimator(label)
    target, proc = gmm_target(dim), process()
    fitted_model(device, label, dim)  # warm-up: one fit, reused by the score benchmarks

    def run() -> Any:
        return est.fit(target, proc, generator(device, 100))

    synchronize(device)
    return run


@functools.cache
def score_eval(device: str, label: str, dim: int, n: int) -> Callable[[], Any]:
    """One batched call ``model(x, T_EVAL)`` of a fitted (or oracle) score on ``n`` exact draws
    of ``p_t`` of :func:`gmm_target`."""
    torch = _torch()
    target, proc = gmm_target(dim), process()
    model = oracle(target) if label == "oracle" else fitted_model(device, label, dim)
    x = target.marginal(proc, T_EVAL).sample(n, generator(device, 1), dtype=torch.float32)

    def run() -> Any:
        return model(x, T_EVAL)

    warm_up(run, device)
    return run


# ---------------------------------------------------------------------------------------
# builders: metrics
# ---------------------------------------------------------------------------------------


def _metric_samples(device: str, dim: int, n: int) -> tuple[Any, Any]:
    """``x``: draws of :func:`gmm_target` dilated by 1.1 about the origin (a law near the target);
    ``y``: independent exact draws of the target (float32)."""
    torch = _torch()
    target = gmm_target(dim)
    x = 1.1 * target.sample(n, generator(device, 1), dtype=torch.float32)
    y = target.sample(n, generator(device, 2), dtype=torch.float32)
    return x, y


@functools.cache
def metric_call(device: str, name: str, dim: int, n: int) -> Callable[[], Any]:
    """One evaluation of metric ``name`` (default parameters) at sample size ``n``, as a run
    evaluates it: ``metric.evaluate(ctx)`` on one :class:`~scorebench.metrics.MetricContext`.

    The context holds ``x`` and the reference ``y`` of :func:`_metric_samples`, :func:`gmm_target`
    (its exact moments for moment metrics), a ``noisy_oracle`` score (``eps = 0.5``) for score
    metrics, and exact draws of ``p_t`` at ``score_mse``'s log-spaced times as the recorded states
    of metrics that need a trajectory; each evaluation draws from a fresh generator.  ``w2`` solves
    its transport problem with POT on the CPU whatever the device.
    """
    if n > METRIC_MAX_N.get(name, n):
        raise SkipNotImplemented(f"{name} is timed up to {METRIC_MAX_N[name]} points")
    sb = _sb()
    context = getattr(sb.metrics, "MetricContext", None)
    if context is None:
        raise SkipNotImplemented("metric contexts are not in this scorebench version")
    if name not in TIMED_METRICS:
        raise ValueError(f"unknown timed metric {name!r}; allowed: {', '.join(TIMED_METRICS)}")
    torch = _torch()
    from scorebench.metrics.score import log_spaced_times

    met = metric(name)
    target, proc = gmm_target(dim), process()
    x, y = _metric_samples(device, dim, n)
    states: list[tuple[float, Any]] = []
    if met.needs_trajectory:
        gen = generator(device, 4)
        states = [(t, target.marginal(proc, t).sample(n, gen, dtype=torch.float32))
                  for t in log_spaced_times(proc, getattr(met, "n_times", 5))]
    ctx = context(x=x, y1=y, y2=y, target=target, process=proc,
                  score=sb.get_estimator("noisy_oracle", eps=0.5).fit(target, proc), states=tuple(states),
                  generator=lambda: generator(device, 3), n_samples=n)

    def run() -> Any:
        return met.evaluate(ctx)

    expensive_warm_up(run, device)
    return run


@functools.cache
def exact_metric_call(name: str, dim: int) -> Callable[[], float]:
    """``exact_w2``/``exact_kl`` of the exponential integrator (``STEPS`` steps, oracle score,
    :func:`gaussian_target`): the exact output law is propagated step by step in float64 on
    the CPU, so there is no device parameter."""
    met = metric(name)
    s = sampler("exponential_integrator")
    target, proc = gaussian_target(dim), process()
    score = oracle(target)
    grid = s.resolve_grid(proc, STEPS)

    def run() -> float:
        return met.compute(s, score, proc, grid, target)

    run()
    return run


# ---------------------------------------------------------------------------------------
# accuracy (all lower is better)
# ---------------------------------------------------------------------------------------


@functools.cache
def exact_w2_error(label: str, dim: int = ACCURACY_DIM, steps: int = STEPS) -> float:
    """Exact W2 (Bures formula, no Monte Carlo) between the output law of affine sampler
    ``label`` (``steps`` uniform steps, prior start, oracle score) and :func:`gaussian_target`:
    discretisation plus initialisation error."""
    s = sampler(label, EXACT_SAMPLERS)
    target, proc = gaussian_target(dim), process()
    return float(metric("exact_w2").compute(s, oracle(target), proc, s.resolve_grid(proc, steps), target))


@functools.cache
def sampled_bures_error(device: str, label: str) -> float:
    """Bures W2 between the empirical mean and covariance of the samples of sampler ``label``
    (steps and particles from :data:`SAMPLED_ACCURACY`, oracle score of :func:`gaussian_target` in
    ``ACCURACY_DIM`` dimensions, seeded) and the target's exact moments: sampler error plus the
    Monte-Carlo error of the moments."""
    steps, n = SAMPLED_ACCURACY[label][2:]
    s = sampler(label, SAMPLED_ACCURACY)
    target, proc = gaussian_target(ACCURACY_DIM), process()
    out = s.sample(oracle(target), proc, n, steps, generator(device, 10)).samples
    mean, cov = target.moments()
    return float(metric("bures_w2")(out, mean, cov))


@functools.cache
def sampled_w2_gmm(device: str, n: int = 1000) -> float:
    """Empirical W2 (exact optimal transport, POT) between ``n`` exponential-integrator samples of
    the ``ring8`` mixture (oracle score, ``STEPS`` steps) and ``n`` independent exact target draws."""
    sb = _sb()
    target, proc = sb.get_target("gmm", preset="ring8"), process()
    out = sampler("exponential_integrator").sample(oracle(target), proc, n, STEPS, generator(device, 11)).samples
    ref = target.sample(n, generator(device, 12))
    return float(metric("w2")(out, ref))


@functools.cache
def noise_score_error(device: str, label: str, dim: int = DIMS[0], n: int = 4096) -> float:
    """Score error of fitted estimator ``label`` on :func:`gmm_target` in noise-prediction units:
    the mean over ``score_mse``'s five log-spaced times ``t`` of
    ``sigma_t^2 E||s_hat(x, t) - grad log p_t(x)||^2`` (the error of the implied noise prediction
    ``-sigma_t s``, the DSM "noise" weighting), with ``n`` exact draws ``x ~ p_t`` per time."""
    torch = _torch()
    from scorebench.estimators.oracle import exact_score
    from scorebench.metrics.score import log_spaced_times

    model = fitted_model(device, label, dim)
    target, proc = gmm_target(dim), process()
    gen = generator(device, 20)
    errors = []
    for t in log_spaced_times(proc, 5):
        x = target.marginal(proc, t).sample(n, gen, dtype=torch.float64)
        with torch.no_grad():
            err = model.score(x, t).double() - exact_score(target, proc, x, t)
        errors.append(float(proc.sigma2(t)) * float(err.pow(2).sum(1).mean()))
    return sum(errors) / len(errors)
