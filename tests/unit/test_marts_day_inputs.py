"""Input-keyed marts: a day whose inputs did not change is not rebuilt; one whose inputs changed is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from marts_fixtures import DAY, FixtureWarehouse
from test_requests_marts import (
    ALPHA,
    ALPHA_LINES,
    BETA,
    BETA_LINES,
    BETA_RECORDS,
    NEXT,
    _activity,
    _write_log,
)

from openrouter_spend.ingest import requests_log
from openrouter_spend.warehouse import connect


def _ingest(warehouse: FixtureWarehouse, root: Path) -> None:
    with connect(warehouse.path) as con:
        requests_log.ingest(con, root, quarantine_dir=root.parent / "quarantine")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> FixtureWarehouse:
    tmp = tmp_path_factory.mktemp("day_inputs")
    warehouse = FixtureWarehouse(tmp)
    warehouse.load(_activity())
    root = tmp / "requests"
    _write_log(root, "alpha.jsonl", [{**line, "api_key_hash": ALPHA} for line in ALPHA_LINES])
    _write_log(root, "beta.jsonl", [{**line, "api_key_hash": BETA} for line in BETA_LINES])
    _ingest(warehouse, root)
    with connect(warehouse.path) as con:
        con.execute("insert into raw.generations values ('b1', ?, ?, 'run', now(), 'fixture', 'x', ?)",
                    [DAY, DAY, json.dumps(BETA_RECORDS["b1"])])
        for generation_id, status in (("b1", "fetched"), ("b2", "pending"), ("b3", "not_sampled"),
                                      ("b4", "not_sampled")):
            con.execute("insert into meta.generation_queue (generation_id, usage_date, sampling_stratum, status, "
                        "planned_on, planned_run_id) values (?, ?, 'x', ?, ?, 'run')",
                        [generation_id, DAY, status, DAY])
    warehouse.build([DAY])
    return warehouse


@pytest.fixture
def warehouse(template, tmp_path) -> FixtureWarehouse:
    copy = template.copy_to(tmp_path / "copy")
    # The copy's request logs are its own (a test that changes one must not change the template's).
    (tmp_path / "copy" / "requests").mkdir()
    for name in ("alpha.jsonl", "beta.jsonl"):
        source = Path(template.path).parent / "requests" / name
        target = tmp_path / "copy" / "requests" / name
        target.write_bytes(source.read_bytes())
    return copy


def _generations(warehouse: FixtureWarehouse) -> dict[str, dict]:
    return {row["generation_id"]: row for row in warehouse.rows("select * from marts.fct_generations")}


def test_a_rebuild_of_an_unchanged_day_writes_no_per_request_row(warehouse):
    before = _generations(warehouse)
    counts = warehouse.build([DAY])
    assert counts["fct_generations"] == 0
    assert _generations(warehouse) == before
    # the marts downstream are still rebuilt for the day (their own inputs are not keyed)
    assert counts["fct_fallback_daily"] > 0
    # the day after reads the day's requests (duplicates look back an hour): both are recorded
    recorded = warehouse.rows("select mart_name, usage_date from meta.mart_day_inputs order by usage_date")
    assert recorded == [{"mart_name": "fct_generations", "usage_date": day} for day in (DAY, NEXT)]


def test_a_changed_request_log_file_rebuilds_the_day(warehouse):
    root = Path(warehouse.path).parent / "requests"
    extra = {**BETA_LINES[0], "generation_id": "b9", "api_key_hash": BETA, "created_at": f"{DAY}T19:00:00Z"}
    _write_log(root, "beta.jsonl", [{**line, "api_key_hash": BETA} for line in BETA_LINES] + [extra])
    _ingest(warehouse, root)
    counts = warehouse.build([DAY])
    assert counts["fct_generations"] == 11
    rows = _generations(warehouse)
    assert rows["b9"]["enrichment_status"] == "not_planned"
    # b9 now shares what beta-api's activity leaves after b1 with b2, b3 and b4: ($0.50 - $0.01) / 49 each
    assert rows["b3"]["cost_usd"] == pytest.approx((0.5 - 0.01) / 49)


def test_a_fetched_generation_record_rebuilds_the_day(warehouse):
    assert _generations(warehouse)["b2"]["cost_source"] == "allocated_key"
    with connect(warehouse.path) as con:
        con.execute("insert into raw.generations values ('b2', ?, ?, 'run2', now(), 'fixture', 'y', ?)",
                    [DAY, DAY, json.dumps(BETA_RECORDS["b2"])])
        con.execute("update meta.generation_queue set status = 'fetched' where generation_id = 'b2'")
    counts = warehouse.build([DAY])
    assert counts["fct_generations"] == 10
    b2 = _generations(warehouse)["b2"]
    assert (b2["cost_source"], b2["cost_usd"], b2["enrichment_status"]) == ("generation", 0.03, "fetched")


def test_a_queue_status_change_alone_rebuilds_the_day(warehouse):
    with connect(warehouse.path) as con:
        con.execute("update meta.generation_queue set status = 'unavailable' where generation_id = 'b3'")
    assert warehouse.build([DAY])["fct_generations"] == 10
    assert _generations(warehouse)["b3"]["enrichment_status"] == "unavailable"


def test_changed_activity_rebuilds_the_day(warehouse):
    before = _generations(warehouse)["b3"]["cost_usd"]
    rows = _activity()
    for row in rows.activity:
        if row.get("key") == "beta-api" and row["date"] == DAY.isoformat():
            row["usage"] = 1.0
    warehouse.load(rows, {DAY})
    assert warehouse.build([DAY])["fct_generations"] == 10
    after = _generations(warehouse)["b3"]["cost_usd"]
    # beta-api's activity less the measured b1, over its 49 other requests
    assert (before, after) == (pytest.approx((0.5 - 0.01) / 49), pytest.approx((1.0 - 0.01) / 49))


def test_a_full_rebuild_records_every_day_and_the_next_build_keeps_them(warehouse):
    warehouse.rebuild()
    recorded = warehouse.rows("select usage_date from meta.mart_day_inputs order by usage_date")
    assert [r["usage_date"] for r in recorded] == [DAY, NEXT]
    assert warehouse.build([DAY])["fct_generations"] == 0
