"""A proposed sampler against the baselines of one run: matching by steps, NFE and wall time, verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scorebench.cli import main
from scorebench.proposal import LOSS, TIE, WIN, ProposalError, Series, compare_proposal
from scorebench.results import COLUMNS

SEEDS = (0, 1, 2, 3)


def rows(sampler: str, nfe_per_step: int, steps: list[int], value, *, metric: str = "sliced_w2", floor: float = 0.01,
         target: str = "ring", status: dict | None = None) -> list[dict]:
    """Rows of one sampler; ``value(steps, nfe, seed)`` gives each value, ``sample_s`` is NFE / 1000."""
    out = []
    for s in steps:
        for seed in SEEDS:
            st = (status or {}).get((s, seed), "ok")
            out.append({
                "schema_version": 2, "run_id": "r", "suite": "p", "cell_id": f"{sampler}-{s}", "seed": seed,
                "target": target, "process": "vp", "estimator": "oracle", "sampler": sampler, "steps": s,
                "time_grid": "uniform", "init": "prior", "ablation": "none", "nfe": float(nfe_per_step * s),
                "n_samples": 500,
                "metric": metric, "t": math.nan, "value": value(s, nfe_per_step * s, seed) if st == "ok" else math.nan,
                "floor": floor, "ci_low": math.nan, "ci_high": math.nan, "status": st, "message": "",
                "fit_s": 0.0, "sample_s": nfe_per_step * s / 1000, "metric_s": 0.0, "peak_mem_bytes": 0.0,
                "device": "cpu", "exact": floor == 0, "host": "h",  # a zero floor here stands for an exact law
            })
    return out


def frame(*parts: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame([r for p in parts for r in p])
    return df[list(COLUMNS)]


def noise(seed: int) -> float:
    return 1.0 + 0.01 * (seed - 1.5)


def test_interpolation_at_matched_nfe_is_log_log_per_seed() -> None:
    """A baseline run at NFE 20 and 40 is read at NFE 30 by log-linear interpolation of each seed's value."""
    base = rows("em", 1, [20, 40], lambda s, k, seed: 2.0 / k * noise(seed))
    series = Series.of(pd.DataFrame(base))
    values, floor = series.at("nfe", 30.0)
    w = math.log(30 / 20) / math.log(40 / 20)
    for seed in SEEDS:
        v20, v40 = 2.0 / 20 * noise(seed), 2.0 / 40 * noise(seed)
        assert values[seed] == pytest.approx(math.exp((1 - w) * math.log(v20) + w * math.log(v40)), rel=1e-12)
        assert values[seed] == pytest.approx(2.0 / 30 * noise(seed), rel=1e-12)  # exact for a power law
    assert floor == pytest.approx(0.01)
    assert series.at("nfe", 20.0)[0] == {seed: 2.0 / 20 * noise(seed) for seed in SEEDS}
    assert series.at("nfe", 10.0) is None and series.at("nfe", 80.0) is None  # never extrapolated


def test_verdicts_against_the_best_baseline_at_matched_nfe() -> None:
    """em: error 2/NFE, ei: 1/NFE (the best); the proposal spends 2 NFE per step.  At a given NFE it is
    half of ei (a win), twice ei (a loss) or ei itself up to noise far below the floor (a tie)."""
    em = rows("em", 1, [10, 20, 40, 80], lambda s, k, seed: 2.0 / k * noise(seed))
    ei = rows("ei", 1, [10, 20, 40, 80], lambda s, k, seed: 1.0 / k * noise(seed))
    for factor, verdict in ((0.5, WIN), (2.0, LOSS), (1.0001, TIE)):
        mine = rows("mine", 2, [10, 15, 20], lambda s, k, seed, f=factor: f / k * noise(seed) * (1 + 1e-4 * seed))
        result = compare_proposal(frame(em, ei, mine), "mine")
        best = result.units[(result.units["match"] == "nfe") & result.units["best"]]
        assert list(best["baseline"]) == ["ei", "ei", "ei"] and list(best["nfe"]) == [20.0, 30.0, 40.0]
        assert set(best["verdict"]) == {verdict}, best[["nfe", "ratio", "diff", "tol", "verdict"]]
        assert np.allclose(best["ratio"], factor, rtol=1e-3)
        # sampling seconds are proportional to NFE here, so matching by time gives the same verdicts: the
        # timing slack of the matched-time tolerance does not swallow a factor 2
        timed = result.units[(result.units["match"] == "time") & result.units["best"]]
        assert len(timed) == 3 and set(timed["verdict"]) == {verdict}
        counts = result.counts("nfe")
        assert counts[verdict] == 3 and sum(counts.values()) == 3
        assert f"{counts[WIN]} wins, {counts[LOSS]} losses, {counts[TIE]} ties of 3" in result.headline()
        # at matched steps the proposal (2 NFE per step) meets each baseline at 10 and 20 steps
        steps = result.units[result.units["match"] == "steps"]
        assert sorted(set(zip(steps["baseline"], steps["steps"], strict=True))) == [
            ("ei", 10), ("ei", 20), ("em", 10), ("em", 20)]


def test_a_difference_inside_the_noise_floor_is_a_tie() -> None:
    ei = rows("ei", 1, [10, 20], lambda s, k, seed: 1.0 / k * noise(seed), floor=0.5)
    mine = rows("mine", 1, [10, 20], lambda s, k, seed: 0.5 / k * noise(seed), floor=0.5)
    result = compare_proposal(frame(ei, mine), "mine")
    assert set(result.units["verdict"]) == {TIE}


def test_failures_count_against_whoever_failed() -> None:
    ei = rows("ei", 1, [10, 20], lambda s, k, seed: 1.0 / k * noise(seed), status={(20, 1): "diverged"})
    mine = rows("mine", 1, [10, 20], lambda s, k, seed: 1.0 / k * noise(seed), status={(10, 2): "error"})
    u = compare_proposal(frame(ei, mine), "mine").units
    steps = u[u["match"] == "steps"].set_index("steps")
    assert steps.loc[10, "verdict"] == LOSS and "the proposal failed (seed 2)" in steps.loc[10, "note"]
    assert steps.loc[20, "verdict"] == TIE  # seed 1 of ei failed: the other three seeds are paired


def test_bad_labels_are_refused_with_the_labels_there_are() -> None:
    ei = rows("ei", 1, [10], lambda s, k, seed: 1.0)
    with pytest.raises(ProposalError, match="no sampler labelled 'nope' in the table; samplers: ei"):
        compare_proposal(frame(ei), "nope")
    with pytest.raises(ProposalError, match="other than the proposal"):
        compare_proposal(frame(ei), "ei")
    mine = rows("mine", 1, [10], lambda s, k, seed: 1.0)
    with pytest.raises(ProposalError, match="--baselines: no sampler labelled 'em'"):
        compare_proposal(frame(ei, mine), "mine", ["em"])


def test_the_command_exits_0_whatever_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ei = rows("ei", 1, [10, 20, 40], lambda s, k, seed: 1.0 / k * noise(seed))
    mine = rows("mine", 2, [10, 20], lambda s, k, seed: 3.0 / k * noise(seed))
    run = tmp_path / "run"
    run.mkdir()
    frame(ei, mine).to_csv(run / "results.csv", index=False)
    assert main(["compare", str(run), "--proposal", "mine", "--out", str(tmp_path / "c.md")]) == 0
    out = capsys.readouterr().out
    assert "proposal mine against the best of ei at matched NFE: 0 wins, 2 losses, 0 ties of 2" in out
    text = (tmp_path / "c.md").read_text()
    assert "## Against the best baseline at matched NFE" in text and "**loss**" in text
    assert main(["compare", str(run), "--proposal", "nope"]) == 2
    assert main(["compare", str(run), "--proposal", "mine", "--time-factor", "2"]) == 2
    assert main(["compare", str(run), "--baselines", "ei"]) == 2
    assert "--baselines needs --proposal" in capsys.readouterr().err


def test_a_relabelled_baseline_ties_with_itself_and_the_report_shows_both(tmp_path: Path) -> None:
    """A run whose proposal is Euler--Maruyama under another label: common random numbers make every
    paired difference with em exactly zero (ties, ratio 1), and the highlighted report draws the ratio
    figure; Heun's ODE as the proposal beats em on the exact W2 at matched NFE from exact starts."""
    from scorebench.report import build_report
    from scorebench.runner import run_suite
    from scorebench.suite import load_suite

    suite = tmp_path / "p.toml"
    suite.write_text("""
[suite]
name = "p"
device = "cpu"
[targets.g]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]
[targets.ring]
name = "gmm"
preset = "ring8"
[processes.vp]
[estimators.oracle]
[samplers.twin]
name = "euler_maruyama"
[samplers.em]
name = "euler_maruyama"
[samplers.heun]
name = "pf_ode"
[metrics]
sliced_w2 = {}
exact_w2 = { reference = "t_min" }
[[grid]]
targets = ["ring"]
steps = [8, 16, 32]
n_samples = [300]
seeds = [0, 1, 2]
metrics = ["sliced_w2"]
[[grid]]
targets = ["g"]
steps = [8, 16, 32, 64]
n_samples = [50]
init = "exact"
metrics = ["exact_w2"]
""")
    assert run_suite(load_suite(suite), tmp_path / "run", progress=False).exit_code == 0
    from scorebench.results import read_results

    frame = read_results(tmp_path / "run")
    # Measured wall times carry machine noise (on a loaded machine more than TIME_REL, and not even
    # monotone in the step count), so a faster copy may rightly win at matched wall time.  Give every
    # cell a cost proportional to its NFE, the twin's 10% higher: within TIME_REL, all ties.
    frame["sample_s"] = frame["nfe"] * 1e-3 * np.where(frame["sampler"] == "twin", 1.1, 1.0)
    twin = compare_proposal(frame, "twin", ["em"]).units
    assert (twin["verdict"] == TIE).all() and set(twin["match"]) == {"steps", "nfe", "time"}
    exact_cost = twin[twin["match"] != "time"]
    assert (exact_cost["diff"] == 0).all() and np.allclose(exact_cost["ratio"].dropna(), 1.0)
    heun = compare_proposal(frame, "heun", ["em"]).units
    exact = heun[(heun["metric"] == "exact_w2") & (heun["match"] == "nfe")]
    assert list(exact["nfe"]) == [16.0, 32.0, 64.0]  # 2 NFE per step, em run up to 64
    assert (exact["verdict"] == WIN).all()
    report = build_report([tmp_path / "run"], tmp_path / "report", highlight="heun")
    ratio = [r for r in report.figures if r.kind == "ratio"]
    assert {r.metric for r in ratio} == {"sliced_w2", "exact_w2"}
    text = report.markdown.read_text()
    assert "## heun against the baselines" in text and "proposal heun against the best of twin, em" in text
    with pytest.raises(Exception, match="--highlight: no sampler labelled 'nope'"):
        build_report([tmp_path / "run"], tmp_path / "r2", highlight="nope")
