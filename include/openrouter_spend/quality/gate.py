"""The data-quality gate (write–audit–publish): Great Expectations suites over one day of the warehouse.

`validate_day(day, run_id)` runs after the marts are built and before anything is published. It checks the
raw, staging and mart layers of the day (schema and types, not-null keys, uniqueness at each declared grain,
non-negative money and volumes, shares in [0, 1], accepted values, row counts against recent history),
reconciles the sources against each other (per-key vs account activity, /credits and /keys usage deltas vs
activity, per-request cost vs activity) and checks that every expected endpoint landed and no day is
missing. Results go to marts.fct_quality_results (one row per expectation) and marts.fct_quality_runs, and
as GX Data Docs to $OPENROUTER_SPEND_HOME/quality/docs; any failed expectation of severity error then
raises QualityGateFailed with a readable summary. Suites are built in code on an ephemeral GX context per
run; Great Expectations and pandas are imported inside functions, never when the DAG is parsed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from openrouter_spend import reconcile, settings
from openrouter_spend.config import ConfigError, _Node, _read_yaml
from openrouter_spend.reconcile import Tolerances

log = logging.getLogger(__name__)

QUALITY_FILE = "quality.yaml"
SEVERITIES = ("error", "warning")
DOCS_SITE = "quality"
# Layers whose catalog (columns and types) must match the migrations and staging SQL of this checkout.
SCHEMA_LAYERS = ("raw", "staging", "marts")
# Tables the gate writes or that describe builds rather than data.
NOT_VALIDATED = {"marts.build_log", "marts.fct_quality_results", "marts.fct_quality_runs"}
RULE_IDS = ("credit_runway_low", "credit_burn_spike", "fallback_rate_rise", "premium_share_rise",
            "budget_threshold", "unowned_spend", "runaway_usage", "unused_key", "provider_concentration",
            "data_quality")
PREMIUM_REASONS = ("listed", "completion_price", "blended_price", "free_variant", "router_price",
                   "listed_never_premium", "below_threshold", "no_price")
MATCH_KINDS = ("key_hash", "key_name", "workspace")
ACCEPTED_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "marts.fct_daily_spend": {"premium_reason": PREMIUM_REASONS, "owner_match_kind": MATCH_KINDS},
    "marts.dim_model": {"premium_reason": PREMIUM_REASONS},
    "marts.dim_api_key": {"owner_match_kind": MATCH_KINDS, "limit_reset": ("daily", "weekly", "monthly")},
    "marts.rpt_spend_change": {"decomposition_method": ("lmdi", "volume_only"),
                               "wow_decomposition_method": ("lmdi", "volume_only")},
    "marts.dim_annotation": {"kind": ("release", "incident", "launch")},
    "marts.fct_generations": {"fallback_kind": ("none", "provider", "model", "byok"),
                              "cost_source": ("generation", "log_usage", "allocated", "allocated_key",
                                              "allocated_project", "imputed", "unknown")},
    "marts.fct_alerts": {"rule_id": RULE_IDS, "status": ("fired", "suppressed", "blocked")},
}
# Columns that must be filled besides the grain (the grain is always not-null).
NOT_NULL: dict[str, tuple[str, ...]] = {
    "staging.stg_activity": ("provider_name", "usage_usd", "byok_usage_usd", "requests"),
    "staging.stg_account_activity": ("provider_name", "usage_usd", "byok_usage_usd", "requests"),
    "staging.stg_credits": ("total_credits_usd", "total_usage_usd"),
    "staging.stg_key_snapshots": ("usage_usd",),
    # cost_usd is NULL for a sampled-out request whose stratum has no known cost: unknown, not zero.
    "marts.fct_generations": ("usage_date",),
    "marts.fct_alerts": ("rule_id", "usage_date", "status"),
}
# Day-partitioned staging views and the column that holds the day; the others are validated whole.
STAGING_DAY_COLUMNS = {"stg_activity": "usage_date", "stg_account_activity": "usage_date",
                       "stg_credits": "snapshot_date", "stg_key_snapshots": "snapshot_date",
                       "stg_model_snapshots": "snapshot_date"}
# Daily tables whose row count should stay near its recent history (volumes of keys, models, providers).
ROW_COUNT_BOUNDED = ("raw.activity", "raw.keys", "raw.models", "staging.stg_activity",
                     "staging.stg_account_activity", "staging.stg_key_snapshots", "marts.fct_daily_spend",
                     "marts.rpt_key_usage_daily", "marts.fct_provider_mix_daily", "marts.rpt_unit_economics_daily",
                     "marts.rpt_spend_change", "marts.rpt_budget_status_daily", "marts.rpt_blind_spots_daily")
GRAIN_OVERRIDES = {"marts.dim_model_price_history": ("model", "valid_from")}
_VOLUME_COLUMN = re.compile(r"^(requests|.*_requests|.*_tokens|active_keys|attempts|records)$")
_SHARE_COLUMN = re.compile(r"^(.*_share|provider_hhi)$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class QualityGateFailed(Exception):
    """The day failed the data-quality gate; `summary` names every failed expectation (results are recorded)."""

    def __init__(self, summary: str, failed: list[dict] | None = None):
        super().__init__(summary)
        self.summary = summary
        self.failed = failed or []


# ----- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedMoney:
    """Money columns documented to go negative (globs on schema.table.column) and why."""

    columns: tuple[str, ...]
    reason: str


DEFAULT_SIGNED_MONEY = (
    SignedMoney(("marts.rpt_spend_change.*delta_usd", "marts.rpt_spend_change.*_effect_usd"),
                "changes and their decomposition go negative when spend falls"),
    SignedMoney(("marts.fct_credit_balance.balance_usd", "staging.stg_credits.balance_usd"),
                "OpenRouter lets the balance go negative (requests then fail with 402)"),
    SignedMoney(("marts.fct_credit_balance.usage_delta_usd",),
                "a refund lowers total_usage; reconcile.credits_vs_activity checks the delta against activity"),
    SignedMoney(("*.*.*cache_discount*_usd", "*.*.*upstream_inference_cost*_usd", "*.*.*refund*_usd"),
                "cache-write discounts and BYOK refunds are negative by definition (openrouter-api.md §4.4)"),
    SignedMoney(("marts.fct_generations.fallback_extra_cost_usd", "marts.fct_fallback_daily.*fallback_extra_cost_usd"),
                "a fallback to a cheaper model or provider saves money"),
)


@dataclass(frozen=True)
class QualityConfig:
    """The validated quality.yaml (every field defaults to the shipped value)."""

    tolerances: Tolerances = Tolerances()
    row_count_lookback_days: int = 7
    row_count_min_history_days: int = 3
    row_count_min_ratio: float = 0.5
    row_count_max_ratio: float = 2.0
    row_count_severity: str = "error"
    unattributed_max_share: float = 0.05
    unattributed_severity: str = "warning"
    expected_endpoints: tuple[str, ...] = ("/activity", "/credits", "/keys", "/models", "/providers", "/workspaces")
    activity_window_days: int = 30
    missing_day_severity: str = "error"
    signed_money: tuple[SignedMoney, ...] = DEFAULT_SIGNED_MONEY
    warn_only: tuple[str, ...] = ()
    data_docs_keep_runs: int = 30
    path: str | None = None
    sha256: str | None = None

    def is_signed_money(self, qualified_column: str) -> bool:
        """True when a money column is documented to go negative."""
        return any(fnmatch.fnmatchcase(qualified_column, pattern)
                   for entry in self.signed_money for pattern in entry.columns)

    def severity_of(self, check_id: str, severity: str) -> str:
        """The check's severity after the warn_only list."""
        if any(fnmatch.fnmatchcase(check_id, pattern) for pattern in self.warn_only):
            return "warning"
        return severity


def _integer(node: _Node, key: str, default: int, minimum: int) -> int:
    value = node.value.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise node.error(key, f"expected a whole number >= {minimum}, got {_describe(value)}")
    return value


def _number(node: _Node, key: str, default: float | None, *, maximum: float | None = None) -> float | None:
    value = node.number(key)
    if value is None:
        return default
    if maximum is not None and value > maximum:
        raise node.error(key, f"must be <= {maximum:g}, got {value!r}")
    return value


def _severity(node: _Node, key: str, default: str) -> str:
    value = node.value.get(key, default)
    if value not in SEVERITIES:
        raise node.error(key, f"expected one of {', '.join(SEVERITIES)}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {repr(value)[:60]}"


def _strings(node: _Node, key: str, default: tuple[str, ...], *, pattern: re.Pattern | None = None) -> tuple[str, ...]:
    if node.value.get(key) is None:
        return default
    found = []
    for item in node.items(key):
        if not isinstance(item.value, str) or not item.value.strip():
            raise ConfigError(item.file, item.path, key, f"expected a non-empty string, got {_describe(item.value)}")
        if pattern is not None and not pattern.match(item.value.strip()):
            raise ConfigError(item.file, item.path, key, f"{item.value!r} does not look like {pattern.pattern}")
        found.append(item.value.strip())
    return tuple(found)


def load_quality_config(config_dir: Path | None = None) -> QualityConfig:
    """Read and validate <config dir>/quality.yaml; a missing file means the defaults. Errors name file and field."""
    folder = Path(config_dir) if config_dir else settings.config_dir()
    path = folder / QUALITY_FILE
    if not path.is_file():
        log.info("%s not found: using the built-in quality thresholds", path)
        return QualityConfig()
    raw = _read_yaml(path)
    root = _Node(str(path), "", raw)
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", "(document)", f"expected a mapping at the top, got {_describe(raw)}")
    root.mapping("(document)", (), ("tolerances", "row_counts", "unattributed_spend", "freshness", "signed_money",
                                    "warn_only", "data_docs"))
    base = Tolerances()
    tolerances_node = root.child("tolerances")
    tolerances_node.mapping("tolerances", (), tuple(Tolerances.__dataclass_fields__))
    tolerance_values: dict[str, Any] = {
        name: _number(tolerances_node, name, getattr(base, name)) for name in Tolerances.__dataclass_fields__
    }
    # null (the default) means "compare snapshots whenever they were fetched"
    tolerance_values["snapshot_max_lag_hours"] = tolerances_node.number("snapshot_max_lag_hours", exclusive=True)
    counts = root.child("row_counts")
    counts.mapping("row_counts", (), ("lookback_days", "min_history_days", "min_ratio", "max_ratio", "severity"))
    lookback = _integer(counts, "lookback_days", 7, 1)
    min_history = _integer(counts, "min_history_days", 3, 1)
    if min_history > lookback:
        raise counts.error("min_history_days", f"{min_history} is more than lookback_days {lookback}")
    min_ratio = _number(counts, "min_ratio", 0.5, maximum=1.0)
    max_ratio = _number(counts, "max_ratio", 2.0)
    if max_ratio < 1.0:
        raise counts.error("max_ratio", f"must be >= 1, got {max_ratio!r}")
    unattributed = root.child("unattributed_spend")
    unattributed.mapping("unattributed_spend", (), ("max_share", "severity"))
    freshness = root.child("freshness")
    freshness.mapping("freshness", (), ("expected_endpoints", "activity_window_days", "missing_day_severity"))
    docs = root.child("data_docs")
    docs.mapping("data_docs", (), ("keep_runs",))
    signed = []
    for item in root.items("signed_money"):
        item.mapping("signed_money", ("columns", "reason"))
        columns = _strings(item, "columns", (), pattern=re.compile(r"^[^.\s]+\.[^.\s]+\.[^.\s]+$"))
        if not columns:
            raise item.error("columns", "needs at least one schema.table.column glob")
        signed.append(SignedMoney(columns, item.text("reason")))
    return QualityConfig(
        tolerances=Tolerances(**tolerance_values),
        row_count_lookback_days=lookback,
        row_count_min_history_days=min_history,
        row_count_min_ratio=min_ratio,
        row_count_max_ratio=max_ratio,
        row_count_severity=_severity(counts, "severity", "error"),
        unattributed_max_share=_number(unattributed, "max_share", 0.05, maximum=1.0),
        unattributed_severity=_severity(unattributed, "severity", "warning"),
        expected_endpoints=_strings(freshness, "expected_endpoints", QualityConfig.expected_endpoints,
                                    pattern=re.compile(r"^/[A-Za-z0-9_/{}-]*$")),
        activity_window_days=_integer(freshness, "activity_window_days", 30, 1),
        missing_day_severity=_severity(freshness, "missing_day_severity", "error"),
        signed_money=tuple(signed) if root.value.get("signed_money") is not None else DEFAULT_SIGNED_MONEY,
        warn_only=_strings(root, "warn_only", ()),
        data_docs_keep_runs=_integer(docs, "keep_runs", 30, 1),
        path=str(path),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


# ----- checks and datasets -----------------------------------------------------------------------------


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
    """A frame to validate (one day of a table, a catalog, a reconciliation) and its checks."""

    name: str
    suite: str
    frame: Any
    checks: list[Check] = field(default_factory=list)
    index_columns: list[str] = field(default_factory=list)


def _check(dataset: str, name: str, expectation: str, description: str, **kwargs: Any) -> Check:
    severity = kwargs.pop("severity", "error")
    explain = kwargs.pop("explain", None)
    compared_values = kwargs.pop("compared_values", None)
    skip_reason = kwargs.pop("skip_reason", None)
    return Check(f"{dataset}:{name}", expectation, kwargs, description, severity, explain, compared_values,
                 skip_reason)


def _quoted(relation: str) -> str:
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
    if relation in GRAIN_OVERRIDES:
        return GRAIN_OVERRIDES[relation], set()
    schema, name = relation.split(".", 1)
    candidates = []
    sql_file = settings.sql_dir() / schema / f"{name}.sql"
    if sql_file.exists():
        grain_line = next((line for line in _sql_header(sql_file).splitlines() if line.startswith("Grain:")), "")
        candidates.append(grain_line)
    if schema == "marts":
        from openrouter_spend.marts import table_docs

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
        f"select count(*) from {_quoted(relation)} where {day_column} >= ? and {day_column} < ? "
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


def _column_checks(relation: str, columns: list[str], grain: tuple[str, ...], config: QualityConfig,
                   nullable: set[str] | frozenset[str] = frozenset()) -> list[Check]:
    """Grain, not-null, money, volume, share and accepted-value checks for a table-shaped frame."""
    checks: list[Check] = []
    if len(grain) == 1:
        checks.append(_check(relation, "grain_unique", "ExpectColumnValuesToBeUnique",
                             f"one row per {grain[0]} (the declared grain)", column=grain[0]))
    elif len(grain) > 1:
        checks.append(_check(relation, "grain_unique", "ExpectCompoundColumnsToBeUnique",
                             f"one row per {' × '.join(grain)} (the declared grain)", column_list=list(grain)))
    for column in dict.fromkeys(grain + NOT_NULL.get(relation, ())):
        if column in columns and column not in nullable:
            checks.append(_check(relation, f"{column}:not_null", "ExpectColumnValuesToNotBeNull",
                                 f"{column} is never NULL", column=column))
    for column in columns:
        qualified = f"{relation}.{column}"
        if column.endswith("_usd") and not config.is_signed_money(qualified):
            checks.append(_check(relation, f"{column}:non_negative", "ExpectColumnValuesToBeBetween",
                                 f"{column} (money) is never negative", column=column, min_value=0))
        elif _VOLUME_COLUMN.match(column):
            checks.append(_check(relation, f"{column}:non_negative", "ExpectColumnValuesToBeBetween",
                                 f"{column} (a volume) is never negative", column=column, min_value=0))
        elif _SHARE_COLUMN.match(column):
            checks.append(_check(relation, f"{column}:share_in_0_1", "ExpectColumnValuesToBeBetween",
                                 f"{column} is a share in [0, 1]", column=column, min_value=0,
                                 max_value=1 + config.tolerances.share_epsilon))
    for column, values in ACCEPTED_VALUES.get(relation, {}).items():
        if column in columns:
            checks.append(_check(relation, f"{column}:accepted_values", "ExpectColumnValuesToBeInSet",
                                 f"{column} is one of {', '.join(values)}", column=column, value_set=list(values)))
    return checks


def _row_count_check(con, relation: str, day_column: str, day: date, config: QualityConfig,
                     is_gap: bool) -> Check:
    if is_gap:
        low, high, how = 0, None, "the day is a permanent gap"
    else:
        low, high, how = _row_count_bounds(con, relation, day_column, day, config)
    return _check(relation, "row_count_vs_history", "ExpectTableRowCountToBeBetween",
                  f"the day's row count is within {how}", min_value=low, max_value=high,
                  severity=config.row_count_severity)


# ----- dataset builders ---------------------------------------------------------------------------------


def _reference_catalog() -> dict[str, dict[str, str]]:
    """Columns and types the migrations and staging SQL of this checkout define, from an in-memory warehouse."""
    import duckdb

    from openrouter_spend.warehouse import DUCKDB_CONFIG, build_staging, migrate

    warehouse_log = logging.getLogger("openrouter_spend.warehouse")
    level = warehouse_log.level
    warehouse_log.setLevel(logging.WARNING)
    try:
        con = duckdb.connect(":memory:", config=dict(DUCKDB_CONFIG))
        try:
            migrate(con)
            build_staging(con)
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


def schema_datasets(con, reference: dict[str, dict[str, str]]) -> list[Dataset]:
    """Per layer: the live catalog must hold every column of the reference with its type, and nothing else."""
    import pandas as pd

    live = _catalog(con)
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
            _check(name, f"{relation}:columns_and_types", "ExpectColumnDistinctValuesToContainSet",
                   f"{relation} has every column of its definition with its type",
                   column="column_type", value_set=[f"{relation}.{c} {t}" for c, t in columns.items()],
                   explain=_missing_columns_explainer(relation, columns))
            for relation, columns in expected.items()
        ]
        all_expected = [f"{relation}.{c} {t}" for relation, columns in expected.items() for c, t in columns.items()]
        # Leftovers (a view whose SQL file was deleted, a column added by hand) are reported, not blocking.
        checks.append(_check(name, "no_unexpected_columns", "ExpectColumnValuesToBeInSet",
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
        frame = reconcile.frame_of(con, sql, {"day": day})
        columns = list(frame.columns)
        checks = _column_checks(relation, columns, grain, config)
        if relation in RAW_REPEATS_TOLERATED:
            for check in checks:
                if check.check_id.endswith(":grain_unique"):
                    check.severity = "warning"
        checks.append(_check(relation, "run_id:single_load", "ExpectColumnUniqueValueCountToBeBetween",
                             "the partition holds the rows of one load run only", column="run_id", max_value=1))
        for column in ("usage", "byok_usage_inference", "byok_usage", "total_credits", "total_usage"):
            if column in columns:
                checks.append(_check(relation, f"{column}:non_negative", "ExpectColumnValuesToBeBetween",
                                     f"{column} is never negative", column=column, min_value=0))
        if relation == "raw.activity":
            checks += [
                _check(relation, "scope:accepted_values", "ExpectColumnValuesToBeInSet",
                       "scope is account or key", column="scope", value_set=["account", "key"]),
                _check(relation, "date:matches_partition", "ExpectColumnValuesToBeInSet",
                       "every row's date is the partition's day", column="is_date_of_partition", value_set=[True]),
            ] + [_check(relation, f"{column}:not_null", "ExpectColumnValuesToNotBeNull", f"{column} is never NULL",
                        column=column) for column in ("provider_name", "usage", "requests")]
        if relation == "raw.credits":
            expected = 0 if is_gap else 1
            checks.append(_check(relation, "one_snapshot", "ExpectTableRowCountToEqual",
                                 f"exactly {expected} /credits snapshot for the day", value=expected))
        if relation in ROW_COUNT_BOUNDED:
            checks.append(_row_count_check(con, relation, "partition_date", day, config, is_gap))
        datasets.append(Dataset(relation, "raw", frame, checks, [c for c in grain if c in columns]))
    return datasets


def relation_datasets(con, layer: str, day: date, config: QualityConfig, is_gap: bool,
                      relations: list[str]) -> list[Dataset]:
    """Every staging view or mart (the day's partition, or whole for current-state tables) with generic checks."""
    from openrouter_spend.marts import MARTS

    partitions = {f"marts.{mart.name}": mart.partition_column for mart in MARTS}
    datasets = []
    for relation in relations:
        if relation in NOT_VALIDATED:
            continue
        name = relation.split(".", 1)[1]
        columns = [row[0] for row in con.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
            "order by ordinal_position", [layer, name]).fetchall()]
        if layer == "staging":
            day_column = STAGING_DAY_COLUMNS.get(name) or ("usage_date" if "usage_date" in columns else None)
        else:
            day_column = partitions.get(relation) or ("usage_date" if "usage_date" in columns else None)
        where = f" where {day_column} = $day" if day_column else ""
        frame = reconcile.frame_of(con, f"select * from {_quoted(relation)}{where}", {"day": day} if day_column else {})
        grain, nullable = relation_grain(con, relation, columns)
        checks = _column_checks(relation, columns, grain, config, nullable)
        if day_column and relation in ROW_COUNT_BOUNDED:
            checks.append(_row_count_check(con, relation, day_column, day, config, is_gap))
        datasets.append(Dataset(relation, layer, frame, checks, list(grain)))
    return datasets


def _money(value: float) -> str:
    return f"{value:,.2f} USD" if abs(value) >= 0.01 or value == 0 else f"{value:.6f} USD"


def _top_rows(frame, mask, order_column: str, limit: int = 3):
    return frame[mask].sort_values(order_column, ascending=False, key=abs).head(limit)


def reconciliation_datasets(con, day: date, config: QualityConfig) -> list[Dataset]:
    """Sources against each other: per-key vs account activity, marts vs activity, /credits and /keys deltas."""
    tol = config.tolerances
    noise = tol.float_noise_usd

    key_frame = reconcile.key_vs_account(con, day)

    def explain_key_excess(column: str, unit: str) -> Callable[[Any], str]:
        def explain(frame) -> str:
            over = frame[column] > (0 if unit == "requests" else noise)
            parts = [f"{r.model_permaslug} via {r.provider_name}: keys {r.key_usage_usd:.6f} vs account "
                     f"{r.account_usage_usd:.6f} USD, {int(r.key_requests)} vs {int(r.account_requests)} requests"
                     for r in _top_rows(frame, over, column).itertuples()]
            return f"per-key activity exceeds the account's on {int(over.sum())} model × provider(s): " + "; ".join(parts)
        return explain

    name = "reconcile.key_vs_account"
    key_checks = [
        _check(name, "key_usage_within_account", "ExpectColumnValuesToBeBetween",
               "per-key activity summed never exceeds the account-level activity (usage)",
               column="key_excess_usage_usd", max_value=noise, explain=explain_key_excess("key_excess_usage_usd", "usd"),
               compared_values="measured"),
        _check(name, "key_byok_within_account", "ExpectColumnValuesToBeBetween",
               "per-key activity summed never exceeds the account-level activity (BYOK)",
               column="key_excess_byok_usd", max_value=noise, explain=explain_key_excess("key_excess_byok_usd", "usd"),
               compared_values="measured"),
        _check(name, "key_requests_within_account", "ExpectColumnValuesToBeBetween",
               "per-key requests summed never exceed the account-level requests",
               column="key_excess_requests", max_value=0,
               explain=explain_key_excess("key_excess_requests", "requests"), compared_values="measured"),
    ]

    marts_frame = reconcile.marts_vs_account(con, day)
    name = "reconcile.marts_vs_account"

    def explain_marts(column: str, what: str) -> Callable[[Any], str]:
        def explain(frame) -> str:
            row = frame.iloc[0]
            return (f"{what}: fct_daily_spend {_money(row.mart_spend_usd)} vs account activity "
                    f"{_money(row.account_usage_usd)}; unattributed remainder {_money(row.unattributed_usd)}, in the "
                    f"mart as '(unattributed)' {_money(row.mart_unattributed_usd)} ({column} = {row[column]:.6g})")
        return explain

    def explain_unattributed(frame) -> str:
        row = frame.iloc[0]
        return (f"{_money(row.unattributed_usd)} ({row.unattributed_share:.1%}) of the day's "
                f"{_money(row.account_usage_usd)} is not attributed to any listed key (deleted keys?); it is kept "
                f"as api_key_hash '(unattributed)'")

    marts_checks = [
        _check(name, "spend_matches_account", "ExpectColumnValuesToBeBetween",
               "fct_daily_spend (with '(unattributed)') adds up to the account's activity usage",
               column="mart_minus_account_usd", min_value=-noise, max_value=noise,
               explain=explain_marts("mart_minus_account_usd", "mart spend does not add up"), compared_values="measured"),
        _check(name, "byok_matches_account", "ExpectColumnValuesToBeBetween",
               "fct_daily_spend BYOK spend adds up to the account's activity",
               column="mart_minus_account_byok_usd", min_value=-noise, max_value=noise,
               explain=explain_marts("mart_minus_account_byok_usd", "mart BYOK spend does not add up"), compared_values="measured"),
        _check(name, "requests_match_account", "ExpectColumnValuesToBeBetween",
               "fct_daily_spend requests add up to the account's activity requests",
               column="mart_minus_account_requests", min_value=0, max_value=0,
               explain=explain_marts("mart_minus_account_requests", "mart requests do not add up"), compared_values="measured"),
        _check(name, "unattributed_kept_in_mart", "ExpectColumnValuesToBeBetween",
               "spend no listed key accounts for is kept in fct_daily_spend as '(unattributed)'",
               column="mart_minus_unattributed_usd", min_value=-noise, max_value=noise,
               explain=explain_marts("mart_minus_unattributed_usd", "unattributed spend vanished"), compared_values="measured"),
        _check(name, "unattributed_share", "ExpectColumnValuesToBeBetween",
               f"unattributed spend is at most {config.unattributed_max_share:.0%} of the day's spend",
               column="unattributed_share", max_value=config.unattributed_max_share,
               severity=config.unattributed_severity, explain=explain_unattributed, compared_values="measured"),
    ]

    credits_pair = reconcile.snapshot_pair(con, day, "/credits", tol)
    credits_frame = reconcile.credits_vs_activity(con, day, tol, credits_pair)

    def explain_credits(frame) -> str:
        lines = []
        for r in frame[frame.abs_difference_usd > frame.tolerance_usd].itertuples():
            missing = f"; never loaded in between: {r.missing_days}" if r.missing_day_count else ""
            lines.append(f"/credits total_usage rose {_money(r.usage_delta_usd)} from {r.previous_snapshot_date:%Y-%m-%d} "
                         f"to {r.as_of_date:%Y-%m-%d} but /activity sums {_money(r.activity_usage_usd)} (difference "
                         f"{r.difference_usd:+,.2f} USD, tolerance {_money(r.tolerance_usd)}){missing}")
        return "; ".join(lines)

    name = "reconcile.credits_vs_activity"
    credits_checks = [_check(name, "usage_delta_matches_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
                             "the /credits end-of-day total_usage delta matches the activity summed since the previous "
                             f"on-time snapshot (within {tol.credits_usage_abs_usd:g} USD + "
                             f"{tol.credits_usage_relative:.0%})",
                             column_A="tolerance_usd", column_B="abs_difference_usd", or_equal=True,
                             explain=explain_credits, **_snapshot_basis(credits_pair))]

    keys_pair = reconcile.snapshot_pair(con, day, "/keys", tol)
    keys_frame = reconcile.key_usage_vs_activity(con, day, tol, keys_pair)

    def explain_keys(difference: str, abs_difference: str, tolerance: str, delta: str, activity: str) -> Callable:
        def explain(frame) -> str:
            bad = frame[frame[abs_difference] > frame[tolerance]]
            rows = bad.sort_values(abs_difference, ascending=False).head(3)
            parts = [f"{r.api_key_name or r.api_key_hash[:12]}: /keys delta {_money(getattr(r, delta))} vs activity "
                     f"{_money(getattr(r, activity))} ({getattr(r, difference):+,.4f} USD)" for r in rows.itertuples()]
            return f"{len(bad)} key(s) whose /keys usage delta disagrees with their activity: " + "; ".join(parts)
        return explain

    name = "reconcile.key_usage_vs_activity"
    keys_checks = [
        _check(name, "usage_delta_matches_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
               "each key's /keys lifetime usage delta matches its activity since the previous snapshot",
               column_A="tolerance_usd", column_B="abs_difference_usd", or_equal=True,
               explain=explain_keys("difference_usd", "abs_difference_usd", "tolerance_usd", "usage_delta_usd",
                                    "activity_usage_usd"), **_snapshot_basis(keys_pair)),
        _check(name, "byok_delta_matches_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
               "each key's /keys lifetime BYOK usage delta matches its BYOK activity since the previous snapshot",
               column_A="byok_tolerance_usd", column_B="abs_byok_difference_usd", or_equal=True,
               explain=explain_keys("byok_difference_usd", "abs_byok_difference_usd", "byok_tolerance_usd",
                                    "byok_delta_usd", "activity_byok_usd"), **_snapshot_basis(keys_pair)),
    ]

    per_request_frame = reconcile.per_request_vs_activity(con, day, tol)

    def explain_per_request(cost: str, allowed: str, activity: str, what: str) -> Callable[[Any], str]:
        def explain(frame) -> str:
            bad = frame[frame[cost] > frame[allowed]]
            return "; ".join(f"{r.project}: {int(r.measured_records if cost.startswith('measured') else r.records)} "
                             f"per-request records {what} {_money(getattr(r, cost))} but activity shows "
                             f"{_money(getattr(r, activity))}" for r in bad.itertuples())
        return explain

    estimated = float(per_request_frame.estimated_cost_usd.sum()) if len(per_request_frame) else 0.0
    total = float(per_request_frame.per_request_cost_usd.sum()) if len(per_request_frame) else 0.0
    share = f"{estimated / total:.0%} of the day's per-request cost" if total > 0 else "none of it"
    slack = (f"(+{tol.per_request_relative:.0%} + {tol.per_request_abs_usd:g} USD)" if tol.per_request_relative
             else f"(+{tol.per_request_abs_usd:g} USD)")
    name = "reconcile.per_request_vs_activity"
    per_request_checks = [
        _check(name, "measured_cost_within_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
               f"measured per-request costs summed per project do not exceed its activity credits spend {slack}",
               column_A="allowed_usd", column_B="measured_cost_usd", or_equal=True,
               explain=explain_per_request("measured_cost_usd", "allowed_usd", "activity_spend_usd", "measured at"),
               compared_values="measured"),
        _check(name, "measured_byok_within_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
               f"measured per-request BYOK costs summed per project do not exceed its activity BYOK spend {slack}",
               column_A="byok_allowed_usd", column_B="measured_byok_usd", or_equal=True,
               explain=explain_per_request("measured_byok_usd", "byok_allowed_usd", "activity_byok_usd",
                                           "measured BYOK at"),
               compared_values="measured"),
        # Allocated costs add up to activity by construction; an estimate is reported, never failing the gate.
        _check(name, "estimated_cost_within_activity", "ExpectColumnPairValuesAToBeGreaterThanB",
               f"per-request costs with the estimated ones ({share} is estimated: allocated from activity or "
               f"imputed) summed per project stay within its activity credits spend {slack}",
               column_A="allowed_usd", column_B="per_request_cost_usd", or_equal=True, severity="warning",
               explain=explain_per_request("per_request_cost_usd", "allowed_usd", "activity_spend_usd",
                                           "measured and estimated at"),
               compared_values="estimated"),
    ]

    return [
        Dataset("reconcile.key_vs_account", "reconciliation", key_frame, key_checks,
                ["model_permaslug", "provider_name"]),
        Dataset("reconcile.marts_vs_account", "reconciliation", marts_frame, marts_checks, ["usage_date"]),
        Dataset("reconcile.credits_vs_activity", "reconciliation", credits_frame, credits_checks,
                ["as_of_date", "previous_snapshot_date"]),
        Dataset("reconcile.key_usage_vs_activity", "reconciliation", keys_frame, keys_checks, ["api_key_hash"]),
        Dataset("reconcile.per_request_vs_activity", "reconciliation", per_request_frame, per_request_checks,
                ["project"]),
    ]


def _snapshot_basis(pair: reconcile.SnapshotPair) -> dict[str, str | None]:
    """compared_values and skip_reason of a snapshot reconciliation."""
    return {"compared_values": "measured" if pair.compared else "skipped", "skip_reason": pair.note}


def freshness_datasets(con, day: date, config: QualityConfig) -> list[Dataset]:
    """Every expected endpoint landed for the day, and no day since the first one is missing."""
    endpoints = reconcile.endpoint_freshness(con, day, config.expected_endpoints)

    def explain_endpoints(frame) -> str:
        missing = frame[frame.status == "missing"]
        return f"no response landed for {day} from: {', '.join(missing.endpoint)}"

    def explain_gap(frame) -> str:
        return f"{day} is a permanent gap: it left the API's window before it was captured (meta.extraction_gaps)"

    name = "freshness.endpoints"
    endpoint_checks = [
        _check(name, "every_endpoint_landed", "ExpectColumnValuesToBeInSet",
               "every expected endpoint landed for the day (or the day is a recorded permanent gap)",
               column="status", value_set=["landed", "permanent_gap"], explain=explain_endpoints),
        _check(name, "day_not_a_gap", "ExpectColumnValuesToNotBeInSet",
               "the day was captured (not a permanent gap)", column="status", value_set=["permanent_gap"],
               severity="warning", explain=explain_gap),
    ]
    history = reconcile.history_completeness(con, day, config.activity_window_days)

    def explain_history(frame) -> str:
        missing = list(frame[frame.status == "missing"].usage_date.dt.date)
        first, last = min(missing), max(missing)
        return (f"{len(missing)} day(s) inside the API window were never loaded: "
                f"{', '.join(d.isoformat() for d in missing[:10])}{' …' if len(missing) > 10 else ''} "
                f"(backfill with `openrouter-spend run --start {first} --end {last}`)")

    name = "freshness.history"
    history_checks = [_check(name, "no_missing_days", "ExpectColumnValuesToBeInSet",
                             "every day since the first one is loaded or a recorded permanent gap",
                             column="status", value_set=["loaded", "permanent_gap"],
                             severity=config.missing_day_severity, explain=explain_history)]
    return [Dataset("freshness.endpoints", "freshness", endpoints, endpoint_checks, ["endpoint"]),
            Dataset("freshness.history", "freshness", history, history_checks, ["usage_date"])]


def build_datasets(con, day: date, config: QualityConfig, run_id: str) -> list[Dataset]:
    """Everything the gate validates for `day`, in the order it appears in the results."""
    recorded = reconcile.record_unreachable_gaps(con, day, config.activity_window_days, run_id)
    if recorded:
        log.warning("recorded %d day(s) never loaded and now outside the API window as permanent gaps: %s",
                    len(recorded), ", ".join(d.isoformat() for d in recorded))
    is_gap = reconcile.is_permanent_gap(con, day)
    relations = {layer: [f"{layer}.{name}" for (name,) in con.execute(
        "select table_name from information_schema.tables where table_schema = ? order by table_name",
        [layer]).fetchall()] for layer in ("staging", "marts")}
    return (freshness_datasets(con, day, config)
            + schema_datasets(con, _reference_catalog())
            + raw_datasets(con, day, config, is_gap)
            + relation_datasets(con, "staging", day, config, is_gap, relations["staging"])
            + relation_datasets(con, "marts", day, config, is_gap, relations["marts"])
            + reconciliation_datasets(con, day, config))


# ----- running the suites -------------------------------------------------------------------------------


@contextmanager
def _quiet_gx() -> Iterator[None]:
    gx_log = logging.getLogger("great_expectations")
    level = gx_log.level
    gx_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        gx_log.setLevel(level)


def _safe_json(value: Any) -> str | None:
    if value is None:
        return None

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(json.loads(json.dumps(value, default=str))))


def _describe_failure(check: Check, dataset: Dataset, result: dict, exception: str | None) -> str:
    if exception:
        return f"{check.description}: could not be evaluated ({exception})"
    if check.explain is not None:
        try:
            return check.explain(dataset.frame)
        except Exception as exc:  # an explanation must never hide the failure itself
            log.warning("could not explain %s: %s", check.check_id, exc)
    if "observed_value" in result and "unexpected_count" not in result:
        bounds = {k: v for k, v in check.kwargs.items() if k in ("min_value", "max_value", "value")}
        return f"{check.description}: observed {result['observed_value']!r} (expected {bounds})"
    count, total = result.get("unexpected_count"), result.get("element_count")
    sample = result.get("partial_unexpected_index_list") or result.get("partial_unexpected_list") or []
    return f"{check.description}: {count} of {total} row(s) break it, e.g. {_safe_json(sample[:3])}"


def run_datasets(datasets: list[Dataset], run_id: str, validated_at: datetime, docs_dir: Path,
                 config: QualityConfig) -> list[dict]:
    """Validate every dataset on one ephemeral GX context, build the Data Docs; one result row per check."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    started = time.monotonic()
    rows = []
    with _quiet_gx():
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.add_data_docs_site(site_name=DOCS_SITE, site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        })
        source = context.data_sources.add_pandas(name="warehouse")
        gx_run = RunIdentifier(run_name=run_id, run_time=validated_at)
        for dataset in datasets:
            ids = [check.check_id for check in dataset.checks]
            if len(ids) != len(set(ids)):
                raise ValueError(f"{dataset.name} declares a check id twice: {sorted(i for i in ids if ids.count(i) > 1)}")
            batch = source.add_dataframe_asset(name=dataset.name).add_batch_definition_whole_dataframe("day")
            expectations = [
                getattr(gxe, check.expectation)(**check.kwargs, description=check.description,
                                                meta={"check_id": check.check_id})
                for check in dataset.checks
            ]
            suite = context.suites.add(gx.ExpectationSuite(name=dataset.name, expectations=expectations))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=dataset.name, data=batch, suite=suite))
            result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
            index_columns = [c for c in dataset.index_columns if c in dataset.frame.columns]
            if index_columns:
                result_format["unexpected_index_column_names"] = index_columns
            outcome = definition.run(batch_parameters={"dataframe": dataset.frame}, result_format=result_format,
                                     run_id=gx_run)
            by_id = {r.expectation_config.meta.get("check_id"): r for r in outcome.results}
            for check in dataset.checks:
                rows.append(_result_row(check, dataset, by_id.get(check.check_id), run_id, validated_at, config))
        validated = time.monotonic()
        context.build_data_docs(site_names=[DOCS_SITE])
    log.info("validated %d datasets (%d expectations) in %.1fs; Data Docs in %.1fs", len(datasets), len(rows),
             validated - started, time.monotonic() - validated)
    return rows


def _result_row(check: Check, dataset: Dataset, result, run_id: str, validated_at: datetime,
                config: QualityConfig) -> dict:
    details = (result.result if result is not None else {}) or {}
    named = [check.kwargs[key] for key in ("column", "column_A", "column_B") if key in check.kwargs]
    named += check.kwargs.get("column_list", [])
    missing = [column for column in named if column not in dataset.frame.columns]
    exception = None
    if missing:
        exception = f"no column {', '.join(missing)} in {dataset.name}"
    elif result is None:
        exception = "no result returned"
    elif result.exception_info and result.exception_info.get("raised_exception"):
        exception = result.exception_info.get("exception_message") or "exception"
    success = bool(result is not None and result.success and not exception)
    observed = details.get("observed_value")
    sample = details.get("partial_unexpected_index_list") or details.get("partial_unexpected_list")
    return {
        "run_id": run_id,
        "check_id": check.check_id,
        "validated_at": validated_at,
        "suite": dataset.suite,
        "dataset": dataset.name,
        "expectation_type": result.expectation_config.type if result is not None else check.expectation,
        "column_name": check.column,
        "description": check.description,
        "severity": config.severity_of(check.check_id, check.severity),
        "success": success,
        "element_count": details.get("element_count"),
        "unexpected_count": details.get("unexpected_count"),
        "unexpected_percent": details.get("unexpected_percent"),
        "observed_value": _safe_json(observed) if observed is not None else None,
        "unexpected_sample": _safe_json(sample[:5]) if sample else None,
        "expectation_kwargs": _safe_json({k: v for k, v in check.kwargs.items() if k != "value_set"}
                                         | ({"value_set_size": len(check.kwargs["value_set"])}
                                            if "value_set" in check.kwargs else {})),
        "message": None if success else _describe_failure(check, dataset, details, exception),
        "compared_values": check.compared_values,
        "skip_reason": check.skip_reason,
    }


# ----- recording and the gate ---------------------------------------------------------------------------


def summarize(day: date, run_id: str, rows: list[dict], docs_path: Path | None) -> str:
    """A readable summary naming every failed expectation (errors first, then warnings)."""
    errors = [r for r in rows if not r["success"] and r["severity"] == "error"]
    warnings = [r for r in rows if not r["success"] and r["severity"] == "warning"]
    if errors:
        lines = [f"Data-quality gate FAILED for {day} (run {run_id}): {len(errors)} of {len(rows)} expectations "
                 "failed; nothing is published for this day."]
        lines += [f"- [{r['suite']}] {r['check_id']}: {r['message']}" for r in errors]
    else:
        lines = [f"Data-quality gate passed for {day} (run {run_id}): {len(rows)} expectations held"
                 + (f", {len(warnings)} warning(s)." if warnings else ".")]
    if warnings:
        lines.append("Warnings (not blocking):")
        lines += [f"- [{r['suite']}] {r['check_id']}: {r['message']}" for r in warnings]
    if docs_path is not None:
        lines.append(f"Data Docs: {docs_path}")
    return "\n".join(lines)


def _record(con, day: date, run_id: str, rows: list[dict], run_row: dict) -> None:
    import pandas as pd

    results = pd.DataFrame([{**row, "usage_date": day} for row in rows])
    con.execute("begin transaction")
    try:
        con.execute("delete from marts.fct_quality_results where run_id = ? and usage_date = ?", [run_id, day])
        con.execute("delete from marts.fct_quality_runs where run_id = ? and usage_date = ?", [run_id, day])
        if len(results):
            con.register("quality_results", results)
            con.execute("insert into marts.fct_quality_results by name select * from quality_results")
            con.unregister("quality_results")
        columns = list(run_row)
        con.execute(f"insert into marts.fct_quality_runs ({', '.join(columns)}) values "
                    f"({', '.join('?' for _ in columns)})", [run_row[c] for c in columns])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def prune_outputs(quality_dir: Path, keep_runs: int) -> int:
    """Delete Data Docs validation pages and result files of all but the newest `keep_runs` runs; returns paths removed."""
    import shutil

    removed = 0
    page_folders: dict[str, list[Path]] = {}
    for folder in (quality_dir / "docs" / "validations").glob("*/*/*"):
        if folder.is_dir():
            page_folders.setdefault(folder.name, []).append(folder)
    result_files = {str(path): [path] for path in (quality_dir / "results").glob("*/*.json")}
    for runs in (page_folders, result_files):
        newest = sorted(runs, key=lambda run, runs=runs: max(p.stat().st_mtime for p in runs[run]), reverse=True)
        for run in newest[keep_runs:]:
            for path in runs[run]:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
    return removed


def _results_path(day: date, run_id: str) -> Path:
    safe_run = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
    return settings.paths().quality / "results" / day.isoformat() / f"{safe_run}.json"


def _write_results_file(path: Path, run_row: dict, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({"run": run_row, "results": rows}, default=str, indent=1))
    temporary.replace(path)


def _config_failure_row(exc: ConfigError, run_id: str, validated_at: datetime) -> dict:
    return {"run_id": run_id, "check_id": f"config:{QUALITY_FILE}:valid", "validated_at": validated_at,
            "suite": "config", "dataset": QUALITY_FILE, "expectation_type": "config_valid", "column_name": exc.field,
            "description": f"{QUALITY_FILE} is valid", "severity": "error", "success": False,
            "element_count": None, "unexpected_count": None, "unexpected_percent": None, "observed_value": None,
            "unexpected_sample": None, "expectation_kwargs": None, "message": str(exc)}


def _record_crash(con, day: date, run_id: str, validated_at: datetime, exc: Exception, config: QualityConfig) -> None:
    message = f"the quality gate could not run: {type(exc).__name__}: {exc}"
    row = {"run_id": run_id, "check_id": "gate:completed", "validated_at": validated_at, "suite": "gate",
           "dataset": "quality.validate_day", "expectation_type": "gate_completed", "column_name": None,
           "description": "the quality gate ran to completion", "severity": "error", "success": False,
           "element_count": None, "unexpected_count": None, "unexpected_percent": None, "observed_value": None,
           "unexpected_sample": None, "expectation_kwargs": None, "message": message}
    summary = f"Data-quality gate FAILED for {day} (run {run_id}): {message}"
    with suppress(Exception):  # a statement that failed may have left a transaction open
        con.execute("rollback")
    _record(con, day, run_id, [row], {
        "run_id": run_id, "usage_date": day, "validated_at": validated_at, "status": "failed",
        "expectation_count": 1, "failed_count": 1, "warning_count": 0, "summary": summary, "data_docs_path": None,
        "results_path": None, "duration_seconds": None, "config_sha256": config.sha256})


def validate_day(day: date, run_id: str, *, config_dir: Path | None = None) -> dict:
    """Validate the warehouse for `day`, record results and Data Docs; raise QualityGateFailed if any error failed."""
    from openrouter_spend.warehouse import connect, migrate

    started = time.monotonic()
    validated_at = datetime.now(UTC)
    docs_dir = settings.paths().quality / "docs"
    config_error: ConfigError | None = None
    try:
        config = load_quality_config(config_dir)
    except ConfigError as exc:
        config_error, config = exc, QualityConfig()
    with connect() as con:
        migrate(con)
        if config_error is not None:
            rows = [_config_failure_row(config_error, run_id, validated_at)]
            docs_path = None
        else:
            try:
                datasets = build_datasets(con, day, config, run_id)
                rows = run_datasets(datasets, run_id, validated_at, docs_dir, config)
            except Exception as exc:
                # The day stays marked failed (alerts stay blocked) until a retry validates it.
                _record_crash(con, day, run_id, validated_at, exc, config)
                raise
            docs_path = docs_dir / "index.html"
        failed = [r for r in rows if not r["success"] and r["severity"] == "error"]
        warnings = [r for r in rows if not r["success"] and r["severity"] == "warning"]
        summary = summarize(day, run_id, rows, docs_path)
        run_row = {
            "run_id": run_id, "usage_date": day, "validated_at": validated_at,
            "status": "failed" if failed else "passed", "expectation_count": len(rows),
            "failed_count": len(failed), "warning_count": len(warnings), "summary": summary,
            "data_docs_path": str(docs_path) if docs_path else None,
            "results_path": str(_results_path(day, run_id)),
            "duration_seconds": round(time.monotonic() - started, 3), "config_sha256": config.sha256,
        }
        _write_results_file(Path(run_row["results_path"]), run_row, rows)
        _record(con, day, run_id, rows, run_row)
    prune_outputs(settings.paths().quality, config.data_docs_keep_runs)
    outcome = {"day": day.isoformat(), "run_id": run_id, "status": run_row["status"],
               "expectations": len(rows), "failed": len(failed), "warnings": len(warnings),
               "data_docs": run_row["data_docs_path"], "results_file": run_row["results_path"],
               "seconds": run_row["duration_seconds"]}
    if failed:
        log.error("%s", summary)
        error = QualityGateFailed(summary, failed)
        if config_error is not None:
            raise error from config_error
        raise error
    (log.warning if warnings else log.info)("%s", summary)
    return outcome
