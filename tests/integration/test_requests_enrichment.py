"""/generation enrichment against the emulator over HTTP: 404 lag, pending retries, give-up, rate limits, idempotency."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, time, timedelta

import pytest

from openrouter_emulator import EmulatorServer, FaultRule
from openrouter_spend.config.settings import ExtractionSettings
from openrouter_spend.ingest import enrich, enrich_plan, requests_log
from openrouter_spend.ingest.client import OpenRouterClient
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
        plan = enrich_plan.plan_enrichment(con, day, run_id, settings)
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
        enrich_plan.plan_enrichment(con, day, "run-1", settings)
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
    import openrouter_spend.ingest.client as client_module

    day = emulator.anchor_date - timedelta(days=2)
    _write_log(spend_home, day, [(emulator.org.generation_ids(day)[0], datetime.combine(day, time(1), tzinfo=UTC))])
    settings = enrich.EnrichmentSettings(concurrency=2, requests_per_second=7.5)
    with connect() as con:
        migrate(con)
        requests_log.ingest(con)
        enrich_plan.plan_enrichment(con, day, "run-1", settings)
    built = []
    real = client_module.client_from_environment

    def spy(extraction=None):
        built.append(extraction)
        return real(extraction)

    monkeypatch.setattr(client_module, "client_from_environment", spy)
    assert enrich.enrich_pending(day, "run-1", settings)["fetched"] == 1
    assert (built[0].requests_per_second, built[0].key_activity_concurrency) == (7.5, 2)
    assert built[0].http_timeout_seconds == settings.read_timeout_seconds  # a /generation call waits 10 s at most


def _statuses(home) -> dict[str, str]:
    return {gid: status for gid, (status, _, _) in _queue(home).items()}


def _generation_ids() -> set[str]:
    with connect(read_only=True) as con:
        return {gid for (gid,) in con.execute("select generation_id from raw.generations").fetchall()}


def test_a_rerun_of_a_day_repairs_damaged_enrichment_state(tmp_path, emulator, monkeypatch):
    """Ids wrongly left not_sampled and lost queue rows (e.g. after two runs collided) are rebuilt by a rerun."""
    day = emulator.anchor_date - timedelta(days=2)
    ids = emulator.org.generation_ids(day)[:30]
    settings = enrich.EnrichmentSettings(daily_call_budget=20, requests_per_second=1000)
    homes = {}
    for name in ("clean", "damaged"):
        homes[name] = tmp_path / name
        monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(homes[name]))
        _write_log(homes[name], day, [(gid, datetime.combine(day, time(1), tzinfo=UTC)) for gid in ids])
        _run(day, "run-1", settings)
    clean = _statuses(homes["clean"])
    assert sorted(clean.values()).count("fetched") == 20 and sorted(clean.values()).count("not_sampled") == 10

    with connect() as con:  # the damaged home: 6 sampled ids wrongly not_sampled, 3 queue rows lost
        fetched = sorted(gid for gid, status in clean.items() if status == "fetched")
        wrongly_out, lost = fetched[:6], fetched[6:9]
        con.execute("update meta.generation_queue set status = 'not_sampled' "
                    "where list_contains(cast(? as varchar[]), generation_id)", [wrongly_out])
        con.execute("delete from raw.generations where list_contains(cast(? as varchar[]), generation_id)",
                    [wrongly_out])
        con.execute("delete from meta.generation_queue where list_contains(cast(? as varchar[]), generation_id)",
                    [lost])
    emulator.reset_requests()
    plan, called, _ = _run(day, "run-2", settings)
    assert (plan["calls_planned"], called["fetched"]) == (6, 6)  # only what the damage took away is fetched again
    assert _statuses(homes["damaged"]) == clean
    damaged_ids = _generation_ids()
    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(homes["clean"]))
    assert damaged_ids == _generation_ids()


def test_each_usage_day_has_its_own_budget_and_a_day_that_fits_is_a_census(spend_home, emulator):
    """A backfill with every log present before the first run: a run plans its own day, never the later ones."""
    first, second = emulator.anchor_date - timedelta(days=3), emulator.anchor_date - timedelta(days=2)
    root = spend_home / "landing" / "requests" / "app"
    for day, count in ((first, 12), (second, 30)):
        _write_log(spend_home, day, [(gid, datetime.combine(day, time(1), tzinfo=UTC))
                                     for gid in emulator.org.generation_ids(day)[:count]])
        (root / f"{day}.jsonl").rename(root / f"{day}-all.jsonl")  # both files present before the first run
    settings = enrich.EnrichmentSettings(daily_call_budget=20, requests_per_second=1000)
    plan, called, _ = _run(first, "run-1", settings)
    assert (plan["calls_planned"], plan["census"], plan["not_sampled"], called["fetched"]) == (12, True, 0, 12)
    assert set(plan["usage_days"]) == {first.isoformat()}  # the later day's ids wait for their own run
    plan, called, _ = _run(second, "run-2", settings)
    assert (plan["calls_planned"], plan["census"], plan["not_sampled"]) == (20, False, 10)
    with connect(read_only=True) as con:
        spent = dict(con.execute("select usage_date, count(*) from meta.generation_queue where status = 'fetched' "
                                 "group by 1").fetchall())
    assert spent == {first: 12, second: 20}


@pytest.fixture
def stalling_emulator(monkeypatch):
    """One /generation answer in ten stalls 35 s, with 429s and 503s in between."""
    with EmulatorServer(scenario="default") as server:
        server.set_faults([FaultRule("slow", path_prefix="/generation", every=10, delay_seconds=35),
                           FaultRule("rate_limit", path_prefix="/generation", every=7, retry_after=0.2),
                           FaultRule("server_error", path_prefix="/generation", every=13, status=503,
                                     retry_after=0.2)])
        monkeypatch.setenv("OPENROUTER_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENROUTER_MANAGEMENT_KEY", server.management_key)
        monkeypatch.setenv("OPENROUTER_SPEND_BACKOFF_BASE", "0.05")
        monkeypatch.delenv("AIRFLOW_CONN_OPENROUTER_DEFAULT", raising=False)
        yield server


def test_stalled_answers_cost_a_short_read_timeout_not_the_stall(spend_home, stalling_emulator):
    server = stalling_emulator
    day = server.anchor_date - timedelta(days=2)
    ids = server.org.generation_ids(day)[:60]
    _write_log(spend_home, day, [(gid, datetime.combine(day, time(1), tzinfo=UTC)) for gid in ids])
    settings = enrich.EnrichmentSettings(daily_call_budget=100, requests_per_second=1000, read_timeout_seconds=3,
                                         time_budget_seconds=120)
    plan, called, loaded = _run(day, "run-1", settings)
    stalls = sum(1 for r in server.requests if r["path"] == "/generation") // 10
    assert stalls >= 6
    assert (called["fetched"], called["deferred"], called["out_of_time"]) == (60, 0, False)
    # Every stalled connection was given up after a read timeout and retried: no call waited out a 35 s stall.
    assert called["seconds"] < 35


def test_a_run_out_of_time_defers_the_rest_to_the_next_run(spend_home, stalling_emulator):
    server = stalling_emulator
    day = server.anchor_date - timedelta(days=3)
    ids = server.org.generation_ids(day)[:40]
    _write_log(spend_home, day, [(gid, datetime.combine(day, time(1), tzinfo=UTC)) for gid in ids])
    tight = enrich.EnrichmentSettings(daily_call_budget=100, requests_per_second=4, concurrency=1,
                                      read_timeout_seconds=3, time_budget_seconds=2)
    plan, called, loaded = _run(day, "run-1", tight)
    assert called["out_of_time"] and 0 < called["deferred"] < 40
    assert called["fetched"] + called["deferred"] + called["errors"] + called["not_found"] == 40
    queue = _queue(spend_home)
    waiting = {gid for gid, (status, _, _) in queue.items() if status == "pending"}
    assert len(waiting) == 40 - called["fetched"]
    with connect(read_only=True) as con:
        notes = {error for (error,) in con.execute("select distinct last_error from meta.generation_queue "
                                                   "where status = 'pending'").fetchall()}
    assert any(note and note.startswith("deferred to a later run") for note in notes)
    # The next day's run carries the deferred ids over (the day's own budget still covers them).
    server.clear_faults()
    plan, called, _ = _run(day + timedelta(days=1), "run-2", enrich.EnrichmentSettings(requests_per_second=1000))
    assert plan["usage_days"][day.isoformat()]["pending"] == len(waiting)
    assert called["fetched"] == len(waiting)
