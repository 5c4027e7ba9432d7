"""The result schema: each column declared once, and everything that names columns derives from it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from scorebench import schema
from scorebench.cli import ID_COLUMNS
from scorebench.compare import CELL_HEADER
from scorebench.report.data import IDENTITY, LABELS
from scorebench.report.figures import FACET_NAMES
from scorebench.results import COLUMNS, HEADER, MIGRATIONS, SCHEMA_VERSION
from scorebench.schema import Column
from scorebench.suite import Cell

ROOT = Path(__file__).resolve().parents[1]


def test_every_column_has_a_role_a_dtype_and_a_doc() -> None:
    names = [c.name for c in schema.SCHEMA]
    assert len(names) == len(set(names))
    for c in schema.SCHEMA:
        assert c.role in schema.ROLES and c.dtype in schema.DTYPES and c.doc
    assert set(schema.ROLES) == {c.role for c in schema.SCHEMA}
    assert sum(len(v) for v in schema.BY_ROLE.values()) == len(schema.SCHEMA)


@pytest.mark.parametrize("bad", [{"dtype": "int32"}, {"role": "result"}, {"role": "cost", "cell": True}])
def test_a_wrong_declaration_is_refused(bad: dict) -> None:
    good = {"name": "x", "dtype": "float64", "role": "identity", "doc": "d"}
    Column(**good)
    with pytest.raises(ValueError, match="column 'x'"):
        Column(**{**good, **bad})


def test_the_table_format_derives_from_the_schema() -> None:
    assert list(COLUMNS) == [c.name for c in schema.SCHEMA]
    assert HEADER == ",".join(COLUMNS) + "\n"
    assert SCHEMA_VERSION == schema.SCHEMA_VERSION
    assert set(MIGRATIONS) == set(range(1, SCHEMA_VERSION))  # one step from every older version


def test_cell_identity_is_the_cell_columns() -> None:
    fields = {f.name for f in dataclasses.fields(Cell)}
    assert set(schema.CELL_COLUMNS) <= fields
    cell = Cell("t", "p", "e", "s", 8, 100, "uniform", ("m",), "abc", "exact")
    labels = cell.labels()
    assert list(labels) == list(schema.CELL_COLUMNS)
    assert all(labels[c] == getattr(cell, c) for c in schema.CELL_COLUMNS)
    assert all(schema.column(c).role == "identity" for c in schema.CELL_COLUMNS)


def test_report_cli_and_compare_keys_derive_from_the_schema() -> None:
    assert IDENTITY == [*schema.CELL_LABELS, *schema.CELL_SIZES] == ID_COLUMNS
    assert set(IDENTITY) == set(schema.CELL_COLUMNS)
    assert LABELS == [*schema.CELL_LABELS, "metric"]
    assert FACET_NAMES["estimator"] == "score" == schema.label("estimator")
    # compare shows the start and a decomposition variant's ablation within its grid column
    assert CELL_HEADER == [schema.label(c) for c in schema.CELL_COLUMNS if c not in ("init", "ablation")]
    assert schema.label("not_a_column") == "not_a_column"
    with pytest.raises(KeyError, match="no result column 'nope'"):
        schema.column("nope")


def test_readme_lists_the_columns_in_table_order() -> None:
    text = (ROOT / "README.md").read_text()
    listed = re.search(r"Columns: `([^`]+)`", text)
    assert listed is not None, "README.md: no 'Columns: `...`' list"
    assert [c.strip() for c in listed.group(1).split(",")] == list(COLUMNS)
