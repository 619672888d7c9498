"""No single request-log line can fail a build: poisoned lines are quarantined with file, line, field and reason,
and whatever a line carries in the members that are kept verbatim, the marts build."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import pytest
from marts_fixtures import DAY, FixtureWarehouse, RawRows, key_hash

from openrouter_spend.ingest import requests_log
from openrouter_spend.warehouse import connect

KEY = key_hash("a-web")
VALID = {
    "generation_id": "base", "created_at": f"{DAY}T09:00:00Z", "api_key_hash": KEY, "workflow": "chat",
    "requested_model": "vendor/pro", "requested_models": ["vendor/pro", "vendor/lite"], "accepted": True,
    "retry_of": None, "request_fingerprint": "fp",
    "openrouter_metadata": {
        "requested": "vendor/pro", "strategy": "direct", "region": "iad", "summary": "available=2", "attempt": 2,
        "is_byok": False, "generation_time": 800,
        "endpoints": {"total": 2, "available": [{"provider": "ProviderA", "model": "vendor/pro", "selected": False},
                                                {"provider": "ProviderB", "model": "vendor/pro", "selected": True}]},
        "attempts": [{"provider": "ProviderA", "model": "vendor/pro", "status": 503},
                     {"provider": "ProviderB", "model": "vendor/pro", "status": 200}]},
    "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
              "prompt_tokens_details": {"cached_tokens": 10}, "completion_tokens_details": {"reasoning_tokens": 5},
              "cost": 0.02, "is_byok": False, "cost_details": {"upstream_inference_cost": None}},
}
# Every member path of a line (nested by "."; list items by index) and what an application could put there.
PATHS = [
    "generation_id", "created_at", "api_key_hash", "project", "workflow", "requested_model", "requested_models",
    "requested_models.0", "accepted", "retry_of", "request_fingerprint",
    "usage", "usage.prompt_tokens", "usage.completion_tokens", "usage.total_tokens", "usage.prompt_tokens_details",
    "usage.prompt_tokens_details.cached_tokens", "usage.completion_tokens_details.reasoning_tokens", "usage.cost",
    "usage.is_byok", "usage.cost_details", "usage.cost_details.upstream_inference_cost",
    "openrouter_metadata", "openrouter_metadata.requested", "openrouter_metadata.strategy",
    "openrouter_metadata.attempt", "openrouter_metadata.is_byok", "openrouter_metadata.generation_time",
    "openrouter_metadata.endpoints", "openrouter_metadata.endpoints.total", "openrouter_metadata.endpoints.available",
    "openrouter_metadata.endpoints.available.1", "openrouter_metadata.endpoints.available.1.provider",
    "openrouter_metadata.endpoints.available.1.selected", "openrouter_metadata.attempts",
    "openrouter_metadata.attempts.0", "openrouter_metadata.attempts.0.status", "openrouter_metadata.attempts.1.model",
]
HOSTILE_VALUES = [1e30, -1e30, 10**30, -1, 2.5, 0, "1e30", "", "x" * 5000, True, None, [], {}, [1, "a", None],
                  {"nested": {"deeper": [1e300]}}, "'; DROP TABLE marts.fct_daily_spend; --",
                  "=HYPERLINK(\"http://evil.example\")", "2100-01-01T00:00:00Z"]
RAW_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "123456789012345678901234567890123456789"]


def _set(document: dict, path: str, value) -> dict:
    document = copy.deepcopy(document)
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return document


def _activity() -> RawRows:
    rows = RawRows()
    rows.workspace(DAY, "ws-alpha", "alpha-space")
    rows.price(DAY, "vendor/pro", 3.0, 10.0).price(DAY, "vendor/lite", 0.2, 0.8)
    rows.key(DAY, "a-web", "ws-alpha", last_used=DAY)
    rows.use(DAY, "a-web", "vendor/pro", "ProviderB", requests=100, usage=2.0)
    rows.credit(DAY, 500.0, 100.0)
    return rows


def _warehouse(tmp_path: Path) -> FixtureWarehouse:
    warehouse = FixtureWarehouse(tmp_path)
    warehouse.load(_activity())
    return warehouse


def _ingest(warehouse: FixtureWarehouse, root: Path) -> dict:
    with connect(warehouse.path) as con:
        return requests_log.ingest(con, root, quarantine_dir=warehouse.path.parent / "quarantine")


def test_the_issues_poisoned_lines_are_quarantined_and_the_day_builds(tmp_path):
    warehouse = _warehouse(tmp_path)
    root = tmp_path / "requests"
    (root / "search").mkdir(parents=True)
    lines = [
        json.dumps({"generation_id": "gen-poison-1", "created_at": f"{DAY}T10:00:00Z", "project": "search",
                    "usage": {"cost": 1e30}}),
        json.dumps(VALID),
        json.dumps({"generation_id": "gen-poison-2", "created_at": f"{DAY + timedelta(days=5 * 365)}T10:00:00Z",
                    "project": "search"}),
    ]
    (root / "search" / "day.jsonl").write_text("\n".join(lines) + "\n")
    result = _ingest(warehouse, root)
    assert (result["loaded_rows"], result["quarantined_rows"]) == (1, 2)
    quarantined = warehouse.rows("select source_file, line_number, reason from raw.request_log_quarantine "
                                 "order by line_number")
    assert [(q["source_file"], q["line_number"]) for q in quarantined] == [("search/day.jsonl", 1),
                                                                           ("search/day.jsonl", 3)]
    assert quarantined[0]["reason"] == "usage.cost must be at most 10000, got 1e30"
    assert quarantined[1]["reason"].startswith(f"created_at {DAY + timedelta(days=5 * 365)}T10:00:00Z is more than "
                                               "24 hours after the file was last modified")
    written = (tmp_path / "quarantine" / "search__day.jsonl.quarantine.jsonl").read_text().splitlines()
    assert [json.loads(line)["text"] for line in written] == [lines[0], lines[2]]

    counts = warehouse.build([DAY])
    assert counts["fct_generations"] == 1
    assert warehouse.rows("select generation_id, cost_usd from marts.fct_generations") == [
        {"generation_id": "base", "cost_usd": 0.02}]
    assert warehouse.rows("select distinct usage_date from raw.request_log") == [{"usage_date": DAY}]


def test_no_value_in_any_member_of_a_line_fails_the_build(tmp_path):
    warehouse = _warehouse(tmp_path)
    lines = [json.dumps(VALID)]
    for path in PATHS:
        for index, value in enumerate(HOSTILE_VALUES):
            lines.append(json.dumps(_set(VALID, path, value) | {"generation_id": f"{path}#{index}"}))
        for text in RAW_NUMBERS:  # not producible by json.dumps: written as the JSON text an app could send
            marker = "\"__raw__\""
            line = json.dumps(_set(VALID, path, "__raw__") | {"generation_id": f"{path}#{text}"})
            lines.append(line.replace(marker, text))
    root = tmp_path / "requests"
    root.mkdir()
    (root / "fuzz.jsonl").write_text("\n".join(lines) + "\n")
    result = _ingest(warehouse, root)
    assert result["loaded_rows"] + result["quarantined_rows"] == len(lines)
    assert result["loaded_rows"] > len(PATHS)  # values the schema allows (e.g. 0, null where nullable) load

    warehouse.build([DAY])
    loaded = warehouse.rows("select count(distinct generation_id) as n from raw.request_log where usage_date = ?",
                            [DAY])[0]["n"]
    assert warehouse.rows("select count(*) as n from marts.fct_generations where usage_date = ?", [DAY])[0]["n"] \
        == loaded == result["loaded_rows"]
    totals = warehouse.rows("select max(cost_usd) as cost, max(prompt_tokens) as tokens from marts.fct_generations")[0]
    assert totals["cost"] <= 10_000 and totals["tokens"] <= 1_000_000_000
    reasons = {r["reason"].split(" ")[0] for r in warehouse.rows("select reason from raw.request_log_quarantine")}
    # Each reason names the field it is about (or says the line is not JSON at all).
    assert reasons <= {path.split(".0")[0].split(".1")[0] for path in PATHS} | {
        "invalid", "missing", "requested_models", "usage.prompt_tokens_details.cached_tokens"}


@pytest.mark.parametrize("value", [10_000, 0, None])
def test_the_bounds_themselves_are_accepted(tmp_path, value):
    warehouse = _warehouse(tmp_path)
    root = tmp_path / "requests"
    root.mkdir()
    (root / "edge.jsonl").write_text(json.dumps(_set(VALID, "usage.cost", value)) + "\n")
    assert _ingest(warehouse, root)["loaded_rows"] == 1
    warehouse.build([DAY])
