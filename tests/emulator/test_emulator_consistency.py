"""The emulator's numbers agree with each other the way OpenRouter's do, as of the emulator clock."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import requests

from openrouter_emulator import EmulatorServer

TOLERANCE = 1e-9


def _day_start(day) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _sum_by_row_key(rows: list[dict]) -> dict[tuple, list[float]]:
    totals: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * 7)
    for row in rows:
        bucket = totals[(row["date"], row["model_permaslug"], row["endpoint_id"])]
        for index, name in enumerate(("usage", "byok_usage_inference", "requests", "prompt_tokens",
                                      "completion_tokens", "reasoning_tokens", "cached_tokens")):
            bucket[index] += row[name]
    return totals


def test_account_activity_is_the_sum_of_per_key_activity(shared_api, shared_server):
    day = (shared_server.anchor_date - timedelta(days=2)).isoformat()
    account = shared_api.data("/activity", date=day)
    per_key = []
    for key in shared_server.org.keys:
        per_key.extend(shared_api.data("/activity", date=day, api_key_hash=key.hash))
    expected, actual = _sum_by_row_key(per_key), _sum_by_row_key(account)
    assert expected.keys() == actual.keys()
    assert len(account) == len(actual), "account rows must be unique by (date, model_permaslug, endpoint_id)"
    for row_key, values in actual.items():
        assert values == pytest.approx(expected[row_key], abs=TOLERANCE), row_key


def test_workspace_grouping_and_filters_partition_the_account(shared_api, shared_server):
    day = (shared_server.anchor_date - timedelta(days=5)).isoformat()
    account_total = sum(r["usage"] for r in shared_api.data("/activity", date=day))
    grouped = shared_api.data("/activity", date=day, group_by="workspace")
    assert all("workspace_id" in row for row in grouped)
    assert "workspace_id" not in shared_api.data("/activity", date=day)[0]
    assert sum(r["usage"] for r in grouped) == pytest.approx(account_total, abs=TOLERANCE)
    by_filter = sum(r["usage"] for w in shared_server.org.workspaces
                    for r in shared_api.data("/activity", date=day, workspace_id=w.id))
    assert by_filter == pytest.approx(account_total, abs=TOLERANCE)
    by_user = sum(r["usage"] for m in shared_server.org.members
                  for r in shared_api.data("/activity", date=day, user_id=m.id))
    assert by_user == pytest.approx(account_total, abs=TOLERANCE)
    assert shared_server.org.daily_spend(day) == pytest.approx(account_total, abs=TOLERANCE)


def test_activity_rows_carry_consistent_fields(shared_api, shared_server):
    models = {m.id: m for m in shared_server.org.models}
    providers = {p.name for p in shared_server.org.providers}
    rows = shared_api.data("/activity")
    assert {r["date"] for r in rows} <= {
        (shared_server.anchor_date - timedelta(days=i)).isoformat() for i in range(1, 31)}
    for row in rows:
        model = models[row["model"]]
        assert row["model_permaslug"] == model.canonical_slug
        assert row["provider_name"] in providers
        assert row["cached_tokens"] <= row["prompt_tokens"]
        assert row["reasoning_tokens"] <= row["completion_tokens"]
        if model.is_free:
            assert row["usage"] == 0 and row["byok_usage_inference"] == 0
    assert any(r["byok_usage_inference"] > 0 for r in rows)


def test_key_usage_is_history_plus_activity(shared_api, shared_server):
    org = shared_server.org
    now = shared_server.now
    first, last = org.activity_window(now)
    items = {}
    for workspace in shared_api.data("/workspaces"):
        for offset in (0, 100):
            for item in shared_api.data("/keys", workspace_id=workspace["id"], include_disabled="true",
                                        include_expired="true", offset=offset):
                items[item["hash"]] = item
    assert len(items) == len(org.keys)
    for key in org.keys:
        expected = org.key_usage_as_of(key.hash, now)
        assert items[key.hash]["usage"] == pytest.approx(expected["usage"], abs=TOLERANCE)
        assert items[key.hash]["byok_usage"] == pytest.approx(expected["byok_usage"], abs=TOLERANCE)
    # Inside the visible window the API must agree with itself: history + window activity.
    busy = org.key_by_name("support-bot-prod")
    window_usage = sum(r["usage"] for r in shared_api.data("/activity", api_key_hash=busy.hash))
    before_window = sum(org.key_daily_spend(busy.hash, d) for d in org.span_days() if d < first)
    history = busy.history_usage_nanos / 1e9
    assert items[busy.hash]["usage"] == pytest.approx(history + before_window + window_usage, abs=1e-6)


def test_credits_usage_is_history_plus_all_activity(shared_api, shared_server):
    org = shared_server.org
    credits = shared_api.data("/credits")
    history = sum(k.history_usage_nanos for k in org.keys) / 1e9
    activity = sum(org.daily_spend(d) for d in org.span_days())
    assert credits["total_usage"] == pytest.approx(history + activity, abs=1e-6)
    assert credits["total_usage"] == pytest.approx(
        sum(org.key_usage_as_of(k.hash, shared_server.now)["usage"] for k in org.keys), abs=1e-6)
    assert (credits["total_credits"], credits["total_usage"]) == org.credits_as_of(shared_server.now)


def test_clock_replay_moves_every_endpoint_together(api, server):
    org = server.org
    day = server.anchor_date - timedelta(days=10)
    server.set_now(_day_start(day + timedelta(days=1)) + timedelta(minutes=10))
    credits_before = api.data("/credits")
    rows = api.data("/activity", date=day.isoformat())
    assert sum(r["usage"] for r in rows) == pytest.approx(org.daily_spend(day), abs=TOLERANCE)
    later = (day + timedelta(days=1)).isoformat()
    assert api.get("/activity", date=later).status_code == 400
    server.set_now(_day_start(day + timedelta(days=2)) + timedelta(minutes=10))
    credits_after = api.data("/credits")
    burn = credits_after["total_usage"] - credits_before["total_usage"]
    assert burn == pytest.approx(org.daily_spend(day + timedelta(days=1)), abs=1e-6)


def test_keys_created_after_the_clock_are_hidden(api, server):
    recent = server.org.key_by_name("growth-chat-widget-beta")
    workspace_id = recent.workspace_id
    listed = {k["hash"] for k in api.data("/keys", workspace_id=workspace_id)}
    assert recent.hash in listed
    server.set_now(recent.created_at - timedelta(minutes=1))
    listed = {k["hash"] for k in api.data("/keys", workspace_id=workspace_id)}
    assert recent.hash not in listed
    assert api.get(f"/keys/{recent.hash}").status_code == 404


def test_last_used_at_is_on_the_last_active_completed_day(shared_api, shared_server):
    org = shared_server.org
    newest = shared_server.anchor_date - timedelta(days=1)
    busy = org.key_by_name("support-bot-prod")
    item = shared_api.data(f"/keys/{busy.hash}")
    assert item["last_used_at"].startswith(newest.isoformat())
    never = org.key_by_name("test-key-do-not-use")
    assert shared_api.data(f"/keys/{never.hash}")["last_used_at"] is None
    idle = org.key_by_name("legacy-chat-prod")
    last_used = datetime.fromisoformat(shared_api.data(f"/keys/{idle.hash}")["last_used_at"].replace("Z", "+00:00"))
    assert shared_server.now - last_used > timedelta(days=14)


def test_weekly_and_monthly_usage_cover_completed_days_of_the_period(shared_api, shared_server):
    org = shared_server.org
    key = org.key_by_name("search-query-rewriter")
    today = shared_server.now.date()
    week = [today - timedelta(days=i) for i in range(1, today.weekday() + 1)]
    month = [today - timedelta(days=i) for i in range(1, today.day)]
    item = shared_api.data(f"/keys/{key.hash}")
    assert item["usage_daily"] == 0
    assert item["usage_weekly"] == pytest.approx(sum(org.key_daily_spend(key.hash, d) for d in week), abs=1e-6)
    assert item["usage_monthly"] == pytest.approx(sum(org.key_daily_spend(key.hash, d) for d in month), abs=1e-6)


def test_keys_pagination_is_newest_first_without_gaps(shared_api, shared_server):
    workspace = shared_server.org.workspace_by_name("support-bot")
    pages = []
    offset = 0
    while True:
        page = shared_api.data("/keys", workspace_id=workspace.id, include_disabled="true",
                               include_expired="true", offset=offset)
        pages.append(page)
        if len(page) < 100:
            break
        offset += 100
    assert [len(p) for p in pages][0] == 100 and len(pages) == 2
    hashes = [k["hash"] for page in pages for k in page]
    assert len(hashes) == len(set(hashes))
    expected = {k.hash for k in shared_server.org.keys if k.workspace_id == workspace.id}
    assert set(hashes) == expected
    created = [k["created_at"] for page in pages for k in page]
    assert created == sorted(created, reverse=True)


def test_keys_default_to_the_default_workspace_and_hide_disabled_and_expired(shared_api, shared_server):
    org = shared_server.org
    now = shared_server.now
    default_keys = shared_api.data("/keys")
    assert {k["workspace_id"] for k in default_keys} == {org.default_workspace.id}
    assert not any(k["disabled"] for k in default_keys)
    assert "tmp-alice-laptop" in {k["name"] for k in default_keys}
    everything = shared_api.data("/keys", include_disabled="true", include_expired="true")
    hidden = {k["name"] for k in everything} - {k["name"] for k in default_keys}
    assert hidden == {k.name for k in org.keys if k.workspace_id == org.default_workspace.id
                      and (k.disabled_at_time(now) or k.expired_at_time(now))}
    assert {"old-summarizer-v1", "hackathon-2025"} <= hidden
    only_disabled = {k["name"] for k in shared_api.data("/keys", include_disabled="true")}
    assert "old-summarizer-v1" in only_disabled and "hackathon-2025" not in only_disabled
    assert shared_api.get("/keys", include_disabled="True").status_code == 400
    assert shared_api.get("/keys", workspace_id="00000000-0000-4000-8000-000000000000").status_code == 404


@pytest.mark.parametrize("offset", [0, 31, 60])
def test_activity_date_outside_the_window_is_rejected(shared_api, shared_server, offset):
    day = (shared_server.anchor_date - timedelta(days=offset)).isoformat()
    response = shared_api.get("/activity", date=day)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": 400,
                                         "message": "Date must be within the last 30 completed UTC days"}}


def test_activity_window_edges_are_accepted(shared_api, shared_server):
    for offset in (1, 30):
        day = (shared_server.anchor_date - timedelta(days=offset)).isoformat()
        assert shared_api.get("/activity", date=day).status_code == 200
    assert shared_api.get("/activity", date="2026-13-01").status_code == 400
    assert shared_api.get("/activity", group_by="model").status_code == 400


def test_authentication_and_authorisation(shared_server, anonymous_api, inference_api, shared_api):
    assert anonymous_api.get("/keys").json() == {"error": {"code": 401, "message": "Missing Authentication header"}}
    wrong = requests.get(shared_server.base_url + "/credits", timeout=5,
                         headers={"Authorization": "Bearer sk-or-v1-not-a-real-key"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "User not found."
    for path in ("/credits", "/keys", "/activity", "/analytics/meta", "/workspaces",
                 f"/keys/{shared_server.org.keys[0].hash}"):
        response = inference_api.get(path)
        assert response.status_code == 403, path
        assert response.json()["error"] == {"code": 403, "message": "Only management keys can perform this operation"}
    assert inference_api.post("/analytics/query", {"metrics": ["total_usage"]}).status_code == 403
    assert inference_api.get("/key").status_code == 200
    assert anonymous_api.get("/models").status_code == 200
    assert anonymous_api.get("/providers").status_code == 200
    assert shared_api.get("/key").json()["data"]["usage"] == 0


def test_unknown_paths_and_resources_are_404(shared_api):
    for path in ("/nope", "/keys/" + "0" * 64, "/model/openai/gpt-99", "/workspaces/unknown"):
        response = shared_api.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"error": {"code": 404, "message": "Resource not found"}}
        assert response.headers["Content-Type"] == "application/json"
    assert shared_api.get("/generation", id="gen-1794441694-unknownunknownunknow").status_code == 404
    assert shared_api.get("/generation").status_code == 400


def test_models_listing_filters_and_paginates(shared_api, shared_server):
    text = shared_api.get("/models").json()
    everything = shared_api.get("/models", output_modalities="all").json()
    assert text["links"]["next"] is None and text["total_count"] == len(text["data"])
    assert everything["total_count"] == len(shared_server.org.models) > text["total_count"]
    assert all("text" in m["architecture"]["output_modalities"] for m in text["data"])
    seen, url, pages = [], None, 0
    page = shared_api.get("/models", output_modalities="all", limit=7).json()
    while True:
        pages += 1
        seen.extend(m["id"] for m in page["data"])
        url = page["links"]["next"]
        if url is None:
            break
        page = shared_api.session.get(url, timeout=5).json()
    assert pages == 3 and seen == [m["id"] for m in everything["data"]]
    prices = {m["id"]: m["pricing"] for m in everything["data"]}
    assert prices["openrouter/auto"]["prompt"] == "-1"
    assert prices["meta-llama/llama-3.3-70b-instruct:free"]["completion"] == "0"
    assert all(isinstance(p["prompt"], str) for p in prices.values())


def test_same_seed_gives_identical_bytes_and_another_seed_differs():
    paths = ["/keys", "/activity", "/credits", "/workspaces", "/models", "/key"]
    anchor = datetime(2026, 11, 20, tzinfo=UTC).date()

    def fetch(seed: int) -> list[bytes]:
        # replay clock: one fixed moment (on the wall clock "now" moves, and /credits with it)
        with EmulatorServer(anchor_date=anchor, seed=seed, clock="replay") as emulator:
            headers = {"Authorization": f"Bearer {emulator.management_key}"}
            return [requests.get(emulator.base_url + p, headers=headers, timeout=10).content for p in paths]

    first, second, other = fetch(42), fetch(42), fetch(7)
    assert first == second
    assert all(a != b for a, b in zip(first[:3], other[:3], strict=True))


def test_environment_supplies_defaults(monkeypatch):
    monkeypatch.setenv("OPENROUTER_EMULATOR_ANCHOR_DATE", "2026-06-15")
    monkeypatch.setenv("OPENROUTER_EMULATOR_SEED", "7")
    monkeypatch.setenv("OPENROUTER_EMULATOR_CLOCK", "replay")
    emulator = EmulatorServer()
    assert emulator.anchor_date.isoformat() == "2026-06-15" and emulator.seed == 7
    assert emulator.clock_mode == "replay"
    assert abs(emulator.now - datetime(2026, 6, 15, 0, 5, tzinfo=UTC)) < timedelta(seconds=5)
