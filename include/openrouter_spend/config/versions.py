"""Configuration history: each distinct configuration is a version in `config.*`, in force for a range of days.

The warehouse keeps every version that was ever loaded, with the range of usage days it is in force for, so
marts attribute each day with the configuration of its time (docs/marts.md, "Configuration history").
"""

from __future__ import annotations

import json
from datetime import date

from openrouter_spend.config.owners import Config

# The first configuration ever loaded covers all earlier history too.
BEGINNING_OF_HISTORY = date(1970, 1, 1)


def _insert(con, table: str, rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    placeholders = ", ".join("?" for _ in columns)
    con.executemany(f"insert into config.{table} ({', '.join(columns)}) values ({placeholders})",
                    [[row[c] for c in columns] for row in rows])


def _store_version(con, config: Config, version_id: int) -> None:
    _insert(con, "projects", [{
        "config_version_id": version_id, "project": p.name, "team": p.team, "budget_owner": p.budget_owner,
        "budget_owner_contact": p.contact, "description": p.description, "daily_budget_usd": p.daily_budget_usd,
        "weekly_budget_usd": p.weekly_budget_usd, "monthly_budget_usd": p.monthly_budget_usd,
    } for p in config.projects])
    _insert(con, "launch_windows", [{
        "config_version_id": version_id, "project": p.name, "start_date": w.start_date, "end_date": w.end_date,
        "velocity_multiplier": w.velocity_multiplier, "description": w.description,
    } for p in config.projects for w in p.launch_windows])
    _insert(con, "key_matchers", [{
        "config_version_id": version_id, "project": m.project, "match_kind": m.kind, "pattern": m.pattern,
        "kind_rank": m.kind_rank, "specificity": m.specificity, "file_order": m.file_order,
        "valid_from": m.valid_from, "valid_to": m.valid_to,
    } for m in config.matchers])
    rule = config.premium
    _insert(con, "premium_rules", [{
        "config_version_id": version_id,
        "completion_price_threshold_per_mtok_usd": rule.completion_price_per_mtok_usd,
        "blended_price_threshold_per_mtok_usd": rule.blended_price_per_mtok_usd,
        "blended_prompt_weight": rule.blended_prompt_weight,
        "blended_completion_weight": rule.blended_completion_weight,
    }])
    _insert(con, "premium_model_lists", [
        {"config_version_id": version_id, "model_pattern": pattern, "is_premium": True}
        for pattern in rule.premium_models
    ] + [
        {"config_version_id": version_id, "model_pattern": pattern, "is_premium": False}
        for pattern in rule.never_premium_models
    ])
    _insert(con, "annotations", [{
        "config_version_id": version_id, "annotation_id": a.annotation_id, "kind": a.kind,
        "start_date": a.start_date, "end_date": a.end_date, "project": a.project, "signals": list(a.signals),
        "description": a.description, "expected_change": a.expected_change,
    } for a in config.annotations])
    _insert(con, "settings", [{"config_version_id": version_id, "unused_key_days": config.unused_key_days}])


def store_config(con, config: Config, first_unbuilt_day: date | None, *, restate: bool = False) -> int:
    """Record `config` as the current version inside the caller's transaction; returns its version id."""
    # A changed configuration is in force from `first_unbuilt_day` on, so days already built keep the
    # version they were built with. The first version ever covers all earlier history; `restate` makes
    # the current version cover all history and empties the ranges of the older ones (kept as rows).
    fingerprint = config.fingerprint()
    current = con.execute(
        "select config_version_id, content_sha256 from config.config_versions where effective_to is null"
    ).fetchone()
    if current and current[1] == fingerprint:
        version_id = current[0]
    else:
        version_id = con.execute(
            "select coalesce(max(config_version_id), 0) + 1 from config.config_versions").fetchone()[0]
        effective_from = first_unbuilt_day if current and first_unbuilt_day else BEGINNING_OF_HISTORY
        if current:
            con.execute("update config.config_versions set effective_to = greatest(effective_from, ?) "
                        "where config_version_id = ?", [effective_from, current[0]])
        con.execute(
            "insert into config.config_versions (config_version_id, content_sha256, effective_from, "
            "effective_to, loaded_at, config_dir, file_sha256) values (?, ?, ?, null, current_timestamp, ?, ?)",
            [version_id, fingerprint, effective_from, str(config.config_dir), json.dumps(config.file_sha256)],
        )
        _store_version(con, config, version_id)
    if restate:
        con.execute("update config.config_versions set effective_to = effective_from "
                    "where config_version_id <> ?", [version_id])
        con.execute("update config.config_versions set effective_from = ? where config_version_id = ?",
                    [BEGINNING_OF_HISTORY, version_id])
    return version_id
