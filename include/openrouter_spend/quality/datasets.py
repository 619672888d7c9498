"""What the gate validates for a day: the schema catalog, the raw partitions, every staging view and mart.

Tables are named by the SELECT of their day (Dataset.source), never read into Python: openrouter_spend.quality
.metrics computes their checks in DuckDB. Catalogs are small frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from functools import cache
from typing import Any

from openrouter_spend.quality import reconcile
from openrouter_spend.quality.checks import (
    NOT_VALIDATED,
    SCHEMA_LAYERS,
    STAGING_DAY_COLUMNS,
    Dataset,
    column_checks,
    declarations,
    new_check,
    quoted_relation,
    relation_grain,
    row_count_check,
)
from openrouter_spend.quality.config import QualityConfig

log = logging.getLogger(__name__)


@cache
def _reference_catalog() -> dict[str, dict[str, str]]:
    """Columns and types the migrations, staging SQL and mart SELECTs of this checkout define, from an
    in-memory warehouse."""
    import duckdb

    from openrouter_spend.warehouse import DUCKDB_CONFIG, build_staging, migrate
    from openrouter_spend.warehouse.marts import shape_mart_tables

    warehouse_log = logging.getLogger("openrouter_spend.warehouse")
    level = warehouse_log.level
    warehouse_log.setLevel(logging.WARNING)
    try:
        con = duckdb.connect(":memory:", config=dict(DUCKDB_CONFIG))
        try:
            migrate(con)
            build_staging(con)
            shape_mart_tables(con)
            return _catalog(con)
        finally:
            con.close()
    finally:
        warehouse_log.setLevel(level)


def _catalog(con) -> dict[str, dict[str, str]]:
    catalog: dict[str, dict[str, str]] = {}
    for schema, table, column, data_type in con.execute(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            f"where table_schema in ({', '.join('?' for _ in SCHEMA_LAYERS)}) order by table_schema, table_name, "
            "ordinal_position", list(SCHEMA_LAYERS)).fetchall():
        catalog.setdefault(f"{schema}.{table}", {})[column] = data_type
    return catalog


def schema_datasets(live: dict[str, dict[str, str]], reference: dict[str, dict[str, str]]) -> list[Dataset]:
    """Per layer: the live catalog must hold every column of the reference with its type, and nothing else."""
    import pandas as pd

    datasets = []
    for layer in SCHEMA_LAYERS:
        rows = [{"relation": relation, "column_name": column, "data_type": data_type,
                 "column_type": f"{relation}.{column} {data_type}"}
                for relation, columns in live.items() if relation.startswith(f"{layer}.")
                for column, data_type in columns.items()]
        frame = pd.DataFrame(rows, columns=["relation", "column_name", "data_type", "column_type"])
        name = f"schema.{layer}"
        expected = {relation: columns for relation, columns in reference.items() if relation.startswith(f"{layer}.")}
        checks = [
            new_check(name, f"{relation}:columns_and_types", "ExpectColumnDistinctValuesToContainSet",
                      f"{relation} has every column of its definition with its type",
                      column="column_type", value_set=[f"{relation}.{c} {t}" for c, t in columns.items()],
                      explain=_missing_columns_explainer(relation, columns))
            for relation, columns in expected.items()
        ]
        all_expected = [f"{relation}.{c} {t}" for relation, columns in expected.items() for c, t in columns.items()]
        # Leftovers (a view whose SQL file was deleted, a column added by hand) are reported, not blocking.
        checks.append(new_check(name, "no_unexpected_columns", "ExpectColumnValuesToBeInSet",
                                f"every {layer} column and type is defined by the migrations or staging SQL",
                                column="column_type", value_set=all_expected, severity="warning"))
        datasets.append(Dataset(name, "schema", frame, checks, ["relation", "column_name"]))
    return datasets


def _missing_columns_explainer(relation: str, columns: dict[str, str]) -> Callable[[Any], str]:
    def explain(frame) -> str:
        actual = {row.column_name: row.data_type for row in frame.itertuples() if row.relation == relation}
        if not actual:
            return f"{relation} does not exist in the warehouse (migrations or staging views not applied?)"
        problems = [f"{column} is missing" if column not in actual else f"{column} is {actual[column]}, not {kind}"
                    for column, kind in columns.items() if actual.get(column) != kind]
        return f"{relation}: {'; '.join(problems)}"
    return explain


RAW_QUERIES = {
    "raw.activity": (
        """
        select
            partition_date, run_id, scope, coalesce(api_key_hash, '(account)') as api_key_hash,
            payload ->> 'model_permaslug' as model_permaslug, payload ->> 'endpoint_id' as endpoint_id,
            payload ->> 'provider_name' as provider_name,
            try_cast(payload ->> 'usage' as double) as usage,
            try_cast(payload ->> 'byok_usage_inference' as double) as byok_usage_inference,
            try_cast(payload ->> 'requests' as bigint) as requests,
            left(payload ->> 'date', 10) = strftime(partition_date, '%Y-%m-%d') as is_date_of_partition
        from raw.activity where partition_date = $day
        """,
        ("scope", "api_key_hash", "model_permaslug", "endpoint_id"),
    ),
    "raw.credits": (
        "select partition_date, run_id, total_credits, total_usage from raw.credits where partition_date = $day",
        ("partition_date",),
    ),
    "raw.keys": (
        """
        select partition_date, run_id, key_hash,
            try_cast(payload ->> 'usage' as double) as usage,
            try_cast(payload ->> 'byok_usage' as double) as byok_usage
        from raw.keys where partition_date = $day
        """,
        ("key_hash",),
    ),
    "raw.models": ("select partition_date, run_id, model_id from raw.models where partition_date = $day", ("model_id",)),
    "raw.providers": ("select partition_date, run_id, provider_name from raw.providers where partition_date = $day",
                      ("provider_name",)),
    "raw.workspaces": ("select partition_date, run_id, workspace_id from raw.workspaces where partition_date = $day",
                       ("workspace_id",)),
}


# Offset-paginated listings, newest first: a key or model created while the pages are read shifts them and
# can be listed twice. Staging keeps one row per item, so a repeat there is reported but does not block.
RAW_REPEATS_TOLERATED = {"raw.keys", "raw.models"}


def raw_datasets(con, day: date, config: QualityConfig, is_gap: bool) -> list[Dataset]:
    """The day's raw partitions: grain per landed response item, one load run, non-negative amounts."""
    datasets = []
    for relation, (sql, grain) in RAW_QUERIES.items():
        columns = [column[0] for column in con.execute(f"select * from ({sql}) limit 0", {"day": day}).description]
        checks = column_checks(relation, columns, grain, config)
        if relation in RAW_REPEATS_TOLERATED:
            for check in checks:
                if check.check_id.endswith(":grain_unique"):
                    check.severity = "warning"
        checks.append(new_check(relation, "run_id:single_load", "ExpectColumnUniqueValueCountToBeBetween",
                                "the partition holds the rows of one load run only", column="run_id", max_value=1))
        for column in ("usage", "byok_usage_inference", "byok_usage", "total_credits", "total_usage"):
            if column in columns:
                checks.append(new_check(relation, f"{column}:non_negative", "ExpectColumnValuesToBeBetween",
                                        f"{column} is never negative", column=column, min_value=0))
        if relation == "raw.activity":
            checks += [
                new_check(relation, "scope:accepted_values", "ExpectColumnValuesToBeInSet",
                          "scope is account or key", column="scope", value_set=["account", "key"]),
                new_check(relation, "date:matches_partition", "ExpectColumnValuesToBeInSet",
                          "every row's date is the partition's day", column="is_date_of_partition", value_set=[True]),
            ] + [new_check(relation, f"{column}:not_null", "ExpectColumnValuesToNotBeNull", f"{column} is never NULL",
                           column=column) for column in ("provider_name", "usage", "requests")]
        if relation == "raw.credits":
            expected = 0 if is_gap else 1
            checks.append(new_check(relation, "one_snapshot", "ExpectTableRowCountToEqual",
                                    f"exactly {expected} /credits snapshot for the day", value=expected))
        if relation in declarations().row_count_bounded:
            checks.append(row_count_check(con, relation, "partition_date", day, config, is_gap))
        datasets.append(Dataset(relation, "raw", None, checks, [c for c in grain if c in columns], source=sql,
                                params={"day": day}, columns=columns, materialize=True))
    return datasets


def relation_datasets(con, layer: str, day: date, config: QualityConfig, is_gap: bool,
                      live: dict[str, dict[str, str]]) -> list[Dataset]:
    """Every staging view or mart (the day's partition, or whole for current-state tables) with generic checks.

    `live` is the warehouse's catalog (_catalog): its relations of the layer, in name order, are validated.
    """
    from openrouter_spend.warehouse.marts import MARTS

    partitions = {f"marts.{mart.name}": mart.partition_column for mart in MARTS}
    datasets = []
    for relation in sorted(relation for relation in live if relation.startswith(f"{layer}.")):
        if relation in NOT_VALIDATED:
            continue
        name = relation.split(".", 1)[1]
        columns = list(live[relation])
        if layer == "staging":
            day_column = STAGING_DAY_COLUMNS.get(name) or ("usage_date" if "usage_date" in columns else None)
        else:
            day_column = partitions.get(relation) or ("usage_date" if "usage_date" in columns else None)
        where = f" where {day_column} = $day" if day_column else ""
        grain, nullable = relation_grain(con, relation, columns)
        checks = column_checks(relation, columns, grain, config, nullable)
        if day_column and relation in declarations().row_count_bounded:
            checks.append(row_count_check(con, relation, day_column, day, config, is_gap))
        datasets.append(Dataset(relation, layer, None, checks, list(grain),
                                source=f"select * from {quoted_relation(relation)}{where}",
                                params={"day": day} if day_column else {}, columns=columns,
                                materialize=layer == "staging"))
    return datasets


def build_datasets(con, day: date, config: QualityConfig, run_id: str) -> list[Dataset]:
    """Everything the gate validates for `day`, in the order it appears in the results."""
    recorded = reconcile.record_unreachable_gaps(con, day, config.activity_window_days, run_id)
    if recorded:
        log.warning("recorded %d day(s) never loaded and now outside the API window as permanent gaps: %s",
                    len(recorded), ", ".join(d.isoformat() for d in recorded))
    is_gap = reconcile.is_permanent_gap(con, day)
    reference = _reference_catalog()
    undefined = declarations().missing_from(reference)
    if undefined:
        raise RuntimeError("sql/marts/schema.yml or sql/staging/schema.yml declares checks on tables or columns the "
                           f"migrations, staging SQL and mart SELECTs do not define: {', '.join(undefined)}")
    live = _catalog(con)  # one catalog query serves the schema checks and every relation's columns
    return (reconcile.freshness_datasets(con, day, config)
            + schema_datasets(live, reference)
            + raw_datasets(con, day, config, is_gap)
            + relation_datasets(con, "staging", day, config, is_gap, live)
            + relation_datasets(con, "marts", day, config, is_gap, live)
            + reconcile.reconciliation_datasets(con, day, config))
