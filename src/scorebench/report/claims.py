"""The report's Claims section: the claims table and one figure per claim.

Each figure overlays the prediction on the measured points with their 95% intervals, one panel
per group of the claim's ``over``: a slope claim draws the points, the fitted line (dashed) and
the predicted slope through the data's centre (solid); a bound claim its theory line; ordering
and crossover claims the measured difference against zero (the prediction says on which side
it lies); a minimum claim the mean curve with its argmin marked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..claims.measure import ClaimResult, GroupResult
from . import figures as F

#: at most this many groups of a claim are drawn (one panel each)
MAX_CLAIM_PANELS = 12
VERDICT_COLORS = {"holds": "#1a7f37", "fails": "#cf222e", "inconclusive": "#9a6700"}
PREDICTION_COLOR = "#444444"


def _log_ok(values: np.ndarray) -> bool:
    v = values[np.isfinite(values)]
    return len(v) > 0 and bool((v > 0).all()) and v.max() / v.min() >= 4


def _slope_panel(ax, result: ClaimResult, g: GroupResult, color) -> None:
    c = result.claim
    logx, logy = c.scale == "loglog", c.scale in ("loglog", "semilogy")
    if not g.points.empty:
        ax.scatter(g.points["x"], g.points["value"], s=9, color=color, alpha=0.35, lw=0, zorder=1.5,
                   label="points (x, seed)")
    if not g.curve.empty:
        F.errorbars(ax, g.curve["x"].to_numpy(float), g.curve["mean"].to_numpy(float), g.curve["lo"].to_numpy(float),
                    g.curve["hi"].to_numpy(float), color=color, marker="o", label="mean ± 95% CI", ls="none",
                    log=logy)
    if g.fit is not None and not g.points.empty:
        x = g.points["x"].to_numpy(float)
        xs = np.geomspace(x.min(), x.max(), 50) if logx else np.linspace(x.min(), x.max(), 50)
        X, Xs = (np.log(x), np.log(xs)) if logx else (x, xs)
        y = g.points["value"].to_numpy(float)
        Y = np.log(y) if logy else y
        back = np.exp if logy else (lambda v: v)
        slope, icpt = g.fit
        ax.plot(xs, back(icpt + slope * Xs), color=color, ls=(0, (4, 2)), lw=1.1, label=f"fit: {slope:+.2f}")
        # the prediction through the data's centre (the mean of the fit's coordinates)
        ax.plot(xs, back(Y.mean() + c.predicted * (Xs - X.mean())), color=PREDICTION_COLOR, lw=1.4,
                label=f"predicted: {c.predicted:+g}", zorder=1)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")


def _bound_panel(ax, result: ClaimResult, g: GroupResult, color) -> None:
    c = result.claim
    x = g.curve["x"].to_numpy(float)
    logx = _log_ok(x)
    ys = np.concatenate([g.curve["mean"].to_numpy(float), g.curve["line"].to_numpy(float)])
    logy = bool((ys[np.isfinite(ys)] > 0).all()) and _log_ok(ys)
    F.errorbars(ax, x, g.curve["mean"].to_numpy(float), g.curve["lo"].to_numpy(float), g.curve["hi"].to_numpy(float),
                color=color, marker="o", label="measured ± 95% CI", log=logy)
    xs = np.geomspace(x.min(), x.max(), 100) if logx else np.linspace(x.min(), x.max(), 100)
    ax.plot(xs, c.line(xs), color=PREDICTION_COLOR, lw=1.4,
            label=f"{'upper' if c.side == 'upper' else 'lower'} bound {c.line.describe(c.x)}", zorder=1)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")


def _difference_panel(ax, result: ClaimResult, g: GroupResult, color) -> None:
    c = result.claim
    if c.quantity == "ordering":
        what, expect = f"{c.worse} − {c.better}", "predicted > 0"
    else:
        what, expect = f"{c.second} − {c.first}", "predicted > 0, then < 0"
    x = g.curve["x"].to_numpy()
    numeric = np.issubdtype(x.dtype, np.number)
    pos = x.astype(float) if numeric else np.arange(len(x), dtype=float)
    F.errorbars(ax, pos, g.curve["mean"].to_numpy(float), g.curve["lo"].to_numpy(float), g.curve["hi"].to_numpy(float),
                color=color, marker="o", label=f"{what} ± 95% CI", log=False)
    ax.axhline(0.0, color=PREDICTION_COLOR, lw=1.2, label=f"zero ({expect})", zorder=1)
    if np.isfinite(g.crossing):
        ax.axvline(g.crossing, color=color, ls=":", lw=1.1, label=f"crossing ≈ {g.crossing:.3g}")
    if numeric and _log_ok(pos):
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(pos, [str(v) for v in x])


def _minimum_panel(ax, result: ClaimResult, g: GroupResult, color) -> None:
    x = g.curve["x"].to_numpy(float)
    mean = g.curve["mean"].to_numpy(float)
    logy = _log_ok(mean)
    F.errorbars(ax, x, mean, g.curve["lo"].to_numpy(float), g.curve["hi"].to_numpy(float), color=color, marker="o",
                label="mean ± 95% CI", log=logy)
    j = int(np.argmin(mean))
    ax.scatter([x[j]], [mean[j]], s=90, facecolor="none", edgecolor=PREDICTION_COLOR, lw=1.4, zorder=4,
               label="argmin (predicted interior)")
    ax.set_xscale("log" if _log_ok(x) else "linear")
    ax.set_yscale("log" if logy else "linear")


PANELS = {"slope": _slope_panel, "bound": _bound_panel, "ordering": _difference_panel,
          "crossover": _difference_panel, "minimum": _minimum_panel}


def claim_figure(result: ClaimResult, out: Path) -> F.FigureRecord | None:
    """One PNG for ``result`` (a panel per group, at most :data:`MAX_CLAIM_PANELS`), or ``None``
    when no group has anything to draw."""
    c = result.claim
    groups = [g for g in result.groups if not g.curve.empty][:MAX_CLAIM_PANELS]
    if not groups:
        return None
    fig, axes = F.new_figure(len(groups), 3, 4.3, 3.0)
    for ax, g in zip(axes, groups, strict=True):
        color = VERDICT_COLORS[g.verdict]
        PANELS[c.quantity](ax, result, g, color)
        F.log_ticks(ax)
        ax.set_title((g.name + ": " if g.group else "") + g.verdict, color=color)
        ax.legend(loc="best", frameon=False, fontsize=7)
    what = c.metric if c.source == "results" else f"record.{c.field.removeprefix('record.')}"
    xlabel = c.match if c.quantity == "ordering" else f"{c.x} (x_values)" if c.x_values else c.x
    ylabel = {"ordering": "difference", "crossover": "difference"}.get(c.quantity, what)
    F.outer_labels(fig, axes, xlabel or "", ylabel)
    fig.suptitle(f"{c.id} ({c.paper}): {result.verdict}", x=0.01, ha="left", fontsize=10)
    file = f"claim-{F.slug(c.id)}.png"
    F.save(fig, out / file)
    row = result.row()
    left = len([g for g in result.groups if not g.curve.empty]) - len(groups)
    caption = (f"{c.id}: {c.statement} Predicted: {row['predicted']}; measured: {row['measured']}; "
               f"{row['verdict']} ({row['margin']})." + (f" {left} more groups not drawn." if left else ""))
    return F.FigureRecord("claim", file, what, caption, labels=[g.name for g in groups])

