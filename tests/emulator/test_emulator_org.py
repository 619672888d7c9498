"""The synthetic organisation has the shape the pipeline's hard cases need, and is a pure function of its inputs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from openrouter_emulator import SyntheticOrg, build_org

ANCHOR = date(2026, 11, 20)


@pytest.fixture(scope="module")
def org() -> SyntheticOrg:
    return build_org("default", 42, ANCHOR)


def test_org_is_big_enough_to_exercise_pagination_and_scoping(org):
    assert len(org.workspaces) >= 4
    assert sum(w.is_default for w in org.workspaces) == 1
    assert len(org.keys) >= 120
    per_workspace = {w.id: sum(k.workspace_id == w.id for k in org.keys) for w in org.workspaces}
    assert max(per_workspace.values()) > 100
    assert all(count > 0 for count in per_workspace.values())
    assert len({k.hash for k in org.keys}) == len(org.keys)
    assert all(len(k.hash) == 64 and int(k.hash, 16) >= 0 for k in org.keys)


def test_catalogue_has_realistic_models_and_providers(org):
    assert len(org.models) >= 15
    assert len(org.providers) >= 8
    ids = {m.id for m in org.models}
    assert {"openai/gpt-4.1", "openai/gpt-4.1-mini", "anthropic/claude-opus-4", "google/gemini-2.5-flash",
            "meta-llama/llama-3.3-70b-instruct", "openrouter/auto"} <= ids
    assert sum(m.is_free for m in org.models) >= 2
    assert all(m.prompt == "0" and m.completion == "0" for m in org.models if m.is_free)
    provider_names = {p.name for p in org.providers}
    for model in org.models:
        if not model.is_router:
            assert 1 <= len(model.providers) <= 3
            assert {name for name, _ in model.providers} <= provider_names


def test_key_population_includes_the_awkward_cases(org):
    now = datetime.combine(ANCHOR, datetime.min.time(), tzinfo=UTC) + timedelta(minutes=5)
    assert any(k.disabled_at_time(now) for k in org.keys)
    assert any(k.expired_at_time(now) for k in org.keys)
    never_used = [k for k in org.keys if org.key_usage_as_of(k.hash, now)["last_used_at"] is None]
    assert never_used
    idle = [k for k in org.keys if (last := org.key_usage_as_of(k.hash, now)["last_used_at"]) is not None
            and now - last > timedelta(days=14)]
    assert "legacy-chat-prod" in {k.name for k in idle}
    scratch = org.key_by_name("tmp-alice-laptop")
    assert scratch.workspace_id == org.default_workspace.id
    recent_days = [ANCHOR - timedelta(days=i) for i in range(1, 15)]
    assert sum(org.key_daily_spend(scratch.hash, d) > 0 for d in recent_days) >= 8
    assert any(k.byok_provider for k in org.keys)
    assert any(k.external_user for k in org.keys)


def test_most_keys_are_active_on_a_typical_day(org):
    day = ANCHOR - timedelta(days=3)
    active_keys = set(org.key_rows(day))
    assert len(active_keys) > 0.5 * len(org.keys)


def test_per_day_values_do_not_depend_on_generation_order():
    forward = SyntheticOrg("default", 42, ANCHOR)
    backward = SyntheticOrg("default", 42, ANCHOR)
    days = forward.span_days()
    for day in days:
        forward.key_rows(day)
    for day in reversed(days):
        backward.key_rows(day)
    for day in days[::15]:
        assert forward.activity(day) == backward.activity(day)
        assert forward.generations(day) == backward.generations(day)


def test_quiet_scenario_differs_only_where_events_act():
    default, quiet = build_org("default", 42, ANCHOR), build_org("quiet", 42, ANCHOR)
    untouched = default.key_by_name("tmp-alice-laptop").hash
    day = ANCHOR - timedelta(days=5)
    assert default.activity(day, api_key_hash=untouched) == quiet.activity(day, api_key_hash=untouched)
    assert default.activity(ANCHOR - timedelta(days=60)) == quiet.activity(ANCHOR - timedelta(days=60))


def test_data_stays_inside_the_span(org):
    assert org.activity(ANCHOR) == []
    assert org.activity(ANCHOR - timedelta(days=91)) == []
    assert org.activity(ANCHOR - timedelta(days=90))


def test_unknown_scenario_is_rejected():
    with pytest.raises(ValueError, match="scenario 'chaos'.*default"):
        SyntheticOrg("chaos", 42, ANCHOR)


def test_a_scenario_is_a_world_of_its_own():
    from openrouter_emulator.catalog import KEY_SPECS, WORKSPACES
    from openrouter_emulator.scenarios import Scenario

    small = Scenario("two-keys", "one project, two keys", workspaces=WORKSPACES[:2],
                     keys=tuple(s for s in KEY_SPECS if s.workspace == "support-bot")[:2],
                     request_logging={"support-bot": "plain"}, logged_requests_per_key_day=3)
    world = SyntheticOrg(small, 42, ANCHOR)
    assert world.scenario == "two-keys" and world.events == []
    assert [k.name for k in world.keys] == ["support-bot-prod", "support-bot-staging"]
    day = ANCHOR - timedelta(days=3)
    per_key = {}
    for entry in world.app_request_log(day):
        per_key[entry["workflow"]] = per_key.get(entry["workflow"], 0) + 1
    assert per_key and max(per_key.values()) == 3


def test_a_scenario_must_name_what_exists():
    from openrouter_emulator.scenarios import Scenario

    with pytest.raises(ValueError, match="unknown workspaces"):
        Scenario("bad", "", request_logging={"nowhere": "plain"})
    with pytest.raises(ValueError, match="logging modes"):
        Scenario("bad", "", request_logging={"search": "everything"})


def test_app_request_log_matches_generations(org):
    day = ANCHOR - timedelta(days=2)
    log = org.app_request_log(day)
    assert [entry["generation_id"] for entry in log] == org.generation_ids(day)
    hashes = {k.hash for k in org.keys}
    assert all(entry["api_key_hash"] in hashes for entry in log)
    model_fallbacks = [e for e in log if e["requested_model"] != org.generation(e["generation_id"])["model"]]
    assert all(e["requested_models"] for e in model_fallbacks)


def test_records_read_as_python_values_or_as_api_json(org):
    key = org.key_by_name("support-bot-prod")
    assert isinstance(key.created_at, datetime)
    assert key["created_at"] == key.created_at.isoformat(timespec="microseconds")
    assert key["hash"] == key.hash and key.get("missing") is None
    assert org.workspaces[0]["created_at"].endswith("+00:00")
