"""Typed errors of the OpenRouter client: each carries the endpoint and HTTP status, never the credentials."""

from __future__ import annotations


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


def with_note(error: OpenRouterError, note: str) -> OpenRouterError:
    """The same typed error with `note` added to its message."""
    extra = {"retry_after": error.retry_after} if isinstance(error, RateLimitedError) else {"status": error.status}
    return type(error)(f"{error} ({note})", endpoint=error.endpoint, **extra)
