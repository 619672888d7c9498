"""quality.yaml: the shipped file is the documented defaults, and every malformed value is named by file and field."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from openrouter_spend.config.yamlnode import ConfigError
from openrouter_spend.quality import QualityConfig, load_quality_config
from openrouter_spend.quality.checks import column_checks
from openrouter_spend.quality.config import Tolerances

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "config"


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quality.yaml").write_text(textwrap.dedent(text))
    return folder


def comparable(config: QualityConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ("path", "sha256")}


def test_shipped_file_states_exactly_the_built_in_defaults():
    shipped = load_quality_config(SHIPPED)
    assert comparable(shipped) == comparable(QualityConfig())
    assert shipped.path == str(SHIPPED / "quality.yaml") and len(shipped.sha256) == 64


def test_missing_file_means_the_defaults(tmp_path):
    config = load_quality_config(tmp_path)
    assert config.tolerances == Tolerances()
    assert config.path is None and config.sha256 is None
    assert config.signed_money == ()  # the product's own signed columns are flagged in schema.yml


def test_values_override_defaults_and_signed_money_globs_apply(tmp_path):
    config = load_quality_config(write(tmp_path, """
        tolerances: {credits_usage_abs_usd: 0.5, snapshot_max_lag_hours: 6}
        row_counts: {lookback_days: 14, min_ratio: 0.25}
        unattributed_spend: {max_share: 0.2, severity: error}
        freshness: {expected_endpoints: [/activity, /credits], activity_window_days: 10}
        signed_money:
          - columns: ["marts.*.odd_usd"]
            reason: test
        warn_only: ["marts.fct_alerts:*"]
        data_docs: {keep_runs: 3}
    """))
    assert config.tolerances.credits_usage_abs_usd == 0.5
    assert config.tolerances.snapshot_max_lag_hours == 6
    assert config.tolerances.key_usage_abs_usd == Tolerances().key_usage_abs_usd
    assert (config.row_count_lookback_days, config.row_count_min_ratio, config.row_count_max_ratio) == (14, 0.25, 2.0)
    assert (config.unattributed_max_share, config.unattributed_severity) == (0.2, "error")
    assert config.expected_endpoints == ("/activity", "/credits")
    assert config.activity_window_days == 10 and config.data_docs_keep_runs == 3
    assert config.is_signed_money("marts.fct_x.odd_usd")
    # The company's list adds to the product's signed columns (schema.yml), it does not replace them.
    checks = {check.check_id for check in column_checks(
        "marts.rpt_spend_change", ["delta_usd", "spend_usd"], (), config)}
    assert checks == {"marts.rpt_spend_change:spend_usd:non_negative"}
    assert {check.check_id for check in column_checks("marts.fct_x", ["odd_usd", "even_usd"], (), config)} == {
        "marts.fct_x:even_usd:non_negative"}
    assert config.severity_of("marts.fct_alerts:status:accepted_values", "error") == "warning"
    assert config.severity_of("marts.fct_daily_spend:grain_unique", "error") == "error"


@pytest.mark.parametrize(("text", "path", "field", "problem"), [
    ("row_counts: {min_ratio: lots}\n", "row_counts", "min_ratio", "expected a number"),
    ("tolerances: {credits_usage_abs_usd: -1}\n", "tolerances", "credits_usage_abs_usd", "must be >= 0"),
    ("tolerances: {credit_tolerance: 1}\n", "tolerances", "credit_tolerance", "unknown field"),
    ("row_counts: {lookback_days: 2, min_history_days: 5}\n", "row_counts", "min_history_days", "more than"),
    ("row_counts: {max_ratio: 0.5}\n", "row_counts", "max_ratio", "must be >= 1"),
    ("row_counts: {lookback_days: 1.5}\n", "row_counts", "lookback_days", "whole number"),
    ("unattributed_spend: {severity: fatal}\n", "unattributed_spend", "severity", "error, warning"),
    ("unattributed_spend: {max_share: 2}\n", "unattributed_spend", "max_share", "must be <= 1"),
    ("freshness: {expected_endpoints: [credits]}\n", "freshness", "expected_endpoints[0]",
     "does not look like"),
    ("signed_money:\n  - columns: [marts.x.y_usd]\n", "signed_money[0]", "reason", "is required"),
    ("signed_money:\n  - columns: [y_usd]\n    reason: r\n", "signed_money[0]", "columns[0]",
     "does not look like"),
    ("data_docs: {keep_runs: 0}\n", "data_docs", "keep_runs", "must be >= 1, got int 0"),
    ("rows_counts: {}\n", "", "rows_counts", "unknown field"),
    ("- just\n- a list\n", "", "(document)", "expected a mapping"),
    ("tolerances: {float_noise_usd: [1\n", "", "(yaml)", "line 2: (yaml): not valid YAML"),
])
def test_malformed_values_name_file_path_and_field(tmp_path, text, path, field, problem):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "quality.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_quality_config(folder)
    message = str(caught.value)
    assert message.startswith(str(folder / "quality.yaml")), message
    assert caught.value.field == field, message
    assert path in caught.value.path, message
    assert problem in message, message
