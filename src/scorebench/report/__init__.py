"""``scorebench report``: a Markdown and an HTML report with figures from result tables.

    scorebench report RESULTS... --out DIR [--title TEXT] [--highlight LABEL]

``RESULTS`` are run directories or ``results.csv`` files (several are pooled; a row held by
more than one is taken from the last).  ``DIR`` receives ``report.md``, ``report.html``
(self-contained apart from the PNGs beside it), the PNG figures, ``orders.csv`` (the
fitted convergence orders) and, for runs with error-decomposition rows, ``decomposition.csv``.
Everything is computed from the tables alone, and the same tables give byte-identical files.
``--highlight LABEL`` draws that sampler dark and thick and the others muted, and adds a
section comparing it with the best of the others at matched NFE (:mod:`scorebench.proposal`),
with a figure of its error ratio to the best baseline against NFE per target and process.
What each figure shows and how to read it: ``docs/report.md``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..results import PROVENANCE_FILE, ResultsError
from ..schema import CELL_SIZES, label
from .data import (
    IDENTITY,
    MIN_STEPS,
    ORDER_KEYS,
    cell_means,
    convergence_orders,
    decomposition,
    fit_order,
    floor_stats,
    fmt,
    label_orders,
    load_tables,
    pareto_front,
    with_floors,
)
from .render import Block, Heading, Image, Paragraph, Table, to_html, to_markdown

__all__ = [
    "Report",
    "add_parser",
    "build_report",
    "cell_means",
    "convergence_orders",
    "fit_order",
    "floor_stats",
    "load_tables",
    "pareto_front",
]

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
ORDERS_CSV = "orders.csv"
DECOMPOSITION_CSV = "decomposition.csv"


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    out: Path
    figures: list  # list[FigureRecord]
    orders: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def markdown(self) -> Path:
        return self.out / REPORT_MD

    @property
    def html(self) -> Path:
        return self.out / REPORT_HTML


def _provenance(path: Path) -> dict:
    run_dir = path if path.is_dir() else path.parent
    try:
        return json.loads((run_dir / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _inputs_table(paths: Sequence[str | Path], frame: pd.DataFrame) -> Table:
    rows = []
    for i, p in enumerate(paths):
        path = Path(p)
        info = _provenance(path)
        df = frame[frame["input"] == i]
        sha = info.get("git_sha") or ""
        rows.append([
            f"`{path}`", ", ".join(dict.fromkeys(df["suite"].tolist())) or info.get("suite", ""),
            str(df["cell_id"].nunique()), str(len(df)), ", ".join(str(s) for s in sorted(set(df["seed"]))),
            ", ".join(dict.fromkeys(df["device"].tolist())), (sha[:10] + ("+dirty" if info.get("git_dirty") else ""))
            if sha else "", str(info.get("timestamp", "")),
        ])
    return Table(["input", "suite", "cells", "rows", "seeds", "device", "git", "started"], rows,
                 [False, False, True, True, False, False, False, False])


def _floor_table(floors: pd.DataFrame) -> Table:
    rows = [[r.target, str(r.n_samples), r.metric, f"{fmt(r.floor_mean)} ± {fmt(r.floor_sd)}", str(r.floor_seeds)]
            for r in floors.itertuples()]
    return Table(["target", "n", "metric", "floor (mean ± sd over seeds)", "seeds"], rows,
                 [False, True, False, True, True])


def _orders_table(orders: pd.DataFrame) -> Table:
    rows = []
    for r in orders.itertuples():
        order = "–" if math.isnan(r.slope) else (f"{r.slope:+.3f} ± {r.se:.3f}" if math.isfinite(r.se)
                                                  else f"{r.slope:+.3f}")
        rows.append([*(str(getattr(r, c)) for c in ORDER_KEYS), order, r.used or "(none above the floor)", r.error])
    return Table([*map(label, ORDER_KEYS), "order ± SE", "steps fitted", "error fitted"], rows,
                 [c in CELL_SIZES for c in ORDER_KEYS] + [True, False, False])


def _decomposition_table(decomp: pd.DataFrame) -> Table:
    labels = ["sampler", "target", "process", "estimator", "time_grid", "init", "steps", "n_samples", "metric"]
    parts = ["total", "init_part", "score_part", "disc_part", "residual"]
    rows = [[*(str(r[c]) for c in labels), *(fmt(r[c]) for c in parts),
             "–" if math.isnan(r["fine_steps"]) else str(int(r["fine_steps"]))] for r in decomp.to_dict("records")]
    return Table([*map(label, labels), "total", "initialisation", "score", "discretisation", "residual",
                  "fine steps"], rows, [c in CELL_SIZES for c in labels] + [True] * 6)


def _failures(frame: pd.DataFrame) -> list[Block]:
    failed = frame[frame["status"] != "ok"]
    if frame.empty:
        return [Paragraph("The table has no rows.")]
    if failed.empty:
        return [Paragraph(f"Every one of the {len(frame)} rows has status `ok`.")]
    cell = [*IDENTITY, "seed"]
    g = failed.groupby([*cell, "status", "message"], sort=False, dropna=False)["metric"].agg(
        lambda s: ", ".join(dict.fromkeys(s)))
    rows = []
    for (*key, status, message), metrics in g.items():
        rows.append([*map(str, key), status, metrics, str(message) if pd.notna(message) else ""])
    counts = ", ".join(f"{s} {n}" for s, n in failed["status"].value_counts(sort=False).items())
    n_cells = failed.groupby(IDENTITY, sort=False).ngroups
    return [
        Paragraph(f"{len(failed)} of {len(frame)} rows are not ok ({counts}), in {n_cells} cell(s); "
                  "they are left out of every figure."),
        Table([*map(label, cell), "status", "metrics", "message"], rows,
              [c in (*CELL_SIZES, "seed") for c in cell] + [False, False, False]),
    ]


ALT = {"heatmap": "heatmap of {m}", "front_nfe": "{m} against NFE", "front_time": "{m} against wall time",
       "convergence": "{m} against steps", "score_t": "{m} against diffusion time",
       "ratio": "{m} of the proposal over the best baseline against NFE",
       "decomposition": "error decomposition of {m}: stacked parts per cell",
       "claim": "{m}: the measured points against the claim's prediction"}


def _image(record) -> Image:
    return Image(record.file, record.caption, ALT[record.kind].format(m=record.metric))


def _proposal_blocks(frame: pd.DataFrame, highlight: str, out: Path, orders: dict[str, list]) -> tuple[
        list[Block], list]:
    """The section comparing the highlighted sampler with the best of the others."""
    from ..proposal import MATCH_NAMES, MATCHES, compare_proposal
    from . import figures as F

    result = compare_proposal(frame, highlight)
    blocks: list[Block] = [Heading(f"{highlight} against the baselines"), Paragraph(f"**{result.headline()}.**")]
    rows = []
    for match in MATCHES:
        u = result.units[result.units["match"] == match]
        if match != "steps":
            u = u[u["best"]]
        counts = u["verdict"].value_counts()
        rows.append([f"the best baseline at {MATCH_NAMES[match]}" if match != "steps" else "each baseline at the "
                     "same steps", str(counts.get("win", 0)), str(counts.get("loss", 0)), str(counts.get("tie", 0))])
    blocks += [
        Paragraph(f"Per cell and metric, {highlight} against the other samplers of the same run (they share their "
                  "initial noise and Brownian increments, so differences are paired over seeds): a win or loss "
                  "needs the paired 99% interval to exclude 0 and the difference to exceed the tolerance (10% of the "
                  "baseline's error, 1% for exact laws, or the noise floor, or the seed-to-seed spread, whichever is "
                  "largest); anything else is a tie. The best baseline at an NFE or wall time is chosen on the same "
                  "seeds, which favours it. `scorebench compare RUN --proposal "
                  f"{highlight}` lists every comparison."),
        Table(["against", "wins", "losses", "ties"], rows, [False, True, True, True]),
    ]
    recs = F.ratio_to_best(result.units, orders, highlight, out)
    blocks += [_image(r) for r in recs]
    if not recs:
        blocks.append(Paragraph("No ratio figure: no cell has a baseline run at the proposal's NFE.", note=True))
    return blocks, recs


def _claims_blocks(paths: Sequence[str | Path], out: Path) -> tuple[list[Block], list]:
    """The Claims section, when the suites of the runs carry ``[[claims]]``: the table, and one figure
    per claim overlaying the prediction on the measured points."""
    from ..claims import ClaimError
    from ..claims.runs import claims_of_runs, evaluate_sets, summary, table
    from .claims import claim_figure

    try:
        sets = claims_of_runs(list(paths))
        if not sets:
            return [], []
        results = evaluate_sets(sets)
    except (ClaimError, ResultsError) as exc:
        return [Heading("Claims"), Paragraph(f"The claims could not be evaluated: {exc}", note=True)], []
    rows = [[r.id, r.paper, r.predicted, r.measured, r.verdict, r.margin] for r in table(results).itertuples()]
    blocks: list[Block] = [
        Heading("Claims"),
        Paragraph(f"{summary(results)}. Each claim is a paper's result checked against these runs' rows "
                  "(`scorebench claims RUN_DIR` prints the same table; docs/claims.md gives the rules): a verdict "
                  "needs the 95% interval of the measured quantity to meet (holds) or miss (fails) the prediction; "
                  "an interval too wide to decide is inconclusive."),
        Table(["claim", "paper", "predicted", "measured ± 95% CI", "verdict", "margin / reason"], rows,
              [False] * 6),
    ]
    records = []
    for res in results:
        rec = claim_figure(res, out)
        if rec is None:
            blocks.append(Paragraph(f"No figure for {res.claim.id}: nothing measured to draw.", note=True))
            continue
        records.append(rec)
        blocks.append(_image(rec))
    return blocks, records


def build_report(paths: Sequence[str | Path], out: str | Path, title: str | None = None,
                 highlight: str | None = None) -> Report:
    """Read the result tables at ``paths`` and write the report into ``out`` (``highlight``: a sampler
    label drawn prominently and compared with the best of the others)."""
    from . import figures as F

    frame, notes = load_tables(paths)
    if highlight is not None and highlight not in set(frame["sampler"]):
        raise ResultsError(f"--highlight: no sampler labelled {highlight!r} in the tables; samplers: "
                           f"{', '.join(dict.fromkeys(frame['sampler']))}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)

    orders = label_orders(frame)
    floors = floor_stats(frame)
    all_means = with_floors(cell_means(frame), floors)
    # error-decomposition variants have their own section; every other one shows the grids' cells
    means = all_means[all_means["ablation"] == "none"].reset_index(drop=True)
    decomp = decomposition(all_means, frame)
    fits = convergence_orders(means)
    suites = ", ".join(dict.fromkeys(frame["suite"].tolist())) or "empty table"
    title = title or f"scorebench report: {suites}"
    samplers = [s for s in orders["sampler"] if s in set(means["sampler"])]
    palette = F.Palette.of(samplers, highlight)

    blocks: list[Block] = [Heading(title, 1)]
    counts = ", ".join(f"{s} {n}" for s, n in frame["status"].value_counts(sort=False).items())
    blocks += [
        Paragraph(f"{frame['cell_id'].nunique()} cells, {len(frame)} rows ({counts or 'none'}); "
                  f"metrics: {', '.join(orders['metric']) or 'none'}. Every value is \"lower is better\"; "
                  "means are over seeds, intervals are 95% confidence intervals of those means."),
        _inputs_table(paths, frame),
        *[Paragraph(n, note=True) for n in notes],
    ]
    records: list = []
    with F.style():
        section, recs = _claims_blocks(paths, out)
        blocks += section
        records += recs
        if highlight is not None:
            section, recs = _proposal_blocks(frame, highlight, out, orders)
            blocks += section
            records += recs
        # -- heatmaps ------------------------------------------------------------------
        blocks.append(Heading("Accuracy per sampler and target"))
        if means.empty:
            blocks.append(Paragraph("No rows with status ok: nothing to draw.", note=True))
            hm = []
        else:
            blocks.append(Paragraph(
                "Each cell is the metric's mean over seeds at the cell's largest step count and sample size. "
                "Darker is worse; the colour scale is logarithmic when the values span more than a factor 20. A "
                "green frame marks a cell within the noise floor (mean ≤ floor mean + its sd over seeds): a tie "
                "with the truth at this sample size. Grey: not run."))
            hm = F.heatmaps(means, orders, out)
        blocks += [_image(r) for r in hm]
        records += hm

        # -- cost / accuracy -----------------------------------------------------------
        blocks.append(Heading("Cost and accuracy"))
        front_blocks: list[Block] = []
        for cost in ("nfe", "sample_s"):
            recs, skipped = F.fronts(means, floors, orders, palette, out, cost)
            front_blocks += [_image(r) for r in recs]
            records += recs
            if skipped:
                front_blocks.append(Paragraph(
                    f"No {F.COSTS[cost][2]} front for {', '.join(skipped)}: every panel has a single cost value "
                    "(one step count, one sampler).", note=True))
        if any(isinstance(b, Image) for b in front_blocks):
            blocks.append(Paragraph(
                "Error against cost (NFE: score evaluations per particle; wall time: the seconds a cell's sampling "
                "took), log-log, means over seeds with 95% confidence intervals as error bars; each line joins a "
                "sampler's step counts. Circled points on the grey staircase form the Pareto front: nothing else "
                "is both cheaper and more accurate, so a sampler on it is the cheapest way to its accuracy among "
                "those run. The grey band is the noise floor (mean ± sd over seeds): inside it the metric cannot "
                "tell the samples from the target."))
        elif not front_blocks:
            front_blocks.append(Paragraph("No cost/accuracy front: nothing to draw.", note=True))
        blocks += front_blocks

        # -- convergence orders --------------------------------------------------------
        blocks.append(Heading("Convergence orders"))
        if fits.empty:
            step_counts = sorted(set(means.loc[means["t"].isna(), "steps"])) if not means.empty else []
            blocks.append(Paragraph(
                f"No convergence plot: no metric has a cell group (target, process, score, grid, sample size, "
                f"sampler) with at least {MIN_STEPS} step counts (step counts in the table: "
                f"{', '.join(map(str, step_counts)) or 'none'}).", note=True))
        else:
            blocks.append(Paragraph(
                "Error against the number of steps, log-log, means over seeds with 95% confidence intervals. The "
                "dashed line is the least-squares fit through the points above the noise floor; its slope ± "
                "standard error, in the legend, is the empirical order (error ~ steps^slope; -1 is first order; "
                f"no fit: fewer than {MIN_STEPS} step counts above the floor). "
                "Exact-law metrics (exact_w2, exact_kl) have no sampling noise and give the cleanest orders; "
                "with a perturbed score the error levels off at the score error and the slope tends to 0. "
                "Where a group has cells started from exact draws of p_T (init = \"exact\"), only they are fitted: "
                "their error is the discretisation error alone. Prior-start cells add the initialisation error, "
                "which a probability-flow ODE never contracts, so their slope flattens toward 0 as the steps grow; "
                "the table's last column says which error each slope measures."))
            conv = F.convergence(means, floors, fits, orders, palette, out)
            blocks += [_image(r) for r in conv]
            records += conv
            blocks.append(_orders_table(fits))
            blocks.append(Paragraph(f"The same numbers, machine-readable: `{ORDERS_CSV}`."))
        fits.to_csv(out / ORDERS_CSV, index=False, float_format="%.12g")

        # -- score error against time ------------------------------------------------------
        blocks.append(Heading("Score error against diffusion time"))
        recs, why = F.score_vs_time(means, orders, out)
        if why:
            blocks.append(Paragraph(f"No score-error plot: {why}.", note=True))
        else:
            blocks.append(Paragraph(
                "Mean squared error of each estimator's score against the exact score of p_t, x drawn from p_t, "
                "log-log, means over seeds (and samplers: the score error does not depend on them) with 95% "
                "confidence intervals."))
        blocks += [_image(r) for r in recs]
        records += recs

        # -- error decomposition -------------------------------------------------------------
        if not decomp.empty:
            blocks.append(Heading("Error decomposition"))
            blocks.append(Paragraph(
                "Each decomposed cell ([suite] decompose = true) ran again with one source of error removed at a "
                "time, by common random numbers (the same start draws and, on the same grid, the same step noise): "
                "an exact start (draws of p_T instead of the prior), the exact score (the oracle instead of the "
                "estimator) and a fine grid. A source's part is the cell's error minus the error without it; the "
                "residual is the rest: the parts' interactions and the error left with every source removed "
                "(early stopping against the data law, the noise floor of a sample metric, the fine grid's own "
                "discretisation error). Parts are differences of cell means and may be negative, when removing a "
                "source does not lower a metric's value (an error that cancels another, or noise)."))
            recs = F.decomposition_figures(decomp, orders, out)
            blocks += [_image(r) for r in recs]
            records += recs
            blocks.append(_decomposition_table(decomp))
            blocks.append(Paragraph(f"The same numbers, machine-readable: `{DECOMPOSITION_CSV}`."))
            decomp.to_csv(out / DECOMPOSITION_CSV, index=False, float_format="%.12g")

    # -- noise floors and failures -------------------------------------------------------
    blocks.append(Heading("Noise floors"))
    if floors.empty:
        blocks.append(Paragraph("No metric in the table has a non-zero noise floor.", note=True))
    else:
        blocks += [Paragraph("Each metric between two independent target samples of the cell's size (zero for "
                             "exact-law metrics): what a perfect sampler shows on average.  It is not a lower bound: "
                             "with a few seeds a sampler's mean can land below it by chance."),
                   _floor_table(floors)]
    blocks.append(Heading("Failed cells"))
    blocks += _failures(frame)

    (out / REPORT_MD).write_text(to_markdown(blocks))
    (out / REPORT_HTML).write_text(to_html(blocks, title))
    return Report(out, records, fits, notes)


def cmd_report(args: argparse.Namespace) -> int:
    report = build_report(args.results, args.out, args.title, args.highlight)
    print(f"report: {len(report.figures)} figures -> {report.markdown}, {report.html}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``report`` subcommand."""
    p = sub.add_parser("report", help="write a Markdown + HTML report with figures from result tables")
    p.add_argument("results", nargs="+", help="run directories or results.csv files")
    p.add_argument("--out", required=True, help="directory for report.md, report.html and the PNG figures")
    p.add_argument("--title", help="report title (default: the suite names)")
    p.add_argument("--highlight", metavar="LABEL",
                   help="draw this sampler prominently, the others muted, and compare it with the best of them")
    p.set_defaults(func=cmd_report)
