"""Configuration: the default files load, every error names file, path and field, versions keep history."""

from __future__ import annotations

import re
from datetime import date

import pytest
from marts_fixtures import ANNOTATIONS, OWNERS, PREMIUM, write_config

from openrouter_emulator.demo import write_demo_config
from openrouter_spend.alerts.rules import load_rules
from openrouter_spend.config import settings
from openrouter_spend.config.owners import KeyMatcher, load_config
from openrouter_spend.config.versions import BEGINNING_OF_HISTORY, store_config
from openrouter_spend.config.yamlnode import ConfigError
from openrouter_spend.preflight import check_configuration
from openrouter_spend.warehouse import connect, migrate


def test_the_demo_configuration_matches_the_emulator_organisation(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENROUTER_EMULATOR_ANCHOR_DATE", "2026-11-26")
    monkeypatch.delenv("OPENROUTER_SPEND_CONFIG_DIR", raising=False)
    demo = write_demo_config("default", tmp_path / "demo")
    assert "@anchor" not in (demo / "owners.yaml").read_text()
    config = load_config(demo)
    assert config.config_dir == tmp_path / "demo"
    projects = {p.name: p for p in config.projects}
    assert {"support-bot", "support-bot-tenants", "search", "data-platform", "growth-experiments",
            "ml-evaluation", "internal-tools"} == set(projects)
    assert all(p.budget_owner and p.contact for p in projects.values())
    window = projects["support-bot"].launch_windows[0]
    assert (window.start_date, window.end_date, window.velocity_multiplier) == \
        (date(2026, 11, 20), date(2026, 12, 4), 2.0)
    release = next(a for a in config.annotations if a.annotation_id == "support-bot-v2-release")
    assert (release.start_date, release.project, release.signals) == (date(2026, 11, 20), "support-bot", ("spend",))
    assert config.premium.completion_price_per_mtok_usd == 15
    personal = ("tmp-alice-laptop", "dev-bob-notebook", "carol-scratch")
    from fnmatch import fnmatchcase

    assert not [m for m in config.matchers for key in personal
                if m.kind == "key_name" and fnmatchcase(key, m.pattern)]
    rules = load_rules(demo, budget_owners={p.budget_owner for p in config.projects})
    assert rules.routes["customer-experience"].budget_owners == ("Dan Whitfield",)


def test_the_shipped_example_is_valid_with_plain_dates_and_routes_that_follow_its_owners(monkeypatch):
    monkeypatch.delenv("OPENROUTER_SPEND_CONFIG_DIR", raising=False)
    check_configuration()
    config = load_config()
    assert config.config_dir == settings.PROJECT_ROOT / "include" / "config"
    for name in ("owners.yaml", "annotations.yaml", "rules.yaml"):
        assert "@anchor" not in (config.config_dir / name).read_text()
    # Routes name no budget owner, so editing owners.yaml never breaks rules.yaml.
    assert all(not route.budget_owners for route in load_rules().routes.values())


def test_the_config_dir_follows_the_environment(tmp_path, monkeypatch):
    folder = write_config(tmp_path / "elsewhere")
    monkeypatch.setenv("OPENROUTER_SPEND_CONFIG_DIR", str(folder))
    assert load_config().config_dir == folder


def _owners_with(old: str, new: str) -> str:
    assert old in OWNERS
    return OWNERS.replace(old, new)


def _annotations_with(old: str, new: str) -> str:
    assert old in ANNOTATIONS
    return ANNOTATIONS.replace(old, new)


@pytest.mark.parametrize(("files", "file_name", "path", "field", "problem"), [
    ({"owners": _owners_with("daily: 10", "daily: lots")},
     "owners.yaml", "projects.alpha.budgets_usd", "daily", "expected a number"),
    ({"owners": _owners_with("daily: 10", "daily: -1")},
     "owners.yaml", "projects.alpha.budgets_usd", "daily", "must be >= 0"),
    ({"owners": _owners_with("budget_owner: Ann Owner", "budget_ownr: Ann Owner")},
     "owners.yaml", "projects.alpha", "budget_ownr", "unknown field"),
    ({"owners": _owners_with("    contact: ann@example.com\n", "")},
     "owners.yaml", "projects.alpha", "contact", "is required"),
    ({"owners": _owners_with('key_names: ["beta-*"]', 'key_hashes: ["abc"]')},
     "owners.yaml", "projects.beta.match", "key_hashes[0]", "64-character"),
    ({"owners": _owners_with("workspaces: [ws-alpha]", "workspaces: [ws-alpha]\n    launch_windows:\n"
                             "      - {start: 2026-03-05, end: 2026-03-01, velocity_multiplier: 2}")},
     "owners.yaml", "projects.alpha.launch_windows[0]", "end", "before start"),
    ({"owners": _owners_with("workspaces: [ws-alpha]", "workspaces: [ws-alpha]\n    launch_windows:\n"
                             "      - {start: '@anchor-2', end: 2026-03-01, velocity_multiplier: 2}")},
     "owners.yaml", "projects.alpha.launch_windows[0]", "start", "sets no 'anchor'"),
    ({"owners": _owners_with("workspaces: [ws-alpha]", "workspaces: [ws-alpha]\n    launch_windows:\n"
                             "      - {start: 2026-03-01, end: 2026-03-02, velocity_multiplier: 0}")},
     "owners.yaml", "projects.alpha.launch_windows[0]", "velocity_multiplier", "must be > 0"),
    ({"owners": _owners_with("  beta:", "  '*':")},
     "owners.yaml", "projects", "*", "reserved"),
    ({"owners": _owners_with('key_names: ["beta-*"]', "workspaces: [ws-alpha]")},
     "owners.yaml", "projects.beta.match", "workspaces", "also claimed by project 'alpha'"),
    ({"owners": _owners_with("unused_key_days: 3", "unused_key_days: soon")},
     "owners.yaml", "", "unused_key_days", "whole number"),
    ({"premium": "premium_models: []\n"},
     "premium.yaml", "", "completion_price_per_mtok_usd", "no premium rule"),
    ({"premium": PREMIUM.replace("15", "'15 USD'")},
     "premium.yaml", "", "completion_price_per_mtok_usd", "expected a number"),
    ({"premium": PREMIUM + "blended_weights: {prompt: 3, output: 1}\n"},
     "premium.yaml", "blended_weights", "output", "unknown field"),
    ({"annotations": _annotations_with("project: alpha", "project: gamma")},
     "annotations.yaml", "annotations[0]", "project", "unknown project 'gamma'"),
    ({"annotations": _annotations_with("signals: [spend]", "signals: [spend, mood]")},
     "annotations.yaml", "annotations[0]", "signals[1]", "expected one of spend, premium_share, fallback_rate, "
     "provider_mix, got str 'mood'"),
    ({"annotations": _annotations_with("kind: release", "kind: rumour")},
     "annotations.yaml", "annotations[0]", "kind", "expected one of release, incident, launch"),
    ({"annotations": _annotations_with("start: 2026-03-02", "start: 2 March")},
     "annotations.yaml", "annotations[0]", "start", "expected a date"),
    ({"annotations": ANNOTATIONS + ANNOTATIONS.split("annotations:\n", 1)[1]},
     "annotations.yaml", "annotations[1]", "id", "duplicate annotation id"),
])
def test_errors_name_the_file_the_path_and_the_field(tmp_path, files, file_name, path, field, problem):
    folder = write_config(tmp_path, **files)
    with pytest.raises(ConfigError) as raised:
        load_config(folder)
    error = raised.value
    assert isinstance(error, ValueError)
    assert (error.file, error.path, error.field) == (str(folder / file_name), path, field)
    location = f"{path}.{field}" if path else field
    assert re.match(rf"{re.escape(str(folder / file_name))} line \d+: {re.escape(location)}: ", str(error)), str(error)
    assert problem in str(error)


def test_yaml_syntax_errors_and_missing_files_name_the_file(tmp_path):
    folder = write_config(tmp_path, annotations="annotations:\n  - id: [unclosed\n")
    with pytest.raises(ConfigError, match=r"annotations\.yaml line 3: \(yaml\): not valid YAML"):
        load_config(folder)
    (folder / "annotations.yaml").unlink()
    with pytest.raises(ConfigError, match=r"annotations\.yaml.*file not found"):
        load_config(folder)


def test_relative_dates_follow_the_file_anchor(tmp_path, monkeypatch):
    annotations = "anchor: 2026-03-10\n" + ANNOTATIONS.replace("start: 2026-03-02", "start: '@anchor-8'") \
        .replace("end: 2026-03-04", "end: '@anchor'")
    annotation = load_config(write_config(tmp_path / "fixed", annotations=annotations)).annotations[0]
    assert (annotation.start_date, annotation.end_date) == (date(2026, 3, 2), date(2026, 3, 10))
    # The emulator's anchor is the demo's business (openrouter_emulator.demo writes concrete dates).
    emulated = annotations.replace("anchor: 2026-03-10", "anchor: emulator")
    with pytest.raises(ConfigError, match=r"annotations\.yaml line 1: anchor: expected a date"):
        load_config(write_config(tmp_path / "emulated", annotations=emulated))


def test_matcher_precedence_ranks_hash_then_the_most_literal_glob_then_workspace():
    matchers = [KeyMatcher("w", "workspace", "ws-alpha-long-name", 1), KeyMatcher("g", "key_name", "beta-*", 2),
                KeyMatcher("t", "key_name", "beta-tenant-*", 3), KeyMatcher("h", "key_hash", "a" * 64, 4)]
    ranked = sorted(matchers, key=lambda m: (m.kind_rank, -m.specificity, m.file_order))
    assert [m.project for m in ranked] == ["h", "t", "g", "w"]
    assert KeyMatcher("x", "key_name", "*-eval-?", 1).specificity == 6


def test_versions_record_when_each_configuration_is_in_force(tmp_path):
    folder = write_config(tmp_path / "config")
    first = load_config(folder)
    changed = load_config(write_config(tmp_path / "changed", owners=OWNERS.replace("daily: 10", "daily: 12")))
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con)
        assert store_config(con, first, None) == 1
        assert store_config(con, first, date(2026, 3, 5)) == 1
        assert store_config(con, changed, date(2026, 3, 5)) == 2
        assert store_config(con, first, date(2026, 3, 9)) == 3
        ranges = con.execute("select config_version_id, effective_from, effective_to "
                             "from config.config_versions order by 1").fetchall()
        assert ranges == [(1, BEGINNING_OF_HISTORY, date(2026, 3, 5)), (2, date(2026, 3, 5), date(2026, 3, 9)),
                          (3, date(2026, 3, 9), None)]
        budgets = con.execute("select config_version_id, daily_budget_usd from config.projects "
                              "where project = 'alpha' order by 1").fetchall()
        assert budgets == [(1, 10.0), (2, 12.0), (3, 10.0)]
        assert store_config(con, first, date(2026, 3, 12), restate=True) == 3
        ranges = con.execute("select config_version_id, coalesce(effective_from = effective_to, false), "
                             "effective_to is null "
                             "from config.config_versions order by 1").fetchall()
        assert ranges == [(1, True, False), (2, True, False), (3, False, True)]
        assert con.execute("select effective_from from config.config_versions where config_version_id = 3"
                           ).fetchone()[0] == BEGINNING_OF_HISTORY
