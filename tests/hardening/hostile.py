"""The hostile world's names (emulator scenario `hostile`): keys, workspaces, projects, owners, annotation."""

from __future__ import annotations

from openrouter_emulator.scenarios import HOSTILE_NAMES

PROJECT_FORMULA = HOSTILE_NAMES["project_formula"]
PROJECT_SQL = HOSTILE_NAMES["sql_breakout"]
TEAM_FORMULA = HOSTILE_NAMES["team_formula"]
OWNER_BROADCAST = HOSTILE_NAMES["owner_broadcast"]
OWNER_MARKUP = HOSTILE_NAMES["owner_markup"]
ANNOTATION = HOSTILE_NAMES["annotation"]
# Not a file of the world's configuration: the FOCUS billing account name comes from the environment.
BILLING_ACCOUNT_NAME = "+cmd|' /C calc'!A0"
# Every string the outputs must show only as text.
STRINGS = (*HOSTILE_NAMES.values(), BILLING_ACCOUNT_NAME)
