"""The large organisation's shape, and its DuckDB-written request-log days whose ids /generation can answer."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from openrouter_emulator import SyntheticOrg, build_org
from openrouter_emulator.large import SERVABLE_MODELS, generation_for_id, write_request_log

ANCHOR = date(2026, 11, 20)
DAY = ANCHOR - timedelta(days=1)


@pytest.fixture(scope="module")
def org() -> SyntheticOrg:
    return build_org("large", 42, ANCHOR)


def test_large_organisation_has_2000_keys_of_which_200_are_used_on_a_day(org):
    assert len(org.keys) == 2000
    active = org.key_rows(DAY)
    assert len(active) == 200
    assert {row.model_id for rows in active.values() for row in rows} == set(SERVABLE_MODELS)
    # The idle 1,800 have not been used for at least 35 days before the day.
    now = datetime.combine(ANCHOR, datetime.min.time(), tzinfo=UTC)
    idle = [k for k in org.keys if k.hash not in active]
    last_used = [org.key_usage_as_of(k.hash, now)["last_used_at"] for k in idle]
    assert all(moment is None or moment < now - timedelta(days=34) for moment in last_used)


def _lines(files) -> list[dict]:
    lines = []
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            lines.extend(json.loads(line) for line in handle)
    return lines


def test_request_log_day_has_the_asked_lines_spread_by_requests_and_servable_ids(org, tmp_path):
    files = write_request_log(org, DAY, tmp_path, lines=3000)
    lines = _lines(files)
    assert len(lines) == 3000
    assert len({line["generation_id"] for line in lines}) == 3000
    assert {path.parent.name for path in files} == set(org.world.request_logging)
    with_metadata = [line for line in lines if "openrouter_metadata" in line]
    assert {line["project"] for line in with_metadata} == {
        project for project, mode in org.world.request_logging.items() if mode == "metadata"}
    # Lines follow the keys' request volumes: the busiest key logs more than the quietest one.
    per_key = Counter(line["workflow"] for line in lines)
    requests = {org.key_by_hash(h).name: sum(r.requests for r in rows) for h, rows in org.key_rows(DAY).items()}
    busiest, quietest = max(requests, key=requests.get), min(requests, key=requests.get)
    assert per_key[busiest] > per_key[quietest]
    for line in lines[:200]:
        record = generation_for_id(org, line["generation_id"])
        assert record["id"] == line["generation_id"]
        assert record["created_at"] == line["created_at"]
        assert datetime.fromisoformat(record["created_at"]).date() == DAY
        assert record["model"] == line["requested_model"]
        key = org.key_by_hash(line["api_key_hash"])
        assert record["workspace_id"] == key.workspace_id and key.workspace_name == line["project"]


def test_generation_for_id_rejects_ids_it_did_not_write(org):
    assert generation_for_id(org, "gen-1795478400-AbCdEfGhIjKlMnOpQrSt") is None
    assert generation_for_id(org, "gen-1795478400-99990000000000000000") is None
