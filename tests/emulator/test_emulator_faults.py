"""Fault rules, their `times` counting, the /_emulator control endpoints, the clock and generation lag."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from openrouter_emulator import EmulatorServer, FaultRule


def test_rate_limit_fault_sends_429_with_retry_headers(api, server):
    server.set_faults([FaultRule("rate_limit", path_prefix="/activity", retry_after=2.5)])
    response = api.get("/activity")
    assert response.status_code == 429
    assert response.json() == {"error": {"code": 429, "message": "Rate limit exceeded"}}
    assert response.headers["Retry-After"] == "2.5"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Limit"]) > 0
    assert int(response.headers["X-RateLimit-Reset"]) > server.now.timestamp() * 1000
    assert api.get("/credits").status_code == 200
    assert "X-RateLimit-Limit" not in api.get("/credits").headers


@pytest.mark.parametrize(("status", "message"), [
    (500, "Internal Server Error"),
    (502, "Provider returned error"),
    (503, "Service temporarily unavailable"),
    (524, "Request timed out. Please try again later."),
    (529, "Provider returned error"),
])
def test_server_error_fault_uses_the_envelope(api, server, status, message):
    server.set_faults([FaultRule("server_error", status=status)])
    response = api.get("/keys")
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": status, "message": message}}


def test_server_error_rejects_statuses_openrouter_does_not_send():
    with pytest.raises(ValueError):
        FaultRule("server_error", status=418)
    with pytest.raises(ValueError):
        FaultRule("teapot")


def test_times_counts_matching_requests_only(api, server):
    server.set_faults([FaultRule("server_error", path_prefix="/activity", times=2, status=502)])
    assert api.get("/credits").status_code == 200
    statuses = [api.get("/activity", api_key_hash=server.org.keys[0].hash).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert server.faults[0].times == 0


def test_first_matching_rule_with_times_left_wins(api, server):
    server.set_faults([
        FaultRule("server_error", path_prefix="/keys", times=1, status=503),
        FaultRule("rate_limit", path_prefix="", times=1),
        FaultRule("server_error", path_prefix="", status=500),
    ])
    assert api.get("/keys").status_code == 503
    assert api.get("/keys").status_code == 429
    assert api.get("/keys").status_code == 500
    server.clear_faults()
    assert api.get("/keys").status_code == 200


def test_slow_fault_delays_then_answers(api, server):
    server.set_faults([FaultRule("slow", path_prefix="/credits", delay_seconds=0.6, times=2)])
    with pytest.raises(requests.Timeout):
        api.session.get(server.base_url + "/credits", timeout=0.2)
    started = time.monotonic()
    response = api.get("/credits")
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 200 and response.json()["data"]["total_credits"] > 0


def test_truncated_json_sends_half_a_valid_body(api, server):
    full = api.get("/workspaces").content
    server.set_faults([FaultRule("truncated_json", path_prefix="/workspaces", times=1)])
    response = api.get("/workspaces")
    assert response.status_code == 200
    assert response.content == full[: len(full) // 2]
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert api.get("/workspaces").content == full


def test_malformed_json_sends_an_html_page(api, server):
    server.set_faults([FaultRule("malformed_json", path_prefix="/credits")])
    response = api.get("/credits")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.lstrip().startswith("<!DOCTYPE html>")


def test_extra_fields_reach_the_envelope_and_every_item(api, server):
    server.set_faults([FaultRule("extra_fields", path_prefix="/keys")])
    payload = api.get("/keys").json()
    assert "x_new_field" in payload
    assert payload["data"] and all("x_new_field" in item for item in payload["data"])


def test_activity_datetime_dates_only_touch_activity(api, server):
    server.set_faults([FaultRule("activity_datetime_dates")])
    rows = api.data("/activity", date=(server.anchor_date - timedelta(days=1)).isoformat())
    assert {r["date"] for r in rows} == {f"{server.anchor_date - timedelta(days=1)} 00:00:00"}
    assert api.get("/credits").status_code == 200


def test_faults_given_at_construction_apply():
    with EmulatorServer(anchor_date=datetime(2026, 11, 20).date(),
                        faults=[FaultRule("server_error", path_prefix="/credits", times=1)]) as emulator:
        headers = {"Authorization": f"Bearer {emulator.management_key}"}
        statuses = [requests.get(emulator.base_url + "/credits", headers=headers, timeout=5).status_code
                    for _ in range(2)]
    assert statuses == [500, 200]


def test_request_log_records_every_api_request(api, server):
    server.reset_requests()
    api.get("/keys", include_disabled="true", offset="100")
    api.get("/nope")
    api.session.get(server.control_url + "/requests", timeout=5)
    assert server.requests == [
        {"method": "GET", "path": "/keys", "query": {"include_disabled": "true", "offset": "100"}, "status": 200},
        {"method": "GET", "path": "/nope", "query": {}, "status": 404},
    ]
    server.reset_requests()
    assert server.requests == []


def test_control_endpoints_drive_a_server_over_http(api, server):
    control = server.control_url
    rules = [{"kind": "server_error", "path_prefix": "/credits", "times": 1, "status": 502}]
    assert requests.post(control + "/faults", json=rules, timeout=5).status_code == 200
    assert requests.get(control + "/faults", timeout=5).json()[0]["times"] == 1
    assert api.get("/credits").status_code == 502
    assert api.get("/credits").status_code == 200

    day = server.anchor_date - timedelta(days=40)
    moved = requests.post(control + "/clock", json={"now": f"{day + timedelta(days=1)}T00:10:00Z"}, timeout=5)
    assert moved.status_code == 200
    assert server.now.date() == day + timedelta(days=1)
    assert api.get("/activity", date=day.isoformat()).status_code == 200

    logged = requests.get(control + "/requests", timeout=5).json()
    assert [entry["status"] for entry in logged][-3:] == [502, 200, 200]
    requests.post(control + "/faults", json=[{"kind": "rate_limit"}], timeout=5)
    assert requests.post(control + "/reset", timeout=5).status_code == 200
    assert requests.get(control + "/requests", timeout=5).json() == []
    assert requests.get(control + "/faults", timeout=5).json() == []

    info = requests.get(control + "/info", timeout=5).json()
    assert info["scenario"] == "default" and info["anchor_date"] == server.anchor_date.isoformat()


def test_control_endpoints_reject_bad_input(server):
    control = server.control_url
    assert requests.post(control + "/faults", json=[{"kind": "nope"}], timeout=5).status_code == 400
    assert requests.post(control + "/faults", json=[{"kind": "slow", "bogus": 1}], timeout=5).status_code == 400
    assert requests.post(control + "/faults", json={"kind": "slow"}, timeout=5).status_code == 400
    assert requests.post(control + "/clock", json={"now": "2026-11-20T00:00:00"}, timeout=5).status_code == 400
    assert requests.post(control + "/clock", json={}, timeout=5).status_code == 400
    assert requests.get(control + "/nothing", timeout=5).status_code == 404


def test_clock_requires_an_aware_datetime(server):
    with pytest.raises(ValueError):
        server.set_now(datetime(2026, 11, 20, 0, 10))


def test_clock_ticks_from_where_it_was_set(server):
    server.set_now(datetime(2026, 11, 15, 0, 10, tzinfo=UTC))
    first = server.now
    time.sleep(0.05)
    assert timedelta(0) < server.now - first < timedelta(seconds=5)


def test_live_generation_is_404_until_the_lag_passes():
    anchor = datetime(2026, 11, 20).date()
    with EmulatorServer(anchor_date=anchor, generation_lag_seconds=0.3) as emulator:
        headers = {"Authorization": f"Bearer {emulator.inference_key}"}

        def fetch(generation_id: str) -> requests.Response:
            return requests.get(emulator.base_url + "/generation", params={"id": generation_id}, headers=headers,
                                timeout=5)

        generation_id = emulator.add_live_generation(model="openai/gpt-4.1", fallback=True)
        assert fetch(generation_id).status_code == 404
        time.sleep(0.4)
        record = fetch(generation_id).json()["data"]
        assert record["id"] == generation_id
        assert [a["status"] for a in record["provider_responses"]][-1] == 200
        assert len(record["provider_responses"]) == 2

        remote = requests.post(emulator.control_url + "/generations", json={"model": "google/gemini-2.5-flash"},
                               timeout=5).json()["id"]
        assert fetch(remote).status_code == 404
        emulator.set_now(emulator.now + timedelta(seconds=1))
        assert fetch(remote).status_code == 200


def test_synthetic_generations_respect_lag_and_clock():
    anchor = datetime(2026, 11, 20).date()
    with EmulatorServer(anchor_date=anchor, generation_lag_seconds=3600, clock="replay") as emulator:
        headers = {"Authorization": f"Bearer {emulator.management_key}"}
        records = emulator.org.generations(anchor - timedelta(days=1))
        late = next(r for r in reversed(records) if r["created_at"] >= f"{anchor - timedelta(days=1)}T23:10")
        early = records[0]

        def status(record) -> int:
            return requests.get(emulator.base_url + "/generation", params={"id": record["id"]}, headers=headers,
                                timeout=5).status_code

        assert status(early) == 200
        assert status(late) == 404
        emulator.set_now(datetime.combine(anchor, datetime.min.time(), tzinfo=UTC) + timedelta(hours=2))
        assert status(late) == 200
        emulator.set_now(datetime.combine(anchor - timedelta(days=1), datetime.min.time(), tzinfo=UTC))
        assert status(early) == 404


def test_analytics_query_is_rate_limited_at_64_per_minute(api, server):
    # A window before the data span keeps each query cheap; only the count matters here.
    body = {"metrics": ["request_count"],
            "time_range": {"start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}}
    statuses = [api.post("/analytics/query", body).status_code for _ in range(65)]
    assert statuses[:64] == [200] * 64
    assert statuses[64] == 429
    limited = api.post("/analytics/query", body)
    assert limited.headers["X-RateLimit-Limit"] == "64"
    assert 0 < float(limited.headers["Retry-After"]) <= 60
    server.reset_requests()
    assert api.post("/analytics/query", body).status_code == 200


STARTUP_DEADLINE_SECONDS = 120


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_forever_prints_its_address_and_stops_on_ctrl_c_or_sigterm(stop_signal):
    process = subprocess.Popen(
        [sys.executable, "-m", "openrouter_emulator", "--port", "0", "--scenario", "quiet",
         "--anchor-date", "2026-11-20"],
        stdout=subprocess.PIPE, text=True)
    try:
        # A loaded machine can take a long while to import and bind: wait for the line, not a fixed time.
        first_line: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: first_line.put(process.stdout.readline()), daemon=True).start()
        line = first_line.get(timeout=STARTUP_DEADLINE_SECONDS)
        base_url = re.search(r"(http://127\.0\.0\.1:\d+/api/v1)", line).group(1)
        management_key = re.search(r"(sk-or-v1-\S+)", line).group(1)
        response = requests.get(base_url + "/credits", headers={"Authorization": f"Bearer {management_key}"},
                                timeout=STARTUP_DEADLINE_SECONDS)
        assert response.status_code == 200
        process.send_signal(stop_signal)
        assert process.wait(timeout=STARTUP_DEADLINE_SECONDS) == 0
        with pytest.raises(requests.ConnectionError):  # the port is released
            requests.get(base_url + "/credits", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
