"""Versioned result tables: schema, atomic incremental writes, provenance, migration.

A run writes one tidy long table, ``results.csv`` (one row per cell x seed x metric
[x time, for score metrics]), and a JSON sidecar ``provenance.json``.  After each finished
cell the whole table is written to a temporary file, flushed to disk and renamed over the
old one (``os.replace`` is atomic), so a run killed at any moment leaves a complete table
of every finished cell; ``--resume`` skips those cells.  Numbers stay numeric; statuses
and messages are plain strings.  Every row carries ``schema_version``; :func:`read_results`
migrates older versions step by step through :data:`MIGRATIONS`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .timing import cpu_model, git_output, package_version

SCHEMA_VERSION = 2

#: column -> pandas dtype of the current schema
COLUMNS: dict[str, str] = {
    "schema_version": "int64",
    "run_id": "string",
    "suite": "string",
    "cell_id": "string",
    "seed": "int64",
    "target": "string",
    "process": "string",
    "estimator": "string",
    "sampler": "string",
    "steps": "int64",
    "time_grid": "string",
    "init": "string",
    "nfe": "float64",
    "n_samples": "int64",
    "metric": "string",
    "t": "float64",
    "value": "float64",
    "floor": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "status": "string",
    "message": "string",
    "fit_s": "float64",
    "sample_s": "float64",
    "metric_s": "float64",
    "peak_mem_bytes": "float64",
    "device": "string",
}

STATUSES = ("ok", "diverged", "error", "oom")

#: the columns that identify a cell by its labels (a cell x seed adds ``seed``)
CELL_COLUMNS: tuple[str, ...] = ("target", "process", "estimator", "sampler", "steps", "time_grid", "init",
                                 "n_samples")


def _add_init(df: pd.DataFrame) -> pd.DataFrame:
    """Version 1 -> 2: the ``init`` column; every earlier chain started from the prior."""
    return df.assign(init="prior")


#: ``MIGRATIONS[v]`` turns a version-``v`` table into a version-``v + 1`` table
MIGRATIONS: dict[int, Callable[[pd.DataFrame], pd.DataFrame]] = {1: _add_init}

TABLE_FILE = "results.csv"
PROVENANCE_FILE = "provenance.json"


class ResultsError(ValueError):
    """A result table that cannot be read as the current schema."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Columns of the current schema in their order and dtypes."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"result table lacks column(s) {', '.join(missing)}")
    out = df[list(COLUMNS)].copy()
    for col, dtype in COLUMNS.items():
        out[col] = out[col].astype(dtype)
    return out


STRING_COLUMNS = [c for c, t in COLUMNS.items() if t == "string"]
NUMERIC_COLUMNS = [c for c, t in COLUMNS.items() if t != "string"]
DONE_FILE = "cells.done"


def _read_csv(path: Path) -> pd.DataFrame:
    """Strings stay strings (a cell id like ``1e5`` or a label ``NA`` is not a number or a
    missing value); only numeric columns treat empty fields and ``nan`` as missing."""
    with open(path, newline="") as fh:
        header = fh.readline().strip().split(",")
    return pd.read_csv(
        path,
        dtype={c: "string" for c in STRING_COLUMNS if c in header},
        keep_default_na=False,
        na_values={c: ["", "nan", "NaN"] for c in NUMERIC_COLUMNS if c in header},
    )


def _read_done(run_dir: Path) -> set[str] | None:
    path = run_dir / DONE_FILE
    if not path.is_file():
        return None
    return {line for line in path.read_text().splitlines() if line}


def _append(path: Path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


FITS_FILE = "fits.jsonl"


def append_fit_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one estimator training record (JSON, one object per line) to ``fits.jsonl``, synced."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _append(run_dir / FITS_FILE, json.dumps(record, sort_keys=True, allow_nan=False) + "\n")


def read_fit_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The training records of a run (empty when it fitted nothing); a torn last line is skipped."""
    return _read_jsonl(Path(run_dir) / FITS_FILE)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
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
        _append(run_dir / SAMPLES_FILE,
                "".join(json.dumps(json_safe(r), sort_keys=True, allow_nan=False) + "\n" for r in records))


def read_sample_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The sampling records of a run, one per cell x seed (a cell rerun after a kill appears twice:
    the last record of a (cell_id, seed) is the one whose rows are in the table)."""
    return _read_jsonl(Path(run_dir) / SAMPLES_FILE)


class ResultTable:
    """The result table of one run directory, appended to cell by cell.

    Each finished cell's rows are appended to ``results.csv`` in one write and synced to
    disk, then its id is appended to ``cells.done``.  A run killed at any moment therefore
    leaves every finished cell in the table; rows of a cell that was being written when the
    process died are not in ``cells.done`` and are dropped when the table is reopened.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / TABLE_FILE
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set()
        if self.path.exists():
            self._repair()
        else:
            atomic_write_text(self.path, ",".join(COLUMNS) + "\n")
            atomic_write_text(self.run_dir / DONE_FILE, "")

    def _repair(self) -> None:
        """Cut a torn last line and drop rows of cells that never finished."""
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            raw = raw[: raw.rfind(b"\n") + 1]
            tmp = self.path.with_name(f".{self.path.name}.repair")
            tmp.write_bytes(raw)
            os.replace(tmp, self.path)
        frame = read_results(self.path, complete_only=False)
        done = _read_done(self.run_dir)
        self.done = set(frame["cell_id"]) if done is None else done
        keep = frame["cell_id"].isin(self.done)
        if not keep.all():
            atomic_write_text(self.path, frame[keep].to_csv(index=False))

    def finished_cells(self) -> set[str]:
        return set(self.done)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        new = conform(pd.DataFrame(list(rows)))
        if new.empty:
            return
        _append(self.path, new.to_csv(index=False, header=False))
        cells = list(dict.fromkeys(new["cell_id"]))
        _append(self.run_dir / DONE_FILE, "".join(f"{c}\n" for c in cells))
        self.done.update(cells)


def read_results(path: str | Path, complete_only: bool = True) -> pd.DataFrame:
    """Load a result table (a ``results.csv`` or a run directory), migrating old schemas.

    Rows of cells that a killed run did not finish are left out (``complete_only``)."""
    path = Path(path)
    if path.is_dir():
        path = path / TABLE_FILE
    if not path.is_file():
        raise ResultsError(f"{path}: no result table here")
    df = _read_csv(path)
    if complete_only:
        done = _read_done(path.parent)
        if done is not None and "cell_id" in df.columns:
            df = df[df["cell_id"].isin(done)].reset_index(drop=True)
    if "schema_version" not in df.columns:
        raise ResultsError(f"{path}: not a scorebench result table (no schema_version column)")
    versions = set(df["schema_version"].dropna().astype(int))
    if len(versions) > 1:
        raise ResultsError(f"{path}: mixed schema versions {sorted(versions)}")
    version = versions.pop() if versions else SCHEMA_VERSION
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
    return conform(df)


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
    path = Path(run_dir) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
