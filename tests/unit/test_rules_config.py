"""rules.yaml: the default file is valid and complete; every mistake is an error naming file, path and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openrouter_emulator.demo import write_demo_config
from openrouter_spend.alerts.rules import RULE_IDS, load_rules
from openrouter_spend.config import settings
from openrouter_spend.config.owners import load_config
from openrouter_spend.config.yamlnode import ConfigError


@pytest.fixture(autouse=True)
def demo_config(tmp_path_factory, monkeypatch) -> Path:
    """The emulated organisation's configuration, whose routes name its budget owners."""
    folder = write_demo_config("default", tmp_path_factory.mktemp("demo-config"), "2026-11-26")
    monkeypatch.setenv("OPENROUTER_SPEND_CONFIG_DIR", str(folder))
    return folder


def _write(folder: Path, document: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def _default() -> dict:
    return yaml.safe_load((settings.config_dir() / "rules.yaml").read_text())


def test_default_rules_cover_every_contract_rule_id_and_match_the_owners_registry():
    owners = {project.budget_owner for project in load_config().projects}
    config = load_rules(budget_owners=owners)
    assert tuple(config.rules) == RULE_IDS
    assert all(rule.enabled for rule in config.rules.values())
    assert config.rules["credit_burn_spike"].baseline_method == "median"
    assert config.rules["credit_burn_spike"].baseline_days == 7
    assert config.rules["premium_share_rise"].baseline_days == 28
    assert config.rules["budget_threshold"].parameters["weekly_levels"] == [0.8, 1.0]
    assert config.rules["budget_threshold"].escalate_after_days is None
    assert config.rules["unused_key"].escalate_after_days == 30
    assert config.rules["credit_burn_spike"].escalate_after_days == 3  # from defaults
    assert config.route_for("runaway_usage", "Dan Whitfield").name == "customer-experience"
    assert config.route_for("runaway_usage", "Frank Lindqvist").name == "default"
    assert config.route_for("runaway_usage", None).name == "default"
    assert config.route_for("data_quality", "Dan Whitfield").name == "data-engineering"


@pytest.mark.parametrize(("change", "path", "field", "problem"), [
    (lambda d: d["rules"].pop("unused_key"), "rules", "unused_key", "missing: unused_key"),
    (lambda d: d["rules"].__setitem__("credit_spike", {"severity": "warning"}), "rules", "credit_spike",
     "unknown field"),
    (lambda d: d["rules"]["credit_burn_spike"].__setitem__("min_ratio", "lots"), "rules.credit_burn_spike",
     "min_ratio", "expected a number, got str 'lots'"),
    (lambda d: d["rules"]["credit_burn_spike"].pop("min_impact_usd"), "rules.credit_burn_spike",
     "min_impact_usd", "is required"),
    (lambda d: d["rules"]["premium_share_rise"].__setitem__("min_share_change", 10), "rules.premium_share_rise",
     "min_share_change", "is a share of 1"),
    (lambda d: d["rules"]["runaway_usage"].__setitem__("severity", "urgent"), "rules.runaway_usage", "severity",
     "expected one of info, warning, critical"),
    (lambda d: d["rules"]["credit_burn_spike"]["baseline"].__setitem__("method", "p90"),
     "rules.credit_burn_spike.baseline", "method", "expected one of median, mean, got str 'p90'"),
    (lambda d: d["rules"]["unused_key"].__setitem__("baseline", {"method": "median", "days": 7}),
     "rules.unused_key", "baseline", "unknown field (allowed: description, enabled, severity, "),
    (lambda d: d["rules"]["budget_threshold"].__setitem__("weekly_levels", [0.8, "full"]),
     "rules.budget_threshold", "weekly_levels[1]", "expected a number, got str 'full'"),
    (lambda d: d["rules"]["budget_threshold"].__setitem__("critical_periods", ["yearly"]),
     "rules.budget_threshold", "critical_periods[0]", "daily, weekly, monthly"),
    (lambda d: d["routes"].pop("data-engineering"), "", "routes", "needs a 'data-engineering' route"),
    (lambda d: d["routes"]["customer-experience"].__setitem__("budget_owners", ["Dan Whitfeld"]),
     "routes.customer-experience", "budget_owners[0]", "'Dan Whitfeld' is no budget owner in owners.yaml"),
    (lambda d: d["routes"]["default"]["slack"].__setitem__("env_var", "https://hooks.slack.com/services/T/B/X"),
     "routes.default.slack", "env_var", "never put the webhook URL here"),
    (lambda d: d["routes"]["default"]["email"].__setitem__("to", ["finops"]), "routes.default.email", "to[0]",
     "expected an email address or 'budget_owner'"),
    (lambda d: d["routes"]["default"].__setitem__("budget_owners", ["Dan Whitfield"]), "routes",
     "customer-experience", "'Dan Whitfield' is also routed to 'default'"),
])
def test_mistakes_name_the_file_path_and_field(tmp_path, change, path, field, problem):
    document = _default()
    change(document)
    folder = _write(tmp_path / "config", document)
    owners = {project.budget_owner for project in load_config().projects}
    with pytest.raises(ConfigError) as caught:
        load_rules(folder, budget_owners=owners)
    error = caught.value
    assert error.file == str(folder / "rules.yaml")
    assert (error.path, error.field) == (path, field), str(error)
    assert problem in error.problem, str(error)


def test_a_missing_or_unparsable_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"rules\.yaml: file not found"):
        load_rules(tmp_path)
    (tmp_path / "rules.yaml").write_text("rules: [unclosed\n")
    with pytest.raises(ConfigError, match=r"rules\.yaml line 2: \(yaml\): not valid YAML"):
        load_rules(tmp_path)


def test_a_rule_can_be_disabled_but_not_left_out(tmp_path):
    document = _default()
    document["rules"]["unused_key"]["enabled"] = False
    config = load_rules(_write(tmp_path, document))
    assert "unused_key" not in [rule.rule_id for rule in config.enabled_rules]
    assert len(config.enabled_rules) == len(RULE_IDS) - 1


def test_a_sql_variable_without_a_configured_value_is_an_error(tmp_path, monkeypatch):
    sql_root = tmp_path / "sql"
    (sql_root / "rules").mkdir(parents=True)
    for path in (settings.sql_dir() / "rules").glob("*.sql"):
        (sql_root / "rules" / path.name).write_text(path.read_text())
    broken = sql_root / "rules" / "credit_burn_spike.sql"
    broken.write_text(broken.read_text().replace("getvariable('min_ratio')", "getvariable('min_ratoi')"))
    monkeypatch.setattr(settings, "sql_dir", lambda: sql_root)
    with pytest.raises(ConfigError) as caught:
        load_rules()
    assert caught.value.field == "min_ratoi"
    assert "reads getvariable('min_ratoi') but rules.yaml does not configure it" in str(caught.value)
