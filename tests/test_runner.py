"""The runner and result tables: determinism, resume after SIGKILL, faults, provenance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import scorebench as sb
from scorebench.cli import main
from scorebench.results import COLUMNS, MIGRATIONS, SCHEMA_VERSION, ResultsError, read_results
from scorebench.runner import run_suite
from scorebench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
[suite]
name = "tiny"
seed = 7
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]

[targets.ring]
name = "gmm"
preset = "ring8"

[processes.vp]

[processes.ve]

[estimators.oracle]

[estimators.noisy]
name = "noisy_oracle"
eps = 0.2

[samplers.em]
name = "euler_maruyama"

[samplers.em_twin]
name = "euler_maruyama"

[samplers.heun]
name = "pf_ode"
method = "heun"

[metrics]
sliced_w2 = {}
mmd = {}
bures_w2 = {}
score_mse = { n_times = 2 }
score_mse_traj = { n_times = 2 }
exact_w2 = {}

[[grid]]
steps = [8, 16]
n_samples = [200]
seeds = [0, 1, 2]
metrics = ["sliced_w2", "mmd", "bures_w2", "score_mse", "score_mse_traj"]

[[grid]]
targets = ["g2"]
estimators = ["oracle"]
steps = [8, 16]
n_samples = [200]
seeds = [0, 1, 2]
metrics = ["exact_w2"]
"""

VALUE_COLS = ["cell_id", "seed", "metric", "t", "value", "floor", "ci_low", "ci_high", "status", "nfe"]


def write_suite(tmp_path: Path, text: str = SUITE, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[VALUE_COLS].sort_values(["cell_id", "seed", "metric", "t"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("run")
    suite = load_suite(write_suite(tmp))
    summary = run_suite(suite, tmp / "a", progress=False)
    assert summary.exit_code == 0
    return tmp, read_results(tmp / "a")


def test_table_is_tidy_numeric_and_complete(first_run: tuple[Path, pd.DataFrame]) -> None:
    tmp, _ = first_run
    raw = pd.read_csv(tmp / "a" / "results.csv")  # plain pandas, as a user would
    assert set(COLUMNS) <= set(raw.columns)
    for col in ("value", "floor", "ci_low", "ci_high", "fit_s", "sample_s", "metric_s", "nfe", "steps", "seed"):
        assert pd.api.types.is_numeric_dtype(raw[col]), col
    assert (raw["schema_version"] == SCHEMA_VERSION).all()
    assert (raw["status"] == "ok").all()
    suite = load_suite(write_suite(tmp))
    expected = sum(len(suite.seeds_of(c)) * len(c.metrics) for c in suite.cells())
    per_time = raw["metric"].isin(["score_mse", "score_mse_traj"])
    assert len(raw[~per_time]) + len(raw[per_time]) // 2 == expected  # n_times = 2 rows per score metric
    assert not raw.duplicated(["cell_id", "seed", "metric", "t"]).any()
    sample = raw[raw["metric"].isin(["sliced_w2", "mmd", "bures_w2"])]
    assert sample["floor"].notna().all() and sample["ci_low"].notna().all()
    assert (sample["ci_low"] <= sample["ci_high"]).all()
    assert (raw["sample_s"] > 0).all() and (raw["nfe"] > 0).all()
    heun = raw[(raw["sampler"] == "heun")]
    assert (heun["nfe"] == 2 * heun["steps"]).all()


def test_exact_and_score_metrics_are_right(first_run: tuple[Path, pd.DataFrame]) -> None:
    _, frame = first_run
    oracle = frame[(frame["metric"].isin(["score_mse", "score_mse_traj"])) & (frame["estimator"] == "oracle")]
    assert (oracle["value"] == 0).all()
    noisy = frame[(frame["metric"] == "score_mse") & (frame["estimator"] == "noisy")]
    assert noisy["value"].sub(0.04).abs().max() < 1e-6  # eps^2
    exact = frame[frame["metric"] == "exact_w2"]
    target = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0])
    for row in exact.drop_duplicates("cell_id").itertuples():
        process = sb.get_process(row.process)
        sampler = sb.get_sampler("pf_ode", method="heun") if row.sampler == "heun" else sb.get_sampler("euler_maruyama")
        law = sb.exact_output_law(sampler, sb.get_estimator("oracle").fit(target, process), process, row.steps)
        assert row.value == pytest.approx(sb.gaussian_w2(law, sb.GaussianLaw.of(target)), rel=1e-12)


def test_common_random_numbers(first_run: tuple[Path, pd.DataFrame]) -> None:
    """Two labels for the same sampler share every random draw: identical numbers."""
    _, frame = first_run
    key = ["target", "process", "estimator", "steps", "seed", "metric", "t"]
    a = frame[frame["sampler"] == "em"].set_index(key)["value"].sort_index()
    b = frame[frame["sampler"] == "em_twin"].set_index(key)["value"].sort_index()
    pd.testing.assert_series_equal(a, b)


def test_same_suite_same_table_in_any_order(first_run: tuple[Path, pd.DataFrame]) -> None:
    tmp, frame = first_run
    suite = load_suite(write_suite(tmp))
    run_suite(suite, tmp / "again", progress=False)
    run_suite(suite, tmp / "reversed", progress=False, reverse=True)
    pd.testing.assert_frame_equal(canonical(read_results(tmp / "again")), canonical(frame))
    pd.testing.assert_frame_equal(canonical(read_results(tmp / "reversed")), canonical(frame))


def test_provenance_sidecar(first_run: tuple[Path, pd.DataFrame]) -> None:
    tmp, frame = first_run
    info = json.loads((tmp / "a" / "provenance.json").read_text())
    for key in ("git_sha", "git_dirty", "packages", "torch_cuda", "device", "cpu", "dtype", "seeds", "suite_sha256",
                "metric_versions", "timestamp", "finished", "schema_version", "suite_text"):
        assert key in info, key
    assert info["run_id"] == frame["run_id"].iloc[0]
    assert info["metric_versions"]["sliced_w2"] == "1"
    assert info["packages"]["torch"]


def test_resume_after_sigkill_loses_and_duplicates_nothing(first_run: tuple[Path, pd.DataFrame]) -> None:
    tmp, frame = first_run
    path = write_suite(tmp)
    out = tmp / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scorebench.cli", "run", str(path), "--out", str(out), "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    done = out / "cells.done"
    deadline = time.time() + 120
    while time.time() < deadline:
        if done.exists() and len(done.read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_results(out)
    assert 0 < partial["cell_id"].nunique() < frame["cell_id"].nunique(), "the kill should land mid-run"
    # every finished cell is complete, with exactly the rows of the uninterrupted run
    expected = canonical(frame[frame["cell_id"].isin(set(partial["cell_id"]))]).reset_index(drop=True)
    pd.testing.assert_frame_equal(canonical(partial), expected)
    assert main(["run", str(path), "--out", str(out), "--resume", "--no-progress"]) == 0
    resumed = read_results(out)
    assert not resumed.duplicated(["cell_id", "seed", "metric", "t"]).any()
    pd.testing.assert_frame_equal(canonical(resumed), canonical(frame))
    # a second resume has nothing left to do and changes nothing
    assert main(["run", str(path), "--out", str(out), "--resume", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(frame))


def test_resume_refuses_a_changed_suite(tmp_path: Path, first_run: tuple[Path, pd.DataFrame]) -> None:
    tmp, _ = first_run
    changed = write_suite(tmp_path, SUITE.replace("seed = 7", "seed = 8"))
    assert main(["run", str(changed), "--out", str(tmp / "a"), "--resume", "--no-progress"]) == 2
    same = write_suite(tmp_path, SUITE, "same.toml")
    assert main(["run", str(same), "--out", str(tmp / "a"), "--no-progress"]) == 2  # would overwrite
    assert main(["run", str(same), "--out", str(tmp / "a"), "--resume", "--quick", "--no-progress"]) == 2


def test_torn_write_is_repaired_on_resume(tmp_path: Path, first_run: tuple[Path, pd.DataFrame]) -> None:
    """A process killed inside a write leaves a partial cell and a torn last line: reopening
    drops both, and resuming reruns that cell."""
    tmp, frame = first_run
    import shutil

    out = tmp_path / "torn"
    shutil.copytree(tmp / "a", out)
    done = (out / "cells.done").read_text().splitlines()
    last = done[-1]
    (out / "cells.done").write_text("".join(f"{c}\n" for c in done[:-1]))  # the last cell never finished
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text[: len(text) - 25])  # and its last line is torn
    assert last not in set(read_results(out)["cell_id"])
    assert main(["run", str(write_suite(tmp)), "--out", str(out), "--resume", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(frame))


FAULTY = """
[suite]
name = "faulty"
seed = 1
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2

[processes.vp]

[estimators.oracle]

[samplers.em]
name = "euler_maruyama"

[samplers.unstable]
name = "pc"
step_size = 10.0
corrector_steps = 3

[metrics]
sliced_w2 = {}
mean_error = {}

[[grid]]
steps = [40]
n_samples = [100]
seeds = [0, 1]
"""


def test_a_diverging_sampler_is_recorded_and_the_run_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_suite(tmp_path, FAULTY, "faulty.toml")
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1  # some cells failed
    frame = read_results(tmp_path / "out")
    bad = frame[frame["sampler"] == "unstable"]
    good = frame[frame["sampler"] == "em"]
    assert (bad["status"] == "diverged").all() and bad["value"].isna().all()
    assert bad["message"].str.contains("non-finite|exploded").all()
    assert (good["status"] == "ok").all() and good["value"].notna().all()
    assert "failed rows" in capsys.readouterr().out


def test_an_exception_in_a_cell_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scorebench.samplers import SAMPLERS, EulerMaruyama

    class Broken(EulerMaruyama):
        def step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError("deliberately broken step")

    monkeypatch.setitem(SAMPLERS._factories, "broken_for_test", Broken)
    text = FAULTY.replace('name = "pc"\nstep_size = 10.0\ncorrector_steps = 3', 'name = "broken_for_test"')
    summary = run_suite(load_suite(write_suite(tmp_path, text, "broken.toml")), tmp_path / "out", progress=False)
    frame = read_results(tmp_path / "out")
    bad = frame[frame["sampler"] == "unstable"]
    assert (bad["status"] == "error").all()
    assert bad["message"].str.contains("RuntimeError: deliberately broken step").all()
    assert (frame[frame["sampler"] == "em"]["status"] == "ok").all()
    assert summary.exit_code == 1


def test_identifiers_stay_strings(tmp_path: Path) -> None:
    """Labels that look like numbers or missing values survive the round trip."""
    text = SUITE.replace("[targets.g2]", "[targets.NA]").replace("[targets.ring]", "[targets.1e5]")
    text = text.replace('targets = ["g2"]', 'targets = ["NA"]')
    path = write_suite(tmp_path, text.replace("seeds = [0, 1, 2]", "seeds = [0]"))
    run_suite(load_suite(path), tmp_path / "out", progress=False)
    frame = read_results(tmp_path / "out")
    assert set(frame["target"]) == {"NA", "1e5"}
    raw = pd.read_csv(tmp_path / "out" / "results.csv", dtype={"cell_id": str}, keep_default_na=False)
    assert set(raw["cell_id"]) == set(frame["cell_id"])


def test_single_seed_cells_get_bootstrap_and_exact_intervals(tmp_path: Path) -> None:
    path = write_suite(tmp_path, SUITE.replace("seeds = [0, 1, 2]", "seeds = [4]"))
    run_suite(load_suite(path), tmp_path / "out", progress=False, bootstrap=30)
    frame = read_results(tmp_path / "out")
    sample = frame[frame["metric"].isin(["sliced_w2", "bures_w2"])]
    assert sample["ci_low"].notna().all() and (sample["ci_low"] < sample["ci_high"]).all()
    exact = frame[frame["metric"] == "exact_w2"]
    assert (exact["ci_low"] == exact["value"]).all() and (exact["ci_high"] == exact["value"]).all()


def test_a_non_finite_metric_value_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scorebench.metrics import METRICS, MeanError

    class NaNMetric(MeanError):
        def compute(self, x, mean, cov):  # type: ignore[no-untyped-def]
            return float("nan")

    monkeypatch.setitem(METRICS._factories, "nan_for_test", NaNMetric)
    text = FAULTY.replace("mean_error = {}", "nan_for_test = {}")
    text = text.replace('name = "pc"\nstep_size = 10.0\ncorrector_steps = 3', 'name = "ddpm"')
    summary = run_suite(load_suite(write_suite(tmp_path, text, "nan.toml")), tmp_path / "out", progress=False)
    frame = read_results(tmp_path / "out")
    bad = frame[frame["metric"] == "nan_for_test"]
    assert (bad["status"] == "error").all() and bad["message"].str.contains("returned nan").all()
    assert (frame[frame["metric"] == "sliced_w2"]["status"] == "ok").all()
    assert summary.exit_code == 1


def test_migration_of_an_older_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      first_run: tuple[Path, pd.DataFrame]) -> None:
    _, frame = first_run
    # the real step 1 -> 2: tables from before the init column started every chain from the prior
    # (and the last, 4 -> 5: tables from before the host column say nothing of where a cell ran)
    v1 = frame.drop(columns=["init", "host"]).assign(schema_version=1)
    v1.to_csv(tmp_path / "results.csv", index=False)
    migrated = read_results(tmp_path)
    assert (migrated["init"] == "prior").all() and (migrated["schema_version"] == SCHEMA_VERSION).all()
    assert (migrated["host"] == "").all() and (frame["host"] != "").all()
    pd.testing.assert_frame_equal(migrated.drop(columns=["init", "host"]), frame.drop(columns=["init", "host"]))

    old = frame.rename(columns={"value": "metric_value"}).drop(columns=["floor"])
    old["schema_version"] = SCHEMA_VERSION - 1
    old.to_csv(tmp_path / "results.csv", index=False)
    monkeypatch.delitem(MIGRATIONS, SCHEMA_VERSION - 1)
    with pytest.raises(ResultsError, match=f"no migration from schema version {SCHEMA_VERSION - 1}"):
        read_results(tmp_path)

    def upgrade(df: pd.DataFrame) -> pd.DataFrame:
        return df.rename(columns={"metric_value": "value"}).assign(floor=float("nan"))

    monkeypatch.setitem(MIGRATIONS, SCHEMA_VERSION - 1, upgrade)
    migrated = read_results(tmp_path)
    assert (migrated["schema_version"] == SCHEMA_VERSION).all()
    pd.testing.assert_series_equal(migrated["value"], frame["value"])
    newer = frame.assign(schema_version=SCHEMA_VERSION + 1)
    newer.to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ResultsError, match="newer than this scorebench reads"):
        read_results(tmp_path)


def test_cli_validate_show_and_list(first_run: tuple[Path, pd.DataFrame], capsys: pytest.CaptureFixture) -> None:
    tmp, _ = first_run
    assert main(["validate", str(write_suite(tmp))]) == 0
    assert "ok: suite 'tiny'" in capsys.readouterr().out
    assert main(["show", str(tmp / "a")]) == 0
    out = capsys.readouterr().out
    assert "sliced_w2" in out and "heun" in out
    assert main(["show", str(tmp / "a"), "--metric", "score_mse"]) == 0
    assert "score_mse@t=" in capsys.readouterr().out
    assert main(["list", "metrics"]) == 0
    assert "sliced_w2:" in capsys.readouterr().out
    assert main(["validate", str(tmp / "missing.toml")]) == 2
    assert main(["show", str(tmp / "nothing-here")]) == 2


def test_quick_smoke_suite_from_the_cli(tmp_path: Path) -> None:
    """The shipped smoke suite, reduced by --quick, through the installed console script."""
    result = subprocess.run(
        ["scorebench", "run", str(ROOT / "suites" / "smoke.toml"), "--quick", "--out", str(tmp_path / "smoke"),
         "--no-progress"], capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "time: fit" in result.stdout
    frame = pd.read_csv(tmp_path / "smoke" / "results.csv")
    assert (frame["status"] == "ok").all()
    assert set(frame["sampler"]) == {"em", "ei", "ode_euler", "ode_heun", "pc", "ddpm"}


FIT_SUITE = """
[suite]
name = "fits"
seed = 3
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2

[processes.vp]

[estimators.learned]
name = "exact_with_record_for_test"

[estimators.unstable]
name = "diverging_fit_for_test"

[samplers.em]
name = "euler_maruyama"

[samplers.heun]
name = "pf_ode"
method = "heun"

[metrics]
bures_w2 = {}

[[grid]]
steps = [8]
n_samples = [100]
seeds = [0, 1]
"""


def test_training_records_and_diverged_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A learned model's training record lands in fits.jsonl once per fit; a fit whose loss
    turns NaN marks its cells ``diverged`` (fitted once, not once per sampler) and the run goes on."""
    from scorebench.estimators import ESTIMATORS, Estimator, LearnedScore, TrainingRecord
    from scorebench.estimators.oracle import exact_score
    from scorebench.results import read_fit_records

    fits: list[str] = []

    class ExactWithRecord(Estimator):
        def fit(self, data, process, generator=None):  # type: ignore[no-untyped-def]
            fits.append("learned")
            record = TrainingRecord("exact_with_record_for_test")
            for k, loss in enumerate([3.0, 2.0, 1.5]):
                record.log(k, loss)
            record.iterations = record.stopped_at = 3
            return LearnedScore(data.dim, process, lambda x, t: exact_score(data, process, x, t), record,
                                dtype=torch.float64)

    class DivergingFit(Estimator):
        def fit(self, data, process, generator=None):  # type: ignore[no-untyped-def]
            fits.append("unstable")
            record = TrainingRecord("diverging_fit_for_test")
            record.log(0, 1.0)
            from scorebench.estimators.training import check_finite_loss
            check_finite_loss(float("nan"), 1, record)
            raise AssertionError("unreachable")

    monkeypatch.setitem(ESTIMATORS._factories, "exact_with_record_for_test", ExactWithRecord)
    monkeypatch.setitem(ESTIMATORS._factories, "diverging_fit_for_test", DivergingFit)
    out = tmp_path / "out"
    summary = run_suite(load_suite(write_suite(tmp_path, FIT_SUITE, "fits.toml")), out, progress=False)
    frame = read_results(out)
    bad = frame[frame["estimator"] == "unstable"]
    assert len(bad) == 4 and (bad["status"] == "diverged").all()
    assert bad["message"].str.contains("fit diverged: .*loss became nan at iteration 1").all()
    good = frame[frame["estimator"] == "learned"]
    assert (good["status"] == "ok").all() and good["fit_s"].notna().all()
    assert sorted(fits) == ["learned", "learned", "unstable", "unstable"]  # one fit per seed, shared by samplers
    records = read_fit_records(out)
    assert sorted((r["estimator"], r["seed"], r["record"]["status"]) for r in records) == [
        ("learned", 0, "ok"), ("learned", 1, "ok"), ("unstable", 0, "diverged"), ("unstable", 1, "diverged")]
    learned = next(r for r in records if r["estimator"] == "learned")
    assert learned["record"]["losses"] == [3.0, 2.0, 1.5] and learned["record"]["stopped_at"] == 3
    assert set(summary.fit_s_by_estimator) == {"learned"} and summary.exit_code == 1
    from scorebench.cli import format_summary
    assert "fit seconds per estimator: learned" in format_summary(summary, frame)


def test_validate_estimates_what_the_runner_will_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    """With every component timed at one second a step or evaluation, the estimate counts exactly the
    runner's work: a sampling run per cell x seed, a metric evaluation per row, a noise floor per
    (target, size, seed, metric) as the runner caches them, and an exact law per cell."""
    from scorebench import estimate as E

    monkeypatch.setattr(E._Calibration, "sampling", lambda self, *a: (0.0, 1.0))
    monkeypatch.setattr(E._Calibration, "metric", lambda self, *a: 1.0)
    monkeypatch.setattr(E._Calibration, "exact_metric", lambda self, *a: 1.0)
    suite = load_suite(write_suite(tmp_path))
    est = E.estimate(suite, root=tmp_path)
    cells = suite.cells()
    runs = sum(len(suite.seeds_of(c)) for c in cells)
    assert (est.cells, est.runs) == (len(cells), runs)
    assert est.seconds["sampling"] == sum(c.steps * len(suite.seeds_of(c)) for c in cells)
    runner_floors = {(c.target, c.n_samples, s, m) for c in cells for s in suite.seeds_of(c) for m in c.metrics
                     if suite.build_metric(m).kind in ("sample", "moment")}
    assert est.seconds["noise floors"] == len(runner_floors)
    per_seed = sum(len(suite.seeds_of(c)) for c in cells for m in c.metrics if suite.build_metric(m).kind != "exact")
    exact = sum(c.steps for c in cells for m in c.metrics if suite.build_metric(m).kind == "exact")
    assert est.seconds["metrics"] == per_seed + exact  # every cell has several seeds: no bootstrap

    # an earlier finished run of the same file is reported; another file's, a resumed or a quick run is not
    root = tmp_path / "results"
    summary = run_suite(suite, root / suite.name / "r1", progress=False)
    assert summary.exit_code == 0
    found = E.earlier_runs(suite, quick=False, root=root)
    assert [Path(p).name for p, _ in found] == ["r1"] and 0 <= found[0][1] < 3600
    assert E.earlier_runs(suite, quick=True, root=root) == []
    edited = load_suite(write_suite(tmp_path, SUITE.replace("seed = 7", "seed = 8"), "edited.toml"))
    assert E.earlier_runs(edited, quick=False, root=root) == []
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(write_suite(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "estimated wall time" in out and "an earlier run of this suite file took" in out
    assert main(["validate", "--no-estimate", str(write_suite(tmp_path))]) == 0
    assert "estimated" not in capsys.readouterr().out


def test_exact_column_marks_exact_law_rows(tmp_path: Path, first_run: tuple[Path, pd.DataFrame]) -> None:
    """``exact`` is written from the metric, not guessed: true on exact-law rows (whose floor is 0 and
    interval the value) and on no other; a version-3 table gets the same column from its migration."""
    _, frame = first_run
    assert frame["exact"].dtype == "boolean"
    law = frame["metric"] == "exact_w2"
    assert law.any() and frame.loc[law, "exact"].all() and not frame.loc[~law, "exact"].any()
    assert (frame.loc[law, "floor"] == 0).all() and (frame.loc[law, "ci_low"] == frame.loc[law, "value"]).all()
    v3 = frame.drop(columns=["exact", "host"]).assign(schema_version=3)
    v3.to_csv(tmp_path / "results.csv", index=False)
    pd.testing.assert_frame_equal(read_results(tmp_path).drop(columns=["host"]), frame.drop(columns=["host"]))
    # the migration reads the evidence: a noisy row given a zero floor and interval would be taken as exact
    forged = v3.copy()
    row = forged.index[forged["metric"] == "sliced_w2"][0]
    forged.loc[row, ["floor", "ci_low", "ci_high"]] = [0.0, forged.at[row, "value"], forged.at[row, "value"]]
    forged.to_csv(tmp_path / "results.csv", index=False)
    assert read_results(tmp_path)["exact"].sum() == frame["exact"].sum() + 1
