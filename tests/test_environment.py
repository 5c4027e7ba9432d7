"""``scorebench.environment``: a leaf module (no import cycle between the tables and the timing
helpers), and what it reports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import scorebench
from scorebench import environment

SRC = Path(scorebench.__file__).parent


def scorebench_imports(path: Path) -> set[str]:
    """The scorebench modules a source file imports (relative or absolute, at any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("scorebench")):
            found.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("scorebench"))
    return found


def test_environment_is_a_leaf_and_the_tables_do_not_import_timing() -> None:
    assert scorebench_imports(SRC / "environment.py") == set()
    assert not any("timing" in m for m in scorebench_imports(SRC / "results.py"))
    # and the check sees an import where there is one
    assert ".environment" in scorebench_imports(SRC / "results.py")


def test_importing_the_tables_does_not_load_the_timing_helpers() -> None:
    code = "import sys, scorebench.results; print('scorebench.timing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old")
    environment.atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_versions_and_git() -> None:
    import torch

    assert torch.__version__.startswith(environment.package_version("torch"))
    assert environment.package_version("no-such-distribution-xyz") is None
    head = environment.git_output("rev-parse", "HEAD")
    assert head is None or len(head) == 40
