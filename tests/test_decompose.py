"""Error decomposition (``[suite] decompose = true``): variant cells, common random numbers, exact
values against a closed form, learned scores on a mixture, validation and the 5 -> 6 migration."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from scorebench.estimators import ESTIMATORS
from scorebench.execute import Counts, Sampled, Workspace, execute
from scorebench.processes import time_grid
from scorebench.report import build_report
from scorebench.report.data import cell_means, decomposition
from scorebench.results import MIGRATIONS, read_fit_records, read_results
from scorebench.runner import run_suite
from scorebench.schema import CELL_COLUMNS, SCHEMA_VERSION
from scorebench.suite import ABLATIONS, Suite, SuiteError, load_suite

#: target N(mu, diag(lam)) and OU with a short horizon, so that every error source is visible
MU = (1.5, -0.5)
LAM = (0.3, 2.0)
T, T_MIN = 1.5, 1e-3
STEPS, FINE = 20, 300

GAUSSIAN = f"""
[suite]
name = "decomp"
device = "cpu"
dtype = "float64"
decompose = true
decompose_steps = {FINE}
[targets.g]
name = "gaussian"
dim = 2
mean = [{MU[0]}, {MU[1]}]
cov = [[{LAM[0]}, 0.0], [0.0, {LAM[1]}]]
[processes.ou]
T = {T}
t_min = {T_MIN}
[estimators.affine]
name = "lipschitz"
family = "affine"
iterations = 500
n_train = 200
[samplers.em]
name = "euler_maruyama"
[metrics]
exact_w2 = {{}}
[[grid]]
steps = [{STEPS}]
n_samples = [100]
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# the closed form: docs/theory.md F.4, written out per coordinate for OU (f = -1, g^2 = 2)
# ---------------------------------------------------------------------------------------------


def em_exact_w2(start: tuple[list[float], list[float]], score: str, steps: int, theta: list[float]) -> float:
    """Exact W2 to ``N(MU, diag(LAM))`` of Euler-Maruyama on OU from ``N(m0, diag(P0))``.

    Per coordinate, with the score ``s(x, t) = -a_t x + c_t`` one step from ``t`` to ``t - h`` is
    ``x' = (1 + h - 2 h a_t) x + 2 h c_t + sqrt(2 h) z``; the affine family ``kappa_t theta - rho_t x``
    has ``a_t = 1``, ``c_t = e^{-t} theta`` (``alpha_t^2 + sigma_t^2 = 1`` under OU), the exact score
    ``a_t = 1 / (e^{-2t} lam + 1 - e^{-2t})``, ``c_t = a_t e^{-t} mu``.
    """
    w2sq = 0.0
    for i in range(len(MU)):
        m, p = start[0][i], start[1][i]
        for k in range(steps):
            t = T - k * (T - T_MIN) / steps
            h = (T - T_MIN) / steps
            alpha = math.exp(-t)
            if score == "learned":
                a, c = 1.0, alpha * theta[i]
            else:
                a = 1.0 / (alpha**2 * LAM[i] + 1.0 - alpha**2)
                c = a * alpha * MU[i]
            A = 1.0 + h - 2.0 * h * a
            m, p = A * m + 2.0 * h * c, A * A * p + 2.0 * h
        w2sq += (m - MU[i]) ** 2 + (math.sqrt(p) - math.sqrt(LAM[i])) ** 2
    return math.sqrt(w2sq)


def closed_form(theta: list[float]) -> dict[str, float]:
    """The four rows' exact W2: the cell, and each variant."""
    prior = ([0.0, 0.0], [1.0, 1.0])
    a_T = math.exp(-T)
    exact = ([a_T * m for m in MU], [a_T**2 * lam + 1.0 - a_T**2 for lam in LAM])
    return {
        "none": em_exact_w2(prior, "learned", STEPS, theta),
        "exact_start": em_exact_w2(exact, "learned", STEPS, theta),
        "exact_score": em_exact_w2(prior, "exact", STEPS, theta),
        "fine_grid": em_exact_w2(prior, "learned", FINE, theta),
    }


def worst_relative_error(df: pd.DataFrame, theta: list[float]) -> float:
    expected = closed_form(theta)
    got = df.set_index("ablation")["value"]
    assert set(got.index) == set(expected)
    return max(abs(got[k] - v) / v for k, v in expected.items())


@pytest.fixture(scope="module")
def gaussian_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("gaussian")
    run_suite(load_suite(write(tmp, GAUSSIAN)), tmp / "run", progress=False)
    return tmp / "run"


@pytest.fixture(scope="module")
def gaussian_run(gaussian_dir: Path) -> tuple[pd.DataFrame, list[float]]:
    (fit,) = read_fit_records(gaussian_dir)  # one fit, shared by the cell and its exact_start, fine_grid variants
    return read_results(gaussian_dir), fit["record"]["extra"]["theta"]


def test_gaussian_decomposition_matches_the_closed_form(gaussian_run: tuple[pd.DataFrame, list[float]]) -> None:
    df, theta = gaussian_run
    assert sorted(df["ablation"]) == sorted(ABLATIONS) and df["exact"].all() and (df["floor"] == 0).all()
    assert worst_relative_error(df, theta) < 1e-6
    rows = df.set_index("ablation")
    assert rows.loc["exact_start", "init"] == "exact" and rows.loc["fine_grid", "steps"] == FINE
    assert (rows.drop(index="exact_start")["init"] == "prior").all()
    # every source matters here: removing any one of them lowers the error
    for ablation in ("exact_start", "exact_score", "fine_grid"):
        assert rows.loc[ablation, "value"] < rows.loc["none", "value"]


def test_the_report_stacks_the_parts(gaussian_dir: Path, gaussian_run: tuple[pd.DataFrame, list[float]],
                                     tmp_path: Path) -> None:
    expected = closed_form(gaussian_run[1])
    report = build_report([gaussian_dir], tmp_path)
    (row,) = pd.read_csv(tmp_path / "decomposition.csv").to_dict("records")
    assert (row["sampler"], row["steps"], row["init"], row["fine_steps"]) == ("em", STEPS, "prior", FINE)
    for ablation, part in (("exact_start", "init_part"), ("exact_score", "score_part"), ("fine_grid", "disc_part")):
        assert row[part] == pytest.approx(expected["none"] - expected[ablation], rel=1e-6)
    parts = row["init_part"] + row["score_part"] + row["disc_part"] + row["residual"]
    assert parts == pytest.approx(expected["none"], rel=1e-9)
    assert [r.file for r in report.figures if r.kind == "decomposition"] == ["decomposition-em.png"]
    assert (tmp_path / "decomposition-em.png").stat().st_size > 0
    # the heatmap shows the cell as the grid gives it, not a variant
    heat = (tmp_path / "report.md").read_text().split("## Error decomposition")[0]
    assert "fine_grid" not in heat and "exact_score" not in heat


def test_a_failed_variant_leaves_its_part_unknown_not_zero(gaussian_run: tuple[pd.DataFrame, list[float]]) -> None:
    """A variant that ran and failed has no value: its part and the residual are NaN, whereas a
    zero would silently move the whole score error into the residual."""
    df = gaussian_run[0].copy()
    failed = df["ablation"] == "exact_score"
    df.loc[failed, "status"], df.loc[failed, "value"] = "error", math.nan
    (row,) = decomposition(cell_means(df), df).to_dict("records")
    assert math.isnan(row["score_part"]) and math.isnan(row["residual"])
    assert row["init_part"] > 0 and row["disc_part"] > 0
    (intact,) = decomposition(cell_means(gaussian_run[0]), gaussian_run[0]).to_dict("records")
    assert intact["score_part"] > 0.5  # the score error dominates this cell (closed form: 0.60)


def test_a_variant_that_removes_nothing_fails_the_closed_form(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    variants = Suite.variants

    def exact_start_not_applied(self: Suite, parent, comp=None):
        return [replace(v, init=parent.init) if v.ablation == "exact_start" else v
                for v in variants(self, parent, comp)]

    monkeypatch.setattr(Suite, "variants", exact_start_not_applied)
    run_suite(load_suite(write(tmp_path, GAUSSIAN)), tmp_path / "run", progress=False)
    (fit,) = read_fit_records(tmp_path / "run")
    assert worst_relative_error(read_results(tmp_path / "run"), fit["record"]["extra"]["theta"]) > 1e-3


def test_variants_share_the_parents_generators(tmp_path: Path) -> None:
    """With the learned affine score, two Euler-Maruyama chains driven by the same step noise differ
    by ``x_N - x'_N = Phi (x_0 - x'_0)``, ``Phi = prod_k (1 + h - 2 h rho) = (1 - h)^N`` under OU.  So
    the cell's start, recovered from its output and its exact_start variant's, is the N(0, I) prior
    draw; were the step noise not shared, the recovered start would have variance of order 1/Phi^2."""
    suite = load_suite(write(tmp_path, GAUSSIAN.replace("n_samples = [100]", "n_samples = [4000]")))
    cells = {c.ablation: c for c in suite.cells()}
    ws = Workspace(suite, "cpu", "crn")

    def output(cell, seed: int = 0) -> torch.Tensor:
        sampled = execute(ws, cell, seed, {}, Counts(), [])
        assert isinstance(sampled, Sampled)
        return sampled.x

    h = (T - T_MIN) / STEPS
    phi = (1.0 - h) ** STEPS
    start = ws.exact_start(cells["exact_start"], 0)

    parent = output(cells["none"])

    def recovered_start(variant_output: torch.Tensor) -> torch.Tensor:
        return start + (parent - variant_output) / phi

    x0 = recovered_start(output(cells["exact_start"]))
    assert x0.mean(0).abs().max() < 0.1 and ((x0.var(0) > 0.9) & (x0.var(0) < 1.1)).all()
    # the same check on a chain with other step noise (seed 1's) fails
    assert (recovered_start(output(cells["exact_start"], seed=1)).var(0) > 5).all()


# ---------------------------------------------------------------------------------------------
# a learned score on the ring8 mixture
# ---------------------------------------------------------------------------------------------

RING = """
[suite]
name = "decomp-ring"
device = "cpu"
decompose = true
decompose_steps = 100
[targets.ring]
name = "gmm"
preset = "ring8"
[targets.circle]
name = "circle"
[processes.vp]
[estimators.mlp]
name = "mlp_dsm"
iterations = 200
n_train = 2000
[estimators.oracle]
[samplers.em]
name = "euler_maruyama"
[metrics]
sliced_w2 = {}
mmd = {}
[[grid]]
targets = ["ring", "circle"]
estimators = ["mlp"]
steps = [20]
n_samples = [500]
[[grid]]
targets = ["ring"]
estimators = ["oracle"]
steps = [20]
n_samples = [500]
"""


def test_ring8_with_a_learned_score(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, RING))
    run_suite(suite, tmp_path / "run", progress=False, bootstrap=20)
    df = read_results(tmp_path / "run")
    assert (df["status"] == "ok").all()
    # the circle has no exact marginals: its cell runs, without variants
    assert set(df[df["target"] == "circle"]["ablation"]) == {"none"}
    mlp = df[(df["target"] == "ring") & (df["estimator"] == "mlp")]
    assert sorted(set(mlp["ablation"])) == sorted(ABLATIONS)
    assert mlp["floor"].notna().all() and (mlp["ci_low"] <= mlp["ci_high"]).all() and not mlp["exact"].any()
    # the floor (two target samples of the cell's size and seed) is the parent's for every variant
    assert (mlp.groupby("metric")["floor"].nunique() == 1).all()
    assert (mlp[mlp["metric"] == "sliced_w2"]["floor"] > 0).all()
    # the oracle cell has no exact_score variant (nothing to swap) but the other two
    oracle = df[df["estimator"] == "oracle"]
    assert sorted(set(oracle["ablation"])) == ["exact_start", "fine_grid", "none"]
    # one fit per learned cell (the ring's serves its cell and its exact_start and fine_grid variants)
    assert len(read_fit_records(tmp_path / "run")) == 2
    # exact_score samples are the oracle's, driven by the parent's generators
    cells = {(c.estimator, c.ablation): c for c in suite.cells() if c.target == "ring"}
    ws = Workspace(suite, "cpu", "check")
    variant = execute(ws, cells["mlp", "exact_score"], 0, {}, Counts(), [])
    parent = execute(ws, cells["mlp", "none"], 0, {}, Counts(), [])
    oracle_cell = cells["oracle", "none"]
    target, process = ws.of(oracle_cell, "targets"), ws.of(oracle_cell, "processes")
    gen = ws.generator("sample", ws.spec(oracle_cell, "targets"), ws.spec(oracle_cell, "processes"),
                       ws.spec(cells["mlp", "none"], "estimators"), 500, 0)
    by_hand = ws.of(oracle_cell, "samplers").sample(ESTIMATORS.build("oracle").fit(target, process), process, 500,
                                                     time_grid(process, 20, "uniform"), gen, dtype=torch.float32)
    assert isinstance(variant, Sampled) and isinstance(parent, Sampled)
    torch.testing.assert_close(variant.x, by_hand.samples, rtol=0, atol=0)
    assert (variant.x - parent.x).abs().max() > 1e-3  # the learned score is not the oracle


# ---------------------------------------------------------------------------------------------
# validation, planning, migration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "message"), [
    (("decompose = true", "decompose = 1"), r"suite\.decompose: expected true or false"),
    (("decompose_steps = 300", "decompose_steps = 0"), r"suite\.decompose_steps: expected a positive integer"),
    (("decompose = true\n", ""), r"suite\.decompose_steps: sets the fine grid .* add decompose = true"),
])
def test_validation_messages(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(write(tmp_path, GAUSSIAN.replace(*edit)))


def test_a_decomposed_suite_without_ground_truth_is_refused(tmp_path: Path) -> None:
    text = RING.replace('targets = ["ring", "circle"]', 'targets = ["circle"]')
    text = text.split('[[grid]]\ntargets = ["ring"]')[0]  # the ring's oracle grid left out
    with pytest.raises(SuiteError, match=r"suite\.decompose: no target of the grids has exact marginals \(circle\)"):
        load_suite(write(tmp_path, text))


def test_variants_skip_what_changes_nothing_and_keep_plain_ids(tmp_path: Path) -> None:
    plain = load_suite(write(tmp_path, GAUSSIAN.replace("decompose = true\n", "").replace(
        f"decompose_steps = {FINE}\n", ""), "plain.toml"))
    suite = load_suite(write(tmp_path, GAUSSIAN.replace("steps = [20]", f"steps = [20, {FINE}]\ninit = "
                                                         '["prior", "exact"]')))
    cells = suite.cells()
    # a grid's own cells keep the ids they have without decompose
    assert cells[0].cell_id == plain.cells()[0].cell_id
    kinds = [(c.ablation, c.init, c.steps) for c in cells]
    assert len(set(c.cell_id for c in cells)) == len(cells)
    # exact-start cells get no exact_start variant and 300-step cells no fine_grid variant
    assert kinds.count(("exact_start", "exact", 20)) == 1 and kinds.count(("exact_start", "exact", FINE)) == 1
    assert kinds.count(("fine_grid", "prior", FINE)) == 1 and kinds.count(("fine_grid", "exact", FINE)) == 1
    assert kinds.count(("exact_score", "prior", 20)) == 1 and len(cells) == 4 + 2 + 4 + 2
    for cell in cells:
        assert suite.seeds_of(cell) == [0], cell


def test_migration_from_schema_5(tmp_path: Path, gaussian_run: tuple[pd.DataFrame, list[float]]) -> None:
    df, _ = gaussian_run
    assert SCHEMA_VERSION == 6 and "ablation" in CELL_COLUMNS
    v5 = df[df["ablation"] == "none"].drop(columns=["ablation"]).assign(schema_version=5)
    v5.to_csv(tmp_path / "results.csv", index=False)
    migrated = read_results(tmp_path)
    assert (migrated["ablation"] == "none").all() and (migrated["schema_version"] == 6).all()
    assert str(migrated["ablation"].dtype) == "string"
    pd.testing.assert_series_equal(migrated["value"], v5["value"].reset_index(drop=True))
    # without the 5 -> 6 step, a version-5 table cannot be read
    del MIGRATIONS[5]
    try:
        with pytest.raises(ValueError, match="no migration from schema version 5"):
            read_results(tmp_path)
    finally:
        from scorebench.results import _add_ablation

        MIGRATIONS[5] = _add_ablation
