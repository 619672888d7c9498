"""The client against the emulator over real HTTP, under every fault the emulator can inject."""

from __future__ import annotations

import pytest

from openrouter_emulator import FaultRule
from openrouter_spend.config.settings import ExtractionSettings
from openrouter_spend.ingest.client import (
    AuthenticationError,
    MalformedResponseError,
    NotFoundError,
    OpenRouterClient,
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


def test_rate_limit_that_never_ends_raises_with_the_hint(emulator):
    emulator.set_faults([FaultRule("rate_limit", path_prefix="/credits", retry_after=1)])
    client, _ = make_client(emulator)
    with pytest.raises(RateLimitedError, match="gave up after 4 attempts") as failure:
        client.credits()
    assert failure.value.retry_after == 1.0


def test_retry_after_longer_than_allowed_fails_at_once(emulator):
    emulator.set_faults([FaultRule("rate_limit", path_prefix="/credits", retry_after=3600)])
    client, sleeps = make_client(emulator, max_retry_after_seconds=60)
    with pytest.raises(RateLimitedError, match="longer than"):
        client.credits()
    assert sleeps == [] and calls_to(emulator, "/credits") == 1


@pytest.mark.parametrize("status", [500, 502, 503, 524, 529])
def test_server_errors_back_off_exponentially_then_succeed(emulator, status):
    emulator.set_faults([FaultRule("server_error", path_prefix="/providers", times=3, status=status)])
    client, sleeps = make_client(emulator, backoff_base_seconds=1.0, backoff_max_seconds=30.0)
    assert client.providers()
    assert len(sleeps) == 3
    # Full jitter in [ceiling/2, ceiling] with ceilings 1, 2, 4 s.
    for wait, ceiling in zip(sleeps, (1, 2, 4), strict=True):
        assert ceiling / 2 <= wait <= ceiling


def test_persistent_server_error_is_typed_and_bounded(emulator):
    emulator.set_faults([FaultRule("server_error", path_prefix="/providers", status=502)])
    client, _ = make_client(emulator)
    with pytest.raises(ServerError, match="HTTP 502"):
        client.providers()
    assert calls_to(emulator, "/providers") == 4


def test_slow_responses_time_out_and_are_retried(emulator):
    emulator.set_faults([FaultRule("slow", path_prefix="/credits", times=1, delay_seconds=1.5)])
    client, sleeps = make_client(emulator, http_timeout_seconds=0.5)
    assert client.credits()
    assert len(sleeps) == 1


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
