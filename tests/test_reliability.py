"""Reliability of runs: one writer per run directory, a time limit per cell, tables that check
themselves, exit codes CI can trust, and nothing lost to a kill at any moment."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from scorebench.cli import main
from scorebench.results import (
    DONE_FILE,
    TORN_WRITE_ENV,
    ResultsError,
    read_results,
    read_sample_records,
    scan_table,
)
from scorebench.rundir import RunLock

PLUGIN = '''
import os
import signal
import time
from pathlib import Path

from scorebench.samplers.euler_maruyama import EulerMaruyama


class Slow(EulerMaruyama):
    """Euler-Maruyama that first waits ``delay`` seconds, or touches ``marker`` and hangs for
    ever (``hang``), or raises ``fail``, or kills its own process (``die``)."""

    def __init__(self, delay: float = 0.0, hang: bool = False, marker: str = "", fail: str = "",
                 die: bool = False) -> None:
        super().__init__()
        self.delay, self.hang, self.marker, self.fail, self.die = delay, hang, marker, fail, die

    def sample(self, *args, **kwargs):
        if self.marker:
            Path(self.marker).touch()
        if self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        while self.hang:
            time.sleep(0.5)
        if self.fail:
            raise ValueError(self.fail)
        time.sleep(self.delay)
        return super().sample(*args, **kwargs)
'''

SUITE = """
[suite]
name = "rel"
seed = 3
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]

[processes.vp]

[estimators.oracle]

[samplers.em]
name = "euler_maruyama"

[samplers.ei]
name = "exponential_integrator"

[samplers.slow]
name = "slow.py:Slow"
delay = DELAY

[metrics]
mean_error = {}
sliced_w2 = { n_projections = 8 }

[[grid]]
samplers = ["em", "ei", "slow"]
steps = [4, 8, 16, 32]
n_samples = [64]
seeds = [0, 1]
"""


def write_suite(folder: Path, delay: float = 0.0, extra: str = "", name: str = "rel.toml") -> Path:
    (folder / "slow.py").write_text(PLUGIN)
    path = folder / name
    path.write_text(SUITE.replace("DELAY", repr(delay)) + extra)
    return path


def _interruptible() -> None:
    """Ctrl-C as at a terminal: a shell without job control starts background commands with
    SIGINT ignored, and a child inherits that, so pytest launched that way would hand the run an
    ignored SIGINT and the Ctrl-C tests would wait for ever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """``scorebench`` as a user runs it: a fresh interpreter (``sys.executable``), SIGINT as at a terminal."""
    return subprocess.Popen([sys.executable, "-m", "scorebench.cli", *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible,
                            **kw)


def wait_for(predicate, seconds: float = 120.0) -> None:
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def lock_taken(run_dir: Path) -> bool:
    try:
        return "pid" in json.loads((run_dir / ".lock").read_text())
    except (OSError, ValueError):
        return False


#: a row's identity by labels (cell ids follow parameters, and the tests vary the slow sampler's delay)
KEY = ["sampler", "steps", "seed", "metric", "t"]
VALUES = [*KEY, "value", "floor", "ci_low", "ci_high", "status", "nfe"]


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[VALUES].sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """An uninterrupted run of the suite: the truth every interrupted run must end at."""
    tmp = tmp_path_factory.mktemp("reliability")
    assert main(["run", str(write_suite(tmp)), "--out", str(tmp / "ref"), "--no-progress"]) == 0
    frame = read_results(tmp / "ref")
    assert frame["cell_id"].nunique() == 12 and len(frame) == 12 * 2 * 2
    return tmp, frame


def copy_run(reference: tuple[Path, pd.DataFrame], dest: Path) -> Path:
    shutil.copytree(reference[0] / "ref", dest)
    return dest


# -- 1. one writer per run directory ------------------------------------------------------
def test_a_second_writer_exits_2_naming_the_holder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = write_suite(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        for extra in ([], ["--resume"]):
            assert main(["run", str(suite), "--out", str(out), "--no-progress", *extra]) == 2
            err = capsys.readouterr().err
            assert str(out) in err and f"pid {os.getpid()}" in err
    assert not (out / "results.csv").exists(), "the refused run must not touch the directory"
    # the lock is released with its holder: the next run goes ahead
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 0


def test_two_concurrent_runs_never_share_a_directory(reference: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    suite = write_suite(tmp_path, delay=0.05)
    out = tmp_path / "shared"
    first, second = cli("run", str(suite), "--out", str(out), "--no-progress"), \
        cli("run", str(suite), "--out", str(out), "--no-progress")
    codes = sorted(p.wait(300) for p in (first, second))
    errs = first.stderr.read() + second.stderr.read()
    assert codes == [0, 2], errs
    assert "another scorebench run is writing here" in errs or "already holds a run" in errs
    frame = read_results(out)
    pd.testing.assert_frame_equal(canonical(frame), canonical(reference[1]))


def test_a_resume_started_during_a_run_is_refused(reference: tuple[Path, pd.DataFrame], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    suite = write_suite(tmp_path, delay=0.3)
    out = tmp_path / "busy"
    proc = cli("run", str(suite), "--out", str(out), "--no-progress")
    wait_for(lambda: lock_taken(out))
    assert main(["run", str(suite), "--out", str(out), "--resume", "--no-progress"]) == 2
    assert f"pid {proc.pid}" in capsys.readouterr().err
    assert proc.wait(300) == 0
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(reference[1]))


def test_readers_refuse_duplicated_rows(reference: tuple[Path, pd.DataFrame], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    out = copy_run(reference, tmp_path / "dup")
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    done = (out / DONE_FILE).read_text().splitlines(keepends=True)
    # what two writers left: the first cell's rows and its ledger entry written twice
    first = done[0].split("\t")[0]
    rows = [ln for ln in lines[1:] if f",{first}," in ln]
    (out / "results.csv").write_text("".join(lines + rows))
    (out / DONE_FILE).write_text("".join(done + done[:1]))
    with pytest.raises(ResultsError, match=f"{out / 'results.csv'}: cell {first}: recorded twice"):
        read_results(out)
    for command in (["show", str(out)], ["compare", str(out), str(reference[0] / "ref")],
                    ["report", str(out), "--out", str(tmp_path / "rep")]):
        assert main(command) == 2, command
        assert f"cell {first}" in capsys.readouterr().err
    # a run directory that lost its ledger is refused; a table copied alone is checked for repeated keys
    (out / DONE_FILE).unlink()
    with pytest.raises(ResultsError, match=f"its ledger {out / DONE_FILE} is missing"):
        read_results(out)
    (out / "provenance.json").unlink()
    with pytest.raises(ResultsError, match=r"rows repeat a key \(cell_id, seed, metric, t\), the first"):
        read_results(out / "results.csv")


# -- 2. a hanging cell -----------------------------------------------------------------------
HANG = """
[samplers.stuck]
name = "slow.py:Slow"
hang = true
marker = "MARKER"

[[grid]]
samplers = ["stuck", "em"]
steps = [5]
n_samples = [64]
seeds = [0]
"""


DIES = """
[samplers.dies]
name = "slow.py:Slow"
die = true

[[grid]]
samplers = ["dies"]
steps = [5]
n_samples = [64]
seeds = [0]
"""


def test_a_hanging_cell_times_out_and_the_run_goes_on(tmp_path: Path) -> None:
    """The suite's time limit stops the hanging cell; a cell that kills its worker is an error; the
    worker is replaced each time and every other cell runs."""
    suite = write_suite(tmp_path, extra=HANG.replace("MARKER", str(tmp_path / "stuck")) + DIES)
    suite.write_text(suite.read_text().replace('device = "cpu"', 'device = "cpu"\ntimeout = 20'))
    out = tmp_path / "hang"
    proc = cli("run", str(suite), "--out", str(out), "--no-progress")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr
    frame = read_results(out)
    stuck = frame[frame["sampler"] == "stuck"]
    assert set(stuck["status"]) == {"timeout"} and len(stuck) == 2  # one cell x one seed x two metrics
    cell = stuck["cell_id"].iloc[0]
    assert f"--skip {cell}" in stuck["message"].iloc[0]
    dies = frame[frame["sampler"] == "dies"]
    assert set(dies["status"]) == {"error"} and dies["message"].str.contains("died: killed by signal SIGKILL").all()
    assert set(frame.loc[~frame["sampler"].isin(["stuck", "dies"]), "status"]) == {"ok"}  # every other cell ran
    assert frame["cell_id"].nunique() == 15
    # the worker hands its sampling records to the parent, which alone writes into the run directory
    records = {(r["cell_id"], r["seed"]) for r in read_sample_records(out)}
    ok = frame[frame["status"] == "ok"]
    assert records == set(zip(ok["cell_id"], ok["seed"], strict=True))
    assert "timeout" in stdout
    # --resume goes past the timed-out cell (it is finished, with a failing status) ...
    assert main(["run", str(suite), "--out", str(out), "--resume", "--no-progress"]) == 1
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(frame))
    # ... and --retry with --skip records the failed cells as left out: nothing fails any more
    died = dies["cell_id"].iloc[0]
    assert main(["run", str(suite), "--out", str(out), "--resume", "--retry", "timeout", "--retry", "error",
                 "--skip", cell, "--skip", died, "--no-progress"]) == 0
    after = read_results(out)
    assert set(after.loc[after["cell_id"].isin([cell, died]), "status"]) == {"skipped"}
    others = after[~after["cell_id"].isin([cell, died])]
    pd.testing.assert_frame_equal(canonical(others), canonical(frame[~frame["cell_id"].isin([cell, died])]))


def test_timeout_must_be_a_positive_number(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = str(write_suite(tmp_path))
    for bad in ("0", "-5", "inf", "soon"):
        with pytest.raises(SystemExit) as info:
            main(["run", suite, "--timeout", bad])
        assert info.value.code == 2
        assert "expected a positive number of seconds" in capsys.readouterr().err


def test_skip_names_an_unknown_cell(reference: tuple[Path, pd.DataFrame], tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    suite = write_suite(tmp_path)
    assert main(["run", str(suite), "--out", str(tmp_path / "s"), "--skip", "feedfacecafe0000", "--no-progress"]) == 2
    assert "--skip feedfacecafe0000: no cell of suite 'rel'" in capsys.readouterr().err


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux ``/proc``)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.parametrize(("sig", "code", "limit"), [(signal.SIGINT, 130, []), (signal.SIGTERM, 143, []),
                                                    (signal.SIGINT, 130, ["--timeout", "300"])],
                         ids=["ctrl-c", "sigterm", "ctrl-c-with-worker"])
def test_an_interrupted_run_says_what_it_kept_and_how_to_go_on(tmp_path: Path, sig: int, code: int,
                                                               limit: list[str]) -> None:
    """Without a time limit the cell hangs in the main process; with one, in the worker, which Ctrl-C
    (sent to the whole process group, as a terminal does) must not leave behind."""
    suite = write_suite(tmp_path, extra=HANG.replace("MARKER", str(tmp_path / "stuck")))
    out = tmp_path / "int"
    proc = cli("run", str(suite), "--out", str(out), "--no-progress", *limit, start_new_session=True)
    wait_for(lambda: (tmp_path / "stuck").exists())
    workers = children_of(proc.pid)
    assert bool(workers) == bool(limit)  # the worker (and multiprocessing's resource tracker)
    os.killpg(proc.pid, sig) if limit else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    wait_for(lambda: not [w for w in workers if alive(w)], seconds=10)  # the cell worker dies with its run
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    kept = len(ResultsTable_done(out))
    assert kept == 12 and f"{kept} finished cells are kept in {out}" in lines[0]
    resume = f"scorebench run {suite} --out {out} --resume{' --timeout 300' if limit else ''}"
    assert resume in lines[0]
    cell = lines[0].split(" during cell ")[1].split()[0]
    assert f"--skip {cell}" in lines[0]
    # the printed command, run as printed, finishes the run without the hanging cell
    argv = lines[0].split("to leave that cell out: ")[1].split()[1:]
    assert main([*argv, "--no-progress"]) == 0
    assert set(read_results(out).loc[lambda f: f["cell_id"] == cell, "status"]) == {"skipped"}


def ResultsTable_done(out: Path) -> list[str]:
    return [line.split("\t")[0] for line in (out / DONE_FILE).read_text().splitlines() if line]


# -- 3. torn rows with multi-line messages ----------------------------------------------------
FAIL = """
[samplers.broken]
name = "slow.py:Slow"
fail = "first line\\nsecond, \\"quoted\\" line σ é \\u0000 end\\n"

[[grid]]
samplers = ["broken"]
steps = [6]
n_samples = [64]
seeds = [0, 1]
"""


def test_a_torn_row_inside_a_multi_line_message_is_repaired(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, extra=FAIL)
    out = tmp_path / "torn"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 1
    frame = read_results(out)
    broken = frame[frame["sampler"] == "broken"]
    assert set(broken["status"]) == {"error"}
    assert broken["message"].str.contains(r'first line\nsecond, "quoted" line σ é \x00 end', regex=False).all()
    text = (out / "results.csv").read_text()
    assert len(text.splitlines()) == len(frame) + 1, "every row is one line"
    # kill inside the write of the failing cell's rows: the cut falls inside a quoted message
    done = (out / DONE_FILE).read_text().splitlines(keepends=True)
    assert done[-1].startswith(broken["cell_id"].iloc[0])
    (out / DONE_FILE).write_text("".join(done[:-1]))
    (out / "results.csv").write_text(text[: text.rindex("second, ") + 3])
    assert main(["run", str(suite), "--out", str(out), "--resume", "--no-progress"]) == 1
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(frame))


# -- 4. damage is found, named and rerun ------------------------------------------------------------
def _drop_one_row(out: Path) -> str:
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    victim = lines[5].split(",")[3]
    (out / "results.csv").write_text("".join(lines[:5] + lines[6:]))
    return victim


def _cut_to_85_percent(out: Path) -> str:
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text[: int(0.85 * len(text))])
    last_whole = text[: int(0.85 * len(text))].rsplit("\n", 1)[0]
    cells = [line.split(",")[3] for line in text.splitlines()[1:]]
    return cells[len(last_whole.splitlines()) - 1]  # the cell of the torn row loses a row


def _change_a_value(out: Path) -> str:
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    value = lines[0].rstrip("\n").split(",").index("value")
    fields = lines[7].split(",")
    fields[value] = repr(float(fields[value]) * 1.5)
    lines[7] = ",".join(fields)
    (out / "results.csv").write_text("".join(lines))
    return fields[3]


@pytest.mark.parametrize("damage", [_drop_one_row, _cut_to_85_percent, _change_a_value],
                         ids=["a row lost", "table cut to 85%", "a value changed"])
def test_damaged_cells_are_named_and_rerun(reference: tuple[Path, pd.DataFrame], tmp_path: Path, damage,
                                           capsys: pytest.CaptureFixture) -> None:
    out = copy_run(reference, tmp_path / "damaged")
    victim = damage(out)
    with pytest.raises(ResultsError, match=f"{out / 'results.csv'}: cell {victim}"):
        read_results(out)
    assert main(["show", str(out)]) == 2
    assert f"cell {victim}" in capsys.readouterr().err
    assert main(["run", str(write_suite(tmp_path)), "--out", str(out), "--resume", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"damaged, run again: {victim}" in printed
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(reference[1]))
    assert not scan_table(out).damaged


def test_resume_without_provenance_refuses(reference: tuple[Path, pd.DataFrame], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    out = copy_run(reference, tmp_path / "noprov")
    (out / "provenance.json").unlink()
    other = write_suite(tmp_path, delay=0.0, extra="\n# another suite\n", name="other.toml")
    before = (out / "results.csv").read_bytes()
    assert main(["run", str(other), "--out", str(out), "--resume", "--no-progress"]) == 2
    assert f"{out / 'provenance.json'}: missing" in capsys.readouterr().err
    assert main(["run", str(other), "--out", str(out), "--no-progress"]) == 2
    assert (out / "results.csv").read_bytes() == before


# -- 6. exit codes -------------------------------------------------------------------------------
def test_exit_codes_of_run_directory_faults(reference: tuple[Path, pd.DataFrame], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    suite = str(write_suite(tmp_path))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file, a_file / "under", Path("/proc/scorebench-run")):
        assert main(["run", suite, "--out", str(out), "--no-progress"]) == 2, out
        assert str(out) in capsys.readouterr().err
    listed = copy_run(reference, tmp_path / "list")
    (listed / "provenance.json").write_text("[1, 2]")
    assert main(["run", suite, "--out", str(listed), "--resume", "--no-progress"]) == 2
    assert f"{listed / 'provenance.json'}: holds a JSON list" in capsys.readouterr().err


def test_an_internal_error_exits_3_with_the_traceback_in_a_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    from scorebench.results import ResultTable

    def broken(self, rows):
        raise KeyError("a bug in the runner")

    monkeypatch.setattr(ResultTable, "append", broken)
    out = tmp_path / "crash"
    assert main(["run", str(write_suite(tmp_path)), "--out", str(out), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "please report" in err and "Traceback" not in err
    logs = list(out.glob("scorebench-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert "Traceback" in logs[0].read_text() and "a bug in the runner" in logs[0].read_text()


def test_a_broken_pipe_is_silent(tmp_path: Path) -> None:
    suite = write_suite(tmp_path)
    proc = subprocess.run(
        f"{sys.executable} -m scorebench.cli run {suite} --out {tmp_path / 'pipe'} --no-progress | head -1; "
        "echo \"status ${PIPESTATUS[0]}\" >&2",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("suite rel: 12 cells")
    assert proc.stderr.strip() == "status 0", proc.stderr


# -- kill -9 at random moments, then --resume ----------------------------------------------------
def kill_and_resume(suite: Path, out: Path, kills: int, rng: random.Random, torn_write_at: int) -> list[dict]:
    """Start, SIGKILL at a random moment, resume, ... ``kills`` times (the first forced inside a row
    write by the test hook), then resume to the end.  Returns what each kill left."""
    log = []
    for k in range(kills):
        env = {TORN_WRITE_ENV: str(torn_write_at)} if k == 0 else {}
        args = ["run", str(suite), "--out", str(out), "--no-progress"] + (["--resume"] if k else [])
        proc = cli(*args, env=env)
        wait_for(lambda proc=proc: lock_taken(out) or proc.poll() is not None)
        if not env:
            time.sleep(rng.uniform(0.0, 1.2))
            proc.kill()
        code = proc.wait(300)
        (out / ".lock").unlink(missing_ok=True)  # a fresh lock file each time: wait_for sees the next holder
        text = (out / "results.csv").read_text() if (out / "results.csv").exists() else ""
        log.append({"kill": k + 1, "how": "inside a row write (hook)" if env else "SIGKILL at a random moment",
                    "exit": code, "cells_done": len(ResultsTable_done(out)) if (out / DONE_FILE).exists() else 0,
                    "torn_last_line": bool(text) and not text.endswith("\n")})
    assert main(["run", str(suite), "--out", str(out), "--resume", "--no-progress"]) == 0
    return log


def compare_to_reference(frame: pd.DataFrame, ref: pd.DataFrame) -> dict[str, int]:
    """Rows of the reference missing from ``frame``, rows it has in addition or twice, and rows whose
    values differ (NaN equal to NaN)."""
    merged = canonical(ref).merge(canonical(frame), on=KEY, how="outer", suffixes=("_ref", "_got"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    differs = pd.Series(False, index=both.index)
    for c in ["value", "floor", "ci_low", "ci_high", "status", "nfe"]:
        a, b = both[f"{c}_ref"], both[f"{c}_got"]
        differs |= ~((a == b).fillna(False) | (a.isna() & b.isna()))
    return {"lost": int((merged["_merge"] == "left_only").sum()),
            "added": int((merged["_merge"] == "right_only").sum()),
            "duplicated": int(frame.duplicated(KEY).sum()), "changed": int(differs.sum())}


def test_kill_at_random_moments_then_resume_loses_nothing(reference: tuple[Path, pd.DataFrame],
                                                          tmp_path: Path) -> None:
    suite = write_suite(tmp_path, delay=0.1)
    log = kill_and_resume(suite, tmp_path / "killed", kills=4, rng=random.Random(0), torn_write_at=2)
    assert log[0]["exit"] == -signal.SIGKILL and log[0]["torn_last_line"], log  # the hook tore a row
    assert compare_to_reference(read_results(tmp_path / "killed"), reference[1]) == {
        "lost": 0, "added": 0, "duplicated": 0, "changed": 0}


# -- 8. what metrics and memory do inside a run -------------------------------------------------
def test_an_unconverged_metric_is_flagged_in_its_row(tmp_path: Path) -> None:
    """Sinkhorn stopped at one iteration keeps its (approximate) value and says so in the row."""
    text = SUITE.replace("mean_error = {}", "mean_error = {}\nsinkhorn = { max_iterations = 1 }")
    path = write_suite(tmp_path)
    path.write_text(text.replace("DELAY", "0.0"))
    assert main(["run", str(path), "--out", str(tmp_path / "flag"), "--no-progress", "--quick"]) == 0
    frame = read_results(tmp_path / "flag")
    sink, other = frame[frame["metric"] == "sinkhorn"], frame[frame["metric"] != "sinkhorn"]
    assert (sink["status"] == "ok").all() and sink["value"].notna().all()
    assert sink["message"].str.contains("stopped at max_iterations = 1 without converging").all()
    assert (other["message"] == "").all()


OOM = '''
import torch
from scorebench.samplers.euler_maruyama import EulerMaruyama


class Greedy(EulerMaruyama):
    """Asks the CPU allocator for 40 TB."""

    def sample(self, *args, **kwargs):
        torch.empty(10**13)
'''


def test_cpu_out_of_memory_is_recorded_as_oom(tmp_path: Path) -> None:
    (tmp_path / "greedy.py").write_text(OOM)
    path = write_suite(tmp_path, extra='\n[samplers.greedy]\nname = "greedy.py:Greedy"\n\n[[grid]]\nsamplers = '
                                         '["greedy"]\nsteps = [4]\nn_samples = [64]\n')
    assert main(["run", str(path), "--out", str(tmp_path / "oom"), "--no-progress", "--quick"]) == 1
    frame = read_results(tmp_path / "oom")
    greedy = frame[frame["sampler"] == "greedy"]
    assert set(greedy["status"]) == {"oom"} and greedy["message"].str.startswith("out of memory").all()
    assert set(frame.loc[frame["sampler"] != "greedy", "status"]) == {"ok"}


@pytest.mark.slow
def test_ten_kills_then_resume_lose_nothing(reference: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """The closing-note table: ten kills (the first inside a row write), each followed by --resume."""
    suite = write_suite(tmp_path, delay=0.4)
    log = kill_and_resume(suite, tmp_path / "ten", kills=10, rng=random.Random(2026), torn_write_at=3)
    print(pd.DataFrame(log).to_string(index=False))
    assert len(log) == 10 and log[0]["torn_last_line"]
    assert compare_to_reference(read_results(tmp_path / "ten"), reference[1]) == {
        "lost": 0, "added": 0, "duplicated": 0, "changed": 0}


def test_compare_and_report_name_timeout_and_skipped_cells(reference: tuple[Path, pd.DataFrame], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A cell left out (or stopped) in NEW is a failure for compare, and the report lists its status."""
    ref_dir, frame = reference[0] / "ref", reference[1]
    cell = frame.loc[frame["sampler"] == "ei", "cell_id"].iloc[0]
    out = tmp_path / "skipped"
    assert main(["run", str(write_suite(tmp_path)), "--out", str(out), "--skip", cell, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["compare", str(ref_dir), str(out)]) == 1
    printed = capsys.readouterr().out
    assert "skipped" in printed
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "skipped" in report and "left out with --skip" in report


# -- 7. every damaged file is named ------------------------------------------------------------------
def _empty_table(out: Path) -> Path:
    (out / "results.csv").write_text("")
    return out / "results.csv"


def _binary_table(out: Path) -> Path:
    (out / "results.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    return out / "results.csv"


def _binary_ledger(out: Path) -> Path:
    (out / DONE_FILE).write_bytes(b"\x00\xff\xfe" * 10)
    return out / DONE_FILE


def _garbled_ledger(out: Path) -> Path:
    (out / DONE_FILE).write_text("abc\t12\n")
    return out / DONE_FILE


def _non_numeric_value(out: Path) -> Path:
    """A table copied alone (no ledger to check it against) with a word where a number belongs."""
    (out / DONE_FILE).unlink()
    (out / "provenance.json").unlink()
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    fields = lines[3].split(",")
    fields[16] = "abc"
    lines[3] = ",".join(fields)
    (out / "results.csv").write_text("".join(lines))
    return out / "results.csv"


def _torn_without_ledger(out: Path) -> Path:
    (out / DONE_FILE).unlink()
    (out / "provenance.json").unlink()
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text[:-40])
    return out / "results.csv"


@pytest.mark.parametrize("damage", [_empty_table, _binary_table, _binary_ledger, _garbled_ledger, _non_numeric_value,
                                    _torn_without_ledger],
                         ids=["empty table", "binary table", "binary ledger", "garbled ledger", "non-numeric value",
                              "torn table without ledger"])
def test_readers_name_the_damaged_file(reference: tuple[Path, pd.DataFrame], tmp_path: Path, damage,
                                       capsys: pytest.CaptureFixture) -> None:
    out = copy_run(reference, tmp_path / "bad")
    path = damage(out)
    for command in (["show", str(out)], ["compare", str(reference[0] / "ref"), str(out)],
                    ["report", str(out), "--out", str(tmp_path / "rep")]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err, err
    if damage is not _non_numeric_value and damage is not _torn_without_ledger:  # a table alone is not resumable
        assert main(["run", str(write_suite(tmp_path)), "--out", str(out), "--resume", "--no-progress"]) == 2
        assert str(path) in capsys.readouterr().err


def test_a_corrupt_provenance_is_named(reference: tuple[Path, pd.DataFrame], tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    out = copy_run(reference, tmp_path / "prov")
    (out / "provenance.json").write_text('{"run_id": "x", ')
    for command in (["run", str(write_suite(tmp_path)), "--out", str(out), "--resume", "--no-progress"],
                    ["compare", str(reference[0] / "ref"), str(out)]):
        assert main(command) == 2, command
        assert f"{out / 'provenance.json'}: not valid JSON" in capsys.readouterr().err


def test_provenance_keeps_a_bounded_excerpt_of_a_large_suite(tmp_path: Path) -> None:
    path = write_suite(tmp_path)
    path.write_text(path.read_text() + "".join(f"# padding line {i:07d} of a very long suite file\n"
                                               for i in range(20_000)))
    assert main(["run", str(path), "--out", str(tmp_path / "big"), "--quick", "--no-progress"]) == 0
    info = json.loads((tmp_path / "big" / "provenance.json").read_text())
    assert info["suite_chars"] == len(path.read_text()) > 900_000
    assert len(info["suite_text"]) < 70_000 and info["suite_sha256"] in info["suite_text"]


def test_cells_in_the_worker_give_the_same_table(reference: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """A time limit moves cells into the child process; it changes no number (seeds derive from the
    cell, not from the process that runs it)."""
    out = tmp_path / "worker"
    assert main(["run", str(write_suite(tmp_path)), "--out", str(out), "--timeout", "120", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(reference[1]))


@pytest.mark.parametrize("lost", ["results.csv", DONE_FILE])
def test_a_deleted_table_or_ledger_is_reported_and_rerun(reference: tuple[Path, pd.DataFrame], tmp_path: Path,
                                                         lost: str, capsys: pytest.CaptureFixture) -> None:
    out = copy_run(reference, tmp_path / "lost")
    (out / lost).unlink()
    assert main(["run", str(write_suite(tmp_path)), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert "12 cells found damaged" in capsys.readouterr().out
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(reference[1]))


def test_a_torn_ledger_entry_means_the_cell_did_not_finish(reference: tuple[Path, pd.DataFrame],
                                                           tmp_path: Path) -> None:
    """A kill (or a full disk) inside the ledger append leaves an unterminated entry: that cell is
    unfinished, its rows are cut and it runs again; nothing else is touched."""
    out = copy_run(reference, tmp_path / "torn-ledger")
    entries = (out / DONE_FILE).read_text().splitlines(keepends=True)
    (out / DONE_FILE).write_text("".join(entries[:-1]) + entries[-1][:30])
    last = entries[-1].split("\t")[0]
    assert last not in set(read_results(out)["cell_id"])
    assert main(["run", str(write_suite(tmp_path)), "--out", str(out), "--resume", "--no-progress"]) == 0
    pd.testing.assert_frame_equal(canonical(read_results(out)), canonical(reference[1]))
    again = (out / DONE_FILE).read_text().splitlines(keepends=True)
    assert again[:-1] == entries[:-1] and again[-1].split("\t")[:2] == entries[-1].split("\t")[:2]


def test_long_messages_stay_one_readable_line(tmp_path: Path) -> None:
    """A 200 000-character message with commas and quotes (past the csv module's field limit) is cut."""
    from scorebench.results import MAX_FIELD_CHARS

    huge = ', \\"x\\"' * 40_000  # TOML: \" is a quote inside the string
    suite = write_suite(tmp_path, extra=FAIL.replace("first line", huge))
    out = tmp_path / "long"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 1
    frame = read_results(out)
    message = frame.loc[frame["sampler"] == "broken", "message"].iloc[0]
    assert MAX_FIELD_CHARS < len(message) < MAX_FIELD_CHARS + 100 and message.endswith("more characters cut]")
