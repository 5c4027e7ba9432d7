"""The ``scorebench`` command line.

    scorebench run SUITE [--out DIR] [--resume] [--device D] [--quick]
    scorebench validate SUITE [--quick] [--device D] [--no-estimate]
    scorebench show RESULTS [--metric M] [--values value|floor|ci]
    scorebench list targets|processes|estimators|samplers|metrics
    scorebench check-sampler NAME|module:Name|file.py:Name [--processes vp,ou] [--param K=V] [--ladder 50,100]

Exit codes: 0 ok, 1 some cells (or conformance checks) failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

from . import __version__, compare, report
from .estimators import ESTIMATORS
from .metrics import METRICS
from .plugins import describe_plugin, is_spec, load_object
from .processes import PROCESSES
from .registry import Registry
from .report.data import IDENTITY
from .results import ResultsError, read_results
from .runner import RunSummary, run_suite
from .samplers import SAMPLERS, Sampler
from .suite import SuiteError, load_suite
from .targets import TARGETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REGISTRIES: dict[str, Registry] = {
    "targets": TARGETS,
    "processes": PROCESSES,
    "estimators": ESTIMATORS,
    "samplers": SAMPLERS,
    "metrics": METRICS,
}
ID_COLUMNS = list(IDENTITY)


def _summary_line(registry: Registry, name: str) -> str:
    doc = inspect.getdoc(registry.factory(name)) or ""
    return doc.split("\n\n")[0].replace("\n", " ") if doc else ""


def cmd_list(args: argparse.Namespace) -> int:
    registry = REGISTRIES[args.kind]
    for name in registry.names():
        print(f"{name}: {_summary_line(registry, name)}")
        for p in registry.params(name):
            print(f"    {p}")
    return 0


def pivot(frame: pd.DataFrame, values: str = "value", metric: str | None = None) -> pd.DataFrame:
    """Mean over seeds per cell x metric.  Score metrics are averaged over their times,
    unless one metric is selected: then each time is a column."""
    df = frame[frame["status"] == "ok"].copy()
    if metric is not None:
        df = df[df["metric"] == metric]
        df["metric"] = [m if pd.isna(t) else f"{m}@t={t:.3g}" for m, t in zip(df["metric"], df["t"], strict=True)]
    if values == "ci":
        df["ci"] = (df["ci_high"] - df["ci_low"]) / 2
        values = "ci"
    table = df.pivot_table(index=ID_COLUMNS, columns="metric", values=values, aggfunc="mean", sort=False)
    table.columns.name = None
    return table


def floor_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean noise floor per target and sample size x metric (floors do not depend on the sampler)."""
    df = frame[(frame["status"] == "ok") & frame["floor"].notna() & (frame["floor"] != 0)]
    if df.empty:
        return pd.DataFrame()
    table = df.pivot_table(index=["target", "n_samples"], columns="metric", values="floor", aggfunc="mean")
    table.columns.name = None
    return table


def format_summary(summary: RunSummary, frame: pd.DataFrame, max_lines: int = 30) -> str:
    total = summary.fit_s + summary.sample_s + summary.metric_s + summary.floor_s
    share = (summary.metric_s + summary.floor_s) / total if total > 0 else 0.0
    lines = [
        f"suite {frame['suite'].iloc[0] if len(frame) else '?'}: {summary.cells_total} cells "
        f"({summary.cells_run} run, {summary.cells_skipped} already done), {summary.rows} rows "
        f"-> {summary.run_dir / 'results.csv'}",
        "status: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.status_counts.items())),
        f"time: fit {summary.fit_s:.2f} s, sample {summary.sample_s:.2f} s, metrics {summary.metric_s:.2f} s "
        f"+ noise floors {summary.floor_s:.2f} s (metrics {100 * share:.0f}% of compute), "
        f"wall {summary.wall_s:.1f} s",
    ]
    if any(v > 0 for v in summary.fit_s_by_estimator.values()):
        lines.append("fit seconds per estimator: " + ", ".join(
            f"{k} {v:.2f} s" for k, v in sorted(summary.fit_s_by_estimator.items())))
    table = pivot(frame)
    if len(table):
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
            text = table.to_string().splitlines()
            floors = floor_table(frame).to_string().splitlines()
        if len(text) > max_lines:
            text = [*text[:max_lines], f"... ({len(text) - max_lines} more lines: scorebench show {summary.run_dir})"]
        lines += ["", "mean over seeds (blank: metric not in that cell's grid):", *text]
        if floors:
            lines += ["", "noise floors (the metric between two target samples; mean over seeds):", *floors]
    else:
        lines += ["", "no finished rows with status ok"]
    if summary.failures:
        lines += ["", f"{len(summary.failures)} failed rows:"]
        lines += [f"  {f}" for f in summary.failures[:20]]
        if len(summary.failures) > 20:
            lines.append(f"  ... and {len(summary.failures) - 20} more (see the status column)")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    summary = run_suite(suite, args.out, resume=args.resume, device=args.device, quick=args.quick,
                        progress=not args.no_progress)
    print(format_summary(summary, read_results(summary.run_dir)))
    return summary.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    shown = suite.quick() if args.quick else suite
    cells = shown.cells()
    runs = sum(len(shown.seeds_of(c)) for c in cells)
    print(f"{args.suite}: ok: suite {suite.name!r}{' (--quick)' if args.quick else ''}, {len(cells)} cells, "
          f"{runs} cell x seed runs, metrics {', '.join(suite.metrics)}", flush=True)
    if not args.no_estimate:
        from .estimate import estimate

        print("estimating: timing each component once on this machine (one fit per learned estimator; "
              "--no-estimate skips this)", file=sys.stderr, flush=True)
        print(estimate(suite, args.device, quick=args.quick).describe())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    frame = read_results(args.results)
    if args.metric is not None and args.metric not in set(frame["metric"]):
        available = ", ".join(sorted(set(frame["metric"])))
        print(f"scorebench show: no metric {args.metric!r} in {args.results}; available: {available}", file=sys.stderr)
        return 2
    table = pivot(frame, args.values, args.metric)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 500,
                           "display.precision", 4):
        print(table.to_string() if len(table) else "(no finished rows)")
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        counts = ", ".join(f"{k} {v}" for k, v in failed["status"].value_counts().items())
        print(f"\n{len(failed)} rows not ok: {counts}")
    return 0


def load_sampler(spec: str, params: dict[str, Any] | None = None) -> Sampler:
    """A registered sampler name, ``module:Name`` or ``path/file.py:Name`` (a Sampler class or
    factory, built with ``params``, or an instance)."""
    params = params or {}
    if not is_spec(spec):
        return SAMPLERS.build(spec, **params)
    obj = load_object(spec)
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Sampler)):
        return SAMPLERS.build(spec, **params)
    if params:
        raise ValueError(f"{spec!r} is an instance, not a class: --param does not apply")
    return obj


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` with a TOML value (``0.1``, ``true``, ``"heun"``, ``[1, 2]``); a bare word is a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


def _ladder(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated step counts, got {text!r}") from None


def cmd_check_sampler(args: argparse.Namespace) -> int:
    from .testing import check_sampler

    processes = tuple(p.strip() for p in args.processes.split(",") if p.strip())
    for p in processes:
        PROCESSES.factory(p)  # unknown names raise with the allowed list
    sampler = load_sampler(args.sampler, dict(args.param or []))
    options = {"ladder": args.ladder} if args.ladder else {}
    report = check_sampler(sampler, processes, raise_on_failure=False, steps=args.steps, n=args.n, **options)
    print(report)
    origin = describe_plugin(sampler, args.sampler if is_spec(args.sampler) else None)
    if origin is not None:
        dist = (f"{origin['distribution']} {origin['version']}" if origin["distribution"]
                else "no installed distribution")
        print(f"checked {origin['spec']} from {origin['file']} (sha256 {str(origin['sha256'])[:12]}, {dist})")
    return 0 if report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorebench",
        description="Benchmark diffusion-model samplers and score estimators against exact ground truth.",
    )
    parser.add_argument("--version", action="version", version=f"scorebench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a suite file and write a result table")
    p.add_argument("suite", help="suite TOML file")
    p.add_argument("--out", help="run directory (default results/<suite>/<run-id>)")
    p.add_argument("--resume", action="store_true", help="skip the cells already in the run directory")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the suite's)")
    p.add_argument("--quick", action="store_true", help="smallest steps and sample size, at most 2 seeds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a suite file without running it, and estimate its wall time")
    p.add_argument("suite")
    p.add_argument("--quick", action="store_true", help="validate and estimate the --quick version of the suite")
    p.add_argument("--device", help="estimate for this device (default: the suite's)")
    p.add_argument("--no-estimate", action="store_true",
                   help="only check the file (the estimate times each component once on this machine)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="print a result table as a pivot (mean over seeds)")
    p.add_argument("results", help="run directory or results.csv")
    p.add_argument("--metric", help="only this metric")
    p.add_argument("--values", choices=["value", "floor", "ci"], default="value",
                   help="what to show: the metric, its noise floor, or the half-width of its 95%% CI")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("check-sampler", help="run the conformance checks on a sampler")
    p.add_argument("sampler", help="a registered name, package.module:Name or path/to/file.py:Name (imports and runs "
                                   "that code; the current directory is importable)")
    p.add_argument("--processes", default="vp,ou,ve,subvp", help="comma-separated processes to check with")
    p.add_argument("--steps", type=int, help="steps of the non-affine Gaussian check (default 200)")
    p.add_argument("--n", type=int,
                   help="particles of the non-affine checks (default 5000 for gaussian_exact_law, "
                        "20000 for convergence)")
    p.add_argument("--ladder", type=_ladder, help="step counts of the convergence check (default 50,100,200,400)")
    p.add_argument("--param", type=parse_param, action="append", metavar="KEY=VALUE",
                   help="a constructor parameter of the sampler (TOML value), repeatable")
    p.set_defaults(func=cmd_check_sampler)

    p = sub.add_parser("list", help="list registered components with their parameters")
    p.add_argument("kind", choices=sorted(REGISTRIES))
    p.set_defaults(func=cmd_list)

    compare.add_parser(sub)
    report.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (SuiteError, ResultsError) as exc:
        print(f"scorebench {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad device and other user input caught by the library
        print(f"scorebench {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
