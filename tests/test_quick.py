"""``--quick`` is quick for learned estimators too: :meth:`Suite.quick` cuts their training budgets
(each estimator's ``budget_params``, to its declared ``test_params``), leaves smaller budgets, other
parameters and the oracles alone, and the run says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scorebench.cli import main
from scorebench.estimate import estimate
from scorebench.estimators import ESTIMATORS
from scorebench.estimators.lipschitz import FAMILY_DEFAULTS
from scorebench.estimators.mlp_dsm import MLPDSM
from scorebench.estimators.ntk import NTK
from scorebench.suite import Suite, describe_quick_cuts, load_suite

ROOT = Path(__file__).resolve().parents[1]
#: ntk's declared budget (the cuts of the suite below: n_train 600 and iterations 300 are above it)
NTK_N, NTK_IT = NTK.test_params["n_train"], NTK.test_params["iterations"]
ORACLES = ("oracle", "noisy_oracle")
#: the built-in learned estimators and, per constructor variant, the parameters that select it
LEARNED = {
    "mlp_dsm": [{}], "ntk": [{}], "ntk_kernel": [{}], "convex": [{}], "memorising": [{}],
    "lipschitz": [{"family": "affine"}, {"family": "network"}],
}


def caps_of(name: str, params: dict[str, Any]) -> dict[str, int]:
    """The ``--quick`` budget as the class declares it: each budget parameter at its test value."""
    cls = ESTIMATORS.factory(name)
    small = cls.test_params_for(params)
    return {key: small[key] for key in cls.budget_params}


def check_quick_cuts(full: Suite, quick: Suite) -> None:
    """Every learned estimator of ``full`` runs in ``quick`` within its declared budget: every budget
    parameter that was above its test value is cut to it (named in ``quick.quick_cuts``), one at or
    below it stays, and every other parameter is unchanged; oracles are unchanged."""
    for label, spec in full.components["estimators"].items():
        qspec = quick.spec("estimators", label)
        if spec.name in ORACLES:
            assert qspec.params == spec.params and label not in quick.quick_cuts
            continue
        before = full.build("estimators", label).describe()
        after = quick.build("estimators", label).describe()
        caps = caps_of(spec.name, spec.params)
        assert caps, f"{spec.name} declares no budget"
        for key, cap in caps.items():
            assert after[key] == min(before[key], cap), (label, key, before[key], after[key])
            if before[key] > cap:
                assert quick.quick_cuts[label][key] == [before[key], cap]
        assert {k: v for k, v in after.items() if k not in caps} == {k: v for k, v in before.items() if k not in caps}
        assert set(quick.quick_cuts.get(label, {})) <= set(caps)
        assert any(after[k] < before[k] for k in caps), f"--quick cut nothing of {label}"


def test_quick_cuts_the_budget_of_every_learned_estimator_of_the_estimators_suite() -> None:
    full = load_suite(ROOT / "suites" / "estimators.toml")
    quick = full.quick()
    check_quick_cuts(full, quick)
    assert set(quick.quick_cuts) == set(full.components["estimators"]) - {"oracle"}
    small = MLPDSM.test_params
    assert quick.spec("estimators", "mlp_dsm").params == {"iterations": small["iterations"],
                                                          "n_train": small["n_train"]}
    assert quick.quick_cuts["mlp_dsm"] == {"iterations": [3000, small["iterations"]],
                                           "n_train": [5000, small["n_train"]]}
    # the other parameters stay; a default that is cut is added; lipschitz's budget is its family's
    affine = ESTIMATORS.factory("lipschitz").test_params_for({"family": "affine"})
    assert quick.spec("estimators", "lipschitz_affine").params == {
        "family": "affine", "iterations": affine["iterations"], "weighting": "noise", "n_train": affine["n_train"]}
    network = ESTIMATORS.factory("lipschitz").test_params_for({"family": "network"})
    assert quick.quick_cuts["lipschitz_net"] == {"iterations": [2000, network["iterations"]],
                                                 "n_train": [5000, network["n_train"]]}
    assert network["iterations"] != affine["iterations"]
    # the full suite is left alone, and a quick suite is its own quick version
    assert full.quick_cuts == {} and full.spec("estimators", "mlp_dsm").params["iterations"] == 3000
    again = quick.quick()
    assert again.quick_cuts == quick.quick_cuts and again.components == quick.components


def test_a_quick_that_leaves_the_estimators_alone_fails_the_check() -> None:
    """The check above has teeth: the old ``quick`` (grids only) does not pass it."""
    from dataclasses import replace

    full = load_suite(ROOT / "suites" / "estimators.toml")
    grids_only = replace(full, grids=[{**g, "steps": [min(g["steps"])], "n_samples": [min(g["n_samples"])],
                                       "seeds": g["seeds"][:2]} for g in full.grids])
    with pytest.raises(AssertionError):
        check_quick_cuts(full, grids_only)


def test_quick_follows_the_class_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget comes from the class: other test values give other cuts; a parameter outside
    ``budget_params`` is never cut, even where the test parameters set it lower."""
    monkeypatch.setattr(MLPDSM, "test_params", {"iterations": 77, "n_train": 555, "width": 8})
    quick = load_suite(ROOT / "suites" / "estimators.toml").quick()
    assert quick.spec("estimators", "mlp_dsm").params == {"iterations": 77, "n_train": 555}
    assert quick.quick_cuts["mlp_dsm"] == {"iterations": [3000, 77], "n_train": [5000, 555]}
    assert quick.build("estimators", "mlp_dsm").width == MLPDSM().width
    monkeypatch.setattr(MLPDSM, "budget_params", ("n_train",))
    assert MLPDSM.quick_params({}) == {"n_train": 555}


@pytest.mark.parametrize("name, params", [(n, p) for n, ps in LEARNED.items() for p in ps])
def test_every_learned_estimator_has_a_quick_budget_below_its_defaults(name: str, params: dict) -> None:
    cls = ESTIMATORS.factory(name)
    assert cls.budget_params, f"{name} declares no budget parameters"
    assert set(cls.budget_params) <= set(cls.test_params_for(params)), "a budget parameter without a test value"
    caps = caps_of(name, params)
    quick = cls.quick_params(params)
    assert quick == {**params, **caps}  # from the defaults, exactly the declared test values
    full, cut = cls(**params).describe(), cls(**quick).describe()
    assert caps and all(cut[k] == min(full[k], cap) for k, cap in caps.items())
    assert all(full[k] > cap for k, cap in caps.items()), "a quick budget above the default cuts nothing"
    # a budget already within the quick one stays, key for key
    small = {**params, **{k: max(1, cap // 2) for k, cap in caps.items()}}
    if name == "mlp_dsm":
        small["batch_size"] = 64
    if name == "lipschitz" and params["family"] == "network":
        small["batch_size"] = 64
    assert cls.quick_params(small) == small


def test_built_in_estimators_are_learned_or_oracles() -> None:
    """A new built-in estimator must say what --quick means for it (here and in its budget_params)."""
    built_in = {n for n in ESTIMATORS.names() if ESTIMATORS.factory(n).__module__.startswith("scorebench.")}
    assert built_in == set(LEARNED) | set(ORACLES)
    for name in ORACLES:
        assert ESTIMATORS.factory(name).quick_params({"eps": 0.3} if name == "noisy_oracle" else {}) == (
            {"eps": 0.3} if name == "noisy_oracle" else {})


def test_quick_params_cut_one_at_a_time_and_keep_what_the_estimator_refuses() -> None:
    cls = ESTIMATORS.factory("mlp_dsm")
    small = cls.test_params
    assert small["n_train"] < 4096
    # a minibatch larger than the quick training set: n_train stays, iterations are cut
    assert cls.quick_params({"batch_size": 4096}) == {"batch_size": 4096, "iterations": small["iterations"]}
    assert cls.quick_params({"iterations": 50}) == {"iterations": 50, "n_train": small["n_train"]}
    lip = ESTIMATORS.factory("lipschitz")
    # the family's own default iterations (20000 affine, 5000 network) are what is cut
    assert lip.quick_params({}) == lip.test_params_for({}) == lip.test_params_for({"family": "affine"})
    network = lip.test_params_for({"family": "network"})
    assert FAMILY_DEFAULTS["network"]["iterations"] > network["iterations"]
    assert lip.quick_params({"family": "network"}) == {"family": "network", **network}
    assert lip.quick_params({"family": "nope"}) == {"family": "nope"}
    assert describe_quick_cuts({}) == ""
    assert describe_quick_cuts({"a": {"iterations": [10, 5], "n_train": [4, 2]}, "b": {"n_train": [9, 3]}}) == (
        "--quick: training budgets cut: a iterations 10 -> 5, n_train 4 -> 2; b n_train 9 -> 3")


SUITE = """
[suite]
name = "quick-fits"
seed = 5
device = "cpu"

[targets.g2]
name = "gaussian"
dim = 2

[processes.vp]

[estimators.oracle]

[estimators.noisy]
name = "noisy_oracle"
eps = 0.2

[estimators.ntk]
name = "ntk"
width = 64
n_train = 600
iterations = 300

[estimators.small]
name = "ntk"
width = 64
n_train = 100
iterations = 20

[samplers.ei]
name = "exponential_integrator"

[metrics]
mean_error = {}

[[grid]]
steps = [4]
n_samples = [64]
seeds = [0]
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "quick.toml"
    path.write_text(SUITE)
    return path


def test_cells_keep_their_ids_unless_their_budget_is_cut(suite_file: Path) -> None:
    assert 100 <= NTK_N < 600 and 20 <= NTK_IT < 300  # the suite's ntk is above the budget, small within it
    full = load_suite(suite_file)
    quick = full.quick()
    ids = {c.estimator: c.cell_id for c in full.cells()}
    qids = {c.estimator: c.cell_id for c in quick.cells()}
    # steps and sample sizes are already the smallest: only the cut estimator's cell changes
    assert {e for e in ids if ids[e] == qids[e]} == {"oracle", "noisy", "small"}
    assert quick.quick_cuts == {"ntk": {"n_train": [600, NTK_N], "iterations": [300, NTK_IT]}}


def test_a_quick_run_names_and_records_the_cut_budgets(
    suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(suite_file), "--out", str(out), "--quick", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"--quick: training budgets cut: ntk n_train 600 -> {NTK_N}, iterations 300 -> {NTK_IT}" in printed
    assert "small" not in printed.split("--quick:")[1].splitlines()[0]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["quick"] is True and prov["quick_budgets"] == {"ntk": {"n_train": [600, NTK_N],
                                                                      "iterations": [300, NTK_IT]}}
    fits = {json.loads(line)["estimator"]: json.loads(line)["record"]
            for line in (out / "fits.jsonl").read_text().splitlines()}
    assert fits["ntk"]["extra"]["n_fit"] + fits["ntk"]["extra"]["n_val"] == NTK_N  # the cut training set
    assert fits["small"]["extra"]["n_fit"] + fits["small"]["extra"]["n_val"] == 100  # a smaller one stays
    assert fits["ntk"]["iterations"] <= NTK_IT

    # resuming with the same budgets finds everything done; with other quick budgets it refuses
    assert main(["run", str(suite_file), "--out", str(out), "--resume", "--quick", "--no-progress"]) == 0
    assert "0 run, 4 already done" in capsys.readouterr().out
    monkeypatch.setattr(NTK, "test_params", {**NTK.test_params, "iterations": 100})
    assert main(["run", str(suite_file), "--out", str(out), "--resume", "--quick", "--no-progress"]) == 2
    assert "--quick training budgets" in capsys.readouterr().err

    # a full run cuts nothing and says nothing about it
    assert main(["run", str(suite_file), "--out", str(tmp_path / "full"), "--no-progress"]) == 0
    assert "--quick" not in capsys.readouterr().out
    assert "quick_budgets" not in json.loads((tmp_path / "full" / "provenance.json").read_text())


def test_validate_quick_names_the_cuts_and_estimates_the_cut_fits(
    suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["validate", str(suite_file), "--quick", "--no-estimate"]) == 0
    assert f"--quick: training budgets cut: ntk n_train 600 -> {NTK_N}" in capsys.readouterr().out
    seen: list[tuple[int, int]] = []
    fit = NTK.fit

    def spy(self: NTK, *args: Any, **kwargs: Any) -> Any:
        seen.append((self.n_train, self.iterations))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(NTK, "fit", spy)
    estimate(load_suite(suite_file), "cpu", root=tmp_path, quick=True)
    assert sorted(seen) == [(100, 20), (NTK_N, NTK_IT)]
    seen.clear()
    estimate(load_suite(suite_file), "cpu", root=tmp_path, quick=False)
    assert sorted(seen) == [(100, 20), (600, 300)]
