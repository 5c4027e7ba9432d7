"""The ``scorebench`` command line.

    scorebench run SUITE [--out DIR] [--resume] [--device D] [--quick] [--compile] [--timeout S]
                         [--skip ID] [--retry STATUS]
    scorebench validate SUITE [--quick] [--device D] [--no-estimate]
    scorebench show RESULTS [--metric M] [--values value|floor|ci]
    scorebench list targets|processes|estimators|samplers|metrics
    scorebench check-sampler NAME|module:Name|file.py:Name [--processes vp,ou] [--param K=V] [--ladder 50,100]
    scorebench claims RUN_DIR... [--claims FILE] [--out DIR] [--format md|csv]

Exit codes: 0 ok, 1 some cells (or conformance checks, or claims) failed, 2 bad input (suite, arguments,
run-directory state), 3 internal error (traceback in a log file), 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__, compare, report
from .backends import make_backend
from .claims import runs as claims_runs
from .estimators import ESTIMATORS
from .metrics import METRICS
from .plugins import PluginError, describe_plugin, is_spec, load_object
from .processes import PROCESSES
from .registry import Registry
from .results import STATUSES, ResultsError, ResultTable, read_results
from .runner import Runner, RunnerCrash, RunSummary, resolve_run_dir
from .samplers import SAMPLERS, Sampler
from .schema import CELL_LABELS, CELL_SIZES
from .suite import SuiteError, describe_quick_cuts, load_suite
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
ID_COLUMNS = [*CELL_LABELS, *CELL_SIZES]


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
    if summary.quick_cuts:
        lines.append(describe_quick_cuts(summary.quick_cuts))
    if summary.repaired:
        ids = ", ".join(summary.repaired)
        lines.append(f"{len(summary.repaired)} cells found damaged in the table (rows lost or changed since they "
                     f"finished), damaged, run again: {ids}")
        lines += [f"  {cid}: {why}" for cid, why in list(summary.repaired.items())[:10]]
    if any(v > 0 for v in summary.fit_s_by_estimator.values()):
        lines.append("fit seconds per estimator: " + ", ".join(
            f"{k} {v:.2f} s" for k, v in sorted(summary.fit_s_by_estimator.items())))
    table = pivot(frame)
    if len(table):
        with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
            text = table.to_string().splitlines()
            floor_frame = floor_table(frame)
            floors = floor_frame.to_string().splitlines() if len(floor_frame) else []
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


def resume_command(args: argparse.Namespace, run_dir: Path, skip: Sequence[str] = ()) -> str:
    """The exact command that goes on with an interrupted run."""
    words = ["scorebench", "run", args.suite, "--out", str(run_dir), "--resume"]
    if args.quick:
        words.append("--quick")
    if args.device:
        words += ["--device", args.device]
    if args.timeout is not None:
        words += ["--timeout", f"{args.timeout:g}"]
    for flag in ("workers", "scheduler", "scheduler_file"):
        if getattr(args, flag, None) is not None:
            words += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    if getattr(args, "compile", False):
        words.append("--compile")
    for cell in [*(args.skip or []), *skip]:
        words += ["--skip", cell]
    return shlex.join(words)


def cmd_run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    if args.compile:
        suite = replace(suite, compile=True)
    run_dir = resolve_run_dir(suite, args.out, args.resume)
    args.run_dir = run_dir
    # a progress bar only on a terminal: in a log it is noise, and into a closed pipe it would stop the run
    backend = make_backend(args.workers, args.scheduler, args.scheduler_file)
    runner = Runner(suite, run_dir, device=args.device, resume=args.resume, quick=args.quick,
                    progress=not args.no_progress and sys.stderr.isatty(), timeout=args.timeout,
                    skip=args.skip or (), retry=args.retry or (), backend=backend)
    try:
        summary = runner.run()
    except (KeyboardInterrupt, Terminated) as exc:
        kept = len(ResultTable.finished_in(run_dir))
        cell = runner.current
        where = (f" during cell {cell.cell_id} ({cell.target}/{cell.process}/{cell.estimator}/{cell.sampler}/"
                 f"{cell.steps})" if cell else "")
        hint = (f"; to leave that cell out: {resume_command(args, run_dir, [cell.cell_id])}" if cell else "")
        how = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted"
        exc.message = (f"scorebench run: {how}{where}; {kept} finished cells are kept in {run_dir}; "
                       f"go on with: {resume_command(args, run_dir)}{hint}")
        raise
    args.exit_code = summary.exit_code
    try:
        text = format_summary(summary, read_results(summary.run_dir))
    except Exception as exc:  # the run finished and its table checked out: a failure here is ours
        raise RunnerCrash(f"summarising the finished run: {type(exc).__name__}: {exc}") from exc
    print(text)
    return summary.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    shown = suite.quick() if args.quick else suite
    cells = shown.cells()
    runs = sum(len(shown.seeds_of(c)) for c in cells)
    print(f"{args.suite}: ok: suite {suite.name!r}{' (--quick)' if args.quick else ''}, {len(cells)} cells, "
          f"{runs} cell x seed runs, metrics {', '.join(suite.metrics)}", flush=True)
    if shown.quick_cuts:
        print(describe_quick_cuts(shown.quick_cuts), flush=True)
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


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
    p.add_argument("--quick", action="store_true", help="smallest steps and sample size, at most 2 seeds, "
                   "learned estimators' training budgets cut (named in the summary)")
    p.add_argument("--compile", action="store_true", help="run the exact mixture score through torch.compile "
                   "(the suite's compile = true; results equal to float rounding, the first cell compiles)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="time limit per cell: a cell past it is stopped and recorded with status 'timeout' "
                        "(cells then run in a child process; default: the suite's timeout, else none)")
    p.add_argument("--skip", action="append", metavar="CELL_ID",
                   help="leave this cell out (recorded with status 'skipped'), repeatable")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="N",
                       help="run the cells on a Dask LocalCluster of N single-threaded worker processes "
                            "(with --device cuda: one per GPU); docs/distributed.md")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the cells on an existing Dask cluster, e.g. tcp://10.0.0.1:8786")
    where.add_argument("--scheduler-file", metavar="PATH",
                       help="run the cells on the Dask cluster whose scheduler wrote PATH "
                            "(dask scheduler --scheduler-file PATH, dask-jobqueue, dask-cuda)")
    p.add_argument("--retry", action="append", metavar="STATUS", choices=[s for s in STATUSES if s != "ok"],
                   help="with --resume: run again the cells that have rows with this status "
                        "(timeout, error, oom, diverged, skipped), repeatable")
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
    claims_runs.add_parser(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM, raised where the process is so that writes in progress end cleanly."""

    message = ""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


#: exit codes (see the module docstring)
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 3, 130, 143
#: a run stopped by a closed pipe before it finished (128 + SIGPIPE, as a shell reports it)
EXIT_BROKEN_PIPE = 141


def _crash_log(args: argparse.Namespace) -> Path:
    """Where an internal error's traceback goes: the run directory when there is one, else a temp file."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = getattr(args, "run_dir", None)
    for folder in ([Path(run_dir)] if run_dir else []) + [Path(tempfile.gettempdir())]:
        path = folder / f"scorebench-error-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(f"scorebench {__version__}: {' '.join(sys.argv)}\n\n{traceback.format_exc()}")
            return path
        except OSError:
            continue
    return Path("(the traceback could not be written anywhere)")


def _silence_stdout() -> None:
    """After a broken pipe (``scorebench ... | head``): send what is left to /dev/null, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code says which of these happened:

    0 everything ok; 1 some cells (or conformance checks) failed; 2 bad input (suite file,
    arguments, run-directory state, damaged tables); 3 an internal error (a traceback goes to a log
    file, the screen says where); 130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM, each with one
    line saying what was kept and how to go on.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader that went away (``| head``) is a BrokenPipeError here
        return code
    except (SuiteError, ResultsError, PluginError) as exc:
        print(f"scorebench {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # bad device and other user input caught by the library before any run
        print(f"scorebench {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader went away; a run that had not finished says so by its code
        _silence_stdout()
        return getattr(args, "exit_code", EXIT_BROKEN_PIPE if args.command == "run" else EXIT_OK)
    except KeyboardInterrupt as exc:
        print(getattr(exc, "message", "") or f"scorebench {args.command}: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated as exc:
        print(exc.message or f"scorebench {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_SIGTERM
    except Exception as exc:
        log = _crash_log(args)
        first = str(exc).splitlines()[0] if str(exc) else ""
        kept = "; finished cells are kept and --resume goes on" if args.command == "run" else ""
        print(f"scorebench {args.command}: internal error: {type(exc).__name__}: {first}\n"
              f"This is a bug in scorebench; please report it with the traceback in {log}{kept}", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
