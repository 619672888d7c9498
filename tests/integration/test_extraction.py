"""One day's extraction against the emulator: the skip rule never loses spend, and calls are counted."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, time, timedelta

import pytest

from openrouter_emulator import EmulatorServer, build_org
from openrouter_spend.config.settings import ExtractionSettings
from openrouter_spend.ingest.client import OpenRouterClient
from openrouter_spend.ingest.extract import (
    KeyInfo,
    fetch_account_activity,
    fetch_key_activity,
    fetch_model_endpoints,
    fetch_snapshots,
    plan_key_activity,
    reconcile_key_activity,
)
from openrouter_spend.ingest.landing import LandingBatch


def replay_clock(day):
    return datetime.combine(day + timedelta(days=1), time(0, 10), tzinfo=UTC)


@pytest.fixture
def server():
    with EmulatorServer(scenario="default") as emulator:
        yield emulator


@pytest.fixture
def client(server):
    with OpenRouterClient(server.base_url, server.management_key,
                          ExtractionSettings(requests_per_second=10_000)) as api:
        yield api


def test_skipped_keys_never_had_activity_on_any_day_of_the_history():
    org = build_org("default")
    for day in org.span_days()[1:]:
        now = replay_clock(day)
        keys = [KeyInfo.from_item(org.key_item(key, now)) for key in org.keys if key.exists_at(now)]
        _, skipped = plan_key_activity(keys, day)
        active = set(org.key_rows(day))
        assert not active & set(skipped), f"{day}: skipped keys with activity {active & set(skipped)}"
        assert skipped, f"{day}: nothing skipped; the rule saves no calls"


def test_one_day_extracts_all_spend_with_fewer_calls_than_keys(server, client, tmp_path):
    day = server.now.date() - timedelta(days=2)
    server.set_now(replay_clock(day))
    server.reset_requests()
    batch = LandingBatch(tmp_path, day, "run", "test")
    window = fetch_account_activity(client, batch, day)
    keys = fetch_snapshots(client, batch)
    fetch, skipped = plan_key_activity(keys, day)
    fetched = fetch_key_activity(client, batch, day, fetch, concurrency=4)
    summary = reconcile_key_activity(client, batch, day, window.totals, fetched, list(skipped), 4)

    assert summary["refetched_keys"] == 0
    assert fetched.usage_usd == pytest.approx(server.org.daily_spend(day), abs=1e-6)
    assert fetched.covers(window.totals)
    calls = len(server.requests)
    key_pages = sum(1 for r in server.requests if r["path"] == "/keys")
    used_models = {row.model_id for _, row in server.org.iter_key_rows(day) if not row.model_id.endswith(":free")}
    # credits, workspaces, key pages, models, one endpoints call per model used, providers, account activity,
    # one call per fetched key.
    assert calls == 1 + 1 + key_pages + 1 + len(used_models) + 1 + 1 + len(fetch)
    assert key_pages > len(client.workspaces()), "a workspace with more than 100 keys needs a second page"
    assert len(fetch) < len(keys)
    print(json.dumps({"day": str(day), "calls": calls, "keys_listed": len(keys),
                      "key_activity_calls": len(fetch), "skipped": len(skipped),
                      "model_endpoints_calls": len(used_models)}))


def test_provider_prices_are_fetched_only_for_the_models_used_that_day(server, client, tmp_path):
    day = server.now.date() - timedelta(days=2)
    server.set_now(replay_clock(day))
    account = LandingBatch(tmp_path, day, "run", "account_activity")
    fetch_account_activity(client, account, day)
    account.commit()
    server.reset_requests()
    batch = LandingBatch(tmp_path, day, "run", "snapshots")
    fetch_snapshots(client, batch)
    batch.commit()

    used = sorted({row.model_id for _, row in server.org.iter_key_rows(day) if not row.model_id.endswith(":free")})
    assert 0 < len(used) < len(server.org.models)
    endpoint_paths = sorted(r["path"] for r in server.requests if r["path"].endswith("/endpoints"))
    assert endpoint_paths == sorted(f"/models/{model}/endpoints" for model in used)
    assert batch.notes["model_endpoints"]["models_used"] == len(used)
    landed = {obj.endpoint: obj for obj in batch.objects if obj.endpoint.endswith("/endpoints")}
    assert set(landed) == set(endpoint_paths)
    deepseek = landed["/models/deepseek/deepseek-chat-v3-0324/endpoints"]
    body = json.loads(gzip.decompress((batch.directory / deepseek.file).read_bytes()))
    prices = {e["provider_name"]: e["pricing"]["prompt"] for e in body["data"]["endpoints"]}
    # The providers in use carry the catalogue price; the spread comes from the other hosts.
    assert prices == {"DeepSeek": "0.00000025", "DeepInfra": "0.00000025", "Fireworks": "0.00000025",
                      "Chutes": "0.00000018", "Together": "0.00000125"}


def test_a_model_without_an_endpoint_list_is_noted_not_fatal(server, client, tmp_path):
    batch = LandingBatch(tmp_path, server.now.date() - timedelta(days=2), "run", "snapshots")
    server.reset_requests()
    summary = fetch_model_endpoints(client, batch, ["openai/gpt-4.1", "vendor/withdrawn", "gpt-4", "a/b?c=d"])
    assert summary == {"models_used": 4, "fetched": 1, "not_fetched": ["vendor/withdrawn", "gpt-4", "a/b?c=d"]}
    assert [obj.endpoint for obj in batch.objects] == ["/models/openai/gpt-4.1/endpoints"]
    # An id that is not 'author/slug' is never turned into a URL.
    assert [r["path"] for r in server.requests] == ["/models/openai/gpt-4.1/endpoints", "/models/vendor/withdrawn/endpoints"]


def test_a_wrong_skip_is_caught_by_reconciliation_and_refetched(server, client, tmp_path):
    day = server.now.date() - timedelta(days=2)
    server.set_now(replay_clock(day))
    batch = LandingBatch(tmp_path, day, "run", "test")
    window = fetch_account_activity(client, batch, day)
    keys = fetch_snapshots(client, batch)
    fetch, skipped = plan_key_activity(keys, day)
    # A server whose last_used_at lags would make us skip active keys: simulate it by dropping five.
    wrongly_skipped = fetch[:5]
    fetched = fetch_key_activity(client, batch, day, fetch[5:], concurrency=4)
    assert not fetched.covers(window.totals)

    summary = reconcile_key_activity(client, batch, day, window.totals, fetched,
                                     list(skipped) + wrongly_skipped, 4)
    assert summary["refetched_keys"] == len(skipped) + 5
    assert summary["unattributed"]["usage_usd"] == pytest.approx(0, abs=1e-6)
    assert summary["keys"]["usage_usd"] == pytest.approx(server.org.daily_spend(day), abs=1e-6)
