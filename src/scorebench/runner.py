"""Run a suite: cells -> fit -> sample -> metrics -> rows, robustly and reproducibly.

* **Seeding.** Every generator derives from ``(suite seed, what it is for, the cell's
  components, seed)`` (:func:`scorebench.suite.derive_seed`), never from a running stream,
  so results do not depend on which cells run, in which order, or on resuming.  The
  sampling generator leaves out the sampler: samplers of the same cell share their initial
  noise and, step for step, their Brownian increments (common random numbers), which makes
  paired comparisons sharp.  Reference samples and metric randomness are shared likewise.
* **Timing.** Fit, sampling and metric seconds are recorded separately
  (``torch.cuda.synchronize`` around timed regions on CUDA); peak memory is
  ``torch.cuda.max_memory_allocated`` on CUDA and the process's peak resident set during
  sampling on Linux CPUs (``VmHWM``, reset through ``/proc/self/clear_refs``).
* **Faults.** A cell x seed whose fit or sampling raises, runs out of memory (CUDA's or the
  CPU allocator's), or returns NaN/inf or exploding particles becomes rows with status
  ``error``, ``oom`` or ``diverged`` and the message; the run goes on.  A metric that stops
  at its iteration cap keeps its value, flagged in the row's message.  Rows are written
  after every cell.
* **One writer, a time limit.** The run holds the run directory's lock
  (:mod:`scorebench.rundir`) from start to end.  With a time limit (``--timeout`` or the
  suite's ``timeout``) cells run in a child process that is killed and replaced when a cell
  runs past it (:mod:`scorebench.worker`); the cell gets status ``timeout``.  ``--skip``
  records a cell as ``skipped`` without running it; ``--retry STATUS`` runs again the
  finished cells that have rows with that status.
* **Confidence intervals.** Each (cell, metric) gets a Student-t 95% interval of the mean
  over its seeds; a cell with a single seed gets a percentile bootstrap interval over its
  particles (metrics that declare ``bootstrappable``: sample and moment metrics); metrics that
  declare ``deterministic`` (exact-law metrics) have no sampling noise and a zero-width interval.
* **Metrics.** Each cell x seed builds one :class:`~scorebench.metrics.MetricContext`; every metric
  evaluates on it and is treated by what it declares (:mod:`scorebench.metrics.base`), never by its
  kind or name.
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .device import resolve_device
from .estimators.training import FitDiverged
from .metrics import METRICS, Metric, MetricContext, NonConvergenceWarning
from .plugins import describe_plugin
from .processes import time_grid
from .results import (
    DONE_FILE,
    FITS_FILE,
    PROVENANCE_FILE,
    SAMPLES_FILE,
    TABLE_FILE,
    ResultsError,
    ResultTable,
    append_fit_record,
    append_sample_records,
    provenance,
    read_provenance,
    read_results,
    write_provenance,
)
from .rundir import RunLock, make_run_dir
from .schema import SCHEMA_VERSION
from .stats import t_half_width
from .suite import Cell, Suite, SuiteError, derive_seed

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: particles beyond this many times the reference's largest coordinate count as diverged
DIVERGENCE_FACTOR = 1e4


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: what torch's CPU allocator says when an allocation fails (it raises a plain RuntimeError)
_CPU_OOM = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: CUDA's ``OutOfMemoryError``, Python's
    ``MemoryError``, or torch's CPU allocator refusing (a ``RuntimeError`` it words as in ``_CPU_OOM``)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _CPU_OOM)


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class PeakMemory:
    """Extra memory a region needed: the peak above the level at :meth:`reset`.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the bytes allocated at reset.  CPU (Linux):
    the process's peak resident set ``VmHWM`` (reset to the current resident set through
    ``/proc/self/clear_refs``) minus ``VmRSS`` at reset.  NaN where neither is available.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = math.nan

    @staticmethod
    def _status(field: str) -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return float(line.split()[1]) * 1024
        except OSError:
            pass
        return math.nan

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = float(torch.cuda.memory_allocated(self.device))
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = self._status("VmRSS")
        except OSError:
            self.base = math.nan

    def read(self) -> float:
        if self.device.type == "cuda":
            return float(torch.cuda.max_memory_allocated(self.device)) - self.base
        return max(self._status("VmHWM") - self.base, 0.0)


class RunnerCrash(RuntimeError):
    """The runner itself failed (not a cell, whose failures are rows): a bug to report."""


@dataclass
class RunSummary:
    """What a run did, for the printed summary and the exit code."""

    run_dir: Path
    run_id: str
    cells_total: int
    cells_run: int
    cells_skipped: int
    rows: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    fit_s: float = 0.0
    #: fit seconds per estimator label (fresh fits only; a cached fit costs nothing)
    fit_s_by_estimator: dict[str, float] = field(default_factory=dict)
    sample_s: float = 0.0
    metric_s: float = 0.0
    floor_s: float = 0.0
    wall_s: float = 0.0
    #: cells found damaged in the table (rows lost or changed) and run again: id -> what was wrong
    repaired: dict[str, str] = field(default_factory=dict)
    #: the training budgets ``--quick`` cut (:attr:`scorebench.suite.Suite.quick_cuts`)
    quick_cuts: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every row is ``ok`` (or ``skipped`` on request), 1 when some cell failed."""
        return 1 if self.failures else 0

    def add(self, counts: dict[str, Any]) -> None:
        """Add the time counters of a summary made elsewhere (a cell worker's)."""
        for key in ("fit_s", "sample_s", "metric_s", "floor_s"):
            setattr(self, key, getattr(self, key) + counts[key])
        for key, value in counts["fit_s_by_estimator"].items():
            self.fit_s_by_estimator[key] = self.fit_s_by_estimator.get(key, 0.0) + value


def new_run_id(suite: Suite) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{suite.sha256[:6]}"


def resolve_run_dir(suite: Suite, out: str | Path | None, resume: bool, root: Path = Path("results")) -> Path:
    """The run directory: ``out``, a new ``results/<suite>/<run-id>``, or for ``resume``
    without ``out`` the latest run of the suite."""
    if out is not None:
        return Path(out)
    base = root / suite.name
    if resume:
        runs = sorted(p for p in base.glob("*") if (p / "provenance.json").is_file()) if base.is_dir() else []
        if not runs:
            raise SuiteError(f"--resume: no earlier run of suite {suite.name!r} under {base}")
        return runs[-1]
    return base / new_run_id(suite)


class Runner:
    """Runs the cells of a suite into a run directory."""

    def __init__(
        self,
        suite: Suite,
        run_dir: Path,
        *,
        device: str | None = None,
        resume: bool = False,
        quick: bool = False,
        progress: bool = True,
        reverse: bool = False,
        bootstrap: int = 50,
        timeout: float | None = None,
        skip: Sequence[str] = (),
        retry: Sequence[str] = (),
    ) -> None:
        self.suite = suite.quick() if quick else suite
        #: seconds a cell may take (``None``: no limit, cells run in this process)
        self.timeout = timeout if timeout is not None else suite.timeout
        self.skip = set(skip)
        self.retry = list(retry)
        self.current: Cell | None = None
        self._worker: Any = None
        #: in a cell worker: (file name, records) to hand to the parent instead of writing them
        self.pending: list[tuple[str, list[dict[str, Any]]]] | None = None
        self.bootstrap = bootstrap
        self.quick = quick
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device or suite.device)
        self.dtype = DTYPES[suite.dtype]
        self.resume = resume
        self.progress = progress
        self.reverse = reverse
        self._objects: dict[tuple[str, str], Any] = {}
        self._fits = _LRU(16)
        self._refs = _LRU(8)
        self._floors: dict[tuple, float] = {}
        #: (cell id, metric) -> the rows of a deterministic metric, computed once per cell
        self._exact: dict[tuple, list[tuple[float, float]]] = {}
        self._mem = PeakMemory(self.device)
        #: "section.label" -> where a component from outside scorebench came from
        self.plugins: dict[str, dict[str, Any]] = self._plugins()

    def _plugins(self) -> dict[str, dict[str, Any]]:
        """:func:`~scorebench.plugins.describe_plugin` of every component of the suite from outside
        scorebench (a ``module:Name`` or file spec, or an installed entry point)."""
        from .suite import SECTIONS

        out = {}
        for section, specs in self.suite.components.items():
            for label, spec in specs.items():
                registry = SECTIONS[section]
                origin = registry.entry_points.get(spec.name)
                info = describe_plugin(registry.factory(spec.resolved or spec.name),
                                       spec.name if spec.is_plugin_spec else
                                       f"entry point {registry.entry_point_group}: {spec.name} = {origin}"
                                       if origin else None)
                if info is not None:
                    out[f"{section}.{label}"] = info
        return out

    def _plugins_of(self, cell: Cell, *sections: str) -> dict[str, dict[str, Any]]:
        labels = {"targets": cell.target, "processes": cell.process, "estimators": cell.estimator,
                  "samplers": cell.sampler}
        keys = [f"{section}.{labels[section]}" for section in sections]
        return {k: self.plugins[k] for k in keys if k in self.plugins}

    # -- components ---------------------------------------------------------------------
    def _obj(self, section: str, label: str) -> Any:
        key = (section, label)
        if key not in self._objects:
            self._objects[key] = self.suite.build(section, label)
        return self._objects[key]

    def _generator(self, *parts: Any) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(derive_seed(self.suite.seed, *parts))

    def _fit(self, cell: Cell, seed: int) -> tuple[Any, float, bool]:
        """The fitted score model, its fit seconds, and whether it was fitted just now.

        A fit that raised is cached as its exception and re-raised for every cell that
        shares it, so a failing estimator costs one fit per (target, process, seed).  A
        learned model's training record (and a diverged fit's) goes to ``fits.jsonl``.
        """
        fresh = False

        def make() -> tuple[Any, float]:
            nonlocal fresh
            fresh = True
            target, process = self._obj("targets", cell.target), self._obj("processes", cell.process)
            gen = self._generator("fit", self._spec(cell, "targets"), self._spec(cell, "processes"),
                                  self._spec(cell, "estimators"), seed)
            _sync(self.device)
            t0 = time.perf_counter()
            try:
                estimator = self.suite.build("estimators", cell.estimator)
                model = estimator.fit(target, process, gen)
            except Exception as exc:
                seconds = time.perf_counter() - t0
                if isinstance(exc, FitDiverged):
                    self._save_fit(cell, seed, exc.record.to_dict(), seconds)
                return exc, seconds
            _sync(self.device)
            seconds = time.perf_counter() - t0
            record = getattr(model, "record", None)
            if record is not None and hasattr(record, "to_dict"):
                self._save_fit(cell, seed, record.to_dict(), seconds)
            return model, seconds

        model, seconds = self._fits.get_or((cell.target, cell.process, cell.estimator, seed), make)
        if isinstance(model, BaseException):
            raise model
        return model, seconds, fresh

    def _save_fit(self, cell: Cell, seed: int, record: dict[str, Any], seconds: float) -> None:
        self._write_records(FITS_FILE, [{
            "run_id": self.run_id, "target": cell.target, "process": cell.process, "estimator": cell.estimator,
            "seed": seed, "device": str(self.device), "fit_s": seconds, "record": record,
            "plugins": self._plugins_of(cell, "targets", "processes", "estimators"),
        }])

    def _write_records(self, name: str, records: list[dict[str, Any]]) -> None:
        """Append JSON records to ``fits.jsonl`` or ``samples.jsonl``, or, in a cell worker, keep them
        for the parent: only the process that holds the run directory's lock writes into it."""
        if self.pending is not None:
            self.pending.append((name, records))
        elif name == FITS_FILE:
            for record in records:
                append_fit_record(self.run_dir, record)
        else:
            append_sample_records(self.run_dir, records)

    def _spec(self, cell: Cell, section: str) -> dict[str, Any]:
        label = {"targets": cell.target, "processes": cell.process,
                 "estimators": cell.estimator, "samplers": cell.sampler}[section]
        return self.suite.spec(section, label).as_dict()

    def _references(self, cell: Cell, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        def make() -> tuple[torch.Tensor, torch.Tensor]:
            target = self._obj("targets", cell.target)
            gen = self._generator("reference", self._spec(cell, "targets"), cell.n_samples, seed)
            return (target.sample(cell.n_samples, gen, dtype=torch.float64),
                    target.sample(cell.n_samples, gen, dtype=torch.float64))

        return self._refs.get_or((cell.target, cell.n_samples, seed), make)

    def _start_law(self, cell: Cell, sampler: Any, process: Any) -> Any:
        """``p_{T0}``, ``T0`` the sampler's start time: the law an ``init = "exact"`` chain starts from."""
        return self._obj("targets", cell.target).marginal(process, sampler.start_time(process))

    def _exact_start(self, cell: Cell, sampler: Any, process: Any, seed: int) -> torch.Tensor:
        """Exact draws of ``p_{T0}`` (``init = "exact"``).  They depend on the target, process, start
        time, sample size and seed, not on the sampler or the estimator: the samplers of a cell that
        start at the same time share their initial particles."""
        gen = self._generator("init", self._spec(cell, "targets"), self._spec(cell, "processes"),
                              sampler.start_time(process), cell.n_samples, seed)
        return self._start_law(cell, sampler, process).sample(cell.n_samples, gen, dtype=self.dtype)

    # -- one cell -------------------------------------------------------------------------
    def _base_row(self, cell: Cell, seed: int) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION, "run_id": self.run_id, "suite": self.suite.name,
            "cell_id": cell.cell_id, "seed": seed, **cell.labels(), "device": str(self.device),
            "nfe": math.nan, "t": math.nan, "value": math.nan, "floor": math.nan,
            "ci_low": math.nan, "ci_high": math.nan, "exact": False, "status": "ok", "message": "",
            "fit_s": math.nan, "sample_s": math.nan, "metric_s": math.nan, "peak_mem_bytes": math.nan,
        }

    def _failed_rows(self, cell: Cell, seed: int, base: dict[str, Any], status: str, msg: str) -> list[dict]:
        return [{**base, "metric": m, "status": status, "message": msg} for m in cell.metrics]

    def _cell_failed_rows(self, cell: Cell, status: str, msg: str) -> list[dict]:
        """The rows of a cell that did not run (every seed x metric), with ``status`` and ``msg``."""
        return [row for seed in self.suite.seeds_of(cell)
                for row in self._failed_rows(cell, seed, self._base_row(cell, seed), status, msg)]

    def run_seed(self, cell: Cell, seed: int, summary: RunSummary,
                 info: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rows of one cell x seed; ``info`` receives the sampler's diagnostics (``SampleResult.info``)."""
        base = self._base_row(cell, seed)
        process = self._obj("processes", cell.process)
        sampler = self._obj("samplers", cell.sampler)  # holds no run state: one instance serves every seed
        metrics = {m: self.suite.build_metric(m) for m in cell.metrics}
        traj = [m for m in metrics.values() if m.needs_trajectory]
        states: list[tuple[float, torch.Tensor]] = []
        try:
            try:
                score, fit_s, fresh = self._fit(cell, seed)
            except FitDiverged as exc:
                return self._failed_rows(cell, seed, base, "diverged", f"fit diverged: {exc}")
            base["fit_s"] = fit_s
            if fresh:
                summary.fit_s += fit_s
                by = summary.fit_s_by_estimator
                by[cell.estimator] = by.get(cell.estimator, 0.0) + fit_s
            score.reset_counts()
            grid = time_grid(process, cell.steps, cell.time_grid)
            record = set().union(*(m.record_steps(cell.steps) for m in traj)) if traj else set()
            keep = max((m.record_particles() for m in traj), default=0)

            def callback(step: int, t: float, x: torch.Tensor, start: int) -> None:
                if step in record and start == 0:
                    states.append((t, x[:keep].detach().clone()))

            x_init = self._exact_start(cell, sampler, process, seed) if cell.init == "exact" else None
            gen = self._generator("sample", self._spec(cell, "targets"), self._spec(cell, "processes"),
                                  self._spec(cell, "estimators"), cell.n_samples, seed)
            self._mem.reset()
            _sync(self.device)
            t0 = time.perf_counter()
            with torch.no_grad():
                result = sampler.sample(score, process, cell.n_samples, grid, gen, dtype=self.dtype,
                                        x_init=x_init, callback=callback if traj else None,
                                        **({"compile": True} if self.suite.compile else {}))
            _sync(self.device)
            base["sample_s"] = time.perf_counter() - t0
            if info is not None:
                info.update(result.info)
            base["peak_mem_bytes"] = self._mem.read()
            base["nfe"] = result.nfe
            summary.sample_s += base["sample_s"]
            y1, y2 = self._references(cell, seed)
        except Exception as exc:
            if is_out_of_memory(exc):
                _free(self.device)
                return self._failed_rows(cell, seed, base, "oom", f"out of memory: {exc}".splitlines()[0])
            return self._failed_rows(cell, seed, base, "error", f"{type(exc).__name__}: {exc}")

        x = result.samples
        bad = (~torch.isfinite(x)).any(dim=1)
        if bad.any():
            return self._failed_rows(cell, seed, base, "diverged",
                                     f"non-finite output in {int(bad.sum())} of {x.shape[0]} particles")
        bound = DIVERGENCE_FACTOR * (1.0 + float(y1.abs().max()))
        if float(x.abs().max()) > bound:
            return self._failed_rows(cell, seed, base, "diverged",
                                     f"output exploded: max |x| = {float(x.abs().max()):.3g} > {bound:.3g}")

        ctx = MetricContext(
            x=x, y1=y1, y2=y2, target=self._obj("targets", cell.target), process=process, score=score,
            sampler=sampler, grid=grid, states=tuple(states),
            start_law=self._start_law(cell, sampler, process) if cell.init == "exact" else None,
            n_samples=cell.n_samples, seed=seed,
        )
        rows = []
        for name, metric in metrics.items():
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", NonConvergenceWarning)
                    metric_rows = self._metric_rows(cell, seed, base, name, metric, ctx, summary)
                # an approximate value is kept, flagged in its message (bootstraps and floors repeat warnings)
                flags = list(dict.fromkeys(str(w.message) for w in caught
                                           if issubclass(w.category, NonConvergenceWarning)))
                for row in metric_rows:
                    if not math.isfinite(row["value"]):
                        row.update(status="error", message=f"metric {name!r} returned {row['value']}")
                    elif flags:
                        row["message"] = "; ".join(flags)
                    rows.append(row)
            except Exception as exc:
                if is_out_of_memory(exc):
                    _free(self.device)
                    rows.append({**base, "metric": name, "status": "oom",
                                 "message": f"metric {name!r}: out of memory: {exc}".splitlines()[0]})
                else:
                    rows.append({**base, "metric": name, "status": "error",
                                 "message": f"metric {name!r} failed: {type(exc).__name__}: {exc}"})
        return rows

    def _metric_rows(self, cell: Cell, seed: int, base: dict, name: str, metric: Metric, ctx: MetricContext,
                     summary: RunSummary) -> list[dict[str, Any]]:
        """The rows of metric ``name`` for one cell x seed, read off its declarations: its value
        (once per cell for a deterministic metric), its noise floor (cached per target, sample size,
        seed and metric; its seconds go to ``floor_s``, not ``metric_s``) and, for a bootstrappable
        metric of a single-seed cell, a percentile bootstrap interval."""
        ctx = replace(ctx, generator=lambda: self._generator("metric", name, self.suite.metrics[name],
                                                             self._spec(cell, "targets"), cell.n_samples, seed))
        floor_s_before = summary.floor_s
        t0 = time.perf_counter()
        interval = (math.nan, math.nan)
        if metric.deterministic:  # the same for every seed of the cell
            key = (cell.cell_id, name)
            if key not in self._exact:
                self._exact[key] = metric.checked_rows(ctx)
            values = self._exact[key]
            floor = metric.checked_floor(ctx)
        else:
            values = metric.checked_rows(ctx)
            floor = self._floor(cell, seed, name, lambda: metric.checked_floor(ctx), summary)
            if metric.bootstrappable and len(self.suite.seeds_of(cell)) == 1:
                interval = self._bootstrap(lambda xb: metric.checked_rows(replace(ctx, x=xb))[0][1], ctx.x.double(),
                                           seed, name)
        elapsed = time.perf_counter() - t0 - (summary.floor_s - floor_s_before)
        summary.metric_s += elapsed
        # a deterministic value has no sampling noise: its interval is the value
        return [{**base, "metric": name, "t": t, "value": v, "floor": floor, "metric_s": elapsed,
                 **({"ci_low": v, "ci_high": v} if metric.deterministic else
                    {"ci_low": interval[0], "ci_high": interval[1]}), "exact": metric.deterministic}
                for t, v in values]

    def _bootstrap(self, compute: Callable[[torch.Tensor], float], x: torch.Tensor, seed: int,
                   name: str) -> tuple[float, float]:
        """Percentile 95% interval over ``self.bootstrap`` resamples of the particles (used
        when a cell has a single seed, so no across-seed interval exists)."""
        if self.bootstrap < 2:
            return math.nan, math.nan
        gen = self._generator("bootstrap", name, seed)
        n = x.shape[0]
        stats_ = []
        for _ in range(self.bootstrap):
            idx = torch.randint(0, n, (n,), generator=gen, device=gen.device).to(x.device)
            stats_.append(compute(x[idx]))
        q = torch.tensor(stats_, dtype=torch.float64).quantile(torch.tensor([0.025, 0.975], dtype=torch.float64))
        return float(q[0]), float(q[1])

    def _floor(self, cell: Cell, seed: int, name: str, compute: Callable[[], float], summary: RunSummary) -> float:
        key = (cell.target, cell.n_samples, seed, name)
        if key not in self._floors:
            t0 = time.perf_counter()
            self._floors[key] = compute()
            summary.floor_s += time.perf_counter() - t0
        return self._floors[key]

    @staticmethod
    def add_intervals(rows: list[dict[str, Any]]) -> None:
        """Student-t 95% interval of the mean over seeds, per (metric, t).  Exact-law metrics
        keep their zero-width interval; single-seed cells keep their bootstrap interval."""
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            if r["status"] == "ok" and math.isfinite(r["value"]) and not r["exact"]:
                groups.setdefault((r["metric"], -1.0 if math.isnan(r["t"]) else r["t"]), []).append(r)
        for members in groups.values():
            k = len(members)
            if k < 2:
                continue
            vals = [r["value"] for r in members]
            mean = sum(vals) / k
            half = t_half_width(vals, 0.95)
            for r in members:
                r["ci_low"], r["ci_high"] = mean - half, mean + half

    def _sampling_record(self, cell: Cell, seed: int, rows: list[dict[str, Any]],
                         info: dict[str, Any]) -> dict[str, Any]:
        """The ``samples.jsonl`` record of a cell x seed: what ran, its cost and status, the
        sampler's own diagnostics (``SampleResult.info``) and the plugins involved."""
        first = rows[0] if rows else self._base_row(cell, seed)
        statuses = sorted({r["status"] for r in rows}) or ["ok"]
        return {
            "run_id": self.run_id, "cell_id": cell.cell_id, "seed": seed, **cell.labels(), "device": str(self.device),
            "nfe": first["nfe"], "sample_s": first["sample_s"], "peak_mem_bytes": first["peak_mem_bytes"],
            "status": statuses[0] if len(statuses) == 1 else ",".join(statuses),
            "message": next((r["message"] for r in rows if r["status"] != "ok"), ""),
            "info": info, "plugins": self._plugins_of(cell, "targets", "processes", "estimators", "samplers"),
        }

    def run_cell(self, cell: Cell, summary: RunSummary) -> list[dict[str, Any]]:
        """The rows of every seed of ``cell``; their sampling records go to ``samples.jsonl``."""
        rows: list[dict[str, Any]] = []
        records = []
        for seed in self.suite.seeds_of(cell):
            info: dict[str, Any] = {}
            seed_rows = self.run_seed(cell, seed, summary, info)
            records.append(self._sampling_record(cell, seed, seed_rows, info))
            rows.extend(seed_rows)
        self.add_intervals(rows)
        self._write_records(SAMPLES_FILE, records)
        return rows

    # -- the run --------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run every cell not yet in the table, holding the run directory's lock throughout."""
        started = time.perf_counter()
        make_run_dir(self.run_dir)
        with RunLock(self.run_dir):
            try:
                summary = self._run(started)
            except BaseException:  # interrupted or failed: the worker's cell is lost anyway, stop it now
                if self._worker is not None:
                    self._worker.kill()
                raise
            finally:
                if self._worker is not None:
                    self._worker.close()
                    self._worker = None
            return summary

    def _check_previous(self) -> dict[str, Any]:
        """The provenance of the run to resume (``{}`` for a fresh run), refusing what cannot go on."""
        previous = read_provenance(self.run_dir)
        prov = self.run_dir / PROVENANCE_FILE
        has_table = (self.run_dir / TABLE_FILE).exists() or (self.run_dir / DONE_FILE).exists()
        if not self.resume:
            if previous:
                raise SuiteError(f"{self.run_dir} already holds a run; use --resume or another --out")
            if has_table:
                raise SuiteError(f"{self.run_dir} holds a result table but no {PROVENANCE_FILE}; give another --out")
            return {}
        if not previous:
            if has_table:
                raise ResultsError(
                    f"{prov}: missing, so nothing says which suite made the table in {self.run_dir}; --resume "
                    "refuses to append to it: start a new run with another --out"
                )
            return {}
        if previous.get("schema_version", 1) != SCHEMA_VERSION:
            raise SuiteError(
                f"--resume: {self.run_dir} holds a schema-version {previous.get('schema_version', 1)} table "
                f"written by an older scorebench; this one writes version {SCHEMA_VERSION}: start a new run "
                "(the old table stays readable)"
            )
        for key, now in (("suite_sha256", self.suite.sha256), ("quick", self.quick),
                         ("device", str(self.device))):
            if previous.get(key) != now:
                raise SuiteError(
                    f"--resume: {self.run_dir} was made with {key} = {previous.get(key)!r}, this run has "
                    f"{now!r}; resume with the same suite file, --quick and --device, or start a new run"
                )
        if previous.get("quick_budgets", {}) != self.suite.quick_cuts:  # the estimators' quick budgets changed
            raise SuiteError(
                f"--resume: {self.run_dir} was made with the --quick training budgets "
                f"{previous.get('quick_budgets', {})!r}, this scorebench cuts {self.suite.quick_cuts!r}; "
                "start a new run"
            )
        if "run_id" not in previous:
            raise ResultsError(f"{prov}: has no run_id; it was not written by scorebench run")
        return previous

    def _run(self, started: float) -> RunSummary:
        previous = self._check_previous()
        if previous:
            self.run_id = previous["run_id"]
            fresh = provenance({})
            session = {k: fresh[k] for k in ("timestamp", "git_sha", "git_dirty", "packages", "hostname")}
            previous = {**previous, "resumed": [*previous.get("resumed", []), session]}
        else:
            self.run_id = self.run_dir.name
        info = previous or provenance({
            "run_id": self.run_id, "suite": self.suite.name, "suite_file": str(self.suite.path),
            "suite_sha256": self.suite.sha256, "suite_chars": len(self.suite.text),
            "suite_text": self.suite.text_excerpt, "suite_seed": self.suite.seed,
            "quick": self.quick, "device": str(self.device), "dtype": self.suite.dtype, "compile": self.suite.compile,
            **({"quick_budgets": self.suite.quick_cuts} if self.quick else {}),
            "metric_versions": {m: METRICS.factory(m).version for m in self.suite.metrics},
            "seeds": sorted({s for g in self.suite.grids for s in g["seeds"]}),
            "plugins": self.plugins,
        })
        write_provenance(self.run_dir, info)
        table = ResultTable(self.run_dir)

        cells = self.suite.cells()
        unknown = sorted(self.skip - {c.cell_id for c in cells})
        if unknown:
            raise SuiteError(f"--skip {unknown[0]}: no cell of suite {self.suite.name!r} has this id "
                             f"(the cell_id column of {self.run_dir / TABLE_FILE} lists them)")
        if self.retry and table.done:
            frame = read_results(self.run_dir)
            table.drop(set(frame.loc[frame["status"].isin(self.retry), "cell_id"]))
        if self.reverse:
            cells = cells[::-1]
        done = table.finished_cells()
        todo = [c for c in cells if c.cell_id not in done]
        summary = RunSummary(self.run_dir, self.run_id, len(cells), len(todo), len(cells) - len(todo),
                             repaired=dict(table.damaged), quick_cuts=self.suite.quick_cuts)
        bar = tqdm(todo, desc=self.suite.name, unit="cell", disable=not self.progress, file=sys.stderr)
        for cell in bar:
            self.current = cell
            bar.set_postfix_str(f"{cell.target}/{cell.process}/{cell.estimator}/{cell.sampler}/{cell.steps}")
            try:
                if cell.cell_id in self.skip:
                    rows = self._cell_failed_rows(cell, "skipped", "left out with --skip")
                elif self.timeout is not None:
                    rows = self._run_in_worker(cell, summary)
                else:
                    rows = self.run_cell(cell, summary)
                table.append(rows)
            except Exception as exc:  # a failing cell is a row: what reaches here is the runner's own fault
                raise RunnerCrash(f"in cell {cell.cell_id}: {type(exc).__name__}: {exc}") from exc
        self.current = None
        bar.close()
        frame = read_results(self.run_dir)
        summary.rows = len(frame)
        summary.status_counts = frame["status"].value_counts().to_dict()
        failed = frame[~frame["status"].isin(["ok", "skipped"])]
        summary.failures = [
            f"{r.cell_id} seed {r.seed} ({r.target}/{r.process}/{r.estimator}/{r.sampler}/{r.steps}) "
            f"{r.metric}: {r.status}: {r.message}"
            for r in failed.itertuples()
        ]
        summary.wall_s = time.perf_counter() - started
        info = {**info, "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "status_counts": summary.status_counts}
        write_provenance(self.run_dir, info)
        return summary

    def _run_in_worker(self, cell: Cell, summary: RunSummary) -> list[dict[str, Any]]:
        """Run ``cell`` in the child process under the time limit (see :mod:`scorebench.worker`)."""
        from .worker import CellTimeout, CellWorker, WorkerDied

        if self._worker is None:
            self._worker = CellWorker({"suite": self.suite, "run_dir": str(self.run_dir), "device": str(self.device),
                                       "bootstrap": self.bootstrap, "run_id": self.run_id})
        try:
            rows, counts, records = self._worker.run_cell(cell.cell_id, self.timeout)
        except CellTimeout:
            status, msg = "timeout", (f"stopped after the time limit of {self.timeout:g} s (raise it with --timeout "
                                      f"or the suite's timeout; leave the cell out with --skip {cell.cell_id})")
        except WorkerDied as exc:
            status, msg = "error", str(exc)
        else:
            summary.add(counts)
            for name, batch in records:
                self._write_records(name, batch)
            return rows
        return self._cell_failed_rows(cell, status, msg)


def run_suite(
    suite: Suite,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    device: str | None = None,
    quick: bool = False,
    progress: bool = True,
    reverse: bool = False,
    bootstrap: int = 50,
    timeout: float | None = None,
    skip: Sequence[str] = (),
    retry: Sequence[str] = (),
) -> RunSummary:
    """Run ``suite`` and return its summary (see :class:`Runner`)."""
    run_dir = resolve_run_dir(suite, out, resume)
    return Runner(suite, run_dir, device=device, resume=resume, quick=quick, progress=progress,
                  reverse=reverse, bootstrap=bootstrap, timeout=timeout, skip=skip, retry=retry).run()
