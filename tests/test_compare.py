"""``scorebench compare``: paired differences, intervals and verdicts on planted cases.

A tiny suite is run several times: unchanged (the same run twice), with a sampler made worse
under the same label (Heun's probability-flow ODE replaced by Euler's), with a noisier score
under the same label (``noisy_oracle`` eps 0.2 -> 0.6), and with nothing changed but the noise
(another suite seed: independent pairs; other seed numbers: no pairs at all).  Planted
regressions must be flagged worse with exit code 1, noise must never be.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import scorebench as sb
from scorebench.cli import main
from scorebench.compare import (
    BETTER,
    FAILING,
    NOT_COMPARED,
    SAME,
    WORSE,
    CompareError,
    Tolerance,
    compare,
    difference,
    judge,
    metric_versions,
)
from scorebench.exact import exact_output_law, gaussian_w2
from scorebench.results import read_results
from scorebench.runner import run_suite
from scorebench.suite import load_suite

SUITE = """
[suite]
name = "cmp"
seed = 3
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]
condition_number = 4.0

[targets.ring]
name = "gmm"
preset = "ring8"

[processes.vp]

[estimators.oracle]

[estimators.noisy]
name = "noisy_oracle"
eps = 0.2

[samplers.em]
name = "euler_maruyama"

[samplers.heun]
name = "pf_ode"
method = "heun"

[metrics]
sliced_w2 = {}
bures_w2 = {}
mean_error = {}
score_mse = { n_times = 2 }
exact_w2 = {}

[[grid]]
steps = [10]
n_samples = [300]
seeds = [0, 1, 2]
metrics = ["sliced_w2", "bures_w2", "mean_error", "score_mse"]

[[grid]]
targets = ["g2"]
estimators = ["oracle"]
steps = [10]
n_samples = [300]
seeds = [0, 1, 2]
metrics = ["exact_w2"]
"""

SAMPLE_METRICS = ("sliced_w2", "bures_w2", "mean_error")


def variant(**changes: str) -> str:
    text = SUITE
    for old, new in changes.values():
        assert old in text
        text = text.replace(old, new)
    return text


VARIANTS = {
    "base": SUITE,
    "again": SUITE,
    "euler": variant(m=('method = "heun"', 'method = "euler"')),
    "noisier": variant(e=("eps = 0.2", "eps = 0.6")),
    "seed4": variant(s=("seed = 3", "seed = 4")),
    "seed5": variant(s=("seed = 3", "seed = 5")),
    "other_seeds": SUITE.replace("seeds = [0, 1, 2]", "seeds = [10, 11, 12]"),
    "one": SUITE.replace("seeds = [0, 1, 2]", "seeds = [0]"),
    "one_seed4": variant(s=("seed = 3", "seed = 4")).replace("seeds = [0, 1, 2]", "seeds = [0]"),
    "one_noisier": variant(e=("eps = 0.2", "eps = 0.6")).replace("seeds = [0, 1, 2]", "seeds = [0]"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    out = {}
    for name, text in VARIANTS.items():
        suite_file = tmp / f"{name}.toml"
        suite_file.write_text(text)
        summary = run_suite(load_suite(suite_file), tmp / name, progress=False)
        assert summary.exit_code == 0
        out[name] = tmp / name
    return out


def cmp(runs: dict[str, Path], a: str, b: str, **options) -> pd.DataFrame:
    return compare(read_results(runs[a]), read_results(runs[b]), **options)


def rows(units: pd.DataFrame, **where: str) -> pd.DataFrame:
    mask = np.ones(len(units), dtype=bool)
    for col, value in where.items():
        mask &= (units[col] == value).to_numpy()
    return units[mask]


# ---------------------------------------------------------------------------------------
# the statistics against scipy, the verdict rule
# ---------------------------------------------------------------------------------------


def frame(seeds: list[int], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"seed": seeds, "value": values, "floor": math.nan, "ci_low": math.nan,
                         "ci_high": math.nan})


def test_intervals_are_scipys_paired_and_welch_intervals() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, generator=gen, dtype=torch.float64).numpy()
    b = a + 0.3 + 0.1 * torch.randn(5, generator=gen, dtype=torch.float64).numpy()
    paired = difference(frame([0, 1, 2, 3, 4], list(a)), frame([0, 1, 2, 3, 4], list(b)), level=0.95)
    ci = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert paired["method"] == "paired t" and paired["seeds"] == 5
    assert paired["diff"] - paired["half"] == pytest.approx(ci.low, rel=1e-12)
    assert paired["diff"] + paired["half"] == pytest.approx(ci.high, rel=1e-12)

    welch = difference(frame([0, 1, 2, 3, 4], list(a)), frame([5, 6, 7], list(b[:3])))  # default level 0.99
    ci = stats.ttest_ind(b[:3], a, equal_var=False).confidence_interval(0.99)
    assert welch["method"] == "Welch t"
    assert welch["diff"] - welch["half"] == pytest.approx(ci.low, rel=1e-12)
    assert welch["diff"] + welch["half"] == pytest.approx(ci.high, rel=1e-12)

    assert paired["spread"] == pytest.approx(math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2))
    # one seed a side: the sides' own 95% intervals combine as independent normals, rescaled to the level
    one_b = pd.DataFrame({"seed": [0], "value": [1.0], "floor": [0.1], "ci_low": [0.7], "ci_high": [1.3]})
    one_n = pd.DataFrame({"seed": [0], "value": [1.5], "floor": [0.1], "ci_low": [1.1], "ci_high": [1.9]})
    single = difference(one_b, one_n, level=0.95)
    assert single["method"] == "own CIs" and math.isnan(single["spread"])
    assert single["diff"] == pytest.approx(0.5) and single["half"] == pytest.approx(math.hypot(0.3, 0.4))
    z = stats.norm.ppf(0.995) / stats.norm.ppf(0.975)
    assert difference(one_b, one_n, level=0.99)["half"] == pytest.approx(z * math.hypot(0.3, 0.4))
    assert math.isnan(difference(frame([0], [1.0]), frame([0], [2.0]))["half"])


def test_verdict_needs_both_significance_and_tolerance() -> None:
    assert judge(0.5, 0.1, 0.2) == WORSE
    assert judge(-0.5, 0.1, 0.2) == BETTER
    assert judge(0.5, 0.6, 0.2) == SAME  # beyond tolerance but not significant
    assert judge(0.1, 0.01, 0.2) == SAME  # significant but within tolerance
    assert judge(0.5, math.nan, 0.2) == WORSE  # no interval: the tolerance decides
    assert judge(0.0, 0.0, 0.0) == SAME
    tol = Tolerance(rel_tol=0.1, exact_rel_tol=0.01, floor_factor=2.0, spread_factor=3.0, abs_tol=0.001)
    assert tol.of(1.0, 0.02, exact=False) == pytest.approx(0.1)
    assert tol.of(1.0, 0.2, exact=False) == pytest.approx(0.4)
    assert tol.of(1.0, 0.2, exact=False, spread=0.2) == pytest.approx(0.6)
    assert tol.of(1.0, 0.0, exact=True) == pytest.approx(0.01)
    assert tol.of(0.0, math.nan, exact=True, spread=math.nan) == pytest.approx(0.001)
    for bad in ({"rel_tol": -0.1}, {"floor_factor": math.inf}, {"level": 1.0}, {"abs_tol": "1"},
                {"spread_factor": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Tolerance(**bad)


def synthetic(values: list[float]) -> pd.DataFrame:
    """One cell, one metric, one row per seed, every row marked ``ok`` (whatever its value)."""
    cell = {"target": "g2", "process": "vp", "estimator": "oracle", "sampler": "em", "steps": 10,
            "time_grid": "uniform", "init": "prior", "ablation": "none", "n_samples": 300}
    return pd.DataFrame([{**cell, "cell_id": "c0", "metric": "sliced_w2", "t": math.nan, "seed": seed, "value": v,
                          "floor": 0.01, "ci_low": math.nan, "ci_high": math.nan, "status": "ok", "message": "",
                          "sample_s": 1.0, "fit_s": 0.0} for seed, v in enumerate(values)])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_value_marked_ok_is_a_failure_never_indistinguishable(bad: float) -> None:
    good = synthetic([0.10, 0.11, 0.12])
    broken = synthetic([0.10, bad, 0.12])
    c = compare(good, broken)
    (verdict,) = c.units["verdict"]
    assert verdict == WORSE and c.exit_code == 1
    assert "error in NEW (seed 1)" in c.units["note"][0] and "status ok" in c.units["note"][0]
    assert compare(broken, good).units["verdict"][0] == BETTER
    both = compare(synthetic([bad] * 3), synthetic([bad] * 3))
    assert both.units["verdict"][0] == FAILING and "failing on both sides" in both.summary()
    assert compare(good, good).units["verdict"][0] == SAME


def two_metrics(sinkhorn: list[float], sliced: list[float]) -> pd.DataFrame:
    """One cell with two metrics, one row per seed each, every row ``ok``."""
    frame = pd.concat([synthetic(sinkhorn).assign(metric="sinkhorn"), synthetic(sliced)], ignore_index=True)
    return frame


def test_a_metric_whose_version_changed_is_shown_not_judged_and_does_not_gate() -> None:
    base = two_metrics([0.10, 0.11, 0.12], [0.50, 0.51, 0.52])
    new = two_metrics([0.20, 0.21, 0.22], [0.50, 0.51, 0.52])  # sinkhorn twice as large, nothing else moved
    v1 = {"sinkhorn": "1", "sliced_w2": "1"}
    v2 = {"sinkhorn": "2", "sliced_w2": "1"}

    def verdict(c, metric: str) -> str:
        (v,) = c.units.loc[c.units["metric"] == metric, "verdict"]
        return v

    same = compare(base, new, base_versions=v1, new_versions=v1)
    assert verdict(same, "sinkhorn") == WORSE and same.exit_code == 1 and not same.version_changes
    changed = compare(base, new, base_versions=v1, new_versions=v2)
    row = changed.units[changed.units["metric"] == "sinkhorn"].iloc[0]
    assert row["verdict"] == NOT_COMPARED and row["note"] == "metric version changed (1 -> 2)"
    assert row["diff"] == pytest.approx(0.1)  # the numbers are still shown
    assert verdict(changed, "sliced_w2") == SAME and changed.exit_code == 0
    assert changed.counts()[NOT_COMPARED] == 1 and changed.counts()[WORSE] == 0
    summary = changed.summary()
    assert summary.startswith("scorebench compare: OK: 1 comparisons (0 worse")
    assert "1 not compared (sinkhorn: metric version changed (1 -> 2))" in summary
    text = changed.to_markdown()
    assert "- not compared: sinkhorn: metric version changed (1 -> 2)" in text
    assert "| not compared |" in text and "metrics whose version changed" in text
    # a version recorded on one side only (a table from before versions were recorded) is a change too
    one = compare(base, new, base_versions=None, new_versions=v2)
    assert set(one.units["verdict"]) == {NOT_COMPARED} and one.exit_code == 0
    assert "metric version changed (? -> 2)" in one.summary()
    # two bare tables record no versions: compared as before
    assert compare(base, new).exit_code == 1
    # a seed that fails in NEW is worse whatever the version: a failure is not a change of scale
    broken = new.copy()
    hit = (broken["metric"] == "sinkhorn") & (broken["seed"] == 1)
    broken.loc[hit, ["status", "message"]] = ["error", "boom"]
    failed = compare(base, broken, base_versions=v1, new_versions=v2)
    assert verdict(failed, "sinkhorn") == WORSE and failed.exit_code == 1
    assert "metric version changed (1 -> 2)" in failed.units["note"].iloc[0]


# ---------------------------------------------------------------------------------------
# planted cases on real runs
# ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_run_twice_is_indistinguishable(runs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    c = cmp(runs, "base", "again")
    assert len(c.units) == 42 and set(c.units["verdict"]) == {SAME}
    assert (c.units["diff"] == 0).all()  # same suite, seed and device: the same numbers
    assert set(c.units["method"]) == {"paired t"} and (c.units["seeds"] == 3).all()
    assert not c.only_base and not c.only_new and c.exit_code == 0
    assert main(["compare", str(runs["base"]), str(runs["again"])]) == 0
    out = capsys.readouterr().out
    assert "OK: 42 comparisons (0 worse, 0 better, 42 indistinguishable)" in out


@pytest.mark.slow
def test_a_sampler_made_worse_under_the_same_label_is_flagged(runs: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    c = cmp(runs, "base", "euler")
    units = c.units
    worse = rows(units, sampler="heun", estimator="oracle", target="g2", metric="exact_w2")
    assert list(worse["verdict"]) == [WORSE] and "spec changed" in worse["note"].iloc[0]
    # the difference is the one between the exact output laws of the two ODE integrators
    target, process = sb.get_target("gaussian", dim=2, mean=[1.0, -1.0], condition_number=4.0), sb.get_process("vp")
    score = sb.get_estimator("oracle").fit(target, process)
    grid = sb.time_grid(process, 10, "uniform")
    w2 = {m: gaussian_w2(exact_output_law(sb.get_sampler("pf_ode", method=m), score, process, grid),
                         sb.GaussianLaw.of(target)) for m in ("heun", "euler")}
    assert w2["euler"] > w2["heun"]  # first order against second order
    assert worse["diff"].iloc[0] == pytest.approx(float(w2["euler"] - w2["heun"]), rel=1e-4)
    # the rows of the untouched sampler are bit-identical: common random numbers leave out the sampler
    em = rows(units, sampler="em")
    assert len(em) == 21 and (em["diff"] == 0).all() and set(em["verdict"]) == {SAME}
    assert units.iloc[0]["verdict"] == WORSE  # worst first
    assert c.exit_code == 1
    report = tmp_path / "report.md"
    assert main(["compare", str(runs["base"]), str(runs["euler"]), "--out", str(report)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and str(report) in out
    text = report.read_text()
    first_row = next(line for line in text.splitlines() if line.startswith("| **worse"))
    assert "| heun |" in first_row and "| exact_w2 |" in first_row


@pytest.mark.slow
def test_a_noisier_score_is_flagged_and_metrics_select_what_gates(runs: dict[str, Path]) -> None:
    c = cmp(runs, "base", "noisier")
    units = c.units
    score = rows(units, estimator="noisy", metric="score_mse")
    assert len(score) == 8 and set(score["verdict"]) == {WORSE}
    # noisy_oracle's perturbation has pointwise norm eps: the score error is exactly eps^2
    assert np.allclose(score["diff"], 0.6**2 - 0.2**2, rtol=1e-4)
    for m in SAMPLE_METRICS:  # samples from a worse score are further from the target
        assert (rows(units, estimator="noisy", metric=m)["diff"] > 0).all()
    assert (rows(units, estimator="oracle")["diff"] == 0).all()
    assert c.exit_code == 1
    # exact_w2 (oracle only) did not change: tracking only it passes
    assert compare(read_results(runs["base"]), read_results(runs["noisier"]), metrics=["exact_w2"]).exit_code == 0
    assert main(["compare", str(runs["base"]), str(runs["noisier"]), "--metrics", "exact_w2"]) == 0
    assert main(["compare", str(runs["base"]), str(runs["noisier"]), "--metrics", "exact_w2,score_mse"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("other", ["seed4", "seed5", "other_seeds"])
def test_noise_alone_is_not_a_regression(runs: dict[str, Path], other: str) -> None:
    """Another suite seed draws independent noise for every cell (pairs by seed number stay
    valid, only less correlated); other seed numbers leave no pairs (Welch's interval)."""
    c = cmp(runs, "base", other)
    units = c.units
    assert set(units["verdict"]) == {SAME}, units[units["verdict"] != SAME].to_string()
    assert c.exit_code == 0
    assert set(units["method"]) == {"paired t" if other != "other_seeds" else "Welch t"}
    sample = units[units["metric"].isin(SAMPLE_METRICS)]
    # the noise is real: every sample metric moved, some by a good part of the tolerance
    assert (sample["diff"] != 0).all()
    assert (sample["diff"].abs() / sample["tol"]).max() > 0.3
    # exact laws and the exact score error do not depend on the random numbers
    assert (rows(units, metric="exact_w2")["diff"].abs() < 1e-9).all()
    assert (rows(units, estimator="oracle", metric="score_mse")["diff"] == 0).all()


@pytest.mark.slow
def test_single_seed_cells_fall_back_on_their_own_intervals(runs: dict[str, Path]) -> None:
    c = cmp(runs, "one", "one_seed4")
    sample = c.units[c.units["metric"].isin(SAMPLE_METRICS)]
    assert set(sample["method"]) == {"own CIs"} and sample["half"].gt(0).all()
    assert set(c.units["verdict"]) == {SAME} and c.exit_code == 0
    c = cmp(runs, "one", "one_noisier")
    assert set(rows(c.units, estimator="noisy", metric="score_mse")["verdict"]) == {WORSE}
    assert c.exit_code == 1


# ---------------------------------------------------------------------------------------
# status, missing cells, timing, bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_cell_that_fails_in_new_is_worse_and_a_fixed_one_better(runs: dict[str, Path]) -> None:
    base = read_results(runs["base"])
    broken = base.copy()
    hit = (broken["sampler"] == "heun") & (broken["target"] == "ring") & (broken["estimator"] == "oracle")
    hit &= broken["seed"] == 1
    broken.loc[hit, ["status", "message"]] = ["diverged", "output exploded"]
    broken.loc[hit, "value"] = math.nan
    c = compare(base, broken)
    bad = c.units[c.units["verdict"] == WORSE]
    assert len(bad) == 5 and set(bad["sampler"]) == {"heun"} and set(bad["target"]) == {"ring"}
    assert all("diverged in NEW (seed 1)" in note for note in bad["note"])
    assert c.exit_code == 1 and len(c.units) == 42
    fixed = compare(broken, base)
    assert (fixed.units["verdict"] == BETTER).sum() == 5 and fixed.exit_code == 0


@pytest.mark.slow
def test_missing_cells_are_listed_and_gate_only_when_required(runs: dict[str, Path], tmp_path: Path) -> None:
    base = read_results(runs["base"])
    fewer = base[~((base["sampler"] == "heun") & (base["target"] == "ring"))]
    for est in ("oracle", "noisy"):
        fewer = fewer[~((fewer["estimator"] == est) & (fewer["metric"] == "bures_w2") & (fewer["target"] == "g2")
                        & (fewer["sampler"] == "em"))]
    c = compare(base, fewer)
    assert len(c.only_base) == 2 and not c.only_new and c.exit_code == 0
    assert {m[-1] for m in c.metrics_only_base} == {"bures_w2"} and len(c.metrics_only_base) == 2
    text = c.to_markdown()
    assert "cells only in BASE (not run in NEW) (2):" in text and "ring/vp/oracle/heun steps=10" in text
    assert compare(base, fewer, require_all=True).exit_code == 1
    assert compare(fewer, base, require_all=True).exit_code == 0  # extra cells in NEW are fine
    path = tmp_path / "fewer.csv"
    fewer.to_csv(path, index=False)
    assert main(["compare", str(runs["base"]), str(path), "--require-all"]) == 1


@pytest.mark.slow
def test_timing_is_reported_and_gated_only_on_request(runs: dict[str, Path]) -> None:
    base = read_results(runs["base"])
    slow = base.copy()
    slow["sample_s"] = slow["sample_s"] * 3
    c = compare(base, slow)
    assert np.allclose(c.timing["sample_ratio"], 3.0) and c.exit_code == 0
    assert "sampling time NEW/BASE 3.00x" in c.summary()
    assert compare(base, slow, time_factor=1.5, time_min=0.0).exit_code == 1
    assert compare(base, slow, time_factor=5.0, time_min=0.0).exit_code == 0
    # times under time_min are clock noise and never gate
    assert compare(base, slow, time_factor=1.5, time_min=1e6).exit_code == 0


@pytest.mark.slow
def test_bad_input_exits_2_and_names_what_is_missing(runs: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", str(tmp_path / "nowhere"), str(runs["base"])]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(runs["base"]), str(tmp_path / "empty")]) == 2
    assert "no results.csv" in capsys.readouterr().err

    base = read_results(runs["base"])
    shifted = base.assign(steps=base["steps"] * 2)
    path = tmp_path / "shifted.csv"
    shifted.to_csv(path, index=False)
    assert main(["compare", str(runs["base"]), str(path)]) == 2
    err = capsys.readouterr().err
    assert "no cell in common" in err and "Only in BASE (8)" in err and "Only in NEW (8)" in err
    assert "g2/vp/oracle/em steps=10 uniform n=300" in err and "g2/vp/oracle/em steps=20 uniform n=300" in err
    with pytest.raises(CompareError, match="no cell in common"):
        compare(base, shifted)

    assert main(["compare", str(runs["base"]), str(runs["again"]), "--metrics", "w3"]) == 2
    assert "no metric 'w3'" in capsys.readouterr().err


@pytest.mark.slow
def test_versions_come_from_the_runs_provenance(runs: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """The noisier run, its metrics relabelled as a new version in its provenance: the worse rows
    are no longer judged, the report says why, and the command exits 0."""
    assert metric_versions(runs["base"]) == {m: "1" for m in (*SAMPLE_METRICS, "score_mse", "exact_w2")}
    relabelled = tmp_path / "noisier_v2"
    shutil.copytree(runs["noisier"], relabelled)
    path = relabelled / "provenance.json"
    info = json.loads(path.read_text())
    info["metric_versions"] = {m: "2" if m != "exact_w2" else v for m, v in info["metric_versions"].items()}
    path.write_text(json.dumps(info))
    assert main(["compare", str(runs["base"]), str(runs["noisier"])]) == 1
    capsys.readouterr()
    assert main(["compare", str(runs["base"]), str(relabelled)]) == 0
    out = capsys.readouterr().out
    assert "OK: 2 comparisons (0 worse, 0 better, 2 indistinguishable); 40 not compared (" in out  # exact_w2 left
    assert "score_mse: metric version changed (1 -> 2)" in out
    assert "| not compared |" in out and "exact_w2: metric version" not in out


def test_exactness_is_read_from_the_exact_column() -> None:
    """The exact tolerance applies to rows marked ``exact`` and only to them: the same 5% change of
    a noise-free value is worse when its rows say exact, indistinguishable under the noisy tolerance."""
    def law(value: float, exact: bool) -> pd.DataFrame:
        return synthetic([value] * 3).assign(floor=0.0, ci_low=value, ci_high=value, exact=exact)

    tol = Tolerance()
    assert tol.exact_rel_tol < 0.05 < tol.rel_tol
    assert compare(law(1.0, True), law(1.05, True)).units["verdict"][0] == WORSE
    assert compare(law(1.0, False), law(1.05, False)).units["verdict"][0] == SAME
    # one side not exact: the noisy tolerance (exactness is not assumed from a zero floor)
    assert compare(law(1.0, True), law(1.05, False)).units["verdict"][0] == SAME
