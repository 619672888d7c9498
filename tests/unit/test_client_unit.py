"""Client pieces that need no server: rate-limit headers, the token bucket, credential resolution."""

from __future__ import annotations

import time
from email.utils import formatdate
from types import SimpleNamespace

import pytest

from openrouter_spend.ingest.client import OpenRouterClient
from openrouter_spend.ingest.credentials import resolve_credentials
from openrouter_spend.ingest.errors import ConfigurationError
from openrouter_spend.ingest.pacing import TokenBucket, rate_limit_hint_seconds
from openrouter_spend.ingest.retry import ApiRetry

NOW = 1445412480.0  # 2015-10-21 07:28:00 GMT


@pytest.mark.parametrize(("headers", "expected"), [
    (lambda now: {"Retry-After": "3"}, 3.0),  # urllib3 reads whole seconds ...
    (lambda now: {"Retry-After": formatdate(now + 5, usegmt=True)}, 5.0),  # ... and HTTP dates
    (lambda now: {"Retry-After": "0.5"}, 0.5),  # fractional seconds: not HTTP, but sent
    (lambda now: {"X-RateLimit-Reset": str(int((now + 5) * 1000))}, 5.0),  # epoch milliseconds
    (lambda now: {"X-RateLimit-Reset": str(int(now + 5))}, 5.0),  # epoch seconds
    (lambda now: {"X-RateLimit-Reset": "7"}, 7.0),  # seconds from now
    (lambda now: {"Retry-After": "2", "X-RateLimit-Reset": "7"}, 2.0),  # Retry-After wins
])
def test_retry_after_is_read_from_either_header(headers, expected):
    answer = SimpleNamespace(headers=headers(time.time()))
    assert ApiRetry().get_retry_after(answer) == pytest.approx(expected, abs=1.0)


def test_rate_limit_hints_count_from_the_given_moment():
    assert rate_limit_hint_seconds({"X-RateLimit-Reset": "1445412485000"}, NOW) == pytest.approx(5.0)
    assert rate_limit_hint_seconds({"Retry-After": "soon"}, NOW) is None


def test_no_rate_limit_header_means_no_hint():
    assert ApiRetry().get_retry_after(SimpleNamespace(headers={})) is None


def test_token_bucket_spaces_calls_to_the_rate():
    clock = [0.0]
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(rate=2.0, capacity=2, clock=lambda: clock[0], sleep=sleep)
    for _ in range(6):
        bucket.acquire()
    # Two immediate (the burst), then one every 0.5 s.
    assert clock[0] == pytest.approx(2.0)


def test_missing_key_is_a_configuration_error_that_names_both_sources():
    with pytest.raises(ConfigurationError, match="OPENROUTER_MANAGEMENT_KEY.*openrouter_default"):
        OpenRouterClient(base_url="http://127.0.0.1:1", api_key="")


def test_key_never_appears_in_the_client_repr():
    client = OpenRouterClient(base_url="http://127.0.0.1:1", api_key="sk-or-v1-secret-value")
    assert "secret" not in repr(client)


def test_connection_takes_precedence_over_variables(monkeypatch):
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://env.example/api/v1")
    monkeypatch.setenv("OPENROUTER_MANAGEMENT_KEY", "env-key")
    assert resolve_credentials() == ("http://env.example/api/v1", "env-key")
    monkeypatch.setenv("AIRFLOW_CONN_OPENROUTER_DEFAULT",
                       '{"conn_type": "http", "host": "http://conn.example/api/v1", "password": "conn-key"}')
    assert resolve_credentials() == ("http://conn.example/api/v1", "conn-key")


def test_observed_latency_shortens_the_read_timeout_only_once_the_api_has_shown_it_is_fast():
    from openrouter_spend.ingest.pacing import ObservedLatency

    latency = ObservedLatency(multiplier=10, floor_seconds=2, min_samples=20)
    for _ in range(19):
        latency.record("/generation", 0.05)
    assert latency.read_timeout("/generation", 10.0) == 10.0  # too few answers seen: the configured timeout
    latency.record("/generation", 0.05)
    assert latency.read_timeout("/generation", 10.0) == 2.0  # 10 × 0.05 s, but never below the floor
    for _ in range(20):
        latency.record("/generation", 0.6)
    assert latency.read_timeout("/generation", 10.0) == pytest.approx(6.0)  # 10 × the 95th percentile
    assert latency.read_timeout("/generation", 3.0) == 3.0  # never above the configured timeout
    assert latency.read_timeout("/activity", 30.0) == 30.0  # per endpoint


def test_a_deadline_stops_the_retry_ladder_instead_of_waiting():
    from openrouter_spend.ingest.errors import OutOfTimeError

    waits = []
    client = OpenRouterClient(base_url="http://127.0.0.1:9", api_key="sk-or-v1-x", sleep=waits.append)
    with pytest.raises(OutOfTimeError, match="time budget ran out"):
        client.request("/generation", {"id": "gen-1"}, deadline=time.monotonic() + 0.2)
    assert waits == []  # a retry could not have finished before the deadline, so none was waited for
    with pytest.raises(OutOfTimeError):
        client.request("/generation", {"id": "gen-1"}, deadline=time.monotonic() - 1)
