"""Which checks the gate runs: grains from the SQL headers and schema.yml, and generic column rules.

A Check is one expectation (its Great Expectations class and arguments, in words, with its severity); a
Dataset is what it is evaluated on. The column rules: the declared grain unique and not null, money
non-negative except the documented negatives (quality.yaml signed_money), volumes non-negative, shares in
[0, 1], accepted values, and the day's row count within a ratio of its recent history.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.quality.config import QualityConfig

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
                     "marts.rpt_key_usage_daily", "marts.fct_provider_mix_daily", "marts.fct_model_mix_daily",
                     "marts.rpt_unit_economics_daily",
                     "marts.rpt_spend_change", "marts.rpt_budget_status_daily", "marts.rpt_blind_spots_daily")
GRAIN_OVERRIDES = {"marts.dim_model_price_history": ("model", "valid_from")}
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
