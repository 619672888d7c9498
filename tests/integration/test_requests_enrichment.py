"""/generation enrichment against the emulator over HTTP: 404 lag, pending retries, give-up, rate limits, idempotency."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, time, timedelta

import pytest

from openrouter_spend import enrich, requests_log
from openrouter_spend.client import OpenRouterClient
from openrouter_spend.emulator import EmulatorServer, FaultRule
from openrouter_spend.settings import ExtractionSettings
from openrouter_spend.warehouse import connect, migrate

BOGUS = "gen-1795478402-NeverExistedAtAll000"


class Sleeps(list):
    """Records the client's waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def lagging_emulator(monkeypatch):
    """An emulator whose /generation answers 404 for ten minutes after a generation is created."""
    with EmulatorServer(scenario="default", generation_lag_seconds=600) as server:
        monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENROUTER_MANAGEMENT_KEY", server.management_key)
        monkeypatch.delenv("AIRFLOW_CONN_OPENROUTER_DEFAULT", raising=False)
        yield server


def _write_log(home, day, ids_and_times):
    root = home / "landing" / "requests" / "app"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{day}.jsonl").write_text("".join(
        json.dumps({"generation_id": gid, "created_at": at.isoformat(), "project": "search",
                    "requested_model": "openai/gpt-4.1-mini"}) + "\n" for gid, at in ids_and_times))


def _run(day, run_id, settings, client=None):
    with connect() as con:
        migrate(con)
        requests_log.ingest(con)
        plan = enrich.plan_enrichment(con, day, run_id, settings)
    called = enrich.enrich_pending(day, run_id, settings, client=client)
    with connect() as con:
        loaded = enrich.load_enrichment(con, day, run_id, settings)
    return plan, called, loaded


def _queue(home):
    with connect(read_only=True) as con:
        return {gid: (status, attempts, http) for gid, status, attempts, http in con.execute(
            "select generation_id, status, attempts, last_http_status from meta.generation_queue").fetchall()}


def test_404_lag_is_retried_by_later_runs_and_unknown_ids_become_unavailable(spend_home, lagging_emulator):
    server = lagging_emulator
    day = server.anchor_date - timedelta(days=3)
    late = datetime.combine(day, time(23, 58), tzinfo=UTC)
    live_id = server.add_live_generation(model="openai/gpt-4.1-mini", created_at=late)
    early_ids = server.org.generation_ids(day)[:2]
    records = {gid: server.org.generation(gid) for gid in early_ids}
    _write_log(spend_home, day, [(gid, datetime.fromisoformat(records[gid]["created_at"])) for gid in early_ids]
               + [(live_id, late), (BOGUS, late)])
    settings = enrich.EnrichmentSettings(daily_call_budget=50, give_up_days=2, requests_per_second=1000)

    server.set_now(datetime.combine(day + timedelta(days=1), time(0, 5), tzinfo=UTC))  # 7 minutes after `late`
    plan, called, loaded = _run(day, "run-1", settings)
    assert (plan["calls_planned"], called["fetched"], called["not_found"]) == (4, 2, 2)
    assert _queue(spend_home) == {early_ids[0]: ("fetched", 1, 200), early_ids[1]: ("fetched", 1, 200),
                                  live_id: ("pending", 1, 404), BOGUS: ("pending", 1, 404)}

    server.set_now(datetime.combine(day + timedelta(days=2), time(0, 5), tzinfo=UTC))
    plan, called, loaded = _run(day + timedelta(days=1), "run-2", settings)
    assert (plan["retries"], plan["new_ids"], called["fetched"], called["not_found"]) == (2, 0, 1, 1)
    assert _queue(spend_home)[live_id] == ("fetched", 2, 200)
    assert _queue(spend_home)[BOGUS] == ("pending", 2, 404)

    plan, called, loaded = _run(day + timedelta(days=2), "run-3", settings)
    assert loaded["now_unavailable"] == 1
    assert _queue(spend_home)[BOGUS] == ("unavailable", 3, 404)  # recorded, not dropped
    assert _run(day + timedelta(days=3), "run-4", settings)[0]["calls_planned"] == 0

    # The landed body is exactly what the server sent; raw.generations holds it parsed.
    with connect(read_only=True) as con:
        stored = dict(con.execute("select generation_id, payload from raw.generations").fetchall())
    assert json.loads(stored[early_ids[0]]) == records[early_ids[0]]
    assert set(stored) == {*early_ids, live_id}


def test_enrichment_is_idempotent_per_run(spend_home, emulator):
    day = emulator.anchor_date - timedelta(days=2)
    ids = emulator.org.generation_ids(day)[:5]
    _write_log(spend_home, day, [(gid, datetime.combine(day, time(1), tzinfo=UTC)) for gid in ids])
    settings = enrich.EnrichmentSettings(daily_call_budget=50, requests_per_second=1000)
    _run(day, "run-1", settings)
    with connect(read_only=True) as con:
        before = con.execute("select * from raw.generations order by all").fetchall()
    queue_before = _queue(spend_home)
    calls_before = len(emulator.requests)
    # A retried task: no new calls for records already landed, the same rows, no double-counted attempts.
    assert enrich.enrich_pending(day, "run-1", settings)["already_landed"] == 5
    assert len(emulator.requests) == calls_before
    with connect() as con:
        enrich.load_enrichment(con, day, "run-1", settings)
        assert con.execute("select * from raw.generations order by all").fetchall() == before
    assert _queue(spend_home) == queue_before


def test_rate_limits_are_waited_out_as_told_with_bounded_concurrency(spend_home, emulator):
    day = emulator.anchor_date - timedelta(days=2)
    ids = emulator.org.generation_ids(day)[:12]
    _write_log(spend_home, day, [(gid, datetime.combine(day, time(1), tzinfo=UTC)) for gid in ids])
    settings = enrich.EnrichmentSettings(daily_call_budget=50, concurrency=3, requests_per_second=1000)
    with connect() as con:
        migrate(con)
        requests_log.ingest(con)
        enrich.plan_enrichment(con, day, "run-1", settings)
    emulator.set_faults([FaultRule("rate_limit", path_prefix="/generation", times=2, retry_after=4)])
    sleeps = Sleeps()
    client = OpenRouterClient(emulator.base_url, emulator.management_key,
                              ExtractionSettings(max_retries=3, requests_per_second=1000), sleep=sleeps)
    in_flight, peak, lock = [0], [0], threading.Lock()
    original = client.request

    def counting(*args, **kwargs):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    client.request = counting
    result = enrich.enrich_pending(day, "run-1", settings, client=client)
    assert result["fetched"] == 12
    assert sleeps.count(4.0) == 2  # both 429s waited exactly the Retry-After the server sent
    statuses = [r["status"] for r in emulator.requests if r["path"] == "/generation"]
    assert statuses.count(429) == 2 and statuses.count(200) == 12
    assert peak[0] <= 3


def test_the_client_gets_the_enrichment_rate_and_pool(spend_home, emulator, monkeypatch):
    import openrouter_spend.client as client_module

    day = emulator.anchor_date - timedelta(days=2)
    _write_log(spend_home, day, [(emulator.org.generation_ids(day)[0], datetime.combine(day, time(1), tzinfo=UTC))])
    settings = enrich.EnrichmentSettings(concurrency=2, requests_per_second=7.5)
    with connect() as con:
        migrate(con)
        requests_log.ingest(con)
        enrich.plan_enrichment(con, day, "run-1", settings)
    built = []
    real = client_module.client_from_environment

    def spy(extraction=None):
        built.append(extraction)
        return real(extraction)

    monkeypatch.setattr(client_module, "client_from_environment", spy)
    assert enrich.enrich_pending(day, "run-1", settings)["fetched"] == 1
    assert (built[0].requests_per_second, built[0].key_activity_concurrency) == (7.5, 2)
