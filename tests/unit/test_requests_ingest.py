"""Request-log ingestion (openrouter_spend.ingest.requests_log): quarantine, schema agreement, incremental idempotent loads."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from openrouter_spend.ingest import request_log_sql, requests_log
from openrouter_spend.warehouse import connect, migrate

GOOD = {"generation_id": "gen-1", "created_at": "2026-11-24T10:00:00.123456+00:00", "project": "search",
        "workflow": "rewrite", "requested_model": "openai/gpt-4.1", "accepted": True}

# (line text, expected quarantine reason or None when the line is valid)
LINES = [
    (json.dumps(GOOD), None),
    ("{not json", "invalid JSON"),
    ("[1, 2]", "not a JSON object (got array)"),
    ('"just a string"', "not a JSON object (got string)"),
    (json.dumps({"created_at": "2026-11-24T10:00:00Z"}), "missing generation_id"),
    (json.dumps({"generation_id": None, "created_at": "2026-11-24T10:00:00Z"}), "missing generation_id"),
    (json.dumps({"generation_id": 7, "created_at": "2026-11-24T10:00:00Z"}),
     "generation_id must be a string, got integer"),
    (json.dumps({"generation_id": "", "created_at": "2026-11-24T10:00:00Z"}), "generation_id must not be empty"),
    (json.dumps({"generation_id": "gen-2"}), "missing created_at"),
    (json.dumps({"generation_id": "gen-3", "created_at": "yesterday"}),
     "created_at is not an ISO 8601 timestamp: yesterday"),
    (json.dumps({"generation_id": "gen-4", "created_at": "2026-11-24"}),
     "created_at is not an ISO 8601 timestamp: 2026-11-24"),
    (json.dumps({"generation_id": "gen-5", "created_at": "2026-13-40T10:00:00Z"}),
     "created_at is not an ISO 8601 timestamp: 2026-13-40T10:00:00Z"),
    (json.dumps({**GOOD, "generation_id": "gen-6", "accepted": "yes"}),
     "accepted must be a boolean or null, got string"),
    (json.dumps({**GOOD, "generation_id": "gen-7", "api_key_hash": ""}), "api_key_hash must not be empty"),
    (json.dumps({**GOOD, "generation_id": "gen-8", "project": 12.5}), "project must be a string or null, got number"),
    (json.dumps({**GOOD, "generation_id": "gen-8b", "workflow": -5}), "workflow must be a string or null, got integer"),
    (json.dumps({**GOOD, "generation_id": "gen-8c", "usage": {"cost": -0.5e-3}}),
     "usage.cost must be at least 0, got -0.0005"),
    # The poisoned lines: each would overflow a sum or create a usage day years away.
    (json.dumps({**GOOD, "generation_id": "gen-poison-1", "usage": {"cost": 1e30}}),
     "usage.cost must be at most 10000, got 1e30"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-2", "usage": {"prompt_tokens": -5}}),
     "usage.prompt_tokens must be at least 0, got -5"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-3", "usage": {"completion_tokens": 2.5}}),
     "usage.completion_tokens must be an integer, got 2.5"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-4", "usage": {"total_tokens": 10**30}}),
     "usage.total_tokens must be at most 1000000000, got 1000000000000000000000000000000"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-5", "usage": {"prompt_tokens_details": 5}}),
     "usage.prompt_tokens_details must be an object or null, got integer"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-6",
                 "usage": {"prompt_tokens_details": {"cached_tokens": 1e12}}}),
     "usage.prompt_tokens_details.cached_tokens must be at most 1000000000, got 1000000000000.0"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-7", "usage": {"cost_details": {"upstream_inference_cost": "1"}}}),
     "usage.cost_details.upstream_inference_cost must be a number or null, got string"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-8", "usage": {"is_byok": "yes"}}),
     "usage.is_byok must be a boolean or null, got string"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-9", "usage": {"cost": 1e400}}),
     "usage.cost must be at most 10000, got Infinity"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-10", "created_at": "2019-05-01T00:00:00Z"}),
     "created_at 2019-05-01T00:00:00Z is before 2023-01-01T00:00:00Z"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-11", "project": "p" * 257}),
     "project is longer than 256 characters"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-12", "requested_models": ["m"] * 65}),
     "requested_models has more than 64 items"),
    (json.dumps({**GOOD, "generation_id": "gen-poison-13", "requested_models": ["m" * 257]}),
     "requested_models has an item longer than 256 characters"),
    (json.dumps({**GOOD, "generation_id": "gen-9", "requested_models": "openai/gpt-4.1"}),
     "requested_models must be an array or null, got string"),
    (json.dumps({**GOOD, "generation_id": "gen-10", "requested_models": ["a", 1]}),
     "requested_models must be an array of strings"),
    (json.dumps({**GOOD, "generation_id": "gen-11", "openrouter_metadata": "enabled"}),
     "openrouter_metadata must be an object or null, got string"),
    (json.dumps({**GOOD, "generation_id": "gen-16", "retry_of": ["gen-1"]}),
     "retry_of must be a string or null, got array"),
    # valid variants
    (json.dumps({"generation_id": "gen-20", "created_at": "2026-11-24T23:30:00-05:00"}), None),
    (json.dumps({"generation_id": "gen-21", "created_at": "2026-11-24 10:00:00", "api_key_hash": None,
                 "accepted": None, "requested_models": None, "openrouter_metadata": None, "usage": None}), None),
    (json.dumps({**GOOD, "generation_id": "gen-22", "openrouter_metadata": {"attempt": 2.0, "attempts": []},
                 "usage": {"cost": 0.25, "prompt_tokens": 10, "completion_tokens": 3}}), None),
    (json.dumps({**GOOD, "generation_id": "gen-23", "team_tag": "blue", "trace": {"id": 1}}), None),
    (json.dumps({**GOOD, "generation_id": "gen-24", "openrouter_metadata": {"attempt": "2", "attempts": {}},
                 "usage": {"cost": "0.1"}}), "usage.cost must be a number or null, got string"),
    (json.dumps({**GOOD, "generation_id": "gen-25", "openrouter_metadata": {"attempt": "2", "attempts": {}},
                 "usage": {"cost": 0.1, "prompt_tokens": 1e3, "total_tokens": None, "audio": "kept",
                           "cost_details": {"upstream_inference_cost": -0.02}}}), None),
    (json.dumps({**GOOD, "generation_id": "gen-26", "project": "p" * 256, "usage": {"cost": 10000}}), None),
    (json.dumps({**GOOD, "generation_id": "gen-\u00e9\\\"q"}), None),
]


def _write(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        migrate(con)
    return path


def _ingest(warehouse: Path, root: Path, quarantine: Path) -> dict:
    with connect(warehouse) as con:
        return requests_log.ingest(con, root, quarantine_dir=quarantine)


def _rows(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with connect(warehouse, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_bad_lines_are_quarantined_with_file_line_and_reason(tmp_path, warehouse):
    root, quarantine = tmp_path / "requests", tmp_path / "quarantine"
    lines = [text for text, _ in LINES]
    lines.insert(3, "")  # a blank line: skipped, but it still counts for the numbering
    lines.insert(4, "   \t")
    _write(root / "app" / "day.jsonl", lines)
    result = _ingest(warehouse, root, quarantine)

    expected_bad = []
    for number, text in enumerate(lines, start=1):
        reason = dict(LINES).get(text) if text.strip() else None
        if reason:
            expected_bad.append((number, reason))
    assert _rows(warehouse, "select line_number, reason from raw.request_log_quarantine order by line_number") \
        == expected_bad
    valid = [json.loads(text)["generation_id"] for text, reason in LINES if reason is None]
    assert sorted(r[0] for r in _rows(warehouse, "select generation_id from raw.request_log")) == sorted(valid)
    assert result["loaded_rows"] == len(valid) and result["quarantined_rows"] == len(expected_bad)

    written = [json.loads(line) for line in (quarantine / "app__day.jsonl.quarantine.jsonl").read_text().splitlines()]
    assert [(w["file"], w["line"], w["reason"]) for w in written] == [("app/day.jsonl", n, r) for n, r in expected_bad]
    assert written[0]["text"] == lines[expected_bad[0][0] - 1]
    assert _rows(warehouse, "select status, line_count, loaded_rows, quarantined_rows from meta.request_log_files") \
        == [("loaded", len(valid) + len(expected_bad), len(valid), len(expected_bad))]


def test_sql_checks_agree_with_the_published_json_schema(tmp_path, warehouse):
    import jsonschema

    schema = json.loads(request_log_sql.SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    root = tmp_path / "requests"
    _write(root / "corpus.jsonl", [text for text, _ in LINES])
    _ingest(warehouse, root, tmp_path / "q")
    quarantined = {number for (number,) in _rows(warehouse, "select line_number from raw.request_log_quarantine")}
    for number, (text, expected) in enumerate(LINES, start=1):
        try:
            document = json.loads(text)
            schema_ok = validator.is_valid(document)
        except json.JSONDecodeError:
            schema_ok = False
        # The schema cannot express "a real calendar date"; the loader also rejects impossible dates.
        if expected and "ISO 8601" in expected and schema_ok:
            continue
        schema_ok = schema_ok and _within_created_at_window(schema, document, (tmp_path / "requests" / "corpus.jsonl"))
        assert schema_ok == (number not in quarantined), f"line {number} disagrees: {text}"
        assert schema_ok == (expected is None), f"line {number}: schema and the test table disagree"


def _within_created_at_window(schema: dict, document: dict, path: Path) -> bool:
    """The schema's x- extension keywords for created_at, applied in Python (jsonschema ignores them)."""
    spec = schema["properties"]["created_at"]
    moment = datetime.fromisoformat(document["created_at"])
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    latest = datetime.fromtimestamp(path.stat().st_mtime, UTC) + timedelta(hours=spec["x-not-after-file-modified-hours"])
    return datetime.fromisoformat(spec["x-not-before"]) <= moment <= latest


def test_created_at_after_the_file_was_written_is_quarantined_with_the_file_time(tmp_path, warehouse):
    root = tmp_path / "requests"
    written = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    lines = [json.dumps({**GOOD, "generation_id": "ok-late-clock", "created_at": "2026-11-26T05:59:00Z"}),
             json.dumps({**GOOD, "generation_id": "future", "created_at": "2031-11-24T10:00:00Z"}),
             json.dumps({**GOOD, "generation_id": "a-day-and-a-minute", "created_at": "2026-11-26T06:01:00Z"})]
    path = _write(root / "app.jsonl", lines)
    os.utime(path, (written.timestamp(), written.timestamp()))
    result = _ingest(warehouse, root, tmp_path / "q")
    assert result["loaded_rows"] == 1 and result["usage_dates"] == ["2026-11-26"]
    suffix = " is more than 24 hours after the file was last modified (2026-11-25T06:00:00Z)"
    assert _rows(warehouse, "select line_number, reason from raw.request_log_quarantine order by 1") == [
        (2, "created_at 2031-11-24T10:00:00Z" + suffix), (3, "created_at 2026-11-26T06:01:00Z" + suffix)]


def test_typed_columns_unknown_fields_and_utc_days(tmp_path, warehouse):
    root = tmp_path / "requests"
    _write(root / "a.jsonl.gz", [text for text, reason in LINES if reason is None], gz=True)
    _ingest(warehouse, root, tmp_path / "q")
    rows = {r[0]: r[1:] for r in _rows(warehouse, """
        select generation_id, usage_date, created_at, accepted, project, extra_fields, openrouter_metadata, usage
        from raw.request_log""")}
    assert rows["gen-20"][0] == date(2026, 11, 25)  # 23:30 at UTC-5 is the next UTC day
    assert rows["gen-21"][:2] == (date(2026, 11, 24), rows["gen-21"][1]) and rows["gen-21"][2] is None
    assert rows["gen-1"][2:4] == (True, "search")
    assert json.loads(rows["gen-23"][4]) == {**GOOD, "generation_id": "gen-23", "team_tag": "blue", "trace": {"id": 1}}
    assert rows["gen-1"][4] is None  # no unknown fields, nothing extra stored
    assert json.loads(rows["gen-22"][5]) == {"attempt": 2.0, "attempts": []}
    assert json.loads(rows["gen-22"][6])["cost"] == 0.25
    assert "gen-\u00e9\\\"q" in rows  # escapes are decoded


def test_ingestion_is_incremental_and_idempotent(tmp_path, warehouse):
    root, quarantine = tmp_path / "requests", tmp_path / "q"
    first = _write(root / "a.jsonl", [json.dumps({**GOOD, "generation_id": f"gen-{i}"}) for i in range(5)])
    _write(root / "b.jsonl", [json.dumps({**GOOD, "generation_id": "gen-b"}), "{broken"])
    _write(root / ".c.jsonl.tmp", ["{still being written"])
    assert _ingest(warehouse, root, quarantine)["loaded_files"] == 2
    snapshot = _rows(warehouse, "select * exclude (loaded_at) from raw.request_log order by generation_id")

    again = _ingest(warehouse, root, quarantine)
    assert (again["loaded_files"], again["unchanged_files"], again["loaded_rows"]) == (0, 2, 0)
    assert _rows(warehouse, "select * exclude (loaded_at) from raw.request_log order by generation_id") == snapshot

    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))  # touched, same bytes
    touched = _ingest(warehouse, root, quarantine)
    assert touched["loaded_files"] == 0 and touched["unchanged_files"] == 2

    _write(first, [json.dumps({**GOOD, "generation_id": "gen-new", "created_at": "2026-11-20T01:00:00Z"})])
    changed = _ingest(warehouse, root, quarantine)
    assert [o["action"] for o in changed["outcomes"]] == ["reloaded"]
    assert sorted(r[0] for r in _rows(warehouse, "select generation_id from raw.request_log")) == ["gen-b", "gen-new"]
    # The replaced rows' day and the new day both changed.
    changes = _rows(warehouse, "select distinct usage_date from meta.request_log_changes where source = "
                               "'request_log:a.jsonl' order by 1")
    assert changes == [(date(2026, 11, 20),), (date(2026, 11, 24),)]
    assert _rows(warehouse, "select load_count from meta.request_log_files where source_file = 'a.jsonl'") == [(2,)]
    assert _rows(warehouse, "select count(*) from raw.request_log_quarantine") == [(1,)]


def test_unreadable_files_are_recorded_not_dropped(tmp_path, warehouse):
    root, quarantine = tmp_path / "requests", tmp_path / "q"
    good = json.dumps(GOOD)
    (root).mkdir(parents=True)
    (root / "broken.jsonl.gz").write_bytes(gzip.compress(good.encode())[:20])
    (root / "latin1.jsonl").write_bytes(good.encode() + b"\n" + b'{"generation_id": "caf\xe9"}\n')
    result = _ingest(warehouse, root, quarantine)
    outcomes = {o["source_file"]: o for o in result["outcomes"]}
    assert outcomes["broken.jsonl.gz"]["action"] == "failed"
    assert "broken.jsonl.gz" in outcomes["broken.jsonl.gz"]["error"]
    # The valid line of the non-UTF-8 file is loaded; the file records how many lines were not, and why.
    assert outcomes["latin1.jsonl"]["loaded_rows"] == 1
    assert outcomes["latin1.jsonl"]["quarantined_rows"] == 1
    assert "not UTF-8" in outcomes["latin1.jsonl"]["error"]
    reasons = dict(_rows(warehouse, "select source_file, reason from raw.request_log_quarantine"))
    assert reasons["broken.jsonl.gz"].startswith("broken.jsonl.gz: ")
    assert (quarantine / "broken.jsonl.gz.quarantine.jsonl").exists()

    (root / "broken.jsonl.gz").write_bytes(gzip.compress(good.encode()))
    fixed = _ingest(warehouse, root, quarantine)
    assert [o["action"] for o in fixed["outcomes"]] == ["reloaded"]
    assert not (quarantine / "broken.jsonl.gz.quarantine.jsonl").exists()


def test_stale_days_are_the_days_changed_since_the_last_build(tmp_path, warehouse):
    root = tmp_path / "requests"
    _write(root / "a.jsonl", [json.dumps(GOOD)])
    _ingest(warehouse, root, tmp_path / "q")
    with connect(warehouse) as con:
        assert requests_log.stale_days(con) == [date(2026, 11, 24)]
        con.execute("insert into marts.build_log values (1, current_timestamp, 'incremental', [], [], 1, '{}')")
        assert requests_log.stale_days(con) == []
