"""POST /analytics/query: totals agree with /activity, labels are names, and limits behave like the real API."""

from __future__ import annotations

from datetime import timedelta

import pytest


def _range(server, days_back: int, days: int = 1) -> dict:
    start = server.anchor_date - timedelta(days=days_back)
    return {"start": f"{start}T00:00:00Z", "end": f"{start + timedelta(days=days)}T00:00:00Z"}


def _query(api, body: dict) -> dict:
    response = api.post("/analytics/query", body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_totals_match_activity_and_counts_are_strings(shared_api, shared_server):
    day = shared_server.anchor_date - timedelta(days=3)
    result = _query(shared_api, {"metrics": ["total_usage", "credits_usage", "byok_usage", "request_count",
                                             "tokens_total"],
                                 "granularity": "day", "time_range": _range(shared_server, 3)})
    (row,) = result["data"]
    activity = shared_api.data("/activity", date=day.isoformat())
    assert row["date__day"] == day.isoformat()
    assert row["credits_usage"] == pytest.approx(sum(r["usage"] for r in activity), abs=1e-6)
    assert row["byok_usage"] == pytest.approx(sum(r["byok_usage_inference"] for r in activity), abs=1e-6)
    assert row["total_usage"] == pytest.approx(row["credits_usage"] + row["byok_usage"], abs=1e-6)
    assert isinstance(row["request_count"], str) and isinstance(row["tokens_total"], str)
    assert int(row["request_count"]) == sum(r["requests"] for r in activity)
    assert int(row["tokens_total"]) == sum(r["prompt_tokens"] + r["completion_tokens"] for r in activity)
    assert result["metadata"] == {**result["metadata"], "row_count": 1, "truncated": False}


def test_api_key_dimension_resolves_to_key_names(shared_api, shared_server):
    org = shared_server.org
    busy = org.key_by_name("support-bot-prod")
    result = _query(shared_api, {"metrics": ["total_usage"], "dimensions": ["api_key_id"],
                                 "time_range": _range(shared_server, 2),
                                 "filters": [{"field": "api_key_id", "operator": "eq", "value": busy.hash}]})
    assert [r["api_key_id"] for r in result["data"]] == ["support-bot-prod"]
    spend = org.key_daily_spend(busy.hash, shared_server.anchor_date - timedelta(days=2))
    assert result["data"][0]["total_usage"] == pytest.approx(spend, abs=1e-6)
    by_workspace = _query(shared_api, {"metrics": ["request_count"], "dimensions": ["workspace"],
                                       "time_range": _range(shared_server, 2)})
    assert {r["workspace"] for r in by_workspace["data"]} == {w.name for w in org.workspaces}


def test_two_dimensions_truncation_and_ordering(shared_api, shared_server):
    body = {"metrics": ["total_usage", "request_count"], "dimensions": ["model", "provider"],
            "time_range": _range(shared_server, 8, days=7), "limit": 5,
            "order_by": {"field": "total_usage", "direction": "desc"}}
    result = _query(shared_api, body)
    assert result["metadata"]["truncated"] is True and len(result["data"]) == 5
    spends = [r["total_usage"] for r in result["data"]]
    assert spends == sorted(spends, reverse=True)
    permaslugs = {m.canonical_slug for m in shared_server.org.models}
    assert all(r["model"] in permaslugs for r in result["data"])


def test_generation_id_dimension_lists_generation_records(shared_api, shared_server):
    day = shared_server.anchor_date - timedelta(days=1)
    result = _query(shared_api, {"metrics": ["total_usage"], "dimensions": ["generation_id"],
                                 "time_range": _range(shared_server, 1), "limit": 10000})
    assert {r["generation_id"] for r in result["data"]} == set(shared_server.org.generation_ids(day))


@pytest.mark.parametrize(("body", "fragment"), [
    ({"metrics": ["total_usage"], "dimensions": ["model", "provider", "workspace"]}, "<=2 items"),
    ({"metrics": []}, "metrics"),
    ({"metrics": ["dollars"]}, "metrics"),
    ({"metrics": ["total_usage"], "dimensions": ["colour"]}, "dimensions"),
    ({"metrics": ["total_usage"], "time_range": {"start": "2026-11-01T00:00Z", "end": "2026-11-02T00:00Z"}},
     "seconds"),
    ({"metrics": ["total_usage"], "dimensions": ["provider"],
      "time_range": {"start": "2026-09-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}}, "31 days"),
    ({"metrics": ["total_usage"], "limit": 20000}, "limit"),
])
def test_invalid_queries_are_400(shared_api, body, fragment):
    response = shared_api.post("/analytics/query", body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


def test_meta_lists_what_query_accepts(shared_api):
    meta = shared_api.data("/analytics/meta")
    names = {m["name"] for m in meta["metrics"]}
    assert {"total_usage", "request_count", "tokens_total"} <= names
    assert {"model", "provider", "api_key_id", "workspace", "generation_id"} <= {d["name"] for d in meta["dimensions"]}
    assert "day" in {g["name"] for g in meta["granularities"]}
