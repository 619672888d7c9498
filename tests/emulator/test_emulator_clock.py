"""The emulator's clocks (the real API's wall clock by default, the replay clock on request), stalls, and the
realapi world whose applications log every request at costs that add up to /activity exactly."""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
import requests

from openrouter_emulator import EmulatorServer, FaultRule, build_org
from openrouter_emulator.catalog import MODEL_BY_ID
from openrouter_emulator.org import NANO, ActivityRow, exact_requests, split_exactly

ANCHOR = date(2026, 11, 20)


def get(server: EmulatorServer, path: str, **params) -> requests.Response:
    return requests.get(server.base_url + path, params=params, timeout=10,
                        headers={"Authorization": f"Bearer {server.management_key}"})


def all_keys(server: EmulatorServer, workspace_id: str) -> list[dict]:
    items, offset = [], 0
    while True:
        page = get(server, "/keys", workspace_id=workspace_id, include_disabled="true", include_expired="true",
                   offset=offset).json()["data"]
        items += page
        offset += len(page)
        if len(page) < 100:
            return items


def test_the_wall_clock_is_the_default_and_its_date_header_is_real_time():
    with EmulatorServer() as server:  # anchor: today
        assert server.clock_mode == "wall"
        served = parsedate_to_datetime(get(server, "/credits").headers["Date"])
        assert abs(served - datetime.now(UTC)) < timedelta(seconds=5)
        info = requests.get(server.control_url + "/info", timeout=5).json()
        assert info["clock"] == "wall"
    with EmulatorServer(anchor_date=ANCHOR) as server:  # another anchor: the real time of day on that date
        real = datetime.now(UTC)
        assert server.now.date() == ANCHOR
        assert abs((server.now - real) - timedelta(days=(ANCHOR - real.date()).days)) < timedelta(seconds=5)


def test_wall_clock_snapshots_describe_now_with_the_current_days_spend_so_far():
    noon = datetime.combine(ANCHOR - timedelta(days=3), datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    with EmulatorServer(anchor_date=ANCHOR, now=noon) as server:
        org = server.org
        day = noon.date()
        keys = {item["hash"]: item for workspace in org.workspaces for item in all_keys(server, workspace.id)}
        credits = get(server, "/credits").json()["data"]
        elapsed = (server.now - noon).total_seconds() + 12 * 3600
        so_far = {h: u for h, (u, _) in org.usage_so_far_today(server.now).items()}
        # Half a day in: each active key has spent about half of its day, and /keys says so in usage_daily.
        busy = org.key_by_name("support-bot-prod")
        assert so_far[busy.hash] / NANO == pytest.approx(org.key_daily_spend(busy.hash, day) * elapsed / 86400,
                                                         rel=1e-3)
        # (the clock ticks between the calls: a cent of tolerance covers the seconds between them)
        assert keys[busy.hash]["usage_daily"] == pytest.approx(so_far[busy.hash] / NANO, abs=1e-2)
        completed = org.key_usage_as_of(busy.hash, server.now)["usage"]
        assert keys[busy.hash]["usage"] == pytest.approx(completed + keys[busy.hash]["usage_daily"], abs=1e-6)
        assert keys[busy.hash]["last_used_at"].startswith(day.isoformat())
        # /credits counts the same partial day: total usage less every key's usage_daily is the end of yesterday.
        end_of_yesterday = org.credits_as_of(server.now)[1]
        assert credits["total_usage"] - sum(k["usage_daily"] for k in keys.values()) == \
            pytest.approx(end_of_yesterday, abs=1e-2)
        assert credits["total_usage"] > end_of_yesterday
        # /activity still never serves the current day.
        assert get(server, "/activity", date=day.isoformat()).status_code == 400


def test_the_wall_clock_counts_the_anchor_days_spend_although_activity_never_serves_it():
    with EmulatorServer(anchor_date=ANCHOR,
                        now=datetime.combine(ANCHOR, datetime.min.time(), tzinfo=UTC) + timedelta(hours=6)) as server:
        key = server.org.key_by_name("support-bot-prod")
        item = get(server, f"/keys/{key.hash}").json()["data"]
        assert item["usage_daily"] > 0
        assert get(server, "/activity", date=ANCHOR.isoformat()).status_code == 400


def test_the_replay_clock_snapshots_the_start_of_its_day():
    with EmulatorServer(anchor_date=ANCHOR, clock="replay") as server:
        assert server.now.date() == ANCHOR and server.now.hour == 0
        key = server.org.key_by_name("support-bot-prod")
        assert get(server, f"/keys/{key.hash}").json()["data"]["usage_daily"] == 0
        assert tuple(get(server, "/credits").json()["data"].values()) == server.org.credits_as_of(server.now)
    with pytest.raises(ValueError, match="unknown emulator clock"):
        EmulatorServer(clock="sundial")


def test_every_hits_one_matching_request_in_n_and_the_rest_fall_through(monkeypatch):
    with EmulatorServer(anchor_date=ANCHOR, clock="replay") as server:
        server.set_faults([FaultRule("server_error", path_prefix="/credits", every=3, status=503),
                           FaultRule("rate_limit", path_prefix="/credits", times=1)])
        statuses = [get(server, "/credits").status_code for _ in range(7)]
        assert statuses == [429, 200, 503, 200, 200, 503, 200]
    with pytest.raises(ValueError, match="every"):
        FaultRule("slow", every=0)


def test_a_stall_holds_one_answer_in_n_and_is_released_when_the_server_stops():
    server = EmulatorServer(anchor_date=ANCHOR, clock="replay").start()
    server.set_faults([FaultRule("slow", path_prefix="/credits", every=2, delay_seconds=35)])
    assert get(server, "/credits").status_code == 200
    with pytest.raises(requests.Timeout):
        requests.get(server.base_url + "/credits", timeout=0.5,
                     headers={"Authorization": f"Bearer {server.management_key}"})
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 10


def test_split_exactly_is_proportional_and_adds_up():
    assert split_exactly(10, [1, 1, 1]) == [4, 3, 3]
    assert split_exactly(7, [0, 0]) == [4, 3]
    assert split_exactly(0, [2.0, 5.0]) == [0, 0]
    parts = split_exactly(1_000_000_007, [random.Random(i).random() for i in range(50)])
    assert sum(parts) == 1_000_000_007 and min(parts) >= 0


def test_exact_requests_add_up_to_the_row_with_byok_apart():
    row = ActivityRow("google/gemini-2.5-flash", "endpoint", "Google AI Studio", 40, 72_000, 2_400, 0, 0,
                      usage_nanos=3_117_045, byok_nanos=20_411_700, byok_requests=38)
    shares = exact_requests(random.Random(1), row, MODEL_BY_ID[row.model_id])
    assert len(shares) == 40 and sum(s.is_byok for s in shares) == 38
    assert sum(s.credits_nanos for s in shares) == row.usage_nanos
    assert sum(s.byok_nanos for s in shares) == row.byok_nanos
    assert all(s.byok_nanos == 0 for s in shares if not s.is_byok)
    assert sum(s.prompt_tokens for s in shares) == row.prompt_tokens
    assert sum(s.completion_tokens for s in shares) == row.completion_tokens
    # BYOK requests pay only the fee in credits: far less than a request on OpenRouter's capacity.
    fee = max(s.credits_nanos for s in shares if s.is_byok)
    assert fee < min(s.credits_nanos for s in shares if not s.is_byok)


def test_realapi_logs_every_request_at_costs_that_add_up_to_each_activity_cell():
    org = build_org("realapi", anchor_date=ANCHOR)
    assert org.world.logged_requests_per_key_day is None and org.world.generation_call_budget is None
    day = ANCHOR - timedelta(days=2)
    records = {r["id"]: r for r in org.generations(day)}
    log = org.app_request_log(day)
    assert [entry["generation_id"] for entry in log] == list(records)
    cells: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for key, record in org.generations_with_keys(day):
        cell = cells[(key.hash, record["model"], record["provider_name"])]
        cell[0] += 1
        cell[1] += record["total_cost"]
        cell[2] += record["upstream_inference_cost"] or 0.0
    activity = {}
    for key in org.keys:
        for row in org.activity(day, api_key_hash=key.hash):
            activity[(key.hash, row["model"], row["provider_name"])] = row
    assert set(cells) == set(activity)
    for cell, (count, cost, byok) in cells.items():
        assert count == activity[cell]["requests"]
        assert math.isclose(cost, activity[cell]["usage"], abs_tol=1e-9)
        assert math.isclose(byok, activity[cell]["byok_usage_inference"], abs_tol=1e-9)
    assert {entry["project"] for entry in log} == {"atlas", "ledger", "labs", "Default"} & \
        {entry["project"] for entry in log}
    assert dict(org.world.request_logging) == {"atlas": "metadata", "ledger": "plain"}
    # Fallbacks happen at the world's rates: a few provider fallbacks and the BYOK key's fallbacks to credits.
    attempts = [len(r["provider_responses"]) for r in records.values()]
    assert 0 < sum(a > 1 for a in attempts) < len(attempts) * 0.2
