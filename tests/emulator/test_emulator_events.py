"""Each planted event shows up in the API data it should affect, and the quiet scenario has none of them."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

EVENT_NAMES = {"provider_outage", "premium_drift", "release_spend_jump", "runaway_loop", "low_runway", "topups"}
PREMIUM_MODELS = {"anthropic/claude-opus-4", "anthropic/claude-sonnet-4"}


def _event(server, name: str) -> dict:
    return next(e for e in server.org.events if e["event"] == name)


def _days(start, end):
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _workspace_activity(api, day, workspace_id) -> list[dict]:
    return api.data("/activity", date=day.isoformat(), workspace_id=workspace_id)


def test_every_event_is_listed_inside_the_last_14_completed_days(shared_server):
    events = shared_server.org.events
    assert {e["event"] for e in events} == EVENT_NAMES
    assert sum(e["event"] == "topups" for e in events) >= 2
    first, last = shared_server.anchor_date - timedelta(days=14), shared_server.anchor_date - timedelta(days=1)
    for event in events:
        assert first <= event["start_date"] <= event["end_date"] <= last, event
        assert {"event", "start_date", "end_date", "workspace_id", "project", "api_key_hash",
                "description"} <= set(event)
        if event["workspace_id"]:
            assert shared_server.org.workspace_by_id(event["workspace_id"]).name == event["project"]


def test_provider_outage_moves_the_projects_traffic_to_other_providers(shared_api, shared_server):
    outage = _event(shared_server, "provider_outage")
    provider = outage["provider_name"]

    def share(day) -> float:
        rows = _workspace_activity(shared_api, day, outage["workspace_id"])
        total = sum(r["usage"] for r in rows)
        return sum(r["usage"] for r in rows if r["provider_name"] == provider) / total

    before = share(outage["start_date"] - timedelta(days=2))
    assert before > 0.3
    for day in _days(outage["start_date"], outage["end_date"]):
        assert share(day) == 0
    assert share(outage["end_date"] + timedelta(days=1)) > 0.3


def test_provider_outage_generations_show_failed_attempts_then_success(shared_api, shared_server):
    outage = _event(shared_server, "provider_outage")
    org = shared_server.org

    def fallback_share(day) -> float:
        records = [g for g in org.generations(day) if g["workspace_id"] == outage["workspace_id"]]
        fallbacks = [g for g in records if len(g["provider_responses"]) > 1]
        return len(fallbacks) / len(records)

    assert fallback_share(outage["start_date"]) > 0.3
    assert fallback_share(outage["start_date"] - timedelta(days=3)) < 0.1
    hit_models = {m.id for m in org.models if outage["provider_name"] in {name for name, _ in m.providers}}
    record = next(g for g in org.generations(outage["start_date"])
                  if g["workspace_id"] == outage["workspace_id"] and g["model"] in hit_models
                  and len(g["provider_responses"]) > 1)
    served = shared_api.data("/generation", id=record["id"])
    attempts = served["provider_responses"]
    assert attempts[0]["provider_name"] == outage["provider_name"] and attempts[0]["status"] in (502, 503)
    assert attempts[-1]["status"] == 200 and attempts[-1]["provider_name"] == served["provider_name"]
    assert served["provider_name"] != outage["provider_name"]


def test_generations_include_model_and_byok_fallbacks(shared_server):
    org = shared_server.org
    kinds = set()
    for offset in range(1, 8):
        for record in org.generations(shared_server.anchor_date - timedelta(days=offset)):
            attempts = record["provider_responses"]
            if len(attempts) < 2:
                continue
            if attempts[0]["model_permaslug"] != attempts[-1]["model_permaslug"]:
                kinds.add("model")
            if attempts[0]["is_byok"] and not attempts[-1]["is_byok"]:
                kinds.add("byok")
                assert record["is_byok"] is False
    assert kinds == {"model", "byok"}


def test_premium_share_climbs_over_the_drift(shared_api, shared_server):
    drift = _event(shared_server, "premium_drift")

    def premium_share(day) -> float:
        rows = _workspace_activity(shared_api, day, drift["workspace_id"])
        total = sum(r["usage"] for r in rows)
        return sum(r["usage"] for r in rows if r["model"] in PREMIUM_MODELS) / total

    baseline = statistics.mean(premium_share(drift["start_date"] - timedelta(days=i)) for i in range(1, 8))
    shares = [premium_share(day) for day in _days(drift["start_date"], drift["end_date"])]
    assert shares[-1] > baseline + 0.35
    assert statistics.correlation(range(len(shares)), shares) > 0.8


def test_release_roughly_doubles_project_spend(shared_api, shared_server):
    release = _event(shared_server, "release_spend_jump")

    def spend(day) -> float:
        return sum(r["usage"] for r in _workspace_activity(shared_api, day, release["workspace_id"]))

    before = statistics.mean(spend(release["start_date"] - timedelta(days=i)) for i in range(1, 8))
    after = statistics.mean(spend(day) for day in _days(release["start_date"], release["end_date"]))
    assert 1.6 < after / before < 2.6


def test_runaway_key_requests_jump_with_flat_output(shared_api, shared_server):
    runaway = _event(shared_server, "runaway_loop")
    daily = {}
    for row in shared_api.data("/activity", api_key_hash=runaway["api_key_hash"]):
        totals = daily.setdefault(row["date"], [0, 0])
        totals[0] += row["requests"]
        totals[1] += row["completion_tokens"]
    loop_days = {d.isoformat() for d in _days(runaway["start_date"], runaway["end_date"])}
    normal = [v for d, v in daily.items() if d not in loop_days]
    median_requests = statistics.median(v[0] for v in normal)
    median_output = statistics.median(v[1] for v in normal)
    for day in loop_days:
        requests, output = daily[day]
        assert requests >= 10 * median_requests
        assert output < 2 * median_output


def test_low_runway_on_the_newest_completed_day(shared_server):
    org = shared_server.org
    newest = shared_server.anchor_date - timedelta(days=1)
    credits, usage = org.credits_as_of(shared_server.now)
    burn = statistics.mean(org.daily_spend(newest - timedelta(days=i)) for i in range(7))
    assert (credits - usage) / burn < 7
    assert _event(shared_server, "low_runway")["end_date"] == newest


def test_topups_raise_total_credits_on_their_days(api, server):
    for topup in [e for e in server.org.events if e["event"] == "topups"]:
        day = topup["start_date"]
        server.set_now(datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(minutes=10))
        before = api.data("/credits")["total_credits"]
        server.set_now(datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
                       + timedelta(minutes=10))
        after = api.data("/credits")["total_credits"]
        assert after - before == pytest.approx(topup["amount_usd"])


def test_quiet_scenario_has_the_same_shape_and_no_events(quiet_server, shared_server):
    assert quiet_server.org.events == []
    assert [k.name for k in quiet_server.org.keys] == [k.name for k in shared_server.org.keys]
    assert [w.name for w in quiet_server.org.workspaces] == [w.name for w in shared_server.org.workspaces]
    org = quiet_server.org
    credits, usage = org.credits_as_of(quiet_server.now)
    newest = quiet_server.anchor_date - timedelta(days=1)
    burn = statistics.mean(org.daily_spend(newest - timedelta(days=i)) for i in range(7))
    assert (credits - usage) / burn > 30
    outage = _event(shared_server, "provider_outage")
    rows = org.activity(outage["start_date"], workspace_id=outage["workspace_id"])
    assert any(r["provider_name"] == outage["provider_name"] for r in rows)
