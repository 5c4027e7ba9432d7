"""Suites on Dask (``--workers``, ``--scheduler-file``): the sequential run's numbers, the run
directory's guarantees (one writer, a time limit, exit codes), and nothing lost when a worker or the
client is killed."""

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

from scorebench.cli import main
from scorebench.results import DONE_FILE, read_results
from scorebench.rundir import RunLock
from scorebench.schema import BY_ROLE
from tests.test_reliability import DIES, HANG, canonical, cli, wait_for, write_suite
from tests.test_stages import SUITE as LEARNED_SUITE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")

#: columns that time or place the work: everything else must be the sequential run's
VOLATILE = set(BY_ROLE["cost"]) | {"run_id", "host"}
KEY = ["cell_id", "seed", "metric", "t"]


def _values(out: Path) -> pd.DataFrame:
    frame = read_results(out)
    return frame[[c for c in frame.columns if c not in VOLATILE]].sort_values(KEY).reset_index(drop=True)


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = cli(*args)
    stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _done(out: Path) -> int:
    try:
        return len([line for line in (out / DONE_FILE).read_text().splitlines() if line])
    except OSError:
        return 0


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_local_workers_give_the_sequential_table(tmp_path: Path, dtype: str) -> None:
    """A learned estimator's cells are split by seed over the workers and gathered again: values,
    floors and intervals equal the sequential run's, exactly (float64) or to float32 rounding."""
    suite = tmp_path / "s.toml"
    suite.write_text(LEARNED_SUITE.replace('device = "cpu"', f'device = "cpu"\ndtype = "{dtype}"'))
    assert main(["run", str(suite), "--out", str(tmp_path / "seq"), "--no-progress"]) == 0
    done = _run("run", str(suite), "--out", str(tmp_path / "dask"), "--workers", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    seq, par = _values(tmp_path / "seq"), _values(tmp_path / "dask")
    if dtype == "float64":
        pd.testing.assert_frame_equal(par, seq, check_exact=True)
    else:
        pd.testing.assert_frame_equal(par, seq, check_exact=False, rtol=1e-5, atol=1e-6)
    prov = json.loads((tmp_path / "dask" / "provenance.json").read_text())
    assert (prov["backend"], prov["workers"], prov["threads_per_worker"]) == ("dask", 2, 1)
    assert json.loads((tmp_path / "seq" / "provenance.json").read_text())["backend"] == "sequential"
    assert set(read_results(tmp_path / "dask")["host"]) == set(prov["worker_hosts"])
    fits = [json.loads(line) for line in (tmp_path / "dask" / "fits.jsonl").read_text().splitlines()]
    assert len(fits) == 2 * 2  # the learned estimator: one fit per (target, seed), as sequentially


def test_a_changed_number_is_caught(tmp_path: Path) -> None:
    """The comparison above fails on a wrong table: another suite seed gives other values."""
    suite = tmp_path / "s.toml"
    suite.write_text(LEARNED_SUITE.replace('device = "cpu"', 'device = "cpu"\ndtype = "float64"'))
    other = tmp_path / "o.toml"
    other.write_text(LEARNED_SUITE.replace('device = "cpu"', 'device = "cpu"\ndtype = "float64"')
                     .replace("seed = 11", "seed = 12"))
    assert main(["run", str(suite), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert main(["run", str(other), "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    a, b = _values(tmp_path / "a"), _values(tmp_path / "b")
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(a.drop(columns=["cell_id"]), b.drop(columns=["cell_id"]), check_exact=True)


def _start_cluster(tmp_path: Path, threads: int = 1):
    file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    wait_for(file.exists, seconds=60)
    workers = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(file),
                                 "--nthreads", str(threads), "--no-nanny", "--host", "127.0.0.1",
                                 "--dashboard-address", ":0"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    return file, workers, procs + workers


@pytest.fixture
def cluster(tmp_path: Path):
    """A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 (no nanny: a killed
    worker stays dead), started as a user would; yields the scheduler file and the worker processes."""
    file, workers, procs = _start_cluster(tmp_path)
    try:
        yield file, workers
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def test_workers_with_several_threads_are_refused(tmp_path: Path) -> None:
    """Two cells sharing a worker process would share its caches and its timed child: refused at start."""
    file, _, procs = _start_cluster(tmp_path, threads=2)
    try:
        suite = write_suite(tmp_path)
        done = _run("run", str(suite), "--out", str(tmp_path / "run"), "--scheduler-file", str(file),
                    "--no-progress")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
    assert done.returncode == 2 and "--nthreads 1" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "results.csv").exists()


def test_an_external_cluster_survives_a_killed_worker(tmp_path: Path, cluster: tuple) -> None:
    """``--scheduler-file`` on a real cluster gives the sequential table; SIGKILL of one worker
    mid-run loses and repeats no row (the scheduler moves its task to the other worker)."""
    file, workers = cluster
    suite = write_suite(tmp_path, delay=0.5)
    assert main(["run", str(suite), "--out", str(tmp_path / "seq"), "--no-progress"]) == 0
    out = tmp_path / "dask"
    proc = cli("run", str(suite), "--out", str(out), "--scheduler-file", str(file), "--no-progress")
    wait_for(lambda: _done(out) >= 2, seconds=120)
    workers[0].send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert workers[0].wait(10) == -signal.SIGKILL and workers[1].poll() is None
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(read_results(tmp_path / "seq")))
    assert json.loads((out / "provenance.json").read_text())["backend"] == "dask"


def test_a_worker_that_dies_twice_gives_error_rows_and_the_run_goes_on(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, extra=DIES)
    out = tmp_path / "dies"
    done = _run("run", str(suite), "--out", str(out), "--workers", "2", "--no-progress")
    assert done.returncode == 1, done.stderr
    frame = read_results(out)
    dead = frame[frame["sampler"] == "dies"]
    assert len(dead) and (dead["status"] == "error").all()
    assert dead["message"].str.contains("the worker running the cell died (2 attempts)", regex=False).all()
    assert (frame.loc[frame["sampler"] != "dies", "status"] == "ok").all()


def test_the_time_limit_holds_on_dask_workers(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, extra=HANG.replace("MARKER", str(tmp_path / "stuck")))
    out = tmp_path / "limited"
    started = time.perf_counter()
    done = _run("run", str(suite), "--out", str(out), "--workers", "2", "--timeout", "5", "--no-progress")
    assert done.returncode == 1, done.stderr
    assert time.perf_counter() - started < 200
    frame = read_results(out)
    stuck = frame[frame["sampler"] == "stuck"]
    assert len(stuck) and (stuck["status"] == "timeout").all()
    assert stuck["message"].str.contains("stopped after the time limit of 5 s").all()
    assert (frame.loc[frame["sampler"] != "stuck", "status"] == "ok").all()


def test_a_second_client_on_the_run_directory_is_refused(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        done = _run("run", str(suite), "--out", str(out), "--workers", "2", "--no-progress")
    assert done.returncode == 2 and str(out) in done.stderr and f"pid {os.getpid()}" in done.stderr
    assert not (out / "results.csv").exists()


def test_kill_9_of_the_client_then_resume_gives_the_uninterrupted_table(tmp_path: Path) -> None:
    """The client killed (with its local cluster) at three moments: before any cell is written,
    after a few, after most; ``--resume`` then submits only what is missing."""
    suite = write_suite(tmp_path, delay=0.3)
    assert main(["run", str(suite), "--out", str(tmp_path / "seq"), "--no-progress"]) == 0
    truth = canonical(read_results(tmp_path / "seq"))
    total = len(set(read_results(tmp_path / "seq")["cell_id"]))
    for moment in (0, 3, total - 3):
        out = tmp_path / f"killed-{moment}"
        proc = cli("run", str(suite), "--out", str(out), "--workers", "2", "--no-progress", start_new_session=True)
        if moment == 0:
            wait_for(lambda out=out: (out / ".lock").exists(), seconds=120)
        else:
            wait_for(lambda out=out, moment=moment: _done(out) >= moment, seconds=120)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        kept = _done(out)
        assert kept < total
        done = _run("run", str(suite), "--out", str(out), "--resume", "--workers", "2", "--no-progress")
        assert done.returncode == 0, done.stderr
        pd.testing.assert_frame_equal(canonical(read_results(out)), truth)
        resumed = json.loads((out / "provenance.json").read_text()).get("resumed", [])
        assert resumed or moment == 0  # killed before its provenance was written, a run starts afresh
        assert all((r["backend"], r["workers"]) == ("dask", 2) for r in resumed)


def test_cuda_on_a_cluster_without_gpus_fails_at_once(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    suite = write_suite(tmp_path)
    done = _run("run", str(suite), "--out", str(tmp_path / "gpu"), "--workers", "2", "--device", "cuda",
                "--no-progress", timeout=120)
    assert done.returncode == 2 and "cuda" in done.stderr.lower() and "Traceback" not in done.stderr
    assert not (tmp_path / "gpu" / "results.csv").exists()


def test_a_sequential_run_does_not_import_dask(tmp_path: Path) -> None:
    """Dask is a dependency of the --workers/--scheduler runs only: the default path never imports it."""
    suite = write_suite(tmp_path)
    code = ("import sys; from scorebench.cli import main; "
            f"code = main(['run', {str(suite)!r}, '--out', {str(tmp_path / 'seq')!r}, '--no-progress']); "
            "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stderr
