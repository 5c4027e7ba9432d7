"""The claims of run directories, and the ``scorebench claims`` command.

    scorebench claims RUN_DIR... [--claims FILE] [--out DIR] [--format md|csv]

Without ``--claims``, a run's claims are those of the suite that made it: the suite text kept in
``provenance.json`` (``suite_text``), or the file ``suite_file`` when the kept text was cut and the
file's sha256 is the run's.  Each claim reads the pooled rows (and fit records) of the runs whose
suite carries it.  With ``--claims FILE`` (a suite file, or a file holding only ``[[claims]]``
tables) every claim reads the rows of every run.  The table goes to the screen, ``claims.md`` and
``claims.csv`` to ``--out`` (default: the first run directory).  Exit code 0 when every claim holds
or is inconclusive, 1 when one fails, 2 on a user mistake (a bad claim, a claim no rows fit, a run
directory that is not one).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..results import PROVENANCE_FILE, ResultsError, read_fit_records, read_provenance
from ..schema import CELL_LABELS
from ..suite import TEXT_EXCERPT_CHARS, load_suite
from .format import Claim, ClaimError, parse_claims, suite_labels
from .measure import ClaimResult, evaluate_claim

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CLAIMS_MD = "claims.md"
CLAIMS_CSV = "claims.csv"
#: the columns of ``claims.csv`` (the printed table shows the first ones)
TABLE_COLUMNS = ["id", "paper", "quantity", "predicted", "measured", "verdict", "margin", "n_points", "seeds"]
CSV_COLUMNS = [*TABLE_COLUMNS, "statement", "premise", "source"]


@dataclass
class ClaimSet:
    """Claims and the runs whose rows they read."""

    origin: str
    claims: list[Claim]
    runs: list[Path] = field(default_factory=list)


def run_dir_of(path: str | Path) -> Path:
    """The run directory of a run directory or of its ``results.csv``."""
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"{path}: no such file or directory")
    run_dir = path if path.is_dir() else path.parent
    if not (run_dir / "results.csv").is_file() and not (run_dir / "provenance.json").is_file():
        raise ResultsError(f"{path}: not a run directory (no results.csv or provenance.json); give the folder "
                           "`scorebench run --out` wrote")
    return run_dir


def _toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ClaimError(f"{origin}: invalid TOML: {exc}") from None


def suite_text_of_run(run_dir: Path) -> tuple[str, str, str] | None:
    """(suite text, where it comes from, its sha256) of the suite that made the run, or ``None``
    when the run has no provenance.  A kept text that was cut is replaced by ``suite_file`` (found
    as recorded, or relative to a folder above the run) when that file's sha256 is the run's;
    otherwise it is an error."""
    info = read_provenance(run_dir)
    if not info:
        return None
    text, sha = info.get("suite_text"), info.get("suite_sha256", "")
    suite_file = str(info.get("suite_file", ""))
    origin = f"{suite_file or 'the suite'} (as run in {run_dir})"
    chars = info.get("suite_chars")
    if isinstance(text, str) and not (isinstance(chars, int) and chars > TEXT_EXCERPT_CHARS):
        return text, origin, sha
    # a relative suite_file is relative to where the run started: here, or a folder above the run
    for candidate in [Path(suite_file), *(folder / suite_file for folder in run_dir.resolve().parents)]:
        try:
            raw = candidate.read_bytes() if suite_file else b""
        except OSError:
            continue
        if raw and hashlib.sha256(raw).hexdigest() == sha:
            return raw.decode("utf-8", errors="replace"), origin, sha
    raise ResultsError(f"{run_dir / PROVENANCE_FILE}: the suite text kept is cut and {suite_file or 'its file'} is "
                       "missing or changed since the run: give its claims with --claims FILE")


def claims_of_runs(paths: list[str | Path]) -> list[ClaimSet]:
    """The claim sets of the runs at ``paths``: one per distinct suite that carries claims, with the
    runs it made."""
    sets: dict[str, ClaimSet] = {}
    for path in paths:
        run_dir = run_dir_of(path)
        found = suite_text_of_run(run_dir)
        if found is None:
            continue
        text, origin, sha = found
        key = sha or hashlib.sha256(text.encode()).hexdigest()
        if key not in sets:
            data = _toml(text, origin)
            tables = data.get("claims", [])
            claims = parse_claims(tables, origin, suite_labels(data)) if tables else []
            sets[key] = ClaimSet(origin, claims)
        sets[key].runs.append(run_dir)
    return [s for s in sets.values() if s.claims]


def load_claims_file(path: str | Path) -> list[Claim]:
    """The claims of a suite file (validated with the whole suite) or of a file holding only
    ``[[claims]]`` tables."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClaimError(f"{path}: cannot read the claims file: {exc.strerror or exc}") from None
    data = _toml(text, str(path))
    if "suite" in data:
        suite = load_suite(path)
        return parse_claims(suite.claims, path, suite_labels(data)) if suite.claims else []
    extra = [k for k in data if k != "claims"]
    if extra:
        raise ClaimError(f"{path}: {extra[0]}: unknown key in a claims file; it holds [[claims]] tables only (or is a "
                         "whole suite file with a [suite] section)")
    if not data.get("claims"):
        raise ClaimError(f"{path}: no [[claims]] tables")
    return parse_claims(data["claims"], path)


def _rows(runs: list[Path]) -> tuple[pd.DataFrame | None, list[dict[str, Any]]]:
    from ..report.data import load_tables

    frame = None
    if any((r / "results.csv").is_file() for r in runs):
        frame, _ = load_tables([r for r in runs if (r / "results.csv").is_file()])
    fits = [rec for r in runs for rec in read_fit_records(r)]
    return frame, fits


def evaluate_runs(paths: list[str | Path], claims_file: str | Path | None = None) -> list[ClaimResult]:
    """Evaluate the claims of the runs at ``paths`` (or those of ``claims_file`` on all of them)."""
    if not paths:
        raise ResultsError("no run directories given")
    if claims_file is not None:
        sets = [ClaimSet(str(claims_file), load_claims_file(claims_file), [run_dir_of(p) for p in paths])]
        frame, _ = _rows(sets[0].runs)
        for claim in sets[0].claims:
            _check_against_rows(claim, frame)
    else:
        sets = claims_of_runs(paths)
        if not sets:
            raise ClaimError(f"{', '.join(map(str, paths))}: the suites of these runs carry no [[claims]] tables; "
                             "give them with --claims FILE")
    return evaluate_sets(sets)


def _check_against_rows(claim: Claim, frame: pd.DataFrame) -> None:
    """A claims file is checked against no suite: its metric and the labels of its ``where`` must be
    among the runs' rows, or it names something the runs never measured (a typo, most likely)."""
    if claim.source != "results" or frame.empty:
        return
    where = f"{claim.origin}: {claim.key}"
    metrics = list(dict.fromkeys(frame["metric"]))
    if claim.metric not in metrics:
        raise ClaimError(f"{where}.metric: the runs hold no metric {claim.metric!r}; they hold "
                         f"{', '.join(metrics)} (claim {claim.id!r})")
    for column, values in claim.where.items():
        if column in CELL_LABELS and column in frame.columns:
            known = list(dict.fromkeys(frame[column].astype(str)))
            unknown = [v for v in values if str(v) not in known]
            if unknown:
                raise ClaimError(f"{where}.where.{column}: the runs have no {column} {unknown[0]!r}; they have "
                                 f"{', '.join(known)} (claim {claim.id!r})")


def evaluate_sets(sets: list[ClaimSet]) -> list[ClaimResult]:
    """Evaluate each set's claims on the pooled rows and fit records of its runs."""
    results = []
    for cs in sets:
        frame, fits = _rows(cs.runs)
        results += [evaluate_claim(c, frame, fits) for c in cs.claims]
    return results


def table(results: list[ClaimResult]) -> pd.DataFrame:
    """One row per claim (:data:`CSV_COLUMNS`)."""
    rows = [{**r.row(), "statement": r.claim.statement, "premise": r.claim.premise, "source": r.claim.origin}
            for r in results]
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_markdown(results: list[ClaimResult]) -> str:
    """The claims table (claim, paper, predicted, measured ± CI, verdict, margin) and a count of verdicts."""
    head = ["claim", "paper", "predicted", "measured ± 95% CI", "verdict", "margin / reason"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table(results).itertuples():
        lines.append("| " + " | ".join(_md_cell(v) for v in (r.id, r.paper, r.predicted, r.measured,
                                                              f"**{r.verdict}**", r.margin)) + " |")
    return "\n".join([*lines, "", summary(results)])


def to_markdown(results: list[ClaimResult]) -> str:
    """The claims table, then each claim's statement, premise and groups."""
    lines = [table_markdown(results), ""]
    for res in results:
        c = res.claim
        lines += [f"### {c.id}", "", f"*{c.paper}*: {c.statement}", ""]
        if c.premise:
            lines += [f"Premise: {c.premise}", ""]
        lines += [f"Source: `{c.origin}`; {res.row()['n_points']} points, {res.row()['seeds']} seeds.", ""]
        if len(res.groups) > 1:
            lines += ["| group | measured | verdict | margin / reason |", "|---|---|---|---|"]
            lines += ["| " + " | ".join(_md_cell(v) for v in (g.name, g.measured, g.verdict, g.margin)) + " |"
                      for g in res.groups]
            lines.append("")
    return "\n".join(lines)


def summary(results: list[ClaimResult]) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in ("holds", "fails", "inconclusive")}
    return f"{len(results)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items())


def write_outputs(results: list[ClaimResult], out: str | Path) -> tuple[Path, Path]:
    """Write ``claims.md`` and ``claims.csv`` into ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    md, csv = out / CLAIMS_MD, out / CLAIMS_CSV
    md.write_text("# Claims\n\n" + to_markdown(results) + "\n")
    table(results).to_csv(csv, index=False)
    return md, csv


def cmd_claims(args: argparse.Namespace) -> int:
    results = evaluate_runs(args.runs, args.claims)
    md, csv = write_outputs(results, args.out or run_dir_of(args.runs[0]))
    if args.format == "csv":
        buf = io.StringIO()
        table(results)[TABLE_COLUMNS].to_csv(buf, index=False)
        print(buf.getvalue(), end="")
    else:
        print(table_markdown(results))
    print(f"-> {md}, {csv}", file=sys.stderr)
    return 1 if any(r.verdict == "fails" for r in results) else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``claims`` subcommand."""
    p = sub.add_parser("claims", help="check the papers' claims carried by the runs' suites against their results")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (or their results.csv)")
    p.add_argument("--claims", metavar="FILE",
                   help="evaluate these claims (a suite file or a file of [[claims]] tables) on every run instead")
    p.add_argument("--out", metavar="DIR", help="where claims.md and claims.csv go (default: the first run directory)")
    p.add_argument("--format", choices=["md", "csv"], default="md", help="what the screen gets (default md)")
    p.set_defaults(func=cmd_claims)

