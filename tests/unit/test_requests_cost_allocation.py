"""Per-request costs allocated from /activity cells (fct_generations): hand-computed on fixture rows.

alpha's key a-web spent, by /activity: vendor/pro via P1 $1.00 over 4 requests (and $0.20 of BYOK),
vendor/lite via P2 $0.30 over 6 requests. beta's key beta-api spent $0.50 over 50 requests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.ingest import requests_log
from openrouter_spend.quality import reconcile
from openrouter_spend.quality.reconcile import Tolerances
from openrouter_spend.warehouse import connect

WEB = key_hash("a-web")


def metadata(provider: str, model: str) -> dict:
    return {"requested": model, "strategy": "direct", "attempt": 1, "is_byok": False,
            "endpoints": {"total": 1, "available": [{"provider": provider, "model": model, "selected": True}]}}


def usage(cost: float) -> dict:
    return {"prompt_tokens": 1000, "completion_tokens": 100, "cost": cost, "is_byok": False}


def line(generation_id: str, hour: int, **fields) -> dict:
    return {"generation_id": generation_id, "created_at": f"{DAY}T{hour:02d}:00:00Z", "workflow": "chat", **fields}


# Every request a-web made that day, as its application logged it.
COMPLETE = [
    # vendor/pro via P1: two with a measured cost, two whose log has the route but no usage
    line("p1", 1, api_key_hash=WEB, openrouter_metadata=metadata("P1", "vendor/pro"), usage=usage(0.30)),
    line("p2", 2, api_key_hash=WEB, openrouter_metadata=metadata("P1", "vendor/pro"), usage=usage(0.25)),
    line("p3", 3, api_key_hash=WEB, openrouter_metadata=metadata("P1", "vendor/pro")),
    line("p4", 4, api_key_hash=WEB, openrouter_metadata=metadata("P1", "vendor/pro")),
    # vendor/lite via P2: three measured, three logged with ids only (served model and provider unknown)
    line("l1", 5, api_key_hash=WEB, openrouter_metadata=metadata("P2", "vendor/lite"), usage=usage(0.05)),
    line("l2", 6, api_key_hash=WEB, openrouter_metadata=metadata("P2", "vendor/lite"), usage=usage(0.05)),
    line("l3", 7, api_key_hash=WEB, openrouter_metadata=metadata("P2", "vendor/lite"), usage=usage(0.05)),
    line("l4", 8, api_key_hash=WEB, requested_model="vendor/lite"),
    line("l5", 9, api_key_hash=WEB, requested_model="vendor/lite"),
    line("l6", 10, api_key_hash=WEB, requested_model="vendor/lite"),
]
# beta logs one request without a key: only its project places it.
KEYLESS = [line("k1", 11, project="beta", requested_model="vendor/lite")]


def activity() -> RawRows:
    rows = RawRows()
    rows.workspace(DAY, "ws-alpha", "alpha-space").workspace(DAY, "ws-beta", "beta-space")
    rows.price(DAY, "vendor/pro", 3.0, 10.0).price(DAY, "vendor/lite", 0.2, 0.8)
    rows.key(DAY, "a-web", "ws-alpha", last_used=DAY).key(DAY, "beta-api", "ws-beta", last_used=DAY)
    rows.use(DAY, "a-web", "vendor/pro", "P1", requests=4, usage=1.0, byok=0.2)
    rows.use(DAY, "a-web", "vendor/lite", "P2", requests=6, usage=0.3)
    rows.use(DAY, "beta-api", "vendor/lite", "P2", requests=50, usage=0.5)
    rows.credit(DAY, 500.0, 100.0)
    return rows


def build(tmp_path: Path, lines: list[dict]) -> FixtureWarehouse:
    warehouse = FixtureWarehouse(tmp_path)
    warehouse.load(activity())
    root = tmp_path / "requests"
    root.mkdir()
    (root / "apps.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in lines))
    with connect(warehouse.path) as con:
        requests_log.ingest(con, root, quarantine_dir=tmp_path / "quarantine")
    warehouse.build([DAY])
    return warehouse


def costs(warehouse: FixtureWarehouse) -> dict[str, dict]:
    return {r["generation_id"]: r for r in warehouse.rows("select * from marts.fct_generations")}


def project_totals(warehouse: FixtureWarehouse) -> dict[str, tuple[float, float]]:
    with connect(warehouse.path, read_only=True) as con:
        frame = reconcile.per_request_vs_activity(con, DAY, Tolerances())
    return {r.project: (r.per_request_cost_usd, r.activity_spend_usd) for r in frame.itertuples()}


def test_complete_logs_add_up_to_activity_and_say_what_was_measured(tmp_path):
    warehouse = build(tmp_path, COMPLETE + KEYLESS)
    rows = costs(warehouse)
    # measured costs stay as logged
    assert {g: (rows[g]["cost_usd"], rows[g]["cost_source"], rows[g]["is_cost_measured"])
            for g in ("p1", "l1")} == {"p1": (0.30, "log_usage", True), "l1": (0.05, "log_usage", True)}
    # the pro cell's remainder ($1.00 - $0.55) over its two unmeasured requests, BYOK ($0.20) apart
    for generation_id in ("p3", "p4"):
        row = rows[generation_id]
        assert (row["cost_usd"], row["cost_source"], row["is_cost_measured"]) == \
            (pytest.approx(0.225), "allocated", False)
        assert row["byok_cost_usd"] == pytest.approx(0.10)
    # the ids-only requests cannot be placed in a cell: they share what a-web's cells leave ($0.15 for 3)
    for generation_id in ("l4", "l5", "l6"):
        assert (rows[generation_id]["cost_usd"], rows[generation_id]["cost_source"]) == \
            (pytest.approx(0.05), "allocated_key")
    # the keyless beta request: what beta's activity leaves, over its 50 requests
    assert (rows["k1"]["cost_usd"], rows["k1"]["cost_source"]) == (pytest.approx(0.01), "allocated_project")
    alpha_cost, alpha_activity = project_totals(warehouse)["alpha"]
    assert alpha_cost == pytest.approx(alpha_activity, abs=1e-9) == pytest.approx(1.30)
    assert sum(rows[g]["byok_cost_usd"] or 0 for g in rows if g[0] in "pl") == pytest.approx(0.20)


def test_partial_logs_never_exceed_activity(tmp_path):
    # half the unmeasured requests were never logged
    partial = [entry for entry in COMPLETE if entry["generation_id"] not in ("p4", "l5", "l6")]
    warehouse = build(tmp_path, partial)
    rows = costs(warehouse)
    # p3 gets its share of the cell (the cell still has two requests without a cost), not the whole remainder
    assert (rows["p3"]["cost_usd"], rows["p3"]["cost_source"]) == (pytest.approx(0.225), "allocated")
    assert (rows["l4"]["cost_usd"], rows["l4"]["cost_source"]) == (pytest.approx(0.05), "allocated_key")
    alpha_cost, alpha_activity = project_totals(warehouse)["alpha"]
    assert alpha_cost == pytest.approx(0.55 + 0.225 + 0.15 + 0.05)
    assert alpha_cost < alpha_activity


def test_measured_costs_above_activity_are_kept_and_leave_nothing_to_allocate(tmp_path):
    heavy = [dict(entry, usage=usage(0.6)) if entry["generation_id"] in ("p1", "p2") else entry
             for entry in COMPLETE]
    rows = costs(build(tmp_path, heavy))
    assert rows["p1"]["cost_usd"] == 0.6
    assert rows["p3"]["cost_usd"] == 0.0 and rows["p3"]["cost_source"] == "allocated"


def test_a_request_with_no_activity_to_allocate_from_is_imputed_or_unknown(tmp_path):
    strays = [line("x1", 12, project="gamma", requested_model="vendor/lite", usage=usage(0.07)),
              line("x2", 13, project="gamma", requested_model="vendor/lite"),
              line("y1", 14, project="delta", requested_model="vendor/odd")]
    rows = costs(build(tmp_path, COMPLETE + strays))
    assert (rows["x2"]["cost_usd"], rows["x2"]["cost_source"]) == (pytest.approx(0.07), "imputed")
    assert (rows["y1"]["cost_usd"], rows["y1"]["cost_source"]) == (None, "unknown")
