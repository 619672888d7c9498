"""HTTP client for the OpenRouter management API: one session, timeouts, typed errors, bounded retries.

The client returns raw response bodies (`RawResponse`, responses.py) so callers can land them before parsing;
the `*_json` helpers parse on top. The API key lives only in the session's Authorization header: it is never
part of a message, a log line or an exception.

Retries are urllib3's `Retry` on the session's adapter (statuses, backoff, Retry-After); `ApiRetry`
(retry.py) adds only what urllib3 has no notion of: a ceiling on Retry-After, a per-call time budget, the
client's pacing before each retry, and the rate-limit hints urllib3 does not read. Errors are typed in
errors.py; the base URL and key come from credentials.py.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as SocketTimeout

from openrouter_spend.config.settings import ExtractionSettings
from openrouter_spend.ingest.credentials import resolve_credentials
from openrouter_spend.ingest.errors import (
    RETRYABLE,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    OpenRouterError,
    OutOfTimeError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    with_note,
)
from openrouter_spend.ingest.pacing import ObservedLatency, TokenBucket
from openrouter_spend.ingest.responses import (
    RawResponse,
    data_of,
    describe_request,
    error_message,
    server_time,
)
from openrouter_spend.ingest.retry import RETRY_STATUSES, ApiRetry, CallState, current_call, gave_up

KEYS_PAGE_SIZE = 100


@dataclass
class OpenRouterClient:
    """Client for one OpenRouter-compatible base URL and one key."""

    base_url: str
    api_key: str = field(repr=False)
    settings: ExtractionSettings = field(default_factory=ExtractionSettings)
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session | None = field(default=None, repr=False)
    # When set, read timeouts follow the latency observed so far (see ObservedLatency).
    latency: ObservedLatency | None = None

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ConfigurationError("no OpenRouter base URL configured (OPENROUTER_BASE_URL)")
        if not self.api_key:
            raise ConfigurationError(
                "no OpenRouter management key configured: set OPENROUTER_MANAGEMENT_KEY or the"
                " Airflow connection 'openrouter_default'"
            )
        self.base_url = self.base_url.rstrip("/")
        self._bucket = TokenBucket(self.settings.requests_per_second, sleep=self.sleep)
        self._retry = ApiRetry(
            total=self.settings.max_retries,
            status_forcelist=RETRY_STATUSES,
            # GET, and the API's one POST: /analytics/query is a read-only query, and its 64-per-minute limit
            # answers 429s that have to be waited out like any other.
            allowed_methods=frozenset({"GET", "POST"}),
            backoff_factor=self.settings.backoff_base_seconds,
            backoff_max=self.settings.backoff_max_seconds,
            backoff_jitter=self.settings.backoff_base_seconds,
            respect_retry_after_header=True,
            # The last answer comes back as it is, so it is typed below like any other (RateLimitedError, ...).
            raise_on_status=False,
            max_retry_after=self.settings.max_retry_after_seconds,
            wait_with=self.sleep,
            before_attempt=self._bucket.acquire,
        )
        if self.session is None:
            self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(4, self.settings.key_activity_concurrency * 2),
                              max_retries=self._retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Authorization"] = f"Bearer {self.api_key}"
        self.session.headers["User-Agent"] = "openrouter-spend/0.1"
        self.session.headers["HTTP-Referer"] = "https://github.com/openrouter-spend/openrouter-spend"

    def close(self) -> None:
        """Release pooled connections."""
        if self.session is not None:
            self.session.close()

    def __enter__(self) -> OpenRouterClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------------

    def request(self, endpoint: str, params: Mapping[str, Any] | None = None, *, method: str = "GET",
                json_body: Any = None, deadline: float | None = None) -> RawResponse:
        """One API call with retries on 429 / 5xx / timeouts; returns the raw body of the 2xx answer.

        `deadline` (a time.monotonic() value) bounds the whole call, retries and waits included: a retry that
        could not finish before it is not started, and the call raises OutOfTimeError instead.
        """
        clean_params = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        source = describe_request(endpoint, clean_params)
        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        read_timeout = (self.latency.read_timeout(endpoint, self.settings.http_timeout_seconds)
                        if self.latency is not None else self.settings.http_timeout_seconds)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutOfTimeError(f"{source}: the time budget ran out", endpoint=source)
            read_timeout = min(read_timeout, left)
        call = CallState(deadline=deadline, attempt_seconds=read_timeout)
        self._bucket.acquire()
        started = time.monotonic()
        # Typed errors are raised outside the `except` blocks: a requests exception holds the prepared request,
        # Authorization header included, and must not ride along as the typed error's context.
        failure = None
        token = current_call.set(call)
        try:
            response = self.session.request(method, url, params=clean_params, json=json_body,
                                            timeout=(self.settings.connect_timeout_seconds, read_timeout))
        except requests.RequestException as exc:
            failure = _transport_failure(exc, read_timeout)
        finally:
            current_call.reset(token)
        if failure is not None and call.out_of_time:
            raise OutOfTimeError(f"{source}: the time budget ran out before an answer ({failure})", endpoint=source)
        if failure is not None:
            raise RequestTimeoutError(f"{source}: {failure} ({gave_up(call)})", endpoint=source)
        try:
            body = response.content
        except requests.RequestException as exc:
            # urllib3 retries up to the headers; requests reads the body after it, so a break here ends the call.
            failure = f"connection broke while reading the body ({type(exc).__name__})"
        if failure is not None:
            raise RequestTimeoutError(f"{source}: {failure}", endpoint=source)
        elapsed = time.monotonic() - started
        status = response.status_code
        if self.latency is not None and not call.retries:  # a retried call's time includes its waits
            self.latency.record(endpoint, elapsed)
        if 200 <= status < 300:
            return RawResponse(
                endpoint=endpoint, params=clean_params, status=status, body=body,
                content_type=response.headers.get("Content-Type", ""),
                fetched_at=server_time(response.headers), elapsed_seconds=elapsed, attempts=call.retries + 1,
            )
        error = self._error_for(response, source)
        if call.out_of_time:
            raise OutOfTimeError(f"{source}: the time budget ran out before an answer ({error})", endpoint=source)
        if not isinstance(error, RETRYABLE):
            raise error
        retry_after = self._retry.get_retry_after(response)
        if retry_after is not None and retry_after > self.settings.max_retry_after_seconds:
            raise with_note(error, f"asked to wait {retry_after:.0f}s, longer than the"
                                    f" {self.settings.max_retry_after_seconds:.0f}s OPENROUTER_SPEND_MAX_RETRY_AFTER"
                                    " allows")
        raise with_note(error, gave_up(call))

    def _error_for(self, response: requests.Response, source: str) -> OpenRouterError:
        status = response.status_code
        message = f"{source}: HTTP {status}: {error_message(response)}"
        if status == 400:
            return BadRequestError(message, endpoint=source, status=status)
        if status == 401:
            return AuthenticationError(message + " (check the management key)", endpoint=source, status=status)
        if status == 402:
            return PaymentRequiredError(message + " (top up credits or raise the key's limit)", endpoint=source,
                                        status=status)
        if status == 403:
            return PermissionDeniedError(
                message + " (a management key is required for this endpoint)", endpoint=source, status=status
            )
        if status == 404:
            return NotFoundError(message, endpoint=source, status=status)
        if status == 429:
            return RateLimitedError(message, endpoint=source, retry_after=self._retry.get_retry_after(response))
        if status == 408 or status >= 500:
            return ServerError(message, endpoint=source, status=status)
        return OpenRouterError(message, endpoint=source, status=status)

    # --- endpoints -------------------------------------------------------------------------------

    def get_json(self, endpoint: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET and parse."""
        return self.request(endpoint, params).json()

    def credits(self) -> dict:
        """GET /credits → {total_credits, total_usage}."""
        raw = self.request("/credits")
        return data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=dict)

    def current_key(self) -> dict:
        """GET /key → metadata of the key in use."""
        raw = self.request("/key")
        return data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=dict)

    def workspaces(self) -> list[dict]:
        """GET /workspaces → every workspace of the account."""
        return list(self.iter_items("/workspaces"))

    def iter_key_pages(self, workspace_id: str | None = None, *, include_disabled: bool = True,
                       include_expired: bool = True) -> Iterator[RawResponse]:
        """GET /keys page by page (offset pagination, 100 per page) until a short page."""
        offset = 0
        while True:
            params = {"include_disabled": include_disabled, "include_expired": include_expired,
                      "workspace_id": workspace_id, "offset": offset or None}
            raw = self.request("/keys", params)
            yield raw
            count = len(data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=list))
            if count < KEYS_PAGE_SIZE:
                return
            offset += count

    def keys(self, workspace_id: str | None = None, **flags: bool) -> list[dict]:
        """Every key of a workspace (default: the account default workspace), disabled and expired included."""
        items: list[dict] = []
        for raw in self.iter_key_pages(workspace_id, **flags):
            items.extend(data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=list))
        return items

    def activity(self, date: str | None = None, *, api_key_hash: str | None = None,
                 workspace_id: str | None = None, group_by: str | None = None) -> list[dict]:
        """GET /activity rows (one UTC day when `date` is given)."""
        raw = self.request("/activity", {"date": date, "api_key_hash": api_key_hash,
                                         "workspace_id": workspace_id, "group_by": group_by})
        return data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=list)

    def models(self, output_modalities: str = "all") -> list[dict]:
        """GET /models (the full catalogue by default)."""
        return list(self.iter_items("/models", {"output_modalities": output_modalities}))

    def providers(self) -> list[dict]:
        """GET /providers."""
        return list(self.iter_items("/providers"))

    def generation(self, generation_id: str) -> dict:
        """GET /generation?id= (NotFoundError while the record is not available yet)."""
        raw = self.request("/generation", {"id": generation_id})
        return data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=dict)

    def analytics_query(self, body: dict) -> dict:
        """POST /analytics/query → {data: [...], metadata: {...}}."""
        raw = self.request("/analytics/query", method="POST", json_body=body)
        return data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=dict)

    def iter_pages(self, endpoint: str, params: Mapping[str, Any] | None = None) -> Iterator[RawResponse]:
        """Raw pages of a list endpoint, following `links.next` (e.g. /models with offset/limit)."""
        params = dict(params or {})
        seen: set[tuple] = set()
        while True:
            raw = self.request(endpoint, params)
            yield raw
            payload = raw.json()
            links = payload.get("links") if isinstance(payload, dict) else None
            next_link = links.get("next") if isinstance(links, dict) else None
            if not next_link:
                return
            link = urlsplit(next_link)
            if link.path and not link.path.rstrip("/").endswith(endpoint.rstrip("/")):
                raise MalformedResponseError(
                    f"{describe_request(raw.endpoint, raw.params)}: links.next points elsewhere ({link.path})",
                    endpoint=endpoint,
                )
            params = dict(parse_qsl(link.query))
            marker = tuple(sorted(params.items()))
            if marker in seen:
                raise MalformedResponseError(
                    f"{describe_request(raw.endpoint, raw.params)}: links.next repeats a page", endpoint=endpoint
                )
            seen.add(marker)

    def iter_items(self, endpoint: str, params: Mapping[str, Any] | None = None) -> Iterator[dict]:
        """Items of a list endpoint across every page."""
        for raw in self.iter_pages(endpoint, params):
            yield from data_of(raw.json(), describe_request(raw.endpoint, raw.params), expect=list)


def _transport_failure(exc: requests.RequestException, read_timeout: float) -> str:
    """What went wrong below HTTP, by the exception's type only (its text holds the host and more)."""
    reason = exc.args[0].reason if exc.args and isinstance(exc.args[0], MaxRetryError) else exc
    if isinstance(reason, requests.Timeout | SocketTimeout) and not isinstance(reason, NewConnectionError):
        return f"no answer within {read_timeout:.3g}s"
    return f"connection failed ({type(reason).__name__})"


def _param(value: Any) -> str:
    """Query values as OpenRouter expects them: booleans as the strings 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)



def client_from_environment(settings: ExtractionSettings | None = None) -> OpenRouterClient:
    """A client configured from the Airflow connection or the OPENROUTER_* environment."""
    base_url, key = resolve_credentials()
    return OpenRouterClient(base_url=base_url, api_key=key, settings=settings or ExtractionSettings.from_env())
