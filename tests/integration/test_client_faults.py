"""The client against the emulator over real HTTP, under every fault the emulator can inject."""

from __future__ import annotations

import time

import pytest

from openrouter_emulator import FaultRule
from openrouter_spend.config.settings import ExtractionSettings
from openrouter_spend.ingest.client import OpenRouterClient
from openrouter_spend.ingest.errors import (
    AuthenticationError,
    MalformedResponseError,
    NotFoundError,
    OpenRouterError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
)


class Sleeps(list):
    """Records waits instead of sleeping, so retry tests take milliseconds."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(server, key=None, **overrides) -> tuple[OpenRouterClient, Sleeps]:
    sleeps = Sleeps()
    # A generous timeout: the emulator is local, but a loaded CI machine can hold an answer for seconds; the
    # tests about timeouts pass their own.
    settings = ExtractionSettings(**{"max_retries": 3, "http_timeout_seconds": 30.0, "requests_per_second": 1000,
                                     **overrides})
    return OpenRouterClient(server.base_url, key or server.management_key, settings, sleep=sleeps), sleeps


def calls_to(server, path: str) -> int:
    return sum(1 for r in server.requests if r["path"].endswith(path))


def test_rate_limit_honours_retry_after_then_succeeds(emulator):
    emulator.set_faults([FaultRule("rate_limit", path_prefix="/credits", times=2, retry_after=7)])
    client, sleeps = make_client(emulator)
    credits = client.credits()
    assert set(credits) >= {"total_credits", "total_usage"}
    assert sleeps == [7.0, 7.0]
    assert calls_to(emulator, "/credits") == 3


@pytest.mark.parametrize("max_retries", [3, 1])
def test_rate_limit_that_never_ends_raises_with_the_hint(emulator, max_retries):
    emulator.set_faults([FaultRule("rate_limit", path_prefix="/credits", retry_after=1)])
    client, sleeps = make_client(emulator, max_retries=max_retries)
    with pytest.raises(RateLimitedError, match=f"gave up after {max_retries + 1} attempts") as failure:
        client.credits()
    assert failure.value.retry_after == 1.0
    assert calls_to(emulator, "/credits") == max_retries + 1
    assert sleeps == [1.0] * max_retries


def test_retry_after_longer_than_allowed_fails_at_once(emulator):
    emulator.set_faults([FaultRule("rate_limit", path_prefix="/credits", retry_after=3600)])
    client, sleeps = make_client(emulator, max_retry_after_seconds=60)
    with pytest.raises(RateLimitedError, match="longer than"):
        client.credits()
    assert sleeps == [] and calls_to(emulator, "/credits") == 1


@pytest.mark.parametrize("status", [500, 502, 524, 529])
def test_server_errors_back_off_exponentially_then_succeed(emulator, status):
    emulator.set_faults([FaultRule("server_error", path_prefix="/providers", times=3, status=status)])
    client, sleeps = make_client(emulator, backoff_base_seconds=1.0, backoff_max_seconds=30.0)
    assert client.providers()
    assert calls_to(emulator, "/providers") == 4
    # urllib3's backoff: the first retry at once, then factor × 2^(n-1) plus up to one factor of jitter.
    assert len(sleeps) == 2
    assert 2.0 <= sleeps[0] <= 3.0 and 4.0 <= sleeps[1] <= 5.0


def test_backoff_never_exceeds_its_maximum(emulator):
    emulator.set_faults([FaultRule("server_error", path_prefix="/providers", times=5, status=500)])
    client, sleeps = make_client(emulator, max_retries=5, backoff_base_seconds=1.0, backoff_max_seconds=2.5)
    assert client.providers()
    assert calls_to(emulator, "/providers") == 6
    assert len(sleeps) == 4 and max(sleeps) <= 2.5 and sleeps[-1] == 2.5


def test_a_503_with_retry_after_waits_as_told(emulator):
    emulator.set_faults([FaultRule("server_error", path_prefix="/providers", times=2, status=503, retry_after=2)])
    client, sleeps = make_client(emulator)
    assert client.providers()
    assert sleeps == [2.0, 2.0] and calls_to(emulator, "/providers") == 3


def test_persistent_server_error_is_typed_and_bounded(emulator):
    emulator.set_faults([FaultRule("server_error", path_prefix="/providers", status=502)])
    client, _ = make_client(emulator)
    with pytest.raises(ServerError, match="HTTP 502"):
        client.providers()
    assert calls_to(emulator, "/providers") == 4


def test_slow_responses_time_out_and_are_retried(emulator):
    emulator.set_faults([FaultRule("slow", path_prefix="/credits", times=1, delay_seconds=5)])
    client, _ = make_client(emulator, http_timeout_seconds=0.5)
    started = time.monotonic()
    raw = client.request("/credits")
    # The stalled first attempt was given up after the read timeout; the second one answered.
    assert raw.status == 200 and raw.attempts == 2
    assert time.monotonic() - started < 5


def test_slow_forever_raises_a_timeout_error(emulator):
    emulator.set_faults([FaultRule("slow", path_prefix="/credits", delay_seconds=1.0)])
    client, _ = make_client(emulator, http_timeout_seconds=0.3, max_retries=1)
    with pytest.raises(RequestTimeoutError, match="no answer within"):
        client.credits()


@pytest.mark.parametrize("kind", ["truncated_json", "malformed_json"])
def test_broken_bodies_raise_a_clear_error_naming_the_endpoint(emulator, kind):
    emulator.set_faults([FaultRule(kind, path_prefix="/keys")])
    client, _ = make_client(emulator)
    with pytest.raises(MalformedResponseError, match=r"/keys\?include_disabled=true.*not valid JSON"):
        client.keys()


def test_unknown_fields_are_tolerated(emulator):
    emulator.set_faults([FaultRule("extra_fields")])
    client, _ = make_client(emulator)
    keys = client.keys()
    assert keys and all("hash" in key for key in keys)
    assert client.credits()["total_credits"] >= 0


def test_activity_dates_with_a_time_part_are_accepted(emulator):
    import datetime as dt

    emulator.set_faults([FaultRule("activity_datetime_dates")])
    client, _ = make_client(emulator)
    day = (emulator.now.date() - dt.timedelta(days=1)).isoformat()
    rows = client.activity(day)
    assert rows and all(row["date"].startswith(day) for row in rows)


def test_wrong_key_fails_fast_without_retry_and_without_leaking_it(emulator):
    secret = "sk-or-v1-not-a-real-key-but-secret"
    client, sleeps = make_client(emulator, key=secret)
    with pytest.raises(AuthenticationError) as failure:
        client.credits()
    assert sleeps == [] and calls_to(emulator, "/credits") == 1
    assert secret not in str(failure.value) and secret not in repr(failure.value)


def test_inference_key_on_a_management_endpoint_is_permission_denied(emulator):
    client, sleeps = make_client(emulator, key=emulator.inference_key)
    with pytest.raises(PermissionDeniedError, match="management key"):
        client.activity()
    assert sleeps == []


def test_unknown_generation_is_not_found(emulator):
    client, _ = make_client(emulator)
    with pytest.raises(NotFoundError):
        client.generation("gen-does-not-exist")


def test_keys_are_paginated_across_every_workspace(emulator):
    client, _ = make_client(emulator)
    every_key = {key["hash"] for ws in client.workspaces() for key in client.keys(ws["id"])}
    existing = {key.hash for key in emulator.org.keys if key.exists_at(emulator.now)}
    assert every_key == existing and len(every_key) >= 120
    default_only = {key["hash"] for key in client.keys()}
    assert default_only < every_key


def test_paginated_models_are_followed_through_links_next(emulator):
    client, _ = make_client(emulator)
    everything = client.models()
    paged = list(client.iter_pages("/models", {"output_modalities": "all", "limit": 7}))
    assert len(paged) == -(-len(everything) // 7)
    ids = [m["id"] for raw in paged for m in raw.json()["data"]]
    assert ids == [m["id"] for m in everything]


class ScriptedServer:
    """A local HTTP server that answers the scripted (status, headers) in turn (then 200 {"data": {}}) and
    counts the requests it received: for headers the emulator does not send, such as a dated Retry-After."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]):
        import http.server
        import threading

        self.script = list(script)
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the standard library's name)
                owner.requests += 1
                status, headers = owner.script.pop(0) if owner.script else (200, {})
                body = b'{"data": {}}' if status == 200 else b'{"error": {"code": %d, "message": "scripted"}}' % status
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/api/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_retry_after_as_an_http_date_is_honoured():
    from email.utils import formatdate

    when = formatdate(time.time() + 30, usegmt=True)
    with ScriptedServer([(429, {"Retry-After": when}), (503, {"Retry-After": "4"})]) as server:
        sleeps = Sleeps()
        client = OpenRouterClient(server.base_url, "sk-or-v1-scripted", ExtractionSettings(requests_per_second=1000),
                                  sleep=sleeps)
        assert client.credits() == {}
    assert server.requests == 3
    assert 28 <= sleeps[0] <= 30 and sleeps[1] == 4.0


def test_a_fractional_retry_after_is_honoured(emulator):
    emulator.set_faults([FaultRule("rate_limit", path_prefix="/credits", times=1, retry_after=0.25)])
    client, sleeps = make_client(emulator)
    assert client.credits()
    assert sleeps == [0.25]


def test_retries_stay_within_the_time_budget(emulator):
    from openrouter_spend.ingest.errors import OutOfTimeError

    emulator.set_faults([FaultRule("server_error", path_prefix="/credits", status=502)])
    settings = ExtractionSettings(max_retries=50, http_timeout_seconds=0.5, requests_per_second=1000,
                                  backoff_base_seconds=0.1, backoff_max_seconds=0.2)
    client = OpenRouterClient(emulator.base_url, emulator.management_key, settings)  # real waits
    started = time.monotonic()
    with pytest.raises(OutOfTimeError, match="time budget ran out before an answer.*HTTP 502"):
        client.request("/credits", deadline=started + 2.0)
    # It retried while a wait plus one attempt (the 0.5 s read timeout) still fitted, and never past the budget.
    assert time.monotonic() - started < 2.0
    assert 4 <= calls_to(emulator, "/credits") < 51


def test_a_retry_after_beyond_the_time_budget_is_not_waited(emulator):
    from openrouter_spend.ingest.errors import OutOfTimeError

    emulator.set_faults([FaultRule("rate_limit", path_prefix="/credits", retry_after=5)])
    client, sleeps = make_client(emulator)
    with pytest.raises(OutOfTimeError, match="HTTP 429"):
        client.request("/credits", deadline=time.monotonic() + 3)
    assert sleeps == [] and calls_to(emulator, "/credits") == 1


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404])
def test_client_errors_are_never_retried(status):
    with ScriptedServer([(status, {"Retry-After": "1"})] * 3) as server:
        sleeps = Sleeps()
        client = OpenRouterClient(server.base_url, "sk-or-v1-scripted", ExtractionSettings(requests_per_second=1000),
                                  sleep=sleeps)
        with pytest.raises(OpenRouterError, match=f"HTTP {status}") as failure:
            client.credits()
    assert failure.value.status == status and "gave up" not in str(failure.value)
    assert server.requests == 1 and sleeps == []


def _chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    return chain


@pytest.mark.parametrize(("fault", "error"), [
    (FaultRule("rate_limit", path_prefix="/credits", retry_after=1), RateLimitedError),
    (FaultRule("server_error", path_prefix="/credits", status=502), ServerError),
    (FaultRule("slow", path_prefix="/credits", delay_seconds=1.0), RequestTimeoutError),
    (None, RequestTimeoutError),  # nothing listens: connection refused
])
def test_exhausted_retries_never_show_the_key(emulator, caplog, fault, error):
    import logging
    import socket

    caplog.set_level(logging.DEBUG)
    key = emulator.management_key
    if fault is None:
        with socket.socket() as probe:  # a port that was free a moment ago
            probe.bind(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{probe.getsockname()[1]}/api/v1"
    else:
        emulator.set_faults([fault])
        base_url = emulator.base_url
    settings = ExtractionSettings(max_retries=2, http_timeout_seconds=0.3, requests_per_second=1000)
    client = OpenRouterClient(base_url, key, settings, sleep=Sleeps())
    with pytest.raises(error, match="gave up after 3 attempts") as failure:
        client.credits()
    assert caplog.records and "retry 2/2" in caplog.text
    assert key not in caplog.text
    chain = _chain(failure.value)
    assert all(key not in str(e) and key not in repr(e) for e in chain)
    # A requests exception holds the prepared request, Authorization header included: none rides along.
    assert all(getattr(e, "request", None) is None for e in chain)


def test_the_analytics_query_is_retried_after_its_rate_limit(emulator):
    emulator.set_faults([FaultRule("rate_limit", path_prefix="/analytics", times=1, retry_after=3)])
    client, sleeps = make_client(emulator)
    body = {"metrics": ["request_count"],
            "time_range": {"start": "2025-01-01T00:00:00Z", "end": "2025-01-02T00:00:00Z"}}
    assert "data" in client.analytics_query(body)
    assert sleeps == [3.0]
    assert [r["method"] for r in emulator.requests if r["path"] == "/analytics/query"] == ["POST", "POST"]
