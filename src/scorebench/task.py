"""The unit of work of a run: a :class:`Task` in, a :class:`CellResult` per cell out.

:func:`run_task` is a function of its task and nothing else (the task carries the suite, the cells,
the device, the run id and the bootstrap size), so any backend can call it: the runner in its own
process, the time-limited cell worker in a child process, or a remote worker.  It runs the
execute stage (:mod:`scorebench.execute`: fit, sample) and the evaluate stage
(:mod:`scorebench.evaluate`: metrics, floors, intervals) and returns rows and records; it writes
nothing.  Whoever holds the run directory's lock writes them (:mod:`scorebench.runner`).

Tasks with the same ``session`` share one process-local :class:`~scorebench.execute.Workspace`
(built components, fitted scores, reference samples, floors), so that consecutive tasks of a run
in one process fit each score once; since every generator derives from the suite seed and the
cell, sharing changes no number.  A run starts a new session, and :func:`release` drops it.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .evaluate import Evaluator, add_intervals
from .execute import Counts, Failed, Workspace, execute
from .results import SAMPLES_FILE, json_safe
from .schema import SCHEMA_VERSION
from .suite import Cell, Suite


@dataclass(frozen=True)
class Task:
    """Cells to run, with everything needed to run them anywhere.

    ``session`` names the run invocation: tasks of one session may share their process's caches.
    ``seeds``: run only these seeds of each cell (``None``: all of them); the cell's rows are then
    partial, and whoever gathers the other seeds adds the intervals over seeds
    (:func:`~scorebench.evaluate.add_intervals`).
    """

    suite: Suite
    cells: tuple[Cell, ...]
    device: str
    run_id: str
    session: str
    bootstrap: int = 50
    seeds: tuple[int, ...] | None = None

    def seeds_of(self, cell: Cell) -> list[int]:
        """The seeds of ``cell`` this task runs."""
        every = self.suite.seeds_of(cell)
        return every if self.seeds is None else [s for s in every if s in self.seeds]


@dataclass
class CellResult:
    """What running one cell produced: its rows (every seed x metric, intervals included), the
    ``fits.jsonl`` and ``samples.jsonl`` records to append, and the seconds per phase."""

    cell_id: str
    rows: list[dict[str, Any]]
    records: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    #: the seeds these rows cover (``None``: every seed of the cell, intervals included)
    seeds: tuple[int, ...] | None = None


#: session -> (workspace, evaluator); the last few sessions of this process
_SESSIONS: dict[str, tuple[Workspace, Evaluator]] = {}
_KEEP = 2


def _session(task: Task) -> tuple[Workspace, Evaluator]:
    if task.session not in _SESSIONS:
        while len(_SESSIONS) >= _KEEP:
            _SESSIONS.pop(next(iter(_SESSIONS)))
        ws = Workspace(task.suite, task.device, task.run_id)
        _SESSIONS[task.session] = (ws, Evaluator(ws, task.bootstrap))
    return _SESSIONS[task.session]


def release(session: str) -> None:
    """Drop the caches of ``session`` in this process (its fitted scores and references)."""
    _SESSIONS.pop(session, None)


def run_task(task: Task) -> list[CellResult]:
    """Run every cell of ``task``: one :class:`CellResult` per cell, in the task's order."""
    return [run_cell(task, cell) for cell in task.cells]


def run_cell(task: Task, cell: Cell) -> CellResult:
    """Run every seed of ``cell`` (see :func:`run_task`)."""
    ws, evaluator = _session(task)
    counts = Counts()
    rows: list[dict[str, Any]] = []
    samples = []
    metrics = {m: ws.suite.build_metric(m) for m in cell.metrics}
    traj = [m for m in metrics.values() if m.needs_trajectory]
    for seed in task.seeds_of(cell):
        row = base_row(ws.suite, cell, seed, task.run_id, str(ws.device))
        sampled = execute(ws, cell, seed, row, counts, traj)
        if isinstance(sampled, Failed):
            seed_rows = [{**row, "metric": m, "status": sampled.status, "message": sampled.message}
                         for m in cell.metrics]
        else:
            seed_rows = evaluator.rows(cell, seed, row, metrics, sampled, counts)
        samples.append(sampling_record(ws, cell, seed, row, seed_rows, sampled.info))
        rows.extend(seed_rows)
    if task.seeds is None:
        add_intervals(rows)
    return CellResult(cell.cell_id, rows, [*ws.take_records(), (SAMPLES_FILE, samples)], counts,
                      None if task.seeds is None else tuple(task.seeds_of(cell)))


class Gather:
    """Joins the results of a cell's seeds, run by different tasks, into the cell's result: the rows
    in seed order with their intervals over seeds, the records, the summed seconds."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self._cells = {c.cell_id: c for c in suite.cells()}
        self._parts: dict[str, list[CellResult]] = {}

    def add(self, result: CellResult) -> CellResult | None:
        """The whole cell's result once ``result`` completes it, else ``None`` (kept until then)."""
        if result.seeds is None:
            return result
        parts = self._parts.setdefault(result.cell_id, [])
        parts.append(result)
        order = self.suite.seeds_of(self._cells[result.cell_id])
        have = sorted(s for part in parts for s in part.seeds or ())
        if have != sorted(order):
            return None
        del self._parts[result.cell_id]
        parts.sort(key=lambda part: order.index((part.seeds or (order[0],))[0]))  # the suite's seed order
        rows = [row for part in parts for row in part.rows]
        add_intervals(rows)
        counts = Counts()
        for part in parts:
            counts.add(part.counts)
        return CellResult(result.cell_id, rows, [r for part in parts for r in part.records], counts)

    @property
    def waiting(self) -> int:
        """Cells some of whose seeds have finished and others not."""
        return len(self._parts)


def as_data(results: list[CellResult]) -> list[CellResult]:
    """``results`` with their records made plain JSON data (a plugin's diagnostics may hold tensors
    or unpicklable objects), for the trip back from another process."""
    for result in results:
        result.records = [(name, [json_safe(r) for r in batch]) for name, batch in result.records]
    return results


def base_row(suite: Suite, cell: Cell, seed: int, run_id: str, device: str) -> dict[str, Any]:
    """The columns every row of a cell x seed shares, before anything ran (see :mod:`scorebench.schema`)."""
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "suite": suite.name,
        "cell_id": cell.cell_id, "seed": seed, **cell.labels(), "device": device,
        "nfe": math.nan, "t": math.nan, "value": math.nan, "floor": math.nan,
        "ci_low": math.nan, "ci_high": math.nan, "exact": False, "status": "ok", "message": "",
        "fit_s": math.nan, "sample_s": math.nan, "metric_s": math.nan, "peak_mem_bytes": math.nan,
        "host": socket.gethostname(),
    }


def failed_rows(suite: Suite, cell: Cell, run_id: str, device: str, status: str, message: str,
                seeds: Sequence[int] | None = None) -> list[dict]:
    """The rows of a cell that did not run (each of ``seeds``, default every seed, x metric), with
    ``status`` and ``message``."""
    return [{**base_row(suite, cell, seed, run_id, device), "metric": m, "status": status, "message": message}
            for seed in (suite.seeds_of(cell) if seeds is None else seeds) for m in cell.metrics]


def failed_result(task: Task, cell: Cell, status: str, message: str) -> CellResult:
    """The result of a cell of ``task`` that did not run: failed rows for the task's seeds of it."""
    seeds = task.seeds_of(cell)
    return CellResult(cell.cell_id, failed_rows(task.suite, cell, task.run_id, task.device, status, message, seeds),
                      seeds=None if task.seeds is None else tuple(seeds))


def sampling_record(ws: Workspace, cell: Cell, seed: int, row: dict[str, Any], rows: list[dict[str, Any]],
                    info: dict[str, Any]) -> dict[str, Any]:
    """The ``samples.jsonl`` record of a cell x seed: what ran, its cost and status, the sampler's own
    diagnostics (``SampleResult.info``) and the plugins involved."""
    statuses = sorted({r["status"] for r in rows}) or ["ok"]
    return {
        "run_id": ws.run_id, "cell_id": cell.cell_id, "seed": seed, **cell.labels(), "device": str(ws.device),
        "nfe": row["nfe"], "sample_s": row["sample_s"], "peak_mem_bytes": row["peak_mem_bytes"],
        "status": statuses[0] if len(statuses) == 1 else ",".join(statuses),
        "message": next((r["message"] for r in rows if r["status"] != "ok"), ""),
        "info": info, "plugins": ws.plugins_of(cell, "targets", "processes", "estimators", "samplers"),
    }
