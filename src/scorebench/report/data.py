"""What the report computes from a result table: cell means, noise floors, fronts, orders.

Everything here is a pure function of the table, so the figures and the text of a report
are reproducible from ``results.csv`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..results import ResultsError, read_results
from ..schema import CELL_LABELS, CELL_SIZES
from ..stats import fit_order

#: the columns that name a cell (a cell x seed is a cell plus ``seed``): the table's, sizes last for display
IDENTITY = [*CELL_LABELS, *CELL_SIZES]
#: the label columns whose order of first appearance in the table is kept in every figure
LABELS = [*CELL_LABELS, "metric"]


def load_tables(paths: Sequence[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """Read one or more result tables (run directories or ``results.csv`` files) into one frame.

    A row that several inputs hold (same cell, seed, metric and time) is taken from the last
    input that holds it, as when a run is repeated or completed; the notes say how many rows
    were superseded.  Raises :class:`ResultsError` naming the path for anything that is not a
    readable scorebench result table."""
    if not paths:
        raise ResultsError("no result tables given")
    frames = []
    for i, raw in enumerate(paths):
        path = Path(raw)
        if not path.exists():
            raise ResultsError(f"{path}: no such file or directory")
        try:
            df = read_results(path)
        except ResultsError:
            raise
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, TypeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ResultsError(f"{path}: not a scorebench result table ({type(exc).__name__}: {first})") from None
        df["input"] = i
        frames.append(df)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    notes = []
    if len(frames) > 1:
        key = [*IDENTITY, "seed", "metric", "t"]
        dup = frame.duplicated(subset=key, keep="last")
        if dup.any():
            notes.append(f"{int(dup.sum())} rows held by more than one input were taken from the last input "
                         "that holds them.")
            frame = frame[~dup].reset_index(drop=True)
    return frame, notes


def label_orders(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Each label column's values in order of first appearance (the suite's order)."""
    return {c: list(dict.fromkeys(frame[c].tolist())) for c in LABELS}


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with status ``ok`` and a finite value."""
    return frame[(frame["status"] == "ok") & np.isfinite(frame["value"].to_numpy(dtype=float))]


def cell_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per cell x metric (x time): value, CI ends, NFE, sampling seconds."""
    ok = ok_rows(frame)
    if ok.empty:
        return pd.DataFrame(columns=[*IDENTITY, "metric", "t", "value", "ci_low", "ci_high", "nfe", "sample_s",
                                     "n_seeds"])
    out = ok.groupby([*IDENTITY, "metric", "t"], dropna=False, sort=False).agg(
        value=("value", "mean"), ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"),
        nfe=("nfe", "mean"), sample_s=("sample_s", "mean"), n_seeds=("seed", "nunique"),
    )
    return out.reset_index()


def floor_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Noise floor per target x sample size x metric: mean and spread (standard deviation,
    ``ddof = 1``; zero for one seed) over seeds of the floor.  A floor is one number per
    (target, n_samples, seed, metric), shared by every cell that has them; metrics without a
    floor (score metrics) and zero floors (exact-law metrics) are left out."""
    ok = ok_rows(frame)
    ok = ok[ok["floor"].notna() & (ok["floor"] != 0)]
    cols = ["target", "n_samples", "metric", "floor_mean", "floor_sd", "floor_seeds"]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    per_seed = ok.groupby(["target", "n_samples", "metric", "seed"], sort=False)["floor"].mean().reset_index()
    g = per_seed.groupby(["target", "n_samples", "metric"], sort=False)["floor"]
    out = pd.DataFrame({
        "floor_mean": g.mean(),
        "floor_sd": g.std(ddof=1).fillna(0.0),
        "floor_seeds": g.size(),
    }).reset_index()
    return out[cols]


#: exact-law values below this are the float64 rounding level of the Bures formula (W2^2 is a
#: difference of traces of order 10, exact to about 1e-14, so W2 to about 1e-7): an exact sampler
EXACT_ROUNDING = 1e-6


def with_floors(means: pd.DataFrame, floors: pd.DataFrame) -> pd.DataFrame:
    """``means`` with ``floor_mean``, ``floor_sd`` and ``within_floor`` (the mean value is at or
    below the floor's mean plus its spread: the cell cannot be told apart from the truth at
    this sample size).  An exact-law value (zero-width interval) below :data:`EXACT_ROUNDING`
    is within the floor too: rounding, not discretisation error."""
    out = means.merge(floors, on=["target", "n_samples", "metric"], how="left", sort=False)
    top = (out["floor_mean"] + out["floor_sd"]).fillna(-np.inf)
    exact = (out["ci_low"] == out["value"]) & (out["ci_high"] == out["value"])
    rounding = exact & (out["value"] < EXACT_ROUNDING)
    out["within_floor"] = (out["floor_mean"].notna() & (out["value"] <= top)) | rounding
    return out


def pareto_front(x: Iterable[float], y: Iterable[float]) -> np.ndarray:
    """Boolean mask of the points no other point beats in both cost ``x`` and error ``y``:
    point ``i`` is on the front unless some ``j`` has ``x_j <= x_i``, ``y_j <= y_i`` and one
    of the two strictly smaller.  Equal points are all on the front."""
    xs = np.asarray(list(x), dtype=float)
    ys = np.asarray(list(y), dtype=float)
    no_worse = (xs[None, :] <= xs[:, None]) & (ys[None, :] <= ys[:, None])
    better = (xs[None, :] < xs[:, None]) | (ys[None, :] < ys[:, None])
    return ~(no_worse & better).any(axis=1)


#: a convergence fit needs this many distinct step counts above the noise floor
MIN_STEPS = 3

ORDER_KEYS = ["metric", "target", "process", "estimator", "time_grid", "n_samples", "sampler"]
#: what a convergence fit measures, by the start of its cells
FITTED_ERROR = {"exact": "discretisation (exact start)", "prior": "discretisation + initialisation (prior start)"}


def convergence_orders(means: pd.DataFrame) -> pd.DataFrame:
    """Fitted order per metric x (target, process, estimator, time grid, sample size) x sampler,
    for metrics without a time column, from the cell means over seeds (``with_floors`` output).

    Where a group has cells started from exact draws of ``p_T`` (``init = "exact"``), only they are
    fitted: their error is the discretisation error alone (plus the score's, for a perturbed score),
    while prior-start cells add the initialisation error, on which a probability-flow ODE levels off.
    ``init`` and ``error`` say which was fitted.  Points at or below the noise floor
    (``within_floor``) or not positive are left out: they measure the floor, not the discretisation.
    A group is fitted when at least :data:`MIN_STEPS` distinct step counts remain; ``used`` lists them."""
    d = means[means["t"].isna()]
    rows = []
    for key, g in d.groupby(ORDER_KEYS, sort=False):
        init = "exact" if (g["init"] == "exact").any() else "prior"
        g = g[g["init"] == init]
        if g["steps"].nunique() < MIN_STEPS:
            continue
        g = g.sort_values("steps")
        keep = (g["value"] > 0) & ~g["within_floor"]
        used = g[keep]
        row = dict(zip(ORDER_KEYS, key, strict=True))
        row.update(init=init, error=FITTED_ERROR.get(init, init), n_steps=int(g["steps"].nunique()),
                   used=" ".join(str(int(s)) for s in used["steps"]))
        if used["steps"].nunique() >= MIN_STEPS:
            slope, se, intercept = fit_order(used["steps"], used["value"])
            row.update(slope=slope, se=se, intercept=intercept, n_used=len(used))
        else:
            row.update(slope=math.nan, se=math.nan, intercept=math.nan, n_used=len(used))
        rows.append(row)
    cols = [*ORDER_KEYS, "init", "error", "n_steps", "used", "n_used", "slope", "se", "intercept"]
    return pd.DataFrame(rows, columns=cols)


def fmt(v: float) -> str:
    """Three significant digits, scientific outside [1e-3, 1e4)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e4:
        text = f"{v:.3g}"
        return f"{v:.0f}" if "e" in text else text
    return f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e+")


#: the parts of an error decomposition: (ablation, the source it removes, the part's column)
DECOMPOSITION_PARTS = (("exact_start", "initialisation", "init_part"), ("exact_score", "score", "score_part"),
                       ("fine_grid", "discretisation", "disc_part"))


def decomposition(means: pd.DataFrame, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The error decomposition of every decomposed cell (``[suite] decompose = true``) and metric
    without a time column, from the cell means over seeds.

    For a cell (``ablation = "none"``) with value ``total`` and its variants' values ``v_start``,
    ``v_score``, ``v_grid`` (the same cell with one source removed, by common random numbers), the
    part of each source is ``total - v_source``; ``residual = total - (init_part + score_part +
    disc_part)`` is what the three do not account for: their interactions, and the error left with
    all of them removed (the early-stopping bias of a ``reference = "data"`` metric, the noise
    floor of a sample metric, the fine grid's own discretisation error).  A variant a cell does not
    have (an exact start for an exact-start cell, ...) gives a zero part; a variant that ran but has
    no ok row in ``means`` (it failed: ``frame``, the rows of every status, says so) gives a NaN part
    and residual, never a zero; a cell with no variant at all is left out.  ``fine_steps`` is the
    fine grid's step count.
    """
    d = means[means["t"].isna()]
    base = d[d["ablation"] == "none"]
    labels = [*(c for c in IDENTITY if c != "ablation"), "metric"]
    cols = [*labels, "total", "without_start", "without_score", "without_grid", "fine_steps", "init_part",
            "score_part", "disc_part", "residual"]
    if base.empty or (d["ablation"] == "none").all():
        return pd.DataFrame(columns=cols)
    keys = [c for c in IDENTITY if c not in ("ablation", "steps", "init")] + ["metric"]
    variants = {a: d[d["ablation"] == a].set_index([*keys, "init", "steps"])["value"] for a, _, _ in
                DECOMPOSITION_PARTS}
    fine = d[d["ablation"] == "fine_grid"].set_index([*keys, "init"])[["steps", "value"]]
    fine = fine[~fine.index.duplicated()]
    ran: dict[str, set] = {a: set() for a, _, _ in DECOMPOSITION_PARTS}  # variants with rows of any status
    if frame is not None and "ablation" in frame.columns:
        for a in ran:
            rows_a = frame[(frame["ablation"] == a) & frame["t"].isna()]
            ran[a] = set(rows_a[[*keys, "init"]].itertuples(index=False, name=None)) | set(
                rows_a[[*keys, "init", "steps"]].itertuples(index=False, name=None))
    rows = []
    for r in base.to_dict("records"):
        key = tuple(r[k] for k in keys)
        start = variants["exact_start"].get((*key, "exact", r["steps"]), math.nan)
        score = variants["exact_score"].get((*key, r["init"], r["steps"]), math.nan)
        grid = fine.loc[(*key, r["init"])] if (*key, r["init"]) in fine.index else None
        without = {"without_start": start, "without_score": score,
                   "without_grid": math.nan if grid is None else float(grid["value"])}
        if all(math.isnan(v) for v in without.values()):
            continue
        total = float(r["value"])
        lookup = {"exact_start": (*key, "exact", r["steps"]), "exact_score": (*key, r["init"], r["steps"]),
                  "fine_grid": (*key, r["init"])}
        parts = {col: (math.nan if lookup[a] in ran[a] else 0.0) if math.isnan(v) else total - v
                 for (a, _, col), v in zip(DECOMPOSITION_PARTS, without.values(), strict=True)}
        rows.append({**{c: r[c] for c in labels}, "total": total, **without,
                     "fine_steps": math.nan if grid is None else float(grid["steps"]), **parts,
                     "residual": total - sum(parts.values())})
    return pd.DataFrame(rows, columns=cols)
