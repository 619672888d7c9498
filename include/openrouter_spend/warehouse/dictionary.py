"""Data dictionary of the `marts` and `config` schemas, rendered from the DuckDB catalog into docs/.

`python -m openrouter_spend.warehouse.dictionary` regenerates docs/data-dictionary.md from a fresh, empty warehouse
(migrations plus the COMMENT ON a mart build applies), so it needs no pipeline run; `--check` only compares.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openrouter_spend.config import settings
from openrouter_spend.warehouse.connection import connect
from openrouter_spend.warehouse.marts import DOCUMENTED_SCHEMAS, apply_comments, shape_mart_tables, table_docs
from openrouter_spend.warehouse.migrations import migrate
from openrouter_spend.warehouse.staging import build_staging

DICTIONARY_PATH = settings.PROJECT_ROOT / "docs" / "data-dictionary.md"
_SCHEMA_INTROS = {
    "marts": "The analysts' API (product.md §5.3): money in USD, UTC dates, shares as fractions in [0, 1].",
    "config": "Every version of include/config ever loaded, with the usage days it is in force for.",
}


def _cell(text: object) -> str:
    return "" if text is None else " ".join(str(text).split()).replace("|", "\\|")


def render_data_dictionary(con, schemas: tuple[str, ...] = DOCUMENTED_SCHEMAS) -> str:
    """Markdown describing every table and column of `schemas`, read from the catalog comments."""
    docs = table_docs()
    lines = [
        "# Data dictionary",
        "",
        "Generated from the warehouse catalog (`COMMENT ON`) by `python -m openrouter_spend.warehouse.dictionary`; "
        "edit `sql/marts/schema.yml`, not this file.",
        "",
    ]
    for schema in schemas:
        tables = con.execute(
            "select table_name, comment from duckdb_tables() where schema_name = ? order by table_name", [schema]
        ).fetchall()
        keys = {}
        for table, columns in con.execute(
                "select table_name, constraint_column_names from duckdb_constraints() "
                "where schema_name = ? and constraint_type = 'PRIMARY KEY'", [schema]).fetchall():
            keys[table] = ", ".join(columns)
        lines += [f"## Schema `{schema}`", "", _SCHEMA_INTROS.get(schema, ""), "",
                  "| Table | Grain | Description |", "|---|---|---|"]
        for table, comment in tables:
            grain = (docs.get(schema, {}).get(table) or {}).get("grain")
            lines.append(f"| [`{schema}.{table}`](#{schema}{table}) | {_cell(grain)} | {_cell(comment)} |")
        lines.append("")
        for table, comment in tables:
            grain = (docs.get(schema, {}).get(table) or {}).get("grain")
            lines += [f"### `{schema}.{table}`", "", _cell(comment), ""]
            facts = []
            if grain:
                facts.append(f"Grain: {grain}.")
            if table in keys:
                facts.append(f"Primary key: `{keys[table]}`.")
            if facts:
                lines += [" ".join(facts), ""]
            lines += ["| Column | Type | Nullable | Description |", "|---|---|---|---|"]
            for column, data_type, nullable, column_comment in con.execute(
                    "select column_name, data_type, is_nullable, comment from duckdb_columns() "
                    "where schema_name = ? and table_name = ? order by column_index", [schema, table]).fetchall():
                lines.append(f"| `{column}` | {data_type} | {'yes' if nullable else 'no'} | {_cell(column_comment)} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


@contextmanager
def empty_warehouse() -> Iterator:
    """A throwaway warehouse with every migration, every mart shaped by its SELECT and every comment applied,
    and no data."""
    with tempfile.TemporaryDirectory(prefix="openrouter-spend-dictionary-") as folder:
        with connect(Path(folder) / "catalog.duckdb") as con:
            migrate(con)
            build_staging(con)
            shape_mart_tables(con)
            apply_comments(con)
            yield con


def write_data_dictionary(path: Path | None = None) -> Path:
    """Regenerate docs/data-dictionary.md (or `path`) from an empty, fully migrated warehouse."""
    target = Path(path or DICTIONARY_PATH)
    with empty_warehouse() as con:
        text = render_data_dictionary(con)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def main(argv: list[str] | None = None) -> int:
    """Write the data dictionary, or with --check report whether the file is current."""
    parser = argparse.ArgumentParser(prog="python -m openrouter_spend.warehouse.dictionary", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the catalog")
    parser.add_argument("--output", type=Path, default=DICTIONARY_PATH)
    args = parser.parse_args(argv)
    if args.check:
        with empty_warehouse() as con:
            current = render_data_dictionary(con)
        if not args.output.exists() or args.output.read_text() != current:
            print(f"{args.output} is out of date; run python -m openrouter_spend.warehouse.dictionary", file=sys.stderr)
            return 1
        return 0
    print(write_data_dictionary(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
