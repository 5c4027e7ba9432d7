"""`scorebench validate` is the gate for `scorebench run`: every malformed suite is refused with
exit status 2 and one message naming the file, never a traceback; and validation stays linear in
the size of the suite."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scorebench.cli import main

from .test_suite import MALFORMED, MALFORMED_FILES, write

STEPS_SUITE = """
[suite]
name = "many-steps"

[targets.g]
name = "gaussian"
dim = 2

[processes.vp]

[estimators.oracle]

[samplers.em]
name = "euler_maruyama"

[metrics]
mean_error = {}

[[grid]]
n_samples = [64]
seeds = [0, 1]
"""


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["validate", str(path), "--no-estimate"])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``validate`` exits 2 naming the file; ``run`` then refuses the same way and makes no run directory."""
    code, out, err = validate(path, capsys)
    assert code == 2, out + err
    assert str(path) in err
    assert "Traceback" not in err and "Traceback" not in out
    assert err.startswith("scorebench validate: ")
    out_dir = path.parent / "run-out"
    assert main(["run", str(path), "--out", str(out_dir), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("scorebench run: ") and str(path) in err and "Traceback" not in out + err
    assert not out_dir.exists()


@pytest.mark.parametrize(("case", "text", "match"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_validate_refuses_malformed_suites(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, text: str,
                                           match: str) -> None:
    assert_refused(write(tmp_path, text), capsys)


@pytest.mark.parametrize(("case", "make", "match"), MALFORMED_FILES, ids=[m[0] for m in MALFORMED_FILES])
def test_validate_refuses_files_that_are_no_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], case: str,
                                                  make: Callable[[Path, pytest.MonkeyPatch], Path], match: str) -> None:
    assert_refused(make(tmp_path, monkeypatch), capsys)


def test_validate_refuses_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(tmp_path / "nope.toml", capsys)


def _validate_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str], n: int) -> float:
    path = write(tmp_path, STEPS_SUITE + f"steps = [{', '.join(map(str, range(1, n + 1)))}]\n", f"steps{n}.toml")
    start = time.perf_counter()
    code, out, err = validate(path, capsys)
    seconds = time.perf_counter() - start
    assert code == 0, err
    assert f"{n} cells, {2 * n} cell x seed runs" in out
    return seconds


def test_validation_is_linear_in_the_number_of_step_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each step value is a cell: parsing, expanding and finding the seeds of every cell must cost
    time linear in their number (it was quadratic: 120 s for 200k values).  Ten times the values
    must take well under a hundred times as long; measured against each other in one run."""
    small = min(_validate_steps(tmp_path, capsys, 5_000) for _ in range(3))
    large = min(_validate_steps(tmp_path, capsys, 50_000) for _ in range(2))  # best of 2: a busy machine
    assert large / small < 20, f"5k step values: {small:.3f} s, 50k: {large:.3f} s (ratio {large / small:.1f})"
