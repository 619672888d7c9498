"""Landing batches: immutable files, manifest as commit marker, newest response wins."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from openrouter_spend.ingest.landing import (
    MANIFEST,
    LandingBatch,
    committed_manifests,
    latest_responses,
    run_dir,
    safe_component,
)
from openrouter_spend.ingest.responses import RawResponse

DAY = date(2026, 11, 10)
RUN = "manual__2026-11-11T00:10:00+00:00"


def raw(endpoint: str, body: bytes, params: dict | None = None, seconds: int = 0) -> RawResponse:
    return RawResponse(endpoint=endpoint, params=params or {}, status=200, body=body,
                       content_type="application/json",
                       fetched_at=datetime(2026, 11, 11, 0, 10, tzinfo=UTC) + timedelta(seconds=seconds),
                       elapsed_seconds=0.01, attempts=1)


def test_run_ids_become_safe_path_components():
    assert safe_component(RUN) == "manual__2026-11-11T00_10_00_00_00"
    assert safe_component("../../etc") == ".._.._etc"


def test_committed_batch_holds_exact_bodies_and_a_manifest(tmp_path):
    batch = LandingBatch(tmp_path, DAY, RUN, "snapshots")
    body = b'{"data": {"total_credits": 10.5, "total_usage": 2.25}}'
    landed = batch.land(raw("/credits", body))
    manifest_path = batch.commit()

    assert gzip.decompress((batch.directory / landed.file).read_bytes()) == body
    manifest = json.loads(manifest_path.read_text())
    assert manifest["objects"][0]["endpoint"] == "/credits"
    assert manifest["objects"][0]["bytes"] == len(body)
    assert batch.directory.parent == run_dir(tmp_path, DAY, RUN)
    with pytest.raises(RuntimeError, match="already committed"):
        batch.land(raw("/credits", body))


def test_uncommitted_batches_are_invisible_to_the_loader(tmp_path):
    interrupted = LandingBatch(tmp_path, DAY, RUN, "snapshots")
    interrupted.land(raw("/credits", b'{"data": {}}'))
    assert not (interrupted.directory / MANIFEST).exists()
    assert committed_manifests(tmp_path, DAY, RUN) == []


def test_newest_response_per_endpoint_and_params_wins_across_retried_batches(tmp_path):
    first = LandingBatch(tmp_path, DAY, RUN, "key_activity")
    first.land(raw("/activity", b'{"data": []}', {"date": "2026-11-10", "api_key_hash": "a"}, seconds=1))
    first.land(raw("/activity", b'{"data": []}', {"date": "2026-11-10", "api_key_hash": "b"}, seconds=2))
    first.commit()
    retry = LandingBatch(tmp_path, DAY, RUN, "key_activity")
    retry.land(raw("/activity", b'{"data": [1]}', {"date": "2026-11-10", "api_key_hash": "a"}, seconds=9))
    retry.commit()

    responses = latest_responses(committed_manifests(tmp_path, DAY, RUN))
    by_key = {r.params["api_key_hash"]: r for r in responses}
    assert set(by_key) == {"a", "b"}
    assert by_key["a"].read_body() == b'{"data": [1]}'
    assert by_key["b"].batch == first.directory.name


def test_a_landed_file_altered_after_commit_is_detected(tmp_path):
    batch = LandingBatch(tmp_path, DAY, RUN, "snapshots")
    landed = batch.land(raw("/credits", b'{"data": {"total_credits": 1, "total_usage": 0}}'))
    batch.commit()
    (batch.directory / landed.file).write_bytes(gzip.compress(b'{"data": {"total_credits": 999}}'))
    [response] = latest_responses(committed_manifests(tmp_path, DAY, RUN))
    with pytest.raises(ValueError, match="checksum"):
        response.read_body()


def test_landing_works_on_an_object_storage_path(tmp_path, monkeypatch):
    from openrouter_spend.config import settings

    monkeypatch.setenv("OPENROUTER_SPEND_LANDING_URL", f"file://{tmp_path}/shared-landing")
    root = settings.api_landing_root()
    assert not isinstance(root, type(tmp_path)) and str(root).startswith("file://")
    batch = LandingBatch(root, DAY, RUN, "snapshots")
    batch.land(raw("/credits", b'{"data": {"total_credits": 5, "total_usage": 1}}'))
    batch.commit()

    [response] = latest_responses(committed_manifests(root, DAY, RUN))
    assert response.read_body() == b'{"data": {"total_credits": 5, "total_usage": 1}}'
    assert (tmp_path / "shared-landing" / "openrouter" / f"date={DAY}").is_dir()


def test_an_empty_landing_url_means_the_local_home(tmp_path, monkeypatch):
    from openrouter_spend.config import settings

    monkeypatch.setenv("OPENROUTER_SPEND_HOME", str(tmp_path))
    monkeypatch.setenv("OPENROUTER_SPEND_LANDING_URL", "")
    assert settings.api_landing_root() == tmp_path / "landing" / "openrouter"
