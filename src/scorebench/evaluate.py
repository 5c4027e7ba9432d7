"""The third stage of a run: metrics, noise floors and confidence intervals of a cell's samples.

Each cell x seed builds one :class:`~scorebench.metrics.MetricContext`; every metric evaluates on
it and is treated by what it declares (:mod:`scorebench.metrics.base`), never by its kind or name:

* a ``deterministic`` metric (an exact-law metric) has no sampling noise and a zero-width
  interval, and its rows carry ``exact = True``; it is evaluated once per cell when the cell's
  estimator does not learn (``learns = False``: the same score for every seed), and once per
  cell x seed when it does (each seed fits its own score, so the output law differs by seed);
* any other metric gets its noise floor (the metric between two independent target samples of
  the cell's size), cached per (target, sample size, seed, metric);
* a ``bootstrappable`` metric (sample, moment and mode metrics) of a cell with a single seed gets a
  percentile bootstrap interval over the particles; with several seeds, :func:`add_intervals`
  gives every (cell, metric, t) a Student-t 95% interval of the mean over the seeds.

A metric that raises, runs out of memory or returns NaN/inf becomes a row with status ``error``
or ``oom``; one that stops at its iteration cap keeps its value, flagged in the row's message.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from .execute import Counts, Sampled, Workspace, free, is_out_of_memory
from .metrics import Metric, MetricContext, NonConvergenceWarning
from .stats import t_half_width
from .suite import Cell


class Evaluator:
    """Evaluates the metrics of a run's cells, caching floors and deterministic values.

    ``bootstrap``: resamples of a single-seed cell's percentile interval (fewer than 2: none).
    """

    def __init__(self, ws: Workspace, bootstrap: int = 50) -> None:
        self.ws = ws
        self.bootstrap = bootstrap
        self._floors: dict[tuple, float] = {}
        #: (cell id, metric[, seed]) -> the rows of a deterministic metric: once per cell, or per
        #: cell x seed when the cell's estimator learns (its fit depends on the seed)
        self._exact: dict[tuple, list[tuple[float, float]]] = {}

    def rows(self, cell: Cell, seed: int, row: dict[str, Any], metrics: dict[str, Metric], sampled: Sampled,
             counts: Counts) -> list[dict[str, Any]]:
        """The rows of every metric of ``cell`` for one seed, ``row`` giving the columns they share."""
        ws = self.ws
        ctx = MetricContext(
            x=sampled.x, y1=sampled.y1, y2=sampled.y2, target=ws.of(cell, "targets"),
            process=ws.of(cell, "processes"), score=sampled.score, sampler=ws.of(cell, "samplers"),
            grid=sampled.grid, states=sampled.states,
            start_law=ws.start_law(cell) if cell.init == "exact" else None,
            n_samples=cell.n_samples, seed=seed,
        )
        rows = []
        for name, metric in metrics.items():
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", NonConvergenceWarning)
                    metric_rows = self._metric_rows(cell, seed, row, name, metric, ctx, counts)
                # an approximate value is kept, flagged in its message (bootstraps and floors repeat warnings)
                flags = list(dict.fromkeys(str(w.message) for w in caught
                                           if issubclass(w.category, NonConvergenceWarning)))
                for r in metric_rows:
                    if not math.isfinite(r["value"]):
                        r.update(status="error", message=f"metric {name!r} returned {r['value']}")
                    elif flags:
                        r["message"] = "; ".join(flags)
                    rows.append(r)
            except Exception as exc:
                if is_out_of_memory(exc):
                    free(ws.device)
                    rows.append({**row, "metric": name, "status": "oom",
                                 "message": f"metric {name!r}: out of memory: {exc}".splitlines()[0]})
                else:
                    rows.append({**row, "metric": name, "status": "error",
                                 "message": f"metric {name!r} failed: {type(exc).__name__}: {exc}"})
        return rows

    def _metric_rows(self, cell: Cell, seed: int, row: dict, name: str, metric: Metric, ctx: MetricContext,
                     counts: Counts) -> list[dict[str, Any]]:
        """The rows of metric ``name`` for one cell x seed, read off its declarations (module docstring);
        the floor's seconds go to ``floor_s``, not ``metric_s``."""
        ws = self.ws
        ctx = replace(ctx, generator=lambda: ws.generator("metric", name, ws.suite.metrics[name],
                                                          ws.spec(cell, "targets"), cell.n_samples, seed))
        floor_s_before = counts.floor_s
        t0 = time.perf_counter()
        interval = (math.nan, math.nan)
        if metric.deterministic:  # no sampling noise: one value per cell, or per seed if the fit learns
            learns = getattr(ws.of(cell, "estimators"), "learns", True)
            key = (cell.cell_id, name, seed) if learns else (cell.cell_id, name)
            if key not in self._exact:
                self._exact[key] = metric.checked_rows(ctx)
            values = self._exact[key]
            floor = metric.checked_floor(ctx)
        else:
            values = metric.checked_rows(ctx)
            floor = self._floor((cell.target, cell.n_samples, seed, name), lambda: metric.checked_floor(ctx), counts)
            if metric.bootstrappable and len(ws.suite.seeds_of(cell)) == 1:
                interval = self._bootstrap(lambda xb: metric.checked_rows(replace(ctx, x=xb))[0][1],
                                           ctx.x.double(), seed, name)
        elapsed = time.perf_counter() - t0 - (counts.floor_s - floor_s_before)
        counts.metric_s += elapsed
        # a deterministic value has no sampling noise: its interval is the value
        return [{**row, "metric": name, "t": t, "value": v, "floor": floor, "metric_s": elapsed,
                 **({"ci_low": v, "ci_high": v} if metric.deterministic else
                    {"ci_low": interval[0], "ci_high": interval[1]}), "exact": metric.deterministic}
                for t, v in values]

    def _bootstrap(self, compute: Callable[[torch.Tensor], float], x: torch.Tensor, seed: int,
                   name: str) -> tuple[float, float]:
        """Percentile 95% interval over ``self.bootstrap`` resamples of the particles (used when a
        cell has a single seed, so no across-seed interval exists)."""
        if self.bootstrap < 2:
            return math.nan, math.nan
        gen = self.ws.generator("bootstrap", name, seed)
        n = x.shape[0]
        stats_ = []
        for _ in range(self.bootstrap):
            idx = torch.randint(0, n, (n,), generator=gen, device=gen.device).to(x.device)
            stats_.append(compute(x[idx]))
        q = torch.tensor(stats_, dtype=torch.float64).quantile(torch.tensor([0.025, 0.975], dtype=torch.float64))
        return float(q[0]), float(q[1])

    def _floor(self, key: tuple, compute: Callable[[], float], counts: Counts) -> float:
        if key not in self._floors:
            t0 = time.perf_counter()
            self._floors[key] = compute()
            counts.floor_s += time.perf_counter() - t0
        return self._floors[key]


def add_intervals(rows: list[dict[str, Any]]) -> None:
    """Student-t 95% interval of the mean over seeds, per (metric, t), for the rows of one cell.
    Exact-law metrics keep their zero-width interval; single-seed cells keep their bootstrap interval."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok" and math.isfinite(r["value"]) and not r["exact"]:
            groups.setdefault((r["metric"], -1.0 if math.isnan(r["t"]) else r["t"]), []).append(r)
    for members in groups.values():
        k = len(members)
        if k < 2:
            continue
        vals = [r["value"] for r in members]
        mean = sum(vals) / k
        half = t_half_width(vals, 0.95)
        for r in members:
            r["ci_low"], r["ci_high"] = mean - half, mean + half
