"""docs/proposing-a-sampler.md, executed as a user would: every command on the page, in a fresh folder;
and docs/theory.md, the page the code cites by label: every cited label is there, and no file points
to notes outside the repository instead."""

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
THEORY = ROOT / "docs" / "theory.md"


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


# -- docs/theory.md: the labels the code cites -------------------------------------------------------

# A section label: "§0.2", a formula tag "(E3)", or a letter with dotted numbers ("B", "F.4", "A.2").
SECTION = r"§\d+(?:\.\d+)*|\([A-Z]\d+\)|[A-Z](?:\.\d+)*(?!\w)"
# One cited item: a section, optionally narrowed to a step ("C.2 step 4", "C.2, steps 1-3 and 6") or
# a numbered scheme ("E.3 #2").
ITEM = re.compile(rf"({SECTION})(?: step (\d+)| #(\d+)|,? steps (\d+)-(\d+)(?: and (\d+))?)?")
SEPARATOR = re.compile(r"--|,\s+|\s+and\s+")  # "A.2--A.7" is a range; "F.4, H.1" and "A and F.6" lists
CITATION = re.compile(r"docs/theory\.md\s*")
HEADING = re.compile(rf"^#+\s+{ITEM.pattern}", flags=re.M)
FORMULA_TAG = re.compile(r"(\([A-Z]\d+\))\s*$", flags=re.M)
CITING = {".py", ".md", ".toml", ".sh"}


def item_labels(match: re.Match[str]) -> list[str]:
    section, step, scheme, first, last, extra = match.groups()
    if step:
        return [f"{section} step {step}"]
    if scheme:
        return [f"{section} #{scheme}"]
    if first:
        steps = [*range(int(first), int(last) + 1), *([int(extra)] if extra else [])]
        return [f"{section} step {k}" for k in steps]
    return [section]


def cited_labels(text: str) -> tuple[list[str], int]:
    """The labels ``text`` cites after ``docs/theory.md`` (a range ``A.2--A.7`` gives A.2 to A.7),
    and the number of mentions of the page followed by no label."""
    labels, unlabelled = [], 0
    for citation in CITATION.finditer(text):
        item = ITEM.match(text, citation.end())
        if item is None:
            unlabelled += 1
        previous, separator = None, None
        while item is not None:
            new = item_labels(item)
            ends = [re.fullmatch(r"([A-Z])\.(\d+)", label) for label in (previous, new[0]) if label]
            if separator == "--" and len(ends) == 2 and all(ends) and ends[0][1] == ends[1][1]:
                letter = ends[0][1]
                labels += [f"{letter}.{k}" for k in range(int(ends[0][2]) + 1, int(ends[1][2]))]
            labels += new
            previous = new[-1]
            sep = SEPARATOR.match(text, item.end())
            if sep is None:
                break
            separator = sep.group().strip()
            item = ITEM.match(text, sep.end())
    return labels, unlabelled


def theory_labels(text: str) -> set[str]:
    """The labels docs/theory.md defines: its headings' leading labels and its formula tags."""
    labels = {label for match in HEADING.finditer(text) for label in item_labels(match)}
    return labels | set(FORMULA_TAG.findall(text))


def missing_labels(text: str, defined: set[str]) -> list[str]:
    return [label for label in cited_labels(text)[0] if label not in defined]


def repository_files() -> list[Path]:
    """The files git tracks or would track (new files not ignored), or, without git, the project's
    source, test, benchmark, suite and documentation files."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
        paths = [ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):
        paths = [ROOT / "README.md"] + [path for top in ("src", "tests", "docs", "benchmarks", "suites")
                                        for path in (ROOT / top).rglob("*")]
    return sorted(path for path in paths if path.is_file() and "__pycache__" not in path.parts)


def test_no_file_points_to_notes_outside_the_repository() -> None:
    """The theory the code relies on lives in docs/theory.md; no file may cite the out-of-tree notes
    it was once kept in (their name is spelt in two parts so this file does not match itself)."""
    name = ("science" + ".md").encode()
    offenders = [str(path.relative_to(ROOT)) for path in repository_files() if name in path.read_bytes()]
    assert offenders == []


def test_every_cited_label_is_in_the_theory_page() -> None:
    defined = theory_labels(THEORY.read_text())
    missing, unlabelled = {}, {}
    for path in repository_files():
        if path.suffix not in CITING or path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        name = str(path.relative_to(ROOT))
        if wrong := missing_labels(text, defined):
            missing[name] = wrong
        if name.startswith("src/") and cited_labels(text)[1]:
            unlabelled[name] = cited_labels(text)[1]
    assert missing == {}, f"cited labels absent from docs/theory.md: {missing}"
    assert unlabelled == {}, f"docs/theory.md cited with no label: {unlabelled}"
    sources = [path for path in repository_files() if path.suffix == ".py" and "src" in path.parts]
    assert sum(len(cited_labels(path.read_text())[0]) for path in sources) >= 30  # the scan sees the citations


def test_the_theory_page_has_the_labels_the_code_relies_on() -> None:
    defined = theory_labels(THEORY.read_text())
    for label in ["§0.2", "A", "A.2", "A.4", "A.7", "B", "B.1", "B.3", "C", "C.2", "C.2 step 4", "C.2 step 7",
                  "(C1)", "D.1", "E.2", "E.3", "E.3 #1", "E.3 #2", "(E3)", "F.1", "F.6", "H.1"]:
        assert label in defined, label


def test_the_label_check_catches_a_wrong_label() -> None:
    """A citation of a section, step or formula the page does not have is reported; good ones are not."""
    defined = theory_labels(THEORY.read_text())
    page = "docs/" + "theory.md"  # not a citation of this file's own text
    text = (f"exact laws ({page} F.4, H.1), the kernel ({page} A.2--A.7 and F.6), the program ({page} C.2, "
            f"steps 1-3 and 6), the map ({page} (E3)); wrong: ({page} Z.9), ({page} C.2 step 9), "
            f"({page} E.3 #7), ({page} (C9)), ({page} F.6--F.9)")
    assert cited_labels(text)[0][:4] == ["F.4", "H.1", "A.2", "A.3"]
    assert missing_labels(text, defined) == ["Z.9", "C.2 step 9", "E.3 #7", "(C9)", "F.8", "F.9"]
    assert cited_labels(f"see {page} for the theory")[1] == 1
