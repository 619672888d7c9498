"""Raw partition loads: exact rows, idempotent reruns, clear errors that lose nothing, gaps."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from openrouter_spend.ingest.landing import LandingBatch
from openrouter_spend.ingest.load import LandingDataError, load_partition
from openrouter_spend.ingest.responses import RawResponse
from openrouter_spend.warehouse import build_staging, connect, migrate

DAY = date(2026, 11, 10)
KEY_A = "a" * 64
KEY_B = "b" * 64


def activity_row(model: str, usage: float, requests: int, day: str = "2026-11-10", **extra) -> dict:
    return {"date": day, "model": model, "model_permaslug": f"{model}-2025", "endpoint_id": f"ep-{model}",
            "provider_name": "OpenAI", "usage": usage, "byok_usage_inference": 0.0, "requests": requests,
            "prompt_tokens": 100 * requests, "completion_tokens": 10 * requests, "reasoning_tokens": 0,
            "cached_tokens": 0, **extra}


def land(home, run_id: str, responses: list[tuple[str, dict, object]], notes: dict | None = None,
         stamp: int = 0) -> None:
    batch = LandingBatch(home, DAY, run_id, "fixture")
    for offset, (endpoint, params, payload) in enumerate(responses):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        batch.land(RawResponse(endpoint, params, 200, body, "application/json",
                               datetime(2026, 11, 11, 0, 10, tzinfo=UTC) + timedelta(seconds=stamp + offset),
                               0.01, 1))
    batch.notes.update(notes or {})
    batch.commit()


def good_day(home, run_id: str, usage_a: float = 1.5) -> None:
    land(home, run_id, [
        ("/credits", {}, {"data": {"total_credits": 100.0, "total_usage": 40.0}}),
        ("/keys", {"workspace_id": "ws1", "include_disabled": "true", "include_expired": "true"},
         {"data": [{"hash": KEY_A, "name": "svc-a", "usage": 30.0}, {"hash": KEY_B, "name": "svc-b"}]}),
        ("/activity", {"date": "2026-11-10"},
         {"data": [activity_row("m1", usage_a, 3), activity_row("m2", 0.25, 1)]}),
        ("/activity", {"date": "2026-11-10", "api_key_hash": KEY_A},
         {"data": [activity_row("m1", usage_a, 3, unknown_new_field={"x": 1})]}),
        ("/activity", {"date": "2026-11-10", "api_key_hash": KEY_B},
         {"data": [activity_row("m2", 0.25, 1, day="2026-11-10 00:00:00")]}),
    ])


@pytest.fixture
def con(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        migrate(con)
        build_staging(con)
        yield con


def spend(con):
    return con.execute("select count(*), sum(usage_usd), sum(requests) from staging.stg_activity").fetchone()


def test_a_day_loads_into_raw_and_typed_staging(con, tmp_path):
    good_day(tmp_path, "run1")
    result = load_partition(con, tmp_path, DAY, "run1")
    assert result.row_counts == {"credits": 1, "workspaces": 0, "keys": 2, "models": 0, "model_endpoints": 0,
                                 "providers": 0, "activity": 4}
    assert spend(con) == (2, 1.75, 4)
    # The 'YYYY-MM-DD 00:00:00' date form and unknown fields are both tolerated; unknown fields are kept.
    assert con.execute("select usage_date from staging.stg_activity where api_key_hash = ?",
                       [KEY_B]).fetchone()[0] == DAY
    assert con.execute("select payload ->> '$.unknown_new_field.x' from raw.activity where api_key_hash = ?",
                       [KEY_A]).fetchone()[0] == "1"
    assert con.execute("select balance_usd from staging.stg_credits").fetchone()[0] == 60.0


def test_rerunning_a_day_replaces_it(con, tmp_path):
    good_day(tmp_path, "run1")
    load_partition(con, tmp_path, DAY, "run1")
    before = spend(con)
    load_partition(con, tmp_path, DAY, "run1")
    assert spend(con) == before
    good_day(tmp_path, "run2", usage_a=2.5)
    load_partition(con, tmp_path, DAY, "run2")
    assert spend(con) == (2, 2.75, 4)
    assert con.execute("select count(*) from raw.activity").fetchone()[0] == 4
    assert con.execute("select count(*) from meta.load_runs").fetchone()[0] == 3


@pytest.mark.parametrize(("payload", "message"), [
    (b'{"data": [', "not valid JSON"),
    (b"<html>502 Bad Gateway</html>", "not valid JSON"),
    ({"rows": []}, "no 'data' member"),
    ({"data": [{"date": "2026-11-10", "model": "m"}]}, "has no 'model_permaslug'"),
    ({"data": [activity_row("m1", "0.5", 1)]}, r"data\[0\].usage should be int/float"),
    ({"data": [activity_row("m1", 0.5, 1, day="2026-11-09")]}, "outside partition 2026-11-10"),
])
def test_a_bad_response_names_the_file_and_field_and_keeps_the_stored_day(con, tmp_path, payload, message):
    good_day(tmp_path, "run1")
    load_partition(con, tmp_path, DAY, "run1")
    before = spend(con)
    land(tmp_path, "run2", [("/activity", {"date": "2026-11-10", "api_key_hash": KEY_A}, payload)])
    with pytest.raises(LandingDataError, match=message) as failure:
        load_partition(con, tmp_path, DAY, "run2")
    assert str(tmp_path) in str(failure.value)
    assert "api_key_hash=" + KEY_A in str(failure.value)
    assert spend(con) == before


def test_a_day_outside_the_window_is_a_gap_and_never_erases_an_earlier_load(con, tmp_path):
    gap = {"gaps": [{"endpoint": "/activity", "reason": "outside the 30-day window"}]}
    land(tmp_path, "late-run", [], notes=gap)
    result = load_partition(con, tmp_path, DAY, "late-run")
    assert result.status == "gap"
    assert con.execute("select endpoint from meta.extraction_gaps").fetchall() == [("/activity",)]
    assert spend(con)[0] == 0

    con.execute("delete from meta.extraction_gaps")
    good_day(tmp_path, "run1")
    load_partition(con, tmp_path, DAY, "run1")
    before = spend(con)
    land(tmp_path, "much-later", [], notes=gap)
    assert load_partition(con, tmp_path, DAY, "much-later").status == "gap"
    assert spend(con) == before
    assert con.execute("select count(*) from meta.extraction_gaps").fetchone()[0] == 0


def test_a_run_without_committed_batches_is_an_error(con, tmp_path):
    with pytest.raises(LandingDataError, match="no committed landing batches"):
        load_partition(con, tmp_path, DAY, "nothing")


def test_newer_fields_missing_from_an_older_server_are_null_not_zero(con, tmp_path):
    row = activity_row("m1", 0.5, 2)
    del row["cached_tokens"]
    land(tmp_path, "old-server", [("/activity", {"date": "2026-11-10", "api_key_hash": KEY_A}, {"data": [row]})])
    load_partition(con, tmp_path, DAY, "old-server")
    assert con.execute("select cached_tokens, byok_requests, prompt_tokens from staging.stg_activity").fetchone() \
        == (None, None, 200)


def endpoints_answer(*providers: tuple[str, str, str, float]) -> dict:
    """A /models/{id}/endpoints answer (openrouter-api.md §2.8) with (provider, prompt, completion, uptime)."""
    return {"data": {"id": "vendor/open", "name": "Open", "created": 1, "description": "", "architecture": {},
                     "endpoints": [{"name": f"{name} | vendor/open", "model_id": "vendor/open-2025",
                                    "model_name": "Open", "provider_name": name, "tag": name.lower(),
                                    "pricing": {"prompt": prompt, "completion": completion, "request": "0"},
                                    "status": 0, "uptime_last_5m": 100, "uptime_last_30m": 99.9,
                                    "uptime_last_1d": uptime, "latency_last_30m": None}
                                   for name, prompt, completion, uptime in providers]}}


ENDPOINTS = "/models/vendor/open/endpoints"


def test_model_endpoints_load_one_row_per_provider_and_stage_per_mtok(con, tmp_path):
    good_day(tmp_path, "run1")
    land(tmp_path, "run1", [(ENDPOINTS, {}, endpoints_answer(("ProviderA", "0.000001", "0.000002", 99.5),
                                                             ("ProviderB", "0.0000006", "0.0000015", 98.0)))],
         stamp=60)
    result = load_partition(con, tmp_path, DAY, "run1")
    assert result.row_counts["model_endpoints"] == 2
    assert con.execute(
        "select provider_name, model_permaslug, prompt_price_per_mtok_usd, completion_price_per_mtok_usd, "
        "request_price_usd, uptime_last_1d from staging.stg_model_endpoints order by provider_name").fetchall() == [
        ("ProviderA", "vendor/open-2025", pytest.approx(1.0), pytest.approx(2.0), 0.0, 99.5),
        ("ProviderB", "vendor/open-2025", pytest.approx(0.6), pytest.approx(1.5), 0.0, 98.0)]
    assert con.execute("select count(*) from meta.landed_files where endpoint = ?", [ENDPOINTS]).fetchone()[0] == 1


@pytest.mark.parametrize(("payload", "message"), [
    ({"data": []}, "'data' should be"),
    ({"data": {"id": "vendor/open"}}, r"data.endpoints should be a list"),
    (endpoints_answer(("ProviderA", "free", "0.000002", 99.5)), r"data.endpoints\[0\].pricing.prompt should be a price"),
    (endpoints_answer(("ProviderA", "0.000001", "0.000002", "99%")), r"data.endpoints\[0\].uptime_last_1d should be"),
])
def test_a_malformed_endpoints_answer_names_the_field_and_keeps_the_stored_day(con, tmp_path, payload, message):
    good_day(tmp_path, "run1")
    land(tmp_path, "run1", [(ENDPOINTS, {}, endpoints_answer(("ProviderA", "0.000001", "0.000002", 99.5)))],
         stamp=60)
    load_partition(con, tmp_path, DAY, "run1")
    before = con.execute("select count(*) from raw.model_endpoints").fetchone()[0], spend(con)
    land(tmp_path, "run2", [(ENDPOINTS, {}, payload)])
    with pytest.raises(LandingDataError, match=message) as failure:
        load_partition(con, tmp_path, DAY, "run2")
    assert ENDPOINTS in str(failure.value)
    assert (con.execute("select count(*) from raw.model_endpoints").fetchone()[0], spend(con)) == before == (1, before[1])
