"""The paper suites of Pedrotti et al. (docs/theory.md H.6), Song et al.'s predictor-corrector
(H.7) and Wang, He & Tao's VE schedules: each loads and validates, its claims name labels the
suite has, and the premises the claims rest on hold (matched NFE, the schedules' shapes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import scorebench as sb
from scorebench.suite import Suite, load_suite

from .conftest import gen

PAPERS = Path(__file__).resolve().parents[1] / "suites" / "papers"
SUITES = ("pedrotti", "song_pc", "wang_schedules")
LABEL_COLUMNS = ("target", "process", "estimator", "sampler", "time_grid", "init")


def column_values(suite: Suite) -> dict[str, set[Any]]:
    """The values each label column and ``steps`` take over the suite's cells."""
    cells = suite.cells()
    return {col: {getattr(c, col) for c in cells} for col in (*LABEL_COLUMNS, "steps")}


def check_claim_labels(suite: Suite, claim: dict[str, Any]) -> None:
    """Every label a claim names is a value of its column in the suite's cells."""
    values = column_values(suite)
    assert claim["metric"] in suite.metrics, claim["id"]
    for col, allowed in claim.get("where", {}).items():
        if col in values:
            wanted = allowed if isinstance(allowed, list) else [allowed]
            assert set(wanted) <= values[col], f"{claim['id']}: where.{col} = {wanted}, suite has {values[col]}"
    if "x_values" in claim:
        assert set(claim["x_values"]) >= values[claim["x"]] - _excluded(claim, values), claim["id"]
        assert set(claim["x_values"]) <= values[claim["x"]], f"{claim['id']}: x_values names labels not in the suite"
    for key in ("better", "worse", "first", "second"):
        if key in claim:
            assert claim[key] in values[claim["compare"]], f"{claim['id']}: {key} = {claim[key]!r} not a label"


def _excluded(claim: dict[str, Any], values: dict[str, set[Any]]) -> set[Any]:
    where = claim.get("where", {}).get(claim["x"])
    return set() if where is None else values[claim["x"]] - set(where if isinstance(where, list) else [where])


@pytest.mark.parametrize("name", SUITES)
def test_paper_suite_loads_validates_and_names_its_labels(name: str) -> None:
    suite = load_suite(PAPERS / f"{name}.toml")
    assert suite.name == f"paper-{name.replace('_', '-')}"
    assert suite.cells() and suite.quick().cells()
    assert suite.claims, "a paper suite carries its claims"
    ids = [c["id"] for c in suite.claims]
    assert len(ids) == len(set(ids))
    for claim in suite.claims:
        check_claim_labels(suite, claim)


def test_a_claim_with_a_misspelt_label_is_caught() -> None:
    suite = load_suite(PAPERS / "song_pc.toml")
    claim = {**suite.claims[0], "better": "pc_snr"}
    with pytest.raises(AssertionError, match="better"):
        check_claim_labels(suite, claim)


def test_song_pc_pairs_equal_score_evaluations() -> None:
    """The ordering matches pc at N steps with the predictor alone at 2N steps: both spend 2N
    score evaluations per particle (counted by running them)."""
    suite = load_suite(PAPERS / "song_pc.toml")
    steps = {g["samplers"][0]: g["steps"] for g in suite.grids}
    assert [2 * n for n in steps["pc"]] == steps["rd"]
    target = sb.get_target("gaussian", dim=2)
    for process_label in ("ve", "vp"):
        process = suite.build("processes", process_label)
        score = sb.get_estimator("oracle").fit(target, process)
        n = steps["pc"][0]
        pc = suite.build("samplers", "pc").sample(score, process, 64, n, gen(0))
        rd = suite.build("samplers", "rd").sample(score, process, 64, 2 * n, gen(0))
        assert pc.nfe == rd.nfe == 2 * n


def test_wang_schedules_compare_song_geometric_with_karras_rho7() -> None:
    """On the suite's VE process the ``uniform`` grid is geometric in sigma(t) (Song et al.) and
    the ``karras`` grid is evenly spaced in noise level^(1/7) (Karras et al.), same steps, same
    end points."""
    suite = load_suite(PAPERS / "wang_schedules.toml")
    ve = suite.build("processes", "ve")
    sigma = lambda t: torch.sqrt(ve.sigma2(t) + ve.sigma_min**2)  # noqa: E731  (Song's sigma(t))
    noise = lambda t: torch.sqrt(ve.sigma2(t))  # noqa: E731
    for steps in column_values(suite)["steps"]:
        geometric, karras = sb.time_grid(ve, steps, "uniform"), sb.time_grid(ve, steps, "karras")
        ratios = sigma(geometric[:-1]) / sigma(geometric[1:])
        torch.testing.assert_close(ratios, ratios[0].expand_as(ratios))
        root = noise(karras) ** (1 / 7)
        torch.testing.assert_close(root[:-1] - root[1:], (root[0] - root[-1]).expand(steps) / steps)
        assert math.isclose(geometric[0], karras[0]) and math.isclose(geometric[-1], karras[-1])
        assert not torch.allclose(geometric, karras)  # two different schedules
