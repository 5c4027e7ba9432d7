"""The paper suites as a whole: each loads and validates with its claims, the table of
docs/claims.md names every suite and claim that exists (and nothing else), and the exact-law suites'
claims hold on a real run while a deliberately wrong prediction fails it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scorebench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "suites" / "papers"
DOC = ROOT / "docs" / "claims.md"


def _documented() -> dict[str, list[str]]:
    """suite file -> claim ids, from the paper-suite table of docs/claims.md."""
    text = DOC.read_text().split("## The paper suites", 1)[1]
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| `([\w.]+\.toml)` \| ([^|]+) \|$", text, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(1, 12)), "the table numbers the eleven claims in order"
    return {suite: re.findall(r"`([\w-]+)`", ids) for _, suite, ids in rows}


def test_the_docs_table_names_every_paper_suite_and_claim() -> None:
    documented = _documented()
    files = {p.name: load_suite(p) for p in sorted(PAPERS.glob("*.toml"))}
    with_claims = {name: [c["id"] for c in s.claims] for name, s in files.items() if s.claims}
    assert documented == with_claims
    assert set(files) - set(with_claims) == {"decomposition.toml"}


def test_claim_ids_are_unique_across_the_paper_suites() -> None:
    """So that one table of every paper suite's runs names each claim once."""
    ids = [c["id"] for p in PAPERS.glob("*.toml") for c in load_suite(p).claims]
    assert len(ids) == len(set(ids))


def test_a_table_that_omits_a_claim_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = DOC.read_text().replace(", `ei-weak-order-1`", "")
    (tmp_path / "claims.md").write_text(wrong)
    monkeypatch.setattr(sys.modules[__name__], "DOC", tmp_path / "claims.md")
    with pytest.raises(AssertionError):
        test_the_docs_table_names_every_paper_suite_and_claim()


def _scorebench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scorebench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("name", ["jko_contraction", "mooney_lipschitz"])
def test_exact_law_paper_suites_hold_and_a_wrong_prediction_fails(name: str, tmp_path: Path) -> None:
    """JKO contraction and Mooney's 1/t are exact (closed-form laws and Hessians, no sampling
    noise): their claims hold on a real run.  The same run judged against a prediction off by a
    factor (slope -1 -> -1.5, contraction 1/(1+h) -> 1/(1+2h)) fails with exit 1."""
    run = tmp_path / name
    done = _scorebench("run", str(PAPERS / f"{name}.toml"), "--out", str(run))
    assert done.returncode == 0, done.stderr
    judged = _scorebench("claims", str(run), "--out", str(tmp_path / "claims"))
    assert judged.returncode == 0, judged.stdout + judged.stderr
    assert re.search(r"(\d+) claims: \1 holds, 0 fails, 0 inconclusive", judged.stdout), judged.stdout
    text = (PAPERS / f"{name}.toml").read_text()
    wrong = (text.replace("ratio = 0.6666666666666666", "ratio = 0.5") if name == "jko_contraction"
             else text.replace("predicted = -1.0", "predicted = -1.5", 1))
    assert wrong != text
    (tmp_path / "wrong.toml").write_text(wrong)
    judged = _scorebench("claims", str(run), "--claims", str(tmp_path / "wrong.toml"), "--out", str(tmp_path / "w"))
    assert judged.returncode == 1, judged.stdout + judged.stderr
    assert "**fails**" in judged.stdout
