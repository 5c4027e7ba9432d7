"""Versioned result tables: schema, atomic incremental writes, provenance, migration.

A run writes one tidy long table, ``results.csv`` (one row per cell x seed x metric
[x time, for score metrics], one line per row), a ledger ``cells.done`` and a JSON sidecar
``provenance.json``.  Each finished cell's rows are appended in one synced write, then its
ledger entry: the cell id, its row count and the sha256 of its rows.  A run killed at any
moment leaves every finished cell complete; reopening the table cuts what a killed write
left and every reader checks each cell against its entry, so damage is named, never read
as a result (:class:`ResultTable`, :func:`scan_table`).  Numbers stay numeric; statuses and
messages are plain strings.  Every row carries ``schema_version``; :func:`read_results`
migrates older versions step by step through :data:`MIGRATIONS`.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import re
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .environment import atomic_write_text, cpu_model, git_output, package_version
from .schema import COLUMNS, SCHEMA_VERSION

#: ``timeout``: the cell ran past its time limit and was stopped; ``skipped``: left out by ``--skip``
STATUSES = ("ok", "diverged", "error", "oom", "timeout", "skipped")


def _add_init(df: pd.DataFrame) -> pd.DataFrame:
    """Version 1 -> 2: the ``init`` column; every earlier chain started from the prior."""
    return df.assign(init="prior")


def _one_line_messages(df: pd.DataFrame) -> pd.DataFrame:
    """Version 2 -> 3: messages on one line (newlines written as ``\\n``), so that every row is one
    line; version 3 also knows the statuses ``timeout`` and ``skipped``."""
    message = df["message"].astype("string").fillna("")
    return df.assign(message=message.map(one_line).astype("string"))


def _add_exact(df: pd.DataFrame) -> pd.DataFrame:
    """Version 3 -> 4: the ``exact`` column.  Version 3 wrote an exact law's value with a zero
    floor and a zero-width interval, which no noisy metric gives, so that is what marks it."""
    exact = (df["status"].astype("string") == "ok") & (df["floor"] == 0) & (df["ci_low"] == df["ci_high"])
    return df.assign(exact=exact.fillna(False).astype("boolean"))


def _add_host(df: pd.DataFrame) -> pd.DataFrame:
    """Version 4 -> 5: the ``host`` column.  Version 4 did not record where a cell ran (the run's
    provenance names the client's host): empty."""
    return df.assign(host=pd.Series("", index=df.index, dtype="string"))


def _add_ablation(df: pd.DataFrame) -> pd.DataFrame:
    """Version 5 -> 6: the ``ablation`` column.  Version 5 had no error-decomposition variants:
    every row is a cell as its suite gave it (``none``)."""
    return df.assign(ablation=pd.Series("none", index=df.index, dtype="string"))


#: ``MIGRATIONS[v]`` turns a version-``v`` table into a version-``v + 1`` table
MIGRATIONS: dict[int, Callable[[pd.DataFrame], pd.DataFrame]] = {
    1: _add_init, 2: _one_line_messages, 3: _add_exact, 4: _add_host, 5: _add_ablation,
}

TABLE_FILE = "results.csv"
PROVENANCE_FILE = "provenance.json"


class ResultsError(ValueError):
    """A result table that cannot be read as the current schema."""


def conform(df: pd.DataFrame, source: Path | None = None) -> pd.DataFrame:
    """Columns of the current schema in their order and dtypes (``source`` names the file in errors)."""
    where = f"{source}: " if source is not None else ""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{where}result table lacks column(s) {', '.join(missing)}")
    out = df[list(COLUMNS)].copy()
    for col, dtype in COLUMNS.items():
        try:
            out[col] = out[col].astype(dtype)
        except (ValueError, TypeError):
            bad = next((v for v in out[col] if not _parses_as(v, dtype)), "?")
            raise ResultsError(f"{where}column {col!r} holds {bad!r}, not a {dtype} value") from None
    return out


def _parses_as(value: Any, dtype: str) -> bool:
    try:
        pd.Series([value]).astype(dtype)
    except (ValueError, TypeError):
        return False
    return True


#: the first line of a table of the current schema
HEADER = ",".join(COLUMNS) + "\n"
STRING_COLUMNS = [c for c, t in COLUMNS.items() if t == "string"]
NUMERIC_COLUMNS = [c for c, t in COLUMNS.items() if t != "string"]
DONE_FILE = "cells.done"


def _read_csv(source: Path, text: str) -> pd.DataFrame:
    """Parse the table text of ``source``.  Strings stay strings (a cell id like ``1e5`` or a
    label ``NA`` is not a number or a missing value); only numeric columns treat empty fields
    and ``nan`` as missing."""
    header = text.split("\n", 1)[0].strip().split(",")
    try:
        return pd.read_csv(
            io.StringIO(text),
            dtype={c: "string" for c in STRING_COLUMNS if c in header},
            keep_default_na=False,
            na_values={c: ["", "nan", "NaN"] for c in NUMERIC_COLUMNS if c in header},
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise ResultsError(f"{source}: cannot be read as a CSV table: {str(exc).splitlines()[0]}") from None


def _read_text(path: Path) -> str:
    """A run-directory file as text, or one :class:`ResultsError` naming it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if b"\0" in raw:
        raise ResultsError(f"{path}: a binary file, not a scorebench table")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not UTF-8 text, not a scorebench table") from None


#: longest string field written (a longer message keeps its start and says how much was cut)
MAX_FIELD_CHARS = 4000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` as one table field: newlines as ``\\n``, other control characters as ``\\xNN``,
    at most :data:`MAX_FIELD_CHARS` characters (the csv module refuses fields over 128 KiB)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > MAX_FIELD_CHARS:
        text = f"{text[:MAX_FIELD_CHARS]} [... {len(text) - MAX_FIELD_CHARS} more characters cut]"
    return text


@dataclass(frozen=True)
class DoneEntry:
    """One ``cells.done`` line: a finished cell, the number of table rows it wrote and the
    sha256 of those rows' bytes (``None`` for a line written by scorebench < 0.3, which
    recorded the id alone)."""

    cell_id: str
    rows: int | None = None
    sha256: str | None = None

    def line(self) -> str:
        return f"{self.cell_id}\t{self.rows}\t{self.sha256}\n"


def _read_done(run_dir: Path) -> list[DoneEntry] | None:
    """The entries of ``cells.done`` in order (``None`` when there is no such file)."""
    path = run_dir / DONE_FILE
    if not path.is_file():
        return None
    entries = []
    text = _read_text(path)
    # an unterminated last line is an entry whose write never finished: its cell did not finish
    lines = text.split("\n")[:-1]
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) == 1:
            entries.append(DoneEntry(parts[0]))
            continue
        if len(parts) != 3 or not parts[1].isdigit() or not re.fullmatch(r"[0-9a-f]{64}", parts[2]):
            raise ResultsError(f"{path}: line {number} is not 'cell_id<TAB>rows<TAB>sha256': {line[:80]!r}")
        entries.append(DoneEntry(parts[0], int(parts[1]), parts[2]))
    return entries


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _append_lines(path: Path, text: str) -> None:
    """Append whole lines to a line-delimited file, first ending a line torn by a killed writer
    (so that the torn fragment costs one unreadable line, never the next record)."""
    torn = False
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
    _append(path, ("\n" if torn else "") + text)


FITS_FILE = "fits.jsonl"


def append_fit_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one estimator training record (JSON, one object per line) to ``fits.jsonl``, synced."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _append_lines(run_dir / FITS_FILE, json.dumps(record, sort_keys=True, allow_nan=False) + "\n")


def read_fit_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The training records of a run (empty when it fitted nothing); a torn last line is skipped."""
    return _read_jsonl(Path(run_dir) / FITS_FILE)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


SAMPLES_FILE = "samples.jsonl"


def json_safe(value: Any) -> Any:
    """``value`` as JSON data: tensors and arrays become lists (or their shape, when large),
    non-finite floats ``None``, anything else unknown its ``repr``."""
    if isinstance(value, bool | str | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "shape"):
        shape = [int(n) for n in value.shape]
        return json_safe(value.tolist()) if math.prod(shape) <= 1000 else {"shape": shape}
    return repr(value)


def append_sample_records(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Append one JSON record per cell x seed sampling run to ``samples.jsonl``, synced."""
    if records:
        run_dir.mkdir(parents=True, exist_ok=True)
        _append_lines(run_dir / SAMPLES_FILE,
                "".join(json.dumps(json_safe(r), sort_keys=True, allow_nan=False) + "\n" for r in records))


def read_sample_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The sampling records of a run, one per cell x seed (a cell rerun after a kill appears twice:
    the last record of a (cell_id, seed) is the one whose rows are in the table)."""
    return _read_jsonl(Path(run_dir) / SAMPLES_FILE)


@dataclass
class TableScan:
    """What a ``results.csv`` holds, checked line by line against ``cells.done``.

    From schema version 3 every row is one line (newlines inside messages are written as the
    two characters ``\\n``), so a torn write can always be cut back to a row boundary, and each
    finished cell's ``cells.done`` entry records its row count and the sha256 of its rows'
    bytes.  A cell is *complete* when its rows match its entry, *damaged* when they do not
    (rows lost, cut or changed after the cell finished), *unfinished* when it has rows but no
    entry (the run was killed while writing it).
    """

    path: Path
    header: str
    lines: dict[str, list[str]]
    done: list[DoneEntry]
    complete: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    #: lines that are not a row of the header's columns: (line number, text)
    garbage: list[tuple[int, str]] = field(default_factory=list)
    torn: bool = False

    def text(self, cells: Iterable[str]) -> str:
        """The header and the rows of ``cells``, as a table file."""
        return self.header + "".join(line + "\n" for c in cells for line in self.lines.get(c, []))

    def problem(self) -> str | None:
        """The first thing that makes the table unfit to read, for an error message."""
        if self.damaged:
            cid, why = next(iter(self.damaged.items()))
            more = f" (and {len(self.damaged) - 1} more damaged cells)" if len(self.damaged) > 1 else ""
            return f"{self.path}: cell {cid}: {why}{more}"
        if self.garbage:
            number, line = self.garbage[0]
            return f"{self.path}: line {number} is not a row of the table's columns: {line[:80]!r}"
        return None


def _split_row(line: str) -> list[str]:
    """The fields of one table line (``[]`` for a line the csv module cannot parse)."""
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line]))
    except csv.Error:
        return []


def scan_table(run_dir: Path) -> TableScan:
    """Check ``results.csv`` against ``cells.done`` (see :class:`TableScan`); linear in the table size."""
    path = run_dir / TABLE_FILE
    # the ledger first: a cell's rows are written before its entry, so every entry read now has its rows
    # in the table read next, even while a run appends to both
    done = _read_done(run_dir) or []
    text = _read_text(path)
    if not text:
        raise ResultsError(f"{path}: empty file (not even a header); remove the run directory and run again")
    header, _, body = text.partition("\n")
    columns = header.split(",")
    if "schema_version" not in columns or "cell_id" not in columns:
        raise ResultsError(f"{path}: not a scorebench result table (its first line is {header[:80]!r})")
    index = columns.index("cell_id")
    scan = TableScan(path, header + "\n", {}, done)
    rows = body.split("\n")
    if rows[-1]:
        scan.torn = True  # a write that never finished; its cell has no cells.done entry
    hashes: dict[str, Any] = {}
    for number, line in enumerate(rows[:-1], 2):
        fields = _split_row(line)
        if len(fields) != len(columns):
            scan.garbage.append((number, line))
            continue
        cid = fields[index]
        scan.lines.setdefault(cid, []).append(line)
        hashes.setdefault(cid, hashlib.sha256()).update(line.encode() + b"\n")
    seen: set[str] = set()
    for entry in done:
        cid = entry.cell_id
        count = len(scan.lines.get(cid, []))
        if cid in seen:
            scan.damaged[cid] = f"recorded twice in {DONE_FILE} (two runs wrote into this directory)"
        elif entry.rows is None:
            scan.damaged[cid] = f"{DONE_FILE} records no row count (written by an older scorebench)"
        elif count != entry.rows:
            scan.damaged[cid] = f"{count} rows in the table, {DONE_FILE} records {entry.rows}"
        elif (hashes[cid].hexdigest() if count else _EMPTY_SHA) != entry.sha256:
            scan.damaged[cid] = f"its {count} rows differ from what was written (checksum mismatch)"
        seen.add(cid)
    scan.complete = list(dict.fromkeys(e.cell_id for e in done if e.cell_id not in scan.damaged))
    scan.unfinished = [c for c in scan.lines if c not in seen]
    return scan


_EMPTY_SHA = hashlib.sha256(b"").hexdigest()

#: test hook: the N-th table write (counting from 1) writes about half its bytes, ending inside a
#: row, and the process kills itself, as a SIGKILL inside a write would
TORN_WRITE_ENV = "SCOREBENCH_TEST_TORN_WRITE"


class ResultTable:
    """The result table of one run directory, appended to cell by cell.

    Each finished cell's rows are appended to ``results.csv`` in one synced write, then a
    ``cells.done`` entry with their row count and checksum.  Opening the table again checks
    every finished cell against its entry (:func:`scan_table`): rows of a cell that was being
    written when the process died, a torn last line and the rows of damaged cells are cut,
    so those cells run again; :attr:`damaged` says which were damaged and how.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / TABLE_FILE
        self.done: set[str] = set()
        self.damaged: dict[str, str] = {}
        self._writes = 0
        ledger = self.run_dir / DONE_FILE
        if not self.path.exists() and not ledger.exists():
            atomic_write_text(self.path, HEADER)
            atomic_write_text(ledger, "")
            return
        if not self.path.exists():  # the table is gone: every cell the ledger lists is damaged
            atomic_write_text(self.path, HEADER)
        self._repair()

    def _repair(self) -> None:
        """Keep exactly the complete cells; rewrite both files when anything else is there."""
        ledger_lost = not (self.run_dir / DONE_FILE).exists()
        scan = scan_table(self.run_dir)
        if scan.header != HEADER:
            raise ResultsError(f"{self.path}: its columns are not those of schema version {SCHEMA_VERSION}; "
                               "start a new run (the old table stays readable)")
        self.damaged = dict(scan.damaged)
        if ledger_lost:  # nothing vouches for any row
            self.damaged.update({c: f"{DONE_FILE} is missing" for c in scan.unfinished})
        self.done = set(scan.complete)
        if ledger_lost or scan.damaged or scan.unfinished or scan.garbage or scan.torn:
            self._rewrite(scan, scan.complete)

    def _rewrite(self, scan: TableScan, keep: list[str]) -> None:
        """Both files holding exactly the cells ``keep`` (complete cells of ``scan``).  The ledger goes
        first: a kill between the two writes leaves rows without an entry, which the next open cuts."""
        entries = {e.cell_id: e for e in scan.done}
        atomic_write_text(self.run_dir / DONE_FILE, "".join(entries[c].line() for c in keep))
        atomic_write_text(self.path, scan.text(keep))

    def finished_cells(self) -> set[str]:
        return set(self.done)

    @staticmethod
    def finished_in(run_dir: Path) -> set[str]:
        """The cells ``cells.done`` lists, read without checking or repairing anything."""
        try:
            return {e.cell_id for e in _read_done(Path(run_dir)) or []}
        except ResultsError:
            return set()

    def drop(self, cells: Iterable[str]) -> None:
        """Remove finished cells (their rows and entries), so that they run again."""
        cells = set(cells) & self.done
        if not cells:
            return
        scan = scan_table(self.run_dir)
        self._rewrite(scan, [c for c in scan.complete if c not in cells])
        self.done -= cells

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        new = conform(pd.DataFrame(list(rows)))
        if new.empty:
            return
        for col in STRING_COLUMNS:  # one row, one line: a torn write can be cut at a row boundary
            new[col] = new[col].map(one_line, na_action="ignore").astype("string")
        text = new.to_csv(index=False, header=False, lineterminator="\n")
        lines = text.split("\n")[:-1]
        if len(lines) != len(new):
            raise RuntimeError(f"{len(new)} rows serialised to {len(lines)} lines")
        by_cell: dict[str, list[str]] = {}
        for cid, line in zip(new["cell_id"], lines, strict=True):
            by_cell.setdefault(str(cid), []).append(line)
        entries = "".join(DoneEntry(c, len(ls), hashlib.sha256("".join(f"{x}\n" for x in ls).encode()).hexdigest())
                          .line() for c, ls in by_cell.items())
        self._writes += 1
        if os.environ.get(TORN_WRITE_ENV) == str(self._writes):
            cut = len(text) // 2 + (text[len(text) // 2 - 1] == "\n")  # inside a row, never at its end
            _append(self.path, text[:cut])
            os.kill(os.getpid(), signal.SIGKILL)
        _append(self.path, text)
        _append(self.run_dir / DONE_FILE, entries)
        self.done.update(by_cell)


def read_results(path: str | Path, complete_only: bool = True) -> pd.DataFrame:
    """Load a result table (a ``results.csv`` or a run directory), migrating old schemas.

    Every finished cell is checked against its ``cells.done`` entry; a damaged cell, a line
    that is not a row, or a key (cell, seed, metric, t) that appears twice raises
    :class:`ResultsError` naming the file and the cell.  Rows of cells that a killed run did
    not finish are left out (``complete_only``)."""
    path = Path(path)
    if path.is_dir():
        path = path / TABLE_FILE
    if not path.is_file():
        raise ResultsError(f"{path}: no result table here")
    done = _read_done(path.parent)
    if done and any(e.rows is not None for e in done):
        scan = scan_table(path.parent)
        if scan.problem():
            raise ResultsError(f"{scan.problem()}; `scorebench run SUITE --out {path.parent} --resume` reruns "
                               "damaged cells")
        df = _read_csv(path, scan.text(scan.complete if complete_only else list(scan.lines)))
    else:  # written before cells.done recorded row counts: rows may span lines, nothing to verify against
        text = _read_text(path)
        if not text:
            raise ResultsError(f"{path}: empty file (not even a header)")
        if not text.endswith("\n") and done is None:
            raise ResultsError(f"{path}: its last line is torn (a run was killed while writing it) and there is "
                               f"no {DONE_FILE} to tell finished cells apart; resume the run or cut that line")
        df = _read_csv(path, text[: text.rfind("\n") + 1] if not text.endswith("\n") else text)
        if complete_only and done is not None and "cell_id" in df.columns:
            df = df[df["cell_id"].isin({e.cell_id for e in done})].reset_index(drop=True)
    if "schema_version" not in df.columns:
        raise ResultsError(f"{path}: not a scorebench result table (no schema_version column)")
    try:
        versions = set(pd.to_numeric(df["schema_version"]).dropna().astype(int))
    except (ValueError, TypeError):
        raise ResultsError(f"{path}: column schema_version holds a value that is not an integer") from None
    if len(versions) > 1:
        raise ResultsError(f"{path}: mixed schema versions {sorted(versions)}")
    version = versions.pop() if versions else SCHEMA_VERSION
    if done is None and version >= 3 and (path.parent / PROVENANCE_FILE).is_file():
        raise ResultsError(f"{path}: its ledger {path.parent / DONE_FILE} is missing, so nothing tells finished "
                           f"cells from unfinished or damaged ones; `scorebench run SUITE --out {path.parent} "
                           "--resume` checks and reruns them")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: schema version {version} is newer than this scorebench reads ({SCHEMA_VERSION}); upgrade"
        )
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise ResultsError(f"{path}: no migration from schema version {version}")
        df = MIGRATIONS[version](df)
        version += 1
        df["schema_version"] = version
    out = conform(df, source=path)
    keys = ["cell_id", "seed", "metric", "t"]
    dup = out.duplicated(keys)
    if dup.any():
        first = out.loc[dup.idxmax(), keys].to_dict()
        raise ResultsError(f"{path}: {int(dup.sum())} rows repeat a key (cell_id, seed, metric, t), the first "
                           f"{first}; two runs wrote into this directory, or rows were pasted twice")
    return out


# ---------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------


def provenance(extra: dict[str, Any]) -> dict[str, Any]:
    """Where, when and with what a run was made."""
    import torch

    sha = git_output("rev-parse", "HEAD")
    status = git_output("status", "--porcelain")
    cuda = torch.cuda.is_available()
    return {
        "schema_version": SCHEMA_VERSION,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": sha,
        "git_dirty": None if status is None else bool(status),
        "packages": {p: package_version(p) for p in ("scorebench", "torch", "numpy", "pandas", "pot", "scipy")},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        **extra,
    }


def write_provenance(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / PROVENANCE_FILE, json.dumps(info, indent=2, sort_keys=True, default=str))


def read_provenance(run_dir: Path) -> dict[str, Any]:
    """The provenance of a run directory (``{}`` when it has none); a file that is not a JSON
    object raises :class:`ResultsError` naming it."""
    path = Path(run_dir) / PROVENANCE_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc}); the run's provenance is damaged") from None
    if not isinstance(info, dict):
        raise ResultsError(f"{path}: holds a JSON {type(info).__name__}, not the object scorebench writes")
    return info
