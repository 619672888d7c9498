"""Optional discovery of generation ids through POST /analytics/query (off by default)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

from openrouter_spend.ingest import enrich, requests_log
from openrouter_spend.warehouse import connect, migrate

DAY = date(2026, 11, 24)


class AnalyticsStub:
    """An analytics API over known (id, time, key name) facts that honours time ranges and the row limit."""

    def __init__(self, facts):
        self.facts, self.bodies = facts, []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def analytics_query(self, body):
        self.bodies.append(body)
        start, end = (datetime.fromisoformat(body["time_range"][k].replace("Z", "+00:00")) for k in ("start", "end"))
        rows = [{"generation_id": gid, "api_key_id": key, "request_count": "1"}
                for gid, at, key in self.facts if start <= at < end]
        return {"data": rows[:body["limit"]], "metadata": {"row_count": min(len(rows), body["limit"]),
                                                           "truncated": len(rows) > body["limit"]}}


def test_discovery_is_off_by_default(spend_home, emulator):
    assert enrich.discover_generation_ids(DAY, "run-1", enrich.EnrichmentSettings()) == \
        {"day": DAY.isoformat(), "enabled": False}
    assert not [r for r in emulator.requests if r["path"].startswith("/analytics")]


def test_truncated_slices_are_split_until_every_id_is_listed(spend_home):
    start = datetime.combine(DAY, time(0), tzinfo=UTC)
    facts = [(f"gen-{i:05d}", start + timedelta(seconds=i * 43), f"key-{i % 3}") for i in range(2000)]
    stub = AnalyticsStub(facts)
    settings = enrich.EnrichmentSettings(discovery_enabled=True)
    result = enrich.discover_generation_ids(DAY, "run-1", settings, row_limit=300, client=stub)
    # 2,000 ids at 300 rows a call: halving the day until every slice fits takes 15 calls (8 slices kept).
    assert (result["generation_ids"], result["analytics_calls"], result["truncated_slices"]) == (2000, 15, [])
    assert all(body["dimensions"] == ["generation_id", "api_key_id"] for body in stub.bodies)
    lines = [json.loads(line) for line in
             (spend_home / "landing/requests/_discovered" / f"{DAY}.jsonl").read_text().splitlines()]
    assert {line["generation_id"] for line in lines} == {gid for gid, _, _ in facts}
    assert {line["api_key_name"] for line in lines} == {"key-0", "key-1", "key-2"}
    with connect() as con:  # the discovered ids go through ordinary ingestion, key names kept as extra fields
        migrate(con)
        assert requests_log.ingest(con)["loaded_rows"] == 2000
        assert con.execute("select count(*) from raw.request_log where extra_fields ->> 'discovered_by' = "
                           "'analytics'").fetchone()[0] == 2000


def test_discovery_over_http_lists_the_days_generations(spend_home, emulator):
    day = emulator.anchor_date - timedelta(days=2)
    emulator.set_now(datetime.combine(day + timedelta(days=1), time(0, 10), tzinfo=UTC))
    result = enrich.discover_generation_ids(day, "run-1", enrich.EnrichmentSettings(discovery_enabled=True))
    assert result["analytics_calls"] == 1
    assert result["generation_ids"] == len(emulator.org.generation_ids(day))
