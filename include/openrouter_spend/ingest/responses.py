"""Raw API answers and their validation: the envelope, the JSON, the server's time and error message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import requests

from openrouter_spend.ingest.errors import MalformedResponseError


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


def server_time(headers: Mapping[str, str]) -> datetime:
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


def error_message(response: requests.Response) -> str:
    """The envelope's error.message, or a trimmed body when the server sent something else."""
    try:
        payload = response.json()
        message = payload["error"]["message"]
        if isinstance(message, str):
            return message
    except (ValueError, KeyError, TypeError):
        pass
    return response.text[:200] or response.reason or "no message"
