"""quality.yaml: the gate's thresholds, tolerances and documented negative money columns; QualityFile is its model."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from openrouter_spend.config import settings
from openrouter_spend.config.yamlnode import ConfigModel, FieldError, Text, load_file

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
    """A company's own money columns documented to go negative (globs on schema.table.column) and why.

    The product's own signed columns are flagged in sql/*/schema.yml (`signed_money`) and always apply.
    """

    columns: tuple[str, ...]
    reason: str


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
    signed_money: tuple[SignedMoney, ...] = ()
    warn_only: tuple[str, ...] = ()
    data_docs_keep_runs: int = 30
    path: str | None = None
    sha256: str | None = None

    def is_signed_money(self, qualified_column: str) -> bool:
        """True when quality.yaml documents a money column to go negative (the product's own: schema.yml)."""
        return any(fnmatch.fnmatchcase(qualified_column, pattern)
                   for entry in self.signed_money for pattern in entry.columns)

    def severity_of(self, check_id: str, severity: str) -> str:
        """The check's severity after the warn_only list."""
        if any(fnmatch.fnmatchcase(check_id, pattern) for pattern in self.warn_only):
            return "warning"
        return severity


# ----- quality.yaml, as its model ----------------------------------------------------------------------------

Whole = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Severity = Literal[SEVERITIES]
ColumnGlob = Annotated[Text, StringConstraints(pattern=r"^[^.\s]+\.[^.\s]+\.[^.\s]+$"),
                       Field(description="schema.table.column glob")]
Endpoint = Annotated[Text, StringConstraints(pattern=r"^/[A-Za-z0-9_/{}-]*$")]
_BASE = Tolerances()


class TolerancesFile(ConfigModel):
    """How far two sides of a reconciliation may differ."""

    float_noise_usd: NonNegative = _BASE.float_noise_usd
    credits_usage_abs_usd: NonNegative = _BASE.credits_usage_abs_usd
    credits_usage_relative: NonNegative = _BASE.credits_usage_relative
    key_usage_abs_usd: NonNegative = _BASE.key_usage_abs_usd
    key_usage_relative: NonNegative = _BASE.key_usage_relative
    per_request_abs_usd: NonNegative = _BASE.per_request_abs_usd
    per_request_relative: NonNegative = _BASE.per_request_relative
    share_epsilon: NonNegative = _BASE.share_epsilon
    # null (the default) means "compare snapshots whenever they were fetched"
    snapshot_max_lag_hours: Annotated[float, Field(gt=0)] | None = _BASE.snapshot_max_lag_hours


class RowCountsFile(ConfigModel):
    """A day's row count against the median of the days before it."""

    lookback_days: Whole = 7
    min_history_days: Whole = 3
    min_ratio: Share = 0.5
    max_ratio: Annotated[float, Field(ge=1)] = 2.0
    severity: Severity = "error"

    @model_validator(mode="after")
    def _history_fits(self) -> RowCountsFile:
        if self.min_history_days > self.lookback_days:
            raise FieldError(("min_history_days",),
                             f"{self.min_history_days} is more than lookback_days {self.lookback_days}")
        return self


class UnattributedSpendFile(ConfigModel):
    """The share of spend no project owns before the gate complains."""

    max_share: Share = 0.05
    severity: Severity = "warning"


class FreshnessFile(ConfigModel):
    """The endpoints every day must have landed, and the activity window checked for missing days."""

    expected_endpoints: list[Endpoint] = list(QualityConfig.expected_endpoints)
    activity_window_days: Whole = 30
    missing_day_severity: Severity = "error"


class SignedMoneyFile(ConfigModel):
    """Money columns documented to go negative, and why."""

    columns: Annotated[list[ColumnGlob], Field(min_length=1)]
    reason: Text


class DataDocsFile(ConfigModel):
    """How many runs of Data Docs to keep."""

    keep_runs: Whole = 30


class QualityFile(ConfigModel):
    """quality.yaml: the gate's thresholds, tolerances and documented negative money columns."""

    tolerances: TolerancesFile = TolerancesFile()
    row_counts: RowCountsFile = RowCountsFile()
    unattributed_spend: UnattributedSpendFile = UnattributedSpendFile()
    freshness: FreshnessFile = FreshnessFile()
    signed_money: list[SignedMoneyFile] = Field(
        [], description="the company's own columns that may go negative, besides the product's (schema.yml)")
    warn_only: list[Text] = Field([], description="check id globs whose failures only warn")
    data_docs: DataDocsFile = DataDocsFile()


def load_quality_config(config_dir: Path | None = None) -> QualityConfig:
    """Read and validate <config dir>/quality.yaml; a missing file means the defaults. Errors name file and field."""
    folder = Path(config_dir) if config_dir else settings.config_dir()
    path = folder / QUALITY_FILE
    if not path.is_file():
        log.info("%s not found: using the built-in quality thresholds", path)
        return QualityConfig()
    return _parsed(path, path.read_bytes())


@functools.lru_cache(maxsize=8)
def _parsed(path: Path, content: bytes) -> QualityConfig:
    """The file's configuration, parsed once per content (the gate runs once a day in a long-lived process)."""
    document, _ = load_file(QualityFile, path)
    counts, freshness = document.row_counts, document.freshness
    return QualityConfig(
        tolerances=Tolerances(**document.tolerances.model_dump()),
        row_count_lookback_days=counts.lookback_days,
        row_count_min_history_days=counts.min_history_days,
        row_count_min_ratio=counts.min_ratio,
        row_count_max_ratio=counts.max_ratio,
        row_count_severity=counts.severity,
        unattributed_max_share=document.unattributed_spend.max_share,
        unattributed_severity=document.unattributed_spend.severity,
        expected_endpoints=tuple(freshness.expected_endpoints),
        activity_window_days=freshness.activity_window_days,
        missing_day_severity=freshness.missing_day_severity,
        signed_money=tuple(SignedMoney(tuple(entry.columns), entry.reason) for entry in document.signed_money),
        warn_only=tuple(document.warn_only),
        data_docs_keep_runs=document.data_docs.keep_runs,
        path=str(path),
        sha256=hashlib.sha256(content).hexdigest(),
    )
