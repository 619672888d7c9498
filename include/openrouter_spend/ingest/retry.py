"""The retry policy: urllib3's Retry with a Retry-After ceiling, a per-call time budget and pacing.

urllib3 cannot see a call's time budget, so the client sets the call's state (`current_call`) around each
request and `ApiRetry` reads it before planning another attempt.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from openrouter_spend.ingest.pacing import rate_limit_hint_seconds

log = logging.getLogger(__name__)


# Statuses worth another attempt: 408 and every 5xx (the API also answers 524 and 529), and 429.
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})


@dataclass
class CallState:
    """One call's time budget and what its retries did; set around the call, read by ApiRetry."""

    deadline: float | None = None
    # The longest one attempt may take (its read timeout): a retry is only started if it can finish in time.
    attempt_seconds: float = 0.0
    retries: int = 0
    out_of_time: bool = False


current_call: ContextVar[CallState | None] = ContextVar("openroutercurrent_call", default=None)


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
        call = current_call.get()
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


def gave_up(call: CallState) -> str:
    """How many attempts a call made before it gave up, for error messages."""
    attempts = call.retries + 1
    return f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}"
