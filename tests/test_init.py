"""Where chains start: ``init = "prior" | "exact"`` in suites, the runner, result tables and the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import scorebench as sb
from scorebench.exact import GaussianLaw, exact_output_law, gaussian_w2
from scorebench.report import build_report
from scorebench.results import read_results
from scorebench.runner import run_suite
from scorebench.samplers import SAMPLERS, Sampler
from scorebench.suite import SuiteError, load_suite

HEAD = """
[suite]
name = "starts"
device = "cpu"
[targets.g]
name = "gaussian"
dim = 3
mean = [1.0, -1.0, 0.5]
condition_number = 5.0
[targets.ring]
name = "gmm"
preset = "ring8"
[processes.vp]
[processes.ou]
T = 2.0  # a short horizon: p_T is visibly not the prior
[estimators.oracle]
[samplers.heun]
name = "pf_ode"
[samplers.em]
name = "euler_maruyama"
[metrics]
exact_w2 = { reference = "t_min" }
mean_error = {}
"""


def write(tmp_path: Path, grids: str, head: str = HEAD) -> Path:
    path = tmp_path / "starts.toml"
    path.write_text(head + grids)
    return path


def test_init_is_validated_with_messages(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"grid\[0\].init: unknown start 'posterior'; allowed: prior, exact"):
        load_suite(write(tmp_path, '[[grid]]\nsteps = [5]\nn_samples = [10]\ninit = "posterior"\n'))
    with pytest.raises(SuiteError, match=r"init x targets.f.*draws from p_T, which target 'funnel'"):
        load_suite(write(tmp_path, '[[grid]]\ntargets = ["f"]\nestimators = ["m"]\nsteps = [5]\n'
                                   'n_samples = [10]\ninit = "exact"\nmetrics = ["mean_error"]\n',
                         HEAD.replace("[processes.vp]", '[targets.f]\nname = "funnel"\n[processes.vp]')
                         .replace("[samplers.heun]", '[estimators.m]\nname = "mlp_dsm"\n[samplers.heun]')))
    with pytest.raises(SuiteError, match=r"init x samplers.jko.*gradient flow"):
        load_suite(write(tmp_path, '[[grid]]\nsamplers = ["jko"]\nsteps = [5]\nn_samples = [10]\ninit = "exact"\n'
                                   'metrics = ["mean_error"]\n',
                         HEAD.replace("[metrics]", '[samplers.jko]\nname = "jko_exact_gaussian"\n[metrics]')))


def test_prior_cells_keep_their_ids_and_exact_cells_are_new(tmp_path: Path) -> None:
    grid = '[[grid]]\ntargets = ["g"]\nsteps = [5]\nn_samples = [10]\nmetrics = ["mean_error"]\n'
    before = {(c.target, c.process, c.sampler): c.cell_id for c in load_suite(write(tmp_path, grid)).cells()}
    both = load_suite(write(tmp_path, grid + 'init = ["prior", "exact"]\n')).cells()
    prior = {(c.target, c.process, c.sampler): c.cell_id for c in both if c.init == "prior"}
    exact = {c.cell_id for c in both if c.init == "exact"}
    assert prior == before and len(exact) == len(before) and not exact & set(before.values())


class Still(Sampler):
    """Returns its input: the output is the initial state."""

    noise_per_step = 0

    def step(self, score, process, x, t, t_next, noise):  # type: ignore[no-untyped-def]
        return x + 0 * score(x, t)


@pytest.fixture(scope="module")
def starts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("starts")
    SAMPLERS.add("still_for_test", Still)
    try:
        suite = load_suite(write(tmp, """
[samplers.still]
name = "still_for_test"
[[grid]]
targets = ["g"]
samplers = ["heun", "em"]
steps = [16, 32, 64]
n_samples = [64]
init = ["prior", "exact"]
metrics = ["exact_w2"]
[[grid]]
targets = ["ring", "g"]
processes = ["ou"]
samplers = ["still", "em"]
steps = [3]
n_samples = [40000]
init = "exact"
seeds = [0, 1]
metrics = ["mean_error"]
"""))
        summary = run_suite(suite, tmp / "run", progress=False)
    finally:
        SAMPLERS._factories.pop("still_for_test")
    assert summary.exit_code == 0
    return tmp / "run", read_results(tmp / "run")


def test_exact_law_cells_start_from_the_exact_p_T(starts: tuple[Path, pd.DataFrame]) -> None:
    """The table's exact W2 is the exact law started from p_T (exact start) or the prior, measured to
    p_t_min, recomputed here from the library's pieces."""
    _, frame = starts
    target = sb.get_target("gaussian", dim=3, mean=[1.0, -1.0, 0.5], condition_number=5.0)
    rows = frame[frame["metric"] == "exact_w2"]
    assert set(rows["init"]) == {"prior", "exact"} and len(rows) == 24
    for r in rows[rows["steps"] == 32].itertuples():
        process = sb.get_process(r.process, **({"T": 2.0} if r.process == "ou" else {}))
        sampler = sb.get_sampler("pf_ode" if r.sampler == "heun" else "euler_maruyama")
        score = sb.get_estimator("oracle").fit(target, process)
        init = GaussianLaw.of(target.marginal(process, process.T)) if r.init == "exact" else None
        law = exact_output_law(sampler, score, process, int(r.steps), init=init)
        want = gaussian_w2(law, GaussianLaw.of(target.marginal(process, process.t_min)))
        assert r.value == pytest.approx(want, rel=1e-9)


def test_exact_draws_of_p_T_are_the_initial_particles(starts: tuple[Path, pd.DataFrame]) -> None:
    """A sampler that does not move its particles outputs its initial state: its mean error against
    p_T's mean is a z-score of exact draws; the target's own mean differs by far more."""
    _, frame = starts
    still = frame[(frame["sampler"] == "still") & (frame["metric"] == "mean_error")]
    process = sb.get_process("ou", T=2.0)
    for target_label, target in [("ring", sb.get_target("gmm", preset="ring8")),
                                 ("g", sb.get_target("gaussian", dim=3, mean=[1.0, -1.0, 0.5], condition_number=5.0))]:
        law = target.marginal(process, process.T)
        mean_T = law.mean()
        mean_0, cov_T = target.mean(), law.covariance()
        # mean_error is ||mean(x) - mean(target)||: for particles drawn from p_T it is ||mean_T - mean_0|| up to
        # the sampling error of the mean, of size sqrt(tr cov_T / n)
        expected = float((mean_T - mean_0).norm())
        spread = float(torch.trace(cov_T) / 40000) ** 0.5
        values = still[still["target"] == target_label]["value"]
        assert len(values) == 2 and ((values - expected).abs() < 5 * spread).all()
    # the samplers of a cell share their initial particles (common random numbers), across seeds they differ
    assert still.groupby("target")["value"].nunique().eq(2).all()


def test_orders_fit_exact_start_cells_and_say_so(starts: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """Heun from the prior levels off at the initialisation error, which the ODE never contracts; from
    exact draws of p_T its order is 2.  The report fits the exact-start cells and names the error."""
    run, frame = starts
    report = build_report([run], tmp_path / "report")
    orders = report.orders
    heun = orders[(orders["sampler"] == "heun") & (orders["metric"] == "exact_w2")]
    assert set(heun["init"]) == {"exact"}
    assert (heun["error"] == "discretisation (exact start)").all()
    for r in heun.itertuples():
        assert -2.2 < r.slope < -1.8, r
    prior_only = frame[frame["init"] == "prior"]
    prior_csv = tmp_path / "prior.csv"
    prior_only.to_csv(prior_csv, index=False)
    prior_orders = build_report([prior_csv], tmp_path / "prior").orders
    heun_prior = prior_orders[(prior_orders["sampler"] == "heun") & (prior_orders["process"] == "ou")]
    assert (heun_prior["error"] == "discretisation + initialisation (prior start)").all()
    heun_exact = heun[heun["process"] == "ou"]
    # the plateau at the initialisation error flattens the fitted slope
    assert float(heun_prior["slope"].iloc[0]) > float(heun_exact["slope"].iloc[0]) + 0.5
    text = (tmp_path / "report" / "report.md").read_text()
    assert "discretisation (exact start)" in text and "| error fitted |" in text
