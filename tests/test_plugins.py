"""Components from outside scorebench: module:Name and file.py:Name specs, and their provenance."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scorebench.plugins import PluginError, describe_plugin, load_object
from scorebench.results import read_results, read_sample_records
from scorebench.suite import SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]

MODULE = '''
import math
from scorebench.samplers import Sampler


class Euler(Sampler):
    """Euler--Maruyama, written outside scorebench."""

    noise_per_step = 1

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def step(self, score, process, x, t, t_next, noise):
        h = t - t_next
        g2 = float(process.g2(t))
        return x - h * (float(process.f(t)) * x - self.scale * g2 * score(x, t)) + math.sqrt(g2 * h) * noise[:, 0]


class NotASampler:
    pass
'''

SUITE = '''
[suite]
name = "outside"
device = "cpu"
[targets.g]
name = "gaussian"
[processes.ou]
[estimators.oracle]
[samplers.mine]
name = "{spec}"
[metrics]
exact_w2 = {{}}
[[grid]]
steps = [20]
n_samples = [100]
'''


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scorebench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_a_module_beside_the_user_needs_no_install(tmp_path: Path) -> None:
    """``module:Name`` imports from the current directory (as ``python -m`` does), in check-sampler
    and in suites; the run's provenance and samples.jsonl name the file and its sha256."""
    (tmp_path / "my_mod.py").write_text(MODULE)
    (tmp_path / "s.toml").write_text(SUITE.format(spec="my_mod:Euler"))
    check = cli("check-sampler", "my_mod:Euler", "--processes", "ou", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok   convergence" in check.stdout
    sha = hashlib.sha256((tmp_path / "my_mod.py").read_bytes()).hexdigest()
    assert f"sha256 {sha[:12]}, no installed distribution" in check.stdout
    run = cli("run", "s.toml", "--out", "out", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(read_results(tmp_path / "out")["sampler"]) == {"mine"}
    plugins = json.loads((tmp_path / "out" / "provenance.json").read_text())["plugins"]
    assert plugins["samplers.mine"]["sha256"] == sha
    assert plugins["samplers.mine"]["file"] == str((tmp_path / "my_mod.py").resolve())
    assert plugins["samplers.mine"]["spec"] == "my_mod:Euler" and plugins["samplers.mine"]["distribution"] is None
    records = read_sample_records(tmp_path / "out")
    assert len(records) == 1 and records[0]["plugins"]["samplers.mine"]["sha256"] == sha
    assert records[0]["nfe"] == 20 and records[0]["status"] == "ok"


def test_a_file_spec_is_found_beside_the_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "proposal"
    folder.mkdir()
    (folder / "mine.py").write_text(MODULE)
    (folder / "s.toml").write_text(SUITE.format(spec="mine.py:Euler"))
    monkeypatch.chdir(tmp_path)  # not the suite's folder
    suite = load_suite(folder / "s.toml")
    spec = suite.spec("samplers", "mine")
    assert spec.name == "mine.py:Euler" and spec.resolved == f"{(folder / 'mine.py').resolve()}:Euler"
    assert type(suite.build("samplers", "mine")).__name__ == "Euler"
    # the cell ids hash the spec as written, not where the file happens to lie
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "mine.py").write_text(MODULE)
    (other / "s.toml").write_text(SUITE.format(spec="mine.py:Euler"))
    assert [c.cell_id for c in load_suite(other / "s.toml").cells()] == [c.cell_id for c in suite.cells()]


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module_here:X", "no module named 'no_such_module_here' (searched the current directory"),
    ("my_mod:Nope", "module 'my_mod' has no attribute 'Nope'; it defines Euler, NotASampler, Sampler, math"),
    ("missing.py:X", "no file 'missing.py' (looked for"),
    ("my_mod:NotASampler", "built a NotASampler, not a scorebench Sampler"),
    ("my_mod", "unknown sampler 'my_mod'"),
])
def test_mistakes_name_the_key_and_what_went_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str,
                                                   message: str) -> None:
    (tmp_path / "my_mod.py").write_text(MODULE)
    (tmp_path / "s.toml").write_text(SUITE.format(spec=spec))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop("my_mod", None)
    with pytest.raises(SuiteError) as info:
        load_suite(tmp_path / "s.toml")
    assert "s.toml: samplers.mine" in str(info.value) and message in str(info.value)
    sys.modules.pop("my_mod", None)


def test_load_object_and_describe_plugin(tmp_path: Path) -> None:
    path = tmp_path / "thing.py"
    path.write_text(MODULE)
    cls = load_object(f"{path}:Euler")
    info = describe_plugin(cls(), f"{path}:Euler")
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and info["qualname"] == "Euler"
    import scorebench as sb

    assert describe_plugin(sb.get_sampler("ddpm")) is None  # scorebench's own components are not plugins
    with pytest.raises(PluginError, match=r"expected 'package\.module:Name'"):
        load_object("a:b:c")


EXACT_PLUGIN = '''
from scorebench.estimators import Estimator
from scorebench.estimators.base import require_exact_target
from scorebench.estimators.oracle import OracleScore


class MyOracle(Estimator):
    """An exact-score estimator written outside scorebench: it declares what it needs."""

    needs_exact_target = {needs}

    def fit(self, data, process, generator=None):
        return OracleScore(require_exact_target(data, "my_oracle"), process)
'''

EXACT_SUITE = '''
[suite]
name = "needs"
[targets.f]
name = "funnel"
dim = 2
[processes.vp]
[estimators.est]
name = "{spec}"
[samplers.em]
name = "euler_maruyama"
[metrics]
sliced_w2 = {{}}
[[grid]]
steps = [5]
n_samples = [100]
'''


@pytest.mark.parametrize("needs", [True, False])
def test_a_plugin_that_needs_exact_scores_is_refused_like_the_oracle(tmp_path: Path, needs: bool) -> None:
    """``scorebench validate`` refuses a plugin estimator that declares ``needs_exact_target`` on a
    sample-only target with the message the built-in oracle gets; without the declaration the
    suite validates (the refusal reads the declaration, not the name)."""
    (tmp_path / "my_est.py").write_text(EXACT_PLUGIN.format(needs=needs))
    (tmp_path / "plugin.toml").write_text(EXACT_SUITE.format(spec="my_est:MyOracle"))
    (tmp_path / "builtin.toml").write_text(EXACT_SUITE.format(spec="oracle"))
    plugin = cli("validate", "plugin.toml", "--no-estimate", cwd=tmp_path)
    builtin = cli("validate", "builtin.toml", "--no-estimate", cwd=tmp_path)
    assert builtin.returncode == 2, builtin.stdout + builtin.stderr
    if not needs:
        assert plugin.returncode == 0, plugin.stdout + plugin.stderr
        return
    assert plugin.returncode == 2, plugin.stdout + plugin.stderr
    tail = "needs exact scores, which target 'funnel' does not have; targets with exact scores: "
    for out, name in ((plugin, "myoracle"), (builtin, "oracle")):
        assert f"grid[0]: estimators.est x targets.f: estimator '{name}' {tail}" in out.stderr, out.stderr
        assert "gaussian, gaussian_unknown_mean, gmm" in out.stderr
