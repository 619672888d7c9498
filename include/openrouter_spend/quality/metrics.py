"""Checks computed in DuckDB: one aggregate query per dataset, and up to five failing rows per failed check.

A table's day can be a million rows (marts.fct_generations on a large organisation's day); reading it into
pandas for Great Expectations cost more memory than the rest of the pipeline together. Every expectation the
gate uses is an aggregate (a count of rows that break it, a row count, a distinct count), so DuckDB answers it
over the table in constant memory. The figures follow Great Expectations' own definitions (SUMMARY result
format): element_count is the rows of the dataset; unexpected_count the rows that break the check, among the
rows the expectation considers (not NULL for column checks, not all NULL for compound and pair checks);
unexpected_percent is relative to those rows. Small derived frames (catalogs, reconciliations) are
registered with DuckDB and measured the same way.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from typing import Any

from openrouter_spend.quality.checks import Check, Dataset

SAMPLE_ROWS = 5
FRAME_VIEW = "quality_dataset_frame"
SOURCE_TABLE = "quality_dataset_rows"
MAP_EXPECTATIONS = {"ExpectColumnValuesToNotBeNull", "ExpectColumnValuesToBeBetween", "ExpectColumnValuesToBeInSet",
                    "ExpectColumnValuesToNotBeInSet", "ExpectColumnValuesToBeUnique",
                    "ExpectCompoundColumnsToBeUnique", "ExpectColumnPairValuesAToBeGreaterThanB"}


@dataclass
class Measurement:
    """What one check observed: the GX-shaped result details, and the figure judged against its bounds."""

    details: dict[str, Any] = field(default_factory=dict)
    observed: float | None = None
    lowest: float | None = None
    highest: float | None = None


def _name(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def checked_columns(check: Check) -> list[str]:
    """The columns a check names."""
    kwargs = check.kwargs
    return [kwargs[key] for key in ("column", "column_A", "column_B") if key in kwargs] + kwargs.get("column_list", [])


def _considered_and_broken(check: Check, source: str) -> tuple[str, str]:
    """(SQL condition of the rows the expectation considers, condition of the rows that break it)."""
    kwargs, kind = check.kwargs, check.expectation
    if kind == "ExpectColumnValuesToNotBeNull":
        return "true", f"{_name(kwargs['column'])} is null"
    if kind in ("ExpectColumnPairValuesAToBeGreaterThanB", "ExpectCompoundColumnsToBeUnique"):
        names = [_name(c) for c in checked_columns(check)]
        considered = "not (" + " and ".join(f"{n} is null" for n in names) + ")"
        if kind == "ExpectColumnPairValuesAToBeGreaterThanB":
            operator = ">=" if kwargs.get("or_equal") else ">"
            return considered, f"{considered} and not coalesce({names[0]} {operator} {names[1]}, false)"
        # row() compares NULL fields as equal, as GX does: a grain column declared nullable still counts.
        row = f"row({', '.join(names)})"
        return considered, f"{considered} and {row} in (select {row} from ({_duplicates(names, considered, source)}))"
    column = _name(kwargs["column"])
    considered = f"{column} is not null"
    if kind == "ExpectColumnValuesToBeUnique":
        return considered, f"{considered} and {column} in ({_duplicates([column], considered, source)})"
    if kind == "ExpectColumnValuesToBeBetween":
        bounds = [f"{column} >= {_literal(kwargs['min_value'])}"] if kwargs.get("min_value") is not None else []
        bounds += [f"{column} <= {_literal(kwargs['max_value'])}"] if kwargs.get("max_value") is not None else []
        return considered, f"{considered} and not ({' and '.join(bounds) or 'true'})"
    values = ", ".join(_literal(v) for v in kwargs["value_set"]) or "null"
    negation = "not " if kind == "ExpectColumnValuesToBeInSet" else ""
    return considered, f"{considered} and {column} {negation}in ({values})"


def _duplicates(names: list[str], considered: str, source: str) -> str:
    return f"select {', '.join(names)} from ({source}) where {considered} group by all having count(*) > 1"


def _aggregate(check: Check) -> str | None:
    """SQL of the observed value of a table- or column-aggregate expectation."""
    kind = check.expectation
    if kind in ("ExpectTableRowCountToBeBetween", "ExpectTableRowCountToEqual"):
        return "count(*)"
    if kind == "ExpectColumnUniqueValueCountToBeBetween":
        return f"count(distinct {_name(check.kwargs['column'])})"
    if kind == "ExpectColumnDistinctValuesToContainSet":
        column = _name(check.kwargs["column"])
        return f"coalesce(list(distinct {column} order by {column}) filter (where {column} is not null), [])"
    raise ValueError(f"{check.check_id}: {kind} cannot be computed in SQL")


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def measure(con, dataset: Dataset) -> dict[str, Measurement]:
    """Every check of the dataset whose columns exist, computed in one DuckDB query; keyed by check id."""
    if dataset.frame is None and dataset.materialize:
        con.execute(f"create or replace temporary table {SOURCE_TABLE} as {dataset.source}", dataset.params or None)
        try:
            return _measure(con, dataset, f"select * from {SOURCE_TABLE}", {})
        finally:
            con.execute(f"drop table if exists {SOURCE_TABLE}")
    if dataset.frame is None:
        return _measure(con, dataset, dataset.source, dataset.params)
    con.register(FRAME_VIEW, dataset.frame)
    try:
        return _measure(con, dataset, f"select * from {FRAME_VIEW}", {})
    finally:
        con.unregister(FRAME_VIEW)


def _measure(con, dataset: Dataset, source: str, params: dict) -> dict[str, Measurement]:
    present = set(dataset.column_names)
    checks = [c for c in dataset.checks if set(checked_columns(c)) <= present]
    selects, conditions = ["count(*)"], {}
    for check in checks:
        if check.expectation in MAP_EXPECTATIONS:
            considered, broken = _considered_and_broken(check, source)
            conditions[check.check_id] = broken
            selects += [f"count(*) filter (where {considered})", f"count(*) filter (where {broken})"]
        else:
            selects.append(_aggregate(check))
    [row] = con.execute(f"select {', '.join(selects)} from ({source})", params or None).fetchall()
    total, values = row[0], iter(row[1:])
    measured = {}
    for check in checks:
        if check.check_id in conditions:
            considered, broken = next(values), next(values)
            details = {"element_count": total, "unexpected_count": broken,
                       "unexpected_percent": 100 * broken / considered if considered else None}
            if broken:
                details.update(_sample(con, dataset, check, source, params, conditions[check.check_id]))
            measured[check.check_id] = Measurement(details, broken, 0, 0)
        else:
            measured[check.check_id] = _judged(check, _plain(next(values)))
    return measured


def _judged(check: Check, observed: Any) -> Measurement:
    kwargs = check.kwargs
    if check.expectation == "ExpectColumnDistinctValuesToContainSet":
        # GX records no observed value for this one (a catalog's every column and type would be a large row).
        missing = set(kwargs["value_set"]) - set(observed)
        return Measurement({}, len(missing), 0, 0)
    if check.expectation == "ExpectTableRowCountToEqual":
        return Measurement({"observed_value": observed}, observed, kwargs["value"], kwargs["value"])
    return Measurement({"observed_value": observed}, observed, kwargs.get("min_value"), kwargs.get("max_value"))


def _sample(con, dataset: Dataset, check: Check, source: str, params: dict, broken: str) -> dict[str, list]:
    """Up to five failing rows, named by the dataset's index columns when it has them (as GX's SUMMARY does)."""
    checked = checked_columns(check)
    index = [c for c in dataset.index_columns if c in set(dataset.column_names)]
    # As GX names them: the checked value first, then the row's keys (a pair's B column last).
    named = list(dict.fromkeys(checked[:1] + index + checked[1:]))
    selected = ", ".join(_name(c) for c in named)
    order = ", ".join(_name(c) for c in dict.fromkeys(index + checked))
    rows = con.execute(f"select {selected} from ({source}) where {broken} order by {order} limit {SAMPLE_ROWS}",
                       params or None).fetchall()
    if index:
        return {"partial_unexpected_index_list": [dict(zip(named, _plain(list(r)), strict=True)) for r in rows]}
    rows = [[value for column, value in zip(named, r, strict=True) if column in checked] for r in rows]
    values = [_plain(r[0]) if len(checked) == 1 else _plain(list(r)) for r in rows]
    return {"partial_unexpected_list": values}
