"""Paper suites of claims H.3-H.5 (docs/theory.md): Han et al. overfitting and NTK fidelity, Zhang & Pilanci convexity.

Each suite loads and validates (its components build, its --quick version too), and every claim
names only labels and fields that the suite produces: the estimator labels of its grid, and the
record fields its estimators write (checked on a tiny fit of each estimator kind).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import scorebench as sb
from scorebench.suite import Suite, load_suite

from .conftest import gen

SUITES = Path(__file__).resolve().parents[1] / "suites" / "papers"
PAPER_SUITES = ("han_overfitting", "ntk_fidelity", "zhang_pilanci_convex")
QUANTITY_KEYS = {
    "slope": {"x", "predicted", "tolerance"},
    "bound": {"x", "line", "side"},
    "ordering": {"compare", "better", "worse"},
    "minimum": {"x"},
}


def claim_problems(suite: Suite) -> list[str]:
    """What in ``suite.claims`` names something the suite does not have (empty when consistent)."""
    used = {label for grid in suite.grids for label in grid["estimators"]}
    problems = []
    ids = [c.get("id") for c in suite.claims]
    if len(set(ids)) != len(ids):
        problems.append(f"duplicate ids {ids}")
    for claim in suite.claims:
        cid = claim.get("id")
        missing = {"id", "paper", "statement", "quantity"} - set(claim)
        missing |= QUANTITY_KEYS.get(claim.get("quantity"), {"<unknown quantity>"}) - set(claim)
        missing |= ({"field"} if claim.get("source") == "fits" else {"metric"}) - set(claim)
        if missing:
            problems.append(f"{cid}: missing {sorted(missing)}")
        named = set(claim.get("x_values", {}))
        where = claim.get("where", {}).get("estimator", [])
        named |= set([where] if isinstance(where, str) else where)
        named |= {claim[k] for k in ("better", "worse", "first", "second") if k in claim}
        if named - used:
            problems.append(f"{cid}: labels not in the grid: {sorted(named - used)}")
        if claim.get("source", "results") == "results" and claim.get("metric") not in suite.metrics:
            problems.append(f"{cid}: metric {claim.get('metric')!r} not computed")
    return problems


@pytest.mark.parametrize("name", PAPER_SUITES)
def test_paper_suite_loads_validates_and_its_claims_name_what_it_produces(name: str) -> None:
    suite = load_suite(SUITES / f"{name}.toml")
    assert suite.name == f"paper-{name}"
    assert suite.claims and claim_problems(suite) == []
    for label in {label for grid in suite.grids for label in grid["estimators"]}:
        suite.build("estimators", label)
    quick = suite.quick()
    assert quick.cells() and all(len(quick.seeds_of(c)) <= 2 for c in quick.cells())
    assert all(len(suite.seeds_of(c)) >= 5 for c in suite.cells())


def test_the_consistency_check_catches_a_misspelled_label_and_a_missing_key() -> None:
    suite = load_suite(SUITES / "ntk_fidelity.toml")
    bad = dict(suite.claims[0], x_values={**suite.claims[0]["x_values"], "ntk_m8192": 8192})
    assert any("ntk_m8192" in p for p in claim_problems(Suite(**{**vars(suite), "claims": [bad]})))
    no_field = {k: v for k, v in suite.claims[0].items() if k != "field"}
    assert any("field" in p for p in claim_problems(Suite(**{**vars(suite), "claims": [no_field]})))


def test_the_record_fields_the_claims_read_are_written() -> None:
    ring8, ou = sb.get_target("gmm", preset="ring8"), sb.get_process("ou")
    ntk = sb.get_estimator("ntk", width=16, n_train=20, iterations=3, stopping="none", kernel_gap=True)
    extra = ntk.fit(ring8, ou, gen(0)).record.extra
    bimodal = sb.get_target("gmm", means=[[-2.0], [2.0]], covs=[0.25, 0.25], weights=[0.5, 0.5])
    convex = sb.get_estimator("convex", n_train=10, n_times=1, iterations=20, adam_iterations=5)
    extra.update(convex.fit(bimodal, sb.get_process("vp"), gen(0)).record.extra)
    for name in ("ntk_fidelity", "zhang_pilanci_convex"):
        for claim in load_suite(SUITES / f"{name}.toml").claims:
            assert claim["field"].removeprefix("extra.") in extra, claim["id"]
