"""The hostile world's configuration: project, team, owner and annotation names that are injection strings."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from openrouter_spend import settings
from openrouter_spend.emulator.scenarios import HOSTILE_NAMES

PROJECT_FORMULA = '=HYPERLINK("http://evil.example/p","p")'
PROJECT_SQL = HOSTILE_NAMES["sql_breakout"]
OWNER_BROADCAST = "<!channel> Owner"
TEAM_FORMULA = "@SUM(1+1)*cmd|' /C calc'!A0"
OWNER_MINUS = "-Minus <b>Owner</b>"
ANNOTATION = "<script>alert('note')</script> [release](http://evil.example) =1+1"
BILLING_ACCOUNT_NAME = "+cmd|' /C calc'!A0"
# Every string the outputs must show only as text (key and workspace names from the emulator, config values).
STRINGS = (*HOSTILE_NAMES.values(), PROJECT_FORMULA, OWNER_BROADCAST, TEAM_FORMULA, OWNER_MINUS, ANNOTATION,
           BILLING_ACCOUNT_NAME)


def write_config(folder: Path) -> Path:
    """The default configuration with hostile projects (tiny budgets, so budget alerts fire) and routes."""
    shutil.copytree(settings.PROJECT_ROOT / "include" / "config", folder)
    owners = {
        "anchor": "emulator",
        "unused_key_days": 30,
        "projects": {
            PROJECT_FORMULA: {
                "team": TEAM_FORMULA, "budget_owner": OWNER_BROADCAST, "contact": "owner@hostile.example",
                "description": "<script>alert('p')</script>", "budgets_usd": {"daily": 0.1, "weekly": 0.5},
                "match": {"workspaces": [HOSTILE_NAMES["slack_broadcast"]]}},
            PROJECT_SQL: {
                "team": "+Team", "budget_owner": OWNER_MINUS, "contact": "minus@hostile.example",
                "budgets_usd": {"daily": 0.1}, "match": {"workspaces": [HOSTILE_NAMES["sql_breakout"]]}},
        },
    }
    (folder / "owners.yaml").write_text(yaml.safe_dump(owners, sort_keys=False, allow_unicode=True))
    annotations = {"anchor": "emulator", "annotations": [{
        "id": "hostile-note", "kind": "release", "start": "@anchor-20", "end": "@anchor+5", "project": PROJECT_SQL,
        "signals": ["provider_mix"], "description": ANNOTATION}]}
    (folder / "annotations.yaml").write_text(yaml.safe_dump(annotations, sort_keys=False, allow_unicode=True))
    rules = yaml.safe_load((folder / "rules.yaml").read_text())
    rules["rules"]["budget_threshold"]["min_volume_usd"] = 0.05  # the hostile world spends about $1.60 a day
    rules["routes"] = {
        "default": {"min_severity": "info", "email": {"to": ["budget_owner", "finops@hostile.example"]},
                    "slack": {"env_var": "OPENROUTER_SPEND_SLACK_WEBHOOK_FINOPS"}},
        "owners": {"budget_owners": [OWNER_BROADCAST], "min_severity": "info", "email": {"to": ["budget_owner"]},
                   "slack": {"env_var": "OPENROUTER_SPEND_SLACK_WEBHOOK_OWNERS"}},
        "data-engineering": {"min_severity": "warning", "email": {"to": ["data-engineering@hostile.example"]},
                             "slack": {"env_var": "OPENROUTER_SPEND_SLACK_WEBHOOK_DATA_ENG"}},
    }
    (folder / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True))
    return folder
