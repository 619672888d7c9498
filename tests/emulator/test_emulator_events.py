"""Each planted event shows up in the API data it should affect, and the quiet scenario has none of them."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

EVENT_NAMES = {"provider_outage", "premium_drift", "release_spend_jump", "runaway_loop", "low_runway", "topups",
               "price_change"}
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


def _per_mtok(pricing: dict, name: str) -> float:
    return float(pricing[name]) * 1e6


def _model_activity(api, day, model_id: str) -> list[dict]:
    return [row for row in api.data("/activity", date=day.isoformat()) if row["model"] == model_id]


def _cost(rows: list[dict], pricing: dict) -> float:
    """What the rows' tokens cost at these prices (the repriced model offers no cache-read price)."""
    return sum(row["prompt_tokens"] * _per_mtok(pricing, "prompt") + row["completion_tokens"]
               * _per_mtok(pricing, "completion") for row in rows) / 1e6


def test_a_price_change_shows_in_models_only_from_its_instant(api, server):
    change = _event(server, "price_change")
    author, slug = change["model"].split("/")
    assert change["new_pricing"]["prompt"] != change["old_pricing"]["prompt"]
    # The clock ticks on from where it is set: a minute before the instant is still before it when answered.
    for moment, pricing in ((change["at"] - timedelta(minutes=1), change["old_pricing"]),
                            (change["at"], change["new_pricing"])):
        server.set_now(moment)
        listed = next(m for m in api.data("/models") if m["id"] == change["model"])
        assert {name: listed["pricing"].get(name) for name in pricing} == pricing
        assert api.data(f"/model/{author}/{slug}")["pricing"]["prompt"] == pricing["prompt"]
        endpoints = api.data(f"/models/{author}/{slug}/endpoints")["endpoints"]
        assert endpoints and {(e["pricing"]["prompt"], e["pricing"]["completion"]) for e in endpoints} == \
            {(pricing["prompt"], pricing["completion"])}


def test_activity_is_charged_the_price_in_force(shared_api, shared_server):
    change = _event(shared_server, "price_change")
    old, new = change["old_pricing"], change["new_pricing"]
    for day, pricing in ((change["start_date"] - timedelta(days=1), old), (change["start_date"] + timedelta(days=1), new)):
        rows = _model_activity(shared_api, day, change["model"])
        assert rows and not any(row["cached_tokens"] or row["byok_usage_inference"] for row in rows)
        assert sum(row["usage"] for row in rows) == pytest.approx(_cost(rows, pricing), abs=1e-6)
    # On the day of the change, the hours before the instant at the old price and the rest at the new one.
    rows = _model_activity(shared_api, change["start_date"], change["model"])
    at = change["at"]
    share_after = (datetime.combine(at.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC) - at) \
        / timedelta(days=1)
    blended = (1 - share_after) * _cost(rows, old) + share_after * _cost(rows, new)
    assert sum(row["usage"] for row in rows) == pytest.approx(blended, abs=1e-6)


def test_generations_are_charged_the_price_in_force_when_made(shared_server):
    change = _event(shared_server, "price_change")
    org = shared_server.org
    seen = set()
    for day in (change["start_date"] - timedelta(days=1), change["start_date"], change["start_date"] + timedelta(days=1)):
        for record in org.generations(day):
            if record["model"] != change["model"]:
                continue
            after = datetime.fromisoformat(record["created_at"]) >= change["at"]
            pricing = change["new_pricing"] if after else change["old_pricing"]
            listed = (record["native_tokens_prompt"] * float(pricing["prompt"])
                      + record["native_tokens_completion"] * float(pricing["completion"]))
            assert record["total_cost"] == pytest.approx(listed, abs=1e-9)
            seen.add(after)
    assert seen == {False, True}


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
