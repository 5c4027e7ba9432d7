"""The exact-law paper suites (docs/theory.md H.1, H.2, H.9): suites/papers/weak_order.toml,
bruno_gaussian.toml and jko_contraction.toml load and validate, their claims name labels the
suites define, and the theory lines written into their claims are the ones the theory gives,
recomputed here from closed forms (a deliberately wrong line is caught)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from scorebench.cli import main
from scorebench.samplers.jko_exact_gaussian import jko_gaussian_step
from scorebench.suite import Suite, SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "suites" / "papers"
SUITES = ("weak_order", "bruno_gaussian", "jko_contraction")
#: label columns a claim may name, and the suite section that defines their labels


def claim(suite: Suite, claim_id: str) -> dict[str, Any]:
    (found,) = [c for c in suite.claims if c["id"] == claim_id]
    return found


def jko_line_errors(suite: Suite) -> list[str]:
    """Where the JKO claims' lines differ from the theory (docs/theory.md E.3).

    For each step size (claims ``jko-w2-contraction-h<h>`` and ``jko-kl-exponential-h<h>``), each
    label of ``x_values`` must run ``k`` uniform steps of one common size ``h = horizon / k``; the W2
    line is ``W2(rho_0, pi) (1 + h / lambda_max)^{-k}`` with ``rho_0 = N(0, I)`` and
    ``pi = p_{t_min}`` under OU, computed here coordinate-wise for the diagonal covariance
    (``W2^2 = sum_i m_i^2 + (1 - sqrt(lambda_i))^2``); the KL slope is ``-2 ln(1 + h / lambda_max)``.
    """
    (target,) = suite.components["targets"].values()
    t_min = suite.spec("processes", "ou").params.get("t_min", 0.001)
    decay = math.exp(-2 * t_min)
    lam = decay * np.diag(target.params["cov"]) + (1 - decay)
    mean = decay**0.5 * np.asarray(target.params["mean"])
    w2_0 = math.sqrt(float(np.sum(mean**2 + (1 - np.sqrt(lam)) ** 2)))
    steps_of = {g["samplers"][0]: g["steps"] for g in suite.grids}
    errors = []
    bounds = [c for c in suite.claims if c["id"].startswith("jko-w2-contraction-h")]
    for w2 in bounds:
        kl = claim(suite, w2["id"].replace("w2-contraction", "kl-exponential"))
        if kl["x_values"] != w2["x_values"]:
            errors.append(f"{kl['id']}: not the labels of {w2['id']}")
        sizes = set()
        for label, k in w2["x_values"].items():
            spec = suite.spec("samplers", label)
            if spec.name != "jko_exact_gaussian" or steps_of[label] != [k]:
                errors.append(f"{label}: not {k} steps of jko_exact_gaussian")
            sizes.add(round(spec.params["horizon"] / k, 12))
        if len(sizes) != 1:
            errors.append(f"{w2['id']}: step sizes differ across labels: {sorted(sizes)}")
            continue
        h = sizes.pop()
        rate = 1 + h / lam.max()
        line = w2["line"]
        if line["form"] != "geometric" or abs(line["coef"] - w2_0) > 1e-5 or abs(line["ratio"] - 1 / rate) > 1e-12:
            errors.append(f"{w2['id']}: line {line} is not coef {w2_0:.6f}, ratio {1 / rate}")
        if abs(kl["predicted"] + 2 * math.log(rate)) > 1e-12 or kl["scale"] != "semilogy":
            errors.append(f"{kl['id']}: slope {kl['predicted']} is not -2 ln(1 + h) = {-2 * math.log(rate)}")
    return errors if bounds else ["no jko-w2-contraction-h<h> claims"]


def bruno_line_errors(suite: Suite) -> list[str]:
    """Where the lines ``(gamma / 2) sqrt(d)`` of the Bruno claims differ from the theory: with
    ``gamma = (T - t_min) / N`` on the uniform grid, the line is ``(T - t_min) sqrt(d) / (2 N)``."""
    ou = suite.spec("processes", "ou").params
    span = ou["T"] - ou["t_min"]
    errors = []
    for c in suite.claims:
        if c["quantity"] != "bound":
            continue
        d = suite.spec("targets", c["where"]["target"]).params["dim"]
        expected = {"form": "power", "coef": span * math.sqrt(d) / 2, "exponent": -1.0}
        line = c["line"]
        if line["form"] != "power" or line["exponent"] != -1.0 or abs(line["coef"] - expected["coef"]) > 1e-5:
            errors.append(f"{c['id']}: line {line} is not {expected}")
    return errors


@pytest.mark.parametrize("name", SUITES)
def test_paper_suite_validates(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = PAPERS / f"{name}.toml"
    assert main(["validate", "--no-estimate", str(path)]) == 0
    assert f"suite 'paper-{name}'" in capsys.readouterr().out
    suite = load_suite(path)
    assert suite.claims, "a paper suite carries its claims"
    assert len({c["id"] for c in suite.claims}) == len(suite.claims)


def test_undefined_labels_are_caught(tmp_path: Path) -> None:
    """Loading the suite checks the claims' labels against the suite's (scorebench.claims)."""
    text = (PAPERS / "weak_order.toml").read_text().replace('sampler = "ei"', 'sampler = "heun"')
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SuiteError, match=r"claims\[1\]\.where\.sampler: unknown sampler label 'heun'"):
        load_suite(tmp_path / "s.toml")


def test_jko_lines_are_the_theory(tmp_path: Path) -> None:
    assert jko_line_errors(load_suite(PAPERS / "jko_contraction.toml")) == []
    text = (PAPERS / "jko_contraction.toml").read_text()
    for wrong in (text.replace("coef = 2.18851", "coef = 2.0", 1),
                  text.replace("horizon = 8.0", "horizon = 4.0"),
                  text.replace("predicted = -2.1972245773362196", "predicted = -1.0986122886681098")):
        assert wrong != text
        (tmp_path / "s.toml").write_text(wrong)
        assert jko_line_errors(load_suite(tmp_path / "s.toml"))


def test_jko_w2_line_is_the_exact_recursion_at_lambda_one() -> None:
    """Independent check of the line's premise: on the eigen-direction with lambda = 1 started at
    unit variance, (E3) keeps u = 1 and divides the mean by (1 + h), so that direction's W2 is
    exactly the line's rate (the bound is attained asymptotically)."""
    m, u, lam = (torch.tensor([v], dtype=torch.float64) for v in (0.7, 1.0, 1.0))
    for _ in range(5):
        m, u = jko_gaussian_step(m, u, lam, 0.5)
    assert float(u) == pytest.approx(1.0, abs=1e-12)
    assert float(m) == pytest.approx(0.7 / 1.5**5, rel=1e-12)


def test_bruno_lines_are_the_theory(tmp_path: Path) -> None:
    assert bruno_line_errors(load_suite(PAPERS / "bruno_gaussian.toml")) == []
    text = (PAPERS / "bruno_gaussian.toml").read_text()
    wrong = text.replace("T = 5.0", "T = 10.0")
    (tmp_path / "s.toml").write_text(wrong)
    assert len(bruno_line_errors(load_suite(tmp_path / "s.toml"))) == 3


def test_bruno_lower_line_holds_for_the_exact_variance() -> None:
    """The premise of the lower line: the EI variance's fixed point ``(e^g + 1) / (3 - e^g)``
    exceeds ``(1 + g / 2)^2`` for every step ``g`` of the suite, so ``sqrt(v) - 1 >= g / 2``;
    ``1 + g`` (the first-order value) would not do."""
    g = 4.999 / np.array([10, 20, 50, 100, 200, 500])
    v_star = (np.exp(g) + 1) / (3 - np.exp(g))
    assert np.all(np.sqrt(v_star) - 1 >= g / 2)
    assert np.all(np.sqrt(1 + g) - 1 < g / 2)
