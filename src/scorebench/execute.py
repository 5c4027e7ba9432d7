"""The second stage of a run: fit the score and sample, for one cell and seed.

:class:`Workspace` holds what the cells of one run share in one process: the built components,
the fitted scores (a fit serves every cell with the same target, process, estimator and seed),
and the reference samples.  Every generator derives from ``(suite seed, what it is for, the
cell's components, seed)`` (:func:`scorebench.suite.derive_seed`), never from a running stream,
so what a cell produces does not depend on which cells ran before it, in which process, or on
resuming: the caches save work and change no number.

* **Seeding.** The sampling generator leaves out the sampler: samplers of the same cell share
  their initial noise and, step for step, their Brownian increments (common random numbers),
  which makes paired comparisons sharp.  Reference samples are shared likewise.  No generator
  depends on a cell's ``ablation``: an error-decomposition variant (an exact start, the exact
  score, a fine grid) draws from its parent's generators and shares its parent's fit.
* **Timing.** Fit and sampling seconds are recorded separately (``torch.cuda.synchronize``
  around timed regions on CUDA); peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and
  the process's peak resident set during sampling on Linux CPUs (:class:`PeakMemory`).
* **Faults.** A fit or sampling run that raises, runs out of memory, or returns NaN/inf or
  exploding particles gives :class:`Failed` with the status (``error``, ``oom``, ``diverged``)
  and the message, never an exception.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .device import resolve_device
from .estimators import ESTIMATORS
from .estimators.training import FitDiverged
from .plugins import describe_plugin
from .processes import time_grid
from .results import FITS_FILE
from .suite import AXES, SECTIONS, Cell, Suite, derive_seed

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: particles beyond this many times the reference's largest coordinate count as diverged
DIVERGENCE_FACTOR = 1e4
#: what torch's CPU allocator says when an allocation fails (it raises a plain RuntimeError)
_CPU_OOM = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")
#: the component sections of a cell and the cell attribute naming each one's label
CELL_SECTIONS = {section: attr for attr, section in AXES if section in SECTIONS}


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: CUDA's ``OutOfMemoryError``, Python's
    ``MemoryError``, or torch's CPU allocator refusing (a ``RuntimeError`` it words as in ``_CPU_OOM``)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _CPU_OOM)


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA), so that a host clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    """Give cached device memory back after an out-of-memory failure (CUDA)."""
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


class LRU(OrderedDict):
    """A dictionary that keeps its ``size`` most recently used entries."""

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


@dataclass
class Counts:
    """Seconds a piece of work spent per phase (fit seconds also per estimator label: fresh fits only)."""

    fit_s: float = 0.0
    sample_s: float = 0.0
    metric_s: float = 0.0
    floor_s: float = 0.0
    fit_s_by_estimator: dict[str, float] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        for key in ("fit_s", "sample_s", "metric_s", "floor_s"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        for key, value in other.fit_s_by_estimator.items():
            self.fit_s_by_estimator[key] = self.fit_s_by_estimator.get(key, 0.0) + value


@dataclass
class Failed:
    """A cell x seed that produced no samples to evaluate: its status and message."""

    status: str
    message: str
    #: the sampler's diagnostics, where sampling ran (``SampleResult.info``)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sampled:
    """What the execute stage hands to the evaluate stage for one cell x seed."""

    x: torch.Tensor
    y1: torch.Tensor
    y2: torch.Tensor
    score: Any
    grid: torch.Tensor
    states: tuple[tuple[float, torch.Tensor], ...]
    info: dict[str, Any]


class Workspace:
    """The components, fits and references the cells of one run share in one process.

    ``records`` collects the ``fits.jsonl`` records of fresh fits; whoever writes the run
    directory takes them (see :func:`scorebench.task.run_task`).
    """

    def __init__(self, suite: Suite, device: str | torch.device, run_id: str) -> None:
        self.suite = suite
        self.device = resolve_device(str(device))
        self.dtype = DTYPES[suite.dtype]
        self.run_id = run_id
        self.memory = PeakMemory(self.device)
        self.records: list[dict[str, Any]] = []
        self._objects: dict[tuple[str, str], Any] = {}
        self._fits = LRU(16)
        self._refs = LRU(8)
        self._plugins: dict[str, dict[str, Any]] | None = None

    # -- components and generators ---------------------------------------------------------
    def component(self, section: str, label: str) -> Any:
        """The suite's component ``label`` of ``section``, built once."""
        key = (section, label)
        if key not in self._objects:
            self._objects[key] = self.suite.build(section, label)
        return self._objects[key]

    def of(self, cell: Cell, section: str) -> Any:
        """The component of ``section`` that ``cell`` uses."""
        return self.component(section, getattr(cell, CELL_SECTIONS[section]))

    def spec(self, cell: Cell, section: str) -> dict[str, Any]:
        """The specification of ``cell``'s component of ``section``, as seeds are derived from it."""
        return self.suite.spec(section, getattr(cell, CELL_SECTIONS[section])).as_dict()

    def generator(self, *parts: Any) -> torch.Generator:
        """A generator on the run's device seeded from the suite seed and ``parts``."""
        return torch.Generator(self.device).manual_seed(derive_seed(self.suite.seed, *parts))

    @property
    def plugins(self) -> dict[str, dict[str, Any]]:
        """``"section.label"`` -> where each component of the suite from outside scorebench came from
        (:func:`~scorebench.plugins.describe_plugin`: a ``module:Name`` or file spec, or an entry point)."""
        if self._plugins is None:
            self._plugins = plugins_of_suite(self.suite)
        return self._plugins

    def plugins_of(self, cell: Cell, *sections: str) -> dict[str, dict[str, Any]]:
        """The entries of :attr:`plugins` for ``cell``'s components of ``sections``."""
        keys = [f"{section}.{getattr(cell, CELL_SECTIONS[section])}" for section in sections]
        return {k: self.plugins[k] for k in keys if k in self.plugins}

    # -- the fit ----------------------------------------------------------------------------
    def fit(self, cell: Cell, seed: int) -> tuple[Any, float, bool]:
        """The fitted score model, its fit seconds, and whether it was fitted just now.

        A fit that raised is cached as its exception and re-raised for every cell that shares it,
        so a failing estimator costs one fit per (target, process, seed).  A learned model's
        training record (and a diverged fit's) becomes a ``fits.jsonl`` record.
        """
        fresh = False

        def make() -> tuple[Any, float]:
            nonlocal fresh
            fresh = True
            target, process = self.of(cell, "targets"), self.of(cell, "processes")
            gen = self.generator("fit", self.spec(cell, "targets"), self.spec(cell, "processes"),
                                 self.spec(cell, "estimators"), seed)
            sync(self.device)
            t0 = time.perf_counter()
            try:
                estimator = self.suite.build("estimators", cell.estimator)
                model = estimator.fit(target, process, gen)
            except Exception as exc:
                seconds = time.perf_counter() - t0
                if isinstance(exc, FitDiverged):
                    self._fit_record(cell, seed, exc.record.to_dict(), seconds)
                return exc, seconds
            sync(self.device)
            seconds = time.perf_counter() - t0
            record = getattr(model, "record", None)
            if record is not None and hasattr(record, "to_dict"):
                self._fit_record(cell, seed, record.to_dict(), seconds)
            return model, seconds

        model, seconds = self._fits.get_or((cell.target, cell.process, cell.estimator, seed), make)
        if isinstance(model, BaseException):
            raise model
        return model, seconds, fresh

    def exact_score(self, cell: Cell) -> Any:
        """The exact score of ``cell``'s target under its process (the ``oracle`` estimator), which
        an ``exact_score`` decomposition variant uses instead of the cell's estimator; built once per
        (target, process)."""
        key = ("exact_score", cell.target, cell.process)
        if key not in self._objects:
            self._objects[key] = ESTIMATORS.build("oracle").fit(self.of(cell, "targets"), self.of(cell, "processes"))
        return self._objects[key]

    def _fit_record(self, cell: Cell, seed: int, record: dict[str, Any], seconds: float) -> None:
        self.records.append({
            "run_id": self.run_id, "target": cell.target, "process": cell.process, "estimator": cell.estimator,
            "seed": seed, "device": str(self.device), "fit_s": seconds, "record": record,
            "plugins": self.plugins_of(cell, "targets", "processes", "estimators"),
        })

    def take_records(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """The ``fits.jsonl`` records made since the last call, as (file name, records)."""
        records, self.records = self.records, []
        return [(FITS_FILE, records)] if records else []

    # -- references and the start law ----------------------------------------------------------
    def references(self, cell: Cell, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent float64 target samples of the cell's size (the metric's reference and the
        second sample its noise floor needs), shared by every cell of that target, size and seed."""
        def make() -> tuple[torch.Tensor, torch.Tensor]:
            target = self.of(cell, "targets")
            gen = self.generator("reference", self.spec(cell, "targets"), cell.n_samples, seed)
            return (target.sample(cell.n_samples, gen, dtype=torch.float64),
                    target.sample(cell.n_samples, gen, dtype=torch.float64))

        return self._refs.get_or((cell.target, cell.n_samples, seed), make)

    def start_law(self, cell: Cell) -> Any:
        """``p_{T0}``, ``T0`` the sampler's start time: the law an ``init = "exact"`` chain starts from."""
        process = self.of(cell, "processes")
        return self.of(cell, "targets").marginal(process, self.of(cell, "samplers").start_time(process))

    def exact_start(self, cell: Cell, seed: int) -> torch.Tensor:
        """Exact draws of ``p_{T0}`` (``init = "exact"``).  They depend on the target, process, start
        time, sample size and seed, not on the sampler or the estimator: the samplers of a cell that
        start at the same time share their initial particles."""
        process = self.of(cell, "processes")
        gen = self.generator("init", self.spec(cell, "targets"), self.spec(cell, "processes"),
                             self.of(cell, "samplers").start_time(process), cell.n_samples, seed)
        return self.start_law(cell).sample(cell.n_samples, gen, dtype=self.dtype)


def execute(ws: Workspace, cell: Cell, seed: int, row: dict[str, Any], counts: Counts,
            traj: list[Any]) -> Sampled | Failed:
    """Fit (or reuse the fit) and sample one cell x seed.

    The cost columns of ``row`` (``fit_s``, ``sample_s``, ``nfe``, ``peak_mem_bytes``) are filled in
    as they become known, so that a failure's rows still carry them; ``counts`` receives the seconds
    (fresh fits only); ``traj`` are the metrics that need the trajectory (their
    ``record_steps``/``record_particles`` say which states to keep).
    """
    process = ws.of(cell, "processes")
    sampler = ws.of(cell, "samplers")  # holds no run state: one instance serves every seed
    states: list[tuple[float, torch.Tensor]] = []
    info: dict[str, Any] = {}
    try:
        if cell.ablation == "exact_score":  # the exact score replaces the cell's estimator: nothing to fit
            score, fit_s, fresh = ws.exact_score(cell), 0.0, False
        else:
            try:
                score, fit_s, fresh = ws.fit(cell, seed)
            except FitDiverged as exc:
                return Failed("diverged", f"fit diverged: {exc}")
        row["fit_s"] = fit_s
        if fresh:
            counts.fit_s += fit_s
            counts.fit_s_by_estimator[cell.estimator] = counts.fit_s_by_estimator.get(cell.estimator, 0.0) + fit_s
        score.reset_counts()
        grid = time_grid(process, cell.steps, cell.time_grid)
        record = set().union(*(m.record_steps(cell.steps) for m in traj)) if traj else set()
        keep = max((m.record_particles() for m in traj), default=0)

        def callback(step: int, t: float, x: torch.Tensor, start: int) -> None:
            if step in record and start == 0:
                states.append((t, x[:keep].detach().clone()))

        x_init = ws.exact_start(cell, seed) if cell.init == "exact" else None
        gen = ws.generator("sample", ws.spec(cell, "targets"), ws.spec(cell, "processes"),
                           ws.spec(cell, "estimators"), cell.n_samples, seed)
        ws.memory.reset()
        sync(ws.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            result = sampler.sample(score, process, cell.n_samples, grid, gen, dtype=ws.dtype,
                                    x_init=x_init, callback=callback if traj else None,
                                    **({"compile": True} if ws.suite.compile else {}))
        sync(ws.device)
        row["sample_s"] = time.perf_counter() - t0
        info.update(result.info)
        row["peak_mem_bytes"] = ws.memory.read()
        row["nfe"] = result.nfe
        counts.sample_s += row["sample_s"]
        y1, y2 = ws.references(cell, seed)
    except Exception as exc:
        if is_out_of_memory(exc):
            free(ws.device)
            return Failed("oom", f"out of memory: {exc}".splitlines()[0], info)
        return Failed("error", f"{type(exc).__name__}: {exc}", info)

    x = result.samples
    bad = (~torch.isfinite(x)).any(dim=1)
    if bad.any():
        return Failed("diverged", f"non-finite output in {int(bad.sum())} of {x.shape[0]} particles", info)
    bound = DIVERGENCE_FACTOR * (1.0 + float(y1.abs().max()))
    if float(x.abs().max()) > bound:
        return Failed("diverged", f"output exploded: max |x| = {float(x.abs().max()):.3g} > {bound:.3g}", info)
    return Sampled(x=x, y1=y1, y2=y2, score=score, grid=grid, states=tuple(states), info=info)


def plugins_of_suite(suite: Suite) -> dict[str, dict[str, Any]]:
    """:func:`~scorebench.plugins.describe_plugin` of every component of ``suite`` from outside
    scorebench (a ``module:Name`` or file spec, or an installed entry point), by ``"section.label"``."""
    out = {}
    for section, specs in suite.components.items():
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
