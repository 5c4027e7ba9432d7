"""Measure a claim on result rows (or fit records) and give its verdict.

Every claim gives ``holds``, ``fails`` or ``inconclusive`` from 95% intervals; with ``over`` it is
measured once per group and its verdict is the worst group's (``fails`` > ``inconclusive`` >
``holds``).  The rules, per quantity (``docs/claims.md`` has them in full):

slope
    Least squares of ``log y`` on ``log x`` (or ``y`` on ``x``, ``log y`` on ``x``) over every
    (x, seed) point, ``CI = b +- t_{0.975, n-2} SE`` with ``SE`` from the residuals (exact rows
    too: their residuals are the curve's departure from a power law).  Holds when the CI meets
    ``[predicted - tolerance, predicted + tolerance]`` and its half-width is at most
    ``resolution``; fails when it misses that interval; inconclusive otherwise.
bound
    At each x, the cell's 95% interval (over seeds; a single seed's own interval; an exact
    value).  An upper bound fails where an interval lies wholly above the line, is inconclusive
    where only the mean does, and holds otherwise (a lower bound is the mirror image).
ordering
    At each matched value, the paired difference ``worse - better`` over common seeds with its
    t interval (Welch's without common seeds; the rows' own intervals with one seed each).
crossover
    Along x, the difference ``second - first``: holds when ``first`` is significantly better at
    some x and significantly worse at a larger one.
minimum
    The argmin of the mean over x: holds when interior with both end points significantly above.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..schema import CELL_COLUMNS
from ..stats import fit_line, t_half_width, t_quantile, welch_half_width
from .format import FIT_COLUMNS, Claim, ClaimError, _fail

VERDICTS = ("holds", "inconclusive", "fails")
SEVERITY = {v: i for i, v in enumerate(VERDICTS)}
LEVEL = 0.95
#: relative difference below which two exact values (exact laws: float rounding only) are taken as equal
EXACT_TIE = 1e-9


@dataclass
class GroupResult:
    """The measurement of one group of a claim (the whole claim when it has no ``over``).

    ``curve`` holds what a figure draws: one row per x (and compared label) with the mean and its
    95% interval (for ordering and crossover: of the difference); ``points`` the (x, seed, value)
    points of a slope fit; ``fit`` the fitted (slope, intercept) on the fit's scale.
    """

    group: dict[str, Any]
    verdict: str
    measured: str
    margin: str
    n_points: int
    seeds: int
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    fit: tuple[float, float] | None = None
    #: the crossover x a crossover claim measured (NaN when none)
    crossing: float = math.nan

    @property
    def name(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.group.items())


@dataclass
class ClaimResult:
    """A claim's verdict: the worst of its groups, which the table shows."""

    claim: Claim
    groups: list[GroupResult]
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> GroupResult:
        return max(self.groups, key=lambda g: SEVERITY[g.verdict])

    @property
    def verdict(self) -> str:
        return self.worst.verdict

    def row(self) -> dict[str, Any]:
        """The claims table's row: id, paper, quantity, predicted, measured, verdict, margin, n_points, seeds."""
        w = self.worst
        counts = ""
        if len(self.groups) > 1:
            tally = {v: sum(g.verdict == v for g in self.groups) for v in VERDICTS}
            counts = " [" + ", ".join(f"{n} {v}" for v, n in tally.items() if n) + f" of {len(self.groups)} groups]"
        margin = w.margin + (f" ({'; '.join(self.notes)})" if self.notes else "")
        return {
            "id": self.claim.id, "paper": self.claim.paper, "quantity": self.claim.quantity,
            "predicted": self.claim.predicted_text(),
            "measured": (f"{w.name}: " if w.group else "") + w.measured + counts,
            "verdict": w.verdict, "margin": margin,
            "n_points": sum(g.n_points for g in self.groups), "seeds": max(g.seeds for g in self.groups),
        }


# ---------------------------------------------------------------------------------------
# the rows a claim reads
# ---------------------------------------------------------------------------------------


class NoRows(ClaimError):
    """The runs hold no rows a claim can measure (a partial or ``--quick`` run, or every cell failed):
    the claim is inconclusive, not mistaken."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _error(claim: Claim, problem: str, key: str = "") -> ClaimError:
    return _fail(claim.origin, f"{claim.key}.{key}" if key else claim.key, problem, claim.id)


def _lookup(record: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(record, dict) or part not in record:
            return None
        record = record[part]
    return record


def _reduce_list(values: list[Any], how: str) -> Any:
    values = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    if not values:
        return None
    return {"last": values[-1], "min": min(values), "max": max(values), "mean": sum(values) / len(values)}[how]


def fit_rows(claim: Claim, records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The fit records as rows: the record's target, process, estimator and seed, and ``value``, the
    claim's ``field`` (a dotted path into ``record``; a list is reduced by ``list_reduce``).  A
    record that a resumed run repeats (same target, process, estimator and seed) counts once: the last."""
    path = claim.field.removeprefix("record.").split(".")
    rows, missing = {}, 0
    for rec in records:
        value = _lookup(rec.get("record", {}), path)
        if isinstance(value, list):
            value = _reduce_list(value, claim.list_reduce)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            missing += 1
            continue
        key = tuple(rec.get(c) for c in FIT_COLUMNS)
        rows[key] = {**dict(zip(FIT_COLUMNS, key, strict=True)), "value": float(value)}
    if not rows:
        raise _error(claim, f"no fit record holds a finite number at record.{'.'.join(path)} "
                     f"({missing} records without it)", "field")
    df = pd.DataFrame(list(rows.values()))
    df["ci_low"] = df["ci_high"] = np.nan
    df["exact"] = False
    df["status"] = "ok"
    return df


def _filter(df: pd.DataFrame, column: str, values: Sequence[Any], numeric: bool) -> pd.DataFrame:
    if not numeric:
        return df[df[column].isin(values)]
    col = df[column].to_numpy(dtype=float)
    return df[np.logical_or.reduce([np.isclose(col, float(v), rtol=1e-9, atol=0.0) for v in values])]


def claim_rows(claim: Claim, frame: pd.DataFrame | None = None,
               fits: Iterable[dict[str, Any]] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The rows a claim measures, with a float column ``x`` (when it has an x axis), and notes on
    what was left out.  Rows that are not ``ok`` or not finite are left out and counted."""
    notes: list[str] = []
    if claim.source == "fits":
        df = fit_rows(claim, fits or [])
        identity = list(FIT_COLUMNS)
    else:
        if frame is None or frame.empty:
            raise NoRows("no result rows to measure")
        df = frame[frame["metric"] == claim.metric]
        if df.empty:
            raise NoRows(f"no result rows of metric {claim.metric!r}; metrics in the tables: "
                         f"{', '.join(dict.fromkeys(frame['metric']))}")
        identity = [c for c in CELL_COLUMNS if c in df.columns] + ["seed"]
    if "ablation" in df.columns and "ablation" not in claim.where:  # a decomposed suite's variants: see 'where'
        df = df[df["ablation"].fillna("none") == "none"]
    dtypes = claim.columns
    for column, values in claim.where.items():
        if column not in df.columns:
            raise _error(claim, f"the rows have no column {column!r}", f"where.{column}")
        df = _filter(df, column, values, dtypes.get(column) != "string")
    if claim.source == "results":  # count the claim's own rows that did not finish
        ok = (df["status"] == "ok") & np.isfinite(df["value"].to_numpy(dtype=float))
        if (~ok).any():
            notes.append(f"{int((~ok).sum())} rows not ok left out")
        df = df[ok]
    if df.empty:
        raise NoRows("no ok rows left after 'where' "
                     f"({', '.join(f'{k} in {list(v)}' for k, v in claim.where.items()) or 'no filter'})"
                     + (f"; {notes[0]}" if notes else ""))
    if claim.source == "results":
        df = _times(claim, df, identity)
    df = df.copy()
    if claim.x is not None:
        if claim.x_values:
            unmapped = ~df[claim.x].isin(list(claim.x_values))
            df = df[~unmapped].copy()
            df["x"] = df[claim.x].map(claim.x_values).astype(float)
        else:
            df["x"] = df[claim.x].to_numpy(dtype=float)
        if claim.x_range is not None:
            lo, hi = claim.x_range
            df = df[(df["x"] >= lo) & (df["x"] <= hi)]
        if df.empty:
            raise NoRows(f"no rows with {claim.x} in the claim's range "
                         f"({'x_values ' + ', '.join(claim.x_values) if claim.x_values else ''}"
                         f"{' x_range ' + str(list(claim.x_range)) if claim.x_range else ''}; a --quick run keeps "
                         "the smallest steps and sample size only)")
    _check_units(claim, df, identity)
    return df.reset_index(drop=True), notes


def _times(claim: Claim, df: pd.DataFrame, identity: list[str]) -> pd.DataFrame:
    """Rows per cell x seed for a time-resolved metric: each time a point when x = 't', else one
    reduced row (``t_reduce``; its interval is lost: a mean over times has no per-row interval)."""
    if claim.x == "t":
        df = df[df["t"].notna()]
        if df.empty:
            raise _error(claim, f"x = 't' but metric {claim.metric!r} has no time-resolved rows", "x")
        return df
    counts = df.groupby(identity, dropna=False)["t"].nunique()
    if counts.max() <= 1:
        return df
    if claim.t_reduce is None:
        raise _error(claim, f"metric {claim.metric!r} has rows at {int(counts.max())} times per cell x seed: give "
                     "t_reduce = 'mean' | 'max' | 'min', or x = 't'", "t_reduce")
    agg = {c: "first" for c in df.columns if c not in (*identity, "value", "t", "ci_low", "ci_high", "exact")}
    agg.update({"value": claim.t_reduce, "exact": "all"})
    out = df.groupby(identity, dropna=False, sort=False).agg(agg).reset_index()
    out["ci_low"] = out["ci_high"] = np.nan
    out["t"] = np.nan
    return out


def _unit_columns(claim: Claim) -> list[str]:
    cols = list(claim.over)
    cols += ["x"] if claim.x is not None else []
    cols += [c for c in (claim.compare, claim.match) if c is not None]
    return cols


def _check_units(claim: Claim, df: pd.DataFrame, identity: list[str]) -> None:
    """One row per (group, x, compared label, matched value, seed): else the claim mixes cells."""
    unit = [*_unit_columns(claim), "seed"]
    dup = df.duplicated(unit, keep=False)
    if not dup.any():
        return
    labels = df[unit].astype(str).agg("|".join, axis=1)  # NaN-safe equality of whole keys
    first = df[dup].iloc[0]
    same = df[dup & (labels == labels[dup].iloc[0])]
    differ = {c: list(dict.fromkeys(same[c].tolist())) for c in identity if c in same and same[c].nunique() > 1}
    at = ", ".join(f"{c}={first[c]}" for c in unit)
    what = "; ".join(f"{c}: {', '.join(map(str, v))}" for c, v in differ.items()) or "nothing in their labels"
    raise _error(claim, f"{len(same)} rows at {at} come from cells that differ in {what}: pick one with 'where' "
                 "or measure each with 'over'" + (", or pair them with 'match'" if claim.quantity == "ordering"
                                                 else ""))


# ---------------------------------------------------------------------------------------
# intervals and differences
# ---------------------------------------------------------------------------------------


def interval(rows: pd.DataFrame) -> tuple[float, float, float]:
    """Mean and 95% interval of a cell's values: over seeds (Student t); a single row's own
    interval; a single exact value is its own interval.  A single row without one: (v, NaN, NaN)."""
    v = rows["value"].to_numpy(dtype=float)
    if len(v) >= 2:
        half = t_half_width(v, LEVEL)
        return float(v.mean()), float(v.mean() - half), float(v.mean() + half)
    row = rows.iloc[0]
    if bool(row["exact"]):
        return float(v[0]), float(v[0]), float(v[0])
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    return float(v[0]), lo, hi


def difference(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float, str]:
    """``mean(b) - mean(a)`` and its 95% half-width: paired over the common seeds (common random
    numbers) when there are two or more; Welch's interval when each side has two seeds or more but
    they share fewer; otherwise the root sum of squares of the two cells' half-widths (:func:`interval`:
    a single row's own interval)."""
    sa, sb = a.set_index("seed"), b.set_index("seed")
    if a["exact"].all() and b["exact"].all():  # exact laws: no noise, but rounding; a tie below it is a tie
        ma, mb = float(sa["value"].mean()), float(sb["value"].mean())
        d = mb - ma
        return (0.0 if abs(d) <= EXACT_TIE * max(abs(ma), abs(mb)) else d), 0.0, "exact"
    common = sa.index.intersection(sb.index)
    if len(common) >= 2:
        d = sb.loc[common, "value"].to_numpy(dtype=float) - sa.loc[common, "value"].to_numpy(dtype=float)
        return float(d.mean()), t_half_width(d, LEVEL), "paired"
    if len(sa) >= 2 and len(sb) >= 2:
        va, vb = sa["value"].to_numpy(dtype=float), sb["value"].to_numpy(dtype=float)
        return float(vb.mean() - va.mean()), welch_half_width(va, vb, LEVEL), "welch"
    (ma, la, ua), (mb, lb, ub) = interval(a), interval(b)
    return mb - ma, math.hypot((ua - la) / 2, (ub - lb) / 2), "intervals"


def _g(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "nan"


def _at(claim: Claim, column: str, value: Any) -> str:
    """``column=value`` as a reader knows it: the label(s) a number stands for when ``column`` is
    mapped by ``x_values``, ``10`` rather than ``10.0``."""
    if column == claim.x and claim.x_values:
        names = [k for k, v in claim.x_values.items() if v == value]
        if names:
            return f"{column}={'/'.join(names)}"
    if isinstance(value, float | np.floating):
        return f"{column}={float(value):g}"
    return f"{column}={value}"


# ---------------------------------------------------------------------------------------
# the quantities
# ---------------------------------------------------------------------------------------


def _slope(claim: Claim, g: pd.DataFrame, group: dict[str, Any]) -> GroupResult:
    seeds = g["seed"].nunique()
    # an exact value that every seed repeats (an oracle's exact law) is one point per x, not one per seed;
    # exact laws that differ by seed (each seed fits its own score) stay one point per seed
    repeated = g["exact"].all() and bool((g.groupby("x")["value"].nunique() == 1).all())
    if repeated:
        g = g.groupby("x", as_index=False, sort=True).agg(seed=("seed", "min"), value=("value", "mean"),
                                                           exact=("exact", "all"), ci_low=("ci_low", "first"),
                                                           ci_high=("ci_high", "first"))
    x, y = g["x"].to_numpy(dtype=float), g["value"].to_numpy(dtype=float)
    logx, logy = claim.scale == "loglog", claim.scale in ("loglog", "semilogy")
    keep = (x > 0 if logx else np.ones_like(x, bool)) & (y > 0 if logy else np.ones_like(y, bool))
    dropped = int((~keep).sum())
    g = g[keep]
    x, y = x[keep], y[keep]
    curve = _curve(g)
    points = g[["x", "seed", "value"]].reset_index(drop=True)
    note = f"; {dropped} values <= 0 left out of the log fit" if dropped else ""
    base = {"group": group, "n_points": len(x), "seeds": seeds, "curve": curve, "points": points}
    if len(set(x)) < 3:
        return GroupResult(verdict="inconclusive", measured="no fit",
                           margin=f"{len(set(x))} distinct x values: a slope with an interval needs at least 3 (a "
                           f"line through 2 fits them exactly, whatever the seeds){note}", **base)
    X, Y = (np.log(x) if logx else x), (np.log(y) if logy else y)
    slope, se, icpt = fit_line(X, Y)
    half = t_quantile(LEVEL, len(x) - 2) * se
    base["fit"] = (slope, icpt)
    lo, hi = slope - half, slope + half
    plo, phi = claim.predicted - claim.tolerance, claim.predicted + claim.tolerance
    measured = f"{slope:+.3f} ± {half:.3f}"
    res = claim.slope_resolution
    if hi < plo or lo > phi:
        gap = plo - hi if hi < plo else lo - phi
        return GroupResult(verdict="fails", measured=measured,
                           margin=f"the CI [{lo:+.3f}, {hi:+.3f}] misses [{plo:+.3f}, {phi:+.3f}] by {gap:.3f}{note}",
                           **base)
    inside = abs(slope - claim.predicted) <= claim.tolerance
    if inside and half <= res:
        return GroupResult(verdict="holds", measured=measured,
                           margin=f"measured - predicted = {slope - claim.predicted:+.3f}; CI half-width "
                           f"{half:.3f} <= resolution {res:g}{note}", **base)
    if half <= res:
        return GroupResult(verdict="inconclusive", measured=measured,
                           margin=f"the estimate is {abs(slope - claim.predicted):.3f} from the prediction, outside "
                           f"the tolerance {claim.tolerance:g}, but its CI [{lo:+.3f}, {hi:+.3f}] reaches "
                           f"[{plo:+.3f}, {phi:+.3f}]: more seeds or x values would settle it{note}", **base)
    if repeated:
        how = ("the rows are exact: more seeds change nothing; the residuals are the curve's departure from a "
               "line, so fit over the asymptotic range (x_range) or add x values")
    else:
        need = math.ceil(seeds * (half / res) ** 2)
        how = f"about {need} seeds would settle it (now {seeds})"
    return GroupResult(verdict="inconclusive", measured=measured,
                       margin=f"CI half-width {half:.3f} > resolution {res:g}: {how}{note}", **base)


def _curve(g: pd.DataFrame, by: Sequence[str] = ("x",)) -> pd.DataFrame:
    """Mean and interval per x (and label): what the figures draw."""
    rows = []
    for key, rows_x in g.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        mean, lo, hi = interval(rows_x)
        rows.append({**dict(zip(by, key, strict=True)), "mean": mean, "lo": lo, "hi": hi, "n": len(rows_x)})
    return pd.DataFrame(rows)


def _bound(claim: Claim, g: pd.DataFrame, group: dict[str, Any]) -> GroupResult:
    curve = _curve(g)
    curve["line"] = claim.line(curve["x"].to_numpy(dtype=float))
    upper = claim.side == "upper"
    # the end of each interval that must respect the line, and the mean: (x, end, mean, line)
    ends = np.where(np.isfinite(curve["lo" if upper else "hi"]), curve["lo" if upper else "hi"], curve["mean"])
    line = curve["line"].to_numpy(dtype=float)
    sign = 1.0 if upper else -1.0
    slack = EXACT_TIE * np.abs(line)  # an exact value on the line up to rounding respects it
    excess = sign * (ends - line) - slack
    mean_excess = sign * (curve["mean"].to_numpy(dtype=float) - line) - slack
    ratio = np.where(line > 0, ends / np.where(line > 0, line, 1.0), np.nan)
    base = {"group": group, "n_points": len(g), "seeds": g["seed"].nunique(), "curve": curve}
    # where the verdict is decided: the worst interval end if one crosses, else the worst mean
    worst = int(np.argmax(excess)) if (excess > 0).any() or not (mean_excess > 0).any() else int(np.argmax(mean_excess))
    r = curve.iloc[worst]
    where = f"{_at(claim, claim.x, r['x'])}"
    end_name = "lower end" if upper else "upper end"
    margin = (f"{end_name}/line = {ratio[worst]:.3g} at {where}" if math.isfinite(ratio[worst])
              else f"{end_name} - line = {ends[worst] - line[worst]:+.3g} at {where}")
    measured = f"{_g(r['mean'])} [{_g(r['lo'])}, {_g(r['hi'])}] vs line {_g(r['line'])} at {where}"
    no_ci = int((~np.isfinite(curve["lo"])).sum())
    if no_ci:
        margin += f"; {no_ci} x values have one seed and no interval: their value is taken as exact"
    if (excess > 0).any():
        return GroupResult(verdict="fails", measured=measured, margin=margin, **base)
    if (mean_excess > 0).any():
        k = int((mean_excess > 0).sum())
        return GroupResult(verdict="inconclusive", measured=measured,
                           margin=f"the mean crosses the line at {k} x values, no interval does; {margin}", **base)
    return GroupResult(verdict="holds", measured=measured, margin=margin, **base)


def _judge(d: float, half: float) -> int:
    """+1 significantly positive, -1 significantly negative, 0 neither (NaN half: undecided)."""
    if not math.isfinite(half):
        return 0
    return 1 if d - half > 0 else -1 if d + half < 0 else 0


def _ordering(claim: Claim, g: pd.DataFrame, group: dict[str, Any]) -> GroupResult:
    rows, skipped = [], 0
    for key, gm in (g.groupby([claim.match], sort=True) if claim.match else [(("",), g)]):
        better, worse = gm[gm[claim.compare] == claim.better], gm[gm[claim.compare] == claim.worse]
        if better.empty or worse.empty:
            skipped += 1
            continue
        d, half, how = difference(better, worse)
        rows.append({"x": key[0], "mean": d, "lo": d - half, "hi": d + half, "sign": _judge(d, half), "how": how})
    curve = pd.DataFrame(rows)
    base = {"group": group, "n_points": len(g), "seeds": g["seed"].nunique(), "curve": curve}
    skip = f"; {skipped} {claim.match} values lack one of the two labels" if skipped else ""
    if curve.empty:
        return GroupResult(verdict="inconclusive", measured="no matched pair",
                           margin=f"no {claim.match or 'group'} holds both {claim.better} and {claim.worse}{skip}",
                           **base)
    at = (lambda r: f" at {_at(claim, claim.match, r['x'])}") if claim.match else (lambda r: "")
    worst = curve.loc[curve["mean"].idxmin()]
    lowest = curve.loc[curve["lo"].idxmin()]
    n, pos = len(curve), int((curve["sign"] > 0).sum())
    if (curve["sign"] < 0).any():
        r = curve[curve["sign"] < 0].sort_values("mean").iloc[0]
        return GroupResult(verdict="fails", measured=f"{claim.worse} - {claim.better} = {_g(r['mean'])} ± "
                           f"{_g(r['mean'] - r['lo'])}{at(r)}",
                           margin=f"{claim.better} is significantly worse at {int((curve['sign'] < 0).sum())} of "
                           f"{n} {claim.match or 'comparison'} values{skip}", **base)
    verdict = "holds" if pos == n else "inconclusive"
    r = lowest if verdict == "holds" else worst
    return GroupResult(verdict=verdict, measured=f"{claim.worse} - {claim.better} >= {_g(r['mean'])} ± "
                       f"{_g(r['mean'] - r['lo'])}{at(r)}",
                       margin=f"significantly > 0 at {pos} of {n} {claim.match or 'comparison'} values{skip}",
                       **base)


def _crossing(x0: float, d0: float, x1: float, d1: float) -> float:
    """Where the mean difference changes sign between two x values (interpolated in log x when
    both are positive, else linearly)."""
    w = d0 / (d0 - d1)
    if x0 > 0 and x1 > 0:
        return float(math.exp(math.log(x0) + w * (math.log(x1) - math.log(x0))))
    return float(x0 + w * (x1 - x0))


def _crossover(claim: Claim, g: pd.DataFrame, group: dict[str, Any]) -> GroupResult:
    rows = []
    for x, gx in g.groupby("x", sort=True):
        first, second = gx[gx[claim.compare] == claim.first], gx[gx[claim.compare] == claim.second]
        if first.empty or second.empty:
            continue
        d, half, _ = difference(first, second)
        rows.append({"x": float(x), "mean": d, "lo": d - half, "hi": d + half, "sign": _judge(d, half)})
    curve = pd.DataFrame(rows)
    base = {"group": group, "n_points": len(g), "seeds": g["seed"].nunique(), "curve": curve}
    if len(curve) < 2:
        return GroupResult(verdict="inconclusive", measured="no crossover measured",
                           margin=f"{len(curve)} x values hold both {claim.first} and {claim.second}; at least 2 "
                           "are needed", **base)
    xs, d, s = curve["x"].to_numpy(), curve["mean"].to_numpy(), curve["sign"].to_numpy()
    changes = [_crossing(xs[i], d[i], xs[i + 1], d[i + 1]) for i in range(len(d) - 1) if d[i] > 0 > d[i + 1]]
    back = [_crossing(xs[i], d[i], xs[i + 1], d[i + 1]) for i in range(len(d) - 1) if d[i] < 0 < d[i + 1]]
    pos, neg = np.flatnonzero(s > 0), np.flatnonzero(s < 0)
    diff = f"{claim.second} - {claim.first}"
    if len(pos) and len(neg) and pos.min() < neg.max():
        # the mean's first change of sign after first is significantly better
        after = [_crossing(xs[i], d[i], xs[i + 1], d[i + 1]) for i in range(pos.min(), len(d) - 1)
                 if d[i] > 0 > d[i + 1]]
        x_star = after[0] if after else math.nan
        base["crossing"] = x_star
        return GroupResult(verdict="holds", measured=f"crosses at {claim.x} ≈ {_g(x_star)}",
                           margin=f"{diff} > 0 significantly at {_at(claim, claim.x, xs[pos.min()])}, < 0 at "
                           f"{_at(claim, claim.x, xs[neg.max()])}", **base)
    if len(neg) and len(pos) and neg.min() < pos.max():
        x_back = back[0] if back else math.nan
        return GroupResult(verdict="fails", measured=f"reverse crossing at {claim.x} ≈ {_g(x_back)}",
                           margin=f"{claim.second} is significantly better at {_at(claim, claim.x, xs[neg.min()])} "
                           f"and {claim.first} at {_at(claim, claim.x, xs[pos.max()])}: the reverse of the prediction",
                           **base)
    if (s > 0).all() or (s < 0).all():
        who = claim.first if (s > 0).all() else claim.second
        r = curve.loc[curve["mean"].abs().idxmin()]
        return GroupResult(verdict="fails",
                           measured=f"no crossing: {diff} closest to 0 at {_at(claim, claim.x, r['x'])}: "
                           f"{_g(r['mean'])} ± {_g(r['mean'] - r['lo'])}",
                           margin=f"{who} is significantly better at every {claim.x}", **base)
    measured = f"mean crosses at {claim.x} ≈ {_g(changes[0])}" if changes else "no significant crossing"
    return GroupResult(verdict="inconclusive", measured=measured,
                       margin=f"{diff} significantly > 0 at {len(pos)}, < 0 at {len(neg)} of {len(curve)} x values",
                       **base)


def _minimum(claim: Claim, g: pd.DataFrame, group: dict[str, Any]) -> GroupResult:
    curve = _curve(g)
    base = {"group": group, "n_points": len(g), "seeds": g["seed"].nunique(), "curve": curve}
    if len(curve) < 3:
        return GroupResult(verdict="inconclusive", measured="no minimum",
                           margin=f"{len(curve)} x values: a U-shape needs at least 3", **base)
    j = int(curve["mean"].idxmin())
    xs = curve["x"].to_numpy()
    at = g.groupby("x")
    best = at.get_group(xs[j])
    r = curve.iloc[j]
    measured = f"argmin {_at(claim, claim.x, xs[j])}: {_g(r['mean'])} [{_g(r['lo'])}, {_g(r['hi'])}]"

    def above(i: int) -> tuple[int, str]:
        d, half, _ = difference(best, at.get_group(xs[i]))
        return _judge(d, half), f"{_at(claim, claim.x, xs[i])}: +{_g(d)} ± {_g(half)}"

    if 0 < j < len(curve) - 1:
        ends = [above(0), above(len(curve) - 1)]
        text = "; ".join(t for _, t in ends)
        if all(s > 0 for s, _ in ends):
            return GroupResult(verdict="holds", measured=measured, margin=f"end points above it: {text}", **base)
        return GroupResult(verdict="inconclusive", measured=measured,
                           margin=f"interior, but an end point is not significantly above it: {text}", **base)
    interior = [above(i) for i in range(1, len(curve) - 1)]
    if all(s > 0 for s, _ in interior):
        return GroupResult(verdict="fails", measured=measured,
                           margin=f"the minimum is at an end point, significantly below every interior point "
                           f"(closest: {min(interior, key=lambda t: t[1])[1]})", **base)
    return GroupResult(verdict="inconclusive", measured=measured,
                       margin="the mean's minimum is at an end point, but not significantly below every interior "
                       "point", **base)


MEASURES = {"slope": _slope, "bound": _bound, "ordering": _ordering, "crossover": _crossover, "minimum": _minimum}


def evaluate_claim(claim: Claim, frame: pd.DataFrame | None = None,
                   fits: Iterable[dict[str, Any]] | None = None) -> ClaimResult:
    """Measure ``claim`` on result rows ``frame`` (or fit records ``fits``) and judge it, per group of
    ``over``; inconclusive when the runs hold no rows it can measure; a :class:`ClaimError` when its
    rows mix cells."""
    try:
        df, notes = claim_rows(claim, frame, fits)
    except NoRows as absent:
        return ClaimResult(claim, [GroupResult(group={}, verdict="inconclusive", measured="no data",
                                               margin=absent.problem, n_points=0, seeds=0)])
    groups = []
    for key, g in (df.groupby(list(claim.over), sort=False) if claim.over else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        groups.append(MEASURES[claim.quantity](claim, g, dict(zip(claim.over, key, strict=True))))
    return ClaimResult(claim, groups, notes)
