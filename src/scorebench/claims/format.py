"""The ``[[claims]]`` format: parse and check claim tables before anything is measured.

A claim is a paper's result written as a check on a run's result rows (or its fit records);
``docs/claims.md`` describes every key.  :func:`parse_claims` turns the raw TOML tables into
:class:`Claim` s and raises one :class:`ClaimError` per mistake, naming the file, the key as
``claims[i].<key>`` and what is allowed.  This module depends on the result schema only, so that
:mod:`scorebench.suite` can check the claims of a suite while it parses it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..schema import COLUMNS

#: what a claim measures
QUANTITIES = ("slope", "bound", "ordering", "crossover", "minimum")
#: where its values come from: the result rows or the fit records (``fits.jsonl``)
SOURCES = ("results", "fits")
#: how a slope is fitted: log y on log x, y on x, log y on x
SCALES = ("loglog", "linear", "semilogy")
#: reductions over the times of a time-resolved metric, and over a list-valued fit field
T_REDUCES = ("mean", "max", "min")
LIST_REDUCES = ("last", "min", "max", "mean")
SIDES = ("upper", "lower")
#: the theory line of a bound claim: form -> its parameters
LINE_FORMS: dict[str, tuple[str, ...]] = {
    "power": ("coef", "exponent"),
    "linear": ("intercept", "slope"),
    "geometric": ("coef", "ratio"),
    "constant": ("value",),
}
#: the columns of a fit record a claim can filter, group and map (``seed`` is the fit's seed index)
FIT_COLUMNS: dict[str, str] = {"target": "string", "process": "string", "estimator": "string", "seed": "int64"}

REQUIRED = ("id", "paper", "statement", "quantity")
COMMON_KEYS = (*REQUIRED, "premise", "source", "metric", "field", "where", "over", "t_reduce", "list_reduce")
#: the keys each quantity takes besides the common ones
QUANTITY_KEYS: dict[str, tuple[str, ...]] = {
    "slope": ("x", "x_values", "x_range", "scale", "predicted", "tolerance", "resolution"),
    "bound": ("x", "x_values", "x_range", "line", "side"),
    "ordering": ("compare", "better", "worse", "match"),
    "crossover": ("x", "x_values", "x_range", "compare", "first", "second"),
    "minimum": ("x", "x_values", "x_range"),
}
#: the quantity-specific keys a claim must give
QUANTITY_REQUIRED: dict[str, tuple[str, ...]] = {
    "slope": ("x", "predicted"),
    "bound": ("x", "line"),
    "ordering": ("compare", "better", "worse"),
    "crossover": ("x", "compare", "first", "second"),
    "minimum": ("x",),
}
ALL_KEYS = tuple(dict.fromkeys([*COMMON_KEYS, *(k for keys in QUANTITY_KEYS.values() for k in keys)]))
#: a slope agrees with its prediction within this (absolute) distance unless the claim says otherwise
DEFAULT_TOLERANCE = 0.1
ID_RE = re.compile(r"[A-Za-z0-9_-]+")


class ClaimError(ValueError):
    """A malformed claim: ``FILE: claims[i].key: problem``, the shape of a :class:`~scorebench.suite.SuiteError`."""


@dataclass(frozen=True)
class Line:
    """The theory line of a bound claim (:data:`LINE_FORMS`)."""

    form: str
    params: dict[str, float]

    def __call__(self, x: Any) -> Any:
        p = self.params
        if self.form == "power":
            return p["coef"] * x ** p["exponent"]
        if self.form == "linear":
            return p["intercept"] + p["slope"] * x
        if self.form == "geometric":
            return p["coef"] * p["ratio"] ** x
        return p["value"] + 0.0 * x

    def describe(self, x: str = "x") -> str:
        p = {k: f"{v:g}" for k, v in self.params.items()}
        if self.form == "power":
            return f"{p['coef']} * {x}^{p['exponent']}"
        if self.form == "linear":
            return f"{p['intercept']} + {p['slope']} * {x}"
        if self.form == "geometric":
            return f"{p['coef']} * {p['ratio']}^{x}"
        return p["value"]


@dataclass(frozen=True)
class Claim:
    """One checked claim.  ``where`` maps a column to the values kept; ``x_values`` maps the labels
    of a label column ``x`` to numbers; ``origin`` is the file it was read from."""

    index: int
    id: str
    paper: str
    statement: str
    quantity: str
    origin: str = ""
    premise: str = ""
    source: str = "results"
    metric: str | None = None
    field: str | None = None
    where: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    over: tuple[str, ...] = ()
    x: str | None = None
    x_values: dict[str, float] = dataclasses.field(default_factory=dict)
    x_range: tuple[float, float] | None = None
    t_reduce: str | None = None
    list_reduce: str = "last"
    scale: str = "loglog"
    predicted: float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    resolution: float | None = None
    line: Line | None = None
    side: str = "upper"
    compare: str | None = None
    better: str | None = None
    worse: str | None = None
    match: str | None = None
    first: str | None = None
    second: str | None = None

    @property
    def key(self) -> str:
        return f"claims[{self.index}]"

    @property
    def columns(self) -> dict[str, str]:
        """The columns this claim's rows have, with their dtypes."""
        return dict(FIT_COLUMNS) if self.source == "fits" else dict(COLUMNS)

    @property
    def slope_resolution(self) -> float:
        """The CI half-width above which an agreeing slope is inconclusive (default: the tolerance)."""
        return self.tolerance if self.resolution is None else self.resolution

    def predicted_text(self) -> str:
        """The prediction in words, as the claims table prints it."""
        if self.quantity == "slope":
            return f"slope {self.predicted:+g} ± {self.tolerance:g} ({self.scale})"
        if self.quantity == "bound":
            return f"{'≤' if self.side == 'upper' else '≥'} {self.line.describe(self.x)}"
        if self.quantity == "ordering":
            at = f" at each {self.match}" if self.match else ""
            return f"{self.better} < {self.worse}{at}"
        if self.quantity == "crossover":
            return f"{self.first} < {self.second} at small {self.x}, > at large {self.x}"
        return f"interior minimum over {self.x}"


def _fail(path: str, key: str, problem: str, claim_id: Any = None) -> ClaimError:
    named = f" (claim {claim_id!r})" if isinstance(claim_id, str) and claim_id else ""
    return ClaimError(f"{path}: {key}: {problem}{named}")


def _allowed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_claims(tables: Any, path: str | Path, labels: Mapping[str, Sequence[str]] | None = None) -> list[Claim]:
    """Check the raw ``[[claims]]`` tables of ``path`` and return them as :class:`Claim` s.

    ``labels`` maps a label column (``target``, ``sampler``, ``metric``, ...) to the labels the
    suite defines; where given, every label a claim names in that column must be one of them.
    Raises :class:`ClaimError` on the first mistake.
    """
    path = str(path)
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise _fail(path, "claims", "expected one or more [[claims]] tables")
    claims, seen = [], {}
    for i, table in enumerate(tables):
        claim = _parse_one(table, i, path, labels)
        if claim.id in seen:
            raise _fail(path, f"claims[{i}].id", f"the id {claim.id!r} is already used by claims[{seen[claim.id]}]; "
                        "ids are unique in a file")
        seen[claim.id] = i
        claims.append(claim)
    return claims


def _parse_one(table: dict[str, Any], i: int, path: str, labels: Mapping[str, Sequence[str]] | None) -> Claim:
    base = f"claims[{i}]"
    cid = table.get("id")

    def fail(key: str, problem: str) -> ClaimError:
        return _fail(path, f"{base}.{key}" if key else base, problem, cid)

    for key in table:
        if key not in ALL_KEYS:
            raise fail(key, f"unknown key; allowed: {_allowed(ALL_KEYS)}")
    for key in REQUIRED:
        if key not in table:
            raise fail(key, "missing; every claim needs " + ", ".join(REQUIRED))
    for key in ("id", "paper", "statement", "premise"):
        if key in table and (not isinstance(table[key], str) or not table[key].strip()):
            raise fail(key, f"expected a non-empty string, got {table[key]!r}")
    if not ID_RE.fullmatch(cid):
        raise fail("id", f"{cid!r}: ids may contain letters, digits, '-' and '_' only")
    quantity = table["quantity"]
    if quantity not in QUANTITIES:
        raise fail("quantity", f"unknown quantity {quantity!r}; allowed: {_allowed(QUANTITIES)}")
    allowed = (*COMMON_KEYS, *QUANTITY_KEYS[quantity])
    for key in table:
        if key not in allowed:
            raise fail(key, f"does not apply to a {quantity} claim; its keys: {_allowed(allowed)}")
    for key in QUANTITY_REQUIRED[quantity]:
        if key not in table:
            raise fail(key, f"missing; a {quantity} claim needs {_allowed(QUANTITY_REQUIRED[quantity])}")

    source = table.get("source", "results")
    if source not in SOURCES:
        raise fail("source", f"unknown source {source!r}; allowed: {_allowed(SOURCES)}")
    columns = dict(FIT_COLUMNS) if source == "fits" else dict(COLUMNS)
    known = {k: set(v) for k, v in (labels or {}).items()}

    def label_ok(column: str, value: Any, key: str) -> None:
        if columns[column] == "string":
            if not isinstance(value, str):
                raise fail(key, f"expected a label (string) of column {column!r}, got {value!r}")
            if column in known and value not in known[column]:
                raise fail(key, f"unknown {column} label {value!r}; the suite defines: "
                           f"{_allowed(sorted(known[column]))}")
        elif not _is_number(value):
            raise fail(key, f"expected a number (column {column!r} is numeric), got {value!r}")

    def column_ok(value: Any, key: str, kind: str = "") -> str:
        if not isinstance(value, str) or value not in columns:
            where = "a fit record" if source == "fits" else "the result table"
            raise fail(key, f"unknown column {value!r}; columns of {where}: {_allowed(list(columns))}")
        if kind == "label" and columns[value] != "string":
            labels_ = [c for c, d in columns.items() if d == "string"]
            raise fail(key, f"{value!r} is not a label column; label columns: {_allowed(labels_)}")
        return value

    metric = table.get("metric")
    fld = table.get("field")
    list_reduce = table.get("list_reduce", "last")
    if source == "results":
        if metric is None:
            raise fail("metric", "missing; a claim on the result rows names the metric its values come from")
        if not isinstance(metric, str):
            raise fail("metric", f"expected a metric label, got {metric!r}")
        if "metric" in known and metric not in known["metric"]:
            raise fail("metric", f"unknown metric {metric!r}; the suite's metrics: {_allowed(sorted(known['metric']))}")
        for key in ("field", "list_reduce"):
            if key in table:
                raise fail(key, "applies to source = 'fits' only")
    else:
        if fld is None:
            raise fail("field", "missing; a claim on fit records names a dotted path into the record, "
                       "e.g. 'extra.relative_weight_change'")
        if not isinstance(fld, str) or not all(part for part in fld.split(".")):
            raise fail("field", f"expected a dotted path such as 'extra.relative_weight_change', got {fld!r}")
        if "metric" in table:
            raise fail("metric", "applies to source = 'results' only (a fit record has no metric)")
        if "t_reduce" in table:
            raise fail("t_reduce", "applies to source = 'results' only")
        if list_reduce not in LIST_REDUCES:
            raise fail("list_reduce", f"unknown reduction {list_reduce!r}; allowed: {_allowed(LIST_REDUCES)}")

    where_raw = table.get("where", {})
    if not isinstance(where_raw, dict):
        raise fail("where", "expected a table column -> value or list of values, e.g. { init = \"exact\" }")
    where: dict[str, tuple[Any, ...]] = {}
    for column, value in where_raw.items():
        column_ok(column, f"where.{column}")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise fail(f"where.{column}", "empty list; give at least one value")
        for v in values:
            label_ok(column, v, f"where.{column}")
        where[column] = tuple(values)

    over_raw = table.get("over", [])
    over_raw = [over_raw] if isinstance(over_raw, str) else over_raw
    if not isinstance(over_raw, list):
        raise fail("over", "expected a list of columns")
    over = tuple(column_ok(c, "over") for c in over_raw)
    if len(set(over)) != len(over):
        raise fail("over", f"a column is repeated in {over_raw!r}")

    x = table.get("x")
    x_values: dict[str, float] = {}
    if x is not None:
        column_ok(x, "x")
        if x in over:
            raise fail("x", f"{x!r} is also in 'over'; a column is either the x axis or a grouping")
        raw = table.get("x_values")
        if columns[x] == "string":
            if raw is None:
                raise fail("x", f"{x!r} is a label column: give x_values = {{ label = number, ... }}")
            if not isinstance(raw, dict) or not raw:
                raise fail("x_values", "expected a table label -> number, e.g. { ntk_m64 = 64, ntk_m256 = 256 }")
            for lab, num in raw.items():
                label_ok(x, lab, f"x_values.{lab}")
                if not _is_number(num):
                    raise fail(f"x_values.{lab}", f"expected a finite number, got {num!r}")
                x_values[lab] = float(num)
        elif raw is not None:
            raise fail("x_values", f"x = {x!r} is already numeric; x_values maps the labels of a label column")
    x_range = table.get("x_range")
    if x_range is not None:
        if (not isinstance(x_range, list) or len(x_range) != 2 or not all(_is_number(v) for v in x_range)
                or x_range[0] > x_range[1]):
            raise fail("x_range", f"expected [low, high] with low <= high, got {x_range!r}")
        x_range = (float(x_range[0]), float(x_range[1]))

    t_reduce = table.get("t_reduce")
    if t_reduce is not None:
        if t_reduce not in T_REDUCES:
            raise fail("t_reduce", f"unknown reduction {t_reduce!r}; allowed: {_allowed(T_REDUCES)}")
        if x == "t":
            raise fail("t_reduce", "x = 't' keeps every time as a point: reducing over t leaves nothing to plot")

    options: dict[str, Any] = {}
    if quantity == "slope":
        scale = table.get("scale", "loglog")
        if scale not in SCALES:
            raise fail("scale", f"unknown scale {scale!r}; allowed: {_allowed(SCALES)}")
        if scale == "loglog" and x_range is not None and x_range[0] <= 0:
            raise fail("x_range", f"a log-log slope needs x > 0, got {list(x_range)}")
        for key in ("predicted", "tolerance", "resolution"):
            if key in table and not _is_number(table[key]):
                raise fail(key, f"expected a finite number, got {table[key]!r}")
        for key in ("tolerance", "resolution"):
            if key in table and table[key] < 0:
                raise fail(key, f"expected a number >= 0, got {table[key]!r}")
        if "resolution" in table and table["resolution"] == 0:
            raise fail("resolution", "expected a positive half-width (0 would make every noisy fit inconclusive)")
        if "resolution" not in table and table.get("tolerance", DEFAULT_TOLERANCE) == 0:
            raise fail("resolution", "required when tolerance = 0 (the resolution defaults to the tolerance, and "
                       "a zero half-width would make every noisy fit inconclusive)")
        options = {"scale": scale, "predicted": float(table["predicted"]),
                   "tolerance": float(table.get("tolerance", DEFAULT_TOLERANCE)),
                   "resolution": float(table["resolution"]) if "resolution" in table else None}
    elif quantity == "bound":
        options = {"line": _parse_line(table["line"], fail)}
        side = table.get("side", "upper")
        if side not in SIDES:
            raise fail("side", f"unknown side {side!r}; allowed: {_allowed(SIDES)}")
        options["side"] = side
    if quantity in ("ordering", "crossover"):
        compare = column_ok(table["compare"], "compare", "label")
        if compare == x or compare in over:
            raise fail("compare", f"{compare!r} is also the x axis or a grouping column")
        pair = ("better", "worse") if quantity == "ordering" else ("first", "second")
        for key in pair:
            label_ok(compare, table[key], key)
        if table[pair[0]] == table[pair[1]]:
            raise fail(pair[1], f"{pair[0]} and {pair[1]} name the same label {table[pair[0]]!r}")
        options.update({"compare": compare, pair[0]: table[pair[0]], pair[1]: table[pair[1]]})
        if "match" in table:
            match = column_ok(table["match"], "match")
            if match in (compare, *over):
                raise fail("match", f"{match!r} is also the compared or a grouping column")
            options["match"] = match
    return Claim(
        index=i, id=cid, paper=table["paper"], statement=table["statement"], quantity=quantity, origin=path,
        premise=table.get("premise", ""), source=source, metric=metric, field=fld, where=where, over=over, x=x,
        x_values=x_values, x_range=x_range, t_reduce=t_reduce, list_reduce=list_reduce, **options,
    )


def _parse_line(raw: Any, fail: Any) -> Line:
    forms = _allowed(list(LINE_FORMS))
    if not isinstance(raw, dict):
        raise fail("line", "expected a table such as { form = \"power\", coef = 1.0, exponent = -1.0 }; "
                   f"forms: {forms}")
    form = raw.get("form")
    if form not in LINE_FORMS:
        raise fail("line.form", f"unknown form {form!r}; allowed: {forms}")
    params = {}
    for key, value in raw.items():
        if key == "form":
            continue
        if key not in LINE_FORMS[form]:
            raise fail(f"line.{key}", f"not a parameter of a {form} line; its parameters: "
                       f"{_allowed(LINE_FORMS[form])}")
        if not _is_number(value):
            raise fail(f"line.{key}", f"expected a finite number, got {value!r}")
        params[key] = float(value)
    for key in LINE_FORMS[form]:
        if key not in params:
            raise fail(f"line.{key}", f"missing; a {form} line needs {_allowed(LINE_FORMS[form])}")
    if form == "geometric" and params["ratio"] <= 0:
        raise fail("line.ratio", f"expected a positive ratio, got {params['ratio']:g}")
    return Line(form, params)


def suite_labels(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """The labels a suite's TOML data defines, per result column: component labels, metric names,
    time grid kinds and starts named in its grids (for checking the labels claims name)."""
    out: dict[str, list[str]] = {}
    for section, column in (("targets", "target"), ("processes", "process"), ("estimators", "estimator"),
                            ("samplers", "sampler")):
        table = data.get(section)
        if isinstance(table, dict):
            out[column] = list(table)
    metrics = data.get("metrics")
    if isinstance(metrics, dict):
        out["metric"] = list(metrics)
    elif isinstance(metrics, list):
        out["metric"] = [m for m in metrics if isinstance(m, str)]
    grids = data.get("grid")
    grids = [grids] if isinstance(grids, dict) else grids if isinstance(grids, list) else []
    for key, column, default in (("time_grid", "time_grid", "uniform"), ("init", "init", "prior")):
        seen: dict[str, None] = {}
        for g in grids:
            if isinstance(g, dict):
                v = g.get(key, default)
                seen.update(dict.fromkeys(v if isinstance(v, list) else [v]))
        out[column] = [v for v in seen if isinstance(v, str)]
    return out
