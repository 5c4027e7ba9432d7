"""How long will a suite take?  A short calibration on this machine, or an earlier run of the same file.

``scorebench validate SUITE`` prints the number of cells and cell x seed runs and an estimated
wall time, so that nobody starts a 72-minute run by surprise.  The estimate adds up, over
every cell x seed, what the runner will do, each part timed once here on a miniature:

* **sampling**: per (target, process, score, sampler, sample size), the sampler run for 2 and
  for 6 steps: a fixed cost plus a cost per step, scaled to the cell's step count;
* **metrics**: per (metric, target, sample size), one evaluation on target samples (a single-
  seed cell adds the runner's bootstrap of sample and moment metrics); an exact-law metric is
  timed on a 4-step grid and scaled by steps;
* **noise floors**: one evaluation per (target, sample size, seed, metric), as the runner caches
  them;
* **fits**: one fit per (target, process, score), times the seeds that need one (an oracle
  score costs nothing; a learned one is fitted once here, so calibrating a suite of learned
  estimators takes as long as one fit of each).

Sample sizes above :data:`PROBE_MAX` are timed at that size and scaled linearly (O(n^2)
metrics such as MMD and Sinkhorn are scaled by the square).  The estimate leaves out
imports, the process start and contention with other work on the machine; on an idle 2-core
CPU it has been within a factor of about 1.5 of the run.  When ``results/<suite>/`` holds
a finished run of the same suite file (same sha256, same ``--quick``), its measured wall time
is reported beside the estimate.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .device import resolve_device
from .estimators import ESTIMATORS
from .metrics import Metric, MetricContext
from .processes import time_grid
from .results import PROVENANCE_FILE
from .suite import Suite, derive_seed

#: sample sizes above this are timed at it and scaled
PROBE_MAX = 4000
#: metrics whose cost grows with the square of the sample size
QUADRATIC = ("mmd", "energy", "sinkhorn", "w2")
#: seconds of bookkeeping per cell x seed (rows, table append)
PER_RUN_OVERHEAD = 0.01
#: bootstrap resamples of a single-seed cell (the runner's default)
BOOTSTRAP = 50


@dataclass
class Estimate:
    """Cells, runs, seconds per phase, and what an earlier run of the same file took."""

    cells: int
    runs: int
    seconds: dict[str, float] = field(default_factory=dict)
    calibration_s: float = 0.0
    device: str = "cpu"
    earlier: list[tuple[str, float]] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    def describe(self) -> str:
        parts = ", ".join(f"{k} {_duration(v)}" for k, v in self.seconds.items() if v >= 0.5)
        lines = [f"estimated wall time: {_duration(self.total_s)} on {self.device} ({parts or 'all parts < 1 s'}; "
                 f"calibrated in {self.calibration_s:.1f} s on this machine)"]
        for path, seconds in self.earlier[-3:]:
            lines.append(f"an earlier run of this suite file took {_duration(seconds)}: {path}")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def earlier_runs(suite: Suite, quick: bool, root: Path = Path("results")) -> list[tuple[str, float]]:
    """Finished, never resumed runs of this suite file under ``root/<suite>``: (run directory, seconds)."""
    base = root / suite.name
    out = []
    if not base.is_dir():
        return out
    for run in sorted(base.iterdir()):
        try:
            info = json.loads((run / PROVENANCE_FILE).read_text())
        except (OSError, ValueError):
            continue
        if (info.get("suite_sha256") != suite.sha256 or bool(info.get("quick")) != quick or "finished" not in info
                or info.get("resumed")):
            continue
        try:
            start = _dt.datetime.fromisoformat(info["timestamp"])
            end = _dt.datetime.fromisoformat(info["finished"])
        except (KeyError, ValueError):
            continue
        out.append((str(run), (end - start).total_seconds()))
    return out


class _Calibration:
    """Timings of the suite's components on this machine, each measured once."""

    def __init__(self, suite: Suite, device: torch.device) -> None:
        self.suite = suite
        self.device = device
        self.dtype = torch.float64 if suite.dtype == "float64" else torch.float32
        self._objects: dict[tuple[str, str], Any] = {}
        self._cache: dict[tuple, Any] = {}
        self._gen = torch.Generator(device).manual_seed(derive_seed(suite.seed, "estimate"))

    def obj(self, section: str, label: str) -> Any:
        if (section, label) not in self._objects:
            self._objects[(section, label)] = self.suite.build(section, label)
        return self._objects[(section, label)]

    def once(self, key: tuple, fn: Callable[[], Any]) -> Any:
        """``fn()``, computed the first time ``key`` is asked for."""
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def score(self, target: str, process: str, estimator: str) -> tuple[Any, float]:
        """The fitted score model and its fit seconds (one fit per triple)."""
        def fit() -> tuple[Any, float]:
            est = self.suite.build("estimators", estimator)
            t0 = time.perf_counter()
            model = est.fit(self.obj("targets", target), self.obj("processes", process), self._gen)
            return model, time.perf_counter() - t0

        return self.once(("fit", target, process, estimator), fit)

    def sampling(self, target: str, process: str, estimator: str, sampler: str, n: int) -> tuple[float, float]:
        """(fixed seconds, seconds per step) of a run with ``n`` particles (probed at most PROBE_MAX)."""
        def probe() -> tuple[float, float]:
            m = min(n, PROBE_MAX)
            score, _ = self.score(target, process, estimator)
            proc = self.obj("processes", process)
            smp = self.suite.build("samplers", sampler)

            def run(k: int) -> float:
                grid = time_grid(proc, k)
                return _timed(lambda: smp.sample(score, proc, m, grid, self._gen, dtype=self.dtype), self.device)

            with torch.no_grad():
                run(2)  # warm up
                t2, t6 = run(2), run(6)
            per_step = max((t6 - t2) / 4, 0.0)
            fixed = max(t2 - 2 * per_step, 0.0)
            scale = n / m
            return fixed * scale, per_step * scale

        return self.once(("sample", target, process, estimator, sampler, n), probe)

    def metric(self, name: str, metric: Any, target: str, process: str, estimator: str, n: int) -> float:
        """Seconds of one evaluation of ``metric`` (named ``name``), read off its declarations: a
        single-valued metric is timed at ``min(n, PROBE_MAX)`` target draws and scaled to ``n``; a
        time-resolved one (its own sample sizes per time) as it is, times the share of the run's
        recorded steps when it :attr:`~scorebench.metrics.Metric.needs_trajectory`."""
        uses_score = metric.needs_marginals or metric.needs_trajectory

        def probe() -> float:
            tgt = self.obj("targets", target)
            proc = self.obj("processes", process)
            m = min(n, PROBE_MAX)
            x = tgt.sample(m, self._gen, dtype=torch.float64)
            y = tgt.sample(m, self._gen, dtype=torch.float64)
            states: list[tuple[float, torch.Tensor]] = []
            n_rec = 1
            if metric.needs_trajectory:  # the score along a few recorded states
                times = time_grid(proc, 4).tolist()[1:]
                keep = min(m, metric.record_particles() or m)
                states = [(t, tgt.sample(keep, self._gen, dtype=self.dtype)) for t in times]
                n_rec = len(metric.record_steps(8)) or 1
            ctx = MetricContext(x=x, y1=y, y2=y, target=tgt, process=proc,
                                score=self.score(target, process, estimator)[0] if uses_score else None,
                                states=tuple(states), generator=lambda: self._gen, n_samples=n)
            seconds = _timed(lambda: metric.evaluate(ctx), self.device)
            if metric.time_resolved:
                return seconds * n_rec / len(states) if states else seconds
            power = 2 if name in QUADRATIC else 1
            return seconds * (n / m) ** power

        key = ("metric", name, target, process, estimator, n) if uses_score else ("metric", name, target, n)
        return self.once(key, probe)

    def exact_metric(self, name: str, target: str, process: str, estimator: str, sampler: str) -> float:
        """Seconds per step of a deterministic (exact-law) metric."""
        def probe() -> float:
            metric = self.suite.build_metric(name)
            score, _ = self.score(target, process, estimator)
            proc = self.obj("processes", process)
            smp = self.suite.build("samplers", sampler)
            tgt = self.obj("targets", target)
            x = tgt.sample(2, self._gen, dtype=torch.float64)
            ctx = MetricContext(x=x, y1=x, y2=x, target=tgt, process=proc, score=score, sampler=smp,
                                grid=time_grid(proc, 4), start_law=tgt.marginal(proc, proc.T),
                                generator=lambda: self._gen, n_samples=2)
            return _timed(lambda: metric.evaluate(ctx), self.device) / 4

        return self.once(("exact", name, target, process, estimator, sampler), probe)


def estimate(suite: Suite, device: str | None = None, root: Path = Path("results"), quick: bool = False) -> Estimate:
    """Estimate the wall time of running ``suite`` (``quick``: its ``--quick`` version) on ``device``."""
    started = time.perf_counter()
    run_suite = suite.quick() if quick else suite
    dev = resolve_device(device or suite.device)
    cal = _Calibration(run_suite, dev)
    cells = run_suite.cells()
    seconds: dict[str, float] = defaultdict(float)
    metrics = {name: run_suite.build_metric(name) for name in run_suite.metrics}
    floors_seen: set[tuple] = set()
    fits_seen: set[tuple] = set()
    runs = 0
    for cell in cells:
        seeds = run_suite.seeds_of(cell)
        runs += len(seeds)
        fixed, per_step = cal.sampling(cell.target, cell.process, cell.estimator, cell.sampler, cell.n_samples)
        seconds["sampling"] += len(seeds) * (fixed + per_step * cell.steps)
        seconds["bookkeeping"] += len(seeds) * PER_RUN_OVERHEAD
        spec = run_suite.spec("estimators", cell.estimator)
        learns = bool(getattr(ESTIMATORS.factory(spec.resolved or spec.name), "learns", True))
        for seed in seeds:
            key = (cell.target, cell.process, cell.estimator, seed)
            if key not in fits_seen:
                fits_seen.add(key)
                seconds["fits"] += cal.score(cell.target, cell.process, cell.estimator)[1]
        for name in cell.metrics:
            metric = metrics[name]
            if metric.deterministic:  # once per cell (per seed if the fit learns); cost grows with the steps
                times = len(seeds) if learns else 1
                seconds["metrics"] += times * cell.steps * cal.exact_metric(name, cell.target, cell.process,
                                                                            cell.estimator, cell.sampler)
                continue
            one = cal.metric(name, metric, cell.target, cell.process, cell.estimator, cell.n_samples)
            seconds["metrics"] += len(seeds) * one
            if metric.bootstrappable and len(seeds) == 1:
                seconds["metrics"] += BOOTSTRAP * one
            if type(metric).floor is not Metric.floor:  # the metric has a noise floor
                for seed in seeds:
                    floor_key = (cell.target, cell.n_samples, seed, name)
                    if floor_key not in floors_seen:
                        floors_seen.add(floor_key)
                        seconds["noise floors"] += one
    return Estimate(len(cells), runs, dict(seconds), time.perf_counter() - started, str(dev),
                    earlier_runs(suite, quick, root))
