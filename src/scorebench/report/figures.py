"""The report's figures: deterministic PNGs drawn from a result table alone.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no
global backend or style change), inside a fixed ``rc_context`` (seaborn "whitegrid" style,
DejaVu Sans, fixed sizes and dpi) and saved without a ``Software`` entry, so the same table
gives byte-identical files.  Every figure function returns :class:`FigureRecord` s (or
nothing, with the reason, when the table cannot support the figure).
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..schema import CELL_LABELS, label
from .data import IDENTITY, fmt, pareto_front

DPI = 110
#: more panels than this are split over several figures
MAX_PANELS = 12
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*"]
#: the name a facet's column is printed with (the schema's short names)
FACET_NAMES = {c: label(c) for c in (*CELL_LABELS, "n_samples")}


@dataclass
class FigureRecord:
    """One PNG of the report: its kind, file name, metric, caption and legend texts."""

    kind: str
    file: str
    metric: str
    caption: str
    labels: list[str] = field(default_factory=list)
    #: heatmap cells within the noise floor, as (panel title, sampler, target)
    marked: list[tuple[str, str, str]] = field(default_factory=list)


#: the highlighted label's colour: the baselines keep the palette's, muted
HIGHLIGHT_COLOR = "#111111"
#: horizontal dodge between the lines of one panel (fraction of the x value per label, on log axes)
DODGE = 0.025


@dataclass
class Palette:
    """A fixed colour and marker per label, the same in every figure.  With ``highlight``, that
    label is drawn dark, thick and on top, and the others thin and translucent."""

    colors: dict[str, Any]
    markers: dict[str, str]
    highlight: str | None = None

    @classmethod
    def of(cls, labels: list[str], highlight: str | None = None) -> Palette:
        import seaborn as sns

        n = len(labels)
        colors = sns.color_palette("tab10", 10) if n <= 10 else sns.color_palette("husl", n)
        palette = cls({lab: colors[i] for i, lab in enumerate(labels)},
                      {lab: MARKERS[i % len(MARKERS)] for i, lab in enumerate(labels)}, highlight)
        if highlight in palette.colors:
            palette.colors[highlight] = HIGHLIGHT_COLOR
            palette.markers[highlight] = "*"
        return palette

    def style(self, label: str) -> dict[str, Any]:
        """Line width, opacity, marker size and layer of a label's line."""
        if self.highlight is None:
            return {"lw": 1.3, "alpha": 1.0, "ms": 4.5, "zorder": 2}
        if label == self.highlight:
            return {"lw": 2.6, "alpha": 1.0, "ms": 9.0, "zorder": 5}
        return {"lw": 1.0, "alpha": 0.45, "ms": 3.5, "zorder": 2}

    def order(self, labels: list[str]) -> list[str]:
        """``labels`` with the highlighted one last, so that it is drawn on top."""
        return [s for s in labels if s != self.highlight] + [s for s in labels if s == self.highlight]


def dodge(x: np.ndarray, index: int, count: int) -> np.ndarray:
    """``x`` shifted by ``(index - (count - 1) / 2) * DODGE`` of itself, so that the lines of
    samplers with identical values stay visible side by side on a log axis."""
    return x * (1.0 + DODGE * (index - (count - 1) / 2))


def rc_params() -> dict[str, Any]:
    import seaborn as sns

    rc: dict[str, Any] = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.1)}
    rc.update({
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"], "axes.titlesize": 9.5,
        "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 7.5,
        "legend.title_fontsize": 8, "figure.dpi": DPI, "savefig.dpi": DPI, "axes.edgecolor": ".7",
        "grid.color": ".9", "svg.hashsalt": "scorebench", "figure.titlesize": 11,
    })
    return rc


@contextmanager
def style() -> Iterator[None]:
    import matplotlib as mpl

    with mpl.rc_context(rc_params()):
        yield


def new_figure(n_panels: int, ncols_max: int, panel_w: float, panel_h: float, extra_w: float = 0.0,
               sharex: bool = False, sharey: bool = False) -> tuple[Any, list[Any]]:
    """A constrained-layout figure with ``n_panels`` axes in rows of at most ``ncols_max``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(ncols_max, n_panels)
    nrows = math.ceil(n_panels / ncols)
    width = max(panel_w * ncols + extra_w, 5.0)
    fig = Figure(figsize=(width, panel_h * nrows + 0.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    fig.ncols = ncols  # read by outer_labels
    return fig, axes[:n_panels]


def outer_labels(fig: Any, axes: list[Any], xlabel: str, ylabel: str) -> None:
    """Axis labels on the bottom panel of each column and the first panel of each row only."""
    n, ncols = len(axes), fig.ncols
    for i, ax in enumerate(axes):
        ax.set_xlabel(xlabel if i + ncols >= n else "")
        ax.set_ylabel(ylabel if i % ncols == 0 else "")


def save(fig: Any, path: Path) -> None:
    """PNG with no software/date metadata: byte-identical for identical content."""
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, facecolor="white")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


# ---------------------------------------------------------------------------------------
# panels
# ---------------------------------------------------------------------------------------


@dataclass
class Page:
    """The panels of one figure: (title, rows) each, and a file-name suffix."""

    panels: list[tuple[str, pd.DataFrame]]
    suffix: str
    varying: list[str]
    constant: dict[str, Any]
    #: panels per row, so that two varying keys make a grid (rows: the first, columns: the last)
    ncols: int | None = None

    def facets(self) -> str:
        """What a caption adds after its subject: ``"; panels: ...; target g2, ..."``."""
        return ((f"; panels: {describe_panels(self.varying)}" if self.varying else "")
                + (f"; {describe_constant(self.constant)}" if self.constant else ""))


def _sort_key(orders: dict[str, list], keys: list[str], values: tuple) -> tuple:
    out = []
    for k, v in zip(keys, values, strict=True):
        order = orders.get(k)
        out.append(order.index(v) if order is not None and v in order else v)
    return tuple(out)


def panel_title(keys: list[str], values: tuple) -> str:
    parts = []
    for k, v in zip(keys, values, strict=True):
        parts.append(f"n={v}" if k == "n_samples" else f"{v} grid" if k == "time_grid"
                     else f"{v} start" if k == "init" else str(v))
    return " · ".join(parts)


def pages(df: pd.DataFrame, keys: list[str], orders: dict[str, list], max_panels: int = MAX_PANELS,
          max_cols: int = 4) -> list[Page]:
    """Split ``df`` into panels by the ``keys`` that take more than one value; more than
    ``max_panels`` panels are split over pages by the first varying key, then in chunks.
    Where it fits, panels form a grid: the first varying key down, the others across."""
    varying = [k for k in keys if df[k].nunique() > 1]
    constant = {k: df[k].iloc[0] for k in keys if k not in varying}
    if not varying:
        return [Page([("", df)], "", [], constant)]
    groups = []
    for key, g in df.groupby(varying, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        groups.append((key, g))
    groups.sort(key=lambda kg: _sort_key(orders, varying, kg[0]))
    panels = [(panel_title(varying, k), g, k) for k, g in groups]
    if len(panels) <= max_panels:
        keys_ = [k for _, _, k in panels]
        return [Page([(t, g) for t, g, _ in panels], "", varying, constant, grid_cols(keys_, max_cols))]
    out = []
    firsts = list(dict.fromkeys(k[0] for _, _, k in panels))
    for first in firsts:
        chunk = [(t, g, k) for t, g, k in panels if k[0] == first]
        for i in range(0, len(chunk), max_panels):
            part = chunk[i:i + max_panels]
            name = f"-{slug(first)}" + (f"-{i // max_panels + 1}" if len(chunk) > max_panels else "")
            ncols = grid_cols([k[1:] for _, _, k in part], max_cols)
            out.append(Page([(t, g) for t, g, _ in part], name, varying, constant, ncols))
    return out


def grid_cols(keys: list[tuple], max_cols: int, max_rows: int = 4) -> int | None:
    """Panels per row that make the panels a grid (the first key down, the rest across, or
    the last key across), if such a grid has at most ``max_cols`` columns and ``max_rows``
    rows; ``None`` (wrap at the figure's default) otherwise."""
    if not keys or len(keys[0]) < 2:
        return None
    for across in (len({k[1:] for k in keys}), len({k[-1] for k in keys})):
        if 1 < across <= max_cols and math.ceil(len(keys) / across) <= max_rows:
            return across
    return None


def suptitle(fig: Any, text: str, page: Page, reserve: float = 0.0) -> None:
    """The figure's own title, left-aligned: what is plotted, and the facets that are the same
    in every panel, so that a PNG read alone says what it shows.  Lines are wrapped to the
    width left of ``reserve`` inches (a legend placed top right)."""
    extra = describe_constant(page.constant, " · ")
    width = max(28, int((fig.get_figwidth() - reserve - 0.1) / 0.078))
    lines = textwrap.wrap(text, width) + textwrap.wrap(extra, width)
    fig.suptitle("\n".join(lines), x=0.01, ha="left", fontsize=10)


def describe_constant(constant: dict[str, Any], sep: str = ", ") -> str:
    return sep.join(f"n={v}" if k == "n_samples" else f"{FACET_NAMES.get(k, k)} {v}" for k, v in constant.items())


def describe_panels(varying: list[str]) -> str:
    return " · ".join(FACET_NAMES.get(k, k) for k in varying)


# ---------------------------------------------------------------------------------------
# shared drawing helpers
# ---------------------------------------------------------------------------------------


def positive(df: pd.DataFrame, col: str = "value") -> tuple[pd.DataFrame, int]:
    keep = df[col] > 0
    return df[keep], int((~keep).sum())


def floor_band(ax: Any, floors: pd.DataFrame, log: bool = True) -> bool:
    """Shade each noise floor's mean ± spread over seeds and draw its mean dashed."""
    drawn = False
    for r in floors.itertuples():
        lo, hi = r.floor_mean - r.floor_sd, r.floor_mean + r.floor_sd
        if log and hi <= 0:
            continue
        if log and lo <= 0:  # the band reaches zero: shade down to the bottom of the axis
            lo = hi * 1e-6
        ax.axhspan(lo, hi, color="0.55", alpha=0.18, lw=0, zorder=0)
        if not log or r.floor_mean > 0:
            ax.axhline(r.floor_mean, color="0.45", ls="--", lw=0.9, zorder=0.5)
        drawn = True
    return drawn


def floor_handle() -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor="0.55", alpha=0.3, edgecolor="0.45", linestyle="--", label="noise floor (mean ± sd)")


def errorbars(ax: Any, x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, color: Any, marker: str,
              label: str | None, ls: str = "-", log: bool = True, lw: float = 1.3, alpha: float = 1.0,
              ms: float = 4.5, zorder: float = 2) -> Any:
    """Points joined by a line with their 95% CI as error bars (a lower end at or below zero
    on a log axis is drawn down to a tenth of the value)."""
    lo = np.where(np.isfinite(lo), lo, y)
    hi = np.where(np.isfinite(hi), hi, y)
    if log:
        lo = np.where(lo > 0, lo, y / 10)
    yerr = np.vstack([np.maximum(y - lo, 0), np.maximum(hi - y, 0)])
    eb = ax.errorbar(x, y, yerr=yerr, color=color, marker=marker, ms=ms, lw=lw, ls=ls, capsize=2,
                     elinewidth=0.8, label=label, zorder=zorder, alpha=alpha)
    for part in (*eb[1], *eb[2]):
        part.set_alpha(0.45 * alpha)
    return eb


def _floors_for(floors: pd.DataFrame, metric: str, d: pd.DataFrame) -> pd.DataFrame:
    keys = d[["target", "n_samples"]].drop_duplicates()
    f = floors[floors["metric"] == metric]
    return f.merge(keys, on=["target", "n_samples"], how="inner")


def _tick_label(v: float, _pos: Any = None) -> str:
    return fmt(float(v))


def log_ticks(ax: Any) -> None:
    """Readable ticks on log axes: 1-2-5, 1-3 (or finer) ticks with plain labels when an axis
    spans up to three decades, labelled decades otherwise; minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, LogLocator, NullFormatter

    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log" or lo <= 0:
            continue
        decades = math.log10(hi / lo)
        if decades < 0.8:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        elif decades < 1.8:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        elif decades < 3.2:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
        else:
            axis.set_major_locator(LogLocator(base=10, numticks=8))
        axis.set_major_formatter(FuncFormatter(_tick_label) if decades < 3.2 else LogFormatterSciNotation())
        axis.set_minor_formatter(NullFormatter())


def pad_log_x(ax: Any, values: list[float]) -> None:
    """Pad a log x axis to at least about half a decade around the points."""
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    if vals:
        lo, hi = min(vals), max(vals)
        mid = math.sqrt(lo * hi)
        lo, hi = min(lo / 1.25, mid / 1.8), max(hi * 1.25, mid * 1.8)
        ax.set_xlim(lo, hi)


def _log_limits(ax: Any, values: list[float]) -> None:
    """Pad a log y axis so that points and bands are not on the frame."""
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    if vals:
        lo, hi = min(vals), max(vals)
        if hi / lo < 10:
            mid = math.sqrt(lo * hi)
            lo, hi = min(lo, mid / 3.2), max(hi, mid * 3.2)
        ax.set_ylim(lo / 1.6, hi * 1.6)


# ---------------------------------------------------------------------------------------
# heatmaps
# ---------------------------------------------------------------------------------------

HEATMAP_FACETS = ["process", "estimator", "time_grid", "init"]
CELL_W, CELL_H = 0.95, 0.34  # inches per heatmap cell


def heatmaps(means: pd.DataFrame, orders: dict[str, list], out: Path) -> list[FigureRecord]:
    """Per metric: sampler x target, mean over seeds (and over times for score metrics) at each
    cell's largest step count and sample size, one panel per process / score / time grid.
    A metric run with one sampler and several scores (an estimator suite) is drawn as score x
    target instead, one panel per process / time grid."""
    import matplotlib as mpl
    import seaborn as sns
    from matplotlib.cm import ScalarMappable
    from matplotlib.patches import Rectangle

    records = []
    for metric in [m for m in orders["metric"] if m in set(means["metric"])]:
        d = means[means["metric"] == metric]
        d = d.groupby(IDENTITY, sort=False, dropna=False).agg(
            value=("value", "mean"), within_floor=("within_floor", "all"), timed=("t", lambda s: s.notna().any()))
        d = d.reset_index().sort_values(["steps", "n_samples"], kind="stable")
        d = d.groupby(["target", "process", "estimator", "time_grid", "init", "sampler"], sort=False).tail(1)
        timed = bool(d["timed"].any())
        by = "estimator" if d["sampler"].nunique() == 1 and d["estimator"].nunique() > 1 else "sampler"
        facets = [k for k in HEATMAP_FACETS if k != by]
        rows = [s for s in orders[by] if s in set(d[by])]
        cols = [t for t in orders["target"] if t in set(d["target"])]
        vals = d["value"].to_numpy(dtype=float)
        vmin, vmax = float(np.nanmin(vals)), float(np.nanmax(vals))
        pos = vals[vals > 0]
        floor_colour = None  # zeros are coloured as the smallest positive value on a log scale
        if vmin >= 0 and len(pos) and pos.max() / pos.min() > 20:
            norm = mpl.colors.LogNorm(float(pos.min()), vmax)
            floor_colour = float(pos.min())
        else:
            norm = mpl.colors.Normalize(vmin, vmax if vmax > vmin else vmin + (abs(vmin) or 1.0))
        cmap = sns.color_palette("rocket_r", as_cmap=True)
        for page in pages(d, facets, orders):
            if by == "estimator":
                page.constant = {"sampler": d["sampler"].iloc[0], **page.constant}
            n = len(page.panels)
            pw = CELL_W * len(cols) + 1.1
            ph = CELL_H * len(rows) + 0.75
            ncols_max = page.ncols or max(1, min(4, int(13 // pw)))
            fig, axes = new_figure(n, ncols_max, pw, ph, extra_w=1.0)
            marked = []
            for ax, (title, g) in zip(axes, page.panels, strict=True):
                mat = g.pivot_table(index=by, columns="target", values="value", aggfunc="first",
                                    sort=False).reindex(index=rows, columns=cols)
                within = g.assign(w=g["within_floor"].astype(float)).pivot_table(
                    index=by, columns="target", values="w", aggfunc="first", sort=False)
                within = within.reindex(index=rows, columns=cols)
                annot = mat.map(lambda v: "" if pd.isna(v) else fmt(float(v))).to_numpy()
                ax.set_facecolor("0.94")
                colour = mat.astype(float)
                if floor_colour is not None:
                    colour = colour.clip(lower=floor_colour)
                sns.heatmap(colour, ax=ax, cmap=cmap, norm=norm, annot=annot, fmt="", cbar=False,
                            mask=mat.isna(), linewidths=0.8, linecolor="white", annot_kws={"fontsize": 7.5},
                            xticklabels=True, yticklabels=True)
                for i, s in enumerate(rows):
                    for j, t in enumerate(cols):
                        if within.loc[s, t] == 1:
                            ax.add_patch(Rectangle((j + 0.04, i + 0.06), 0.92, 0.88, fill=False, lw=1.6,
                                                   edgecolor="#1f9e89", zorder=3))
                            marked.append((title, s, t))
                ax.set_aspect(CELL_H / CELL_W)
                ax.set_title(title)
                ax.set_xlabel("")
                ax.set_ylabel("")
                ax.tick_params(axis="x", rotation=0, length=0)
                ax.tick_params(axis="y", rotation=0, length=0)
            cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9, aspect=25, pad=0.02)
            cb.set_label(metric)
            cb.outline.set_linewidth(0)
            if isinstance(norm, mpl.colors.LogNorm):
                log_ticks(cb.ax)
            steps = sorted(set(d["steps"]))
            at = f"{steps[0]} steps" if len(steps) == 1 else "largest step count of each cell"
            what = "score" if by == "estimator" else "sampler"
            suptitle(fig, f"{metric}{' (mean over times)' if timed else ''} per {what} and target, {at}", page)
            file = f"heatmap-{slug(metric)}{page.suffix}.png"
            save(fig, out / file)
            step_text = (f"at {steps[0]} steps" if len(steps) == 1
                         else f"each cell at its largest step count ({steps[0]}–{steps[-1]})")
            caption = (
                f"{metric}{' (mean over diffusion times)' if timed else ''} per {what} (rows) and target (columns), "
                f"{step_text}"
                + page.facets()
                + "."
                + (" Zeros take the lightest colour (log colour scale)."
                   if floor_colour is not None and (vals == 0).any() else "")
                + ("" if marked else " No cell is within the noise floor.")
            )
            records.append(FigureRecord("heatmap", file, metric, caption, marked=marked))
    return records


# ---------------------------------------------------------------------------------------
# cost / accuracy fronts
# ---------------------------------------------------------------------------------------

PANEL_FACETS = ["target", "process", "estimator", "time_grid", "init", "n_samples"]
COSTS = {"nfe": ("front_nfe", "NFE (score evaluations per particle)", "NFE"),
         "sample_s": ("front_time", "sampling wall time per run (s)", "wall time")}


def fronts(means: pd.DataFrame, floors: pd.DataFrame, orders: dict[str, list], palette: Palette, out: Path,
           cost: str) -> tuple[list[FigureRecord], list[str]]:
    """Per metric: error against cost (NFE or sampling seconds), log-log, one line per sampler
    through its step counts; the Pareto front of each panel drawn as a thick grey staircase."""
    kind, xlabel, short = COSTS[cost]
    records: list[FigureRecord] = []
    skipped: list[str] = []
    d_all = means[means["t"].isna()]
    for metric in [m for m in orders["metric"] if m in set(d_all["metric"])]:
        d = d_all[(d_all["metric"] == metric) & (d_all[cost] > 0)]
        logy = bool((d["value"] > 0).all())  # an unbiased estimate (mmd, energy) can be <= 0: linear y
        if d.empty or d.groupby(PANEL_FACETS, sort=False)[cost].nunique().max() < 2:
            skipped.append(metric)
            continue
        for page in pages(d, PANEL_FACETS, orders):
            fig, axes = new_figure(len(page.panels), page.ncols or 4, 3.3, 2.75, extra_w=1.3)
            samplers_seen: list[str] = []
            for ax, (title, g) in zip(axes, page.panels, strict=True):
                present = [s for s in orders["sampler"] if s in set(g["sampler"])]
                for s in palette.order(present):
                    gs = g[g["sampler"] == s].sort_values(cost)
                    errorbars(ax, dodge(gs[cost].to_numpy(float), present.index(s), len(present)),
                              gs["value"].to_numpy(float), gs["ci_low"].to_numpy(float), gs["ci_high"].to_numpy(float),
                              color=palette.colors[s], marker=palette.markers[s], label=s, log=logy,
                              **palette.style(s))
                    if s not in samplers_seen:
                        samplers_seen.append(s)
                front = pareto_front(g[cost], g["value"])
                f = g[front].sort_values(cost)
                ax.plot(f[cost], f["value"], drawstyle="steps-post", color="0.2", lw=4, alpha=0.22, zorder=1,
                        solid_capstyle="round")
                ax.scatter(f[cost], f["value"], s=70, facecolors="none", edgecolors="0.15", lw=1.0, zorder=3)
                fl = _floors_for(floors, metric, g)
                floor_band(ax, fl, log=logy)
                ax.set_xscale("log")
                if logy:
                    ax.set_yscale("log")
                    _log_limits(ax, [*g["value"], *(fl["floor_mean"] + fl["floor_sd"]),
                                     *(fl["floor_mean"] - fl["floor_sd"])])
                else:
                    ax.axhline(0.0, color="0.3", lw=0.6, zorder=0.4)
                pad_log_x(ax, list(g[cost]))
                log_ticks(ax)
                ax.set_title(title)
            outer_labels(fig, axes, xlabel, metric)
            handles = _legend_handles(samplers_seen, palette)
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], color="0.2", lw=4, alpha=0.3, marker="o", mfc="none", mec="0.15",
                                  ms=8, label="Pareto front"))
            if not floors[floors["metric"] == metric].empty:
                handles.append(floor_handle())
            fig.legend(handles=handles, loc="outside right upper", title="sampler", frameon=False)
            suptitle(fig, f"{metric} against {short}", page, reserve=1.6)
            file = f"{kind}-{slug(metric)}{page.suffix}.png"
            save(fig, out / file)
            caption = (
                f"{metric} against {short}" + ("" if logy else " (linear y: some values are ≤ 0)")
                + page.facets()
                + "."
            )
            records.append(FigureRecord(kind, file, metric, caption, labels=[h.get_label() for h in handles]))
    return records, skipped


def _legend_handles(labels: list[str], palette: Palette) -> list[Any]:
    from matplotlib.lines import Line2D

    out = []
    for s in labels:
        st = palette.style(s)
        out.append(Line2D([], [], color=palette.colors[s], marker=palette.markers[s], ms=min(st["ms"], 8),
                          lw=st["lw"], alpha=st["alpha"], label=s))
    return out


# ---------------------------------------------------------------------------------------
# convergence orders
# ---------------------------------------------------------------------------------------


def order_label(sampler: str, slope: float, se: float) -> str:
    """``"em: -1.02 ± 0.03"``: the slope to two decimals, its standard error to two decimals
    (one significant digit below 0.005)."""
    if math.isnan(slope):
        return f"{sampler}: no fit"
    if not math.isfinite(se):
        return f"{sampler}: {slope:+.2f}"
    return f"{sampler}: {slope:+.2f} ± {se:.2f}" if se >= 0.005 else f"{sampler}: {slope:+.2f} ± {se:.1g}"


def convergence(means: pd.DataFrame, floors: pd.DataFrame, orders_table: pd.DataFrame, orders: dict[str, list],
                palette: Palette, out: Path) -> list[FigureRecord]:
    """Per metric: error against steps, log-log, one line per sampler, the least-squares line
    of each fitted sampler dashed, its slope ± standard error in the panel's legend."""
    records: list[FigureRecord] = []
    if orders_table.empty:
        return records
    for metric in [m for m in orders["metric"] if m in set(orders_table["metric"])]:
        fits = orders_table[orders_table["metric"] == metric]
        groups = fits[PANEL_FACETS].drop_duplicates()
        d = means[(means["metric"] == metric) & means["t"].isna()].merge(groups, on=PANEL_FACETS, how="inner")
        d = d[d["sampler"].isin(set(fits["sampler"]))]
        d, dropped = positive(d)
        for page in pages(d, PANEL_FACETS, orders, max_panels=9, max_cols=3):
            fig, axes = new_figure(len(page.panels), page.ncols or 3, 4.3, 2.75)
            labels: list[str] = []
            for ax, (title, g) in zip(axes, page.panels, strict=True):
                key = g.iloc[0]
                present = [s for s in orders["sampler"] if s in set(g["sampler"])]
                for s in palette.order(present):
                    gs = g[g["sampler"] == s].sort_values("steps")
                    fit = fits[(fits["sampler"] == s) & np.logical_and.reduce(
                        [fits[k] == key[k] for k in PANEL_FACETS])]
                    if fit.empty:
                        continue
                    fit = fit.iloc[0]
                    label = order_label(s, fit["slope"], fit["se"])
                    labels.append(label)
                    errorbars(ax, dodge(gs["steps"].to_numpy(float), present.index(s), len(present)),
                              gs["value"].to_numpy(float), gs["ci_low"].to_numpy(float), gs["ci_high"].to_numpy(float),
                              color=palette.colors[s], marker=palette.markers[s], label=label, **palette.style(s))
                    if math.isfinite(fit["slope"]):
                        used = [int(v) for v in fit["used"].split()]
                        xs = np.array([min(used), max(used)], dtype=float)
                        ax.plot(xs, np.exp(fit["intercept"]) * xs ** fit["slope"], color=palette.colors[s],
                                ls=(0, (4, 2)), lw=1.0, alpha=0.9, zorder=1.5)
                fl = _floors_for(floors, metric, g)
                floor_band(ax, fl)
                ax.set_xscale("log")
                ax.set_yscale("log")
                _log_limits(ax, [*g["value"], *(fl["floor_mean"] + fl["floor_sd"]),
                                 *(fl["floor_mean"] - fl["floor_sd"])])
                pad_log_x(ax, list(g["steps"]))
                log_ticks(ax)
                ax.set_title(title)
                ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="order ± SE",
                          handlelength=1.5, borderaxespad=0.2)
            outer_labels(fig, axes, "steps", metric)
            suptitle(fig, f"{metric} against steps: convergence orders", page)
            file = f"convergence-{slug(metric)}{page.suffix}.png"
            save(fig, out / file)
            caption = (
                f"{metric} against steps"
                + page.facets()
                + "."
                + (f" {dropped} cell mean(s) ≤ 0 cannot be shown on the log axis and are not fitted." if dropped
                   else "")
            )
            records.append(FigureRecord("convergence", file, metric, caption, labels=labels))
    return records


# ---------------------------------------------------------------------------------------
# score error against diffusion time
# ---------------------------------------------------------------------------------------


def score_vs_time(means: pd.DataFrame, orders: dict[str, list], out: Path, metric: str = "score_mse"
                  ) -> tuple[list[FigureRecord], str | None]:
    """Score error against diffusion time t per estimator, log-log, one panel per target x
    process (the score error does not depend on the sampler; means over samplers and seeds)."""
    d = means[(means["metric"] == metric) & means["t"].notna()]
    if d.empty:
        return [], f"the table has no {metric} rows"
    d = d.groupby(["target", "process", "estimator", "t"], sort=False).agg(
        value=("value", "mean"), ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean")).reset_index()
    zero = d[d["value"] <= 0]
    d = d[d["value"] > 0]
    zero_est = [e for e in orders["estimator"] if e in set(zero["estimator"]) and e not in set(d["estimator"])]
    if d.empty:
        return [], f"every {metric} value is zero ({', '.join(zero_est)}: exact scores)"
    estimators = [e for e in orders["estimator"] if e in set(d["estimator"])]
    palette = Palette.of(estimators)
    records = []
    for page in pages(d, ["target", "process"], orders):
        fig, axes = new_figure(len(page.panels), page.ncols or 3, 3.6, 2.9, extra_w=1.5)
        for ax, (title, g) in zip(axes, page.panels, strict=True):
            for e in [e for e in estimators if e in set(g["estimator"])]:
                ge = g[g["estimator"] == e].sort_values("t")
                errorbars(ax, ge["t"].to_numpy(float), ge["value"].to_numpy(float), ge["ci_low"].to_numpy(float),
                          ge["ci_high"].to_numpy(float), color=palette.colors[e], marker=palette.markers[e],
                          label=e)
            ax.set_xscale("log")
            ax.set_yscale("log")
            _log_limits(ax, list(g["value"]))
            pad_log_x(ax, list(g["t"]))
            log_ticks(ax)
            ax.set_title(title)
        outer_labels(fig, axes, "diffusion time t", metric)
        fig.legend(handles=_legend_handles(estimators, palette), loc="outside right upper", title="estimator",
                   frameon=False)
        suptitle(fig, f"{metric} against diffusion time", page, reserve=1.6)
        file = f"score-vs-t{page.suffix}.png"
        save(fig, out / file)
        caption = (
            f"{metric} against diffusion time t, one line per estimator"
            + page.facets()
            + "."
            + (f" Not shown (zero at every time: exact score): {', '.join(zero_est)}." if zero_est else "")
        )
        records.append(FigureRecord("score_t", file, metric, caption, labels=estimators))
    return records, None


# ---------------------------------------------------------------------------------------
# a proposal against the best baseline
# ---------------------------------------------------------------------------------------

VERDICT_FACE = {"win": "#1a9850", "loss": "#d73027", "tie": "white"}
LINE_FACETS = ["estimator", "time_grid", "init", "n_samples"]


def ratio_to_best(units: pd.DataFrame, orders: dict[str, list], proposal: str, out: Path) -> list[FigureRecord]:
    """Per metric: the proposal's error over the best baseline's at matched NFE, against NFE, one
    panel per target x process, one line per score / grid / start / sample size.  Error bars: the
    paired interval of the difference divided by the baseline's error; marker face: the verdict;
    grey band: 1 +- noise floor / baseline error (differences inside it are below the floor)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    records: list[FigureRecord] = []
    best = units[(units["match"] == "nfe") & units["best"] & np.isfinite(units["ratio"].to_numpy(float))
                 & (units["ratio"] > 0)]
    for metric in [m for m in orders["metric"] if m in set(best["metric"])]:
        d = best[(best["metric"] == metric) & best["t"].isna()]
        if d.empty:
            continue
        varying = [k for k in LINE_FACETS if d[k].nunique() > 1]
        lines = list(dict.fromkeys(tuple(r) for r in d[varying].itertuples(index=False))) if varying else [()]
        palette = Palette.of([" · ".join(map(str, k)) or proposal for k in lines])
        for page in pages(d, ["target", "process"], orders):
            fig, axes = new_figure(len(page.panels), page.ncols or 4, 3.4, 2.8, extra_w=1.6)
            for ax, (title, g) in zip(axes, page.panels, strict=True):
                for i, key in enumerate(lines):
                    gl = g[np.logical_and.reduce([g[k] == v for k, v in zip(varying, key, strict=True)])] \
                        if varying else g
                    if gl.empty:
                        continue
                    gl = gl.sort_values("nfe")
                    name = " · ".join(map(str, key)) or proposal
                    x = dodge(gl["nfe"].to_numpy(float), i, len(lines))
                    base = gl["baseline_mean"].to_numpy(float)
                    y = gl["ratio"].to_numpy(float)
                    lo = 1 + gl["ci_low"].to_numpy(float) / base
                    hi = 1 + gl["ci_high"].to_numpy(float) / base
                    floor = np.nan_to_num(gl["floor"].to_numpy(float) / base, nan=0.0)
                    ax.fill_between(x, np.maximum(1 - floor, 1e-3), 1 + floor, color="0.55", alpha=0.15, lw=0,
                                    zorder=0)
                    errorbars(ax, x, y, lo, hi, color=palette.colors[name], marker="o", label=name)
                    ax.scatter(x, y, s=34, c=[VERDICT_FACE[v] for v in gl["verdict"]],
                               edgecolors=[palette.colors[name]], linewidths=1.0, zorder=4)
                    for xi, yi, b in zip(x, y, gl["baseline"], strict=True):
                        ax.annotate(b, (xi, yi), textcoords="offset points", xytext=(0, 6), ha="center",
                                    fontsize=6, color="0.3")
                ax.axhline(1.0, color="0.3", lw=0.8, zorder=0.5)
                ax.set_xscale("log")
                ax.set_yscale("log")
                vals = [*g["ratio"], 1.0]
                _log_limits(ax, vals)
                pad_log_x(ax, list(g["nfe"]))
                log_ticks(ax)
                ax.set_title(title)
            outer_labels(fig, axes, "NFE (score evaluations per particle)", f"{metric}: {proposal} / best")
            handles = _legend_handles([" · ".join(map(str, k)) or proposal for k in lines], palette) if varying \
                else []
            handles += [Line2D([], [], ls="", marker="o", ms=6, mfc=VERDICT_FACE[v], mec="0.3", label=v)
                        for v in ("win", "loss", "tie")]
            handles.append(Patch(facecolor="0.55", alpha=0.3, label="noise floor / best"))
            fig.legend(handles=handles, loc="outside right upper", title=describe_panels(varying) or None,
                       frameon=False)
            suptitle(fig, f"{metric}: error of {proposal} over the best baseline at matched NFE", page, reserve=1.8)
            file = f"ratio-{slug(metric)}{page.suffix}.png"
            save(fig, out / file)
            caption = (
                f"{metric} of {proposal} divided by that of the best baseline at the same NFE (interpolated between "
                "the baseline's step counts), against NFE; below 1 the proposal is more accurate at equal cost. "
                "Each point names the best baseline there; its face is the verdict (green win, red loss, hollow "
                "tie) and its bar the paired interval of the difference over the baseline's error"
                + page.facets() + "."
            )
            records.append(FigureRecord("ratio", file, metric, caption, labels=[h.get_label() for h in handles]))
    return records


# ---------------------------------------------------------------------------------------
# error decomposition
# ---------------------------------------------------------------------------------------

#: (column, legend text, colour) of the stacked parts of an error decomposition
DECOMPOSITION_STACK = (("init_part", "initialisation (total − exact start)", "#4575b4"),
                       ("score_part", "score (total − exact score)", "#d73027"),
                       ("disc_part", "discretisation (total − fine grid)", "#fdae61"),
                       ("residual", "residual (interactions, what remains)", "#bbbbbb"))
#: the columns that name a decomposed cell besides its sampler and metric
DECOMPOSITION_LABELS = ["target", "process", "estimator", "time_grid", "init", "steps", "n_samples"]


def decomposition_figures(decomp: pd.DataFrame, orders: dict[str, list], out: Path) -> list[FigureRecord]:
    """One stacked-bar figure per sampler: for each decomposed cell (a bar) and metric (a panel),
    the parts of its error (:func:`scorebench.report.data.decomposition`) stacked from zero,
    positive parts upward and negative ones downward, and the total as a black diamond.  The
    parts and the residual add up to the total."""
    records = []
    for sampler in [s for s in orders["sampler"] if s in set(decomp["sampler"])]:
        d = decomp[decomp["sampler"] == sampler]
        varying = [c for c in DECOMPOSITION_LABELS if d[c].nunique() > 1]
        metrics = [m for m in orders["metric"] if m in set(d["metric"])]
        fig, axes = new_figure(len(metrics), 2, max(3.2, 0.55 * d.groupby(varying or ["target"]).ngroups + 1.5),
                               3.4, extra_w=1.0)
        for ax, metric in zip(axes, metrics, strict=True):
            g = d[d["metric"] == metric]
            x = np.arange(len(g))
            up, down = np.zeros(len(g)), np.zeros(len(g))
            for col, text, color in DECOMPOSITION_STACK:
                v = g[col].to_numpy(float)
                bottom = np.where(v >= 0, up, down)
                ax.bar(x, v, bottom=bottom, color=color, width=0.7, label=text, edgecolor="white", linewidth=0.5)
                up, down = up + np.clip(v, 0, None), down + np.clip(v, None, 0)
            ax.plot(x, g["total"].to_numpy(float), "D", color="black", markersize=5, label="total (the cell)")
            ax.axhline(0.0, color=".3", linewidth=0.8)
            ticks = ["\n".join(str(r[c]) for c in varying) or str(r["target"]) for r in g.to_dict("records")]
            ax.set_xticks(x, ticks)
            ax.set_xlim(-0.8, len(g) - 0.2)
            ax.set_title(metric)
        outer_labels(fig, axes, " / ".join(label(c) for c in varying), "error")
        handles, texts = axes[0].get_legend_handles_labels()
        fig.legend(handles, texts, loc="outside lower center", ncols=2, frameon=False)
        constant = {c: d[c].iloc[0] for c in DECOMPOSITION_LABELS if c not in varying}
        title = f"error decomposition: {sampler}" + (f" ({describe_constant(constant)})" if constant else "")
        fig.suptitle("\n".join(textwrap.wrap(title, 70)), fontsize=9.5)
        file = f"decomposition-{slug(sampler)}.png"
        save(fig, out / file)
        caption = (f"Error decomposition of sampler {sampler}: each bar a decomposed cell"
                   + (f" ({', '.join(label(c) for c in varying)})" if varying else "")
                   + ", one panel per metric; the parts of the total error (black diamond) removed by an exact "
                   "start, the exact score and a fine grid, and the residual.")
        records.append(FigureRecord("decomposition", file, ", ".join(metrics), caption,
                                    labels=[t for _, t, _ in DECOMPOSITION_STACK]))
    return records
