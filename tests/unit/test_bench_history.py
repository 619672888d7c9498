"""bench/history.py copies one loaded day backwards: account totals, balances and key state stay consistent."""

from __future__ import annotations

import importlib.util
import json
from datetime import date, timedelta

import pytest

from openrouter_spend.config.settings import PROJECT_ROOT
from openrouter_spend.warehouse import connect, migrate

DAY = date(2026, 11, 20)


@pytest.fixture(scope="module")
def history():
    spec = importlib.util.spec_from_file_location("bench_history", PROJECT_ROOT / "bench" / "history.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _activity(key: str | None, usage: float, requests: int) -> str:
    return json.dumps({"date": DAY.isoformat(), "model": "openai/gpt-4.1-mini", "model_permaslug": "openai/gpt-4.1-mini",
                       "endpoint_id": "e1", "provider_name": "OpenAI", "usage": usage, "byok_usage_inference": 0.0,
                       "requests": requests, "prompt_tokens": requests * 100, "completion_tokens": requests * 10,
                       "reasoning_tokens": 0, "cached_tokens": 0})


@pytest.fixture
def warehouse(tmp_path):
    with connect(tmp_path / "warehouse.duckdb") as con:
        migrate(con)
        common = (DAY, "run-1", "2026-11-21 00:10:00+00", f"landing/date={DAY}/f.json.gz")
        for key, usage, requests in (("k1", 3.0, 30), ("k2", 1.0, 11), (None, 4.0, 41)):
            con.execute("insert into raw.activity values (?, ?, ?, ?, ?, ?, ?, ?)",
                        [*common, json.dumps({"date": DAY.isoformat()}), "key" if key else "account", key,
                         _activity(key, usage, requests)])
        for key, used in (("k1", "2026-11-20T18:00:00Z"), ("k2", "2026-11-20T09:00:00Z"), ("k3", "2026-09-01T12:00:00Z")):
            con.execute("insert into raw.keys values (?, ?, ?, ?, ?, null, 0, ?, ?, null, true)",
                        [*common, "{}", key, json.dumps({"hash": key, "usage": 100.0, "byok_usage": 0.0,
                                                         "created_at": "2026-01-01T00:00:00.000000+00:00",
                                                         "updated_at": "2026-01-01T00:00:00.000000+00:00",
                                                         "last_used_at": used, "expires_at": None})])
        con.execute("insert into raw.credits values (?, ?, ?, ?, ?, 500.0, 200.0, ?)",
                    [*common, "{}", json.dumps({"total_credits": 500.0, "total_usage": 200.0})])
        yield con


def test_copied_days_keep_account_totals_equal_to_the_keys_and_count_balances_back(history, warehouse):
    added = history.expand_history(warehouse, DAY, 3)
    assert added == [DAY - timedelta(days=2), DAY - timedelta(days=1)]
    sums = warehouse.execute(
        "select partition_date, scope, sum((payload->>'usage')::double), sum((payload->>'requests')::bigint), "
        "count(*) from raw.activity group by all order by all").fetchall()
    by_day: dict = {}
    for day, scope, usage, requests, rows in sums:
        by_day.setdefault(day, {})[scope] = (round(usage, 9), requests, rows)
    assert set(by_day) == {DAY - timedelta(days=2), DAY - timedelta(days=1), DAY}
    for day, scopes in by_day.items():
        assert scopes["account"][:2] == scopes["key"][:2], day
        assert scopes["key"][2] == 2 and scopes["account"][2] == 1
    assert all(json.loads(p)["date"] == str(d) for d, p in warehouse.execute(
        "select partition_date, payload from raw.activity").fetchall())
    usage = {day: scopes["account"][0] for day, scopes in by_day.items()}
    credits = dict(warehouse.execute("select partition_date, total_usage from raw.credits").fetchall())
    assert credits[DAY] == 200.0
    assert credits[DAY - timedelta(days=1)] == pytest.approx(200.0 - usage[DAY])
    assert credits[DAY - timedelta(days=2)] == pytest.approx(200.0 - usage[DAY] - usage[DAY - timedelta(days=1)])


def test_copied_key_snapshots_move_with_the_day_and_count_usage_back(history, warehouse):
    history.expand_history(warehouse, DAY, 2)
    earlier = DAY - timedelta(days=1)
    rows = {key: json.loads(payload) for key, payload in warehouse.execute(
        "select key_hash, payload from raw.keys where partition_date = ?", [earlier]).fetchall()}
    assert rows["k1"]["last_used_at"] == "2026-11-19T18:00:00Z"
    assert rows["k3"]["last_used_at"] == "2026-08-31T12:00:00Z"  # an idle key stays as idle
    assert rows["k1"]["created_at"] == "2025-12-31T00:00:00.000000+00:00"
    k1_spent = warehouse.execute(
        "select (payload->>'usage')::double from raw.activity where partition_date = ? and api_key_hash = 'k1'",
        [DAY]).fetchone()[0]
    assert rows["k1"]["usage"] == pytest.approx(100.0 - k1_spent)
    assert rows["k3"]["usage"] == 100.0
