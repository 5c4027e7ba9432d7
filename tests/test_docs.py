"""docs/proposing-a-sampler.md, executed as a user would: every command on the page, in a fresh folder."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scorebench.results import read_provenance, read_results

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "proposing-a-sampler.md"


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def commands(text: str) -> list[list[str]]:
    """Every line of every bash block, comments and blanks left out."""
    out = []
    for block in blocks(text, "bash"):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(shlex.split(line))
    return out


def test_the_page_names_its_file_and_every_step() -> None:
    text = DOC.read_text()
    (code,) = blocks(text, "python")
    assert code.startswith("# my_sampler.py\n")
    programs = [c[:2] for c in commands(text)]
    assert programs == [["scorebench", "check-sampler"], ["cp", "suites/proposal.toml"], ["scorebench", "validate"],
                        ["scorebench", "run"], ["scorebench", "compare"], ["scorebench", "report"]]


@pytest.mark.slow
def test_the_whole_path_runs_as_written(tmp_path: Path) -> None:
    """Write the page's sampler to my_sampler.py beside a copy of suites/, then run each command with
    this interpreter (``scorebench`` is ``python -m scorebench.cli``); each must exit 0, and what the page
    says each produces must be there."""
    text = DOC.read_text()
    (code,) = blocks(text, "python")
    (tmp_path / "my_sampler.py").write_text(code)
    shutil.copytree(ROOT / "suites", tmp_path / "suites")
    outputs = []
    for argv in commands(text):
        if argv[0] == "scorebench":
            argv = [sys.executable, "-m", "scorebench.cli", *argv[1:]]
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
    check, _, validate, run, compare, report = outputs
    assert "ok   convergence" in check and "FAIL" not in check
    assert "estimated wall time" in validate
    assert "status: ok" in run
    assert "proposal mine against the best of em, ei, ode_heun, ddpm, pc at matched NFE" in compare
    assert "report:" in report
    frame = read_results(tmp_path / "results" / "proposal" / "mine")
    assert (frame["status"] == "ok").all() and "mine" in set(frame["sampler"])
    plugin = read_provenance(tmp_path / "results" / "proposal" / "mine")["plugins"]["samplers.mine"]
    assert plugin["file"] == str((tmp_path / "my_sampler.py").resolve())  # the current directory first
    assert "## Against the best baseline at matched NFE" in (tmp_path / "compare.md").read_text()
    page = (tmp_path / "report" / "report.md").read_text()
    assert "## mine against the baselines" in page
    assert (tmp_path / "report" / "ratio-sliced_w2.png").is_file()
    assert "discretisation (exact start)" in page
