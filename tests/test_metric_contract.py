"""The metric contract: one frozen context, declared needs, and a runner that knows no metric kinds.

Metrics of a brand-new kind come in as plugins (an installed distribution's ``scorebench.metrics``
entry points, in a fresh interpreter), subclass :class:`~scorebench.metrics.Metric` directly and
implement only ``evaluate``/``floor`` and their declarations; ``scorebench run`` gives them rows,
``scorebench validate`` refuses them where their declarations say they cannot run, with the
built-ins' messages, and results that contradict the declarations are refused.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

import scorebench as sb
from scorebench.exact import GaussianLaw
from scorebench.metrics import (
    ExactW2,
    MeanError,
    Metric,
    MetricContext,
    MetricContractError,
    ScoreMSE,
    SlicedW2,
    TrajectoryScoreMSE,
)
from scorebench.results import read_results

PLUGIN = '''
import math

import torch

from scorebench.estimators.oracle import exact_score
from scorebench.metrics import Metric


class MyMeanError(Metric):
    """||mean(x) - mu||, written outside scorebench as a metric of its own kind."""

    kind = "centre"
    needs_moments = True
    bootstrappable = True

    def _error(self, x, target):
        mean, _ = target.moments()
        return float(torch.linalg.vector_norm(x.double().mean(0) - mean.to(x.device)))

    def evaluate(self, ctx):
        return [(math.nan, self._error(ctx.x, ctx.target))]

    def floor(self, ctx):
        return self._error(ctx.y2, ctx.target)


class MyTrajectoryError(Metric):
    """The score error along the sampler's trajectory at 3 evenly spaced steps (1000 particles)."""

    kind = "path"
    needs_marginals = {needs_marginals}
    needs_trajectory = True
    time_resolved = True

    def record_steps(self, steps):
        return {{max(1, round(steps * (k + 1) / 3)) for k in range(3)}}

    def record_particles(self):
        return 1000

    def evaluate(self, ctx):
        rows = []
        for t, x in ctx.states:
            s = max(t, ctx.process.t_min)
            with torch.no_grad():
                err = ctx.score.score(x, s) - exact_score(ctx.target, ctx.process, x, s)
            rows.append((t, float(err.double().pow(2).sum(1).mean())))
        return rows
'''

SUITE = '''
[suite]
name = "contract"
device = "cpu"
[targets.g]
name = "{target}"
dim = 2
[processes.vp]
[estimators.est]
name = "{estimator}"
[samplers.em]
name = "euler_maruyama"
[metrics]
my_mean_error = {{}}
my_traj = {{}}
mean_error = {{}}
score_mse_traj = {{ n_times = 3 }}
[[grid]]
steps = [12]
n_samples = [200]
seeds = [0, 1]
metrics = [{metrics}]
[[grid]]
steps = [12]
n_samples = [150]
seeds = [7]
metrics = [{metrics}]
'''

BUILTIN_FOR = {"my_mean_error": "mean_error", "my_traj": "score_mse_traj"}


def install(tmp_path: Path, needs_marginals: bool = True) -> dict[str, str]:
    """Write the plugin module and a distribution declaring its two metrics as ``scorebench.metrics``
    entry points into ``tmp_path/site``; the environment of an interpreter that has it installed."""
    site = tmp_path / "site"
    dist = site / "my_metrics-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "my_metrics.py").write_text(PLUGIN.format(needs_marginals=needs_marginals))
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-metrics\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[scorebench.metrics]\nmy_mean_error = my_metrics:MyMeanError\nmy_traj = my_metrics:MyTrajectoryError\n"
    )
    paths = [str(site), str(Path(sb.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scorebench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def write_suite(tmp_path: Path, metrics: list[str], target: str = "gaussian", estimator: str = "oracle",
                name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(SUITE.format(target=target, estimator=estimator, metrics=", ".join(f'"{m}"' for m in metrics)))
    return path


def test_a_metric_of_a_new_kind_runs_through_scorebench_run(tmp_path: Path) -> None:
    """Two plugin metrics subclass Metric directly (kinds the runner has never heard of): one
    single-valued with a floor and a bootstrap interval, one time-resolved on states the runner
    records because the metric asks.  Their rows carry the values the built-ins ``mean_error`` and
    ``score_mse_traj`` compute from the same samples and states, through their own code paths."""
    env = install(tmp_path)
    write_suite(tmp_path, ["my_mean_error", "my_traj", "mean_error", "score_mse_traj"])
    out = cli(env, tmp_path, "run", "s.toml", "--out", "out", "--no-progress")
    assert out.returncode == 0, out.stdout + out.stderr
    frame = read_results(tmp_path / "out")
    assert (frame["status"] == "ok").all(), frame.loc[frame["status"] != "ok", "message"].tolist()
    keys = ["cell_id", "seed", "t"]
    for mine, builtin in BUILTIN_FOR.items():
        a = frame[frame["metric"] == mine].sort_values(keys).reset_index(drop=True)
        b = frame[frame["metric"] == builtin].sort_values(keys).reset_index(drop=True)
        assert len(a) == len(b) > 0
        pd.testing.assert_series_equal(a["t"], b["t"], rtol=0, atol=0)
        pd.testing.assert_series_equal(a["value"], b["value"], rtol=1e-12, atol=1e-15)
        pd.testing.assert_series_equal(a["floor"], b["floor"], rtol=1e-12, atol=1e-15)
    mine = frame[frame["metric"] == "my_mean_error"]
    single = mine[mine["n_samples"] == 150]
    assert len(single) == 1 and single["ci_low"].iloc[0] < single["ci_high"].iloc[0]  # bootstrap interval
    assert mine["floor"].notna().all()
    traj = frame[frame["metric"] == "my_traj"]
    assert traj.groupby(["cell_id", "seed"]).size().eq(3).all() and traj["t"].notna().all()


@pytest.mark.parametrize("needs", [True, False])
def test_a_plugin_metric_that_needs_exact_marginals_is_refused_like_the_builtin(tmp_path: Path, needs: bool) -> None:
    """``scorebench validate`` refuses a plugin metric declaring ``needs_marginals`` on a sample-only
    target with the message the built-in ``score_mse_traj`` gets; without the declaration the same
    suite validates (the refusal reads the declaration, not the name or the kind)."""
    env = install(tmp_path, needs_marginals=needs)
    write_suite(tmp_path, ["my_traj"], target="funnel", estimator="mlp_dsm", name="plugin.toml")
    write_suite(tmp_path, ["score_mse_traj"], target="funnel", estimator="mlp_dsm", name="builtin.toml")
    plugin = cli(env, tmp_path, "validate", "plugin.toml", "--no-estimate")
    if not needs:
        assert plugin.returncode == 0, plugin.stdout + plugin.stderr
        return
    builtin = cli(env, tmp_path, "validate", "builtin.toml", "--no-estimate")
    assert builtin.returncode == 2, builtin.stdout + builtin.stderr
    assert plugin.returncode == 2, plugin.stdout + plugin.stderr
    tail = "needs the exact score, which target 'funnel' does not have; targets with exact scores: "
    for out, name in ((plugin, "my_traj"), (builtin, "score_mse_traj")):
        assert f"grid[0]: metrics.{name} x targets.g: metric '{name}' {tail}" in out.stderr, out.stderr
        assert "gaussian, gaussian_unknown_mean, gmm" in out.stderr


BROKEN = '''
import math

from scorebench.metrics import Metric


class TwoRows(Metric):
    """Not time-resolved, yet returns two rows."""

    def evaluate(self, ctx):
        return [(0.5, 1.0), (0.25, 2.0)]


class NoisyDeterministic(Metric):
    """Deterministic, yet reports a noise floor above 0."""

    deterministic = True

    def evaluate(self, ctx):
        return [(math.nan, 1.0)]

    def floor(self, ctx):
        return 0.5


class WordFloor(Metric):
    """Its floor is not a number."""

    def evaluate(self, ctx):
        return [(math.nan, 1.0)]

    def floor(self, ctx):
        return "small"


class Contradictory(Metric):
    """Deterministic and bootstrappable at once."""

    deterministic = True
    bootstrappable = True

    def evaluate(self, ctx):
        return [(math.nan, 1.0)]
'''

BROKEN_SUITE = '''
[suite]
name = "broken"
device = "cpu"
[targets.g]
name = "gaussian"
[processes.vp]
[estimators.oracle]
[samplers.em]
name = "euler_maruyama"
[metrics]
{metrics}
[[grid]]
steps = [5]
n_samples = [50]
seeds = [0, 1]
'''


def install_broken(tmp_path: Path) -> dict[str, str]:
    env = install(tmp_path)
    site = tmp_path / "site"
    (site / "broken.py").write_text(BROKEN)
    names = ("two_rows = broken:TwoRows\nnoisy_deterministic = broken:NoisyDeterministic\n"
             "word_floor = broken:WordFloor\ncontradictory = broken:Contradictory\n")
    dist = site / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[scorebench.metrics]\n{names}")
    return env


def test_results_that_contradict_the_declarations_are_refused(tmp_path: Path) -> None:
    """A metric whose evaluate or floor contradicts what it declares gets error rows naming the
    contradiction, for every seed; the run goes on (the built-in of the same cells is fine)."""
    env = install_broken(tmp_path)
    (tmp_path / "s.toml").write_text(BROKEN_SUITE.format(
        metrics="two_rows = {}\nnoisy_deterministic = {}\nword_floor = {}\nmean_error = {}"))
    out = cli(env, tmp_path, "run", "s.toml", "--out", "out", "--no-progress")
    assert out.returncode == 1, out.stdout + out.stderr
    frame = read_results(tmp_path / "out")
    expected = {
        "two_rows": "metric 'two_rows' is not time_resolved, so evaluate must return one row (nan, value), got 2 rows",
        "noisy_deterministic": "metric 'noisy_deterministic' declares deterministic (no sampling noise), so its "
                               "floor is 0, but floor returned 0.5",
        "word_floor": "metric 'word_floor': floor must return a real number, got 'small'",
    }
    for name, message in expected.items():
        bad = frame[frame["metric"] == name]
        assert len(bad) == 2 and (bad["status"] == "error").all() and bad["value"].isna().all(), bad
        assert bad["message"].str.contains(f"MetricContractError: {message}", regex=False).all(), bad["message"]
    assert (frame.loc[frame["metric"] == "mean_error", "status"] == "ok").all()


def test_contradictory_declarations_are_refused_by_validate(tmp_path: Path) -> None:
    """Deterministic and bootstrappable at once is refused before anything runs, at the metric's key."""
    env = install_broken(tmp_path)
    (tmp_path / "s.toml").write_text(BROKEN_SUITE.format(metrics="contradictory = {}"))
    out = cli(env, tmp_path, "validate", "s.toml", "--no-estimate")
    assert out.returncode == 2, out.stdout + out.stderr
    assert ("s.toml: metrics.contradictory: metric 'contradictory' declares deterministic and "
            "bootstrappable: a deterministic value has no sampling noise to bootstrap") in out.stderr, out.stderr


@pytest.mark.parametrize(("deterministic", "bootstrappable", "time_resolved", "ok"), [
    (True, True, False, False), (False, True, True, False), (True, False, False, True), (False, True, False, True),
    (True, False, True, True), (False, False, True, True),
])
def test_check_declarations(deterministic: bool, bootstrappable: bool, time_resolved: bool, ok: bool) -> None:
    class Declared(Metric):
        def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
            return []

    Declared.deterministic, Declared.bootstrappable = deterministic, bootstrappable  # type: ignore[misc]
    Declared.time_resolved = time_resolved  # type: ignore[misc]
    if ok:
        Declared().check_declarations()
    else:
        with pytest.raises(MetricContractError, match="declares"):
            Declared().check_declarations()


# -- the contract in-process -------------------------------------------------------------------


TARGET = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0], condition_number=4.0)
PROCESS = sb.get_process("vp")


def context(n: int = 300, seed: int = 0, **changes: object) -> MetricContext:
    gen = torch.Generator().manual_seed(seed)
    x = 1.1 * TARGET.sample(n, gen)
    y1, y2 = TARGET.sample(n, gen, dtype=torch.float64), TARGET.sample(n, gen, dtype=torch.float64)
    fields = {"x": x, "y1": y1, "y2": y2, "target": TARGET, "process": PROCESS, **changes}
    return MetricContext(**fields)  # type: ignore[arg-type]


def test_family_evaluate_and_floor_are_their_direct_calls() -> None:
    """Each built-in family's evaluate/floor is its ``__call__``/``compute`` on the context's
    fields: the numbers of a direct call, bit for bit."""
    ctx = context()
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    ctx = replace(ctx, generator=gen)
    sw = SlicedW2()
    assert sw.checked_rows(ctx)[0][1] == sw(ctx.x.double(), ctx.y1, gen())
    assert sw.checked_floor(ctx) == sw(ctx.y2, ctx.y1, gen())
    me = MeanError()
    mean, cov = TARGET.moments()
    assert me.checked_rows(ctx)[0][1] == me(ctx.x, mean, cov)
    assert me.checked_floor(ctx) == me(ctx.y2, mean, cov)
    score = sb.get_estimator("noisy_oracle", eps=0.3).fit(TARGET, PROCESS)
    sm = ScoreMSE(n_times=2)
    assert sm.checked_rows(replace(ctx, score=score)) == sm.compute(score, TARGET, PROCESS, 300, gen())
    assert math.isnan(sm.checked_floor(ctx))
    states = ((0.5, ctx.y1.float()), (0.1, ctx.y2.float()))
    tm = TrajectoryScoreMSE()
    assert tm.checked_rows(replace(ctx, score=score, states=states)) == tm.compute(score, TARGET, PROCESS,
                                                                                  list(states))
    sampler, oracle = sb.get_sampler("euler_maruyama"), sb.get_estimator("oracle").fit(TARGET, PROCESS)
    grid = sb.time_grid(PROCESS, 10)
    start = TARGET.marginal(PROCESS, PROCESS.T)
    exact = ExactW2()
    ectx = replace(ctx, score=oracle, sampler=sampler, grid=grid, start_law=start)
    assert exact.checked_rows(ectx)[0][1] == exact.compute(sampler, oracle, PROCESS, grid, TARGET,
                                                           init=GaussianLaw.of(start))
    assert exact.checked_rows(replace(ectx, start_law=None))[0][1] == exact.compute(sampler, oracle, PROCESS, grid,
                                                                                    TARGET)
    assert exact.checked_floor(ectx) == 0.0


def test_the_built_in_declarations() -> None:
    """What suite validation and the runner read of the built-ins: only sample, moment and mode
    metrics bootstrap, only mode metrics need a mixture target, only exact-law metrics are
    deterministic, score and regularity metrics are time-resolved."""
    for name in sb.METRICS.names():
        m = sb.METRICS.build(name)
        m.check_declarations()
        assert m.bootstrappable == (m.kind in ("sample", "moment", "mode")), name
        assert m.needs_mixture_target == (m.kind == "mode"), name
        assert m.deterministic == (m.kind == "exact") == m.needs_gaussian_target == m.needs_affine_sampler, name
        assert m.time_resolved == (m.kind in ("score", "trajectory", "regularity")), name
        assert m.needs_marginals == (m.kind in ("score", "trajectory", "exact", "regularity")), name
        assert m.needs_trajectory == (m.kind == "trajectory") == (m.record_particles() > 0), name


class _Rows(Metric):
    time_resolved = False

    def __init__(self, rows: object) -> None:
        self.rows = rows

    def evaluate(self, ctx: MetricContext) -> list[tuple[float, float]]:
        return self.rows  # type: ignore[return-value]


@pytest.mark.parametrize(("rows", "time_resolved", "message"), [
    (0.3, False, "evaluate must return a list of (t, value) pairs, got float"),
    ([(math.nan, "0.3")], False, "evaluate must return (t, value) pairs of real numbers"),
    ([(math.nan, True)], False, "evaluate must return (t, value) pairs of real numbers"),
    ([(math.nan, 1.0, 2.0)], False, "evaluate must return (t, value) pairs of real numbers"),
    ([(0.5, 1.0)], False, "is not time_resolved, so evaluate must return one row (nan, value), got t = 0.5"),
    ([], False, "got 0 rows"),
    ([(math.nan, 1.0)], True, "declares time_resolved, but evaluate returned a row with t = nan"),
])
def test_checked_rows_refuses_what_contradicts_the_declarations(rows: object, time_resolved: bool,
                                                                message: str) -> None:
    metric = _Rows(rows)
    metric.time_resolved = time_resolved  # type: ignore[misc]
    with pytest.raises(MetricContractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        metric.checked_rows(context(10))


def test_checked_rows_accepts_the_contract() -> None:
    """Real numbers of any kind (NumPy, one-element tensors) are accepted and returned as floats;
    a non-finite value goes through (the runner records it as an error row)."""
    import numpy as np

    rows = _Rows([(np.float64("nan"), torch.tensor(0.25))]).checked_rows(context(10))
    assert math.isnan(rows[0][0]) and rows[0][1] == 0.25 and type(rows[0][1]) is float
    timed = _Rows([(0.5, 1), (0.25, math.inf)])
    timed.time_resolved = True  # type: ignore[misc]
    assert timed.checked_rows(context(10)) == [(0.5, 1.0), (0.25, math.inf)]


def test_a_metric_without_evaluate_cannot_be_built() -> None:
    class NoEvaluate(Metric):
        pass

    with pytest.raises(TypeError, match="evaluate"):
        NoEvaluate()  # type: ignore[abstract]


def test_the_bootstrap_replaces_x_only() -> None:
    """``replace(ctx, x=xb)`` is how a bootstrap re-evaluates: the references and generator stay."""
    ctx = context()
    xb = ctx.x[torch.randint(0, 300, (300,), generator=torch.Generator().manual_seed(1))]
    moved = replace(ctx, x=xb)
    assert moved.y1 is ctx.y1 and moved.generator is ctx.generator and moved.x is xb
    with pytest.raises(AttributeError):
        ctx.x = xb  # type: ignore[misc]


# -- the target contract ---------------------------------------------------------------------


def test_gaussian_law_is_the_target_contract() -> None:
    """``Target.gaussian_law`` gives the exact law of a one-component target and of its marginals,
    ``None`` for mixtures and sample-only targets, and ``GaussianLaw.of`` reads only it."""
    law = TARGET.gaussian_law()
    assert law is not None
    assert torch.equal(law.mean, TARGET.mean()) and torch.equal(law.cov, TARGET.covariance())
    a, s2 = float(PROCESS.alpha(0.3)), float(PROCESS.sigma2(0.3))
    marginal = TARGET.marginal(PROCESS, 0.3).gaussian_law()
    assert torch.allclose(marginal.cov, a * a * TARGET.covariance() + s2 * torch.eye(2, dtype=torch.float64))
    assert sb.get_target("gmm", preset="ring8").gaussian_law() is None
    assert sb.get_target("funnel", dim=2).gaussian_law() is None
    with pytest.raises(ValueError, match="is not Gaussian"):
        GaussianLaw.of(sb.get_target("gmm", preset="ring8"))


NOT_GAUSSIAN = '''
from scorebench.targets import Gaussian


class Hidden(Gaussian):
    """A Gaussian that does not declare its Gaussian law."""

    def gaussian_law(self):
        return None
'''


def test_exact_law_metrics_read_the_declared_gaussian_law(tmp_path: Path) -> None:
    """A one-component Gaussian that declares no Gaussian law is refused for exact_w2 with the
    built-in's message (validation reads the declaration, not the class); the plain one validates."""
    (tmp_path / "hidden.py").write_text(NOT_GAUSSIAN)
    text = ('[suite]\nname = "x"\n[targets.g]\nname = "{name}"\n[processes.vp]\n[estimators.oracle]\n'
            '[samplers.em]\nname = "euler_maruyama"\n[metrics]\nexact_w2 = {{}}\n[[grid]]\nsteps = [5]\n'
            'n_samples = [10]\n')
    (tmp_path / "hidden.toml").write_text(text.format(name="hidden.py:Hidden"))
    (tmp_path / "plain.toml").write_text(text.format(name="gaussian"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(Path(sb.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")) if p)}
    hidden = cli(env, tmp_path, "validate", "hidden.toml", "--no-estimate")
    plain = cli(env, tmp_path, "validate", "plain.toml", "--no-estimate")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert hidden.returncode == 2
    assert ("grid[0]: metrics.exact_w2 x targets.g: exact-law metric 'exact_w2' needs a Gaussian target "
            "(gaussian, gaussian_unknown_mean)") in hidden.stderr, hidden.stderr
