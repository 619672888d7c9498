"""Which checks the gate runs: grains from the SQL headers and schema.yml, and generic column rules.

A Check is one expectation (its Great Expectations class and arguments, in words, with its severity); a
Dataset is what it is evaluated on. The column rules: the declared grain unique and not null, money
non-negative except the documented negatives (a column's `signed_money` in schema.yml, and a company's own
additions in quality.yaml signed_money), volumes non-negative, shares in [0, 1], and the day's row count
within a ratio of its recent history. Not-null columns, accepted values, signed money, grain columns and
row-count bounds are declared per table in sql/marts/schema.yml (marts) and
sql/staging/schema.yml (raw tables and staging views); `declarations()` reads both once per process.
"""

from __future__ import annotations

import functools
import importlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from openrouter_spend.config import settings
from openrouter_spend.quality.config import QualityConfig

# Layers whose catalog (columns and types) must match the migrations and staging SQL of this checkout.
SCHEMA_LAYERS = ("raw", "staging", "marts")
# Tables the gate writes or that describe builds rather than data.
NOT_VALIDATED = {"marts.build_log", "marts.fct_quality_results", "marts.fct_quality_runs"}
# Day-partitioned staging views and the column that holds the day; the others are validated whole.
STAGING_DAY_COLUMNS = {"stg_activity": "usage_date", "stg_account_activity": "usage_date",
                       "stg_credits": "snapshot_date", "stg_key_snapshots": "snapshot_date",
                       "stg_model_snapshots": "snapshot_date"}
# Where the tables' structural checks are declared (paths under sql/), in the order they are read.
DECLARATION_FILES = ("marts/schema.yml", "staging/schema.yml")


class ColumnDeclaration(BaseModel):
    """A column entry with checks: its description, whether it may be NULL and the values it may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    not_null: bool = False
    accepted_values: tuple[str, ...] | None = None
    # A tuple the code owns (rule ids, matcher kinds), named as module.NAME so the list is written once.
    accepted_values_from: str | None = None
    # Why this money column may go negative (exempt from the non-negative check); None: it never does.
    signed_money: str | None = None

    @model_validator(mode="after")
    def _one_source_of_values(self) -> ColumnDeclaration:
        if self.accepted_values is not None and self.accepted_values_from is not None:
            raise ValueError("give accepted_values or accepted_values_from, not both")
        return self

    def values(self) -> tuple[str, ...] | None:
        """The accepted values, resolving accepted_values_from to the tuple it names."""
        if self.accepted_values_from is None:
            return self.accepted_values
        module, _, name = self.accepted_values_from.rpartition(".")
        try:
            values = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"accepted_values_from {self.accepted_values_from!r} names no importable value") from exc
        if not isinstance(values, tuple) or not all(isinstance(value, str) for value in values):
            raise ValueError(f"accepted_values_from {self.accepted_values_from!r} is not a tuple of strings")
        return values


class TableDeclaration(BaseModel):
    """A table entry: description, grain, the gate's table-level flags and its columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    grain: str | None = None
    grain_columns: tuple[str, ...] | None = None
    row_count_bounded: bool = False
    columns: dict[str, ColumnDeclaration] = {}

    @field_validator("columns", mode="before")
    @classmethod
    def _text_is_a_description(cls, columns: Any) -> Any:
        if not isinstance(columns, dict):
            return columns
        return {name: {"description": spec} if isinstance(spec, str) else spec for name, spec in columns.items()}

    @model_validator(mode="after")
    def _grain_columns_are_columns(self) -> TableDeclaration:
        unknown = [column for column in self.grain_columns or () if column not in self.columns]
        if unknown:
            raise ValueError(f"grain_columns names no column {unknown}")
        return self


@dataclass(frozen=True)
class Declarations:
    """The structural checks schema.yml declares, per relation ('schema.table')."""

    columns: dict[str, tuple[str, ...]]
    not_null: dict[str, tuple[str, ...]]
    accepted_values: dict[str, dict[str, tuple[str, ...]]]
    grain_columns: dict[str, tuple[str, ...]]
    row_count_bounded: frozenset[str]
    signed_money: frozenset[str] = frozenset()  # 'schema.table.column' documented to go negative

    def missing_from(self, catalog: dict[str, dict[str, str]], layers: tuple[str, ...] = SCHEMA_LAYERS) -> list[str]:
        """Declared relations and columns of `layers` that the catalog does not have."""
        missing = []
        for relation, columns in self.columns.items():
            if relation.split(".", 1)[0] not in layers:
                continue
            if relation not in catalog:
                missing.append(relation)
            else:
                missing += [f"{relation}.{column}" for column in columns if column not in catalog[relation]]
        return missing


@functools.cache
def declarations() -> Declarations:
    """Read the schema.yml files once per process into the checks they declare; a malformed entry is an error."""
    import yaml

    columns: dict[str, tuple[str, ...]] = {}
    not_null: dict[str, tuple[str, ...]] = {}
    accepted: dict[str, dict[str, tuple[str, ...]]] = {}
    grain_columns: dict[str, tuple[str, ...]] = {}
    bounded: set[str] = set()
    signed: set[str] = set()
    for file_name in DECLARATION_FILES:
        path = settings.sql_dir() / file_name
        # libyaml's loader: the pure-Python one takes most of a second over these files.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for schema, tables in (yaml.load(path.read_text(), Loader=loader) or {}).items():
            for table, entry in (tables or {}).items():
                relation = f"{schema}.{table}"
                try:
                    declared = TableDeclaration.model_validate(entry)
                    values = {column: spec.values() for column, spec in declared.columns.items()}
                except ValidationError as exc:
                    problems = "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors())
                    raise ValueError(f"sql/{file_name}: {relation}: {problems}") from exc
                except ValueError as exc:
                    raise ValueError(f"sql/{file_name}: {relation}: {exc}") from exc
                columns[relation] = tuple(declared.columns)
                not_null[relation] = tuple(column for column, spec in declared.columns.items() if spec.not_null)
                accepted[relation] = {column: value for column, value in values.items() if value is not None}
                if declared.grain_columns:
                    grain_columns[relation] = declared.grain_columns
                if declared.row_count_bounded:
                    bounded.add(relation)
                signed |= {f"{relation}.{column}" for column, spec in declared.columns.items() if spec.signed_money}
    return Declarations(columns, not_null, accepted, grain_columns, frozenset(bounded), frozenset(signed))


_VOLUME_COLUMN = re.compile(r"^(requests|.*_requests|.*_tokens|active_keys|attempts|records)$")
_SHARE_COLUMN = re.compile(r"^(.*_share|provider_hhi)$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass
class Check:
    """One expectation: the GX class, its arguments, what it asserts in words, and how to explain a failure."""

    check_id: str
    expectation: str
    kwargs: dict[str, Any]
    description: str
    severity: str = "error"
    explain: Callable[[Any], str] | None = None
    # Reconciliations: "measured" (both sides measured, strict), "estimated" (an estimate is involved: reported,
    # never failing the gate) or "skipped" (nothing could be compared), and why a snapshot was skipped.
    compared_values: str | None = None
    skip_reason: str | None = None

    @property
    def column(self) -> str | None:
        for key in ("column", "column_list", "column_A"):
            if key in self.kwargs:
                value = self.kwargs[key]
                if key == "column_A":
                    return f"{value},{self.kwargs['column_B']}"
                return ",".join(value) if isinstance(value, list) else value
        return None


@dataclass
class Dataset:
    """What to validate (one day of a table, a catalog, a reconciliation) and its checks.

    A table's day is named by `source` (a SELECT the checks are computed over in DuckDB) and `columns`; small
    derived frames (catalogs, reconciliations, freshness) are pandas frames in `frame`.
    """

    name: str
    suite: str
    frame: Any
    checks: list[Check] = field(default_factory=list)
    index_columns: list[str] = field(default_factory=list)
    source: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    # A view (JSON parsed, windows over history) is computed once into a temporary table, not once per query.
    materialize: bool = False

    @property
    def column_names(self) -> list[str]:
        """The columns the checks can name."""
        return list(self.frame.columns) if self.frame is not None else list(self.columns)


def new_check(dataset: str, name: str, expectation: str, description: str, **kwargs: Any) -> Check:
    """A Check on `dataset`; severity, explain, compared_values and skip_reason come out of `kwargs`."""
    severity = kwargs.pop("severity", "error")
    explain = kwargs.pop("explain", None)
    compared_values = kwargs.pop("compared_values", None)
    skip_reason = kwargs.pop("skip_reason", None)
    return Check(f"{dataset}:{name}", expectation, kwargs, description, severity, explain, compared_values,
                 skip_reason)


def quoted_relation(relation: str) -> str:
    """'schema.name' as a quoted SQL identifier pair."""
    schema, name = relation.split(".", 1)
    return f'"{schema}"."{name}"'


def declared_nullable(header: str) -> set[str]:
    """Grain columns a header declares nullable, as in 'Grain: a × b (b NULL for ...)'."""
    remarks = " ".join(re.findall(r"\((.*?)\)", header))
    return set(re.findall(r"\b([a-z_][a-z0-9_]*) NULL\b", remarks))


def declared_grain(header: str) -> tuple[str, ...] | None:
    """The grain a SQL header or schema.yml entry declares ('Grain: a × b. Key: ...'), as column names."""
    text = header
    match = re.search(r"Grain:\s*(.+?)(?:\.\s+Key:\s*(.+?)\.?\s*$|\.?\s*$)", header, flags=re.MULTILINE)
    key_text = None
    if match:
        text, key_text = match.group(1), match.group(2)
    if key_text and not key_text.lower().startswith("the same"):
        parts = [part.strip() for part in key_text.split(",")]
    else:
        parts = [re.sub(r"\(.*?\)", "", part).strip() for part in text.split("×")]
    if parts and all(_IDENTIFIER.match(part) for part in parts):
        return tuple(parts)
    return None


def _sql_header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("--"):
            break
        lines.append(line.removeprefix("--").strip())
    return "\n".join(lines)


def relation_grain(con, relation: str, columns: list[str]) -> tuple[tuple[str, ...], set[str]]:
    """(grain, nullable grain columns) of a staging view or mart: SQL header, else schema.yml, else primary key."""
    declared_columns = declarations().grain_columns.get(relation)
    if declared_columns:
        return declared_columns, set()
    schema, name = relation.split(".", 1)
    candidates = []
    sql_file = settings.sql_dir() / schema / f"{name}.sql"
    if sql_file.exists():
        grain_line = next((line for line in _sql_header(sql_file).splitlines() if line.startswith("Grain:")), "")
        candidates.append(grain_line)
    if schema == "marts":
        from openrouter_spend.warehouse.marts import table_docs

        documented = (table_docs().get("marts") or {}).get(name) or {}
        if documented.get("grain"):
            candidates.append(f"Grain: {documented['grain']}")
    for line in candidates:
        grain = declared_grain(line)
        if grain and all(column in columns for column in grain):
            return grain, declared_nullable(line)
    primary = con.execute(
        "select constraint_column_names from duckdb_constraints() where schema_name = ? and table_name = ? "
        "and constraint_type = 'PRIMARY KEY'", [schema, name]).fetchone()
    return (tuple(primary[0]) if primary else ()), set()


def _row_count_bounds(con, relation: str, day_column: str, day: date, config: QualityConfig) -> tuple[int, int | None, str]:
    """(min, max, how) for the day's row count, from the median of the previous loaded days."""
    first = day - timedelta(days=config.row_count_lookback_days)
    counts = [row[0] for row in con.execute(
        f"select count(*) from {quoted_relation(relation)} where {day_column} >= ? and {day_column} < ? "
        f"group by {day_column}", [first, day]).fetchall()]
    if len(counts) < config.row_count_min_history_days:
        return 0, None, (f"no bound yet: {len(counts)} of the {config.row_count_min_history_days} days of "
                         "history needed")
    counts.sort()
    middle = len(counts) // 2
    median = counts[middle] if len(counts) % 2 else (counts[middle - 1] + counts[middle]) / 2
    low = math.floor(config.row_count_min_ratio * median)
    high = math.ceil(config.row_count_max_ratio * median) if median > 0 else None
    return low, high, (f"{config.row_count_min_ratio:g}–{config.row_count_max_ratio:g} × the median {median:g} "
                       f"rows of the previous {len(counts)} loaded days")


def column_checks(relation: str, columns: list[str], grain: tuple[str, ...], config: QualityConfig,
                  nullable: set[str] | frozenset[str] = frozenset()) -> list[Check]:
    """Grain, not-null, money, volume, share and accepted-value checks for a table-shaped frame."""
    checks: list[Check] = []
    if len(grain) == 1:
        checks.append(new_check(relation, "grain_unique", "ExpectColumnValuesToBeUnique",
                                f"one row per {grain[0]} (the declared grain)", column=grain[0]))
    elif len(grain) > 1:
        checks.append(new_check(relation, "grain_unique", "ExpectCompoundColumnsToBeUnique",
                                f"one row per {' × '.join(grain)} (the declared grain)", column_list=list(grain)))
    declared = declarations()
    for column in dict.fromkeys(grain + declared.not_null.get(relation, ())):
        if column in columns and column not in nullable:
            checks.append(new_check(relation, f"{column}:not_null", "ExpectColumnValuesToNotBeNull",
                                    f"{column} is never NULL", column=column))
    for column in columns:
        qualified = f"{relation}.{column}"
        if column.endswith("_usd") and qualified not in declared.signed_money and not config.is_signed_money(qualified):
            checks.append(new_check(relation, f"{column}:non_negative", "ExpectColumnValuesToBeBetween",
                                    f"{column} (money) is never negative", column=column, min_value=0))
        elif _VOLUME_COLUMN.match(column):
            checks.append(new_check(relation, f"{column}:non_negative", "ExpectColumnValuesToBeBetween",
                                    f"{column} (a volume) is never negative", column=column, min_value=0))
        elif _SHARE_COLUMN.match(column):
            checks.append(new_check(relation, f"{column}:share_in_0_1", "ExpectColumnValuesToBeBetween",
                                    f"{column} is a share in [0, 1]", column=column, min_value=0,
                                    max_value=1 + config.tolerances.share_epsilon))
    for column, values in declared.accepted_values.get(relation, {}).items():
        if column in columns:
            checks.append(new_check(relation, f"{column}:accepted_values", "ExpectColumnValuesToBeInSet",
                                    f"{column} is one of {', '.join(values)}", column=column, value_set=list(values)))
    return checks


def row_count_check(con, relation: str, day_column: str, day: date, config: QualityConfig,
                    is_gap: bool) -> Check:
    if is_gap:
        low, high, how = 0, None, "the day is a permanent gap"
    else:
        low, high, how = _row_count_bounds(con, relation, day_column, day, config)
    return new_check(relation, "row_count_vs_history", "ExpectTableRowCountToBeBetween",
                     f"the day's row count is within {how}", min_value=low, max_value=high,
                     severity=config.row_count_severity)
