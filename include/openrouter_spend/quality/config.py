"""quality.yaml: the gate's thresholds, tolerances and documented negative money columns, validated on load."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrouter_spend.config import settings
from openrouter_spend.config.yamlnode import ConfigError, Node, read_yaml

log = logging.getLogger(__name__)

QUALITY_FILE = "quality.yaml"
SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Tolerances:
    """How far two sides of a reconciliation may differ (quality.yaml `tolerances`)."""

    float_noise_usd: float = 1e-6
    credits_usage_abs_usd: float = 0.05
    credits_usage_relative: float = 0.01
    key_usage_abs_usd: float = 0.01
    key_usage_relative: float = 0.01
    per_request_abs_usd: float = 0.01
    per_request_relative: float = 0.0
    share_epsilon: float = 1e-9
    snapshot_max_lag_hours: float | None = None


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


def _integer(node: Node, key: str, default: int, minimum: int) -> int:
    value = node.value.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise node.error(key, f"expected a whole number >= {minimum}, got {_describe(value)}")
    return value


def _number(node: Node, key: str, default: float | None, *, maximum: float | None = None) -> float | None:
    value = node.number(key)
    if value is None:
        return default
    if maximum is not None and value > maximum:
        raise node.error(key, f"must be <= {maximum:g}, got {value!r}")
    return value


def _severity(node: Node, key: str, default: str) -> str:
    value = node.value.get(key, default)
    if value not in SEVERITIES:
        raise node.error(key, f"expected one of {', '.join(SEVERITIES)}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {repr(value)[:60]}"


def _strings(node: Node, key: str, default: tuple[str, ...], *, pattern: re.Pattern | None = None) -> tuple[str, ...]:
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
    raw = read_yaml(path)
    root = Node(str(path), "", raw)
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


