"""The runner in stages: plan -> execute -> evaluate -> write.

A task is run by a function of the task alone (:func:`scorebench.task.run_task`): it must give the
rows the runner wrote, whatever the grouping, the order, the process or the caches, and write
nothing itself.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest

from scorebench.plan import fit_key, make_plan
from scorebench.results import FITS_FILE, SAMPLES_FILE, read_results
from scorebench.runner import run_suite
from scorebench.schema import BY_ROLE
from scorebench.suite import SuiteError, load_suite
from scorebench.task import CellResult, Gather, Task, release, run_task

SUITE = """
[suite]
name = "stages"
seed = 11
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]

[targets.ring]
name = "gmm"
preset = "ring8"

[processes.vp]

[estimators.oracle]

[estimators.noisy]
name = "noisy_oracle"
eps = 0.2

[estimators.affine]
name = "lipschitz"
family = "affine"
iterations = 30
n_train = 200

[samplers.em]
name = "euler_maruyama"

[samplers.heun]
name = "pf_ode"
method = "heun"

[metrics]
sliced_w2 = {}
bures_w2 = {}
score_mse = { n_times = 2 }

[[grid]]
steps = [4, 8]
n_samples = [100]
seeds = [0, 1]
metrics = ["sliced_w2", "bures_w2", "score_mse"]
"""

#: columns that measure time or memory, or name the run: everything else must agree exactly
VOLATILE = set(BY_ROLE["cost"]) | {"run_id"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    path = tmp_path_factory.mktemp("stages") / "stages.toml"
    path.write_text(SUITE)
    suite = load_suite(path)
    out = path.parent / "run"
    summary = run_suite(suite, out, progress=False)
    assert summary.exit_code == 0
    return suite, out


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    keep = [c for c in frame.columns if c not in VOLATILE]
    return frame[keep].sort_values(["cell_id", "seed", "metric", "t"]).reset_index(drop=True)


def _tasks(suite: object, run_id: str, session: str, by_fit: bool) -> list[Task]:
    return make_plan(suite, set()).tasks(suite, device="cpu", run_id=run_id, session=session, bootstrap=50,
                                         by_fit=by_fit)


def test_the_plan_groups_cells_that_share_a_fit(run: tuple) -> None:
    """For a distributed run: one task per (target, process, learning estimator, seed) holding that seed
    of every cell sharing the fit; one task per cell for the closed-form estimators."""
    suite, _ = run
    cells = suite.cells()
    tasks = _tasks(suite, "r", "s", by_fit=True)
    covered = sorted((c.cell_id, s) for t in tasks for c in t.cells for s in t.seeds_of(c))
    assert covered == sorted((c.cell_id, s) for c in cells for s in suite.seeds_of(c))  # each once
    learned = [t for t in tasks if t.seeds is not None]
    assert len(learned) == 2 * 2  # affine: 2 targets x 2 seeds
    for task in learned:
        assert {fit_key(c) for c in task.cells} == {(task.cells[0].target, "vp", "affine")}
        assert len(task.cells) == 4  # 2 samplers x 2 step counts
    assert sorted(t.cells[0].cell_id for t in tasks if t.seeds is None) == sorted(
        c.cell_id for c in cells if c.estimator != "affine")
    assert [t.cells for t in _tasks(suite, "r", "s", by_fit=False)] == [(c,) for c in cells]


def test_the_plan_leaves_out_finished_and_skipped_cells(run: tuple) -> None:
    suite, _ = run
    ids = [c.cell_id for c in suite.cells()]
    plan = make_plan(suite, set(ids[:3]), skip={ids[4]}, reverse=True)
    assert [c.cell_id for c in plan.todo] == [i for i in ids[::-1] if i not in set(ids[:3]) | {ids[4]}]
    assert [c.cell_id for c in plan.skipped] == [ids[4]]
    with pytest.raises(SuiteError, match="--skip nope: no cell of suite 'stages'"):
        make_plan(suite, set(), skip={"nope"})


@pytest.mark.parametrize("by_fit, order", [(False, 1), (True, -1)])
def test_a_task_run_anywhere_gives_the_rows_the_runner_wrote(run: tuple, by_fit: bool, order: int) -> None:
    """Tasks travel by pickle (as to another process), in another grouping and order, in a fresh
    session with empty caches: the rows equal the table's in every non-timing column."""
    suite, out = run
    table = read_results(out)
    run_id = table["run_id"].iloc[0]
    session = f"test-{by_fit}-{order}"
    files_before = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    try:
        results: list[CellResult] = []
        gather = Gather(suite)
        for task in _tasks(suite, run_id, session, by_fit)[::order]:
            for part in run_task(pickle.loads(pickle.dumps(task))):
                whole = gather.add(part)
                if whole is not None:
                    results.append(whole)
        assert gather.waiting == 0 and len(results) == len(suite.cells())
    finally:
        release(session)
    assert sorted((p.name, p.stat().st_size) for p in out.iterdir()) == files_before  # it wrote nothing
    rows = [r for result in results for r in result.rows]
    mine, theirs = _frame(rows), _frame(table.to_dict("records"))
    assert list(mine["cell_id"]) == list(theirs["cell_id"])
    pd.testing.assert_frame_equal(mine, theirs[mine.columns], check_dtype=False)
    # records: one fit record per learned fit (affine: 2 targets x 2 seeds), one sampling record per cell x seed
    fits = [r for result in results for name, batch in result.records if name == FITS_FILE for r in batch]
    samples = [r for result in results for name, batch in result.records if name == SAMPLES_FILE for r in batch]
    assert sorted((r["target"], r["seed"]) for r in fits) == sorted((t, s) for t in ("g2", "ring") for s in (0, 1))
    assert len(samples) == len(suite.cells()) * 2


def test_a_different_seed_changes_the_rows(run: tuple) -> None:
    """The comparison above can fail: a task of a suite with another seed gives other values."""
    suite, out = run
    path = out.parent / "other.toml"
    path.write_text(SUITE.replace("seed = 11", "seed = 12"))
    other = load_suite(path)
    cell = other.cells()[0]
    task = Task(suite=other, cells=(cell,), device="cpu", run_id="x", session="other-seed")
    try:
        rows = run_task(task)[0].rows
    finally:
        release("other-seed")
    table = read_results(out)
    first = suite.cells()[0]
    assert first.labels() == cell.labels()
    theirs = table[table["cell_id"] == first.cell_id].sort_values(["seed", "metric"])
    mine = pd.DataFrame(rows).sort_values(["seed", "metric"])
    assert list(mine["metric"]) == list(theirs["metric"])
    sampled = (mine["metric"] != "score_mse").to_numpy()  # the oracle's score error is 0 under any seed
    assert sampled.sum() == 4
    assert not (mine["value"].to_numpy() == theirs["value"].to_numpy())[sampled].any()
