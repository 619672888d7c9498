"""The configuration files' models: errors give file, line and dotted field; the published schemas are the models'."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jsonschema
import pytest
from marts_fixtures import ANNOTATIONS, OWNERS, write_config
from ruamel.yaml import YAML

from openrouter_emulator.demo import DEMO_CONFIG_DIR
from openrouter_spend.alerts.rules import load_rules
from openrouter_spend.config import settings
from openrouter_spend.config.owners import load_config
from openrouter_spend.config.schemas import SCHEMA_DIR, file_models, schema_name, schema_texts
from openrouter_spend.config.settings import ExtractionSettings
from openrouter_spend.config.yamlnode import ConfigError
from openrouter_spend.ingest.enrich import EnrichmentSettings
from openrouter_spend.quality import load_quality_config

SHIPPED = settings.PROJECT_ROOT / "include" / "config"

RULES = """\
defaults: {escalate_after_days: 3}
rules:
<rules>routes:
  default:
    min_severity: warning
  data-engineering:
    budget_owners: [Ann Owner]
    email:
      to: [data@example.com]
"""


def _rules_text(**override: str) -> str:
    """rules.yaml with every rule taken from the shipped file (one flow mapping per line) unless overridden."""
    import yaml

    shipped = yaml.safe_load((SHIPPED / "rules.yaml").read_text())["rules"]
    lines = ""
    for rule_id, entry in shipped.items():
        lines += f"  {rule_id}: {override.get(rule_id) or yaml.safe_dump(entry, default_flow_style=True, width=10_000).strip()}\n"
    return RULES.replace("<rules>", lines)


def _error(call, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        call(*args, **kwargs)
    return raised.value


@pytest.mark.parametrize(("files", "message"), [
    # unknown key, wrong type, missing required field, a rule across entries
    ({"owners": OWNERS.replace("    contact: bob@example.com\n", "    contact: bob@example.com\n    teem: B\n")},
     "owners.yaml line 15: projects.beta.teem: unknown field (allowed: team, budget_owner, contact, description, "
     "budgets_usd, launch_windows, match)"),
    ({"owners": OWNERS.replace("{daily: 5}", "{daily: five}")},
     "owners.yaml line 15: projects.beta.budgets_usd.daily: expected a number, got str 'five'"),
    ({"owners": OWNERS.replace("    budget_owner: Bob Owner\n", "")},
     "owners.yaml line 11: projects.beta.budget_owner: is required"),
    ({"owners": OWNERS.replace('key_names: ["beta-*"]', 'key_names: ["beta-*", {pattern: "ws", valid_to: soon}]')},
     "owners.yaml line 17: projects.beta.match.key_names[1].valid_to: expected a date YYYY-MM-DD or @anchor±N, "
     "got str 'soon'"),
    ({"premium": "completion_price_per_mtok_usd: 15\nblended_weights:\n  prompt: 3\n  completion: true\n"},
     "premium.yaml line 4: blended_weights.completion: expected a number, got bool True"),
    ({"premium": "completion_price_per_mtok_usd: 15\npremium_models:\n  - vendor/a\n  - ''\n"},
     "premium.yaml line 4: premium_models[1]: expected a non-empty string, got str ''"),
    ({"annotations": ANNOTATIONS.replace("    description: Alpha 2.0\n", "")},
     "annotations.yaml line 3: annotations[0].description: is required"),
    # cross-file: the project must be in owners.yaml
    ({"annotations": ANNOTATIONS.replace("project: alpha", "project: gamma")},
     "annotations.yaml line 7: annotations[0].project: unknown project 'gamma' (not in owners.yaml; use '*' for "
     "the whole account)"),
])
def test_owners_premium_and_annotation_errors_give_the_line_and_the_dotted_field(tmp_path, files, message):
    folder = write_config(tmp_path, **files)
    assert str(_error(load_config, folder)) == f"{folder}/{message}"


@pytest.mark.parametrize(("text", "message"), [
    (_rules_text(unused_key="{severity: info, escalate_after_days: 30, paged: true}"),
     "rules.yaml line 10: rules.unused_key.paged: unknown field (allowed: description, enabled, severity, "
     "escalate_after_days, resolve_after_days)"),
    (_rules_text().replace("escalate_after_days: 3}", "escalate_after_days: 3.5}"),
     "rules.yaml line 1: defaults.escalate_after_days: expected a whole number, got float 3.5"),
    (_rules_text(unused_key="{escalate_after_days: 30}"),
     "rules.yaml line 10: rules.unused_key.severity: is required"),
    (_rules_text().replace("    min_severity: warning\n", "    min_severity: loud\n"),
     "rules.yaml line 15: routes.default.min_severity: expected one of info, warning, critical, got str 'loud'"),
    # cross-file: a route's budget owners must be owners.yaml's
    (_rules_text().replace("[Ann Owner]", "[Ann Owner, Zed]"),
     "rules.yaml line 17: routes.data-engineering.budget_owners[1]: 'Zed' is no budget owner in owners.yaml "
     "(known: Ann Owner, Bob Owner)"),
])
def test_rules_errors_give_the_line_and_the_dotted_field(tmp_path, text, message):
    folder = write_config(tmp_path)
    (folder / "rules.yaml").write_text(text)
    owners = {project.budget_owner for project in load_config(folder).projects}
    assert str(_error(load_rules, folder, budget_owners=owners)) == f"{folder}/{message}"


def test_a_duplicate_key_is_a_yaml_error_with_its_line(tmp_path):
    folder = write_config(tmp_path, owners=OWNERS + "  alpha:\n    team: Team A2\n")
    assert str(_error(load_config, folder)).startswith(f"{folder}/owners.yaml line 18: (yaml): not valid YAML: "
                                                       'found duplicate key "alpha"')


def test_rules_routes_are_checked_against_owners_only_when_given(tmp_path):
    folder = write_config(tmp_path)
    (folder / "rules.yaml").write_text(_rules_text().replace("[Ann Owner]", "[Zed]"))
    assert load_rules(folder).routes["data-engineering"].budget_owners == ("Zed",)


@pytest.mark.parametrize(("text", "message"), [
    ("row_counts:\n  lookback_days: 7\n  severity: error\n  max_ratoi: 3\n",
     "quality.yaml line 4: row_counts.max_ratoi: unknown field (allowed: lookback_days, min_history_days, "
     "min_ratio, max_ratio, severity)"),
    ("freshness:\n  activity_window_days: '30'\n", "quality.yaml line 2: freshness.activity_window_days: "
                                                    "expected a whole number, got str '30'"),
    ("\nsigned_money:\n  - reason: refunds\n", "quality.yaml line 3: signed_money[0].columns: is required"),
    ("warn_only:\n  - 'marts.*'\n  - 3\n", "quality.yaml line 3: warn_only[1]: expected a string, got int 3"),
])
def test_quality_errors_give_the_line_and_the_dotted_field(tmp_path, text, message):
    (tmp_path / "quality.yaml").write_text(text)
    assert str(_error(load_quality_config, tmp_path)) == f"{tmp_path}/{message}"


def test_a_null_is_the_default_and_a_webhook_url_never_appears_in_an_error(tmp_path):
    folder = write_config(tmp_path, premium="completion_price_per_mtok_usd: 15\nblended_weights: {prompt: null}\n"
                                             "premium_models: null\n")
    premium = load_config(folder).premium
    assert (premium.blended_prompt_weight, premium.premium_models) == (3.0, ())
    url = "https://hooks.slack.com/services/T000/B000/secret"
    (folder / "rules.yaml").write_text(_rules_text().replace("    min_severity: warning\n", f"    slack: {url}\n"))
    error = _error(load_rules, folder)
    assert "routes.default.slack: expected a mapping, got str (a URL, not shown)" in str(error)
    assert "secret" not in str(error)


def test_escalation_null_means_never_and_absent_means_the_defaults(tmp_path):
    folder = write_config(tmp_path)
    text = _rules_text(unused_key="{severity: info, escalate_after_days: null}",
                       data_quality="{severity: critical}")
    (folder / "rules.yaml").write_text(text)
    rules = load_rules(folder).rules
    assert (rules["unused_key"].escalate_after_days, rules["data_quality"].escalate_after_days) == (None, 3)
    assert rules["data_quality"].resolve_after_days == 3


def test_relative_dates_resolve_against_the_anchor_in_the_same_file(tmp_path):
    owners = "anchor: 2026-03-10\n" + OWNERS.replace(
        "workspaces: [ws-alpha]", "workspaces: [ws-alpha]\n    launch_windows:\n"
        "      - {start: '@anchor-2', end: '@anchor+1', velocity_multiplier: 2}")
    window = load_config(write_config(tmp_path, owners=owners)).projects[0].launch_windows[0]
    assert (window.start_date, window.end_date) == (date(2026, 3, 8), date(2026, 3, 11))


def test_the_published_schemas_are_what_the_models_generate():
    """`make schemas` regenerates them; a model change without it fails here."""
    generated = schema_texts()
    assert set(generated) == {schema_name(name) for name in file_models()}
    for name, text in generated.items():
        assert (SCHEMA_DIR / name).read_text() == text, f"schemas/{name} is stale: run `make schemas`"


def _as_editor_reads(path: Path):
    """The file as a YAML 1.2 editor sees it: dates are strings."""
    def plain(value):
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value.isoformat() if isinstance(value, date) else value
    return plain(YAML(typ="safe", pure=True).load(path.read_text()))


@pytest.mark.parametrize("file_name", list(file_models()))
def test_the_shipped_files_name_their_schema_and_pass_it(file_name):
    path = SHIPPED / file_name
    header = f"# yaml-language-server: $schema=../../schemas/{schema_name(file_name)}"
    assert path.read_text().splitlines()[0] == header
    schema = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / schema_name(file_name)).read_text()))
    assert list(schema.iter_errors(_as_editor_reads(path))) == []


def test_the_demo_files_name_their_schema():
    for path in DEMO_CONFIG_DIR.glob("*.yaml"):
        assert path.read_text().splitlines()[0] == \
            f"# yaml-language-server: $schema=../../../schemas/{schema_name(path.name)}"
        assert (path.parent / "../../../schemas" / schema_name(path.name)).resolve().is_file()


def test_environment_settings_share_one_parser_and_one_error_style(monkeypatch):
    monkeypatch.setenv("OPENROUTER_SPEND_HTTP_MAX_RETRIES", " 7 ")
    monkeypatch.setenv("OPENROUTER_SPEND_BACKOFF_MAX", "")
    monkeypatch.setenv("OPENROUTER_SPEND_ANALYTICS_DISCOVERY", "on")
    extraction, enrichment = ExtractionSettings.from_env(), EnrichmentSettings.from_env()
    assert (extraction.max_retries, extraction.backoff_max_seconds, enrichment.discovery_enabled) == (7, 30.0, True)
    assert extraction == ExtractionSettings(max_retries=7)
    monkeypatch.setenv("OPENROUTER_SPEND_KEY_CHUNK_SIZE", "2.5")
    with pytest.raises(ValueError, match=r"^environment variable OPENROUTER_SPEND_KEY_CHUNK_SIZE: expected a whole "
                                         r"number, got str '2\.5'$"):
        ExtractionSettings.from_env()
    monkeypatch.setenv("OPENROUTER_SPEND_GENERATION_CONCURRENCY", "0")
    with pytest.raises(ValueError, match=r"^environment variable OPENROUTER_SPEND_GENERATION_CONCURRENCY: must be "
                                         r">= 1, got str '0'$"):
        EnrichmentSettings.from_env()
