"""Catalog look-ups and row reads the digest modules share: the tables later issues fill may be absent."""

from __future__ import annotations

import math
from typing import Any


def has_table(con, schema: str, name: str) -> bool:
    """True when schema.name exists (table or view)."""
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
    ).fetchone()[0])


def columns_of(con, schema: str, name: str) -> list[str]:
    """Column names of schema.name in table order."""
    return [row[0] for row in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema, name]).fetchall()]


def rows(con, sql: str, params: list | dict | None = None) -> list[dict[str, Any]]:
    """Run a query and return its rows as dicts with NaN turned into None."""
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [{name: _clean(value) for name, value in zip(names, row, strict=True)} for row in cursor.fetchall()]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
