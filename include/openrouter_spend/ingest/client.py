"""HTTP client for the OpenRouter management API: one session, timeouts, typed errors, bounded retries.

The client returns raw response bodies (`RawResponse`) so callers can land them before parsing; the
`*_json` helpers parse on top. The API key lives only in the session's Authorization header: it is never
part of a message, a log line or an exception.

Retries are urllib3's `Retry` on the session's adapter (statuses, backoff, Retry-After); `ApiRetry` adds
only what urllib3 has no notion of: a ceiling on Retry-After, a per-call time budget, the client's pacing
before each retry, and the rate-limit hints urllib3 does not read.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, MaxRetryError, NewConnectionError, ResponseError
from urllib3.exceptions import TimeoutError as SocketTimeout
from urllib3.util.retry import Retry

from openrouter_spend.config.settings import ExtractionSettings
from openrouter_spend.ingest.pacing import ObservedLatency, TokenBucket, rate_limit_hint_seconds

log = logging.getLogger(__name__)

KEYS_PAGE_SIZE = 100


class OpenRouterError(Exception):
    """Base error; carries the endpoint and HTTP status, never the credentials."""

    def __init__(self, message: str, *, endpoint: str = "", status: int | None = None):
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class ConfigurationError(OpenRouterError):
    """No usable base URL or key was configured."""


class AuthenticationError(OpenRouterError):
    """401: the key is missing, unknown or revoked. Retrying cannot help."""


class PermissionDeniedError(OpenRouterError):
    """403: typically an inference key used on a management endpoint. Retrying cannot help."""


class PaymentRequiredError(OpenRouterError):
    """402: the account is out of credits (or the key's limit is spent). Retrying cannot help until a top-up."""


class NotFoundError(OpenRouterError):
    """404: unknown resource (or a generation that is not available yet)."""


class BadRequestError(OpenRouterError):
    """400: invalid parameters, e.g. an /activity date outside the 30-day window."""


class RateLimitedError(OpenRouterError):
    """429 after every allowed retry."""

    def __init__(self, message: str, *, endpoint: str = "", retry_after: float | None = None):
        super().__init__(message, endpoint=endpoint, status=429)
        self.retry_after = retry_after


class ServerError(OpenRouterError):
    """5xx after every allowed retry."""


class RequestTimeoutError(OpenRouterError):
    """Connection failure or timeout after every allowed retry."""


class OutOfTimeError(RequestTimeoutError):
    """The caller's time budget (`deadline`) ran out before an answer; what is left waits for a later run."""


class MalformedResponseError(OpenRouterError):
    """The body is not the JSON shape the endpoint promises."""


# Errors worth another attempt inside one call; everything else fails fast.
RETRYABLE = (RateLimitedError, ServerError, RequestTimeoutError)
# Errors an Airflow retry cannot fix either: they need a person (a new key, a top-up, a configuration change).
PERMANENT = (AuthenticationError, PermissionDeniedError, PaymentRequiredError, ConfigurationError)


@dataclass(frozen=True)
class RawResponse:
    """One successful HTTP exchange, body untouched; `fetched_at` is the server's time (Date header).

    `elapsed_seconds` and `attempts` cover the whole call, retries and their waits included.
    """

    endpoint: str
    params: dict[str, str]
    status: int
    body: bytes
    content_type: str
    fetched_at: datetime
    elapsed_seconds: float
    attempts: int

    def json(self) -> Any:
        """Parse the body; a broken body raises MalformedResponseError naming the endpoint."""
        return parse_json(self.body, describe_request(self.endpoint, self.params))


def describe_request(endpoint: str, params: Mapping[str, Any] | None) -> str:
    """Human-readable 'GET /path?query' for messages (no host, no credentials)."""
    query = urlencode(sorted((params or {}).items()))
    return f"{endpoint}?{query}" if query else endpoint


def parse_json(body: bytes, source: str) -> Any:
    """json.loads with an error that names the source and the position of the damage."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        snippet = body[:80].decode("utf-8", errors="replace")
        raise MalformedResponseError(
            f"{source}: response is not valid JSON ({exc}); first bytes: {snippet!r}", endpoint=source
        ) from None


def data_of(payload: Any, source: str, *, expect: type) -> Any:
    """The `data` member of an OpenRouter envelope, checked for the expected JSON type."""
    if not isinstance(payload, dict) or "data" not in payload:
        raise MalformedResponseError(f"{source}: response has no 'data' member", endpoint=source)
    data = payload["data"]
    if not isinstance(data, expect):
        raise MalformedResponseError(
            f"{source}: 'data' should be a JSON {'array' if expect is list else 'object'},"
            f" got {type(data).__name__}",
            endpoint=source,
        )
    return data


def _server_time(headers: Mapping[str, str]) -> datetime:
    """When the server produced the response (its Date header), else our clock.

    Snapshots (/credits, /keys) describe the server's "now", so their as-of time is the server's: staging
    judges from it whether a snapshot can stand for the end of its day (on time) or not (late). The
    emulator's Date follows its clock (the wall clock, or the replay clock a replayed day is set to).
    """
    date_header = headers.get("Date")
    if date_header:
        try:
            moment = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.astimezone(UTC)
    return datetime.now(UTC)


def _error_message(response: requests.Response) -> str:
    """The envelope's error.message, or a trimmed body when the server sent something else."""
    try:
        payload = response.json()
        message = payload["error"]["message"]
        if isinstance(message, str):
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return response.text[:200] or response.reason or "no message"


# Statuses worth another attempt: 408 and every 5xx (the API also answers 524 and 529), and 429.
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})


@dataclass
class _CallState:
    """One call's time budget and what its retries did; set around the call, read by ApiRetry."""

    deadline: float | None = None
    # The longest one attempt may take (its read timeout): a retry is only started if it can finish in time.
    attempt_seconds: float = 0.0
    retries: int = 0
    out_of_time: bool = False


_current_call: ContextVar[_CallState | None] = ContextVar("openrouter_current_call", default=None)


class ApiRetry(Retry):
    """urllib3's Retry plus a Retry-After ceiling, the per-call time budget and pacing before each retry.

    urllib3 counts the attempts, picks the statuses, computes the backoff and parses Retry-After (seconds or
    HTTP date). It has no wall-clock budget, so `increment` refuses a retry whose wait plus one attempt would
    end past the call's deadline, and one whose Retry-After exceeds `max_retry_after`; both end the ladder
    the way an exhausted count does (the last answer or error goes back to the client to be typed).
    """

    # urllib3 would also retry a 413 that carries Retry-After; a request too large stays too large.
    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    def __init__(self, *args: Any, max_retry_after: float = math.inf,
                 wait_with: Callable[[float], None] = time.sleep,
                 before_attempt: Callable[[], None] = lambda: None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after
        self.wait_with = wait_with
        self.before_attempt = before_attempt
        self.planned_wait = 0.0

    def new(self, **kw: Any) -> ApiRetry:
        retry = super().new(**kw)
        retry.max_retry_after, retry.wait_with, retry.before_attempt = (
            self.max_retry_after, self.wait_with, self.before_attempt)
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        """Retry-After as urllib3 reads it, else the hints it does not read (fractional seconds, X-RateLimit-Reset)."""
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:
            seconds = None
        if seconds is None:
            seconds = rate_limit_hint_seconds(response.headers, time.time())
        return seconds

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> ApiRetry:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        retry_after = self.get_retry_after(response) if response is not None else None
        if retry_after is not None and retry_after > self.max_retry_after:
            raise MaxRetryError(_pool, url, ResponseError(f"Retry-After of {retry_after:.0f}s is too long"))
        retry.planned_wait = retry_after if retry_after is not None else retry.get_backoff_time()
        call = _current_call.get()
        if call is not None:
            if call.deadline is not None and \
                    time.monotonic() + retry.planned_wait + call.attempt_seconds > call.deadline:
                call.out_of_time = True
                raise MaxRetryError(_pool, url, error or ResponseError("no time left for another attempt"))
            call.retries += 1
        cause = f"HTTP {response.status}" if response is not None else type(error).__name__
        log.warning("%s: %s; retry %d/%d in %.2fs", url, cause, len(retry.history),
                    len(retry.history) + (retry.total or 0), retry.planned_wait)
        return retry

    def sleep(self, response: Any = None) -> None:
        """Wait as planned in `increment` (Retry-After or backoff), then for the client's pacing."""
        if self.planned_wait > 0:
            self.wait_with(self.planned_wait)
        self.before_attempt()


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
        call = _CallState(deadline=deadline, attempt_seconds=read_timeout)
        self._bucket.acquire()
        started = time.monotonic()
        # Typed errors are raised outside the `except` blocks: a requests exception holds the prepared request,
        # Authorization header included, and must not ride along as the typed error's context.
        failure = None
        token = _current_call.set(call)
        try:
            response = self.session.request(method, url, params=clean_params, json=json_body,
                                            timeout=(self.settings.connect_timeout_seconds, read_timeout))
        except requests.RequestException as exc:
            failure = _transport_failure(exc, read_timeout)
        finally:
            _current_call.reset(token)
        if failure is not None and call.out_of_time:
            raise OutOfTimeError(f"{source}: the time budget ran out before an answer ({failure})", endpoint=source)
        if failure is not None:
            raise RequestTimeoutError(f"{source}: {failure} ({_gave_up(call)})", endpoint=source)
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
                fetched_at=_server_time(response.headers), elapsed_seconds=elapsed, attempts=call.retries + 1,
            )
        error = self._error_for(response, source)
        if call.out_of_time:
            raise OutOfTimeError(f"{source}: the time budget ran out before an answer ({error})", endpoint=source)
        if not isinstance(error, RETRYABLE):
            raise error
        retry_after = self._retry.get_retry_after(response)
        if retry_after is not None and retry_after > self.settings.max_retry_after_seconds:
            raise _with_note(error, f"asked to wait {retry_after:.0f}s, longer than the"
                                    f" {self.settings.max_retry_after_seconds:.0f}s OPENROUTER_SPEND_MAX_RETRY_AFTER"
                                    " allows")
        raise _with_note(error, _gave_up(call))

    def _error_for(self, response: requests.Response, source: str) -> OpenRouterError:
        status = response.status_code
        message = f"{source}: HTTP {status}: {_error_message(response)}"
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


def _gave_up(call: _CallState) -> str:
    attempts = call.retries + 1
    return f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}"


def _with_note(error: OpenRouterError, note: str) -> OpenRouterError:
    """The same typed error with `note` added to its message."""
    extra = {"retry_after": error.retry_after} if isinstance(error, RateLimitedError) else {"status": error.status}
    return type(error)(f"{error} ({note})", endpoint=error.endpoint, **extra)


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


def resolve_credentials(conn_id: str = "openrouter_default") -> tuple[str, str]:
    """(base_url, key): the Airflow connection wins when it exists, else OPENROUTER_* variables."""
    import os

    from openrouter_spend.config.settings import DEFAULT_BASE_URL

    base_url = os.environ.get("OPENROUTER_BASE_URL") or DEFAULT_BASE_URL
    key = os.environ.get("OPENROUTER_MANAGEMENT_KEY", "")
    connection = airflow_connection(conn_id)
    if connection is not None:
        host = (connection.host or "").strip()
        if host:
            if "://" not in host:
                scheme = connection.schema or "https"
                port = f":{connection.port}" if connection.port else ""
                host = f"{scheme}://{host}{port}"
            base_url = host
        key = connection.password or key
    return base_url, key


def airflow_connection(conn_id: str):
    """The Airflow connection, or None when Airflow has none by that id (or is not importable)."""
    import os

    if not os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") and not _in_airflow_task():
        return None
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and friends; the env fallback still applies
        log.debug("no Airflow connection %r (%s)", conn_id, type(exc).__name__)
        return None


def _in_airflow_task() -> bool:
    try:
        from airflow.sdk import get_current_context
        get_current_context()
    except Exception:
        return False
    return True


def client_from_environment(settings: ExtractionSettings | None = None) -> OpenRouterClient:
    """A client configured from the Airflow connection or the OPENROUTER_* environment."""
    base_url, key = resolve_credentials()
    return OpenRouterClient(base_url=base_url, api_key=key, settings=settings or ExtractionSettings.from_env())
