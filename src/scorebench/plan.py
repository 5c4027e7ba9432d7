"""The first stage of a run: which cells to run, grouped into tasks, and whether a run may go on.

A run is planned before anything is fitted or sampled:

* :func:`check_resume` reads the run directory and refuses what cannot go on (another suite,
  ``--quick`` or device, an older schema, a table without provenance);
* :func:`make_plan` lists the suite's cells, drops the finished ones, and sets apart the cells
  left out with ``--skip``;
* :meth:`Plan.tasks` packs the cells to run into :class:`~scorebench.task.Task` objects, the unit
  of work any backend runs with :func:`scorebench.task.run_task`.  Cells that share a fitted score
  (same target, process and estimator) can go into one task, so that each fit still happens once
  wherever the task runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .estimators import ESTIMATORS
from .results import DONE_FILE, PROVENANCE_FILE, TABLE_FILE, ResultsError, read_provenance
from .schema import SCHEMA_VERSION
from .suite import Cell, Suite, SuiteError
from .task import Task


def fit_key(cell: Cell) -> tuple[str, str, str]:
    """What a cell's fitted score depends on besides the seed: (target, process, estimator)."""
    return cell.target, cell.process, cell.estimator


@dataclass
class Plan:
    """The cells of a run: all of them, those still to run, and those to record as skipped."""

    cells: list[Cell]
    todo: list[Cell]
    skipped: list[Cell] = field(default_factory=list)

    def tasks(self, suite: Suite, *, device: str, run_id: str, session: str, bootstrap: int,
              by_fit: bool = False, split_seeds: bool = True) -> list[Task]:
        """The cells to run as tasks, in plan order.

        ``by_fit=False``: one cell (every seed) per task, so that results are written cell by cell.
        ``by_fit=True`` (a distributed run): the cells of an estimator that learns go by fitted
        score, one task per (target, process, estimator, seed) holding that seed of every cell to
        run that shares the fit, so that each fit happens once; the cells of an estimator that does
        not learn (``learns = False``: a closed form, nothing to share) go one cell per task.
        ``split_seeds=False`` keeps a cell's seeds together (one task per fitted score and every
        seed), as a per-cell time limit needs.
        """
        if not by_fit:
            return [Task(suite=suite, cells=(cell,), device=device, run_id=run_id, session=session,
                         bootstrap=bootstrap) for cell in self.todo]
        # key -> (the seeds the task runs, None for all of them; its cells)
        groups: dict[Any, tuple[tuple[int, ...] | None, list[Cell]]] = {}
        for cell in self.todo:
            if not _learns(suite, cell):
                groups[cell.cell_id] = (None, [cell])
            elif not split_seeds:
                groups.setdefault(fit_key(cell), (None, []))[1].append(cell)
            else:
                for seed in suite.seeds_of(cell):
                    groups.setdefault((*fit_key(cell), seed), ((seed,), []))[1].append(cell)
        return [Task(suite=suite, cells=tuple(cells), device=device, run_id=run_id, session=session,
                     bootstrap=bootstrap, seeds=seeds) for seeds, cells in groups.values()]


def _learns(suite: Suite, cell: Cell) -> bool:
    """Whether the cell's estimator declares that it learns (default: it does)."""
    spec = suite.spec("estimators", cell.estimator)
    return bool(getattr(ESTIMATORS.factory(spec.resolved or spec.name), "learns", True))


def make_plan(suite: Suite, finished: set[str], *, skip: set[str] = frozenset(), reverse: bool = False,
              table_file: Path | None = None) -> Plan:
    """The plan of a run of ``suite`` whose table already holds the cells ``finished``.

    ``skip`` names cells to record as ``skipped`` without running them; an id that names no cell
    of the suite is a :class:`~scorebench.suite.SuiteError` (``table_file``: where the user can
    read the ids).  ``reverse`` runs the cells last first.
    """
    cells = suite.cells()
    unknown = sorted(set(skip) - {c.cell_id for c in cells})
    if unknown:
        where = f" (the cell_id column of {table_file} lists them)" if table_file is not None else ""
        raise SuiteError(f"--skip {unknown[0]}: no cell of suite {suite.name!r} has this id{where}")
    ordered = cells[::-1] if reverse else cells
    pending = [c for c in ordered if c.cell_id not in finished]
    return Plan(cells=cells, todo=[c for c in pending if c.cell_id not in skip],
                skipped=[c for c in pending if c.cell_id in skip])


def check_resume(run_dir: Path, suite: Suite, *, resume: bool, quick: bool, device: str) -> dict[str, Any]:
    """The provenance of the run to resume in ``run_dir`` (``{}`` for a fresh run).

    Refuses a fresh run into a directory that holds one, and a ``--resume`` whose suite file,
    ``--quick``, device, schema version or ``--quick`` training budgets differ from the run's.
    """
    previous = read_provenance(run_dir)
    prov = run_dir / PROVENANCE_FILE
    has_table = (run_dir / TABLE_FILE).exists() or (run_dir / DONE_FILE).exists()
    if not resume:
        if previous:
            raise SuiteError(f"{run_dir} already holds a run; use --resume or another --out")
        if has_table:
            raise SuiteError(f"{run_dir} holds a result table but no {PROVENANCE_FILE}; give another --out")
        return {}
    if not previous:
        if has_table:
            raise ResultsError(
                f"{prov}: missing, so nothing says which suite made the table in {run_dir}; --resume "
                "refuses to append to it: start a new run with another --out"
            )
        return {}
    if previous.get("schema_version", 1) != SCHEMA_VERSION:
        raise SuiteError(
            f"--resume: {run_dir} holds a schema-version {previous.get('schema_version', 1)} table "
            f"written by an older scorebench; this one writes version {SCHEMA_VERSION}: start a new run "
            "(the old table stays readable)"
        )
    for key, now in (("suite_sha256", suite.sha256), ("quick", quick), ("device", device)):
        if previous.get(key) != now:
            raise SuiteError(
                f"--resume: {run_dir} was made with {key} = {previous.get(key)!r}, this run has "
                f"{now!r}; resume with the same suite file, --quick and --device, or start a new run"
            )
    if previous.get("quick_budgets", {}) != suite.quick_cuts:  # the estimators' quick budgets changed
        raise SuiteError(
            f"--resume: {run_dir} was made with the --quick training budgets "
            f"{previous.get('quick_budgets', {})!r}, this scorebench cuts {suite.quick_cuts!r}; "
            "start a new run"
        )
    if "run_id" not in previous:
        raise ResultsError(f"{prov}: has no run_id; it was not written by scorebench run")
    return previous
