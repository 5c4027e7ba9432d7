"""Claims: every quantity on synthetic result tables with a known truth, every validation mistake,
and the command line and report on a tiny real run.

The synthetic tables have the real schema (:data:`scorebench.schema.COLUMNS`): rows are drawn from
a known law (a power law, a paired difference, a U-shape) with seeded noise, and each verdict is
checked against the truth of that law, each measured number against an independent computation
(``scipy.stats.linregress``, a hand-written paired t interval).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scorebench.claims import ClaimError, evaluate_claim, parse_claims
from scorebench.report import build_report
from scorebench.results import conform, read_results
from scorebench.schema import CELL_COLUMNS, COLUMNS, SCHEMA_VERSION
from scorebench.suite import SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]

STEPS = [10, 20, 40, 80, 160]
DEFAULTS = {"string": "x", "int64": 0, "float64": math.nan, "boolean": False}


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A result table of the current schema: each row is the defaults of every column overridden by ``rows``."""
    base = {c: DEFAULTS[d] for c, d in COLUMNS.items()}
    base.update({"target": "g", "process": "vp", "estimator": "oracle", "sampler": "em", "time_grid": "uniform",
                 "init": "prior", "ablation": "none", "n_samples": 100, "metric": "m", "status": "ok", "message": "",
                 "schema_version": SCHEMA_VERSION})
    full = [{**base, **r} for r in rows]
    for r in full:
        r["cell_id"] = "-".join(str(r[c]) for c in CELL_COLUMNS)
    return conform(pd.DataFrame(full))


def claim(**keys: Any) -> Any:
    """One parsed claim from its TOML keys (id, paper and statement filled in)."""
    return parse_claims([{"id": "c", "paper": "P", "statement": "S", "metric": "m", **keys}], "test.toml")[0]


def power_rows(slope: float, seeds: int, noise: float, sampler: str = "em", coef: float = 2.0,
               seed: int = 0, steps: list[int] = STEPS) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{"sampler": sampler, "steps": s, "seed": k, "value": coef * s**slope * math.exp(noise * rng.normal())}
            for s in steps for k in range(seeds)]


# ---------------------------------------------------------------------------------------
# slope
# ---------------------------------------------------------------------------------------

SLOPE = {"quantity": "slope", "x": "steps", "predicted": -1.0, "tolerance": 0.15, "resolution": 0.2}


def test_slope_holds_and_equals_an_independent_least_squares_fit() -> None:
    rows = power_rows(-1.0, seeds=5, noise=0.05)
    res = evaluate_claim(claim(**SLOPE), table(rows))
    ref = stats.linregress(np.log([r["steps"] for r in rows]), np.log([r["value"] for r in rows]))
    half = stats.t.ppf(0.975, len(rows) - 2) * ref.stderr
    assert res.verdict == "holds"
    assert res.groups[0].fit[0] == pytest.approx(ref.slope, abs=1e-12)
    assert res.row()["measured"] == f"{ref.slope:+.3f} ± {half:.3f}"
    assert res.row()["n_points"] == 25 and res.row()["seeds"] == 5


def test_a_true_slope_of_minus_one_half_fails_with_the_distance_to_the_interval() -> None:
    rows = power_rows(-0.5, seeds=5, noise=0.05)
    res = evaluate_claim(claim(**SLOPE), table(rows))
    ref = stats.linregress(np.log([r["steps"] for r in rows]), np.log([r["value"] for r in rows]))
    lo = ref.slope - stats.t.ppf(0.975, len(rows) - 2) * ref.stderr
    assert res.verdict == "fails"
    assert f"by {lo - (-1.0 + 0.15):.3f}" in res.row()["margin"]


def test_a_noisy_slope_with_two_seeds_is_inconclusive_and_says_how_many_seeds_would_settle_it() -> None:
    rows = power_rows(-1.0, seeds=2, noise=0.6, seed=3)
    res = evaluate_claim(claim(**SLOPE), table(rows))
    ref = stats.linregress(np.log([r["steps"] for r in rows]), np.log([r["value"] for r in rows]))
    half = stats.t.ppf(0.975, len(rows) - 2) * ref.stderr
    assert half > 0.2 and abs(ref.slope + 1) - half < 0.15  # the CI is wide and meets the band: undecided
    assert res.verdict == "inconclusive"
    assert f"about {math.ceil(2 * (half / 0.2) ** 2)} seeds" in res.row()["margin"]


def test_exact_rows_fit_a_power_law_exactly_and_a_wrong_prediction_fails() -> None:
    rows = [{**r, "exact": True} for r in power_rows(-1.0, seeds=1, noise=0.0)]
    assert evaluate_claim(claim(**SLOPE), table(rows)).verdict == "holds"
    assert evaluate_claim(claim(**{**SLOPE, "predicted": -2.0}), table(rows)).verdict == "fails"


def test_exact_rows_count_once_per_x_whatever_the_seeds() -> None:
    """Copies of an exact value over seeds add no information: the fit and its interval are those of
    one point per x (else three seeds would shrink the interval of a curved law for free)."""
    one = [{"steps": s, "value": 1 / s + 1 / s**2, "exact": True} for s in [2, 4, 8, 16, 32]]
    three = [{**r, "seed": k} for r in one for k in range(3)]
    a, b = evaluate_claim(claim(**SLOPE), table(one)), evaluate_claim(claim(**SLOPE), table(three))
    assert a.row()["measured"] == b.row()["measured"] and b.row()["seeds"] == 3
    ref = stats.linregress(np.log([2, 4, 8, 16, 32]), np.log([r["value"] for r in one]))
    assert b.row()["measured"] == f"{ref.slope:+.3f} ± {stats.t.ppf(0.975, 3) * ref.stderr:.3f}"


def test_exact_laws_that_differ_by_seed_keep_one_point_per_seed() -> None:
    """A learned score gives each seed its own exact law: those values are independent draws and the
    fit keeps every one of them (collapsing them to one mean per x would throw the seeds away)."""
    rng = np.random.default_rng(2)
    rows = [{"steps": s, "seed": k, "value": 2.0 / s * math.exp(0.05 * rng.normal()), "exact": True}
            for s in STEPS for k in range(5)]
    res = evaluate_claim(claim(**SLOPE), table(rows))
    ref = stats.linregress(np.log([r["steps"] for r in rows]), np.log([r["value"] for r in rows]))
    assert res.row()["n_points"] == len(rows)
    assert res.groups[0].fit[0] == pytest.approx(ref.slope, abs=1e-12)


def test_exact_rows_with_curvature_are_inconclusive_without_a_seeds_estimate() -> None:
    rows = [{"steps": s, "value": 1 / s + 1 / s**2, "exact": True} for s in [2, 4, 8, 16, 32]]
    res = evaluate_claim(claim(**{**SLOPE, "resolution": 0.01}), table(rows))
    assert res.verdict == "inconclusive" and "more seeds change nothing" in res.row()["margin"]
    # the asymptotic range alone is close to first order
    res = evaluate_claim(claim(**{**SLOPE, "x_range": [8, 32], "tolerance": 0.2, "resolution": 0.3}), table(rows))
    assert res.verdict == "holds"


def test_two_step_counts_cannot_give_a_slope_interval() -> None:
    rows = power_rows(-1.0, seeds=5, noise=0.05, steps=[10, 20])
    assert evaluate_claim(claim(**SLOPE), table(rows)).verdict == "inconclusive"


def test_semilogy_and_linear_scales_fit_what_they_say() -> None:
    rows = [{"steps": s, "value": 3.0 * 0.5**s, "exact": True} for s in [1, 2, 3, 4, 5]]
    res = evaluate_claim(claim(**{**SLOPE, "scale": "semilogy", "predicted": math.log(0.5)}), table(rows))
    assert res.verdict == "holds" and res.groups[0].fit[0] == pytest.approx(math.log(0.5))
    rows = [{"steps": s, "value": 1.0 + 0.25 * s, "exact": True} for s in [1, 2, 3, 4]]
    assert evaluate_claim(claim(**{**SLOPE, "scale": "linear", "predicted": 0.25}), table(rows)).verdict == "holds"


def test_over_measures_each_group_and_takes_the_worst() -> None:
    rows = power_rows(-1.0, 5, 0.05, "ei") + power_rows(-0.5, 5, 0.05, "em", seed=1)
    res = evaluate_claim(claim(**SLOPE, over=["sampler"]), table(rows))
    assert [g.verdict for g in res.groups] == ["holds", "fails"]
    assert res.verdict == "fails" and res.row()["measured"].startswith("sampler=em")


def test_rows_of_several_cells_at_one_x_are_refused_unless_chosen() -> None:
    rows = power_rows(-1.0, 5, 0.05, "ei") + power_rows(-1.0, 5, 0.05, "em")
    with pytest.raises(ClaimError, match=r"differ in sampler: ei, em.*'where'.*'over'"):
        evaluate_claim(claim(**SLOPE), table(rows))
    assert evaluate_claim(claim(**SLOPE, where={"sampler": "ei"}), table(rows)).verdict == "holds"


def test_time_resolved_rows_need_t_reduce_or_x_t() -> None:
    rows = [{**r, "t": t, "value": r["value"] * (1 + t)} for r in power_rows(-1.0, 3, 0.02) for t in (0.1, 0.5)]
    with pytest.raises(ClaimError, match="t_reduce"):
        evaluate_claim(claim(**SLOPE), table(rows))
    res = evaluate_claim(claim(**SLOPE, t_reduce="mean"), table(rows))
    assert res.verdict == "holds" and res.row()["n_points"] == 15
    worst = evaluate_claim(claim(**SLOPE, t_reduce="max"), table(rows)).groups[0].points
    assert worst["value"].tolist() == pytest.approx([r["value"] * 1.5 for r in power_rows(-1.0, 3, 0.02)])


def test_a_precise_slope_outside_the_tolerance_does_not_hold() -> None:
    """A slope of -0.78 +- 0.02 against -1 +- 0.15: its interval misses the band, it fails; one whose
    interval only grazes the band from outside (estimate outside the tolerance) is inconclusive,
    never holds."""
    res = evaluate_claim(claim(**SLOPE), table(power_rows(-0.78, 5, 0.01)))
    assert res.verdict == "fails"
    res = evaluate_claim(claim(**{**SLOPE, "resolution": 0.5}), table(power_rows(-0.72, 3, 0.25, seed=1)))
    slope, half = res.groups[0].fit[0], float(res.row()["measured"].split("±")[1])
    assert abs(slope + 1) > 0.15 and abs(slope + 1) - half <= 0.15  # outside the band, the CI reaches it
    assert res.verdict == "inconclusive" and "outside the tolerance" in res.row()["margin"]


def test_a_zero_tolerance_needs_its_resolution() -> None:
    with pytest.raises(ClaimError, match="resolution: required when tolerance = 0"):
        claim(**{**{k: v for k, v in SLOPE.items() if k != "resolution"}, "tolerance": 0.0})
    assert claim(**{**SLOPE, "tolerance": 0.0, "resolution": 0.1}).tolerance == 0.0


def test_rows_not_ok_are_counted_within_the_claims_own_rows() -> None:
    rows = [*power_rows(-1.0, 5, 0.05), {"steps": 5, "seed": 0, "value": math.nan, "status": "diverged",
                                         "sampler": "other"}]
    res = evaluate_claim(claim(**SLOPE, where={"sampler": "em"}), table(rows))
    assert res.verdict == "holds" and "not ok" not in res.row()["margin"]


def test_rows_not_ok_are_left_out_and_counted() -> None:
    rows = [*power_rows(-1.0, 5, 0.05), {"steps": 5, "seed": 0, "value": math.nan, "status": "diverged"}]
    res = evaluate_claim(claim(**SLOPE), table(rows))
    assert res.verdict == "holds" and "1 rows not ok left out" in res.row()["margin"]


def test_a_claim_the_runs_hold_no_rows_for_is_inconclusive_and_says_why() -> None:
    res = evaluate_claim(claim(**{**SLOPE, "metric": "w2"}), table(power_rows(-1.0, 2, 0.1)))
    assert res.verdict == "inconclusive" and res.row()["measured"] == "no data"
    assert "no result rows of metric 'w2'; metrics in the tables: m" in res.row()["margin"]


def test_a_quick_run_with_one_step_count_is_inconclusive_not_an_error() -> None:
    res = evaluate_claim(claim(**{**SLOPE, "x_range": [20, 1000]}), table(power_rows(-1.0, 2, 0.1, steps=[10])))
    assert res.verdict == "inconclusive" and "--quick" in res.row()["margin"]
    failed = [{**r, "status": "diverged", "value": math.nan} for r in power_rows(-1.0, 2, 0.1)]
    res = evaluate_claim(claim(**SLOPE), table(failed))
    assert res.verdict == "inconclusive" and "rows not ok left out" in res.row()["margin"]


def test_a_decomposed_suites_variant_rows_are_left_out_unless_where_names_the_ablation() -> None:
    """A variant (``ablation`` other than ``none``) shares its cell's labels; a claim reads the cells
    themselves, and a variant's rows only when ``where`` asks for them."""
    rows = power_rows(-1.0, 5, 0.05)
    variants = [{**r, "ablation": "exact_score", "value": r["value"] * r["steps"] ** 0.5} for r in rows]
    res = evaluate_claim(claim(**SLOPE), table(rows + variants))
    assert res.verdict == "holds" and res.row()["n_points"] == len(rows)
    res = evaluate_claim(claim(**SLOPE, where={"ablation": "exact_score"}), table(rows + variants))
    assert res.verdict == "fails" and res.groups[0].fit[0] == pytest.approx(-0.5, abs=0.05)


# ---------------------------------------------------------------------------------------
# bound
# ---------------------------------------------------------------------------------------

BOUND = {"quantity": "bound", "x": "steps", "line": {"form": "power", "coef": 1.0, "exponent": -1.0}}


def test_bound_respected_violated_and_undecided() -> None:
    assert evaluate_claim(claim(**BOUND), table(power_rows(-1.0, 5, 0.05, coef=0.5))).verdict == "holds"
    res = evaluate_claim(claim(**BOUND), table(power_rows(-1.0, 5, 0.05, coef=2.0)))
    assert res.verdict == "fails"
    curve = res.groups[0].curve
    ratio = (curve["lo"] * curve["x"]).max()  # lower end / line, line = 1/x
    assert f"lower end/line = {ratio:.3g}" in res.row()["margin"]
    # means just above the line, intervals reaching below it
    assert evaluate_claim(claim(**BOUND), table(power_rows(-1.0, 3, 0.5, coef=1.05, seed=4))).verdict == \
        "inconclusive"


def test_lower_bound_is_the_mirror_image_and_one_seed_uses_the_rows_own_interval() -> None:
    lower = {**BOUND, "side": "lower", "line": {"form": "geometric", "coef": 1.0, "ratio": 0.9}}
    rows = [{"steps": s, "value": 2 * 0.9**s, "ci_low": 1.5 * 0.9**s, "ci_high": 2.5 * 0.9**s} for s in STEPS]
    assert evaluate_claim(claim(**lower), table(rows)).verdict == "holds"
    rows = [{**r, "ci_low": 0.5 * r["value"]} for r in rows]  # the interval now reaches below the line
    assert evaluate_claim(claim(**lower), table(rows)).verdict == "holds"  # the upper end is still above
    rows = [{**r, "ci_high": 0.45 * r["value"]} for r in rows]  # wholly below: violated
    assert evaluate_claim(claim(**lower), table(rows)).verdict == "fails"


# ---------------------------------------------------------------------------------------
# ordering
# ---------------------------------------------------------------------------------------

ORDER = {"quantity": "ordering", "compare": "sampler", "better": "pc", "worse": "em", "match": "nfe"}


def paired(effect: float, seeds: int = 5, noise: float = 0.05, seed: int = 0) -> list[dict[str, Any]]:
    """pc and em at three NFEs with common random numbers: em = pc + effect (+ small noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for nfe, steps_em in ((20, 20), (40, 40), (80, 80)):
        for k in range(seeds):
            common = 1.0 / nfe + 0.2 * rng.normal() / nfe
            rows.append({"sampler": "pc", "steps": steps_em // 2, "nfe": nfe, "seed": k, "value": common})
            rows.append({"sampler": "em", "steps": steps_em, "nfe": nfe, "seed": k,
                         "value": common + effect / nfe + noise * rng.normal() / nfe})
    return rows


def test_ordering_right_reversed_and_indistinguishable() -> None:
    res = evaluate_claim(claim(**ORDER), table(paired(0.5)))
    assert res.verdict == "holds"
    # the smallest paired difference and its t interval, computed by hand
    rows = pd.DataFrame(paired(0.5))
    d = (rows[rows.sampler == "em"].set_index(["nfe", "seed"])["value"]
         - rows[rows.sampler == "pc"].set_index(["nfe", "seed"])["value"]).groupby("nfe")
    lows = d.mean() - stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert res.groups[0].curve["lo"].to_numpy() == pytest.approx(lows.to_numpy())
    assert evaluate_claim(claim(**ORDER), table(paired(-0.5))).verdict == "fails"
    assert evaluate_claim(claim(**ORDER), table(paired(0.0, noise=0.5))).verdict == "inconclusive"


def test_exact_values_equal_up_to_rounding_are_a_tie_not_an_ordering() -> None:
    """Two exact laws 1e-15 apart differ by rounding only: neither is better (inconclusive); 1e-6
    apart is a real difference of exact values, and decides."""
    base = [{"sampler": "pc", "nfe": 20, "value": 0.5, "exact": True}]
    tie = [*base, {"sampler": "em", "nfe": 20, "steps": 20, "value": 0.5 + 1e-15, "exact": True}]
    assert evaluate_claim(claim(**ORDER), table(tie)).verdict == "inconclusive"
    real = [*base, {"sampler": "em", "nfe": 20, "steps": 20, "value": 0.5 + 1e-6, "exact": True}]
    assert evaluate_claim(claim(**ORDER), table(real)).verdict == "holds"


def test_an_inconclusive_bound_names_where_the_mean_crosses() -> None:
    rows = [{"steps": s, "seed": k, "value": v} for s, vals in ((10, [0.01, 0.02, 0.03]), (100, [-0.5, 0.9, 0.3]))
            for k, v in enumerate(vals)]
    res = evaluate_claim(claim(quantity="bound", x="steps", line={"form": "constant", "value": 0.1}), table(rows))
    assert res.verdict == "inconclusive" and "at steps=100" in res.row()["measured"]


def test_ordering_without_match_mixes_cells_and_is_refused() -> None:
    with pytest.raises(ClaimError, match="'match'"):
        evaluate_claim(claim(**{k: v for k, v in ORDER.items() if k != "match"}), table(paired(0.5)))


def test_ordering_with_one_seed_uses_the_rows_own_intervals() -> None:
    rows = [{"sampler": "pc", "nfe": 20, "value": 1.0, "ci_low": 0.9, "ci_high": 1.1},
            {"sampler": "em", "nfe": 20, "steps": 20, "value": 1.5, "ci_low": 1.4, "ci_high": 1.6}]
    res = evaluate_claim(claim(**ORDER), table(rows))
    assert res.verdict == "holds"
    assert res.groups[0].curve["lo"].iloc[0] == pytest.approx(0.5 - math.hypot(0.1, 0.1))
    rows[1].update(value=1.1, ci_low=1.0, ci_high=1.2)  # 0.1 apart, half-width 0.14: undecided
    assert evaluate_claim(claim(**ORDER), table(rows)).verdict == "inconclusive"


# ---------------------------------------------------------------------------------------
# crossover
# ---------------------------------------------------------------------------------------

CROSS = {"quantity": "crossover", "x": "steps", "compare": "time_grid", "first": "geometric", "second": "karras"}


def crossing(sign: float, seeds: int = 4) -> list[dict[str, Any]]:
    """karras - geometric = sign * 0.5 (1 - steps / 50), paired over seeds with small noise."""
    rng = np.random.default_rng(1)
    rows = []
    for s in STEPS:
        for k in range(seeds):
            base = 1.0 + 0.3 * rng.normal()
            rows.append({"time_grid": "geometric", "steps": s, "seed": k, "value": base})
            rows.append({"time_grid": "karras", "steps": s, "seed": k,
                         "value": base + sign * 0.5 * (1 - s / 50) + 0.01 * rng.normal()})
    return rows


def test_crossover_present_absent_and_reversed() -> None:
    res = evaluate_claim(claim(**CROSS), table(crossing(1.0)))
    assert res.verdict == "holds"
    d = res.groups[0].curve.set_index("x")["mean"]
    x_star = math.exp(math.log(40) + d[40] / (d[40] - d[80]) * math.log(2))  # the sign change, in log steps
    assert f"≈ {x_star:.4g}" in res.row()["measured"] and 45 < x_star < 50
    assert res.groups[0].crossing == pytest.approx(x_star)
    rev = evaluate_claim(claim(**CROSS), table(crossing(-1.0)))
    assert rev.verdict == "fails" and "reverse" in rev.row()["margin"]
    absent = [r for r in crossing(1.0) if r["steps"] <= 40]  # geometric better at every step count
    res = evaluate_claim(claim(**CROSS), table(absent))
    assert res.verdict == "fails" and "better at every steps" in res.row()["margin"]


# ---------------------------------------------------------------------------------------
# minimum
# ---------------------------------------------------------------------------------------

MINIMUM = {"quantity": "minimum", "x": "estimator", "x_values": {"k10": 10, "k30": 30, "k100": 100, "k300": 300}}


def shape(values: dict[str, float], seeds: int = 5, noise: float = 0.02) -> list[dict[str, Any]]:
    rng = np.random.default_rng(2)
    return [{"estimator": e, "seed": k, "value": v + noise * rng.normal()} for e, v in values.items()
            for k in range(seeds)]


def test_minimum_u_shape_monotone_and_flat() -> None:
    res = evaluate_claim(claim(**MINIMUM), table(shape({"k10": 1.0, "k30": 0.5, "k100": 0.4, "k300": 0.9})))
    assert res.verdict == "holds" and res.row()["measured"].startswith("argmin estimator=k100: 0.4")
    res = evaluate_claim(claim(**MINIMUM), table(shape({"k10": 1.0, "k30": 0.7, "k100": 0.5, "k300": 0.3})))
    assert res.verdict == "fails" and "end point" in res.row()["margin"]
    flat = shape({"k10": 1.0, "k30": 1.0, "k100": 1.0, "k300": 1.0}, noise=0.3)
    assert evaluate_claim(claim(**MINIMUM), table(flat)).verdict == "inconclusive"


def test_labels_outside_x_values_are_left_out() -> None:
    rows = shape({"k10": 1.0, "k30": 0.5, "k100": 0.4, "k300": 0.9, "other": 0.0})
    assert evaluate_claim(claim(**MINIMUM), table(rows)).verdict == "holds"


# ---------------------------------------------------------------------------------------
# fit records
# ---------------------------------------------------------------------------------------


def test_fit_records_give_a_slope_over_width_labels() -> None:
    widths = {"m64": 64, "m256": 256, "m1024": 1024}
    records = [{"target": "g", "process": "vp", "estimator": e, "seed": k,
                "record": {"extra": {"relative_weight_change": [1.0, 3.0 / math.sqrt(m) * (1 + 0.01 * k)]}}}
               for e, m in widths.items() for k in range(3)]
    records.append({**records[0]})  # a resumed run's repeated record counts once
    c = parse_claims([{"id": "lazy", "paper": "P", "statement": "S", "quantity": "slope", "source": "fits",
                       "field": "extra.relative_weight_change", "x": "estimator", "x_values": widths,
                       "predicted": -0.5, "tolerance": 0.05}], "f.toml")[0]
    res = evaluate_claim(c, fits=records)
    assert res.verdict == "holds" and res.groups[0].fit[0] == pytest.approx(-0.5, abs=0.01)
    assert res.row()["n_points"] == 9
    first = parse_claims([{**{k: getattr(c, k) for k in ("id", "paper", "statement", "quantity", "source", "field",
                                                          "x", "x_values", "predicted")},
                           "list_reduce": "min"}], "f.toml")[0]
    # each list falls, so its minimum is its last value
    assert evaluate_claim(first, fits=records).groups[0].fit[0] == pytest.approx(res.groups[0].fit[0])
    with pytest.raises(ClaimError, match=r"no fit record holds a finite number at record\.extra\.nope"):
        evaluate_claim(parse_claims([{"id": "x", "paper": "P", "statement": "S", "quantity": "minimum",
                                      "source": "fits", "field": "extra.nope", "x": "estimator",
                                      "x_values": widths}], "f.toml")[0], fits=records)


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------

OK = {"id": "c", "paper": "P", "statement": "S", "quantity": "slope", "metric": "exact_w2", "x": "steps",
      "predicted": -1.0}
LABELS = {"sampler": ["em", "pc"], "target": ["g2"], "metric": ["exact_w2", "score_mse"], "estimator": ["oracle"]}
MISTAKES = [
    ({"quantity": "rate"}, "claims[0].quantity: unknown quantity 'rate'; allowed: slope, bound"),
    ({"tolerence": 0.1}, "claims[0].tolerence: unknown key; allowed:"),
    ({"paper": None}, "claims[0].paper: missing; every claim needs id, paper, statement, quantity"),
    ({"id": "em weak"}, "claims[0].id: 'em weak': ids may contain letters, digits"),
    ({"statement": ""}, "claims[0].statement: expected a non-empty string"),
    ({"line": {"form": "power", "coef": 1.0, "exponent": -1.0}}, "claims[0].line: does not apply to a slope claim"),
    ({"predicted": None}, "claims[0].predicted: missing; a slope claim needs x, predicted"),
    ({"predicted": "-1"}, "claims[0].predicted: expected a finite number, got '-1'"),
    ({"tolerance": -0.1}, "claims[0].tolerance: expected a number >= 0"),
    ({"source": "logs"}, "claims[0].source: unknown source 'logs'; allowed: results, fits"),
    ({"metric": None}, "claims[0].metric: missing; a claim on the result rows names the metric"),
    ({"metric": "w2"}, "claims[0].metric: unknown metric 'w2'; the suite's metrics: exact_w2, score_mse"),
    ({"source": "fits", "metric": None}, "claims[0].field: missing; a claim on fit records"),
    ({"field": "extra.width"}, "claims[0].field: applies to source = 'fits' only"),
    ({"x": "speed"}, "claims[0].x: unknown column 'speed'; columns of the result table:"),
    ({"x": "estimator"}, "claims[0].x: 'estimator' is a label column: give x_values"),
    ({"x": "estimator", "x_values": {"ntk": 64}}, "claims[0].x_values.ntk: unknown estimator label 'ntk'; the suite "
     "defines: oracle"),
    ({"x": "estimator", "x_values": {"oracle": "64"}}, "claims[0].x_values.oracle: expected a finite number"),
    ({"x_values": {"a": 1}}, "claims[0].x_values: x = 'steps' is already numeric"),
    ({"x_range": [100, 10]}, "claims[0].x_range: expected [low, high] with low <= high"),
    ({"x_range": [0, 10]}, "claims[0].x_range: a log-log slope needs x > 0"),
    ({"t_reduce": "median"}, "claims[0].t_reduce: unknown reduction 'median'; allowed: mean, max, min"),
    ({"x": "t", "t_reduce": "mean"}, "claims[0].t_reduce: x = 't' keeps every time as a point"),
    ({"scale": "loglin"}, "claims[0].scale: unknown scale 'loglin'; allowed: loglog, linear, semilogy"),
    ({"where": {"sampler": "heun"}},
     "claims[0].where.sampler: unknown sampler label 'heun'; the suite defines: em, pc"),
    ({"where": {"colour": "red"}}, "claims[0].where.colour: unknown column 'colour'"),
    ({"where": {"steps": "ten"}}, "claims[0].where.steps: expected a number (column 'steps' is numeric)"),
    ({"over": ["sampler", "sampler"]}, "claims[0].over: a column is repeated"),
    ({"over": ["steps"]}, "claims[0].x: 'steps' is also in 'over'"),
    ({"quantity": "bound", "predicted": None, "line": {"form": "cubic"}}, "claims[0].line.form: unknown form 'cubic'; "
     "allowed: power, linear, geometric, constant"),
    ({"quantity": "bound", "predicted": None, "line": {"form": "power", "coef": 1.0}},
     "claims[0].line.exponent: missing; a power line needs coef, exponent"),
    ({"quantity": "bound", "predicted": None, "line": {"form": "constant", "value": 1.0, "slope": 2.0}},
     "claims[0].line.slope: not a parameter of a constant line; its parameters: value"),
    ({"quantity": "bound", "predicted": None, "line": {"form": "constant", "value": 1.0}, "side": "above"},
     "claims[0].side: unknown side 'above'; allowed: upper, lower"),
    ({"quantity": "ordering", "predicted": None, "x": None, "compare": "steps", "better": 1, "worse": 2},
     "claims[0].compare: 'steps' is not a label column"),
    ({"quantity": "ordering", "predicted": None, "x": None, "compare": "sampler", "better": "em", "worse": "em"},
     "claims[0].worse: better and worse name the same label 'em'"),
    ({"quantity": "ordering", "predicted": None, "x": None, "compare": "sampler", "better": "pc", "worse": "ddpm"},
     "claims[0].worse: unknown sampler label 'ddpm'; the suite defines: em, pc"),
    ({"quantity": "crossover", "predicted": None, "compare": "sampler", "first": "em"},
     "claims[0].second: missing; a crossover claim needs x, compare, first, second"),
    ({"list_reduce": "last"}, "claims[0].list_reduce: applies to source = 'fits' only"),
]


@pytest.mark.parametrize(("change", "message"), MISTAKES, ids=[m[1].split(":")[0] + f"-{i}"
                                                               for i, m in enumerate(MISTAKES)])
def test_each_mistake_gives_one_message_naming_the_file_and_key(change: dict[str, Any], message: str) -> None:
    table_ = {k: v for k, v in {**OK, **change}.items() if v is not None}
    with pytest.raises(ClaimError) as info:
        parse_claims([table_], "suite.toml", LABELS)
    assert str(info.value).startswith("suite.toml: claims[0]")
    assert message in str(info.value)


def test_the_correct_claim_passes_and_ids_are_unique() -> None:
    assert parse_claims([OK], "suite.toml", LABELS)[0].predicted == -1.0
    with pytest.raises(ClaimError, match=r"claims\[1\].id: the id 'c' is already used by claims\[0\]"):
        parse_claims([OK, OK], "suite.toml", LABELS)


SUITE = """
[suite]
name = "claims-tiny"
seed = 0
device = "cpu"
dtype = "float64"

[targets.g2]
name = "gaussian"
dim = 2
mean = [1.0, -1.0]
condition_number = 4.0

[processes.ou]

[estimators.oracle]

[samplers.ei]
name = "exponential_integrator"

[metrics]
exact_w2 = {}

[[grid]]
steps = [16, 32, 64]
n_samples = [10]
init = "exact"

[[claims]]
id = "ei-first-order"
paper = "De Bortoli (TMLR 2022)"
statement = "The exponential integrator's W2 error decays at least at first order in the step size."
quantity = "slope"
metric = "exact_w2"
x = "steps"
predicted = -1.0
tolerance = 0.5
resolution = 1.0

[[claims]]
id = "half-order"
paper = "a deliberately wrong prediction"
statement = "The error decays at order 1/2."
quantity = "slope"
metric = "exact_w2"
x = "steps"
predicted = -0.5
tolerance = 0.1
"""


def test_suite_validation_refuses_a_bad_claim_with_the_suite_error_shape(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SUITE.replace('metric = "exact_w2"\nx = "steps"\npredicted = -0.5',
                                  'metric = "exact_w2"\nx = "steps"\nwhere = { sampler = "em" }\npredicted = -0.5'))
    with pytest.raises(SuiteError, match=rf"^{path}: claims\[1\].where.sampler: unknown sampler label 'em'; "
                                         "the suite defines: ei"):
        load_suite(path)
    path.write_text(SUITE)
    assert [c["id"] for c in load_suite(path).claims] == ["ei-first-order", "half-order"]


# ---------------------------------------------------------------------------------------
# the command line and the report, on a tiny real run
# ---------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scorebench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("claims_run")
    (root / "tiny.toml").write_text(SUITE)
    done = cli("run", "tiny.toml", "--out", "run", "--no-progress", cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "run"


def test_claims_command_holds_and_fails_with_exit_1(run_dir: Path, tmp_path: Path) -> None:
    done = cli("claims", str(run_dir), "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "| ei-first-order |" in done.stdout and "**holds**" in done.stdout and "**fails**" in done.stdout
    out = pd.read_csv(tmp_path / "claims.csv")
    assert out.set_index("id")["verdict"].to_dict() == {"ei-first-order": "holds", "half-order": "fails"}
    # the measured slope is scipy's least-squares slope through the table's own exact W2 values
    rows = read_results(run_dir)
    ref = stats.linregress(np.log(rows["steps"].to_numpy(float)), np.log(rows["value"].to_numpy(float)))
    assert out.set_index("id").loc["ei-first-order", "measured"].startswith(f"{ref.slope:+.3f} ± ")
    assert (tmp_path / "claims.md").read_text().startswith("# Claims")


def test_claims_command_csv_format_and_a_claims_file(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "only.toml").write_text(SUITE[SUITE.index("[[claims]]"):SUITE.index("[[claims]]", 100 + SUITE.index(
        "[[claims]]"))])
    done = cli("claims", str(run_dir), "--claims", "only.toml", "--out", ".", "--format", "csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "id,paper,quantity,predicted,measured,verdict,margin,n_points,seeds"
    assert ",holds," in done.stdout and "half-order" not in done.stdout


def test_claims_command_user_mistakes_exit_2(run_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    read_results(run_dir).to_csv(bare / "results.csv", index=False)  # no provenance: no suite, no claims
    done = cli("claims", str(bare), cwd=tmp_path)
    assert done.returncode == 2 and "carry no [[claims]]" in done.stderr
    (tmp_path / "bad.toml").write_text('[[claims]]\nid = "x"\npaper = "P"\nstatement = "S"\nquantity = "rate"\n')
    done = cli("claims", str(run_dir), "--claims", "bad.toml", cwd=tmp_path)
    assert done.returncode == 2 and "bad.toml: claims[0].quantity: unknown quantity 'rate'" in done.stderr
    done = cli("claims", str(tmp_path / "missing"), cwd=tmp_path)
    assert done.returncode == 2 and "no such file or directory" in done.stderr
    (tmp_path / "empty").mkdir()
    done = cli("claims", str(tmp_path / "empty"), cwd=tmp_path)
    assert done.returncode == 2 and "not a run directory" in done.stderr
    # a claims file is checked against the runs' rows: a label or metric they never measured is a typo
    good = ('[[claims]]\nid = "x"\npaper = "P"\nstatement = "S"\nquantity = "slope"\nmetric = "exact_w2"\n'
            'x = "steps"\npredicted = -1.0\n')
    (tmp_path / "typo.toml").write_text(good + 'where = { sampler = "emm" }\n')
    done = cli("claims", str(run_dir), "--claims", "typo.toml", cwd=tmp_path)
    assert done.returncode == 2 and "where.sampler: the runs have no sampler 'emm'" in done.stderr
    (tmp_path / "typo.toml").write_text(good.replace("exact_w2", "exact_w3"))
    done = cli("claims", str(run_dir), "--claims", "typo.toml", cwd=tmp_path)
    assert done.returncode == 2 and "the runs hold no metric 'exact_w3'" in done.stderr


def test_the_report_has_a_claims_section_and_a_figure_per_claim(run_dir: Path, tmp_path: Path) -> None:
    rep = build_report([run_dir], tmp_path / "rep")
    md = rep.markdown.read_text()
    assert "## Claims" in md and "| ei-first-order |" in md
    claims = [f for f in rep.figures if f.kind == "claim"]
    assert [f.file for f in claims] == ["claim-ei-first-order.png", "claim-half-order.png"]
    for f in claims:
        assert (tmp_path / "rep" / f.file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({f.file})" in md


def test_several_runs_of_one_suite_are_pooled_and_a_cut_suite_text_falls_back_to_its_file(
    run_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from scorebench.claims.runs import evaluate_runs

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    one, two = evaluate_runs([run_dir]), evaluate_runs([run_dir, copy])
    assert [r.row() for r in one] == [r.row() for r in two]  # the copy's rows replace the same rows
    info = json.loads((copy / "provenance.json").read_text())
    info.update(suite_text=info["suite_text"][:50], suite_chars=10**6)  # as kept for a suite above 64 KiB
    (copy / "provenance.json").write_text(json.dumps(info))
    (tmp_path / info["suite_file"]).write_text(SUITE)
    assert [r.row() for r in evaluate_runs([copy])] == [r.row() for r in one]  # read from suite_file (same sha)
    suite_file = tmp_path / info["suite_file"]  # recorded relative to where the run started: a folder above it
    suite_file.write_text(SUITE + "\n# edited since\n")
    done = cli("claims", str(copy), cwd=tmp_path)
    assert done.returncode == 2 and "missing or changed since the run" in done.stderr


def test_a_claim_over_time_on_a_metric_without_time_is_refused_by_the_suite(tmp_path: Path) -> None:
    text = (ROOT / "suites" / "papers" / "weak_order.toml").read_text().replace('x = "steps"', 'x = "t"', 1)
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SuiteError, match=r"claims\[0\]\.x: metric 'exact_w2' has one row per cell and seed.*"
                       r"score_mse"):
        load_suite(tmp_path / "s.toml")


def test_validate_refuses_a_suite_with_a_bad_claim_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(SUITE.replace('predicted = -0.5', 'predicted = -0.5\nside = "upper"'))
    done = cli("validate", "s.toml", "--no-estimate", cwd=tmp_path)
    assert done.returncode == 2
    assert "s.toml: claims[1].side: does not apply to a slope claim" in done.stderr


def test_a_difference_with_one_seed_on_one_side_combines_the_two_cells_intervals() -> None:
    """Three seeds of pc against one exact em value: the half-width is pc's t half-width (em's is 0)."""
    pc = [{"sampler": "pc", "nfe": 20, "seed": k, "value": v} for k, v in enumerate([1.0, 1.2, 1.1])]
    em = [{"sampler": "em", "nfe": 20, "steps": 20, "seed": 0, "value": 1.4, "exact": True}]
    res = evaluate_claim(claim(**ORDER), table(pc + em))
    half = stats.t.ppf(0.975, 2) * np.std([1.0, 1.2, 1.1], ddof=1) / math.sqrt(3)
    assert res.groups[0].curve["lo"].iloc[0] == pytest.approx(0.3 - half)
    assert res.verdict == "holds"  # 0.3 - 0.248 > 0
    em[0]["value"] = 1.25  # 0.15 apart, less than the half-width: undecided
    assert evaluate_claim(claim(**ORDER), table(pc + em)).verdict == "inconclusive"
