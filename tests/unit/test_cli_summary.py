"""The CLI's per-day line names credits and BYOK spend apart, as the headline's burn counts credits only."""

from __future__ import annotations

from datetime import date

import duckdb

from openrouter_spend.reports.summary import day_status


def _home(tmp_path, monkeypatch, rows):
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("create schema staging")
        con.execute("create table staging.stg_activity (usage_date date, usage_usd double, byok_usage_usd double)")
        con.executemany("insert into staging.stg_activity values (?, ?, ?)", rows)


def test_a_day_with_byok_names_both_amounts(tmp_path, monkeypatch):
    _home(tmp_path, monkeypatch, [("2026-11-25", 90.0, 0.0), ("2026-11-25", 4.67, 3.1), ("2026-11-24", 50.0, 9.0)])
    assert day_status(date(2026, 11, 25)) == "credits $94.67 + BYOK $3.10"


def test_a_day_without_byok_shows_credits_only(tmp_path, monkeypatch):
    _home(tmp_path, monkeypatch, [("2026-11-25", 1234.5, 0.0)])
    assert day_status(date(2026, 11, 25)) == "credits $1,234.50"
