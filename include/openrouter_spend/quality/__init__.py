"""The data-quality gate: quality.yaml (.config), which checks run (.checks, .datasets), reconciliations of the
sources (.reconcile, SQL in sql/audits/), checks computed in DuckDB (.metrics) and the Great Expectations run,
results ledger and Data Docs (.gate)."""

from openrouter_spend.quality.config import QualityConfig, load_quality_config
from openrouter_spend.quality.gate import QualityGateFailed, validate_day

__all__ = ["QualityConfig", "QualityGateFailed", "load_quality_config", "validate_day"]
