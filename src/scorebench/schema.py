"""The result table's columns, each declared once with its role and dtype.

Every module that reads or writes result rows derives what it needs from :data:`SCHEMA`: the
table's header and dtypes (:data:`COLUMNS`), the columns that name a cell
(:data:`CELL_COLUMNS`, the keys ``compare`` matches on), the label columns and sizes the report
facets and the command line's pivot use (:data:`CELL_LABELS`, :data:`CELL_SIZES`), and the short
names tables and figures print (:func:`label`).  A new column is one :class:`Column` here, a
migration step in :mod:`scorebench.results` that fills it in older tables, and the code that
computes it.

Roles
-----
``provenance``
    where a row comes from (schema version, run, suite, device);
``identity``
    what was measured: the cell's labels and sizes (``cell=True``), the seed, the metric and,
    for time-resolved metrics, the diffusion time;
``measure``
    the value with its noise floor, its 95% interval and whether it is exact;
``cost``
    score evaluations, seconds per phase and peak memory;
``outcome``
    the row's status and message.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the roles a column can play, in the order :data:`SCHEMA` lists them
ROLES = ("provenance", "identity", "measure", "cost", "outcome")

#: the pandas dtypes a column can have
DTYPES = ("string", "int64", "float64", "boolean")


@dataclass(frozen=True)
class Column:
    """One column of the result table.

    Parameters
    ----------
    name:
        The column's header.
    dtype:
        Its pandas dtype, one of :data:`DTYPES`.
    role:
        One of :data:`ROLES`.
    doc:
        One sentence saying what it holds.
    cell:
        Whether it is part of a cell's identity (a suite's grid sets it; every seed and metric
        of a cell shares it).
    short:
        The shorter name tables and figure facets print (``""``: the name itself).
    """

    name: str
    dtype: str
    role: str
    doc: str
    cell: bool = False
    short: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"column {self.name!r}: dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.role not in ROLES:
            raise ValueError(f"column {self.name!r}: role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.cell and self.role != "identity":
            raise ValueError(f"column {self.name!r}: a cell column has the identity role, not {self.role!r}")

    @property
    def label(self) -> str:
        """The name printed in tables and figure facets."""
        return self.short or self.name


#: the schema version rows of :data:`SCHEMA` carry; older tables are migrated by ``results.MIGRATIONS``
SCHEMA_VERSION = 6

#: every column of the current schema, in table order
SCHEMA: tuple[Column, ...] = (
    Column("schema_version", "int64", "provenance", "the schema version of the row"),
    Column("run_id", "string", "provenance", "the run that wrote the row"),
    Column("suite", "string", "provenance", "the suite's name"),
    Column("cell_id", "string", "identity", "sha256 prefix of the cell's components, labels and settings"),
    Column("seed", "int64", "identity", "the seed index (seeds derive from it, the suite seed and the components)"),
    Column("target", "string", "identity", "the target's label", cell=True),
    Column("process", "string", "identity", "the forward process's label", cell=True),
    Column("estimator", "string", "identity", "the score estimator's label", cell=True, short="score"),
    Column("sampler", "string", "identity", "the sampler's label", cell=True),
    Column("steps", "int64", "identity", "sampler steps", cell=True),
    Column("time_grid", "string", "identity", "the time grid's kind", cell=True, short="grid"),
    Column("init", "string", "identity", "where chains start: the prior or exact p_T draws", cell=True,
           short="start"),
    Column("ablation", "string", "identity",
           "the error source an error-decomposition variant removes: none (the cell as given), exact_start, "
           "exact_score or fine_grid", cell=True),
    Column("nfe", "float64", "cost", "score evaluations per particle"),
    Column("n_samples", "int64", "identity", "particles sampled", cell=True, short="n"),
    Column("metric", "string", "identity", "the metric's label"),
    Column("t", "float64", "identity", "the diffusion time of a time-resolved metric (NaN otherwise)"),
    Column("value", "float64", "measure", "the metric's value"),
    Column("floor", "float64", "measure", "the noise floor: the metric between two target samples (0 if exact)"),
    Column("ci_low", "float64", "measure", "lower end of the 95% interval (over seeds, or bootstrap for one seed)"),
    Column("ci_high", "float64", "measure", "upper end of the 95% interval"),
    Column("status", "string", "outcome", "ok, diverged, error, oom, timeout or skipped"),
    Column("message", "string", "outcome", "what went wrong, or a note on an approximate value"),
    Column("fit_s", "float64", "cost", "seconds fitting the score estimator"),
    Column("sample_s", "float64", "cost", "seconds sampling"),
    Column("metric_s", "float64", "cost", "seconds computing the metric, its floor excluded"),
    Column("peak_mem_bytes", "float64", "cost", "extra memory the sampling needed"),
    Column("device", "string", "provenance", "the torch device the cell ran on"),
    Column("exact", "boolean", "measure",
           "whether the value is an exact law's (no sampling noise: floor 0, the interval is the value)"),
    Column("host", "string", "provenance", "the machine that ran the cell (with Dask: its worker's host)"),
)

#: column -> pandas dtype, in table order
COLUMNS: dict[str, str] = {c.name: c.dtype for c in SCHEMA}
#: the columns that identify a cell by its labels and sizes (a cell x seed adds ``seed``)
CELL_COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA if c.cell)
#: the cell's label columns (strings), in table order
CELL_LABELS: tuple[str, ...] = tuple(c.name for c in SCHEMA if c.cell and c.dtype == "string")
#: the cell's sizes (integers), in table order
CELL_SIZES: tuple[str, ...] = tuple(c.name for c in SCHEMA if c.cell and c.dtype == "int64")
#: the columns of each role, in table order
BY_ROLE: dict[str, tuple[str, ...]] = {r: tuple(c.name for c in SCHEMA if c.role == r) for r in ROLES}

_BY_NAME = {c.name: c for c in SCHEMA}


def column(name: str) -> Column:
    """The declaration of column ``name``; a ``KeyError`` naming the known columns otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no result column {name!r}; columns: {', '.join(COLUMNS)}") from None


def label(name: str) -> str:
    """The short name tables and figures print for column ``name`` (the name itself when it has none)."""
    return _BY_NAME[name].label if name in _BY_NAME else name
