r"""A proposed sampler against the baselines of the same run: paired verdicts at matched cost.

    scorebench compare RUN --proposal LABEL [--baselines A,B,...] [--metrics M,...] [--level L] [--out FILE]

``RUN`` holds the proposal and the baselines, run by one suite: in each cell they share their
initial noise and Brownian increments (common random numbers), so per-seed differences are
paired and the intervals sharp.  A *context* is a cell without its sampler and step count
(target, process, score, time grid, start, sample size); within a context the proposal at each of
its step counts is compared three ways, per metric (and diffusion time, for score metrics):

* **matched steps**: against each baseline run at the same step count;
* **matched NFE**: against the *best* baseline at the proposal's NFE (score evaluations per
  particle).  A baseline's error at that NFE is its own value at that NFE or, between two of its
  step counts, interpolated linearly in ``log error`` against ``log NFE``, seed by seed (so the
  pairing survives); a baseline is never extrapolated beyond the NFEs it was run at.  The best is
  the baseline with the lowest mean interpolated error;
* **matched wall time**: the same with the cell's mean sampling seconds as the cost.  Wall times
  are noisy (identical samplers differ by 10-20% on a shared CPU), so here the tolerance also
  covers the change of the baseline's error over a cost :data:`TIME_REL` (20%) either side.

Each comparison is the paired difference ``D = proposal - baseline`` over seeds, with its
interval and the tolerance of :mod:`scorebench.compare` (the larger of a fraction of the
baseline's error, the noise floor, the seed-to-seed spread and an absolute minimum): the
proposal **wins** when ``D < -tol`` and the interval excludes 0, **loses** when ``D > tol`` and
the interval excludes 0, and **ties** otherwise.  A proposal seed that failed (diverged, error,
out of memory) where the baseline's did not is a loss.  Choosing the best baseline on the
same seeds favours the baseline (its estimate is the minimum of several): the verdicts against
the best are conservative for the proposal.  The ratio ``mean(proposal) / mean(best)`` is
reported beside each verdict.  This is not a regression test: the command exits 0 whatever the
verdicts (2 for bad input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .compare import BETTER, WORSE, Tolerance, difference, judge
from .results import ResultsError
from .schema import CELL_COLUMNS

#: a context: a cell without its sampler and step count
CONTEXT: tuple[str, ...] = tuple(c for c in CELL_COLUMNS if c not in ("sampler", "steps"))
WIN, LOSS, TIE = "win", "loss", "tie"
MATCHES = ("nfe", "time", "steps")
MATCH_NAMES = {"nfe": "matched NFE", "time": "matched wall time", "steps": "matched steps"}
#: relative uncertainty of a wall time, covered by the tolerance at matched wall time
TIME_REL = 0.2


class ProposalError(ResultsError):
    """A proposal or baseline label that the table does not hold."""


def _verdict(diff: float, half: float, tol: float) -> str:
    v = judge(diff, half, tol)
    return WIN if v == BETTER else LOSS if v == WORSE else TIE


@dataclass
class Series:
    """One sampler's rows in one context, metric and time: per step count, the cost coordinates
    and the per-seed values of its ``ok`` rows, and the seeds that failed."""

    steps: list[int]
    nfe: dict[int, float]
    time: dict[int, float]
    values: dict[int, dict[int, float]]
    floors: dict[int, float]
    failed: dict[int, set[int]]

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Series:
        steps = sorted(int(s) for s in rows["steps"].unique())
        out = cls(steps, {}, {}, {}, {}, {})
        for s, g in rows.groupby("steps", sort=True):
            s = int(s)
            good = (g["status"] == "ok") & np.isfinite(g["value"].to_numpy(dtype=float))  # an ok NaN is a failure
            ok = g[good]
            out.failed[s] = {int(x) for x in g.loc[~good, "seed"]}
            out.values[s] = {int(seed): float(v) for seed, v in zip(ok["seed"], ok["value"], strict=True)}
            out.nfe[s] = float(g["nfe"].mean()) if g["nfe"].notna().any() else math.nan
            out.time[s] = float(ok["sample_s"].mean()) if len(ok) else math.nan
            floors = ok["floor"].to_numpy(dtype=float)
            floors = floors[np.isfinite(floors)]
            out.floors[s] = float(floors.mean()) if len(floors) else math.nan
        return out

    def at(self, match: str, cost: float) -> tuple[dict[int, float], float] | None:
        """Per-seed values at ``cost`` (exact, or interpolated log-log between the two step counts
        that bracket it) and the floor there; ``None`` outside the range run."""
        coord = self.nfe if match == "nfe" else self.time
        points = sorted((coord[s], s) for s in self.steps if math.isfinite(coord[s]) and coord[s] > 0
                        and self.values[s])
        if not points or not math.isfinite(cost) or cost <= 0:
            return None
        for c, s in points:
            if math.isclose(c, cost, rel_tol=1e-9):
                return dict(self.values[s]), self.floors[s]
        below = [(c, s) for c, s in points if c < cost]
        above = [(c, s) for c, s in points if c > cost]
        if not below or not above:
            return None
        (c0, s0), (c1, s1) = below[-1], above[0]
        w = (math.log(cost) - math.log(c0)) / (math.log(c1) - math.log(c0))
        seeds = set(self.values[s0]) & set(self.values[s1])
        values = {}
        for seed in seeds:
            v0, v1 = self.values[s0][seed], self.values[s1][seed]
            if v0 > 0 and v1 > 0:
                values[seed] = math.exp((1 - w) * math.log(v0) + w * math.log(v1))
            else:  # an unbiased estimate can be <= 0: interpolate linearly
                values[seed] = (1 - w) * v0 + w * v1
        floor = (1 - w) * self.floors[s0] + w * self.floors[s1]
        return (values, floor) if values else None


def _frame(values: dict[int, float], floor: float) -> pd.DataFrame:
    return pd.DataFrame({"seed": list(values), "value": list(values.values()), "floor": floor,
                         "ci_low": math.nan, "ci_high": math.nan})


@dataclass
class ProposalComparison:
    """The outcome of :func:`compare_proposal`: one row per (context, metric, time, proposal step
    count, match, baseline) in ``units``, and the contexts the proposal was not run in."""

    proposal: str
    baselines: list[str]
    units: pd.DataFrame
    tolerance: Tolerance
    unmatched: list[str] = field(default_factory=list)
    source: str = ""

    def counts(self, match: str) -> dict[str, int]:
        u = self.units[(self.units["match"] == match) & self.units["best"]]
        return {v: int((u["verdict"] == v).sum()) for v in (WIN, LOSS, TIE)}

    def headline(self) -> str:
        c = self.counts("nfe")
        total = sum(c.values())
        ratios = self.units.loc[(self.units["match"] == "nfe") & self.units["best"], "ratio"].to_numpy(float)
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        gm = f"; error ratio to the best baseline {math.exp(np.log(ratios).mean()):.3g}x (geometric mean)" \
            if len(ratios) else ""
        t = self.counts("time")
        timed = f"; at matched wall time {t[WIN]} wins, {t[LOSS]} losses, {t[TIE]} ties" if sum(t.values()) else ""
        return (f"proposal {self.proposal} against the best of {', '.join(self.baselines)} at matched NFE: "
                f"{c[WIN]} wins, {c[LOSS]} losses, {c[TIE]} ties of {total} comparisons{gm}{timed}")

    def to_markdown(self, max_rows: int | None = None) -> str:
        return _markdown(self, max_rows)


def compare_proposal(
    frame: pd.DataFrame,
    proposal: str,
    baselines: Sequence[str] | None = None,
    *,
    metrics: Sequence[str] | None = None,
    tolerance: Tolerance | None = None,
) -> ProposalComparison:
    """Compare ``proposal`` (a sampler label of ``frame``) with ``baselines`` (default: every other
    sampler label) per context, metric and time; see the module docstring."""
    tolerance = tolerance or Tolerance()
    labels = list(dict.fromkeys(frame["sampler"]))
    if proposal not in labels:
        raise ProposalError(f"--proposal: no sampler labelled {proposal!r} in the table; samplers: {', '.join(labels)}")
    baselines = [b for b in labels if b != proposal] if baselines is None else list(baselines)
    unknown = [b for b in baselines if b not in labels]
    if unknown:
        raise ProposalError(f"--baselines: no sampler labelled {', '.join(map(repr, unknown))} in the table; "
                            f"samplers: {', '.join(labels)}")
    if proposal in baselines or not baselines:
        raise ProposalError("--baselines: give one or more samplers other than the proposal")
    df = frame[frame["sampler"].isin([proposal, *baselines])].copy()
    if metrics is not None:
        missing = [m for m in metrics if m not in set(df["metric"])]
        if missing:
            raise ProposalError(f"--metrics: no metric {', '.join(map(repr, missing))} in the table; "
                                f"available: {', '.join(sorted(set(df['metric'])))}")
        df = df[df["metric"].isin(metrics)]
    df["t_key"] = [-1.0 if pd.isna(t) else float(t) for t in df["t"]]
    rows: list[dict[str, Any]] = []
    unmatched = []
    for key, g in df.groupby([*CONTEXT, "metric", "t_key"], sort=False):
        ctx = dict(zip([*CONTEXT, "metric", "t_key"], key, strict=True))
        prop_rows = g[g["sampler"] == proposal]
        if prop_rows.empty:
            continue
        series = {b: Series.of(g[g["sampler"] == b]) for b in baselines if (g["sampler"] == b).any()}
        if not series:
            unmatched.append(_describe(ctx) + ": no baseline ran in this context")
            continue
        prop = Series.of(prop_rows)
        ok = g.loc[g["status"] == "ok", "exact"] if "exact" in g.columns else pd.Series([], dtype=bool)
        exact = bool(len(ok)) and bool(ok.all())  # an exact metric's rows are all marked exact
        for s in prop.steps:
            base = {**{k: ctx[k] for k in CONTEXT}, "metric": ctx["metric"],
                    "t": math.nan if ctx["t_key"] < 0 else ctx["t_key"], "steps": s, "nfe": prop.nfe[s],
                    "sample_s": prop.time[s]}
            for match in MATCHES:
                candidates = {}
                for b, ser in series.items():
                    if match == "steps":
                        got = (ser.values[s], ser.floors[s]) if ser.values.get(s) else None
                        failed = ser.failed.get(s, set())
                    else:
                        got = ser.at(match, prop.nfe[s] if match == "nfe" else prop.time[s])
                        failed = set()
                    if got is not None or failed:
                        candidates[b] = (got, failed)
                if not candidates:
                    continue
                units = [_unit(base, match, b, prop.values[s], prop.failed[s], got, failed, prop.floors[s],
                               tolerance, _time_slack(series[b], prop.time[s], got) if match == "time" else 0.0,
                               exact=exact)
                         for b, (got, failed) in candidates.items()]
                finite = [u for u in units if math.isfinite(u["baseline_mean"])]
                best = min(finite, key=lambda u: u["baseline_mean"]) if finite else None
                for u in units:
                    u["best"] = u is best
                rows.extend(units)
    columns = [*CONTEXT, "metric", "t", "steps", "nfe", "sample_s", "match", "baseline", "best", "proposal_mean",
               "baseline_mean", "ratio", "diff", "half", "ci_low", "ci_high", "tol", "floor", "seeds", "verdict",
               "note"]
    units = pd.DataFrame(rows, columns=columns)
    return ProposalComparison(proposal, baselines, units, tolerance, unmatched)


def _time_slack(series: Series, cost: float, got: tuple[dict[int, float], float] | None) -> float:
    """How much the baseline's mean error changes when its cost moves :data:`TIME_REL` either side."""
    if got is None:
        return 0.0
    here = float(np.mean(list(got[0].values())))
    moved = [series.at("time", cost * f) for f in (1 + TIME_REL, 1 / (1 + TIME_REL))]
    return max((abs(float(np.mean(list(m[0].values()))) - here) for m in moved if m is not None), default=0.0)


def _unit(base: dict[str, Any], match: str, baseline: str, prop_values: dict[int, float], prop_failed: set[int],
          got: tuple[dict[int, float], float] | None, base_failed: set[int], prop_floor: float,
          tolerance: Tolerance, slack: float = 0.0, exact: bool = False) -> dict[str, Any]:
    row = {**base, "match": match, "baseline": baseline, "best": False, "proposal_mean": math.nan,
           "baseline_mean": math.nan, "ratio": math.nan, "diff": math.nan, "half": math.nan, "ci_low": math.nan,
           "ci_high": math.nan, "tol": math.nan, "floor": math.nan, "seeds": 0, "verdict": TIE, "note": ""}
    if prop_values:
        row["proposal_mean"] = float(np.mean(list(prop_values.values())))
    if got is None:
        row.update(verdict=WIN if prop_values else TIE, note=f"{baseline} failed (seed {_seeds(base_failed)})")
        return row
    values, floor = got
    row["baseline_mean"] = float(np.mean(list(values.values())))
    lost = sorted(prop_failed & set(values))
    if lost or not prop_values:
        row.update(verdict=LOSS, note=f"the proposal failed (seed {_seeds(set(lost) or prop_failed)})")
        return row
    d = difference(_frame(values, floor), _frame(prop_values, prop_floor), tolerance.level)
    floor_mean = np.nanmean([floor, prop_floor]) if math.isfinite(floor) or math.isfinite(prop_floor) else math.nan
    tol = max(tolerance.of(d["base"], float(floor_mean), exact=exact,
                           spread=d["spread"]), slack)
    row.update(proposal_mean=d["new"], baseline_mean=d["base"], diff=d["diff"], half=d["half"], tol=tol,
               floor=float(floor_mean), seeds=d["seeds"], verdict=_verdict(d["diff"], d["half"], tol),
               ratio=d["new"] / d["base"] if d["base"] > 0 and d["new"] >= 0 else math.nan)
    if math.isfinite(d["half"]):
        row.update(ci_low=d["diff"] - d["half"], ci_high=d["diff"] + d["half"])
    if match != "steps" and base_failed:
        row["note"] = f"{baseline} failed at some step counts"
    return row


def _seeds(seeds: set[int]) -> str:
    return ", ".join(map(str, sorted(seeds))) or "all"


def _describe(ctx: dict[str, Any]) -> str:
    start = "" if ctx.get("init", "prior") == "prior" else f", {ctx['init']} start"
    return (f"{ctx['target']}/{ctx['process']}/{ctx['estimator']} {ctx['time_grid']}{start} n={ctx['n_samples']}"
            f" {ctx['metric']}")


def _g(x: float, spec: str = ".3g") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _markdown(c: ProposalComparison, max_rows: int | None) -> str:
    from .compare import _table

    tol = c.tolerance
    lines = [f"# scorebench compare: proposal `{c.proposal}`", ""]
    if c.source:
        lines += [f"- run: {c.source}"]
    lines += [
        f"- baselines: {', '.join(c.baselines)}",
        f"- verdict: win / loss when proposal - baseline is beyond the tolerance max({tol.rel_tol:g} x |baseline| "
        f"({tol.exact_rel_tol:g} for exact metrics), {tol.floor_factor:g} x noise floor, {tol.spread_factor:g} x "
        f"seed-to-seed sd, {tol.abs_tol:g}) and its {100 * tol.level:g}% paired interval excludes 0; tie otherwise",
        "- every metric is an error: lower is better; ratio = proposal / baseline",
        "", f"**{c.headline()}**", "",
    ]
    for match in MATCHES:
        u = c.units[c.units["match"] == match]
        if match != "steps":
            u = u[u["best"]]
        if u.empty:
            continue
        counts = u["verdict"].value_counts()
        what = "the best baseline" if match != "steps" else "each baseline"
        lines += [f"## Against {what} at {MATCH_NAMES[match]}", "",
                  f"{counts.get(WIN, 0)} wins, {counts.get(LOSS, 0)} losses, {counts.get(TIE, 0)} ties.", ""]
        header = ["verdict", "target", "process", "score", "grid", "n", "metric", "steps", "NFE", "baseline",
                  "proposal", "baseline value", "ratio", f"{100 * tol.level:g}% CI of the difference", "tolerance",
                  "seeds", "note"]
        order = {LOSS: 0, TIE: 1, WIN: 2}
        u = u.assign(_o=u["verdict"].map(order)).sort_values(["_o", "ratio"], ascending=[True, False], kind="stable")
        shown = u if max_rows is None else u.head(max_rows)
        body = []
        for r in shown.itertuples(index=False):
            grid = r.time_grid if r.init == "prior" else f"{r.time_grid}, {r.init} start"
            metric = r.metric if math.isnan(r.t) else f"{r.metric}@t={r.t:.3g}"
            ci = f"[{_g(r.ci_low, '+.3g')}, {_g(r.ci_high, '+.3g')}]" if math.isfinite(r.ci_low) else ""
            body.append([f"**{r.verdict}**" if r.verdict != TIE else r.verdict, r.target, r.process, r.estimator,
                         grid, str(r.n_samples), metric, str(r.steps), _g(r.nfe, ".4g"), r.baseline,
                         _g(r.proposal_mean, ".4g"), _g(r.baseline_mean, ".4g"), _g(r.ratio), ci, _g(r.tol),
                         str(r.seeds), r.note])
        lines += _table(header, body)
        if max_rows is not None and len(u) > max_rows:
            lines += ["", f"... {len(u) - max_rows} more rows (see --max-rows)"]
        lines.append("")
    if c.unmatched:
        lines += ["## Not compared", "", *[f"- {x}" for x in c.unmatched], ""]
    return "\n".join(lines).rstrip() + "\n"
