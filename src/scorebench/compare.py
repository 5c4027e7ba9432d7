r"""Compare two result tables cell by cell: paired differences, confidence intervals, verdicts.

    scorebench compare BASE NEW [--metrics M,...] [--rel-tol R] [--exact-rel-tol E] [--floor-factor F]
                                [--spread-factor S] [--abs-tol A] [--level L] [--time-factor X]
                                [--require-all] [--out FILE]
    scorebench compare RUN --proposal LABEL [--baselines A,B,...] [tolerance options] [--out FILE]

The second form, a new sampler against the baselines of one run, is :mod:`scorebench.proposal`;
the first, described here, is a regression test of one run against an earlier one.

``BASE`` and ``NEW`` are run directories or ``results.csv`` files.  Rows are matched by the
cell's identity -- target, process, estimator, sampler (their labels), steps, time grid,
sample size -- and by metric, diffusion time ``t`` (score metrics) and seed.  Labels, not
the ``cell_id`` hash, are the key, so that a suite edited under the same labels (another
step formula, a noisier score) is compared with its earlier self; a changed component spec
is noted beside the row.

**Difference and interval.**  Every metric is an error (lower is better).  For each
(cell, metric, t) the difference is ``D = mean(NEW) - mean(BASE)``:

* seeds common to both sides (two or more): the paired Student-t interval
  ``Dbar +- t_{k-1} s_D / sqrt(k)`` over the per-seed differences ``D_i = new_i - base_i``.
  The runner gives both sides of a seed the same initial noise and Brownian increments
  (common random numbers) when the suite seed and the components' specs agree, so the
  pairs are strongly correlated and the interval is sharp; with other suite seeds the pairs
  are independent and the interval is still valid, only wider.
* disjoint seeds, two or more on each side: Welch's interval (Welch 1947), with the
  Welch--Satterthwaite degrees of freedom.
* one seed on a side: the half-widths ``h`` of the sides' own intervals (the runner's 95%
  bootstrap interval over particles for a single seed, rescaled to ``level`` by the normal
  quantiles; the t interval of the mean for several seeds) are combined as
  ``sqrt(h_BASE^2 + h_NEW^2)``; when neither side has an interval, the tolerance alone decides.

All intervals have confidence ``level``, 99% by default: a suite compares hundreds of
(cell, metric, t), and with three seeds and no shared noise (another device, another suite
seed, a retrained estimator) the 95% intervals of several would exclude 0 by chance alone.

**Verdict.**  With ``floor`` the metric's noise floor (the same metric between two
independent target samples of the cell's size), ``spread`` the pooled standard deviation
over seeds of the two sides, ``sqrt((s_BASE^2 + s_NEW^2) / 2)`` (the cell's own seed-to-seed
noise: fit-to-fit variation of a learned estimator, sampling noise of a sampler), and

    tol = max(rel_tol * |mean(BASE)|, floor_factor * floor, spread_factor * spread, abs_tol),

a row is *worse* when ``D > tol`` and the interval excludes 0, *better* when ``D < -tol``
and the interval excludes 0, and *indistinguishable* otherwise: a difference inside the
tolerance is not reported as a change even when it is significant (an error below the
Monte-Carlo floor of the cell's sample size, or below its seed-to-seed noise, cannot be
resolved by that cell).  Metrics without sampling noise (exact laws: rows the runner marks
``exact``) use ``exact_rel_tol`` instead of ``rel_tol``.  A seed whose rows are
not ``ok`` in NEW (diverged, error, out of memory) while they were ``ok`` in BASE makes the
row *worse*; the reverse makes it *better*; not ``ok`` on both sides, *failing*.  A NaN or inf
value marked ``ok`` counts as not ``ok`` (an error), never as a number to compare.

**Timing.**  ``sample_s`` and ``fit_s`` are compared per cell as the ratio of their means
over seeds; they gate only with ``time_factor`` (a ratio above it is worse), and only
where the BASE time is at least ``time_min`` seconds (shorter times are clock noise).

**Metric versions.**  Every metric has a version (``provenance.json`` records
``metric_versions``); it changes when the metric's numbers change (another solver, another
convention).  Values of two versions are not comparable, so the rows of a metric whose version
differs between BASE and NEW -- or is recorded on one side only (a table without provenance, or
from before versions were recorded, against one with) -- get the verdict *not compared*, with the
reason "metric version changed (1 -> 2)" (``?`` for a side that records none): their values and
difference are shown, never judged better or worse, and they do not gate the exit code.  A seed
``ok`` in BASE that fails in NEW is still *worse* (a failure is not a change of scale), and the
reverse *better*.  When neither side records versions (two bare tables), rows are compared as
before.  To compare across a version change, rerun BASE with the current code.

Exit codes of the command: 1 when a tracked metric (``--metrics``, default all) is worse,
or a timing ratio exceeds ``--time-factor``; 0 otherwise; 2 for bad input (a missing or
malformed table, an unknown metric, no cell in common).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .results import TABLE_FILE, ResultsError, read_provenance, read_results
from .schema import CELL_COLUMNS, label
from .stats import normal_quantile, t_half_width, welch_half_width

TIMING_COLUMNS: tuple[str, ...] = ("sample_s", "fit_s")
WORSE, BETTER, SAME, FAILING = "worse", "better", "indistinguishable", "failing"
#: the verdict of the rows of a metric whose version differs between the two runs
NOT_COMPARED = "not compared"
#: sort order of verdicts in the report: worst first
_RANK = {WORSE: 0, FAILING: 1, SAME: 2, BETTER: 3, NOT_COMPARED: 4}


class CompareError(ResultsError):
    """Two tables that cannot be compared (no cell in common, an unknown metric)."""


def _check_non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"compare: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Tolerance:
    """How large a difference must be to count as a change (see the module docstring).

    ``rel_tol`` and ``exact_rel_tol`` are fractions of ``|mean(BASE)|`` for noisy and for
    exact (noise-free) metrics, ``floor_factor`` multiplies the noise floor, ``spread_factor``
    the pooled seed-to-seed standard deviation, ``abs_tol`` is an absolute minimum, and
    ``level`` is the confidence level of the intervals."""

    rel_tol: float = 0.1
    exact_rel_tol: float = 0.01
    floor_factor: float = 1.0
    spread_factor: float = 1.0
    abs_tol: float = 0.0
    level: float = 0.99

    def __post_init__(self) -> None:
        for name in ("rel_tol", "exact_rel_tol", "floor_factor", "spread_factor", "abs_tol"):
            _check_non_negative(name, getattr(self, name))
        if isinstance(self.level, bool) or not isinstance(self.level, int | float) or not 0 < self.level < 1:
            raise ValueError(f"compare: level must be a number in (0, 1), got {self.level!r}")

    def of(self, base: float, floor: float, exact: bool, spread: float = 0.0) -> float:
        """``max(rel * |base|, floor_factor * floor, spread_factor * spread, abs_tol)``, ``rel``
        by the metric's kind (a NaN floor or spread counts as 0)."""
        rel = self.exact_rel_tol if exact else self.rel_tol
        floor_term = self.floor_factor * floor if math.isfinite(floor) else 0.0
        spread_term = self.spread_factor * spread if math.isfinite(spread) else 0.0
        return max(rel * abs(base), floor_term, spread_term, self.abs_tol)


@dataclass
class Sample:
    """The ``ok`` rows of one (cell, metric, t) on one side: per seed, the value and the
    half-width of the row's own interval (NaN where it has none), and the noise floors."""

    values: dict[int, float] = field(default_factory=dict)
    halves: dict[int, float] = field(default_factory=dict)
    floors: list[float] = field(default_factory=list)
    exact: bool = True

    def add(self, seed: int, value: float, floor: float, ci_low: float, ci_high: float, exact: bool) -> None:
        if seed in self.values:  # a repeated seed (concatenated tables): keep the mean
            self.values[seed] = (self.values[seed] + value) / 2
        else:
            self.values[seed] = value
        self.halves[seed] = (ci_high - ci_low) / 2
        self.floors.append(floor)
        self.exact = self.exact and exact

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Sample:
        sample = cls()
        exact = rows["exact"] if "exact" in rows.columns else [False] * len(rows)
        for seed, value, floor, lo, hi, ex in zip(rows["seed"], rows["value"], rows["floor"], rows["ci_low"],
                                                  rows["ci_high"], exact, strict=True):
            sample.add(int(seed), float(value), float(floor), float(lo), float(hi), bool(ex))
        return sample


#: the level of the intervals the runner stores with single-seed rows
ROW_LEVEL = 0.95


def _own_half(sample: Sample, seeds: Sequence[int], level: float) -> float:
    """A side's own half-width: the t interval of its mean over several seeds, or for one seed
    the row's own interval (the runner's 95% bootstrap over particles, rescaled to ``level``
    by the normal quantiles, or zero for an exact law)."""
    if len(seeds) >= 2:
        return t_half_width(np.array([sample.values[s] for s in seeds]), level)
    halves = [sample.halves[s] for s in seeds if math.isfinite(sample.halves[s])]
    if not halves:
        return math.nan
    return float(np.mean(halves)) * normal_quantile(0.5 + level / 2) / normal_quantile(0.5 + ROW_LEVEL / 2)


def _spread(sample: Sample, seeds: Sequence[int]) -> float:
    """Standard deviation over seeds (NaN for one seed)."""
    return float(np.std([sample.values[s] for s in seeds], ddof=1)) if len(seeds) >= 2 else math.nan


def _pooled(sb: float, sn: float) -> float:
    both = [s for s in (sb, sn) if math.isfinite(s)]
    return math.sqrt(sum(s * s for s in both) / len(both)) if both else math.nan


def _difference(b: Sample, n: Sample, level: float) -> dict[str, Any]:
    common = sorted(set(b.values) & set(n.values))
    if len(common) >= 2:
        bv = np.array([b.values[s] for s in common])
        d = np.array([n.values[s] for s in common]) - bv
        return {"base": float(bv.mean()), "new": float(bv.mean() + d.mean()), "diff": float(d.mean()),
                "half": t_half_width(d, level), "method": "paired t", "seeds": len(common),
                "spread": _pooled(_spread(b, common), _spread(n, common))}
    if len(b.values) >= 2 and len(n.values) >= 2:
        bv, nv = np.array(list(b.values.values())), np.array(list(n.values.values()))
        return {"base": float(bv.mean()), "new": float(nv.mean()), "diff": float(nv.mean() - bv.mean()),
                "half": welch_half_width(bv, nv, level), "method": "Welch t", "seeds": min(len(bv), len(nv)),
                "spread": _pooled(_spread(b, list(b.values)), _spread(n, list(n.values)))}
    sb, sn = (common, common) if common else (sorted(b.values), sorted(n.values))
    mb, mn = float(np.mean([b.values[s] for s in sb])), float(np.mean([n.values[s] for s in sn]))
    hb, hn = _own_half(b, sb, level), _own_half(n, sn, level)
    half = math.hypot(hb, hn) if math.isfinite(hb) and math.isfinite(hn) else math.nan
    return {"base": mb, "new": mn, "diff": mn - mb, "half": half,
            "method": "own CIs" if math.isfinite(half) else "no CI", "seeds": min(len(sb), len(sn)),
            "spread": _pooled(_spread(b, sb), _spread(n, sn))}


def difference(base: pd.DataFrame, new: pd.DataFrame, level: float = 0.99) -> dict[str, Any]:
    """Difference ``mean(NEW) - mean(BASE)`` of one (cell, metric, t) and its interval.

    ``base`` and ``new`` hold the ``ok`` rows of each side (columns ``seed``, ``value``,
    ``floor``, ``ci_low``, ``ci_high`` and optionally ``exact``).  Returns ``base``, ``new`` (the means compared),
    ``diff``, ``half`` (half-width of the interval, NaN when there is none), ``method``
    (``paired t``, ``Welch t``, ``own CIs`` or ``no CI``), ``seeds`` (seeds used per side) and
    ``spread`` (pooled standard deviation over seeds, NaN with one seed a side)."""
    return _difference(Sample.of(base), Sample.of(new), level)


def judge(diff: float, half: float, tol: float) -> str:
    """``worse`` / ``better`` when ``|diff| > tol`` and the interval ``diff +- half`` excludes 0
    (a missing interval, ``half`` NaN, leaves the tolerance alone to decide)."""
    significant = not math.isfinite(half) or abs(diff) > half
    if significant and diff > tol:
        return WORSE
    if significant and diff < -tol:
        return BETTER
    return SAME


# ---------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------


def _t_key(t: float) -> str:
    return "" if pd.isna(t) else f"{float(t):.10g}"


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame.copy()
    df["t_key"] = [_t_key(t) for t in df["t"]]
    df["steps"] = df["steps"].astype(int)
    df["n_samples"] = df["n_samples"].astype(int)
    return df


def _cell_of(row: Any) -> tuple:
    return tuple(getattr(row, c) for c in CELL_COLUMNS)


def _ok(df: pd.DataFrame) -> pd.Series:
    """Rows that count as ``ok``: status ``ok`` and a finite value.  A NaN or inf value marked
    ``ok`` (a table written by an older runner, or by hand) is a failed row, never a number to
    compare: it would make every difference NaN and the verdict "indistinguishable"."""
    return (df["status"] == "ok") & np.isfinite(pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float))


def _status_by_seed(df: pd.DataFrame) -> dict[tuple, dict[int, tuple[str, str]]]:
    """(cell, metric) -> seed -> (status, message); a seed is ``ok`` when all its rows are.
    A row marked ``ok`` with a non-finite value counts as an ``error`` (see :func:`_ok`)."""
    out: dict[tuple, dict[int, tuple[str, str]]] = {}
    ok = _ok(df).to_numpy()
    for row, row_ok in zip(df.itertuples(index=False), ok, strict=True):
        key = (*_cell_of(row), row.metric)
        seeds = out.setdefault(key, {})
        current = seeds.get(int(row.seed))
        if current is None or current[0] == "ok":
            if row.status == "ok" and not row_ok:
                seeds[int(row.seed)] = ("error", f"value {row.value} recorded with status ok")
            else:
                seeds[int(row.seed)] = (str(row.status), str(row.message))
    return out


def _mean_finite(values: Iterable[float]) -> float:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    return float(arr.mean()) if len(arr) else math.nan


def _collect(df: pd.DataFrame) -> dict[tuple, dict[str, Sample]]:
    """(cell, metric) -> t key -> :class:`Sample` of the ``ok`` rows of a table (finite values only)."""
    out: dict[tuple, dict[str, Sample]] = {}
    ok = df[_ok(df)]
    if "exact" not in ok.columns:  # a frame built by hand, not read from a table: nothing is marked exact
        ok = ok.assign(exact=False)
    columns = [*CELL_COLUMNS, "metric", "t_key", "seed", "value", "floor", "ci_low", "ci_high", "exact"]
    for *key, tk, seed, value, floor, lo, hi, exact in ok[columns].itertuples(index=False, name=None):
        sample = out.setdefault(tuple(key), {}).setdefault(tk, Sample())
        sample.add(int(seed), float(value), float(floor), float(lo), float(hi), bool(exact))
    return out


def _describe_cell(cell: tuple) -> str:
    c = dict(zip(CELL_COLUMNS, cell, strict=True))
    start = "" if c["init"] == "prior" else f" {c['init']} start"
    variant = "" if c.get("ablation", "none") == "none" else f" ({c['ablation']})"
    return (f"{c['target']}/{c['process']}/{c['estimator']}/{c['sampler']} steps={c['steps']} "
            f"{c['time_grid']}{start}{variant} n={c['n_samples']}")


@dataclass
class Comparison:
    """The outcome of :func:`compare`: one row per (cell, metric, t) in ``units``, one row
    per cell in ``timing``, and what could not be compared."""

    units: pd.DataFrame
    timing: pd.DataFrame
    only_base: list[tuple]
    only_new: list[tuple]
    metrics_only_base: list[tuple]
    metrics_only_new: list[tuple]
    tolerance: Tolerance
    tracked: frozenset[str] | None = None
    time_factor: float | None = None
    time_min: float = 0.01
    require_all: bool = False
    notes: list[str] = field(default_factory=list)
    base_label: str = "BASE"
    new_label: str = "NEW"
    #: metric -> (BASE version, NEW version) for the metrics whose versions differ (``None``: not recorded)
    version_changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def gated(self) -> pd.DataFrame:
        """The rows of tracked metrics."""
        if self.tracked is None:
            return self.units
        return self.units[self.units["metric"].isin(self.tracked)]

    def regressions(self) -> pd.DataFrame:
        """Tracked rows whose verdict is ``worse``."""
        g = self.gated()
        return g[g["verdict"] == WORSE]

    def slow_cells(self) -> pd.DataFrame:
        """Cells whose sampling or fit time grew beyond ``time_factor`` (empty when not gated)."""
        if self.time_factor is None or self.timing.empty:
            return self.timing.iloc[0:0]
        return self.timing[self.timing["verdict"] == WORSE]

    def missing_from_new(self) -> int:
        tracked = self.tracked
        metrics = [m for m in self.metrics_only_base if tracked is None or m[-1] in tracked]
        return len(self.only_base) + len(metrics)

    @property
    def exit_code(self) -> int:
        """1 when NEW is worse on a tracked metric (or slower beyond ``time_factor``, or lacks
        cells of BASE under ``require_all``), else 0."""
        bad = len(self.regressions()) > 0 or len(self.slow_cells()) > 0
        if self.require_all and self.missing_from_new():
            bad = True
        return 1 if bad else 0

    def counts(self) -> dict[str, int]:
        g = self.gated()
        return {v: int((g["verdict"] == v).sum()) for v in (WORSE, BETTER, SAME, FAILING, NOT_COMPARED)}

    def version_reasons(self) -> list[str]:
        """One reason per metric whose version changed, ``sinkhorn: metric version changed (1 -> 2)``."""
        return [f"{metric}: {version_reason(*versions)}" for metric, versions in sorted(self.version_changes.items())]

    def summary(self) -> str:
        c = self.counts()
        total = sum(c.values()) - c[NOT_COMPARED]
        status = "REGRESSION" if self.exit_code else "OK"
        parts = [f"{c[WORSE]} worse", f"{c[BETTER]} better", f"{c[SAME]} indistinguishable"]
        if c[FAILING]:
            parts.append(f"{c[FAILING]} failing on both sides")
        line = f"scorebench compare: {status}: {total} comparisons ({', '.join(parts)})"
        if self.tracked is not None:
            line += f" on tracked metrics {', '.join(sorted(self.tracked))}"
        if c[NOT_COMPARED]:
            line += f"; {c[NOT_COMPARED]} not compared ({'; '.join(self.version_reasons())})"
        if self.only_base or self.only_new:
            line += f"; cells only in BASE {len(self.only_base)}, only in NEW {len(self.only_new)}"
        ratios = self.timing["sample_ratio"].to_numpy(dtype=float) if len(self.timing) else np.array([])
        ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
        if len(ratios):
            line += f"; sampling time NEW/BASE {math.exp(np.log(ratios).mean()):.2f}x (geometric mean)"
        slow = len(self.slow_cells())
        if slow:
            line += f"; {slow} cells slower than {self.time_factor:g}x"
        if self.require_all and self.missing_from_new():
            line += f"; {self.missing_from_new()} cells or metrics of BASE missing from NEW"
        return line

    def to_markdown(self, max_rows: int | None = None) -> str:
        return _markdown(self, max_rows)


def compare(
    base: pd.DataFrame,
    new: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    tolerance: Tolerance | None = None,
    time_factor: float | None = None,
    time_min: float = 0.01,
    require_all: bool = False,
    base_versions: Mapping[str, Any] | None = None,
    new_versions: Mapping[str, Any] | None = None,
) -> Comparison:
    """Compare two result tables (as read by :func:`scorebench.results.read_results`).

    ``base_versions`` and ``new_versions`` are the runs' ``metric_versions`` (from their
    provenance; ``None`` where a side records none): the rows of a metric whose version differs,
    or is recorded on one side only, are *not compared* (see the module docstring).

    Raises :class:`CompareError` when no cell is in both tables (the message names the cells
    of each side) or when ``metrics`` names a metric that neither table has."""
    tolerance = tolerance or Tolerance()
    if time_factor is not None and (_check_non_negative("time_factor", time_factor) <= 0):
        raise ValueError(f"compare: time_factor must be a positive number, got {time_factor!r}")
    _check_non_negative("time_min", time_min)
    b, n = _prepare(base), _prepare(new)
    tracked = None
    if metrics is not None:
        known = set(b["metric"]) | set(n["metric"])
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise CompareError(
                f"--metrics: no metric {', '.join(map(repr, unknown))} in either table; "
                f"available: {', '.join(sorted(known)) or '(none)'}"
            )
        tracked = frozenset(metrics)

    cells_b = {_cell_of(r) for r in b.itertuples(index=False)}
    cells_n = {_cell_of(r) for r in n.itertuples(index=False)}
    common = cells_b & cells_n
    only_base, only_new = sorted(cells_b - cells_n, key=str), sorted(cells_n - cells_b, key=str)
    if not common:
        raise CompareError(_no_overlap_message(only_base, only_new))

    status_b, status_n = _status_by_seed(b), _status_by_seed(n)
    keys_b = {k for k in status_b if k[:-1] in common}
    keys_n = {k for k in status_n if k[:-1] in common}
    metrics_only_base = sorted(keys_b - keys_n, key=str)
    metrics_only_new = sorted(keys_n - keys_b, key=str)

    samples_b, samples_n = _collect(b), _collect(n)
    changed = _version_changes({k[-1] for k in keys_b & keys_n}, base_versions, new_versions)
    ids_b = b.groupby(list(CELL_COLUMNS), sort=False)["cell_id"].first().to_dict()
    ids_n = n.groupby(list(CELL_COLUMNS), sort=False)["cell_id"].first().to_dict()

    rows = []
    for key in sorted(keys_b & keys_n, key=str):
        cell, metric = key[:-1], key[-1]
        sb, sn = status_b[key], status_n[key]
        gb, gn = samples_b.get(key, {}), samples_n.get(key, {})
        seeds = set(sb) & set(sn)
        if seeds:
            failed = sorted(s for s in seeds if sb[s][0] == "ok" and sn[s][0] != "ok")
            fixed = sorted(s for s in seeds if sb[s][0] != "ok" and sn[s][0] == "ok")
        else:  # no seed in common: compare the sides as wholes
            base_ok, new_ok = all(v[0] == "ok" for v in sb.values()), all(v[0] == "ok" for v in sn.values())
            failed = sorted(s for s, v in sn.items() if v[0] != "ok") if base_ok else []
            fixed = sorted(s for s, v in sn.items() if v[0] == "ok") if new_ok and not base_ok else []
        spec_note = "spec changed" if ids_b.get(cell) != ids_n.get(cell) else ""
        t_keys = list(dict.fromkeys([*gb, *gn])) or [""]
        for tk in sorted(t_keys, key=lambda s: float(s) if s else -1.0):
            ub, un = gb.get(tk), gn.get(tk)
            row = {**dict(zip(CELL_COLUMNS, cell, strict=True)), "metric": metric,
                   "t": float(tk) if tk else math.nan, "base": math.nan, "new": math.nan, "diff": math.nan,
                   "half": math.nan, "ci_low": math.nan, "ci_high": math.nan, "tol": math.nan,
                   "floor": math.nan, "spread": math.nan, "exact": False, "method": "", "seeds": 0,
                   "severity": math.nan}
            notes = [spec_note] if spec_note else []
            if ub is not None and un is not None:
                d = _difference(ub, un, tolerance.level)
                floor = _mean_finite([*ub.floors, *un.floors])
                exact = ub.exact and un.exact
                tol = tolerance.of(d["base"], floor, exact, d["spread"])
                half = d["half"]
                verdict = judge(d["diff"], half, tol)
                row.update(base=d["base"], new=d["new"], diff=d["diff"], half=half, floor=floor, exact=exact,
                           spread=d["spread"],
                           tol=tol, method=d["method"], seeds=d["seeds"],
                           severity=d["diff"] / tol if tol > 0 else math.copysign(math.inf, d["diff"])
                           if d["diff"] != 0 else 0.0)
                if math.isfinite(half):
                    row.update(ci_low=d["diff"] - half, ci_high=d["diff"] + half)
            else:
                verdict = FAILING
                if ub is not None:
                    row.update(base=float(np.mean(list(ub.values.values()))))
                if un is not None:
                    row.update(new=float(np.mean(list(un.values.values()))))
            if failed:
                verdict = WORSE
                row["severity"] = math.inf
                st, msg = sn[failed[0]]
                notes.append(f"{st} in NEW (seed {', '.join(map(str, failed))}): {msg}"[:160])
            elif fixed:
                verdict = BETTER if verdict != WORSE else verdict
                notes.append(f"ok in NEW, not in BASE (seed {', '.join(map(str, fixed))})")
            elif verdict == FAILING:
                st = next((v[0] for v in sn.values() if v[0] != "ok"), "?")
                notes.append(f"not ok on both sides ({st})")
            if metric in changed:  # values of two versions of a metric are not comparable
                if not (failed or fixed) and verdict != FAILING:
                    verdict = NOT_COMPARED
                    row["severity"] = math.nan
                notes.insert(0, version_reason(*changed[metric]))
            row["verdict"] = verdict
            row["note"] = "; ".join(notes)
            rows.append(row)

    units = pd.DataFrame(rows)
    if len(units):
        units["_rank"] = units["verdict"].map(_RANK)
        units["_sev"] = units["severity"].fillna(-math.inf)
        units = units.sort_values(["_rank", "_sev"], ascending=[True, False], kind="stable")
        units = units.drop(columns=["_rank", "_sev"]).reset_index(drop=True)

    timing = _timing(b, n, sorted(common, key=str), time_factor, time_min)
    return Comparison(units, timing, only_base, only_new, metrics_only_base, metrics_only_new, tolerance,
                      tracked, time_factor, time_min, require_all, version_changes=changed)


def version_reason(base: str | None, new: str | None) -> str:
    """``metric version changed (1 -> 2)``; ``?`` for a side that records no version."""
    return f"metric version changed ({base if base is not None else '?'} -> {new if new is not None else '?'})"


def _version_changes(metrics: Iterable[str], base: Mapping[str, Any] | None,
                     new: Mapping[str, Any] | None) -> dict[str, tuple[str | None, str | None]]:
    """Metric -> (BASE version, NEW version) for the metrics whose versions differ; a metric
    recorded on one side only counts as changed, and nothing is known when neither side records
    versions."""
    if base is None and new is None:
        return {}
    out = {}
    for metric in sorted(metrics):
        vb = None if base is None or base.get(metric) is None else str(base[metric])
        vn = None if new is None or new.get(metric) is None else str(new[metric])
        if vb != vn:
            out[metric] = (vb, vn)
    return out


def metric_versions(run: str | Path) -> dict[str, Any] | None:
    """The ``metric_versions`` of a run directory or of the run holding a ``results.csv``
    (``None`` when its provenance records none)."""
    versions = read_provenance(_run_dir(Path(run))).get("metric_versions")
    return dict(versions) if isinstance(versions, dict) else None


def _timing(b: pd.DataFrame, n: pd.DataFrame, cells: list[tuple], time_factor: float | None,
            time_min: float) -> pd.DataFrame:
    """Per cell: mean over seeds of ``sample_s`` and ``fit_s`` on each side, and their ratios."""
    def per_cell(df: pd.DataFrame) -> pd.DataFrame:
        ok = df[df["status"] == "ok"]
        per_seed = ok.groupby([*CELL_COLUMNS, "seed"], sort=False)[list(TIMING_COLUMNS)].mean()
        return per_seed.groupby(level=list(range(len(CELL_COLUMNS))), sort=False).mean()

    tb, tn = per_cell(b), per_cell(n)
    rows = []
    for cell in cells:
        if cell not in tb.index or cell not in tn.index:
            continue
        row: dict[str, Any] = dict(zip(CELL_COLUMNS, cell, strict=True))
        verdict = SAME
        for col in TIMING_COLUMNS:
            vb, vn = float(tb.loc[cell, col]), float(tn.loc[cell, col])
            name = col.removesuffix("_s")
            ratio = vn / vb if math.isfinite(vb) and math.isfinite(vn) and vb > 0 else math.nan
            row.update({f"{name}_base": vb, f"{name}_new": vn, f"{name}_ratio": ratio})
            if (time_factor is not None and math.isfinite(ratio) and vb >= time_min and ratio > time_factor):
                verdict = WORSE
        row["verdict"] = verdict
        rows.append(row)
    timing = pd.DataFrame(rows)
    if len(timing):
        timing = timing.sort_values("sample_ratio", ascending=False, na_position="last").reset_index(drop=True)
    return timing


def _no_overlap_message(only_base: list[tuple], only_new: list[tuple], limit: int = 10) -> str:
    def listing(cells: list[tuple]) -> str:
        shown = [_describe_cell(c) for c in cells[:limit]]
        more = f" ... and {len(cells) - limit} more" if len(cells) > limit else ""
        return ("; ".join(shown) or "(none)") + more

    return (
        "the two tables have no cell in common (cells are matched by target, process, estimator, sampler, "
        f"steps, time_grid, init and n_samples). Only in BASE ({len(only_base)}): {listing(only_base)}. "
        f"Only in NEW ({len(only_new)}): {listing(only_new)}"
    )


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------


def _g(x: float, spec: str = ".4g") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


#: the header of a cell's columns in compare's tables (the start and the ablation are shown with the grid)
CELL_HEADER = [label(c) for c in CELL_COLUMNS if c not in ("init", "ablation")]


def _grid(row: Any) -> str:
    """The time grid, the start where it is not the prior, and an error-decomposition variant's ablation."""
    return (row.time_grid + ("" if row.init == "prior" else f", {row.init} start")
            + ("" if row.ablation == "none" else f", ablation {row.ablation}"))


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in body]
    return lines


def _markdown(c: Comparison, max_rows: int | None) -> str:
    lines = ["# scorebench compare", "", f"- BASE: {c.base_label}", f"- NEW: {c.new_label}"]
    tol = c.tolerance
    lines.append(
        f"- tolerance: max({tol.rel_tol:g} x |BASE| ({tol.exact_rel_tol:g} for exact metrics), "
        f"{tol.floor_factor:g} x noise floor, {tol.spread_factor:g} x seed-to-seed sd, {tol.abs_tol:g}); "
        f"a change also needs its {100 * tol.level:g}% interval to exclude 0"
    )
    if c.tracked is not None:
        lines.append(f"- tracked metrics: {', '.join(sorted(c.tracked))} (other rows are shown, not gated)")
    if c.time_factor is not None:
        lines.append(f"- timing gated: a cell worse when NEW/BASE > {c.time_factor:g} (BASE >= {c.time_min:g} s)")
    for reason in c.version_reasons():
        lines.append(f"- not compared: {reason}: its values are shown, not judged, and do not gate the exit code")
    lines += [f"- note: {note}" for note in c.notes]
    lines += ["", f"**{c.summary()}**", "", "## Accuracy: NEW - BASE (every metric is an error: lower is better)", ""]
    header = ["verdict", *CELL_HEADER, "metric", "BASE", "NEW",
              "NEW - BASE", f"{100 * c.tolerance.level:g}% CI", "tolerance", "seeds", "note"]
    body = []
    units = c.units
    shown = units if max_rows is None else units.head(max_rows)
    for r in shown.itertuples(index=False):
        verdict = r.verdict if c.tracked is None or r.metric in c.tracked else f"({r.verdict}, untracked)"
        metric = r.metric if math.isnan(r.t) else f"{r.metric}@t={r.t:.3g}"
        ci = f"[{_g(r.ci_low, '+.3g')}, {_g(r.ci_high, '+.3g')}]" if math.isfinite(r.ci_low) else ""
        seeds = f"{r.seeds} {r.method}" if r.method else ""
        body.append([f"**{verdict}**" if verdict == WORSE else verdict, r.target, r.process, r.estimator, r.sampler,
                     str(r.steps), _grid(r), str(r.n_samples), metric, _g(r.base), _g(r.new),
                     _g(r.diff, "+.3g"), ci, _g(r.tol, ".3g"), seeds, r.note])
    lines += _table(header, body) if body else ["(nothing to compare)"]
    if max_rows is not None and len(units) > max_rows:
        hidden = units.iloc[max_rows:]["verdict"].value_counts()
        what = ", ".join(f"{k} {v}" for k, v in hidden.items())
        lines += ["", f"... {len(units) - max_rows} more rows ({what}; see --max-rows)"]

    if len(c.timing):
        lines += ["", "## Timing: NEW / BASE (mean seconds over seeds per cell)", ""]
        if c.time_factor is None:
            lines += ["Reported, not gated (use --time-factor to gate).", ""]
        header = ["verdict", *CELL_HEADER, "sample_s BASE", "sample_s NEW", "ratio", "fit_s BASE", "fit_s NEW", "ratio"]
        timing = c.timing if max_rows is None else c.timing.head(max_rows)
        body = [[r.verdict if c.time_factor is not None else "", r.target, r.process, r.estimator, r.sampler,
                 str(r.steps), _grid(r), str(r.n_samples), _g(r.sample_base, ".3g"), _g(r.sample_new, ".3g"),
                 _g(r.sample_ratio, ".2f"), _g(r.fit_base, ".3g"), _g(r.fit_new, ".3g"), _g(r.fit_ratio, ".2f")]
                for r in timing.itertuples(index=False)]
        lines += _table(header, body)
        if max_rows is not None and len(c.timing) > max_rows:
            lines += ["", f"... {len(c.timing) - max_rows} more cells (see --max-rows)"]

    missing = [("cells only in BASE (not run in NEW)", [_describe_cell(x) for x in c.only_base]),
               ("cells only in NEW (not in BASE)", [_describe_cell(x) for x in c.only_new]),
               ("metrics only in BASE", [f"{_describe_cell(x[:-1])}: {x[-1]}" for x in c.metrics_only_base]),
               ("metrics only in NEW", [f"{_describe_cell(x[:-1])}: {x[-1]}" for x in c.metrics_only_new]),
               ("metrics whose version changed (rows shown above, not judged)", c.version_reasons())]
    if any(items for _, items in missing):
        lines += ["", "## Not compared"]
        for title, items in missing:
            if items:
                lines += ["", f"{title} ({len(items)}):", *[f"- {i}" for i in items[:50]]]
                if len(items) > 50:
                    lines.append(f"- ... and {len(items) - 50} more")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------


def _run_dir(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _label(path: Path) -> str:
    prov = read_provenance(_run_dir(path))
    bits = [f"`{path}`"]
    for key in ("suite", "run_id", "git_sha", "device", "timestamp"):
        value = prov.get(key)
        if value:
            bits.append(f"{key} {str(value)[:12] if key == 'git_sha' else value}")
    if prov.get("git_dirty"):
        bits.append("dirty tree")
    if prov.get("quick"):
        bits.append("quick")
    return ", ".join(bits)


def _provenance_notes(base: Path, new: Path) -> list[str]:
    pb, pn = read_provenance(_run_dir(base)), read_provenance(_run_dir(new))
    notes = []
    for key, what in (("suite_sha256", "the suite files differ"), ("suite_seed", "the suite seeds differ"),
                      ("device", "the devices differ"), ("quick", "--quick differs")):
        if pb.get(key) is not None and pn.get(key) is not None and pb[key] != pn[key]:
            notes.append(what + ("" if key == "suite_sha256" else f" (BASE {pb[key]}, NEW {pn[key]})"))
    if any(not n.startswith("--quick") for n in notes):
        notes.append("rows are matched by labels; where seeds, component specs or devices differ the sides do "
                     "not share their random numbers, so the intervals are wider")
    return notes


def compare_paths(base: str | Path, new: str | Path, **options: Any) -> Comparison:
    """:func:`compare` on two run directories or ``results.csv`` files, with their provenance."""
    base, new = Path(base), Path(new)
    for path in (base, new):
        if not path.exists():
            raise ResultsError(f"{path}: no such file or directory")
        if path.is_dir() and not (path / TABLE_FILE).is_file():
            raise ResultsError(f"{path}: no {TABLE_FILE} in this directory")
    options.setdefault("base_versions", metric_versions(base))
    options.setdefault("new_versions", metric_versions(new))
    result = compare(read_results(base), read_results(new), **options)
    result.base_label, result.new_label = _label(base), _label(new)
    result.notes = _provenance_notes(base, new)
    return result


def _metric_list(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of metric names")
    return names


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _level(text: str) -> float:
    value = _non_negative(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a confidence level in (0, 1), got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def cmd_compare(args: argparse.Namespace) -> int:
    tolerance = Tolerance(rel_tol=args.rel_tol, exact_rel_tol=args.exact_rel_tol, floor_factor=args.floor_factor,
                          spread_factor=args.spread_factor, abs_tol=args.abs_tol, level=args.level)
    if args.proposal is not None:
        return _cmd_proposal(args, tolerance)
    if args.baselines is not None:
        raise ValueError("--baselines needs --proposal LABEL")
    if args.new is None:
        raise ValueError("give BASE and NEW to compare two runs, or one run with --proposal LABEL")
    result = compare_paths(args.base, args.new, metrics=args.metrics, tolerance=tolerance,
                           time_factor=args.time_factor, time_min=args.time_min, require_all=args.require_all)
    text = result.to_markdown(args.max_rows)
    _emit(args, text, result.summary())
    return result.exit_code


def _emit(args: argparse.Namespace, text: str, summary: str) -> None:
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(summary)
        print(f"report written to {out}")
    else:
        sys.stdout.write(text)


def _cmd_proposal(args: argparse.Namespace, tolerance: Tolerance) -> int:
    from .proposal import compare_proposal

    if args.new is not None:
        raise ValueError("--proposal compares samplers within one run: give one run directory or results.csv")
    for flag, value in (("--time-factor", args.time_factor), ("--require-all", args.require_all or None)):
        if value is not None:
            raise ValueError(f"{flag} gates a regression test; it does not apply to --proposal")
    path = Path(args.base)
    if not path.exists():
        raise ResultsError(f"{path}: no such file or directory")
    result = compare_proposal(read_results(path), args.proposal, args.baselines, metrics=args.metrics,
                              tolerance=tolerance)
    result.source = _label(path)
    _emit(args, result.to_markdown(args.max_rows), result.headline())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``compare`` subcommand."""
    p = sub.add_parser(
        "compare",
        help="compare two result tables (exit 1 if NEW is worse), or a proposed sampler with the baselines of one "
             "run (--proposal)",
        description="Compare NEW with BASE per cell, metric and diffusion time, paired over seeds. Every metric is "
                    "an error (lower is better). Exit 1 when a tracked metric is worse beyond tolerance (or a cell "
                    "is slower than --time-factor), 0 otherwise, 2 on bad input. Rows of a metric whose version "
                    "(provenance metric_versions) differs between the runs are shown as 'not compared' and never "
                    "gate. With --proposal LABEL, compare "
                    "that sampler of one run with its baselines: per cell against each baseline at the same steps "
                    "and against the best baseline at matched NFE and wall time, with wins, losses and ties (exit 0).",
    )
    p.add_argument("base", help="BASE run directory or results.csv (with --proposal: the run)")
    p.add_argument("new", nargs="?", help="NEW run directory or results.csv")
    p.add_argument("--proposal", metavar="LABEL",
                   help="compare this sampler of one run with the others (or --baselines) at matched steps, NFE "
                        "and wall time: wins, losses and ties; always exits 0")
    p.add_argument("--baselines", type=_metric_list, metavar="A,B,...",
                   help="the baseline sampler labels for --proposal (default: every other sampler of the run)")
    p.add_argument("--metrics", type=_metric_list, default=None,
                   help="comma-separated metrics that gate the exit code (default: all)")
    defaults = Tolerance()
    p.add_argument("--rel-tol", type=_non_negative, default=defaults.rel_tol,
                   help="tolerance as a fraction of |BASE| for noisy metrics (default %(default)s)")
    p.add_argument("--exact-rel-tol", type=_non_negative, default=defaults.exact_rel_tol,
                   help="the same for exact, noise-free metrics such as exact_w2 (default %(default)s)")
    p.add_argument("--floor-factor", type=_non_negative, default=defaults.floor_factor,
                   help="tolerance as a multiple of the metric's noise floor (default %(default)s)")
    p.add_argument("--spread-factor", type=_non_negative, default=defaults.spread_factor,
                   help="tolerance as a multiple of the pooled seed-to-seed standard deviation (default %(default)s)")
    p.add_argument("--abs-tol", type=_non_negative, default=defaults.abs_tol,
                   help="absolute minimum tolerance (default %(default)s)")
    p.add_argument("--level", type=_level, default=defaults.level,
                   help="confidence level of the intervals (default %(default)s)")
    p.add_argument("--time-factor", type=_positive, default=None,
                   help="gate timing too: a cell whose sample_s or fit_s ratio NEW/BASE exceeds this is worse")
    p.add_argument("--time-min", type=_non_negative, default=0.01,
                   help="ignore timing ratios where BASE took less than this many seconds (default %(default)s)")
    p.add_argument("--require-all", action="store_true",
                   help="cells or tracked metrics of BASE that NEW lacks count as worse")
    p.add_argument("--max-rows", type=_positive_int, default=None, help="show at most this many rows per table")
    p.add_argument("--out", help="also write the Markdown report to this file (stdout then gets the summary)")
    p.set_defaults(func=cmd_compare)
