"""Run a suite: plan -> execute -> evaluate -> write, robustly and reproducibly.

A run goes through four stages, each in its own module:

1. **plan** (:mod:`scorebench.plan`): the cells still to run, grouped into tasks, and whether the
   run directory may be resumed;
2. **execute** (:mod:`scorebench.execute`): fit the score (once per target, process, estimator
   and seed) and sample, for each cell x seed;
3. **evaluate** (:mod:`scorebench.evaluate`): metrics, noise floors and confidence intervals;
4. **write** (this module): the rows to the table, the records to ``fits.jsonl`` and
   ``samples.jsonl``, the provenance.

Stages 2 and 3 run inside :func:`scorebench.task.run_task`, a function of a task alone, so the
runner can hand tasks to any backend; this module alone writes into the run directory.

* **Seeding.** Every generator derives from ``(suite seed, what it is for, the cell's
  components, seed)`` (:func:`scorebench.suite.derive_seed`), never from a running stream,
  so results do not depend on which cells run, in which order or process, or on resuming.
* **Faults.** A cell x seed whose fit, sampling or metric fails becomes rows with status
  ``error``, ``oom`` or ``diverged`` and the message; the run goes on.  Rows are written after
  every cell.
* **One writer, a time limit.** The run holds the run directory's lock
  (:mod:`scorebench.rundir`) from start to end.  With a time limit (``--timeout`` or the
  suite's ``timeout``) cells run in a child process that is killed and replaced when a cell
  runs past it (:mod:`scorebench.worker`); the cell gets status ``timeout``.  ``--skip``
  records a cell as ``skipped`` without running it; ``--retry STATUS`` runs again the
  finished cells that have rows with that status.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .backends import Backend, InProcess
from .device import resolve_device
from .execute import Counts, plugins_of_suite
from .metrics import METRICS
from .plan import Plan, check_resume, make_plan
from .results import (
    FITS_FILE,
    TABLE_FILE,
    ResultTable,
    append_fit_record,
    append_sample_records,
    provenance,
    read_results,
    write_provenance,
)
from .rundir import RunLock, make_run_dir
from .suite import Cell, Suite, SuiteError
from .task import CellResult, Gather, failed_rows, release


class RunnerCrash(RuntimeError):
    """The runner itself failed (not a cell, whose failures are rows): a bug to report."""


@dataclass
class RunSummary(Counts):
    """What a run did, for the printed summary and the exit code (seconds per phase: :class:`Counts`)."""

    run_dir: Path = Path()
    run_id: str = ""
    cells_total: int = 0
    cells_run: int = 0
    cells_skipped: int = 0
    rows: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    #: cells found damaged in the table (rows lost or changed) and run again: id -> what was wrong
    repaired: dict[str, str] = field(default_factory=dict)
    #: the training budgets ``--quick`` cut (:attr:`scorebench.suite.Suite.quick_cuts`)
    quick_cuts: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every row is ``ok`` (or ``skipped`` on request), 1 when some cell failed."""
        return 1 if self.failures else 0


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
    """Runs the cells of a suite into a run directory (see the module docstring)."""

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
        backend: Backend | None = None,
    ) -> None:
        self.suite = suite.quick() if quick else suite
        #: where the tasks run (:mod:`scorebench.backends`; default: in this process)
        self.backend = backend if backend is not None else InProcess()
        #: seconds a cell may take (``None``: no limit, cells run in this process)
        self.timeout = timeout if timeout is not None else suite.timeout
        self.skip = set(skip)
        self.retry = list(retry)
        self.current: Cell | None = None
        self.bootstrap = bootstrap
        self.quick = quick
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device or suite.device)
        self.resume = resume
        self.progress = progress
        self.reverse = reverse
        self.run_id = ""
        #: this invocation: its tasks share their process's caches (:mod:`scorebench.task`)
        self.session = uuid.uuid4().hex
        #: "section.label" -> where a component from outside scorebench came from
        self.plugins: dict[str, dict[str, Any]] = plugins_of_suite(self.suite)

    # -- the run --------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run every cell not yet in the table, holding the run directory's lock throughout."""
        started = time.perf_counter()
        make_run_dir(self.run_dir)
        with RunLock(self.run_dir):
            try:
                summary = self._run(started)
            except BaseException:  # interrupted or failed: the running cells are lost anyway, stop them now
                self.backend.kill()
                raise
            finally:
                release(self.session)
                self.backend.close()
            return summary

    def _provenance(self, previous: dict[str, Any]) -> dict[str, Any]:
        """The run's provenance: a fresh one, or ``previous`` with this session added to ``resumed``."""
        if previous:
            fresh = provenance({})
            session = {**{k: fresh[k] for k in ("timestamp", "git_sha", "git_dirty", "packages", "hostname")},
                       **self.backend.info()}
            return {**previous, "resumed": [*previous.get("resumed", []), session]}
        return provenance({
            "run_id": self.run_id, "suite": self.suite.name, "suite_file": str(self.suite.path),
            "suite_sha256": self.suite.sha256, "suite_chars": len(self.suite.text),
            "suite_text": self.suite.text_excerpt, "suite_seed": self.suite.seed,
            "quick": self.quick, "device": str(self.device), "dtype": self.suite.dtype, "compile": self.suite.compile,
            **({"quick_budgets": self.suite.quick_cuts} if self.quick else {}),
            "metric_versions": {m: METRICS.factory(m).version for m in self.suite.metrics},
            "seeds": sorted({s for g in self.suite.grids for s in g["seeds"]}),
            "plugins": self.plugins, **self.backend.info(),
        })

    def plan(self, table: ResultTable) -> Plan:
        """Stage 1: the cells to run (``--retry`` drops the cells to run again from ``table`` first)."""
        if self.retry and table.done:
            frame = read_results(self.run_dir)
            table.drop(set(frame.loc[frame["status"].isin(self.retry), "cell_id"]))
        return make_plan(self.suite, table.finished_cells(), skip=self.skip, reverse=self.reverse,
                         table_file=self.run_dir / TABLE_FILE)

    def _run(self, started: float) -> RunSummary:
        previous = check_resume(self.run_dir, self.suite, resume=self.resume, quick=self.quick,
                                device=str(self.device))
        self.run_id = previous["run_id"] if previous else self.run_dir.name
        self.backend.start(str(self.device), self.timeout)
        if getattr(self.backend, "dashboard", None):
            print(f"Dask dashboard: {self.backend.dashboard}", file=sys.stderr)
        info = self._provenance(previous)
        write_provenance(self.run_dir, info)
        table = ResultTable(self.run_dir)
        plan = self.plan(table)
        todo = len(plan.todo) + len(plan.skipped)
        summary = RunSummary(run_dir=self.run_dir, run_id=self.run_id, cells_total=len(plan.cells),
                             cells_run=todo, cells_skipped=len(plan.cells) - todo,
                             repaired=dict(table.damaged), quick_cuts=self.suite.quick_cuts)
        for cell in plan.skipped:
            table.append(failed_rows(self.suite, cell, self.run_id, str(self.device), "skipped",
                                     "left out with --skip"))
        dask = self.backend.name != "sequential"
        tasks = plan.tasks(self.suite, device=str(self.device), run_id=self.run_id, session=self.session,
                           bootstrap=self.bootstrap, by_fit=dask, split_seeds=self.timeout is None)
        bar = tqdm(total=len(plan.todo), desc=self.suite.name, unit="cell", disable=not self.progress,
                   file=sys.stderr)
        done = failed = 0
        gather = Gather(self.suite)
        results = self.backend.results(tasks, self.timeout)
        while True:
            if not dask and done < len(tasks):  # in order, one cell at a time: name the one running
                cell = self.current = tasks[done].cells[0]
                bar.set_postfix_str(f"{cell.target}/{cell.process}/{cell.estimator}/{cell.sampler}/{cell.steps}")
            try:
                result = next(results, None)
                if result is None:
                    break
                result = gather.add(result)
                if result is None:  # other seeds of the cell still run
                    continue
                self.write(table, result, summary)
            except Exception as exc:  # a failing cell is a row: what reaches here is the runner's own fault
                where = f"in cell {self.current.cell_id}: " if self.current is not None else ""
                raise RunnerCrash(f"{where}{type(exc).__name__}: {exc}") from exc
            done += 1
            failed += any(r["status"] not in ("ok", "skipped") for r in result.rows)
            bar.update(1)
            if dask:
                bar.set_postfix_str(f"failed {failed}, tasks left {self.backend.running}")
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

    def write(self, table: ResultTable, result: CellResult, summary: RunSummary) -> None:
        """Stage 4: a cell's records to ``fits.jsonl`` and ``samples.jsonl``, then its rows to the table
        (which marks the cell done), and its seconds to the summary."""
        for name, records in result.records:
            if name == FITS_FILE:
                for record in records:
                    append_fit_record(self.run_dir, record)
            elif records:
                append_sample_records(self.run_dir, records)
        table.append(result.rows)
        summary.add(result.counts)


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
    backend: Backend | None = None,
) -> RunSummary:
    """Run ``suite`` and return its summary (see :class:`Runner`)."""
    run_dir = resolve_run_dir(suite, out, resume)
    return Runner(suite, run_dir, device=device, resume=resume, quick=quick, progress=progress,
                  reverse=reverse, bootstrap=bootstrap, timeout=timeout, skip=skip, retry=retry,
                  backend=backend).run()
